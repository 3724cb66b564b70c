"""IQ1_M block decoding: field round trips and dequantization against gguf (outside check)."""
import numpy as np
import pytest
from gguf.quants import IQ1_M
from hypothesis import given
from hypothesis import strategies as st

import reference as R
from refhelpers import SPECIAL_D_BITS, random_fields, same_bits_nan_equal

IQ1_M.init_grid()


def gguf_dequantize(blocks):
    with np.errstate(invalid="ignore", over="ignore"):  # inf * 0 in gguf's d * (2s+1) chain
        return IQ1_M.dequantize_blocks(blocks)


# -------------------------------------------------------------- dequantize vs gguf

BLOCKS_PER_EXAMPLE = 200  # x 60 examples in the ci profile = 12,000 blocks


@given(seed=st.integers(0, 2**32 - 1),
       specials=st.lists(st.sampled_from(SPECIAL_D_BITS), max_size=len(SPECIAL_D_BITS)),
       extra_bits=st.lists(st.integers(0, 0xFFFF), max_size=8),
       d_range=st.sampled_from([(1e-3, 1e-2), (1e-7, 1e-5), (1.0, 100.0), (6e4, 6.5e4)]))
def test_dequantize_equals_gguf(seed, specials, extra_bits, d_range):
    rng = np.random.default_rng(seed)
    f = random_fields(rng, BLOCKS_PER_EXAMPLE, *d_range, specials=specials + extra_bits)
    blocks = R.encode_fields(f)
    ours = R.dequantize(blocks)
    assert ours.dtype == np.float32 and ours.shape == (BLOCKS_PER_EXAMPLE, 256)
    assert same_bits_nan_equal(ours, gguf_dequantize(blocks))


def test_dequantize_every_fp16_scale_equals_gguf():
    # All 65536 super-scale bit patterns (zeros, subnormals, normals, inf, every nan).
    rng = np.random.default_rng(1)
    f = random_fields(rng, 65536)
    f = R.IQ1MFields(f.grid_index, f.delta_negative, f.scale, np.arange(65536, dtype=np.uint16))
    blocks = R.encode_fields(f)
    assert same_bits_nan_equal(R.dequantize(blocks), gguf_dequantize(blocks))


def test_dequantize_every_grid_row_sign_and_scale_equals_gguf():
    # 2048 rows x 2 signs: 128 blocks of 32 groups; scales cycle through 0..7.
    idx = np.tile(np.arange(2048, dtype=np.uint16), 2).reshape(128, 32)
    neg = np.repeat([False, True], 2048).reshape(128, 32)
    scale = (np.arange(128 * 16) % 8).reshape(128, 16)
    d_bits = np.full(128, 0x3C00, np.uint16)  # 1.0
    blocks = R.encode_fields(R.IQ1MFields(idx, neg, scale, d_bits))
    assert same_bits_nan_equal(R.dequantize(blocks), gguf_dequantize(blocks))


def test_dequantize_on_arbitrary_bytes_equals_gguf():
    rng = np.random.default_rng(2)
    blocks = rng.integers(0, 256, (4000, 56), dtype=np.uint8)
    assert same_bits_nan_equal(R.dequantize(blocks), gguf_dequantize(blocks))


# -------------------------------------------------------------- round trips

@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 40))
def test_fields_bytes_fields_round_trip(seed, n):
    f = random_fields(np.random.default_rng(seed), n, specials=SPECIAL_D_BITS[: n])
    g = R.decode_fields(R.encode_fields(f))
    for name in ("grid_index", "delta_negative", "scale", "d_bits"):
        a, b = getattr(f, name), getattr(g, name)
        assert a.dtype == b.dtype and np.array_equal(a, b), name


@given(data=st.binary(min_size=0, max_size=56 * 30).map(lambda b: b[: len(b) // 56 * 56]))
def test_bytes_fields_bytes_round_trip(data):
    blocks = np.frombuffer(data, dtype=np.uint8).reshape(-1, 56)
    assert np.array_equal(R.encode_fields(R.decode_fields(blocks)), blocks)


def test_decode_fields_reads_the_documented_bit_positions():
    # One block built byte by byte from the format description.
    b = np.zeros((1, 56), np.uint8)
    b[0, 0] = 0x34          # qs[0]: low 8 bits of group 0's index
    b[0, 1] = 0xFF          # qs[1]
    b[0, 32] = 0x5 | 0xE0   # qh[0]: group 0 high bits 5, sign clear; group 1 high bits 6, sign set
    # scales words: sc0 = s0=1, s1=2, s2=3, s3=4 and d nibble 0xA (bits 12-15)
    sc0 = 1 | 2 << 3 | 3 << 6 | 4 << 9 | 0xA << 12
    sc3 = 7 << 9 | 0x3 << 12  # s15 = 7, d nibble 3 (bits 12-15 of the fp16)
    b[0, 48], b[0, 49] = sc0 & 0xFF, sc0 >> 8
    b[0, 54], b[0, 55] = sc3 & 0xFF, sc3 >> 8
    f = R.decode_fields(b)
    assert f.grid_index[0, 0] == 0x534 and not f.delta_negative[0, 0]
    assert f.grid_index[0, 1] == 0x6FF and f.delta_negative[0, 1]
    assert f.scale[0, :4].tolist() == [1, 2, 3, 4] and f.scale[0, 15] == 7
    assert f.d_bits[0] == 0x300A


def test_as_blocks_reshapes_rows():
    w = np.zeros((3, 2, 112), np.uint8)
    assert R.as_blocks(w).shape == (12, 56)


# -------------------------------------------------------------- weight integers

def test_weight_integers_consistent_with_dequantize():
    rng = np.random.default_rng(3)
    blocks = R.encode_fields(random_fields(rng, 300))
    w, mult, d = R.weight_integers(blocks)
    assert w.dtype == np.int8 and mult.dtype == np.uint8 and d.dtype == np.float32
    assert set(np.unique(w).tolist()) <= {-9, -7, -1, 1, 7, 9}
    assert set(np.unique(mult).tolist()) <= {1, 3, 5, 7, 9, 11, 13, 15}
    # value = d * (2s+1) * w / 8, evaluated in float64 (exact here) from the gguf dequantizer
    expect = gguf_dequantize(blocks).astype(np.float64)
    got = d[:, None].astype(np.float64) * np.repeat(mult, 16, axis=1) * w / 8
    assert np.array_equal(got, expect)
