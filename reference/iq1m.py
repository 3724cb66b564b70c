"""IQ1_M super-blocks: 256 weights in 56 bytes `qs[32] qh[16] scales[8]` (docs/numerics.md).

    group g (0..31, 8 weights):  index = qs[g] | ((qh[g/2] >> 4*(g%2)) & 7) << 8
                                 delta sign = (qh[g/2] >> 4*(g%2)) & 8   (set: -1/8)
    sub-block j (0..15, 16 w.):  s = (sc[j/4] >> 3*(j%4)) & 7,  multiplier 2s+1
                                 (sc[i] = little-endian uint16 words of `scales`)
    fp16 super-scale bits:       sc0>>12 | (sc1>>8)&0xf0 | (sc2>>4)&0xf00 | sc3&0xf000
    weight integer               w = 8*grid + sign  in {-9,-7,-1,1,7,9}
    dequantized weight           d * float((2s+1)*w) * 0.125f   (float32, exact)
"""
from dataclasses import dataclass

import numpy as np

from . import _checks
from .grid_data import IQ1S_GRID

QK_K = 256
IQ1M_BLOCK_BYTES = 56
N_GROUPS = QK_K // 8       # 32 grid rows per block
N_SUB = QK_K // 16         # 16 scaled sub-blocks per block


def _field(name, a, shape, dtype, lo, hi):
    a = np.asarray(a)
    if a.shape != shape:
        raise ValueError(f"IQ1MFields.{name} must have shape {shape}, got {a.shape}")
    if dtype is bool:
        if a.dtype != np.bool_:
            raise ValueError(f"IQ1MFields.{name} must be bool, got {a.dtype}")
        return a.copy()
    if not (np.issubdtype(a.dtype, np.integer)):
        raise ValueError(f"IQ1MFields.{name} must be an integer array, got {a.dtype}")
    if a.size and (a.min() < lo or a.max() > hi):
        raise ValueError(f"IQ1MFields.{name} values must be in [{lo}, {hi}], got [{a.min()}, {a.max()}]")
    return a.astype(dtype)


@dataclass(frozen=True)
class IQ1MFields:
    """The decoded fields of n IQ1_M blocks (arrays are copied and cast on construction)."""
    grid_index: np.ndarray      # uint16 [n, 32], 0..2047
    delta_negative: np.ndarray  # bool   [n, 32]
    scale: np.ndarray           # uint8  [n, 16], 0..7
    d_bits: np.ndarray          # uint16 [n], fp16 bit pattern of the super-scale

    def __post_init__(self):
        d_bits = np.asarray(self.d_bits)
        if d_bits.ndim != 1:
            raise ValueError(f"IQ1MFields.d_bits must be 1-D [n], got shape {d_bits.shape}")
        n = d_bits.shape[0]
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        set_("d_bits", _field("d_bits", d_bits, (n,), np.uint16, 0, 0xFFFF))
        set_("grid_index", _field("grid_index", self.grid_index, (n, N_GROUPS), np.uint16, 0, 2047))
        set_("delta_negative", _field("delta_negative", self.delta_negative, (n, N_GROUPS), bool, 0, 1))
        set_("scale", _field("scale", self.scale, (n, N_SUB), np.uint8, 0, 7))

    def __len__(self):
        return self.d_bits.shape[0]


def as_blocks(w):
    """Reshape a uint8 array whose last dim is a multiple of 56 into blocks [-1, 56]."""
    _checks.array("w", w, np.uint8, min_ndim=1)
    _checks.weight_bytes("w", w, ndim=w.ndim)
    return w.reshape(-1, IQ1M_BLOCK_BYTES)


def _blocks(blocks):
    _checks.array("blocks", blocks, np.uint8, ndim=2)
    if blocks.shape[1] != IQ1M_BLOCK_BYTES:
        raise ValueError(f"blocks must have shape [n, {IQ1M_BLOCK_BYTES}], got {blocks.shape}")
    return blocks


def decode_fields(blocks) -> IQ1MFields:
    """uint8 [n, 56] -> IQ1MFields."""
    return IQ1MFields(*raw_fields(_blocks(blocks)))


def raw_fields(blocks):
    """uint8 [n, 56] (already checked) -> (grid_index uint16 [n, 32], delta_negative bool
    [n, 32], scale uint8 [n, 16], d_bits uint16 [n]): decode_fields without building (and
    re-checking) an IQ1MFields, for the GEMM reference's inner loop."""
    n = blocks.shape[0]
    qs = blocks[:, 0:32].astype(np.uint16)
    qh = blocks[:, 32:48]
    sc = blocks[:, 48:56:2].astype(np.uint16) | (blocks[:, 49:56:2].astype(np.uint16) << 8)  # [n, 4]

    nibble = np.empty((n, N_GROUPS), dtype=np.uint8)  # group g: nibble g%2 of qh[g/2]
    nibble[:, 0::2] = qh & 0xF
    nibble[:, 1::2] = qh >> 4
    grid_index = qs | ((nibble & 7).astype(np.uint16) << 8)
    delta_negative = (nibble & 8) != 0
    scale = np.empty((n, 4, 4), dtype=np.uint16)      # sub-block 4i + j: bits 3j.. of word i
    for j in range(4):
        scale[:, :, j] = (sc >> (3 * j)) & 7
    scale = scale.reshape(n, N_SUB)
    d_bits = (sc[:, 0] >> 12) | ((sc[:, 1] >> 8) & 0x00F0) | ((sc[:, 2] >> 4) & 0x0F00) | (sc[:, 3] & 0xF000)
    return grid_index, delta_negative, scale.astype(np.uint8), d_bits


def encode_fields(fields: IQ1MFields) -> np.ndarray:
    """IQ1MFields -> uint8 [n, 56] (inverse of decode_fields)."""
    if not isinstance(fields, IQ1MFields):
        raise ValueError(f"fields must be IQ1MFields, got {type(fields).__name__}")
    n = len(fields)
    gi = fields.grid_index
    qs = (gi & 0xFF).astype(np.uint8)
    nibble = ((gi >> 8) | (fields.delta_negative.astype(np.uint16) << 3)).reshape(n, 16, 2)
    qh = (nibble[:, :, 0] | (nibble[:, :, 1] << 4)).astype(np.uint8)
    s = fields.scale.astype(np.uint16).reshape(n, 4, 4)
    sc = (s << np.array([0, 3, 6, 9], dtype=np.uint16)).sum(axis=2, dtype=np.uint16)
    sc |= ((fields.d_bits[:, None] >> np.array([0, 4, 8, 12], dtype=np.uint16)) & 0xF) << 12
    sc_bytes = np.stack([sc & 0xFF, sc >> 8], axis=2).reshape(n, 8).astype(np.uint8)
    return np.concatenate([qs, qh, sc_bytes], axis=1)


def weight_integers(blocks):
    """uint8 [n, 56] -> (w int8 [n,256] = 8*grid + sign, mult uint8 [n,16] = 2s+1, d float32 [n])."""
    f = decode_fields(blocks)
    n = len(f)
    grid = IQ1S_GRID[f.grid_index]                                  # [n, 32, 8] in {-1,0,1}
    sign = np.where(f.delta_negative, -1, 1).astype(np.int8)[:, :, None]
    w = (8 * grid + sign).astype(np.int8).reshape(n, QK_K)
    mult = (2 * f.scale + 1).astype(np.uint8)
    d = f.d_bits.view(np.float16).astype(np.float32)
    return w, mult, d


PREPACKED_BLOCK_BYTES = 80


def prepack(blocks) -> np.ndarray:
    """uint8 [n, 56] -> uint8 [n, 80]: the library's lossless prepacked encoding
    (docs/numerics.md, "Prepacked weights"): 64 bytes of 2-bit grid values + 1 (byte i holds
    weights i, i+64, i+128, i+192 in bits 0-1, 2-3, 4-5, 6-7), 4 bytes with bit g set when
    group g's delta sign is +, the 8 scale bytes, 4 zero bytes."""
    blocks = _blocks(blocks)
    f = decode_fields(blocks)
    n = len(f)
    g1 = (IQ1S_GRID[f.grid_index] + 1).astype(np.uint8).reshape(n, 4, 64)   # [n, j, i] weight 64j + i
    q2 = (g1 << (2 * np.arange(4, dtype=np.uint8))[None, :, None]).sum(axis=1, dtype=np.uint8)
    plus = np.packbits(~f.delta_negative, axis=1, bitorder="little")        # [n, 4]
    return np.concatenate([q2, plus, blocks[:, 48:56], np.zeros((n, 4), np.uint8)], axis=1)


def dequantize(blocks) -> np.ndarray:
    """uint8 [n, 56] -> float32 [n, 256]: d * float((2s+1)*w) * 0.125f, every op float32."""
    w, mult, d = weight_integers(blocks)
    n = w.shape[0]
    mw = (np.repeat(mult, 16, axis=1).astype(np.int16) * w).astype(np.float32)  # |.| <= 135, exact
    with np.errstate(invalid="ignore", over="ignore"):
        return (d[:, None] * mw) * np.float32(0.125) if n else np.zeros((0, QK_K), np.float32)
