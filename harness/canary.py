"""Output canaries: every output buffer is filled with a pattern before the call, so an
element the library forgot to write is seen as such, instead of passing as a `+0.0` that
happens to be expected.

The patterns are values the library can never produce itself, one family per kind of
output, with a different member per run of a case (so an unwritten element also shows as a
divergence between runs):

- float32: a *signalling* NaN (quiet bit clear) whose low payload bits are not all zero.
  Arithmetic on NaN always returns a quiet NaN, and the only NaN inputs of the ops are
  fp16 super-scales, whose payloads have 13 low zero bits once widened; so these bits in
  an output mean "never written" (or copied from an unwritten buffer).
- Q8_K blocks: d = the float32 canary, every qs = -128 and every bsums = -32768 + run:
  the quantizer's qs are in [-127, 127] and a bsums is at most 16 * 127 in magnitude.
- prepacked blocks: 0xFF in the 2-bit grid bytes (grid + 1 = 3 is not a grid value) and a
  non-zero pattern in the 4 bytes the format defines as zero. The `plus` and `scales`
  bytes can hold any value: there the run's byte pattern differs between runs and from the
  reference, so a miss shows as a divergence or a mismatch.

The same functions serve every target's binding (the kernels', ggml's result tensors).
"""
from __future__ import annotations

import numpy as np

FLOAT_FAMILY = 0x7FA50000  # exponent all ones, quiet bit (1 << 22) clear: signalling NaN
QS_CANARY = -128
BSUMS_FAMILY = -32768
PREPACK_Q2 = 0xFF


def float_bits(run: int) -> int:
    """The float32 canary of run `run` (an index; the batch sub-run has its own)."""
    return FLOAT_FAMILY | (((run + 1) * 0x9E37) & 0xFFFE) | 1


def byte_pattern(run: int, n: int) -> np.ndarray:
    """n bytes that differ between runs (for fields where every value is valid)."""
    return ((np.arange(n, dtype=np.uint32) * 0x3D + 0xA5 + 0x5B * run) & 0xFF).astype(np.uint8)


def is_canary_float(bits: int) -> bool:
    """Whether float32 bits belong to the canary family (any run)."""
    return (bits & 0xFFFF0000) == FLOAT_FAMILY and bits & 1 == 1


def fill_float(out: np.ndarray, run: int) -> np.ndarray:
    out.view(np.uint32).fill(float_bits(run))
    return out


def unwritten_float(out: np.ndarray, run: int) -> np.ndarray:
    """Elementwise: still holding run `run`'s canary."""
    return np.asarray(out, dtype=np.float32).view(np.uint32) == np.uint32(float_bits(run))


# -- Q8_K blocks (uint8 [..., 292]: float d, int8 qs[256], int16 bsums[16]) -------------------

def fill_q8k(out: np.ndarray, run: int) -> np.ndarray:
    rec = out.reshape(-1, 292)
    rec[:, 0:4] = np.frombuffer(np.uint32(float_bits(run)).tobytes(), np.uint8)
    rec[:, 4:260] = np.uint8(QS_CANARY & 0xFF)
    rec[:, 260:292] = np.frombuffer(np.int16(BSUMS_FAMILY + (run & 0xFF)).tobytes() * 16, np.uint8)
    return out


def unwritten_q8k(out: np.ndarray, run: int) -> dict[str, np.ndarray]:
    """Per block ([..., nb] masks): which fields still hold the canary."""
    shape = out.shape[:-1]
    rec = np.ascontiguousarray(out).reshape(-1, 292)
    d = rec[:, 0:4].copy().view(np.uint32)[:, 0] == np.uint32(float_bits(run))
    qs = (rec[:, 4:260].view(np.int8) == QS_CANARY).any(axis=1)
    bsums = (rec[:, 260:292].copy().view(np.int16) == np.int16(BSUMS_FAMILY + (run & 0xFF))).any(axis=1)
    return {"d": d.reshape(shape), "qs": qs.reshape(shape), "bsums": bsums.reshape(shape)}


# -- prepacked blocks (uint8 [..., 80]: q2[64] plus[4] scales[8] zero[4]) ---------------------

def fill_prepacked(out: np.ndarray, run: int) -> np.ndarray:
    rec = out.reshape(-1, 80)
    rec[:, 0:64] = PREPACK_Q2
    rec[:, 64:76] = byte_pattern(run, 12)
    rec[:, 76:80] = byte_pattern(run, 4) | 1  # never the format's zero
    return out


def unwritten_prepacked(out: np.ndarray, run: int) -> dict[str, np.ndarray]:
    shape = out.shape[:-1]
    rec = np.ascontiguousarray(out).reshape(-1, 80)
    q2 = (rec[:, 0:64] == PREPACK_Q2).any(axis=1)
    zero = (rec[:, 76:80] == (byte_pattern(run, 4) | 1)).any(axis=1)
    return {"q2": q2.reshape(shape), "zero": zero.reshape(shape)}
