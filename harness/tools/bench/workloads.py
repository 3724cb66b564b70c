"""What `bench` times: the shapes, their data, and the work and bytes a figure is made of.

A shape is a dict (`op`, `k`, `rows`, `tokens`, and for the MoE layer `experts`, `top_k`)
that each record of bench.json repeats. Its arrays are named as harness.ops names them, so
either binding's prepared call takes them as they are.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np

from ...targets.libiq1m import BLOCK_BYTES, QK_K

MUL_MAT_K = MUL_MAT_M = 4096
MUL_MAT_NS = (1, 2, 4, 8, 16, 31, 32, 64, 128, 512)
MOE_K, MOE_ROWS, MOE_EXPERTS, MOE_TOP_K = 7168, 2048, 16, 8  # Kimi-K2's layer, 16 of 384 experts
MOE_TOKENS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
SMOKE_TOKENS = (1, 32)  # both ops, the same layers
ACT = "silu"
# ik_llama.cpp asserts rows % 8 == 0 from 32 tokens on (its 8-row int8 repack): every
# shape's rows are a multiple of 8, so that a peer's failure is never the shape's fault
ROW_MULTIPLE = 8


def shapes(smoke: bool = False, tokens: Iterable[int] | None = None) -> list[dict]:
    """The mul_mat shapes, then the MoE layer's; `tokens` overrides both ops' token counts."""
    tokens = tuple(tokens) if tokens else None
    out = [{"op": "mul_mat", "k": MUL_MAT_K, "rows": MUL_MAT_M, "tokens": n}
           for n in tokens or (SMOKE_TOKENS if smoke else MUL_MAT_NS)]
    out += [{"op": "moe_up_gate", "k": MOE_K, "rows": MOE_ROWS, "experts": MOE_EXPERTS, "top_k": MOE_TOP_K,
             "tokens": t} for t in tokens or (SMOKE_TOKENS if smoke else MOE_TOKENS)]
    for s in out:
        if s["rows"] % ROW_MULTIPLE or s["k"] % QK_K or s["tokens"] < 1:
            raise ValueError(f"bench shape {s}: rows must be a multiple of {ROW_MULTIPLE}, K of {QK_K}, tokens >= 1")
    return out


def shape_ops(s: dict) -> float:
    """Multiply-adds x 2 of the used products (moe: up and gate over every routed slot)."""
    if s["op"] == "mul_mat":
        return 2.0 * s["k"] * s["rows"] * s["tokens"]
    return 2.0 * 2.0 * s["k"] * s["rows"] * s["tokens"] * s["top_k"]


def shape_bytes(s: dict, ids: np.ndarray | None) -> float:
    """Bytes read/written once: weights actually used, f32 activations, f32 outputs."""
    wrow = s["k"] // QK_K * BLOCK_BYTES
    if s["op"] == "mul_mat":
        return s["rows"] * wrow + 4.0 * s["k"] * s["tokens"] + 4.0 * s["rows"] * s["tokens"]
    used = len(np.unique(ids)) if ids is not None else s["experts"]
    return 2.0 * used * s["rows"] * wrow + 4.0 * s["k"] * s["tokens"] + 4.0 * s["rows"] * s["tokens"] * s["top_k"]


def random_iq1m(rng: np.random.Generator, shape: tuple[int, ...], k: int) -> np.ndarray:
    """IQ1_M blocks [..., k/256*56] with random indices, signs and sub-scales and a sane
    fp16 super-scale (no inf/nan/subnormal values that would time special paths)."""
    nb = k // QK_K
    blocks = rng.integers(0, 256, size=shape + (nb, BLOCK_BYTES), dtype=np.uint8)
    d = rng.uniform(0.002, 0.02, size=shape + (nb,)).astype(np.float16).view(np.uint16).astype(np.uint16)
    words = blocks[..., 48:56].copy().view("<u2")  # the four scale words
    for i in range(4):
        words[..., i] = (words[..., i] & 0x0FFF) | (((d >> (4 * i)) & 0xF) << 12)
    blocks[..., 48:56] = words.view(np.uint8)
    return np.ascontiguousarray(blocks.reshape(shape + (nb * BLOCK_BYTES,)))


def random_routing(rng: np.random.Generator, n_tokens: int, n_experts: int, top_k: int) -> np.ndarray:
    """top_k distinct experts per token, uniformly (a router's output, unbalanced as real ones are)."""
    return np.stack([rng.permutation(n_experts)[:top_k] for _ in range(n_tokens)]).astype(np.int32)


class Data:
    """Each shape's arrays from one seeded stream: a layer's weights drawn once and kept for
    its token counts (the shapes come grouped by layer), fresh activations and routing per
    shape."""

    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng(seed)
        self._weights: dict[tuple, dict[str, np.ndarray]] = {}

    def arrays(self, s: dict) -> dict[str, np.ndarray]:
        routed = s["op"] != "mul_mat"
        key = (s["op"], s["k"], s["rows"], s.get("experts"))
        if key not in self._weights:
            self._weights.clear()  # one layer's weights at a time (the MoE layer's are 100 MB)
            lead = (s["experts"], s["rows"]) if routed else (s["rows"],)
            names = ("w_up", "w_gate") if routed else ("w",)
            self._weights[key] = {n: random_iq1m(self.rng, lead, s["k"]) for n in names}
        a = dict(self._weights[key])
        a["x"] = self.rng.standard_normal((s["tokens"], s["k"]), dtype=np.float32)
        if routed:
            a["ids"] = random_routing(self.rng, s["tokens"], s["experts"], s["top_k"])
        return a
