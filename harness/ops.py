"""The operations under test, one `Op` each, registered once in `OPS`.

An Op holds every fact about one operation that the rest of the harness needs, in the
spirit of gguf-py's per-type classes: its arrays and their validation, its geometry
(K, rows, tokens, per-expert token counts), how to describe a case, its reference forms
(canonical emulation, float64 value, error bound), which part of the output the reference
is compared on (`reference_subset`: every element of an affordable case, a drawn subset of
rows and tokens of a big one), the output's canary (`harness.canary`: what an element the
library never wrote looks like), the option sets a case of it runs (`run_star`), and how to
call it on a target binding.

Two kinds:
- GEMM ops (`GemmOp`: mul_mat, mul_mat_id, moe_up_gate): IQ1_M weights, activations,
  routing; each binding has one method per op, named after it, taking the op's arrays in
  `Op.arrays` order, then the activation when the op has one, then the KernelOptions, and
  the keyword `out` (a canary-filled output array to write into).
- conversion ops (quantize_q8k, dequantize, prepack, activation): the library's standalone
  entry points of iq1m.h, each bit for bit against its reference definition.

Everything else iterates over `OPS` instead of branching on names: adding an operation is
one new entry here plus its kernels and binding methods. A target says which ops it runs
(`Target.supports`).
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

import reference

from . import canary
from .options import BASELINE_THRESHOLD, KernelOptions, run_star

QK_K = reference.QK_K
BLOCK_BYTES = reference.IQ1M_BLOCK_BYTES
PREPACKED_BYTES = reference.PREPACKED_BLOCK_BYTES
Q8K_BYTES = reference.Q8K_BLOCK_BYTES
ACTIVATIONS = ("silu", "gelu")
DTYPES = {"x": np.float32, "ids": np.int32}  # every weight array is IQ1_M bytes (uint8)
MAX_REPORTED = 5

# The reference decodes at most about this many weight blocks per case (all of an affordable
# case; a big one is compared on a subset of rows and tokens that fits, see GemmOp).
FULL_REFERENCE_BLOCKS = 6144


def same_bits(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Elementwise equality of two outputs: float32 bits (any NaN equals any NaN; +0 and -0
    differ), or plain equality for integer and byte outputs."""
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype.kind == "f" or b.dtype.kind == "f":
        a = np.asarray(a, dtype=np.float32)
        b = np.asarray(b, dtype=np.float32)
        return (a.view(np.uint32) == b.view(np.uint32)) | (np.isnan(a) & np.isnan(b))
    return a == b


def ulp_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Number of float32 values between a and b (0 for equal bits; -1 where a NaN is involved)."""
    def ordered(x):
        i = np.asarray(x, dtype=np.float32).view(np.int32).astype(np.int64)
        return np.where(i < 0, -(i & 0x7FFFFFFF), i)

    d = np.abs(ordered(a) - ordered(b))
    return np.where(np.isnan(a) | np.isnan(b), -1, d)


@dataclass(frozen=True)
class Subset:
    """The part of an output the reference is compared on: the outputs of `tokens` (the
    leading axis) and `rows` (the last axis); None means all. Every output element of a
    GEMM depends on its own token and row only, so the reference of the subset is the
    reference of the inputs restricted to them."""
    tokens: np.ndarray | None = None
    rows: np.ndarray | None = None

    def take(self, out: np.ndarray) -> np.ndarray:
        if self.tokens is not None:
            out = out[self.tokens]
        if self.rows is not None:
            out = out[..., self.rows]
        return out

    def global_index(self, idx: tuple[int, ...]) -> tuple[int, ...]:
        idx = list(idx)
        if self.tokens is not None:
            idx[0] = int(self.tokens[idx[0]])
        if self.rows is not None:
            idx[-1] = int(self.rows[idx[-1]])
        return tuple(idx)

    def limit(self, n_tokens: int, n_rows: int, max_tokens: int, max_rows: int) -> "Subset":
        """At most max_tokens tokens and max_rows rows of this subset (of an output with
        n_tokens x n_rows), evenly spread, always keeping the first and the last."""
        def pick(chosen, n, cap):
            chosen = np.arange(n) if chosen is None else chosen
            if len(chosen) <= cap:
                return None if len(chosen) == n else chosen
            return chosen[np.unique(np.linspace(0, len(chosen) - 1, cap).round().astype(np.int64))]
        return Subset(tokens=pick(self.tokens, n_tokens, max_tokens), rows=pick(self.rows, n_rows, max_rows))

    def describe(self, n_tokens: int, n_rows: int) -> str:
        t = n_tokens if self.tokens is None else len(self.tokens)
        r = n_rows if self.rows is None else len(self.rows)
        return f"reference compared on {t} of {n_tokens} tokens x {r} of {n_rows} rows (invariances: every element)"


FULL = Subset()


def _hex(v, dtype) -> str:
    if np.dtype(dtype).kind == "f":
        return f"0x{np.float32(v).view(np.uint32):08x}"
    return f"0x{int(v) & 0xFF:02x}"


class Op:
    name: ClassVar[str]
    kind: ClassVar[str]                     # "gemm" or "conversion"
    array_names: ClassVar[tuple[str, ...]]
    weights: ClassVar[tuple[str, ...]] = ()  # IQ1_M weight arrays
    routed: ClassVar[bool] = False           # has a routing table `ids` [tokens, top_k] (-1: unused slot)
    has_activation: ClassVar[bool] = False
    unfused_variant: ClassVar[bool] = False  # the library also runs it unfused (options.fused = 0)
    batched: ClassVar[bool] = False          # a token's output must not depend on the other tokens
    output_dtype: ClassVar = np.float32
    index_names: ClassVar[str] = "index"
    max_rows: ClassVar[int] = 80             # the everyday strategy's shapes (they shrink well)
    max_blocks: ClassVar[int] = 28
    reference_forms: ClassVar[tuple]         # (canonical, exact, bound) functions of arrays

    # -- arrays ----------------------------------------------------------------------------
    @property
    def arrays(self) -> tuple[str, ...]:
        return self.array_names

    def dtype(self, array: str):
        return DTYPES.get(array, np.uint8)

    def coerce(self, arrays: dict) -> dict[str, np.ndarray]:
        missing = [n for n in self.arrays if n not in arrays]
        if missing:
            raise ValueError(f"{self.name} case lacks arrays {missing}")
        return {n: np.ascontiguousarray(arrays[n], dtype=self.dtype(n)) for n in self.arrays}

    def validate(self, a: dict[str, np.ndarray], act: str) -> None:
        """ValueError naming the first inconsistency: a case the library is not defined for
        (as opposed to one it must reject, see `rejected_status`)."""
        if self.has_activation and act not in ACTIVATIONS:
            raise ValueError(f"unknown activation {act!r}; expected one of {ACTIVATIONS}")

    def rejected_status(self, a: dict[str, np.ndarray]) -> str | None:
        """The error the contract says the library must return for these (valid-shaped)
        arrays, or None."""
        return None

    # -- geometry --------------------------------------------------------------------------
    def k(self, a) -> int:
        return 0

    def n_tokens(self, a) -> int:
        return int(a[self.arrays[0]].shape[0]) if a[self.arrays[0]].ndim else 0

    def rows(self, a) -> int:
        return 0

    def n_experts(self, a) -> int:
        return 0

    def top_k(self, a) -> int:
        return 0

    def slots(self, a) -> int:
        return 0

    def expert_token_counts(self, a, ids: np.ndarray | None = None) -> np.ndarray:
        """Tokens each expert receives (none for a conversion)."""
        return np.zeros(0, dtype=np.int64)

    def output_shape(self, a) -> tuple[int, ...]:
        raise NotImplementedError

    def work(self, a) -> float:
        """Elementary operations of one run: what a timeout scales with."""
        return float(sum(v.size for v in a.values())) * 64

    def describe(self, a, act: str, counts: np.ndarray | None = None) -> str:
        raise NotImplementedError

    # -- runs --------------------------------------------------------------------------------
    def run_star(self, isas: list[str], threads) -> list[KernelOptions]:
        """The option sets one case runs: each differs from the first in one respect."""
        raise NotImplementedError

    # -- reference -------------------------------------------------------------------------
    def reference_subset(self, a) -> Subset:
        """Where the output is compared with the reference (FULL: everywhere)."""
        return FULL

    def restrict(self, a, subset: Subset) -> dict[str, np.ndarray]:
        return a

    def _reference_args(self, a, act: str, x) -> tuple:
        return tuple(a[n] for n in self.arrays) + ((act,) if self.has_activation else ())

    def canonical(self, a, act: str, x=None, subset: Subset = FULL) -> np.ndarray:
        """The contract's result (bit-exact target) on `subset` of the output; `x`: the
        activations as Q8KBlocks instead of a["x"] (a target's own quantization)."""
        return self.reference_forms[0](*self._reference_args(self.restrict(a, subset), act, self._x(x, subset)))

    def exact(self, a, act: str, x=None, subset: Subset = FULL) -> np.ndarray:
        return self.reference_forms[1](*self._reference_args(self.restrict(a, subset), act, self._x(x, subset)))

    def bound(self, a, act: str, x=None, subset: Subset = FULL) -> np.ndarray:
        return self.reference_forms[2](*self._reference_args(self.restrict(a, subset), act, self._x(x, subset)))

    @staticmethod
    def _x(x, subset: Subset):
        return x if x is None or subset.tokens is None else x[subset.tokens]

    # -- comparison ------------------------------------------------------------------------
    def equal(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return same_bits(a, b)

    def describe_differences(self, actual, expected, *, exact=None, bound=None, subset: Subset = FULL) -> str:
        """The first differing elements with their (global) indices, both values, ulp
        distance (float outputs) and the float64 bound when given."""
        bad = ~self.equal(actual, expected)
        idx = np.argwhere(bad)
        lines = [f"{len(idx)} of {actual.size} elements differ; first {min(len(idx), MAX_REPORTED)}:"]
        is_float = np.dtype(actual.dtype).kind == "f"
        if is_float:
            ulps = ulp_distance(actual, expected)
        for pos in idx[:MAX_REPORTED]:
            t = tuple(int(i) for i in pos)
            g = subset.global_index(t)
            if is_float:
                line = (f"  {self.index_names}={g}: got {float(actual[t]):.9g} ({_hex(actual[t], actual.dtype)}) "
                        f"expected {float(expected[t]):.9g} ({_hex(expected[t], expected.dtype)}) ulp={ulps[t]}")
            else:
                line = f"  {self.index_names}={g}: got {int(actual[t])} expected {int(expected[t])}"
            if exact is not None and bound is not None:
                err = abs(float(actual[t]) - float(exact[t]))
                line += f" |got-exact|={err:.3g} bound={float(bound[t]):.3g}"
            lines.append(line)
        return "\n".join(lines)

    # -- canaries --------------------------------------------------------------------------
    def new_output(self, a, run: int) -> np.ndarray:
        """The output array of run `run`, filled with its canary."""
        return canary.fill_float(np.empty(self.output_shape(a), dtype=np.float32), run)

    def unwritten(self, a, out: np.ndarray, run: int) -> tuple[int, list[str]]:
        """(count, descriptions of the first few) of output elements still holding run
        `run`'s canary: never written by the library."""
        mask = canary.unwritten_float(out, run)
        idx = np.argwhere(mask)
        return len(idx), [f"{self.index_names}={tuple(int(i) for i in p)}" for p in idx[:MAX_REPORTED]]

    # -- targets ---------------------------------------------------------------------------
    def call(self, binding, a, act: str, options, *, out=None, cache: dict | None = None) -> np.ndarray:
        """Run the op on a target's binding (harness.targets), writing into `out` when the
        binding takes it (a canary-filled array, see new_output). `cache`: a dict kept for
        the runs of one case (what they may share, such as prepacked weights)."""
        raise NotImplementedError

    @staticmethod
    def scratch_unwritten(cache: dict) -> list[str]:
        """Descriptions of bytes the library left unwritten in buffers of `cache`."""
        return []


# ============================================================================ GEMM ops

class GemmOp(Op):
    kind = "gemm"
    batched = True

    @property
    def arrays(self) -> tuple[str, ...]:
        return self.weights + ("x",) + (("ids",) if self.routed else ())

    @property
    def index_names(self) -> str:  # type: ignore[override]
        return "(token, slot, row)" if self.routed else "(token, row)"

    def validate(self, a: dict[str, np.ndarray], act: str) -> None:
        x = a["x"]
        if x.ndim != 2:
            raise ValueError(f"x must be [tokens, K], got shape {x.shape}")
        k = x.shape[1]
        if k <= 0 or k % QK_K:
            raise ValueError(f"K = {k} is not a positive multiple of {QK_K}")
        ndim = 3 if self.routed else 2
        first = a[self.weights[0]]
        for name in self.weights:
            w = a[name]
            if w.ndim != ndim:
                raise ValueError(f"{name} must have {ndim} dimensions, got shape {w.shape}")
            if w.shape[-1] != k // QK_K * BLOCK_BYTES:
                raise ValueError(f"{name} rows hold {w.shape[-1]} bytes; K = {k} needs {k // QK_K * BLOCK_BYTES} "
                                 f"({k // QK_K} IQ1_M blocks of {BLOCK_BYTES})")
            if w.shape != first.shape:
                raise ValueError(f"{name} has shape {w.shape} but {self.weights[0]} has {first.shape}")
        if self.routed:
            ids = a["ids"]
            if ids.ndim != 2 or ids.shape[0] != x.shape[0] or ids.shape[1] < 1:
                raise ValueError(f"ids must be [tokens={x.shape[0]}, top_k >= 1], got shape {ids.shape}")
            n_experts = first.shape[0]
            if n_experts < 1:
                raise ValueError("a routed op needs at least one expert")
            bad = (ids < -1) | (ids >= n_experts)
            if bad.any():
                t, s = (int(i) for i in np.argwhere(bad)[0])
                raise ValueError(f"ids[{t}, {s}] = {int(ids[t, s])} is outside [-1, {n_experts})")
        super().validate(a, act)

    def rejected_status(self, a: dict[str, np.ndarray]) -> str | None:
        """Non-finite activations cannot be quantized (IQ1M_ERR_NONFINITE)."""
        return None if np.isfinite(a["x"]).all() else "nonfinite"

    # -- geometry ----------------------------------------------------------------------------
    def k(self, a) -> int:
        return int(a["x"].shape[1])

    def n_tokens(self, a) -> int:
        return int(a["x"].shape[0])

    def rows(self, a) -> int:
        return int(a[self.weights[0]].shape[-2])

    def n_experts(self, a) -> int:
        return int(a[self.weights[0]].shape[0]) if self.routed else 1

    def top_k(self, a) -> int:
        return int(a["ids"].shape[1]) if self.routed else 1

    def slots(self, a) -> int:
        """(token, expert) products computed per weight matrix."""
        return int((a["ids"] >= 0).sum()) if self.routed else self.n_tokens(a)

    def expert_token_counts(self, a, ids: np.ndarray | None = None) -> np.ndarray:
        """Tokens each expert receives (a dense op: one 'expert' with every token); `ids`
        overrides the case's table (a target that routes unused slots somewhere)."""
        if not self.routed:
            return np.array([self.n_tokens(a)])
        ids = a["ids"] if ids is None else ids
        return np.bincount(ids[ids >= 0].ravel(), minlength=self.n_experts(a))

    def tokens_of_expert(self, a, expert: int) -> np.ndarray:
        if not self.routed:
            return np.arange(self.n_tokens(a))
        return np.nonzero((a["ids"] == expert).any(axis=1))[0]

    def output_shape(self, a) -> tuple[int, ...]:
        if self.routed:
            return (self.n_tokens(a), self.top_k(a), self.rows(a))
        return (self.n_tokens(a), self.rows(a))

    def work(self, a) -> float:
        """Multiply-adds x2 of one run: what a timeout scales with."""
        return 2.0 * self.rows(a) * self.k(a) * max(self.slots(a), 1) * len(self.weights)

    def one_token(self, a, token: int) -> dict[str, np.ndarray]:
        """The arrays of the same case reduced to one token (weights unchanged)."""
        return {n: (v[token:token + 1] if n in ("x", "ids") else v) for n, v in a.items()}

    def describe(self, a, act: str, counts: np.ndarray | None = None) -> str:
        text = f"{self.name} rows={self.rows(a)} K={self.k(a)} tokens={self.n_tokens(a)}"
        if self.routed:
            counts = self.expert_token_counts(a) if counts is None else counts
            text += f" experts={self.n_experts(a)} top_k={self.top_k(a)} per-expert tokens={_counts_text(counts)}"
        if self.has_activation:
            text += f" act={act}"
        return text

    def run_star(self, isas: list[str], threads) -> list[KernelOptions]:
        return run_star(isas, list(threads), unfused=self.unfused_variant)

    # -- reference -------------------------------------------------------------------------
    def _reference_args(self, a, act: str, x) -> tuple:
        args = tuple(a[n] for n in self.weights) + (a["x"] if x is None else x,)
        args += (a["ids"],) if self.routed else ()
        return args + ((act,) if self.has_activation else ())

    def reference_blocks(self, a, tokens: np.ndarray | None = None, n_rows: int | None = None) -> int:
        """Weight blocks the reference decodes for these tokens (None: all) and row count."""
        nb = self.k(a) // QK_K
        rows = self.rows(a) if n_rows is None else n_rows
        if self.routed:
            ids = a["ids"] if tokens is None else a["ids"][tokens]
            experts = len(np.unique(ids[ids >= 0]))
        else:
            experts = 1 if self.n_tokens(a) else 0
        return experts * rows * nb * len(self.weights)

    def reference_subset(self, a) -> Subset:
        """Every element of an affordable case. A big one (more than FULL_REFERENCE_BLOCKS
        weight blocks to decode) is compared on a subset drawn from a seed of its inputs:
        the tokens that take each path (the busiest expert's, a direct-path expert's), the
        first and last token, a token with an unused or repeated slot, random ones; and the
        rows where code paths change (the first, panel and 64-row block edges, the whole
        partial last panel, the last) plus random rows, as many as fit the budget."""
        if self.reference_blocks(a) <= FULL_REFERENCE_BLOCKS:
            return FULL
        rng = np.random.default_rng(self._seed(a))
        tokens = self._subset_tokens(a, rng)
        nb, mats = self.k(a) // QK_K, len(self.weights)
        experts = max(1, self.reference_blocks(a, tokens, 1) // max(1, nb * mats))
        row_budget = max(12, FULL_REFERENCE_BLOCKS // (experts * nb * mats))
        rows = _subset_rows(self.rows(a), row_budget, rng)
        return Subset(tokens=None if len(tokens) == self.n_tokens(a) else tokens,
                      rows=None if len(rows) == self.rows(a) else rows)

    @staticmethod
    def _seed(a) -> int:
        h = zlib.crc32(repr(sorted((n, v.shape) for n, v in a.items())).encode())
        x = a["x"]
        h = zlib.crc32(np.ascontiguousarray(x[:, :QK_K]).tobytes(), h)
        if "ids" in a:
            h = zlib.crc32(a["ids"].tobytes(), h)
        return h

    def _subset_tokens(self, a, rng: np.random.Generator, max_tokens: int = 6) -> np.ndarray:
        n = self.n_tokens(a)
        if n <= 2:
            return np.arange(n)
        chosen: list[int] = []

        def add(t):
            if t is not None and int(t) not in chosen and len(chosen) < max_tokens:
                chosen.append(int(t))

        if self.routed:
            ids = a["ids"]
            counts = self.expert_token_counts(a)
            used = np.nonzero(counts)[0]
            if used.size:
                busiest = used[np.argmax(counts[used])]
                add(rng.choice(self.tokens_of_expert(a, busiest)))
                quietest = used[np.argmin(counts[used])]
                add(rng.choice(self.tokens_of_expert(a, quietest)))
                at = used[(counts[used] >= BASELINE_THRESHOLD)]
                if at.size:
                    add(rng.choice(self.tokens_of_expert(a, at[np.argmin(counts[at])])))
            odd = np.nonzero((ids < 0).any(axis=1) | (np.sort(ids, axis=1)[:, 1:] == np.sort(ids, axis=1)[:, :-1])
                             .any(axis=1))[0]
            if odd.size:
                add(rng.choice(odd))
        add(0)
        add(n - 1)
        while len(chosen) < min(max_tokens, n):
            add(rng.integers(0, n))
        return np.array(sorted(chosen), dtype=np.int64)

    def restrict(self, a, subset: Subset) -> dict[str, np.ndarray]:
        if subset.tokens is None and subset.rows is None:
            return a
        out = dict(a)
        if subset.tokens is not None:
            out["x"] = a["x"][subset.tokens]
            if self.routed:
                out["ids"] = a["ids"][subset.tokens]
        rows = slice(None) if subset.rows is None else subset.rows
        if self.routed:
            # only the experts the kept tokens use, renumbered (the others are never read)
            ids = out["ids"]
            used = np.unique(ids[ids >= 0])
            out["ids"] = np.where(ids >= 0, np.searchsorted(used, ids), -1).astype(np.int32)
            used = used if used.size else np.zeros(1, np.int64)  # a routed op has >= 1 expert
            for name in self.weights:
                out[name] = a[name][np.ix_(used, np.arange(self.rows(a))[rows])]
        elif subset.rows is not None:
            for name in self.weights:
                out[name] = a[name][subset.rows]
        return out

    # -- targets ---------------------------------------------------------------------------
    def call(self, binding, a, act: str, options, *, out=None, cache: dict | None = None) -> np.ndarray:
        arrays = dict(a)
        if getattr(options, "prepacked", False) and cache is not None and hasattr(binding, "prepack"):
            # the library's own prepacked form of the weights, made once per case (in a
            # canary-filled buffer: a byte it leaves unwritten is seen by `scratch_unwritten`)
            # Of a routed op only the experts the table uses are converted: the others stay
            # canary bytes (grid code 3), which a kernel reading an unused expert would show.
            for name in self.weights:
                if ("prepacked", name) not in cache:
                    w = a[name]
                    scratch = canary.fill_prepacked(
                        np.empty(w.shape[:-1] + (w.shape[-1] // BLOCK_BYTES * PREPACKED_BYTES,), np.uint8), 1000)
                    if self.routed:
                        for e in np.unique(a["ids"][a["ids"] >= 0]):
                            binding.prepack(w[e], self.k(a), out=scratch[e].reshape(-1))
                        cache[("used", name)] = np.unique(a["ids"][a["ids"] >= 0])
                    else:
                        binding.prepack(w, self.k(a), out=scratch.reshape(-1))
                    cache[("prepacked", name)] = scratch
                arrays[name] = cache[("prepacked", name)]
        args = tuple(arrays[n] for n in self.arrays) + ((act,) if self.has_activation else ())
        fn = getattr(binding, self.name)
        if out is not None and getattr(binding, "writes_into_out", False):
            return fn(*args, options, out=out)
        return fn(*args, options)

    @staticmethod
    def scratch_unwritten(cache: dict) -> list[str]:
        """Descriptions of prepacked-weight bytes the library's iq1m_prepack left unwritten."""
        if "scratch checked" in cache:  # the runs of a case share it: once is enough
            return cache["scratch checked"]
        found = []
        for key, scratch in cache.items():
            if not isinstance(key, tuple) or key[0] != "prepacked":
                continue
            if ("used", key[1]) in cache:  # only the used experts were converted
                scratch = scratch[cache[("used", key[1])]]
            nb = scratch.shape[-1] // PREPACKED_BYTES
            masks = canary.unwritten_prepacked(scratch.reshape(scratch.shape[:-1] + (nb, PREPACKED_BYTES)), 1000)
            for field, mask in masks.items():
                idx = np.argwhere(mask)
                if len(idx):
                    found.append(f"iq1m_prepack output of {key[1]}: {len(idx)} blocks with unwritten {field} bytes, "
                                 f"first (..., row, block)={tuple(int(i) for i in idx[0])}")
        cache["scratch checked"] = found
        return found


def _counts_text(counts: np.ndarray) -> str:
    counts = [int(c) for c in counts]
    if len(counts) <= 16:
        return str(counts)
    nz = [(e, c) for e, c in enumerate(counts) if c]
    shown = ", ".join(f"{e}:{c}" for e, c in nz[:12])
    return f"{{{shown}{', ...' if len(nz) > 12 else ''}}} ({len(nz)} of {len(counts)} experts used, max {max(counts)})"


def _subset_rows(rows: int, budget: int, rng: np.random.Generator) -> np.ndarray:
    if rows <= budget:
        return np.arange(rows)
    tail = rows - rows % 16 if rows % 16 else rows - 1
    must = {0, rows - 1} | set(range(tail, rows))
    edges = {1, 15, 16, 17, 31, 32, 63, 64, 65, 127, 128, rows - 2, rows - 16, rows - 17, rows // 2}
    chosen = set(must)
    for r in sorted(edges):
        if 0 <= r < rows and len(chosen) < budget:
            chosen.add(r)
    while len(chosen) < budget:
        chosen.add(int(rng.integers(0, rows)))
    return np.array(sorted(chosen), dtype=np.int64)


class MulMat(GemmOp):
    name = "mul_mat"
    weights = ("w",)
    routed = False
    reference_forms = (reference.mul_mat, reference.mul_mat_exact, reference.mul_mat_bound)


class MulMatId(GemmOp):
    name = "mul_mat_id"
    weights = ("w",)
    routed = True
    max_rows, max_blocks = 48, 12
    reference_forms = (reference.mul_mat_id, reference.mul_mat_id_exact, reference.mul_mat_id_bound)


class MoeUpGate(GemmOp):
    """ffn_up and ffn_gate of the routed experts, fused: up * act(gate)."""
    name = "moe_up_gate"
    weights = ("w_up", "w_gate")
    routed = True
    has_activation = True
    unfused_variant = True
    max_rows, max_blocks = 48, 12
    reference_forms = (reference.moe_up_gate, reference.moe_up_gate_exact, reference.moe_up_gate_bound)


# ============================================================================ conversions

def _unwritten_fields(masks: dict[str, np.ndarray], index_names: str, unit: str = "") -> tuple[int, list[str]]:
    """(count, the first MAX_REPORTED descriptions) of the blocks whose fields (`masks`: field
    name -> bool per block) still hold the run's canary."""
    n, found = 0, []
    for field, mask in masks.items():
        idx = np.argwhere(mask)
        n += len(idx)
        found += [f"{index_names}={tuple(int(i) for i in p)} {field}{unit}" for p in idx[:MAX_REPORTED]]
    return n, found[:MAX_REPORTED]


class ConversionOp(Op):
    """A standalone entry point of iq1m.h: one array in, one out, bit for bit against the
    reference definition (so `exact` is the canonical result and `bound` zero). The ABI's
    conversions take no options: a case still runs once per SIMD level, passing the options
    through, so a binding whose library selects the level by them (or an entry point that
    later takes them) is compared across levels with no change here."""
    kind = "conversion"
    max_rows, max_blocks = 12, 12

    def run_star(self, isas: list[str], threads) -> list[KernelOptions]:
        best = isas[-1]
        return [KernelOptions(n_threads=1, isa=i) for i in [best] + [i for i in isas if i != best]]

    def exact(self, a, act: str, x=None, subset: Subset = FULL) -> np.ndarray:
        return self.canonical(a, act, x, subset)

    def bound(self, a, act: str, x=None, subset: Subset = FULL) -> np.ndarray:
        return np.zeros(self.output_shape(a), dtype=np.float64)


class _WeightConversion(ConversionOp):
    array_names = ("w",)
    index_names = "(row, element)"

    def validate(self, a, act: str) -> None:
        w = a["w"]
        if w.ndim != 2 or w.shape[1] % BLOCK_BYTES:
            raise ValueError(f"w must be [rows, blocks * {BLOCK_BYTES}] bytes, got shape {w.shape}")

    def k(self, a) -> int:
        return int(a["w"].shape[1]) // BLOCK_BYTES * QK_K

    def rows(self, a) -> int:
        return int(a["w"].shape[0])

    def n_tokens(self, a) -> int:
        return 0

    def describe(self, a, act: str, counts=None) -> str:
        return f"{self.name} rows={self.rows(a)} K={self.k(a)}"


class Dequantize(_WeightConversion):
    """iq1m_dequantize_iq1_m: IQ1_M rows -> float32 weights."""
    name = "dequantize"
    reference_forms = (lambda w: reference.dequantize(w.reshape(-1, BLOCK_BYTES)).reshape(w.shape[0], -1),)

    def output_shape(self, a) -> tuple[int, ...]:
        return (self.rows(a), self.k(a))

    def call(self, binding, a, act, options, *, out=None, cache=None) -> np.ndarray:
        w = a["w"]
        if out is not None:
            return binding.dequantize(w.reshape(-1, BLOCK_BYTES), options, out=out.reshape(-1, QK_K)).reshape(out.shape)
        return binding.dequantize(w.reshape(-1, BLOCK_BYTES), options).reshape(self.output_shape(a))


class Prepack(_WeightConversion):
    """iq1m_prepack: IQ1_M rows -> the library's lossless prepacked blocks (80 bytes each)."""
    name = "prepack"
    output_dtype = np.uint8
    index_names = "(row, byte)"
    reference_forms = (lambda w: reference.prepack(w.reshape(-1, BLOCK_BYTES)).reshape(w.shape[0], -1),)

    def output_shape(self, a) -> tuple[int, ...]:
        return (self.rows(a), self.k(a) // QK_K * PREPACKED_BYTES)

    def new_output(self, a, run: int) -> np.ndarray:
        return canary.fill_prepacked(np.empty(self.output_shape(a), np.uint8), run)

    def unwritten(self, a, out, run: int) -> tuple[int, list[str]]:
        rows, nb = self.rows(a), self.k(a) // QK_K
        return _unwritten_fields(canary.unwritten_prepacked(out.reshape(rows, nb, PREPACKED_BYTES), run),
                                 "(row, block)", " bytes")

    def describe_differences(self, actual, expected, *, exact=None, bound=None, subset: Subset = FULL) -> str:
        rows, nb = actual.shape[0], actual.shape[1] // PREPACKED_BYTES
        got = actual.reshape(rows, nb, PREPACKED_BYTES)
        want = expected.reshape(rows, nb, PREPACKED_BYTES)
        bad = np.argwhere((got != want).any(axis=-1))
        lines = [f"{len(bad)} of {rows * nb} prepacked blocks differ; first {min(len(bad), MAX_REPORTED)}:"]
        fields = {"q2": slice(0, 64), "plus": slice(64, 68), "scales": slice(68, 76), "zero": slice(76, 80)}
        for r, b in bad[:MAX_REPORTED]:
            diff = [f"{f} bytes {np.nonzero(got[r, b, s] != want[r, b, s])[0].tolist()[:8]}"
                    for f, s in fields.items() if (got[r, b, s] != want[r, b, s]).any()]
            lines.append(f"  (row, block)=({r}, {b}): " + "; ".join(diff))
        return "\n".join(lines)

    def call(self, binding, a, act, options, *, out=None, cache=None) -> np.ndarray:
        w = a["w"]
        if out is not None:
            return binding.prepack(w, self.k(a), options, out=out.reshape(-1)).reshape(out.shape)
        return binding.prepack(w, self.k(a), options).reshape(self.output_shape(a))


class QuantizeQ8K(ConversionOp):
    """iq1m_quantize_q8_K: float32 activations -> Q8_K blocks (the C struct's 292 bytes)."""
    name = "quantize_q8k"
    array_names = ("x",)
    output_dtype = np.uint8
    index_names = "(token, block, byte)"
    reference_forms = (lambda x: reference.q8k_to_bytes(reference.quantize_q8k(x)),)

    def validate(self, a, act: str) -> None:
        x = a["x"]
        if x.ndim != 2 or x.shape[1] % QK_K:
            raise ValueError(f"x must be [tokens, K] with K a multiple of {QK_K}, got shape {x.shape}")

    def rejected_status(self, a) -> str | None:
        return None if np.isfinite(a["x"]).all() else "nonfinite"

    def k(self, a) -> int:
        return int(a["x"].shape[1])

    def output_shape(self, a) -> tuple[int, ...]:
        return (self.n_tokens(a), self.k(a) // QK_K, Q8K_BYTES)

    def describe(self, a, act: str, counts=None) -> str:
        return f"{self.name} tokens={self.n_tokens(a)} K={self.k(a)}"

    def new_output(self, a, run: int) -> np.ndarray:
        return canary.fill_q8k(np.empty(self.output_shape(a), np.uint8), run)

    def unwritten(self, a, out, run: int) -> tuple[int, list[str]]:
        return _unwritten_fields(canary.unwritten_q8k(out, run), "(token, block)")

    def describe_differences(self, actual, expected, *, exact=None, bound=None, subset: Subset = FULL) -> str:
        got = reference.q8k_from_bytes(np.ascontiguousarray(actual))
        want = reference.q8k_from_bytes(np.ascontiguousarray(expected))
        bad = np.argwhere((actual != expected).any(axis=-1))
        lines = [f"{len(bad)} of {got.d.size} Q8_K blocks differ; first {min(len(bad), MAX_REPORTED)}:"]
        for t, b in bad[:MAX_REPORTED]:
            parts = []
            if got.d[t, b].view(np.uint32) != want.d[t, b].view(np.uint32):
                parts.append(f"d {float(got.d[t, b]):.9g} ({_hex(got.d[t, b], np.float32)}) "
                             f"expected {float(want.d[t, b]):.9g} ({_hex(want.d[t, b], np.float32)})")
            q = np.nonzero(got.qs[t, b] != want.qs[t, b])[0]
            if q.size:
                neg = bool(np.array_equal(got.qs[t, b], -want.qs[t, b].astype(np.int16)))
                parts.append(f"{q.size} of 256 qs differ (first at {int(q[0])}: {int(got.qs[t, b, q[0]])} expected "
                             f"{int(want.qs[t, b, q[0]])}){'; every qs negated: the sign of the max flipped' if neg else ''}")
            s = np.nonzero(got.bsums[t, b] != want.bsums[t, b])[0]
            if s.size:
                parts.append(f"{s.size} of 16 bsums differ")
            lines.append(f"  (token, block)=({int(t)}, {int(b)}): " + "; ".join(parts))
        return "\n".join(lines)

    def call(self, binding, a, act, options, *, out=None, cache=None) -> np.ndarray:
        if out is not None:
            return binding.quantize_q8k(a["x"], options, out=out)
        return binding.quantize_q8k(a["x"])


class Activation(ConversionOp):
    """iq1m_activation: SiLU or GELU of float32 values, elementwise (any length)."""
    name = "activation"
    array_names = ("x",)
    has_activation = True
    index_names = "(element,)"
    reference_forms = (lambda x, act: reference.ACTIVATIONS[act][0](x),)

    def validate(self, a, act: str) -> None:
        if a["x"].ndim != 1:
            raise ValueError(f"x must be 1-D [n], got shape {a['x'].shape}")
        super().validate(a, act)

    def n_tokens(self, a) -> int:
        return 0

    def output_shape(self, a) -> tuple[int, ...]:
        return a["x"].shape

    def describe(self, a, act: str, counts=None) -> str:
        return f"{self.name} n={a['x'].size} act={act}"

    def unwritten(self, a, out, run: int) -> tuple[int, list[str]]:
        # act(NaN) returns its input NaN: an input holding the canary's bits is not a miss
        mask = canary.unwritten_float(out, run) & ~canary.unwritten_float(a["x"], run)
        idx = np.argwhere(mask)
        return len(idx), [f"{self.index_names}={tuple(int(i) for i in p)}" for p in idx[:MAX_REPORTED]]

    def call(self, binding, a, act, options, *, out=None, cache=None) -> np.ndarray:
        if out is not None:
            return binding.activation(act, a["x"], options, out=out)
        return binding.activation(act, a["x"])


OPS: dict[str, Op] = {op.name: op for op in (MulMat(), MulMatId(), MoeUpGate(),
                                             QuantizeQ8K(), Dequantize(), Prepack(), Activation())}
OP_NAMES = tuple(OPS)
GEMM_OPS = tuple(n for n, op in OPS.items() if op.kind == "gemm")
CONVERSION_OPS = tuple(n for n, op in OPS.items() if op.kind == "conversion")


def get(name: str) -> Op:
    try:
        return OPS[name]
    except KeyError:
        raise ValueError(f"unknown operation {name!r}; expected one of {', '.join(OPS)}") from None


def parse_ops(text_or_list) -> tuple[str, ...]:
    """'mul_mat,moe_up_gate' (or a list) -> validated names; ValueError naming the bad ones."""
    names = text_or_list.split(",") if isinstance(text_or_list, str) else list(text_or_list)
    names = [n.strip() for n in names if n.strip()]
    bad = [n for n in names if n not in OPS]
    if bad or not names:
        raise ValueError(f"unknown operation(s) {bad}; choose from {', '.join(OPS)}" if bad
                         else f"no operation given; choose from {', '.join(OPS)}")
    return tuple(dict.fromkeys(names))
