"""Argument validation shared by the reference modules.

Every check raises ValueError with a message that names the argument and says what is
wrong, so a caller (the harness, a test, a person at a REPL) can act on it.
"""
import numpy as np

QK_K = 256
IQ1M_BLOCK_BYTES = 56
ACTS = ("silu", "gelu")


def array(name, a, dtype, ndim=None, min_ndim=None):
    """`a` as an ndarray of exactly `dtype` (no silent casts) and the given rank."""
    if not isinstance(a, np.ndarray):
        raise ValueError(f"{name} must be a numpy array of {np.dtype(dtype).name}, got {type(a).__name__}")
    if a.dtype != np.dtype(dtype):
        raise ValueError(f"{name} must have dtype {np.dtype(dtype).name}, got {a.dtype}")
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {a.shape}")
    if min_ndim is not None and a.ndim < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} dimension(s), got shape {a.shape}")
    return a


def k_multiple(K, what="K"):
    if K % QK_K != 0:
        raise ValueError(f"{what}={K} is not a multiple of {QK_K}")
    return K // QK_K


def weight_bytes(name, w, ndim):
    """IQ1_M weight rows: uint8 [..., nb*56] with `ndim` dimensions; returns nb."""
    array(name, w, np.uint8, ndim=ndim)
    nbytes = w.shape[-1]
    if nbytes % IQ1M_BLOCK_BYTES != 0:
        raise ValueError(f"{name} row length {nbytes} bytes is not a multiple of {IQ1M_BLOCK_BYTES} (one IQ1_M block)")
    return nbytes // IQ1M_BLOCK_BYTES


def same(name_a, a, name_b, b, what):
    if a != b:
        raise ValueError(f"{what} mismatch: {name_a}={a} but {name_b}={b}")


def ids(name, ids_, n_tokens, n_experts):
    array(name, ids_, np.int32, ndim=2)
    if ids_.shape[0] != n_tokens:
        raise ValueError(f"{name} has {ids_.shape[0]} rows but x has {n_tokens} tokens")
    bad = (ids_ < -1) | (ids_ >= n_experts)
    if bad.any():
        t, k = np.argwhere(bad)[0]
        raise ValueError(
            f"{name}[{t}, {k}] = {int(ids_[t, k])} is outside [-1, {n_experts}) (n_experts={n_experts})")
    return ids_


def act(act_):
    if act_ not in ACTS:
        raise ValueError(f"unknown act {act_!r}; expected one of {ACTS}")
    return act_


def finite(name, x):
    """Reject NaN/inf, naming the first offending element by its index."""
    bad = ~np.isfinite(x)
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        row = idx[:-1] if len(idx) != 2 else idx[0]
        where = f" (row {row}, element {idx[-1]})" if len(idx) > 1 else ""
        raise ValueError(
            f"{name} has a non-finite value {float(x[idx])} at index {idx}{where}; "
            "Q8_K quantization needs finite input")
