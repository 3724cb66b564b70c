"""Hypothesis strategies for IQ1_M kernel cases, small ones composed into bigger ones.

Large arrays come from a numpy generator seeded by Hypothesis, so a case stays cheap to
draw while everything that decides which code path runs (shapes, token counts per
expert, which super-scales are special, which kind of activation row) is drawn directly
and shrinks: a failing case shrinks to few rows, small K, and a minimal routing table.
"""
from __future__ import annotations

import numpy as np
from hypothesis import event
from hypothesis import strategies as st

import reference

from .cases import Case
from .ops import ACTIVATIONS, OP_NAMES, OPS
from .options import BASELINE_THRESHOLD, run_star

QK_K = 256
THRESHOLD = BASELINE_THRESHOLD

# fp16 bit patterns of super-scales that are not "typical"
SPECIAL_SCALES = {
    "+0": [0x0000], "-0": [0x8000],
    "subnormal": [0x0001, 0x0155, 0x03FF, 0x8200],
    "negative": [0xB400, 0xA000, 0xC000],
    "huge": [0x7BFF, 0xFBFF, 0x7000],
    "inf": [0x7C00, 0xFC00],
    "nan": [0x7E00, 0x7C01, 0xFE00],
}


def seeds() -> st.SearchStrategy[int]:
    return st.integers(0, 2**32 - 1)


def typical_scale_bits(rng: np.random.Generator, n: int) -> np.ndarray:
    """Positive fp16 super-scales of the magnitudes real models have (2^-14 .. 2^-2)."""
    return np.float16(np.exp2(rng.uniform(-14, -2, n))).view(np.uint16)


@st.composite
def super_scale_bits(draw, n_blocks: int) -> np.ndarray:
    """fp16 bit patterns for n blocks: mostly typical, with some special classes mixed in."""
    rng = np.random.default_rng(draw(seeds()))
    bits = typical_scale_bits(rng, n_blocks)
    specials = draw(st.lists(st.sampled_from(sorted(SPECIAL_SCALES)), max_size=3, unique=True))
    for name in specials:
        event(f"super-scale: {name}")
        where = rng.random(n_blocks) < draw(st.sampled_from([0.05, 0.3, 1.0]))
        bits[where] = rng.choice(SPECIAL_SCALES[name], size=int(where.sum()))
    return bits


@st.composite
def iq1m_fields(draw, n_blocks: int) -> "reference.IQ1MFields":
    """Fields of n IQ1_M blocks: every grid index, both delta signs and every scale code reachable."""
    rng = np.random.default_rng(draw(seeds()))
    grid_index = rng.integers(0, 2048, (n_blocks, 32), dtype=np.uint16)
    delta_negative = rng.random((n_blocks, 32)) < 0.5
    scale = rng.integers(0, 8, (n_blocks, 16), dtype=np.uint8)
    if draw(st.booleans()):
        scale[:] = draw(st.integers(0, 7))  # one scale code everywhere: extremes 0 and 7 shrink first
    return reference.IQ1MFields(grid_index=grid_index, delta_negative=delta_negative, scale=scale,
                                d_bits=draw(super_scale_bits(n_blocks)))


@st.composite
def iq1m_blocks(draw, n_blocks: int) -> np.ndarray:
    """uint8 [n_blocks, 56]."""
    return reference.encode_fields(draw(iq1m_fields(n_blocks)))


@st.composite
def iq1m_matrices(draw, leading: tuple[int, ...], k: int) -> np.ndarray:
    """IQ1_M weights of shape leading + (k/256*56,), e.g. [rows, ...] or [experts, rows, ...]."""
    n_rows = int(np.prod(leading))
    blocks = draw(iq1m_blocks(n_rows * (k // QK_K)))
    return blocks.reshape(*leading, (k // QK_K) * 56)


ACTIVATION_KINDS = ("normal", "constant", "one_hot", "ties", "tiny", "huge", "mixed")


def _tie_blocks(rng: np.random.Generator, n: int) -> np.ndarray:
    """Blocks whose Q8_K scaling lands exactly on k + 0.5: max = +-127*2^e, others (j+0.5)*2^e."""
    e = rng.integers(-20, 20, (n, 1)).astype(np.float32)
    sign = rng.choice(np.float32([-1, 1]), (n, 1))
    vals = (rng.integers(-127, 127, (n, QK_K)) + np.float32(0.5)) * np.exp2(e)
    vals[:, :1] = sign * np.float32(127) * np.exp2(e)
    return vals.astype(np.float32)


def activation_values(kind: str, rng: np.random.Generator, n_tokens: int, k: int) -> np.ndarray:
    shape = (n_tokens, k)
    if kind == "normal":
        x = rng.standard_normal(shape) * np.exp2(rng.uniform(-6, 6, (n_tokens, 1)))
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
    else:  # rows of every kind
        kinds = rng.choice(ACTIVATION_KINDS[:-1], n_tokens)
        return np.concatenate([activation_values(kd, rng, 1, k) for kd in kinds] or [np.zeros((0, k))]
                              ).astype(np.float32)
    return np.ascontiguousarray(x, dtype=np.float32)


@st.composite
def activations(draw, n_tokens: int, k: int) -> np.ndarray:
    """float32 [n_tokens, k]: normal, constant (incl. zero), one-hot, exact .5 ties after
    scaling, tiny, huge, or a mix row by row."""
    kind = draw(st.sampled_from(ACTIVATION_KINDS))
    event(f"activations: {kind}")
    return activation_values(kind, np.random.default_rng(draw(seeds())), n_tokens, k)


def ks(max_blocks: int = 28) -> st.SearchStrategy[int]:
    """K, a multiple of 256 up to 7168, biased small."""
    return st.one_of(st.integers(1, 4), st.integers(1, max_blocks)).map(lambda nb: nb * QK_K)


def row_counts(max_rows: int = 80) -> st.SearchStrategy[int]:
    """Any row count, biased to values that are not multiples of 8 or 16."""
    awkward = st.integers(1, max_rows).filter(lambda r: r % 8 != 0)
    return st.one_of(awkward, awkward, st.integers(1, max_rows), st.sampled_from([16, 17, 31, 33, 47]))


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
        for _ in range(n_tokens * top_k - total):
            e = int(np.argmax([n_tokens - c for c in counts]))
            counts[e] += 1
    slots = np.full(n_tokens * top_k, -1, dtype=np.int32)
    order = np.repeat(np.arange(len(counts), dtype=np.int32), counts)
    slots[:order.size] = order
    table = slots.reshape(top_k, n_tokens).T.copy()        # column-major fill
    rng.shuffle(table)                                      # token order
    return rng.permuted(table, axis=1) if table.size else table


ROUTING_STYLES = ("router", "any")


@st.composite
def routing_tables(draw, n_experts: int, top_k: int, max_tokens_per_expert: int = 100,
                   style: str = "any") -> np.ndarray:
    """ids int32 [n_tokens, top_k] realising drawn per-expert token counts.
    style "router": every slot used, no expert twice in a token (what real routers emit;
    counts may grow by the few slots needed to fill every token);
    "any": slots shuffled over tokens (one token may hold the same expert twice), padded with
    unused (-1) slots and tokens; "mixed": router mostly, "any" sometimes."""
    if style == "mixed":
        style = draw(st.sampled_from(["router", "router", "router", "any"]))
    event(f"routing: {'router-like' if style == 'router' else 'unused or repeated slots'}")
    counts = draw(st.lists(expert_token_counts(max_tokens_per_expert), min_size=n_experts, max_size=n_experts))
    rng = np.random.default_rng(draw(seeds()))
    if style == "router":
        table = routing_layout(counts, top_k, rng, pad=False)
    else:
        slots = np.repeat(np.arange(n_experts, dtype=np.int32), counts)
        rng.shuffle(slots)
        n_tokens = -(-len(slots) // top_k)
        extra = draw(st.integers(0, 2))  # tokens with unused slots only
        table = np.full((n_tokens + extra) * top_k, -1, dtype=np.int32)
        table[:len(slots)] = slots
        table = table.reshape(n_tokens + extra, top_k)
        rng.shuffle(table)
    for c in np.bincount(table[table >= 0].ravel(), minlength=n_experts):
        event(f"expert tokens: {token_count_bucket(int(c))}")
    return table


THREAD_COUNTS = (1, 2, 3, 4, 5, 7, 8, 16, 33)


def thread_sets(choices=THREAD_COUNTS) -> st.SearchStrategy[list[int]]:
    """Thread counts to run besides the single-threaded baseline (33 exceeds most row counts)."""
    return st.lists(st.sampled_from(sorted(choices)), min_size=1, max_size=3, unique=True)


# -- whole cases ----------------------------------------------------------------------------

@st.composite
def op_cases(draw, op: str, isas: list[str], threads=THREAD_COUNTS, *, max_rows: int | None = None,
             max_tokens: int = 100, routing: str = "any") -> Case:
    """A case of operation `op` (harness.ops): K, rows, tokens (per expert for a routed op),
    activations, the run star, weights and the activation function, in that order (what
    decides the path shrinks first)."""
    spec = OPS[op]
    k = draw(ks(spec.max_blocks))
    rows = draw(row_counts(max_rows or spec.max_rows))
    if spec.routed:
        n_experts = draw(st.integers(1, 4))
        ids = draw(routing_tables(n_experts, draw(st.integers(1, 3)), max_tokens, style=routing))
        n_tokens, leading, extra = ids.shape[0], (n_experts, rows), {"ids": ids}
    else:
        n_tokens = draw(expert_token_counts(max_tokens))
        event(f"tokens: {token_count_bucket(n_tokens)}")
        leading, extra = (rows,), {}
    x = draw(activations(n_tokens, k))
    runs = run_star(isas, draw(thread_sets(threads)), unfused=spec.unfused_variant)
    arrays = {name: draw(iq1m_matrices(leading, k)) for name in spec.weights}
    act = draw(st.sampled_from(ACTIVATIONS)) if spec.has_activation else "silu"
    return Case(spec.name, {**arrays, "x": x, **extra}, runs, act=act)


def cases(isas: list[str], ops=OP_NAMES, threads=THREAD_COUNTS, routing: str = "any") -> st.SearchStrategy[Case]:
    """Any of the operations' cases."""
    return st.one_of([op_cases(op, isas, threads, routing=routing) for op in ops])


def random_weights(rng: np.random.Generator, leading: tuple[int, ...], k: int) -> np.ndarray:
    """IQ1_M weights [*leading, k/256*56]: every field uniform, typical positive super-scales."""
    n = int(np.prod(leading)) * (k // QK_K)
    fields = reference.IQ1MFields(grid_index=rng.integers(0, 2048, (n, 32), dtype=np.uint16),
                                  delta_negative=rng.random((n, 32)) < 0.5,
                                  scale=rng.integers(0, 8, (n, 16), dtype=np.uint8),
                                  d_bits=typical_scale_bits(rng, n))
    return reference.encode_fields(fields).reshape(*leading, (k // QK_K) * 56)


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
