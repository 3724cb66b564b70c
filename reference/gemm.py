"""GEMM, MoE GEMM and fused up*act(gate) of IQ1_M weights with Q8_K activations.

For each operation three functions: the canonical float32 emulation of docs/numerics.md
(bit-exact target), the float64 value of the same quantized product, and a rigorous
per-element error bound (derivations in bounds.py).

Activations `x` are float32 [n_tokens, K] (quantized here with quantize_q8k, row by row) or
Q8KBlocks [n_tokens, nb] used as they are.
"""
from dataclasses import dataclass

import numpy as np

from . import _checks
from .activations import ACTIVATIONS
from .bounds import gemm_bound, moe_bound, within_bound  # noqa: F401  (re-exported)
from .iq1m import IQ1M_BLOCK_BYTES, QK_K, weight_integers
from .q8k import Q8KBlocks, quantize_q8k


@dataclass(frozen=True)
class _Weights:
    """Decoded weight rows, block-major for the per-block GEMMs."""
    W: np.ndarray    # float64 [nb, 256, rows]: (2s+1) * w, exact small integers
    A: np.ndarray    # float64 [nb, 256, rows]: (2s+1) * (8|grid| + 1), split-absolute magnitude
    dw: np.ndarray   # float32 [nb, rows]


def _decode(w):
    """uint8 [rows, nb*56] -> _Weights."""
    rows, nb = w.shape[0], w.shape[1] // IQ1M_BLOCK_BYTES
    wi, mult, d = weight_integers(w.reshape(rows * nb, IQ1M_BLOCK_BYTES))
    m = np.repeat(mult, 16, axis=1).astype(np.int16)                # [rows*nb, 256]
    W = m * wi                                                       # |.| <= 135
    A = m * np.where(np.abs(wi) >= 7, 9, 1).astype(np.int16)         # 8|grid|+1 from w
    block_major = lambda a: a.reshape(rows, nb, QK_K).transpose(1, 2, 0).astype(np.float64)  # noqa: E731
    return _Weights(block_major(W), block_major(A), d.reshape(rows, nb).T.copy())


def _activations(x, nb):
    """x float32 [T, K] or Q8KBlocks [T, nb] -> Q8KBlocks [T, nb] matching the weights."""
    if isinstance(x, Q8KBlocks):
        if len(x.shape) != 2:
            raise ValueError(f"x as Q8KBlocks must have shape [n_tokens, nb], got {x.shape}")
        _checks.same("x nb", x.nb, "weight nb", nb, "number of blocks")
        return x
    _checks.array("x", x, np.float32, ndim=2)
    xnb = _checks.k_multiple(x.shape[1])
    if xnb != nb:
        raise ValueError(f"K mismatch: x has K={x.shape[1]} but weight rows hold {nb} blocks (K={nb * QK_K})")
    return quantize_q8k(x)


def _sums(Wm, qs):
    """Per-block exact integer dot products in float64: [nb, T, rows].
    |partial sums| <= 256 * 127 * 135 < 2^23, so any summation order is exact."""
    q = qs.transpose(1, 0, 2).astype(np.float64)                    # [nb, T, 256]
    return np.matmul(q, Wm)


def _canonical(wd, q):
    S = _sums(wd.W, q.qs).astype(np.float32)                        # exact: |S_b| < 2^24
    with np.errstate(over="ignore", invalid="ignore", under="ignore"):
        dwdy = q.d.T[:, :, None] * wd.dw[:, None, :]                # float32 [nb, T, rows]
        acc = np.zeros(S.shape[1:], dtype=np.float32)
        for b in range(S.shape[0]):                                 # the contract's order
            acc = acc + dwdy[b] * S[b]
        return np.float32(0.125) * acc


def _exact(wd, q):
    S = _sums(wd.W, q.qs)
    with np.errstate(over="ignore", invalid="ignore"):
        dwdy = q.d.T.astype(np.float64)[:, :, None] * wd.dw.astype(np.float64)[:, None, :]  # exact
        return (dwdy * S).sum(axis=0) / 8.0


def _bound(wd, q):
    nb = wd.W.shape[0]
    Mb = _sums(wd.A, np.abs(q.qs.astype(np.int16)))                 # M'_b, exact integers
    with np.errstate(over="ignore", invalid="ignore", under="ignore"):
        dwdy64 = q.d.T.astype(np.float64)[:, :, None] * wd.dw.astype(np.float64)[:, None, :]
        dwdy32 = q.d.T[:, :, None] * wd.dw[:, None, :]
        M = (np.abs(dwdy64) * Mb).sum(axis=0)
    finite = np.isfinite(dwdy32).all(axis=0) if nb else np.ones(M.shape, bool)
    return gemm_bound(M, Mb.sum(axis=0), nb, finite)


def _gemm_args(w, x):
    nb = _checks.weight_bytes("w", w, ndim=2)
    return w, _activations(x, nb)


def mul_mat(w, x):
    """Canonical out[t, r] (float32 [n_tokens, rows]), bit-exact target."""
    w, q = _gemm_args(w, x)
    return _canonical(_decode(w), q)


def mul_mat_exact(w, x):
    """float64 sum_b dw*dy*S_b/8 (error <= gamma64_nb * 0.125 * M, included in the bound)."""
    w, q = _gemm_args(w, x)
    return _exact(_decode(w), q)


def mul_mat_bound(w, x):
    """Per-element bound on |out - mul_mat_exact| for any evaluation order (bounds.py)."""
    w, q = _gemm_args(w, x)
    return _bound(_decode(w), q)


# ---------------------------------------------------------------- mul_mat_id

def _id_args(w, x, ids, name="w"):
    nb = _checks.weight_bytes(name, w, ndim=3)
    q = _activations(x, nb)
    _checks.ids("ids", ids, q.shape[0], w.shape[0])
    return q


def _per_expert(fn, w, q, ids):
    """out[t, k] = fn(expert ids[t,k] weights, token t) for used slots, +0.0 elsewhere.
    One GEMM per used expert over the distinct tokens routed to it."""
    n_tokens, top_k = ids.shape
    out = np.zeros((n_tokens, top_k, w.shape[1]), dtype=np.float64)
    first = True
    for e in np.unique(ids[ids >= 0]):
        t, k = np.nonzero(ids == e)
        tokens = np.unique(t)
        res = fn(_decode(w[e]), q[tokens])
        if first:
            out = out.astype(res.dtype)
            first = False
        out[t, k] = res[np.searchsorted(tokens, t)]
    return out


def mul_mat_id(w, x, ids):
    """Canonical float32 [n_tokens, top_k, rows]; unused slots (-1) are +0.0."""
    q = _id_args(w, x, ids)
    return _per_expert(_canonical, w, q, ids).astype(np.float32)


def mul_mat_id_exact(w, x, ids):
    q = _id_args(w, x, ids)
    return _per_expert(_exact, w, q, ids)


def mul_mat_id_bound(w, x, ids):
    q = _id_args(w, x, ids)
    return _per_expert(_bound, w, q, ids)


# ---------------------------------------------------------------- fused MoE up * act(gate)

def _moe_args(w_up, w_gate, x, ids, act):
    _checks.act(act)
    q = _id_args(w_up, x, ids, name="w_up")
    _checks.weight_bytes("w_gate", w_gate, ndim=3)
    if w_gate.shape != w_up.shape:
        raise ValueError(f"shape mismatch: w_up has shape {w_up.shape} but w_gate has shape {w_gate.shape}")
    return q


def moe_up_gate(w_up, w_gate, x, ids, act):
    """Canonical float32 [n_tokens, top_k, rows] = float32(up * act(gate)); unused slots +0.0."""
    q = _moe_args(w_up, w_gate, x, ids, act)
    up = _per_expert(_canonical, w_up, q, ids).astype(np.float32)
    gate = _per_expert(_canonical, w_gate, q, ids).astype(np.float32)
    with np.errstate(over="ignore", invalid="ignore", under="ignore"):
        out = up * ACTIVATIONS[act][0](gate)
    return np.where((ids >= 0)[:, :, None], out, np.float32(0.0))


def moe_up_gate_exact(w_up, w_gate, x, ids, act):
    """float64 up_exact * act_exact(gate_exact); unused slots 0."""
    q = _moe_args(w_up, w_gate, x, ids, act)
    up = _per_expert(_exact, w_up, q, ids)
    gate = _per_expert(_exact, w_gate, q, ids)
    with np.errstate(over="ignore", invalid="ignore"):
        out = up * ACTIVATIONS[act][1](gate)
    return np.where((ids >= 0)[:, :, None], out, 0.0)


def moe_up_gate_bound(w_up, w_gate, x, ids, act):
    """Propagated bound on |moe_up_gate - moe_up_gate_exact| (derivation in bounds.py)."""
    q = _moe_args(w_up, w_gate, x, ids, act)
    U = _per_expert(_exact, w_up, q, ids)
    G = _per_expert(_exact, w_gate, q, ids)
    Bu = _per_expert(_bound, w_up, q, ids)
    Bg = _per_expert(_bound, w_gate, q, ids)
    u = _per_expert(_canonical, w_up, q, ids)
    g = _per_expert(_canonical, w_gate, q, ids)
    A = ACTIVATIONS[act][1](G)
    b = moe_bound(U, Bu, A, Bg, np.isfinite(u), np.isfinite(g))
    return np.where((ids >= 0)[:, :, None], b, 0.0)
