"""GEMM, MoE GEMM and the fused op: hand-worked values, independent slow paths, bounds."""
import numpy as np
import pytest
from gguf.quants import IQ1_M
from hypothesis import given
from hypothesis import strategies as st

import reference as R
from refhelpers import SPECIAL_D_BITS, random_fields, random_weights, random_x, same_bits_nan_equal

IQ1_M.init_grid()
F32 = np.float32


# ---------------------------------------------------------------- hand-worked example

def hand_block():
    """One IQ1_M block whose every field is chosen by hand."""
    # Grid rows used, read off IQ1S_GRID (asserted below):
    #   row 1    = [ 1,-1,-1,-1,-1,-1,-1,-1]      row 2047 = [ 1, 1, 1, 1, 1, 1, 1, 1]
    #   row 5    = [ 0,-1, 0,-1,-1,-1,-1,-1]      row 0    = [-1,-1,-1,-1,-1,-1,-1,-1]
    assert R.IQ1S_GRID[1].tolist() == [1, -1, -1, -1, -1, -1, -1, -1]
    assert R.IQ1S_GRID[2047].tolist() == [1, 1, 1, 1, 1, 1, 1, 1]
    assert R.IQ1S_GRID[5].tolist() == [0, -1, 0, -1, -1, -1, -1, -1]
    assert R.IQ1S_GRID[0].tolist() == [-1, -1, -1, -1, -1, -1, -1, -1]
    grid_index = [1, 2047, 5] + [0] * 29          # groups 0, 1, 2, then row 0 everywhere
    delta_negative = [False, True] + [False] * 30  # only group 1 has the -1/8 delta
    scale = [3, 0] + [7] * 14                      # sub-block 0 (groups 0,1): 2s+1 = 7;
                                                   # sub-block 1 (groups 2,3): 1; others 15
    d_bits = 0x3800                                # fp16 0.5
    f = R.IQ1MFields(np.array([grid_index]), np.array([delta_negative]), np.array([scale]),
                     np.array([d_bits]))
    return R.encode_fields(f)


def hand_q8():
    qs = np.zeros(256, np.int8)
    qs[0:8] = 1      # group 0
    qs[8:16] = 2     # group 1
    qs[16:24] = -3   # group 2
    qs[24:32] = 0    # group 3
    qs[32:] = 1      # groups 4..31
    bsums = np.array([[[8 * 1 + 8 * 2, 8 * -3] + [16] * 14]], np.int16)
    return R.Q8KBlocks(np.array([[0.25]], np.float32), qs.reshape(1, 1, 256), bsums)


def test_hand_worked_block():
    w = hand_block()
    # weight integers w = 8*grid + sign:
    #   group 0 (sign +1): [9, -7 x7]      group 1 (sign -1): [7 x8]
    #   group 2 (sign +1): [1,-7,1,-7,-7,-7,-7,-7] (sum -40)      groups 3..31: [-7 x8]
    S = (1 * 7 * (9 - 7 * 7)            # group 0: q8 = 1, 2s+1 = 7   -> -280
         + 2 * 7 * (7 * 8)              # group 1: q8 = 2, 2s+1 = 7   -> 784
         + -3 * 1 * (1 - 7 + 1 - 7 * 5)  # group 2: q8 = -3, 2s+1 = 1 -> 120
         + 0                            # group 3: q8 = 0
         + 28 * 8 * 1 * 15 * -7)        # groups 4..31: q8 = 1, 2s+1 = 15 -> -23520
    assert S == -22896
    expected = 0.5 * 0.25 * S / 8       # dw * dy * S / 8 = -357.75, exact in float32
    out = R.mul_mat(w, hand_q8())
    assert out.shape == (1, 1) and out.dtype == np.float32
    assert out[0, 0] == F32(expected) == F32(-357.75)
    assert R.mul_mat_exact(w, hand_q8())[0, 0] == expected
    # dequantized weights of group 0: 0.5 * 7 * 9/8 and 0.5 * 7 * -7/8
    deq = R.dequantize(w)[0]
    assert deq[0] == 0.5 * 7 * 9 / 8 and deq[1] == 0.5 * 7 * -7 / 8
    assert deq[8] == 0.5 * 7 * 7 / 8 and deq[16] == 0.5 * 1 * 1 / 8 and deq[40] == 0.5 * 15 * -7 / 8
    w_int, mult, d = R.weight_integers(w)
    assert w_int[0, :16].tolist() == [9] + [-7] * 7 + [7] * 8
    assert mult[0, :3].tolist() == [7, 1, 15] and d[0] == 0.5


# ---------------------------------------------------------------- independent slow canonical

def slow_mul_mat(w, x):
    """Per element, in Python: S_b from gguf's dequantized weights (exact integers once
    divided by d/8), float32 accumulation in block order."""
    rows, nb = w.shape[0], w.shape[1] // 56
    q = R.quantize_q8k(x)
    blocks = w.reshape(rows * nb, 56)
    with np.errstate(all="ignore"):
        deq = IQ1_M.dequantize_blocks(blocks).astype(np.float64).reshape(rows, nb, 256)
    f = R.decode_fields(blocks)
    dw = f.d_bits.view(np.float16).astype(np.float32).reshape(rows, nb)
    out = np.zeros((x.shape[0], rows), np.float32)
    for t in range(x.shape[0]):
        for r in range(rows):
            acc = F32(0)
            for b in range(nb):
                wint = np.rint(deq[r, b] * 8 / float(dw[r, b])).astype(np.int64)  # (2s+1)*w
                S = int(np.dot(q.qs[t, b].astype(np.int64), wint))
                acc = F32(acc + F32(dw[r, b] * q.d[t, b]) * F32(S))
            out[t, r] = F32(0.125) * acc
    return out


@given(seed=st.integers(0, 2**32 - 1), rows=st.integers(1, 5), nb=st.integers(1, 4),
       tokens=st.integers(1, 3))
def test_canonical_equals_slow_path(seed, rows, nb, tokens):
    rng = np.random.default_rng(seed)
    w = random_weights(rng, rows, nb)
    x = random_x(rng, tokens, nb * 256)
    assert same_bits_nan_equal(R.mul_mat(w, x), slow_mul_mat(w, x))


def test_exact_equals_float64_dequantized_product():
    rng = np.random.default_rng(7)
    rows, nb, T = 40, 6, 5
    w = random_weights(rng, rows, nb)
    x = random_x(rng, T, nb * 256)
    q = R.quantize_q8k(x)
    with np.errstate(all="ignore"):
        deq = IQ1_M.dequantize_blocks(w.reshape(-1, 56)).astype(np.float64).reshape(rows, -1)
    xq = (q.d.astype(np.float64)[..., None] * q.qs).reshape(T, -1)  # exact in float64
    ref = xq @ deq.T
    e = R.mul_mat_exact(w, x)
    assert np.all(np.abs(e - ref) <= 1e-14 * np.abs(xq) @ np.abs(deq).T)


def test_q8k_input_equals_float_input():
    rng = np.random.default_rng(8)
    w = random_weights(rng, 7, 3)
    x = random_x(rng, 4, 768)
    q = R.q8k_from_bytes(R.q8k_to_bytes(R.quantize_q8k(x)))
    for f in (R.mul_mat, R.mul_mat_exact, R.mul_mat_bound):
        assert np.array_equal(f(w, x), f(w, q))


# ---------------------------------------------------------------- bounds

def alt_order_results(w, x):
    """float32 results of the same quantized product in other legal orders: blocks
    reversed, and ggml-AVX2-like (grid and delta parts separately, 8 lanes, FMA-free)."""
    rows, nb = w.shape[0], w.shape[1] // 56
    q = R.quantize_q8k(x)
    f = R.decode_fields(w.reshape(-1, 56))
    grid = R.IQ1S_GRID[f.grid_index].reshape(rows, nb, 256).astype(np.int64)
    sign = np.repeat(np.where(f.delta_negative, -1, 1), 8, axis=1).reshape(rows, nb, 256)
    mult = np.repeat(2 * f.scale.astype(np.int64) + 1, 16, axis=1).reshape(rows, nb, 256)
    dw = f.d_bits.view(np.float16).astype(np.float32).reshape(rows, nb)
    qs = q.qs.astype(np.int64)
    with np.errstate(all="ignore"):
        dwdy = q.d[:, None, :] * dw[None, :, :]                          # [T, rows, nb] f32
        S = np.einsum("tbi,rbi->trb", qs, mult * (8 * grid + sign)).astype(np.float32)
        rev = np.zeros(S.shape[:2], np.float32)
        for b in reversed(range(nb)):
            rev = rev + dwdy[..., b] * S[..., b]
        rev = F32(0.125) * rev
        lanes = lambda part: np.einsum("tbli,rbli->trbl", qs.reshape(-1, nb, 8, 32),  # noqa: E731
                                       (mult * part).reshape(rows, nb, 8, 32)).astype(np.float32)
        g, s = lanes(grid), lanes(sign)
        acc_g = np.zeros(g.shape[:2] + (8,), np.float32)
        acc_s = np.zeros_like(acc_g)
        for b in range(nb):
            acc_g = acc_g + dwdy[..., b, None] * g[:, :, b]
            acc_s = acc_s + dwdy[..., b, None] * s[:, :, b]
        hsum = lambda a: ((a[..., 0:4] + a[..., 4:8])[..., 0:2] + (a[..., 0:4] + a[..., 4:8])[..., 2:4]).sum(-1, dtype=np.float32)  # noqa: E731
        ggml = hsum(acc_g) + F32(0.125) * hsum(acc_s)
    return rev, ggml.astype(np.float32)


@given(seed=st.integers(0, 2**32 - 1), rows=st.integers(1, 24), nb=st.sampled_from([1, 2, 5, 16, 28]),
       tokens=st.integers(1, 4), xscale=st.sampled_from([1.0, 1e-20, 1e20]),
       dscale=st.sampled_from([(1e-3, 1e-2), (6e-8, 1e-6), (1e3, 6e4)]))
def test_canonical_and_other_orders_within_bound(seed, rows, nb, tokens, xscale, dscale):
    rng = np.random.default_rng(seed)
    w = random_weights(rng, rows, nb, d_lo=dscale[0], d_hi=dscale[1])
    x = random_x(rng, tokens, nb * 256, xscale)
    c, e, b = R.mul_mat(w, x), R.mul_mat_exact(w, x), R.mul_mat_bound(w, x)
    assert c.dtype == np.float32 and e.dtype == np.float64 and b.dtype == np.float64
    assert np.all(b >= 0)
    assert R.within_bound(c, e, b, c).all()
    assert np.all(np.abs(c[np.isfinite(b)] - e[np.isfinite(b)]) <= b[np.isfinite(b)])
    for alt in alt_order_results(w, x):
        assert R.within_bound(alt, e, b, c).all()


def test_bound_is_not_vacuous():
    rng = np.random.default_rng(9)
    rows, nb, T = 64, 28, 8                              # K = 7168 (Kimi-K2 ffn width)
    w = random_weights(rng, rows, nb)
    x = random_x(rng, T, nb * 256)
    c, e, b = R.mul_mat(w, x), R.mul_mat_exact(w, x), R.mul_mat_bound(w, x)
    ratio = b / np.abs(e)
    # Measured: median 1.9e-4 (the split-absolute magnitude is ~90x |exact| on random data,
    # times gamma_36 ~ 2.1e-6); assert with 2x margin.
    assert np.median(ratio) < 4e-4
    # the canonical error itself uses a visible part of the bound somewhere
    assert np.max(np.abs(c - e) / b) > 1e-3
    # and a result off by a relative 1e-3 is caught
    assert not R.within_bound(c * F32(1.001), e, b, c).all()


def test_bound_covers_underflow():
    # dw = 2^-24 (smallest fp16 subnormal) and dy ~ 1e-38: float32 dw*dy underflows.
    rng = np.random.default_rng(10)
    w = random_weights(rng, 16, 2, specials=[0x0001] * 32)
    x = random_x(rng, 3, 512, 1e-36)
    c, e, b = R.mul_mat(w, x), R.mul_mat_exact(w, x), R.mul_mat_bound(w, x)
    assert np.all(np.isfinite(b)) and np.any(np.abs(c - e) > 1e-6 * np.abs(e))  # big relative error
    assert R.within_bound(c, e, b, c).all()


def test_non_finite_scales_need_exact_equality():
    rng = np.random.default_rng(11)
    w = random_weights(rng, 6, 2, specials=[0x7C00, 0, 0xFC00, 0, 0x7E00, 0, 0x7BFF, 0x7BFF])
    x = random_x(rng, 2, 512, 1e37)                      # 65504 * 1e37/127 overflows float32
    c, e, b = R.mul_mat(w, x), R.mul_mat_exact(w, x), R.mul_mat_bound(w, x)
    assert np.all(np.isinf(b[:, :4]))
    assert not np.isfinite(c[:, :3]).any()
    assert R.within_bound(c, e, b, c).all()
    other = c.copy()
    other[0, 0] = -other[0, 0] if not np.isnan(other[0, 0]) else F32(1.0)
    assert not R.within_bound(other, e, b, c)[0, 0]


def test_within_bound_rules():
    r = np.array([1.0, np.nan, np.inf, -np.inf, 2.0, np.nan], np.float32)
    c = np.array([1.5, np.nan, np.inf, np.inf, 2.0, 2.0], np.float32)
    e = np.array([1.2, 0.0, 1.0, 1.0, 2.0, 2.0])
    b = np.array([0.3, np.inf, 1.0, np.inf, np.inf, 1.0])
    assert R.within_bound(r, e, b, c).tolist() == [True, True, True, False, True, False]


# ---------------------------------------------------------------- mul_mat_id and fused op

def moe_case(rng, n_experts=5, rows=9, nb=2, T=7, top_k=3):
    w = np.stack([random_weights(rng, rows, nb) for _ in range(n_experts)])
    x = random_x(rng, T, nb * 256)
    ids = rng.integers(-1, n_experts, (T, top_k)).astype(np.int32)
    ids[0] = [1, 1, -1]                                  # duplicate expert + unused slot
    ids[1] = -1                                          # a token with no expert
    return w, x, ids


def test_mul_mat_id_matches_per_expert_mul_mat():
    rng = np.random.default_rng(12)
    w, x, ids = moe_case(rng)
    out, ex, bd = R.mul_mat_id(w, x, ids), R.mul_mat_id_exact(w, x, ids), R.mul_mat_id_bound(w, x, ids)
    assert out.shape == (7, 3, 9) and out.dtype == np.float32
    for t in range(7):
        for k in range(3):
            e = ids[t, k]
            if e < 0:
                assert np.all(out[t, k] == 0) and not np.signbit(out[t, k]).any()
                assert np.all(ex[t, k] == 0) and np.all(bd[t, k] == 0)
            else:
                assert np.array_equal(out[t, k].view(np.uint32), R.mul_mat(w[e], x[t:t + 1])[0].view(np.uint32))
                assert np.array_equal(ex[t, k], R.mul_mat_exact(w[e], x[t:t + 1])[0])
                assert np.array_equal(bd[t, k], R.mul_mat_bound(w[e], x[t:t + 1])[0])
    assert np.array_equal(out[0, 0].view(np.uint32), out[0, 1].view(np.uint32))
    assert R.within_bound(out, ex, bd, out).all()


@pytest.mark.parametrize("act", ["silu", "gelu"])
def test_moe_up_gate_composition_and_bound(act):
    rng = np.random.default_rng(13 if act == "silu" else 14)
    w_up, x, ids = moe_case(rng, T=12, rows=40, nb=3)
    w_gate = np.stack([random_weights(rng, 40, 3) for _ in range(w_up.shape[0])])
    canon, exact_act = R.ACTIVATIONS[act]
    up, gate = R.mul_mat_id(w_up, x, ids), R.mul_mat_id(w_gate, x, ids)
    fused = R.moe_up_gate(w_up, w_gate, x, ids, act)
    assert fused.dtype == np.float32 and fused.shape == up.shape
    expect = np.where((ids >= 0)[..., None], up * canon(gate), F32(0))
    assert np.array_equal(fused.view(np.uint32), expect.view(np.uint32))
    ex = R.moe_up_gate_exact(w_up, w_gate, x, ids, act)
    assert np.array_equal(ex, np.where((ids >= 0)[..., None],
                                       R.mul_mat_id_exact(w_up, x, ids) * exact_act(R.mul_mat_id_exact(w_gate, x, ids)), 0.0))
    bd = R.moe_up_gate_bound(w_up, w_gate, x, ids, act)
    assert R.within_bound(fused, ex, bd, fused).all()
    used = (ids >= 0)[..., None] & np.ones_like(bd, bool)
    assert np.median(bd[used] / np.abs(ex[used])) < 1e-3
    other = "gelu" if act == "silu" else "silu"
    wrong = R.moe_up_gate(w_up, w_gate, x, ids, other)
    assert not R.within_bound(wrong, ex, bd, fused).all()


def test_moe_bound_with_special_scales():
    rng = np.random.default_rng(15)
    w_up = np.stack([random_weights(rng, 8, 1, specials=SPECIAL_D_BITS[:8]) for _ in range(3)])
    w_gate = np.stack([random_weights(rng, 8, 1, specials=SPECIAL_D_BITS[7:]) for _ in range(3)])
    x = random_x(rng, 4, 256)
    ids = np.array([[0, 1], [2, -1], [1, 1], [0, 2]], np.int32)
    for act in ("silu", "gelu"):
        c = R.moe_up_gate(w_up, w_gate, x, ids, act)
        e = R.moe_up_gate_exact(w_up, w_gate, x, ids, act)
        b = R.moe_up_gate_bound(w_up, w_gate, x, ids, act)
        assert R.within_bound(c, e, b, c).all()
        assert np.isinf(b).any() and np.isfinite(b).any()

