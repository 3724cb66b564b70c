"""Q8_K activation blocks (ggml `quantize_row_q8_K_ref`, docs/numerics.md).

Per 256 floats: max = signed value of the first element with the strictly largest |x|;
iscale = -127.f/max; q = min(127, round_half_even(iscale*x)) (float32 product); bsums =
sums of 16; d = 1.f/iscale; all-zero block -> d = 0, qs = 0, bsums = 0.

One corner the contract text does not spell out, resolved as ggml's bytes do: when
|max| < 127/FLT_MAX (about 3.7e-37) the division -127.f/max overflows to +-inf, every
iscale*x is +-inf or NaN, and ggml's `nearest_int` bit trick turns each into an int8 0; so
the block becomes qs = 0, bsums = 0, d = 1/iscale = -+0.0.
"""
from dataclasses import dataclass

import numpy as np

from . import _checks

QK_K = 256
Q8K_BLOCK_BYTES = 292
Q8K_DTYPE = np.dtype([("d", "<f4"), ("qs", "i1", (QK_K,)), ("bsums", "<i2", (QK_K // 16,))])
assert Q8K_DTYPE.itemsize == Q8K_BLOCK_BYTES


@dataclass(frozen=True)
class Q8KBlocks:
    d: np.ndarray      # float32 [..., nb]
    qs: np.ndarray     # int8    [..., nb, 256]
    bsums: np.ndarray  # int16   [..., nb, 16]

    def __post_init__(self):
        _checks.array("Q8KBlocks.d", self.d, np.float32, min_ndim=1)
        _checks.array("Q8KBlocks.qs", self.qs, np.int8)
        _checks.array("Q8KBlocks.bsums", self.bsums, np.int16)
        if self.qs.shape != self.d.shape + (QK_K,):
            raise ValueError(f"Q8KBlocks.qs must have shape {self.d.shape + (QK_K,)}, got {self.qs.shape}")
        if self.bsums.shape != self.d.shape + (QK_K // 16,):
            raise ValueError(f"Q8KBlocks.bsums must have shape {self.d.shape + (16,)}, got {self.bsums.shape}")

    @property
    def shape(self):
        return self.d.shape

    @property
    def nb(self):
        return self.d.shape[-1]

    def __getitem__(self, idx):
        """Select along the leading (token) dims, e.g. q[token_indices]."""
        return Q8KBlocks(self.d[idx], self.qs[idx], self.bsums[idx])


def quantize_q8k(x) -> Q8KBlocks:
    """float32 [..., K] (K % 256 == 0, all finite) -> Q8KBlocks [..., K/256]."""
    _checks.array("x", x, np.float32, min_ndim=1)
    nb = _checks.k_multiple(x.shape[-1])
    _checks.finite("x", x)
    xb = x.reshape(x.shape[:-1] + (nb, QK_K))

    imax = np.argmax(np.abs(xb), axis=-1)[..., None]        # first index of the largest |x|
    vmax = np.take_along_axis(xb, imax, axis=-1)[..., 0]     # its signed value
    zero = vmax == 0
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        iscale = np.float32(-127.0) / vmax                   # float32 division
        q = np.minimum(np.float32(127), np.rint(iscale[..., None] * xb))
        d = np.float32(1.0) / iscale
    dead = zero | np.isinf(iscale)                           # all zero, or iscale overflowed
    qs = np.where(dead[..., None], 0, q).astype(np.int8)
    d = np.where(zero, np.float32(0), d).astype(np.float32)
    bsums = qs.reshape(qs.shape[:-1] + (16, 16)).sum(axis=-1, dtype=np.int16)
    return Q8KBlocks(d, qs, bsums)


def dequantize_q8k(q: Q8KBlocks) -> np.ndarray:
    """Q8KBlocks [..., nb] -> float32 [..., nb*256] = d * qs (float32)."""
    _q8k("q", q)
    y = q.d[..., None] * q.qs.astype(np.float32)
    return y.reshape(q.shape[:-1] + (q.nb * QK_K,))


def q8k_to_bytes(q: Q8KBlocks) -> np.ndarray:
    """Q8KBlocks [..., nb] -> uint8 [..., nb, 292], the C struct {float d; int8 qs[256]; int16 bsums[16]}."""
    _q8k("q", q)
    rec = np.empty(q.shape, dtype=Q8K_DTYPE)
    rec["d"], rec["qs"], rec["bsums"] = q.d, q.qs, q.bsums
    return rec.view(np.uint8).reshape(q.shape + (Q8K_BLOCK_BYTES,))


def q8k_from_bytes(b) -> Q8KBlocks:
    """uint8 [..., nb, 292] -> Q8KBlocks [..., nb] (little-endian C struct layout)."""
    _checks.array("b", b, np.uint8, min_ndim=2)
    if b.shape[-1] != Q8K_BLOCK_BYTES:
        raise ValueError(f"b must have last dimension {Q8K_BLOCK_BYTES} (one Q8_K block), got shape {b.shape}")
    rec = np.ascontiguousarray(b).view(Q8K_DTYPE)[..., 0]
    return Q8KBlocks(rec["d"].astype(np.float32), rec["qs"].astype(np.int8), rec["bsums"].astype(np.int16))


def _q8k(name, q):
    if not isinstance(q, Q8KBlocks):
        raise ValueError(f"{name} must be Q8KBlocks, got {type(q).__name__}")
    return q
