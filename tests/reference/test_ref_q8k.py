"""Q8_K quantization (ggml quantize_row_q8_K_ref semantics) and its byte layout."""
import struct

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import reference as R

F32 = np.float32
FLT_MAX = np.finfo(np.float32).max


def slow_quantize_block(xs):
    """One block, element by element, as the C reference reads (float32 scalar arithmetic)."""
    amax, vmax = F32(0), F32(0)
    for v in xs:
        if abs(v) > amax:
            amax, vmax = abs(v), v
    if amax == 0:
        return F32(0), [0] * 256, [0] * 16
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        iscale = F32(-127) / vmax
        if np.isinf(iscale):  # contract: scale overflow -> all-zero qs, d = 1/iscale
            return F32(1) / iscale, [0] * 256, [0] * 16
        qs = []
        for v in xs:
            p = F32(iscale * v)            # float32 product
            qs.append(min(127, round(float(p))))  # Python round(): half to even
    bsums = [sum(qs[16 * j:16 * j + 16]) for j in range(16)]
    return F32(1) / iscale, qs, bsums


def assert_matches_slow(x):
    q = R.quantize_q8k(x)
    xb = x.reshape(-1, 256)
    d, qs, bs = q.d.reshape(-1), q.qs.reshape(-1, 256), q.bsums.reshape(-1, 16)
    for i in range(xb.shape[0]):
        sd, sq, sb = slow_quantize_block(list(xb[i]))
        assert d[i].tobytes() == F32(sd).tobytes(), (i, d[i], sd)
        assert qs[i].tolist() == sq, i
        assert bs[i].tolist() == sb, i
    return q


@given(seed=st.integers(0, 2**32 - 1), scale=st.sampled_from([1e-30, 1e-3, 1.0, 1e5, 1e30]),
       nb=st.integers(1, 3))
def test_quantize_matches_slow_reference(seed, scale, nb):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((2, nb * 256)) * scale).astype(np.float32)
    if seed % 3 == 0:  # integers and halves: many exact ties
        x = (rng.integers(-40, 41, x.shape) / 2).astype(np.float32)
    assert_matches_slow(x)


def test_shapes_and_dtypes():
    x = np.ones((2, 3, 512), np.float32)
    q = R.quantize_q8k(x)
    assert q.shape == (2, 3, 2) and q.nb == 2
    assert q.d.dtype == np.float32 and q.qs.dtype == np.int8 and q.bsums.dtype == np.int16
    assert q.qs.shape == (2, 3, 2, 256) and q.bsums.shape == (2, 3, 2, 16)
    assert R.dequantize_q8k(q).shape == (2, 3, 512)


def test_half_ties_round_to_even():
    # max = -127 at index 0 -> iscale = -127/-127 = 1 exactly, so iscale*x = x exactly.
    x = np.zeros(256, np.float32)
    x[0] = -127
    x[1:9] = [0.5, 1.5, 2.5, 3.5, -0.5, -1.5, -2.5, 126.5]
    q = R.quantize_q8k(x)
    assert q.qs[0, :9].tolist() == [-127, 0, 2, 2, 4, 0, -2, -2, 126]
    assert q.d[0] == 1.0
    # max = +254 -> iscale = -0.5 exactly: x = 5 -> -2.5 -> -2, x = 7 -> -3.5 -> -4, x = -1 -> 0.5 -> 0
    x = np.zeros(256, np.float32)
    x[:4] = [254, 5, 7, -1]
    q = R.quantize_q8k(x)
    assert q.qs[0, :4].tolist() == [-127, -2, -4, 0]
    assert q.d[0] == -2.0
    assert q.bsums[0, 0] == -127 - 2 - 4


def test_sign_of_d_follows_the_max():
    x = np.linspace(-1, 1, 256, dtype=np.float32) * 0.5
    x[7] = 3.0  # positive largest: d negative, q = -127 there
    q = R.quantize_q8k(x)
    assert q.d[0] < 0 and q.qs[0, 7] == -127
    x[7] = -3.0  # negative largest: d positive
    q = R.quantize_q8k(x)
    assert q.d[0] > 0 and q.qs[0, 7] == -127
    assert q.d[0].tobytes() == (F32(1) / (F32(-127) / F32(-3.0))).tobytes()


def test_repeated_maxima_first_wins():
    x = np.zeros(256, np.float32)
    x[3], x[10] = -5.0, 5.0
    q = R.quantize_q8k(x)
    assert q.d[0] > 0 and q.qs[0, 3] == -127 and q.qs[0, 10] == 127
    x[3], x[10] = 5.0, -5.0
    q = R.quantize_q8k(x)
    assert q.d[0] < 0 and q.qs[0, 3] == -127 and q.qs[0, 10] == 127
    assert_matches_slow(x)


def test_all_zero_block():
    x = np.zeros((1, 512), np.float32)
    x[0, 256:] = 1.0
    x[0, 5] = -0.0
    q = R.quantize_q8k(x)
    assert q.d[0, 0].tobytes() == F32(0).tobytes()  # +0.0
    assert not q.qs[0, 0].any() and not q.bsums[0, 0].any()
    assert q.qs[0, 1].tolist() == [-127] * 256 and q.bsums[0, 1].tolist() == [-127 * 16] * 16


def test_tiny_blocks():
    # Normal-range tiny max: quantizes normally.
    x = np.zeros(256, np.float32)
    x[0], x[1] = 1e-36, -5e-37
    q = assert_matches_slow(x)
    assert q.qs[0, 0] == -127 and q.qs[0, 1] in (63, 64) and q.d[0] < 0  # exact value: slow path
    # Subnormal max: -127/max overflows to -inf -> qs = 0, bsums = 0, d = 1/-inf = -0.0.
    for v, dsign in [(1e-45, -0.0), (-3e-39, 0.0), (3e-37, -0.0)]:
        x = np.zeros(256, np.float32)
        x[0], x[1] = v, v / 2
        q = assert_matches_slow(x)
        assert not q.qs.any() and not q.bsums.any()
        assert q.d[0].tobytes() == F32(dsign).tobytes()


def test_huge_blocks():
    x = np.zeros(256, np.float32)
    x[:4] = [FLT_MAX, -FLT_MAX, FLT_MAX / 3, -1.0]
    q = assert_matches_slow(x)
    assert q.qs[0, :2].tolist() == [-127, 127] and np.isfinite(q.d[0]) and q.d[0] < 0


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_rejected_with_position(bad):
    x = np.zeros((2, 512), np.float32)
    x[1, 300] = bad
    with pytest.raises(ValueError, match=r"non-finite.*\(1, 300\)"):
        R.quantize_q8k(x)


def test_dequantize_q8k_is_float32_d_times_q():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 512)).astype(np.float32)
    q = R.quantize_q8k(x)
    y = R.dequantize_q8k(q)
    assert y.dtype == np.float32
    expect = (np.repeat(q.d, 256, axis=-1) * q.qs.reshape(3, 512).astype(np.float32))
    assert np.array_equal(y, expect)
    assert np.max(np.abs(y - x)) <= np.max(np.abs(q.d)) * 0.5 * (1 + 1e-6)


def test_bytes_layout_is_the_c_struct():
    rng = np.random.default_rng(6)
    q = R.quantize_q8k(rng.standard_normal((2, 512)).astype(np.float32))
    b = R.q8k_to_bytes(q)
    assert b.shape == (2, 2, 292) and b.dtype == np.uint8
    raw = b[1, 1].tobytes()
    d, = struct.unpack("<f", raw[:4])
    qs = list(struct.unpack("<256b", raw[4:260]))
    bsums = list(struct.unpack("<16h", raw[260:292]))
    assert F32(d) == q.d[1, 1] and qs == q.qs[1, 1].tolist() and bsums == q.bsums[1, 1].tolist()
    back = R.q8k_from_bytes(b)
    assert np.array_equal(back.d.view(np.uint32), q.d.view(np.uint32))
    assert np.array_equal(back.qs, q.qs) and np.array_equal(back.bsums, q.bsums)


@given(data=st.binary(min_size=292, max_size=292 * 6).map(lambda b: b[: len(b) // 292 * 292]))
def test_bytes_round_trip_arbitrary(data):
    b = np.frombuffer(data, np.uint8).reshape(-1, 292)
    assert np.array_equal(R.q8k_to_bytes(R.q8k_from_bytes(b)), b)
