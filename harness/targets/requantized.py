"""Error bounds for a ggml fork's lossy repacked path: ik_llama.cpp's IQ1_M -> Q8_K_R8.

At >= 32 tokens per expert (the build says where: libggml probes `iqk_dequant_type`), ik
converts each row's IQ1_M block to int8 and runs an int8 GEMM. That conversion is lossy by
design, so those outputs lie outside the exact-product bound of docs/numerics.md (by 10^3
and more on typical weights) without being wrong. Judging them needs the error of that
design, derived here from what the conversion does (iqk_gemm_1bit.cpp, IQ1_M -> Q8_K_R8;
iqk_gemm_kquants.cpp, the Q8_K_R8 x Q8_K kernel); tests/ggml/test_ik_build.py confirms the
model against the library's own converter, byte for byte.

Per row and 256-block, with w' = (2s+1)(8 grid + sign) the exact weight integers (|w'| <= 135):
  M = max |w'|; dnew = fl(M / 126) when M > 126, else 1 (the integers kept as they are);
  q'' = round_half_even(fl(fl(1/dnew) w')) (in [-126, 126]);
  D = fp16(fl(fl(0.125 dw) dnew)) (round to nearest even: lossy when dnew != 1, and
      when 0.125 dw is an fp16 subnormal).
The kernel adds 127 to every weight (unsigned x signed dot products) and takes it back with
the Q8_K block's `sum` field:  acc = fma(fl(D dy), I, acc); acc = fma(fl(-127 D), sum, acc)
with I = sum (q''+127) q exact. Hence, against the exact product of the same quantized
inputs (sum_b 0.125 dw dy sum_i w'_i q_i):
  |out - exact| <= sum_b [ 0.125 |dw dy| sum_i |q_i| |dnew q''_i - w'_i|       (weight rounding)
                         + |dy| |D - 0.125 dw dnew| |sum_i q_i q''_i|          (scale rounding)
                         + gamma_{2nb+2} |D dy| (sum_i |q_i| (q''_i+127) + 127 |sum_i q_i| (1+u)) ]
                  (1 + 2^-40) + 2^-140                                          (evaluation)
The first two terms are the deviation itself, computed exactly; the third bounds the float
evaluation (two fused multiply-adds per block, each product and sum rounded once). It
assumes finite values; where the exact bound has no finite value the exact bound's rules
apply unchanged.
"""
from __future__ import annotations

import numpy as np

import reference
from reference.bounds import gamma, moe_bound

U = 2.0 ** -24
INFLATE = 1.0 + 2.0 ** -40
TINY = 2.0 ** -140
# ik's SIMD SiLU and GELU (v_silu, v_gelu, 8 and 16 lanes) measured against float64 on this
# build: <= 3 and <= 112 ulp (the lane width a row gets depends on the thread split). A
# measured allowance, not a derived bound: a by-design deviation must not be called a bug.
ACT_ULP = 128.0


def repack_q8_k_r8(w: np.ndarray):
    """IQ1_M rows uint8 [R, nb*56] -> (q'' int16 [R, nb, 256], D float32 [R, nb],
    dnew float32 [R, nb], w' int32 [R, nb, 256], dw float32 [R, nb])."""
    rows = w.shape[0]
    nb = w.shape[1] // reference.IQ1M_BLOCK_BYTES
    wi, mult, dw = reference.weight_integers(w.reshape(rows * nb, reference.IQ1M_BLOCK_BYTES))
    wp = np.repeat(mult, 16, axis=1).astype(np.int32) * wi.astype(np.int32)
    big = np.abs(wp).max(axis=1) > 126
    dnew = np.where(big, (np.abs(wp).max(axis=1).astype(np.float32) / np.float32(126)).astype(np.float32),
                    np.float32(1))
    inv = (np.float32(1) / dnew).astype(np.float32)
    q = np.where(big[:, None], np.rint((inv[:, None] * wp.astype(np.float32)).astype(np.float32)), wp)
    with np.errstate(over="ignore", invalid="ignore"):
        d = (np.float32(0.125) * dw).astype(np.float32)
        D = (d * dnew).astype(np.float32).astype(np.float16).astype(np.float32)
    shape = (rows, nb)
    return (q.astype(np.int16).reshape(*shape, 256), D.reshape(shape), dnew.reshape(shape),
            wp.reshape(*shape, 256), np.asarray(dw, np.float32).reshape(shape))


def q8_k_r8_bound(w: np.ndarray, q: "reference.Q8KBlocks") -> np.ndarray:
    """float64 [T, R]: the bound above for rows w [R, nb*56] and activations q [T, nb]."""
    qq, D, dnew, wp, dw = repack_q8_k_r8(w)
    dy = q.d.astype(np.float64)                                   # [T, nb]
    qy = q.qs.astype(np.float64)                                  # [T, nb, 256]
    aq = np.abs(qy)
    with np.errstate(over="ignore", invalid="ignore"):
        dwdy = np.abs(dw.astype(np.float64).T[None] * dy[:, :, None])                # [T, nb, R]
        rounding = np.abs(dnew[..., None].astype(np.float64) * qq - wp)               # [R, nb, 256]
        e_weights = 0.125 * dwdy * np.einsum("tbi,rbi->tbr", aq, rounding)
        e_scale = (np.abs(D.astype(np.float64) - 0.125 * dw.astype(np.float64) * dnew).T[None]
                   * np.abs(dy)[:, :, None] * np.abs(np.einsum("tbi,rbi->tbr", qy, qq.astype(np.float64))))
        offset = np.einsum("tbi,rbi->tbr", aq, qq.astype(np.float64) + 127.0)
        sums = np.abs(qy.sum(axis=-1))[:, :, None]
        e_eval = (gamma(2 * q.nb + 2) * np.abs(D.astype(np.float64).T[None] * dy[:, :, None])
                  * (offset + 127.0 * sums * (1.0 + U)))
        return (e_weights + e_scale + e_eval).sum(axis=1) * INFLATE + TINY


def _expert_bounds(spec, a, weights: str, q, counts, threshold: int):
    """[T, top_k, R] (routed) or [T, R]: the Q8_K_R8 bound of each product computed on the
    repacked path; NaN elsewhere (not on that path, or an unused slot)."""
    w = a[weights]
    if not spec.routed:
        out = np.full((spec.n_tokens(a), spec.rows(a)), np.nan)
        if counts[0] >= threshold:
            out[:] = q8_k_r8_bound(w, q)
        return out
    ids = a["ids"]
    out = np.full(spec.output_shape(a), np.nan)
    for e in np.unique(ids[ids >= 0]):
        if counts[e] < threshold:
            continue
        t, s = np.nonzero(ids == e)
        tokens = np.unique(t)
        b = q8_k_r8_bound(w[e], q[tokens])
        out[t, s] = b[np.searchsorted(tokens, t)]
    return out


def repacked_bound(spec, a, act: str, q, counts, threshold: int) -> np.ndarray:
    """The bound of every output element computed on the repacked path (NaN elsewhere), for
    any op of harness.ops: the GEMM bound, or for an op with an activation the bound of
    up * act(gate) propagated from the up and gate bounds (reference.bounds.moe_bound, with
    the fork's activation allowance ACT_ULP)."""
    if not spec.has_activation:
        return _expert_bounds(spec, a, spec.weights[0], q, counts, threshold)
    up_w, gate_w = spec.weights
    bu = _expert_bounds(spec, a, up_w, q, counts, threshold)
    bg = _expert_bounds(spec, a, gate_w, q, counts, threshold)
    up = reference.mul_mat_id_exact(a[up_w], q, a["ids"])
    gate = reference.mul_mat_id_exact(a[gate_w], q, a["ids"])
    act_exact = {"silu": reference.silu_exact, "gelu": reference.gelu_exact}[act]
    with np.errstate(over="ignore", invalid="ignore"):
        b = moe_bound(up, np.nan_to_num(bu, nan=0.0), act_exact(gate), np.nan_to_num(bg, nan=0.0),
                      np.isfinite(up), np.isfinite(gate), act_ulp=ACT_ULP)
    return np.where(np.isnan(bu), np.nan, b)
