"""GEMM, MoE GEMM and fused up*act(gate) of IQ1_M weights with Q8_K activations.

For each operation three functions: the canonical float32 emulation of docs/numerics.md
(bit-exact target), the float64 value of the same quantized product, and a rigorous
per-element error bound (derivations in bounds.py).

Activations `x` are float32 [n_tokens, K] (quantized here with quantize_q8k, row by row) or
Q8KBlocks [n_tokens, nb] used as they are.
"""
import numpy as np

from . import _checks
from .activations import ACTIVATIONS
from .bounds import gemm_bound, moe_bound, within_bound  # noqa: F401  (re-exported)
from .grid_data import IQ1S_GRID
from .iq1m import IQ1M_BLOCK_BYTES, QK_K, raw_fields
from .q8k import Q8KBlocks, quantize_q8k


# Per 8-weight group: the group's 8 integers (2s+1) * w, w = 8*grid + sign, and their split
# magnitudes (2s+1) * (8|grid| + 1), for every (grid index, delta sign, scale code): the
# same products weight_integers() and the multipliers give, looked up in one gather per
# group instead of computed in a pass per field. Index ((grid << 1) | negative) << 3 | s.
_GRID = IQ1S_GRID.astype(np.int16)[:, None, None, :]                                # [2048, 1, 1, 8]
_SIGN = np.array([1, -1], dtype=np.int16)[None, :, None, None]                       # delta bit clear: +
_MULT = (2 * np.arange(8, dtype=np.int16) + 1)[None, None, :, None]                # 2s + 1
_W_TABLE = (_MULT * (8 * _GRID + _SIGN)).reshape(-1, 8).astype(np.float32)
_A_TABLE = (_MULT * (8 * np.abs(_GRID) + 1) + 0 * _SIGN).reshape(-1, 8).astype(np.float32)


class _Weights:
    """Decoded weight rows of one matrix, block-major for the per-block GEMMs."""

    def __init__(self, group, d, rows, nb):
        self._group, self.rows, self.nb = group, rows, nb              # group: int32 [rows*nb, 32]
        self.dw = d.reshape(rows, nb).T.copy()                       # float32 [nb, rows]
        self._W = self._A = None

    def _block_major(self, table):
        a = np.take(table, self._group, axis=0)                     # [rows*nb, 32, 8]
        # a transposed view (no copy): the matrix product reads it as a transposed operand
        return a.reshape(self.rows, self.nb, QK_K).transpose(1, 2, 0)

    @property
    def W(self):
        """float32 [nb, 256, rows]: (2s+1) * w, exact small integers."""
        if self._W is None:
            self._W = self._block_major(_W_TABLE)                      # |.| <= 135
        return self._W

    @property
    def A(self):
        """float32 [nb, 256, rows]: (2s+1) * (8|grid| + 1), the split-absolute magnitude."""
        if self._A is None:
            self._A = self._block_major(_A_TABLE)
        return self._A


def _groups(blocks):
    """uint8 [n, 56] -> (table index int32 [n, 32] per group, d float32 [n])."""
    grid_index, negative, scale, d_bits = raw_fields(blocks)
    group = ((grid_index.astype(np.int32) << 1 | negative) << 3) | np.repeat(scale, 2, axis=1)
    return group, d_bits.view(np.float16).astype(np.float32)


def _decode(w):
    """uint8 [rows, nb*56] -> _Weights."""
    rows, nb = w.shape[0], w.shape[1] // IQ1M_BLOCK_BYTES
    group, d = _groups(w.reshape(rows * nb, IQ1M_BLOCK_BYTES))
    return _Weights(group, d, rows, nb)


def _decode_experts(w, experts):
    """uint8 [n_experts, rows, nb*56] -> {expert: _Weights} for `experts`, decoded at once."""
    rows, nb = w.shape[1], w.shape[2] // IQ1M_BLOCK_BYTES
    if not len(experts):
        return {}
    group, d = _groups(w[experts].reshape(-1, IQ1M_BLOCK_BYTES))
    n = rows * nb
    return {int(e): _Weights(group[i * n:(i + 1) * n], d[i * n:(i + 1) * n], rows, nb)
            for i, e in enumerate(experts)}


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
    """Per-block exact integer dot products: float32 [nb, T, rows]. Every product and every
    partial sum is an integer below 256 * 127 * 135 < 2^23, exact in float32 whatever the
    summation order (or fused multiply-adds) of the matrix product."""
    q = qs.transpose(1, 0, 2).astype(np.float32)                    # [nb, T, 256]
    return np.matmul(q, Wm)


# The three forms, on per-block sums S (or magnitudes M'_b) [nb, n, rows] and the scales
# dy [nb, n, 1] (activations) and dw [nb, 1 or n, rows] (weights), n being tokens (a dense
# GEMM) or (token, slot) pairs (a routed one).

def _canonical(S, dy, dw):
    with np.errstate(over="ignore", invalid="ignore", under="ignore"):
        dwdy = dy * dw                                              # float32 [nb, n, rows]
        acc = np.zeros(dwdy.shape[1:], dtype=np.float32)
        for b in range(S.shape[0]):                                 # the contract's order
            acc = acc + dwdy[b] * S[b]
        return np.float32(0.125) * acc


def _exact(S, dy, dw):
    with np.errstate(over="ignore", invalid="ignore"):
        dwdy = dy.astype(np.float64) * dw.astype(np.float64)        # exact
        return (dwdy * S.astype(np.float64)).sum(axis=0) / 8.0


def _bound(Mb, dy, dw):
    nb = Mb.shape[0]
    Mb = Mb.astype(np.float64)                                      # M'_b, exact integers
    with np.errstate(over="ignore", invalid="ignore", under="ignore"):
        dwdy64 = dy.astype(np.float64) * dw.astype(np.float64)
        dwdy32 = dy * dw
        M = (np.abs(dwdy64) * Mb).sum(axis=0)
    finite = np.isfinite(dwdy32).all(axis=0) if nb else np.ones(M.shape, bool)
    return gemm_bound(M, Mb.sum(axis=0), nb, finite)


_FORMS = {"canonical": (_canonical, "W"), "exact": (_exact, "W"), "bound": (_bound, "A")}


def _qs(q, weights):
    """The activations' side of the sums: qs for the products, |qs| for the magnitudes."""
    return q.qs if weights == "W" else np.abs(q.qs.astype(np.int16))


def _dense(form, w, q):
    fn, weights = _FORMS[form]
    wd = _decode(w)
    S = _sums(getattr(wd, weights), _qs(q, weights))
    return fn(S, q.d.T[:, :, None], wd.dw[:, None, :])


def _gemm_args(w, x):
    nb = _checks.weight_bytes("w", w, ndim=2)
    return w, _activations(x, nb)


def mul_mat(w, x):
    """Canonical out[t, r] (float32 [n_tokens, rows]), bit-exact target."""
    w, q = _gemm_args(w, x)
    return _dense("canonical", w, q)


def mul_mat_exact(w, x):
    """float64 sum_b dw*dy*S_b/8 (error <= gamma64_nb * 0.125 * M, included in the bound)."""
    w, q = _gemm_args(w, x)
    return _dense("exact", w, q)


def mul_mat_bound(w, x):
    """Per-element bound on |out - mul_mat_exact| for any evaluation order (bounds.py)."""
    w, q = _gemm_args(w, x)
    return _dense("bound", w, q)


# ---------------------------------------------------------------- mul_mat_id

def _id_args(w, x, ids, name="w"):
    nb = _checks.weight_bytes(name, w, ndim=3)
    q = _activations(x, nb)
    _checks.ids("ids", ids, q.shape[0], w.shape[0])
    return q


def _per_expert(form, w, q, ids, decoded=None):
    """out[t, k] = `form` of expert ids[t, k]'s rows with token t for the used slots, 0
    elsewhere: per used expert one product of its rows with the distinct tokens routed to it
    (the exact integer sums), then the form's float sequence on every used slot at once.
    `decoded`: the used experts' weights already decoded (_decode_experts), shared by forms."""
    fn, weights = _FORMS[form]
    n_tokens, top_k = ids.shape
    rows = w.shape[1]
    t_all, k_all = np.nonzero(ids >= 0)
    e_all = ids[t_all, k_all]
    used = np.unique(e_all)
    decoded = _decode_experts(w, used) if decoded is None else decoded
    nb = w.shape[2] // IQ1M_BLOCK_BYTES
    S = np.empty((nb, len(t_all), rows), dtype=np.float32)
    dw = np.empty((nb, len(t_all), rows), dtype=np.float32)
    qs = _qs(q, weights)
    for e in used:
        slots = np.nonzero(e_all == e)[0]
        tokens = np.unique(t_all[slots])
        wd = decoded[int(e)]
        S[:, slots] = _sums(getattr(wd, weights), qs[tokens])[:, np.searchsorted(tokens, t_all[slots])]
        dw[:, slots] = wd.dw[:, None, :]
    res = fn(S, q.d[t_all].T[:, :, None], dw)
    out = np.zeros((n_tokens, top_k, rows), dtype=res.dtype)
    out[t_all, k_all] = res
    return out


def _used(ids):
    return np.unique(ids[ids >= 0])


def mul_mat_id(w, x, ids):
    """Canonical float32 [n_tokens, top_k, rows]; unused slots (-1) are +0.0."""
    q = _id_args(w, x, ids)
    return _per_expert("canonical", w, q, ids)


def mul_mat_id_exact(w, x, ids):
    q = _id_args(w, x, ids)
    return _per_expert("exact", w, q, ids)


def mul_mat_id_bound(w, x, ids):
    q = _id_args(w, x, ids)
    return _per_expert("bound", w, q, ids)


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
    up = _per_expert("canonical", w_up, q, ids).astype(np.float32)
    gate = _per_expert("canonical", w_gate, q, ids).astype(np.float32)
    with np.errstate(over="ignore", invalid="ignore", under="ignore"):
        out = up * ACTIVATIONS[act][0](gate)
    return np.where((ids >= 0)[:, :, None], out, np.float32(0.0))


def moe_up_gate_exact(w_up, w_gate, x, ids, act):
    """float64 up_exact * act_exact(gate_exact); unused slots 0."""
    q = _moe_args(w_up, w_gate, x, ids, act)
    up = _per_expert("exact", w_up, q, ids)
    gate = _per_expert("exact", w_gate, q, ids)
    with np.errstate(over="ignore", invalid="ignore"):
        out = up * ACTIVATIONS[act][1](gate)
    return np.where((ids >= 0)[:, :, None], out, 0.0)


def moe_up_gate_bound(w_up, w_gate, x, ids, act):
    """Propagated bound on |moe_up_gate - moe_up_gate_exact| (derivation in bounds.py)."""
    q = _moe_args(w_up, w_gate, x, ids, act)
    du, dg = _decode_experts(w_up, _used(ids)), _decode_experts(w_gate, _used(ids))
    U = _per_expert("exact", w_up, q, ids, du)
    G = _per_expert("exact", w_gate, q, ids, dg)
    Bu = _per_expert("bound", w_up, q, ids, du)
    Bg = _per_expert("bound", w_gate, q, ids, dg)
    u = _per_expert("canonical", w_up, q, ids, du)
    g = _per_expert("canonical", w_gate, q, ids, dg)
    A = ACTIVATIONS[act][1](G)
    b = moe_bound(U, Bu, A, Bg, np.isfinite(u), np.isfinite(g))
    return np.where((ids >= 0)[:, :, None], b, 0.0)
