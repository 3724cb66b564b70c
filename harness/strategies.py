"""Hypothesis strategies for IQ1_M kernel cases, small ones composed into bigger ones.

Large arrays come from a numpy generator seeded by Hypothesis, so a case stays cheap to
draw while everything that decides which code path runs (shapes, token counts per
expert, which super-scales are special, which kind of activation row) is drawn directly
and shrinks: a failing case shrinks to few rows, small K, and a minimal routing table.

Shapes come in classes (`SHAPE_CLASSES`). Most draws are the small everyday shapes (they
shrink well); a few per hundred are shaped like the layers of real IQ1_M models
(DeepSeek-V3 and Kimi-K2: K = 7168, 256 or 384 experts, top-8; Qwen3-MoE: K = 2048, 128
experts, top-8; Mixtral: K = 4096, 8 experts, top-2; long K past the largest block one
thread repacks at once; thousands of rows), so the scheduler's panel counts and chunk
sizes, many experts in one call, several repacked experts and long rows are reached too.
Their work per run is capped (`BIG_CASE_MACS`), which decides how far rows and tokens go;
the reference compares a drawn subset of such a case's outputs (harness.ops), the
invariances every element.

Every case records the classes it was drawn from in `case.info["events"]` (and as
Hypothesis `event()`s): shape class, activation kinds (with the Q8_K corner cases), routing
style, special super-scales, output canaries.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from hypothesis import event as _hypothesis_event
from hypothesis import strategies as st

import reference

from .act_edges import EDGES as ACT_EDGES, TERM_EDGES as ACT_TERM_EDGES
from .cases import Case
from .ops import ACTIVATIONS, CONVERSION_OPS, GEMM_OPS, OP_NAMES, OPS
from .options import BASELINE_THRESHOLD, run_star

QK_K = 256
THRESHOLD = BASELINE_THRESHOLD
BLOCK_BYTES = 56

# fp16 bit patterns of super-scales that are not "typical"
SPECIAL_SCALES = {
    "+0": [0x0000], "-0": [0x8000],
    "subnormal": [0x0001, 0x0155, 0x03FF, 0x8200],
    "negative": [0xB400, 0xA000, 0xC000],
    "huge": [0x7BFF, 0xFBFF, 0x7000],
    "inf": [0x7C00, 0xFC00],
    "nan": [0x7E00, 0x7C01, 0xFE00],
}

# -- events ----------------------------------------------------------------------------------
# The classes a case was drawn from: Hypothesis events (pytest --hypothesis-show-statistics)
# and the case's info["events"] (campaign reports count them).
_collected: list[str] | None = None


def event(name: str) -> None:
    _hypothesis_event(name)
    if _collected is not None:
        _collected.append(name)


def seeds() -> st.SearchStrategy[int]:
    return _SEEDS


_SEEDS = st.integers(0, 2**32 - 1)


# -- IQ1_M weights -----------------------------------------------------------------------------

def typical_scale_bits(rng: np.random.Generator, n: int) -> np.ndarray:
    """Positive fp16 super-scales of the magnitudes real models have (2^-14 .. 2^-2):
    a uniform exponent and a uniform mantissa (log-uniform, made from the bits directly)."""
    return ((rng.integers(1, 13, n, dtype=np.uint16) << 10) | rng.integers(0, 1024, n, dtype=np.uint16)
            ).astype(np.uint16)


_SPECIAL_NAMES = sorted(SPECIAL_SCALES)
_SPECIALS = st.lists(st.sampled_from(_SPECIAL_NAMES), max_size=3, unique=True)
_FRACTIONS = st.sampled_from([0.05, 0.3, 1.0])


@st.composite
def super_scale_bits(draw, n_blocks: int) -> np.ndarray:
    """fp16 bit patterns for n blocks: mostly typical, with some special classes mixed in."""
    rng = np.random.default_rng(draw(_SEEDS))
    bits = typical_scale_bits(rng, n_blocks)
    for name in draw(_SPECIALS):
        event(f"super-scale: {name}")
        where = rng.random(n_blocks) < draw(_FRACTIONS)
        bits[where] = rng.choice(SPECIAL_SCALES[name], size=int(where.sum()))
    return bits


@st.composite
def iq1m_fields(draw, n_blocks: int) -> "reference.IQ1MFields":
    """Fields of n IQ1_M blocks: every grid index, both delta signs and every scale code reachable."""
    rng = np.random.default_rng(draw(_SEEDS))
    grid_index = rng.integers(0, 2048, (n_blocks, 32), dtype=np.uint16)
    delta_negative = rng.random((n_blocks, 32)) < 0.5
    scale = rng.integers(0, 8, (n_blocks, 16), dtype=np.uint8)
    if draw(st.booleans()):
        scale[:] = draw(st.integers(0, 7))  # one scale code everywhere: extremes 0 and 7 shrink first
    return reference.IQ1MFields(grid_index=grid_index, delta_negative=delta_negative, scale=scale,
                                d_bits=draw(super_scale_bits(n_blocks)))


def encode_blocks(rng: np.random.Generator, d_bits: np.ndarray, scale_code: int | None = None) -> np.ndarray:
    """uint8 [n, 56] IQ1_M blocks straight from random bytes (uniform grid indices, delta
    signs and scale codes, or one scale code everywhere) with the given fp16 super-scales:
    the same distribution as encode_fields of uniform fields, without building them."""
    n = d_bits.shape[0]
    blocks = np.frombuffer(rng.bytes(n * BLOCK_BYTES), dtype=np.uint8).reshape(n, BLOCK_BYTES).copy()
    sc = blocks[:, 48:56].view("<u2")  # [n, 4] little-endian words: 4 scale codes + a d nibble
    if scale_code is not None:
        sc[:] = scale_code * 0o1111
    else:
        sc &= 0x0FFF
    sc |= ((d_bits[:, None].astype(np.uint16) >> np.array([0, 4, 8, 12], dtype=np.uint16)) & 0xF) << 12
    return blocks


_SCALE_CODES = st.one_of(st.none(), st.integers(0, 7))


@st.composite
def iq1m_blocks(draw, n_blocks: int) -> np.ndarray:
    """uint8 [n_blocks, 56]: uniform fields (or one scale code everywhere: extremes 0 and 7
    shrink first) with mostly typical, partly special super-scales."""
    seed = draw(_SEEDS)
    code = draw(_SCALE_CODES)
    d_bits = draw(super_scale_bits(n_blocks))
    return encode_blocks(np.random.default_rng(seed), d_bits, code)


@st.composite
def iq1m_matrices(draw, leading: tuple[int, ...], k: int) -> np.ndarray:
    """IQ1_M weights of shape leading + (k/256*56,), e.g. [rows, ...] or [experts, rows, ...]."""
    n_rows = int(np.prod(leading))
    blocks = draw(iq1m_blocks(n_rows * (k // QK_K)))
    return blocks.reshape(*leading, (k // QK_K) * 56)


# -- activations -------------------------------------------------------------------------------

# Q8_K corner classes: a block whose largest magnitude appears with both signs (+a and -a,
# either first), the largest value repeated, every element equal, values so small that
# -127/max overflows, values next to FLT_MAX.
Q8K_CORNERS = ("max_tie_signs", "repeated_max", "all_equal_blocks", "below_iscale", "near_flt_max")
ACTIVATION_KINDS = ("normal", "constant", "one_hot", "ties", "tiny", "huge") + Q8K_CORNERS + ("mixed",)


def _tie_blocks(rng: np.random.Generator, n: int) -> np.ndarray:
    """Blocks whose Q8_K scaling lands exactly on k + 0.5: max = +-127*2^e, others (j+0.5)*2^e."""
    e = rng.integers(-20, 20, (n, 1)).astype(np.float32)
    sign = rng.choice(np.float32([-1, 1]), (n, 1))
    vals = (rng.integers(-127, 127, (n, QK_K)) + np.float32(0.5)) * np.exp2(e)
    vals[:, :1] = sign * np.float32(127) * np.exp2(e)
    return vals.astype(np.float32)


def _corner_blocks(kind: str, rng: np.random.Generator, n: int) -> np.ndarray:
    scale = np.exp2(rng.integers(-30, 30, (n, 1))).astype(np.float64)
    if kind == "all_equal_blocks":
        c = rng.choice([1.0, -1.0, 0.5, -3.25, 127.0, -1e-3, 0.0], (n, 1)) * scale
        return np.broadcast_to(c, (n, QK_K)).astype(np.float32)
    if kind == "below_iscale":  # |max| < 127 / FLT_MAX: iscale = -127/max overflows to +-inf
        mag = np.exp2(rng.uniform(-149, -122, (n, 1)))
        return (rng.uniform(-1, 1, (n, QK_K)) * mag).astype(np.float32)
    if kind == "near_flt_max":
        return (rng.uniform(-1, 1, (n, QK_K)) * np.float32(3.4e38)).astype(np.float32)
    a = rng.uniform(1, 2, (n, 1)) * scale
    vals = rng.uniform(-1, 1, (n, QK_K)) * a * 0.999
    rows = np.arange(n)
    if kind == "max_tie_signs":  # +a and -a, in either order, possibly repeated
        i, j = rng.choice(QK_K, size=(2, n)) if n else (np.zeros(0, int),) * 2
        j = np.where(j == i, (i + 1 + rng.integers(0, QK_K - 1, n)) % QK_K, j)
        first = rng.choice([1.0, -1.0], n)
        vals[rows, np.minimum(i, j)] = first * a[:, 0]
        vals[rows, np.maximum(i, j)] = -first * a[:, 0]
        extra = rng.integers(0, QK_K, n)
        vals[rows, extra] = np.where(rng.random(n) < 0.5, vals[rows, extra], rng.choice([1.0, -1.0], n) * a[:, 0])
    else:  # repeated_max: the same signed maximum at 2-6 places
        sign = rng.choice([1.0, -1.0], (n, 1))
        for _ in range(int(rng.integers(2, 7))):
            vals[rows, rng.integers(0, QK_K, n)] = (sign * a)[:, 0]
    return vals.astype(np.float32)


def activation_values(kind: str, rng: np.random.Generator, n_tokens: int, k: int) -> np.ndarray:
    shape = (n_tokens, k)
    if kind == "normal":
        x = rng.standard_normal(shape, dtype=np.float32) * np.exp2(rng.uniform(-6, 6, (n_tokens, 1))).astype(np.float32)
    elif kind == "constant":
        x = np.broadcast_to(rng.choice([0.0, 1.0, -3.5, 1e-3], (n_tokens, 1)), shape)
    elif kind == "one_hot":
        x = np.zeros(shape)
        x[np.arange(n_tokens), rng.integers(0, k, n_tokens)] = rng.standard_normal(n_tokens) * 10
    elif kind == "ties":
        x = _tie_blocks(rng, n_tokens * (k // QK_K)).reshape(shape)
    elif kind == "tiny":
        x = rng.standard_normal(shape) * np.exp2(rng.uniform(-140, -100, (n_tokens, 1)))
    elif kind == "huge":
        x = np.clip(rng.standard_normal(shape), -8, 8) * np.exp2(rng.uniform(100, 124, (n_tokens, 1)))
    elif kind in Q8K_CORNERS:
        # corner blocks mixed with normal ones (a corner must hold in any block of a row)
        x = rng.standard_normal(shape, dtype=np.float32).reshape(n_tokens * (k // QK_K), QK_K)
        pick = rng.random(x.shape[0]) < rng.choice([0.3, 1.0])
        x[pick] = _corner_blocks(kind, rng, int(pick.sum()))
        x = x.reshape(shape)
    else:  # rows of every kind
        kinds = rng.choice(ACTIVATION_KINDS[:-1], n_tokens)
        x = np.empty(shape, np.float32)
        for kd in sorted(set(kinds.tolist())):
            rows = np.nonzero(kinds == kd)[0]
            x[rows] = activation_values(kd, rng, len(rows), k)
        return x
    return np.ascontiguousarray(x, dtype=np.float32)


_ACTIVATION_KIND = st.sampled_from(ACTIVATION_KINDS)


@st.composite
def activations(draw, n_tokens: int, k: int) -> np.ndarray:
    """float32 [n_tokens, k]: normal, constant (incl. zero), one-hot, exact .5 ties after
    scaling, tiny, huge, the Q8_K corners (Q8K_CORNERS), or a mix row by row."""
    kind = draw(_ACTIVATION_KIND)
    event(f"activations: {kind}")
    if kind in Q8K_CORNERS:
        event(f"q8k corner: {kind}")
    return activation_values(kind, np.random.default_rng(draw(_SEEDS)), n_tokens, k)


@functools.lru_cache(maxsize=None)
def ks(max_blocks: int = 28) -> st.SearchStrategy[int]:
    """K, a multiple of 256 up to max_blocks * 256, biased small."""
    return st.one_of(st.integers(1, 4), st.integers(1, max_blocks)).map(lambda nb: nb * QK_K)


@functools.lru_cache(maxsize=None)
def row_counts(max_rows: int = 80) -> st.SearchStrategy[int]:
    """Any row count, biased to values that are not multiples of 8 or 16."""
    awkward = st.integers(1, max_rows).filter(lambda r: r % 8 != 0)
    fixed = [r for r in [16, 17, 31, 33, 47] if r <= max_rows] or [max_rows]
    return st.one_of(awkward, awkward, st.integers(1, max_rows), st.sampled_from(fixed))


def token_count_bucket(n: int) -> str:
    if n == 0:
        return "0"
    if n < THRESHOLD:
        return "1-31"
    if n == THRESHOLD:
        return "32"
    if n == THRESHOLD + 1:
        return "33"
    return "34+"


TOKEN_COUNT_BUCKETS = ("0", "1-31", "32", "33", "34+")


@functools.lru_cache(maxsize=None)
def expert_token_counts(max_tokens: int = 100) -> st.SearchStrategy[int]:
    """Tokens one expert receives, covering 0, 1..31, 32, 33 and beyond."""
    return st.one_of(st.sampled_from([0, 1, 31, 32, 33]), st.integers(0, 40), st.integers(0, max_tokens))


def routing_layout(counts, top_k: int, rng: np.random.Generator, *, pad: bool = True) -> np.ndarray:
    """ids [tokens, top_k] in which expert e is routed to exactly counts[e] tokens, never
    twice in one token (a real router's table): the experts' slots laid out column by
    column over T = max(max count, ceil(sum / top_k)) tokens, so each expert's run of
    <= T consecutive slots lands in distinct tokens. The T * top_k - sum slots left over are
    unused (-1) when `pad`; otherwise they go to the experts with the most room left
    (raising their counts), so every slot is used. top_k is capped at the number of experts."""
    counts = [int(c) for c in counts]
    top_k = max(1, min(top_k, len(counts)))
    total = sum(counts)
    n_tokens = max(max(counts, default=0), -(-total // top_k))
    if not pad:
        counts = list(counts)
        room = np.array([n_tokens - c for c in counts])
        for _ in range(n_tokens * top_k - total):
            e = int(np.argmax(room))
            counts[e] += 1
            room[e] -= 1
    slots = np.full(n_tokens * top_k, -1, dtype=np.int32)
    order = np.repeat(np.arange(len(counts), dtype=np.int32), counts)
    slots[:order.size] = order
    table = slots.reshape(top_k, n_tokens).T.copy()        # column-major fill
    rng.shuffle(table)                                      # token order
    return rng.permuted(table, axis=1) if table.size else table


ROUTING_STYLES = ("router", "any")
_MIXED_STYLE = st.sampled_from(["router", "router", "router", "any"])


@st.composite
def routing_tables(draw, n_experts: int, top_k: int, max_tokens_per_expert: int = 100,
                   style: str = "any") -> np.ndarray:
    """ids int32 [n_tokens, top_k] realising drawn per-expert token counts.
    style "router": every slot used, no expert twice in a token (what real routers emit;
    counts may grow by the few slots needed to fill every token);
    "any": slots shuffled over tokens (one token may hold the same expert twice), padded with
    unused (-1) slots and tokens; "mixed": router mostly, "any" sometimes."""
    return _draw_routing(draw, n_experts, top_k, max_tokens_per_expert, style)


def _bucket_events(table: np.ndarray, n_experts: int) -> None:
    for c in set(np.bincount(table[table >= 0].ravel(), minlength=n_experts).tolist()):
        event(f"expert tokens: {token_count_bucket(int(c))}")


THREAD_COUNTS = (1, 2, 3, 4, 5, 7, 8, 16, 33)


@functools.lru_cache(maxsize=None)
def _thread_sets(choices: tuple[int, ...]) -> st.SearchStrategy[list[int]]:
    return st.lists(st.sampled_from(sorted(choices)), min_size=1, max_size=3, unique=True)


def thread_sets(choices=THREAD_COUNTS) -> st.SearchStrategy[list[int]]:
    """Thread counts to run besides the single-threaded baseline (33 exceeds most row counts)."""
    return _thread_sets(tuple(choices))


# -- real-model shape classes ---------------------------------------------------------------

# Work of one run (rows x K x computed slots x weight matrices, multiply-adds) a big case may
# take: the scalar runs (plain and prepacked) then cost about 0.1 s together on a quiet core.
BIG_CASE_MACS = 1 << 25
LONG_KS = (8448, 14336, 16384, 30720, 32768)  # past 8192; from 30464 on a thread repacks one panel at a time


WEIGHT_BYTES_CAP = 16 << 20  # IQ1_M weight bytes of one case (all experts, all matrices)


@dataclass(frozen=True)
class ShapeClass:
    """A family of shapes from a real model's layers (event name `name`)."""
    name: str
    routed: bool
    ks: tuple[int, ...]
    rows: tuple[int, int]              # before the work and memory caps
    experts: tuple[int, ...] = (1,)
    top_k: tuple[int, ...] = (1,)
    tokens: tuple[int, int] = (1, 8)   # "decode" profile (prefill: 33.. tokens, hot experts)


SHAPE_CLASSES: dict[str, ShapeClass] = {c.name: c for c in (
    ShapeClass("deepseek-v3 moe: 256 experts, top-8, K=7168", True, (7168,), (16, 2048), (256,), (8,)),
    ShapeClass("kimi-k2 moe: 384 experts, top-8, K=7168", True, (7168,), (16, 2048), (384,), (8,)),
    ShapeClass("qwen3 moe: 128 experts, top-8, K=2048/4096", True, (2048, 4096), (16, 1536), (128,), (8,)),
    ShapeClass("mixtral moe: 8 experts, top-2, K=4096", True, (4096,), (16, 14336), (8,), (2,), (1, 40)),
    ShapeClass("long K moe: K>8192", True, LONG_KS, (1, 64), (1, 2, 3, 8), (1, 2), (1, 40)),
    ShapeClass("tall mul_mat: hundreds to thousands of rows", False, (2048, 4096, 7168), (128, 14336),
               tokens=(1, 64)),
    ShapeClass("long K mul_mat: K>8192", False, LONG_KS, (1, 80), tokens=(1, 40)),
)}
SMALL = "small"
# A big case is drawn once in about 85 GEMM cases (`_shape_class`: 3 middle values of 256, as
# Hypothesis favours the ends of a range; shrinking goes to 0, the small shapes); the suite
# also draws every class on every run (tests/kernels/test_properties.py).
_CLASS_PICK = st.integers(0, 255)
_BIG_PICKS = range(128, 131)


def shape_classes(op: str) -> list[str]:
    routed = OPS[op].routed
    return [name for name, c in SHAPE_CLASSES.items() if c.routed == routed]


def _mats(op: str) -> int:
    return len(OPS[op].weights)


def _awkward_rows(draw, lo: int, hi: int) -> int:
    """Rows in [lo, hi], often not a multiple of 16, often the largest allowed."""
    if hi <= lo:
        return max(hi, 1)
    r = draw(st.one_of(st.integers(lo, hi), st.just(hi), st.integers(max(lo, hi - 40), hi)))
    if draw(st.booleans()) and r % 16 == 0 and r > lo:
        r -= 1
    return r


def _model_routing(rng: np.random.Generator, n_experts: int, top_k: int, n_tokens: int, hot: int,
                   style: str) -> np.ndarray:
    """ids [n_tokens, top_k]: each token picks top_k distinct experts at random; `hot`
    experts are in the first 32..n_tokens tokens (prefill: they take the repacked path, the
    others mostly the direct one). style "any" then leaves some slots unused (-1) and repeats
    an expert within some tokens."""
    top_k = min(top_k, n_experts)
    keys = rng.random((n_tokens, n_experts))
    if hot:
        hot_experts = rng.choice(n_experts, size=min(hot, n_experts), replace=False)
        reach = int(rng.integers(min(THRESHOLD, n_tokens), n_tokens + 1))
        keys[:reach, hot_experts[:top_k]] -= 2.0
    ids = np.argsort(keys, axis=1)[:, :top_k].astype(np.int32)
    ids = rng.permuted(ids, axis=1)
    if style == "any" and ids.size:
        flat = ids.reshape(-1)
        flat[rng.random(flat.size) < rng.choice([0.02, 0.2])] = -1
        if top_k > 1:
            dup = rng.random(n_tokens) < 0.2
            ids[dup, 1] = ids[dup, 0]
    return ids


def _big_gemm_case(draw, op: str, cls: ShapeClass, isas, threads, routing: str) -> Case:
    spec, mats = OPS[op], _mats(op)
    k = draw(st.sampled_from(cls.ks))
    nb = k // QK_K
    if cls.routed:
        n_experts = draw(st.sampled_from(cls.experts))
        top_k = min(draw(st.sampled_from(cls.top_k)), n_experts)
        prefill = draw(st.booleans())
        t_max = max(1, BIG_CASE_MACS // (k * top_k * mats))
        lo, hi = (THRESHOLD + 1, max(THRESHOLD + 1, 2 * THRESHOLD)) if prefill else cls.tokens
        n_tokens = min(draw(st.integers(lo, hi)), t_max)
        hot = draw(st.integers(1, 3)) if prefill else 0
        style = draw(_MIXED_STYLE) if routing in ("any", "mixed") else "router"
        if routing == "mixed" and style == "any" and draw(st.booleans()):
            style = "router"
        event(f"routing: {'router-like' if style == 'router' else 'unused or repeated slots'}")
        event(f"big moe: {'prefill, hot experts repacked' if prefill else 'decode, few tokens'}")
        ids = _model_routing(np.random.default_rng(draw(_SEEDS)), n_experts, top_k, n_tokens, hot, style)
        _bucket_events(ids, n_experts)
        slots = max(1, int((ids >= 0).sum()))
        per_row = n_experts * nb * BLOCK_BYTES * mats
        extra = {"ids": ids}
    else:
        t_lo, t_hi = cls.tokens
        n_tokens = draw(st.integers(t_lo, t_hi))
        slots, n_experts, per_row, extra = n_tokens, 1, nb * BLOCK_BYTES * mats, {}
        event(f"tokens: {token_count_bucket(n_tokens)}")
    cap = max(1, min(cls.rows[1], BIG_CASE_MACS // (k * slots * mats), WEIGHT_BYTES_CAP // per_row))
    rows = _awkward_rows(draw, min(cls.rows[0], cap), cap)
    event(f"rows: {_rows_bucket(rows)}")
    leading = (n_experts, rows) if cls.routed else (rows,)
    x = _draw_activations(draw, n_tokens, k)
    runs = spec.run_star(isas, draw(thread_sets(threads)))
    arrays = {name: _draw_weights(draw, leading, k) for name in spec.weights}
    act = draw(_ACTS) if spec.has_activation else "silu"
    return Case(op, {**arrays, "x": x, **extra}, runs, act=act)


def _rows_bucket(rows: int) -> str:
    return "1-80" if rows <= 80 else "81-511" if rows < 512 else "512+"


_ACTS = st.sampled_from(ACTIVATIONS)
_N_EXPERTS = st.integers(1, 4)
_TOP_K = st.integers(1, 3)


@functools.lru_cache(maxsize=None)
def _count_lists(max_tokens: int, n: int) -> st.SearchStrategy[list[int]]:
    return st.lists(expert_token_counts(max_tokens), min_size=n, max_size=n)


def _draw_weights(draw, leading: tuple[int, ...], k: int) -> np.ndarray:
    n = int(np.prod(leading)) * (k // QK_K)
    seed, code = draw(_SEEDS), draw(_SCALE_CODES)
    bits = draw(super_scale_bits(n))
    return encode_blocks(np.random.default_rng(seed), bits, code).reshape(*leading, (k // QK_K) * BLOCK_BYTES)


def _draw_activations(draw, n_tokens: int, k: int) -> np.ndarray:
    kind = draw(_ACTIVATION_KIND)
    event(f"activations: {kind}")
    if kind in Q8K_CORNERS:
        event(f"q8k corner: {kind}")
    return activation_values(kind, np.random.default_rng(draw(_SEEDS)), n_tokens, k)


def _draw_routing(draw, n_experts: int, top_k: int, max_tokens: int, style: str) -> np.ndarray:
    if style == "mixed":
        style = draw(_MIXED_STYLE)
    event(f"routing: {'router-like' if style == 'router' else 'unused or repeated slots'}")
    counts = draw(_count_lists(max_tokens, n_experts))
    rng = np.random.default_rng(draw(_SEEDS))
    if style == "router":
        table = routing_layout(counts, top_k, rng, pad=False)
    else:
        slots = np.repeat(np.arange(n_experts, dtype=np.int32), counts)
        rng.shuffle(slots)
        n_tokens = -(-len(slots) // top_k)
        extra = draw(_EXTRA_TOKENS)  # tokens with unused slots only
        table = np.full((n_tokens + extra) * top_k, -1, dtype=np.int32)
        table[:len(slots)] = slots
        table = table.reshape(n_tokens + extra, top_k)
        rng.shuffle(table)
    _bucket_events(table, n_experts)
    return table


_EXTRA_TOKENS = st.integers(0, 2)


def _small_gemm_case(draw, op: str, isas, threads, max_rows, max_tokens, routing) -> Case:
    spec = OPS[op]
    k = draw(ks(spec.max_blocks))
    rows = draw(row_counts(max_rows or spec.max_rows))
    if spec.routed:
        n_experts = draw(_N_EXPERTS)
        ids = _draw_routing(draw, n_experts, draw(_TOP_K), max_tokens, routing)
        n_tokens, leading, extra = ids.shape[0], (n_experts, rows), {"ids": ids}
    else:
        n_tokens = draw(expert_token_counts(max_tokens))
        event(f"tokens: {token_count_bucket(n_tokens)}")
        leading, extra = (rows,), {}
    x = _draw_activations(draw, n_tokens, k)
    runs = spec.run_star(isas, draw(thread_sets(threads)))
    arrays = {name: _draw_weights(draw, leading, k) for name in spec.weights}
    act = draw(_ACTS) if spec.has_activation else "silu"
    return Case(spec.name, {**arrays, "x": x, **extra}, runs, act=act)


# -- conversions ---------------------------------------------------------------------------------

ACT_INPUT_KINDS = ("normal", "wide", "bit patterns", "exp edges", "specials", "rounding edges", "mixed")


def rounding_edge_inputs(act: str) -> np.ndarray:
    """float32 inputs of `act` whose result lies next to a float32 rounding midpoint or whose
    rounding a last polynomial term decides (harness/act_edges.py)."""
    terms = [bits for name, bits in ACT_TERM_EDGES.items() if name.startswith(act + " ")]
    return np.array(sum(terms, ACT_EDGES[act]), dtype=np.uint32).view(np.float32)


def activation_inputs(kind: str, rng: np.random.Generator, n: int, act: str = "silu") -> np.ndarray:
    """float32 [n] inputs of the activation functions: normal values at any scale, any
    finite value, any bit pattern (NaN payloads, infinities, subnormals), the edges of
    exp_nonpos (underflow near -746, the float32 range of e^x, the cubic of GELU), special
    values, inputs whose exact binary64 result lies next to a float32 rounding midpoint
    (harness/act_edges.py: any deviation from the contract's binary64 sequence flips them),
    or all of them mixed."""
    if kind == "rounding edges":
        edges = rounding_edge_inputs(act)
        return edges[rng.integers(0, len(edges), n)] if n else np.zeros(0, np.float32)
    if kind == "normal":
        x = rng.standard_normal(n) * np.exp2(rng.uniform(-4, 6))
    elif kind == "wide":
        x = rng.choice([-1.0, 1.0], n) * np.exp2(rng.uniform(-149, 127, n))
    elif kind == "bit patterns":
        return rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32).view(np.float32)
    elif kind == "exp edges":
        centres = np.array([-746.0, -745.13, -708.4, -103.3, -87.34, -16.6, -9.0, 0.0, 9.0, 16.6, 88.72, 89.4,
                            1e5, -1e5, 2.5e12, -2.5e12])
        x = rng.choice(centres, n) * (1 + rng.uniform(-1e-3, 1e-3, n)) + rng.uniform(-1, 1, n) * rng.choice(
            [0.0, 1e-6, 1.0], n)
    elif kind == "specials":
        vals = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, -1e-45, 1.1754942e-38, -1.1754942e-38,
                         3.4028235e38, -3.4028235e38, 1.0, -1.0], dtype=np.float32)
        x = rng.choice(vals, n).astype(np.float32)
        nan_bits = (0x7F800000 | rng.integers(1, 1 << 23, n, dtype=np.uint32)
                    | np.where(rng.random(n) < 0.5, 0x80000000, 0).astype(np.uint32))
        pick = rng.random(n) < 0.2
        x.view(np.uint32)[pick] = nan_bits[pick]
        return x
    else:
        kinds = rng.choice(ACT_INPUT_KINDS[:-1], n)
        out = np.empty(n, np.float32)
        for kd in sorted(set(kinds.tolist())):
            where = kinds == kd
            out[where] = activation_inputs(kd, rng, int(where.sum()), act)
        return out
    return np.asarray(x, dtype=np.float32)


_ACT_INPUT_KIND = st.sampled_from(ACT_INPUT_KINDS)
_ACT_LENGTH = st.one_of(st.integers(0, 40), st.integers(0, 700))
_Q8K_TOKENS = st.integers(0, 6)
_NONFINITE = st.integers(0, 24)
_CANARY_EVENTS = {"quantize_q8k": "canary: Q8_K blocks (d NaN, qs -128, bsums invalid)",
                  "prepack": "canary: prepacked blocks (grid code 3, non-zero padding)"}


def _conversion_case(draw, op: str, isas) -> Case:
    spec = OPS[op]
    runs = spec.run_star(isas, ())
    act = "silu"
    if op == "quantize_q8k":
        k = draw(ks(spec.max_blocks))
        x = _draw_activations(draw, draw(_Q8K_TOKENS), k)
        if x.size and draw(_NONFINITE) == 0:  # rejected with IQ1M_ERR_NONFINITE
            event("quantize: a non-finite input (rejected)")
            rng = np.random.default_rng(draw(_SEEDS))
            x = x.copy()
            x.reshape(-1)[rng.integers(0, x.size)] = rng.choice([np.nan, np.inf, -np.inf])
        arrays = {"x": x}
    elif op in ("dequantize", "prepack"):
        k = draw(ks(spec.max_blocks))
        arrays = {"w": _draw_weights(draw, (draw(row_counts(spec.max_rows)),), k)}
    else:  # activation
        act = draw(_ACTS)
        kind = draw(_ACT_INPUT_KIND)
        event(f"activation inputs: {kind}")
        arrays = {"x": activation_inputs(kind, np.random.default_rng(draw(_SEEDS)), draw(_ACT_LENGTH), act)}
    return Case(op, arrays, runs, act=act)


# -- whole cases ----------------------------------------------------------------------------

SHAPE_MODES = ("mixed", "small") + tuple(SHAPE_CLASSES)


@st.composite
def op_cases(draw, op: str, isas: list[str], threads=THREAD_COUNTS, *, max_rows: int | None = None,
             max_tokens: int = 100, routing: str = "any", shapes: str = "mixed") -> Case:
    """A case of operation `op` (harness.ops). GEMM ops: the shape class (`shapes`:
    "mixed" = mostly small, now and then a real-model class; "small"; or one class of
    SHAPE_CLASSES), K, rows, tokens (per expert for a routed op), activations, the run
    star, weights and the activation function, in that order (what decides the path shrinks
    first). `max_rows` and `max_tokens` bound the small shapes; `routing`: "any" (unused
    and repeated slots too), "router" or "mixed" (see routing_tables). Conversion ops: their
    own inputs. The case's info["events"] lists the classes it was drawn from."""
    global _collected
    spec = OPS[op]
    outer, _collected = _collected, []
    try:
        if spec.kind != "gemm":
            case = _conversion_case(draw, op, isas)
        else:
            cls = _shape_class(draw, op, shapes)
            event(f"shape: {cls}")
            if cls == SMALL:
                case = _small_gemm_case(draw, op, isas, threads, max_rows, max_tokens, routing)
            else:
                case = _big_gemm_case(draw, op, SHAPE_CLASSES[cls], isas, threads, routing)
            if any(r.prepacked for r in case.runs):
                event("canary: prepacked weights scratch (grid code 3)")
        event(_CANARY_EVENTS.get(op, "canary: float32 outputs (signalling NaN)"))
        case.info["events"] = sorted(set(_collected))
        return case
    finally:
        _collected = outer


def _shape_class(draw, op: str, shapes: str) -> str:
    if shapes == SMALL:
        return SMALL
    if shapes != "mixed":
        if shapes not in SHAPE_CLASSES or SHAPE_CLASSES[shapes].routed != OPS[op].routed:
            raise ValueError(f"shape class {shapes!r} does not apply to {op}; choose from {shape_classes(op)}")
        return shapes
    if draw(_CLASS_PICK) not in _BIG_PICKS:
        return SMALL
    return draw(_class_names(OPS[op].routed))


@functools.lru_cache(maxsize=None)
def _class_names(routed: bool) -> st.SearchStrategy[str]:
    return st.sampled_from([name for name, c in SHAPE_CLASSES.items() if c.routed == routed])


def cases(isas: list[str], ops=OP_NAMES, threads=THREAD_COUNTS, routing: str = "any") -> st.SearchStrategy[Case]:
    """Any of the operations' cases: each GEMM op about as often as all conversions together
    (the GEMMs are what the kernels are for; a conversion case costs a fraction of one)."""
    names = [op for op in ops if op in GEMM_OPS]
    conv = [op for op in ops if op in CONVERSION_OPS]
    weights = [len(conv) or 1] * len(names) + [1] * len(conv)
    table = [op for op, n in zip(names + conv, weights) for _ in range(n)]
    pick = st.integers(0, len(table) - 1)
    strategies = {op: op_cases(op, isas, threads, routing=routing) for op in names + conv}
    return pick.flatmap(lambda i: strategies[table[i]])


def random_weights(rng: np.random.Generator, leading: tuple[int, ...], k: int) -> np.ndarray:
    """IQ1_M weights [*leading, k/256*56]: every field uniform, typical positive super-scales."""
    n = int(np.prod(leading)) * (k // QK_K)
    return encode_blocks(rng, typical_scale_bits(rng, n)).reshape(*leading, (k // QK_K) * BLOCK_BYTES)


def pinned_moe_case(op: str, counts: list[int], isas: list[str], *, rows: int = 19, k: int = 512, seed: int = 0,
                    act: str = "silu", top_k: int = 2, threads=(1, 2, 3, 16)) -> Case:
    """A deterministic case of a routed op in which expert e receives exactly counts[e]
    tokens, no expert twice in a token, every slot used where the counts allow it (the
    largest top_k <= the one asked for that leaves no slot unused, else the one asked for,
    padded with unused slots)."""
    rng = np.random.default_rng(seed)
    spec = OPS[op]
    total = sum(counts)
    fits = [t for t in range(min(top_k, len(counts)), 0, -1)
            if max(max(counts, default=0), -(-total // t)) * t == total]
    ids = routing_layout(counts, fits[0] if fits else top_k, rng)
    arrays = {name: random_weights(rng, (len(counts), rows), k) for name in spec.weights}
    x = activation_values("normal", rng, ids.shape[0], k)
    runs = run_star(isas, list(threads), unfused=spec.unfused_variant)
    return Case(op, {**arrays, "x": x, "ids": ids}, runs, act=act)
