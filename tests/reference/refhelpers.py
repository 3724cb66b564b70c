"""Shared data builders for the reference tests (numpy only; no code under test beyond
encode_fields, whose round trip is tested on its own)."""
import numpy as np

import reference as R

# fp16 super-scale bit patterns worth covering: zeros, subnormals, normal, huge, inf, nan.
SPECIAL_D_BITS = [
    0x0000,  # +0
    0x8000,  # -0
    0x0001,  # smallest subnormal 2^-24
    0x8001,
    0x03FF,  # largest subnormal
    0x0400,  # smallest normal
    0x3C00,  # 1
    0xBC00,  # -1
    0x7BFF,  # 65504, largest
    0xFBFF,
    0x7C00,  # +inf
    0xFC00,  # -inf
    0x7E00,  # quiet nan
    0x7C01,  # signalling nan pattern
    0xFE00,  # negative nan
]


def random_fields(rng, n, d_lo=1e-3, d_hi=1e-2, specials=()):
    """n blocks of random fields; typical fp16 scales, the first len(specials) replaced."""
    d = rng.uniform(d_lo, d_hi, n) * rng.choice([-1.0, 1.0], n)
    d_bits = d.astype(np.float16).view(np.uint16).copy()
    d_bits[: len(specials)] = np.asarray(specials, dtype=np.uint16)[:n]
    return R.IQ1MFields(
        grid_index=rng.integers(0, 2048, (n, 32)),
        delta_negative=rng.random((n, 32)) < 0.5,
        scale=rng.integers(0, 8, (n, 16)),
        d_bits=d_bits,
    )


def random_weights(rng, rows, nb, **kw):
    """uint8 [rows, nb*56]."""
    return R.encode_fields(random_fields(rng, rows * nb, **kw)).reshape(rows, nb * 56)


def random_x(rng, n_tokens, K, scale=1.0):
    return (rng.standard_normal((n_tokens, K)) * scale).astype(np.float32)


def same_bits_nan_equal(a, b):
    """Bitwise equality of float32 arrays, any NaN equal to any NaN."""
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    if a.shape != b.shape:
        return False
    na, nb_ = np.isnan(a), np.isnan(b)
    return bool(np.array_equal(na, nb_) and np.array_equal(a.view(np.uint32)[~na], b.view(np.uint32)[~nb_]))
