"""SiLU and GELU(tanh form): the canonical binary64 algorithm of docs/numerics.md.

`silu`, `gelu` are the bit-exact target for the C library: evaluated in binary64 with the
exact operation sequence of the contract (every numpy float64 ufunc call is one IEEE
binary64 operation, round to nearest even, never fused) and rounded once to float32.
`silu_exact`, `gelu_exact` are the "true" values: the same formulas in binary64 through
libm's exp (np.exp), in their stable forms.
"""
import math

import numpy as np

ACT_MAX_ULP = 0.501
ACT_MAX_SLOPE = 1.13

LOG2E = float.fromhex("0x1.71547652b82fep+0")
LN2_HI = float.fromhex("0x1.62e42feep-1")
LN2_LO = float.fromhex("0x1.a39ef35793c76p-33")
TWO_K0 = 1.5957691216057308     # 2*sqrt(2/pi)
GELU_A = 0.044715
C = {k: 1.0 / float(math.factorial(k)) for k in range(2, 14)}  # exact integers, one division
# the Horner steps of exp_nonpos's polynomial, in order: p = C13, then p = p * r + c for each
POLY = tuple(C[k] for k in range(13, 1, -1))

assert LOG2E == 1.4426950408889634
assert LN2_HI == 6.93147180369123816490e-01 and (int.from_bytes(np.float64(LN2_HI).tobytes(), "little") & 0x1FFFFF) == 0
assert LN2_LO == 1.90821492927058770002e-10


def _pow2(k):
    """2.0**k for integer k in [-1022, 1023], built from the exponent bits."""
    return ((k.astype(np.int64) + 1023) << 52).view(np.float64)


def exp_nonpos(a, poly=POLY):
    """e^a for float64 a <= 0 (or NaN, which propagates), the contract's exact sequence.
    `poly` replaces the Horner steps (scripts/gen_act_edges.py asks which inputs each
    term of the polynomial decides)."""
    a = np.asarray(a, dtype=np.float64)
    under = a < -746.0                                  # also -inf
    with np.errstate(invalid="ignore"):
        a_ = np.where(under, 0.0, a)
        n = np.rint(a_ * LOG2E)                         # round half to even
        r = (a_ - n * LN2_HI) - n * LN2_LO
        p = np.full_like(r, poly[0])
        for c in poly[1:]:
            p = p * r + c
        p = p * r + 1.0
        p = p * r + 1.0
        ni = np.where(np.isnan(n), 0, n).astype(np.int64)
        k1 = ni >> 1                                    # floor(n / 2)
        k2 = ni - k1
        e = (p * _pow2(k1)) * _pow2(k2)
    return np.where(under, 0.0, e)


def _sigmoid_times(X, t, poly=POLY):
    """X * sigmoid(t) in the contract's form: num / (1 + e), e = exp_nonpos(-|t|)."""
    with np.errstate(invalid="ignore", over="ignore"):
        e = exp_nonpos(-np.abs(t), poly)
        num = np.where(t >= 0, X, np.where(e == 0, -0.0, X * e))
        return num / (1.0 + e)


def _f32_in(x):
    x = np.asarray(x)
    if x.dtype != np.float32:
        raise ValueError(f"x must have dtype float32, got {x.dtype}")
    return x


def silu(x):
    """float32 -> float32, canonical (bit-exact target)."""
    x = _f32_in(x)
    with np.errstate(invalid="ignore"):             # signalling NaN payloads
        X = x.astype(np.float64)
    out = _sigmoid_times(X, X).astype(np.float32)
    return np.where(np.isnan(x), x, out)


def gelu(x):
    """float32 -> float32, canonical (bit-exact target)."""
    x = _f32_in(x)
    with np.errstate(invalid="ignore", over="ignore"):
        X = x.astype(np.float64)
        z = TWO_K0 * (X + GELU_A * ((X * X) * X))
    out = _sigmoid_times(X, z).astype(np.float32)
    return np.where(np.isnan(x), x, out)


def _sigmoid_times_exact(X, t):
    """X * sigmoid(t) with np.exp, stable form, float64."""
    with np.errstate(invalid="ignore", over="ignore", under="ignore"):
        e = np.exp(-np.abs(t))                          # in (0, 1], or 0 for huge |t|
        sig = np.where(t >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
        # the -0.0 rule of the canonical form (also keeps -inf * 0 from making a NaN)
        out = np.where((t < 0) & (e == 0), -0.0, X * sig)
    return np.where(np.isnan(X), X, out)


def silu_exact(x):
    """x (any float dtype) -> float64 x*sigmoid(x), binary64 with libm exp."""
    with np.errstate(invalid="ignore"):
        X = np.asarray(x).astype(np.float64)
    return _sigmoid_times_exact(X, X)


def gelu_exact(x):
    """x (any float dtype) -> float64 0.5*x*(1+tanh(k0*(x+0.044715x^3))) = x*sigmoid(2k0(...))."""
    with np.errstate(invalid="ignore", over="ignore"):
        X = np.asarray(x).astype(np.float64)
        z = TWO_K0 * (X + GELU_A * ((X * X) * X))
    return _sigmoid_times_exact(X, z)


ACTIVATIONS = {"silu": (silu, silu_exact), "gelu": (gelu, gelu_exact)}
