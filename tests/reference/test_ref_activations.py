"""Activations: the canonical binary64 algorithm, its accuracy against libm, special values."""
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import reference as R
from reference import activations as A


def ulp32(v):
    """float32 ulp at the (float64) value v: 2^(e-23) for |v| in [2^e, 2^(e+1)), 2^-149 below."""
    _, e = np.frexp(np.abs(v))          # |v| = m * 2^e, m in [0.5, 1)
    return np.maximum(np.ldexp(1.0, e - 24), 2.0 ** -149)


# ---------------------------------------------------------------- scalar Python transcription

def _exp_nonpos_scalar(a):
    if a < -746.0:
        return 0.0
    n = float(round(a * A.LOG2E))       # Python round(): half to even
    r = (a - n * A.LN2_HI) - n * A.LN2_LO
    p = 1.0 / math.factorial(13)
    for k in range(12, 1, -1):
        p = p * r + 1.0 / math.factorial(k)
    p = p * r + 1.0
    p = p * r + 1.0
    k1 = int(n) >> 1
    k2 = int(n) - k1
    return (p * math.ldexp(1.0, k1)) * math.ldexp(1.0, k2)


def _act_scalar(x, gelu):
    X = float(x)
    if math.isnan(X):
        return x
    t = A.TWO_K0 * (X + 0.044715 * ((X * X) * X)) if gelu else X
    e = _exp_nonpos_scalar(-abs(t))
    num = X if t >= 0 else (-0.0 if e == 0 else X * e)
    return np.float32(num / (1.0 + e))


def test_constants():
    assert [A.C[k] for k in range(2, 14)] == [1.0 / math.factorial(k) for k in range(2, 14)]
    assert A.LN2_HI + A.LN2_LO == pytest.approx(math.log(2), rel=1e-16)
    assert A.TWO_K0 == pytest.approx(2 * math.sqrt(2 / math.pi), rel=1e-16)


@given(st.lists(st.floats(width=32, allow_nan=False), min_size=1, max_size=50),
       st.sampled_from(["silu", "gelu"]))
def test_vectorised_equals_scalar_transcription(xs, act):
    x = np.array(xs, np.float32)
    got = R.ACTIVATIONS[act][0](x)
    expect = np.array([_act_scalar(v, act == "gelu") for v in x], np.float32)
    assert np.array_equal(got.view(np.uint32), expect.view(np.uint32))


def test_exp_nonpos_close_to_libm():
    a = -np.concatenate([np.linspace(0, 745, 200001), np.random.default_rng(0).uniform(0, 745, 50000)])
    e = A.exp_nonpos(a)
    ref = np.exp(a)
    normal = ref > 2.0 ** -1022
    assert np.all(np.abs(e - ref)[normal] <= 4e-16 * ref[normal])
    assert np.all(np.abs(e - ref)[~normal] <= 2.0 ** -1074)
    assert np.all(A.exp_nonpos(np.array([-746.5, -1e300, -np.inf])) == 0.0)
    assert A.exp_nonpos(np.array([0.0]))[0] == 1.0


def _random_inputs(seed):
    rng = np.random.default_rng(seed)
    bits = rng.integers(0, 2**32, 300000, dtype=np.uint64).astype(np.uint32).view(np.float32)
    parts = [
        bits[np.isfinite(bits)],                                            # whole range
        rng.uniform(-110, 30, 300000).astype(np.float32),                   # the busy region
        rng.uniform(-1, 1, 20000).astype(np.float32) * np.float32(1e-38),   # subnormals
        rng.uniform(-20, 20, 100000).astype(np.float32),
        np.array([0, -0.0, 1e-45, -1e-45, 3.4028235e38, -3.4028235e38, -103.5, -88.7, 7.5], np.float32),
    ]
    return np.concatenate(parts)


@pytest.mark.parametrize("act", ["silu", "gelu"])
def test_canonical_within_max_ulp_of_exact(act):
    canon, exact = R.ACTIVATIONS[act]
    x = _random_inputs(11)
    c = canon(x).astype(np.float64)
    t = exact(x)
    err = np.abs(c - t) / ulp32(t)
    assert np.all(np.isfinite(err))
    assert err.max() <= R.ACT_MAX_ULP, (x[np.argmax(err)], err.max())
    # and not trivially: plenty of results are inexact (err > 0.25 ulp somewhere)
    assert err.max() > 0.25


@pytest.mark.parametrize("act", ["silu", "gelu"])
def test_special_values(act):
    canon, exact = R.ACTIVATIONS[act]
    nan_payload = np.array([0x7FC12345, 0xFFC00001], np.uint32).view(np.float32)
    out = canon(nan_payload)
    assert np.array_equal(out.view(np.uint32), nan_payload.view(np.uint32))  # passthrough
    x = np.array([np.inf, -np.inf, 0.0, -0.0, -200.0, -1e30], np.float32)
    for f in (canon, exact):
        y = np.asarray(f(x), np.float64)
        assert y[0] == np.inf
        assert y[1] == 0 and np.signbit(y[1])          # act(-inf) = -0.0
        assert y[2] == 0 and not np.signbit(y[2])
        assert y[3] == 0 and np.signbit(y[3])
        if f is canon:                                 # float32 underflow to -0.0
            assert y[4] == 0 and np.signbit(y[4])
        assert y[5] == 0 and np.signbit(y[5])
    assert np.isnan(exact(np.array([np.nan]))).all()


@pytest.mark.parametrize("act", ["silu", "gelu"])
def test_slope_bound(act):
    _, exact = R.ACTIVATIONS[act]
    x = np.linspace(-12, 12, 480001)
    slope = np.abs(np.diff(exact(x)) / np.diff(x))
    assert slope.max() <= R.ACT_MAX_SLOPE
    assert slope.max() > 1.05  # the constant is not loose by much


def test_dtype_checked():
    with pytest.raises(ValueError, match="float32"):
        R.silu(np.array([1.0]))


def _gen_act_edges():
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("gen", Path(__file__).parents[2] / "scripts" / "gen_act_edges.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    return gen


@pytest.mark.parametrize("act", ["silu", "gelu"])
def test_rounding_edge_inputs_are_next_to_a_midpoint(act):
    """harness/act_edges.py (scripts/gen_act_edges.py): every input's binary64 result lies
    within 2^-22 float32 ulps of a rounding midpoint, so the strategies' 'rounding edges'
    inputs flip with any deviation from the contract's binary64 sequence."""
    from harness.act_edges import EDGES

    gen = _gen_act_edges()
    x = np.array(EDGES[act], dtype=np.uint32).view(np.float32)
    assert len(x) >= 32
    assert (gen.tie_distance(gen.binary64(act, x)) < gen.LIMIT).all()


DECIDED_BY = {"C11": {"zero", "negated", "left out"}, "C12": {"negated"}, "C13": set()}


@pytest.mark.parametrize("name", [f"{act} {term}" for act in ("silu", "gelu") for term in DECIDED_BY])
def test_each_last_polynomial_term_decides_the_rounding_of_its_edge_inputs(name):
    """harness/act_edges.py TERM_EDGES: every input listed for a term has a float32 result
    that changes when that term is replaced by 0, negated or its Horner step left out (so
    an ISA that gets the term wrong fails on it), and the term's every change decides at
    least one of them unless the full scan found none: C12 zeroed or left out and C13
    changed in any way change no float32 SiLU/GELU output at all."""
    from harness.act_edges import TERM_EDGES

    gen = _gen_act_edges()
    act, term = name.split()
    x = np.array(TERM_EDGES[name], dtype=np.uint32).view(np.float32)
    changed = gen.decides(act, x, int(term[1:]))
    assert np.logical_or.reduce(list(changed.values())).all()
    decided = {how for how, hits in changed.items() if hits.any()}
    assert decided == DECIDED_BY[term]
