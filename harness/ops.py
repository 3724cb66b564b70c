"""The operations under test, one `Op` each, registered once in `OPS`.

An Op holds every fact about one operation that the rest of the harness needs, in the
spirit of gguf-py's per-type classes: its arrays and their validation, its geometry
(K, rows, tokens, per-expert token counts), how to describe a case, its reference forms
(canonical float32 emulation, float64 value, error bound), and how to call it on a target
binding (each binding has one method per op, named after it, taking the op's arrays in
`Op.arrays` order, then the activation when the op has one, then the KernelOptions).
Everything else iterates over `OPS` instead of branching on names: adding an operation
is one new entry here plus its kernels and binding methods.
"""
from __future__ import annotations

from typing import ClassVar

import numpy as np

import reference

QK_K = reference.QK_K
BLOCK_BYTES = reference.IQ1M_BLOCK_BYTES
ACTIVATIONS = ("silu", "gelu")
DTYPES = {"x": np.float32, "ids": np.int32}  # every weight array is IQ1_M bytes (uint8)


class Op:
    name: ClassVar[str]
    weights: ClassVar[tuple[str, ...]]     # IQ1_M weight arrays, [rows, bytes] or [experts, rows, bytes]
    routed: ClassVar[bool]                 # has a routing table `ids` [tokens, top_k] (-1: unused slot)
    has_activation: ClassVar[bool] = False
    unfused_variant: ClassVar[bool] = False  # the library also runs it unfused (options.fused = 0)
    max_rows: ClassVar[int] = 80             # the everyday strategy's shapes (they shrink well)
    max_blocks: ClassVar[int] = 28
    reference_forms: ClassVar[tuple]         # (canonical, exact, bound) functions of reference/

    # -- arrays ----------------------------------------------------------------------------
    @property
    def arrays(self) -> tuple[str, ...]:
        return self.weights + ("x",) + (("ids",) if self.routed else ())

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
        if self.has_activation and act not in ACTIVATIONS:
            raise ValueError(f"unknown activation {act!r}; expected one of {ACTIVATIONS}")

    @staticmethod
    def rejected_status(a: dict[str, np.ndarray]) -> str | None:
        """The error the contract says the library must return for these (valid-shaped)
        arrays, or None: non-finite activations cannot be quantized (IQ1M_ERR_NONFINITE)."""
        return None if np.isfinite(a["x"]).all() else "nonfinite"

    # -- geometry ----------------------------------------------------------------------------
    @staticmethod
    def k(a) -> int:
        return int(a["x"].shape[1])

    @staticmethod
    def n_tokens(a) -> int:
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

    @property
    def index_names(self) -> str:
        return "(token, slot, row)" if self.routed else "(token, row)"

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
            text += (f" experts={self.n_experts(a)} top_k={self.top_k(a)} "
                     f"per-expert tokens={[int(c) for c in counts]}")
        if self.has_activation:
            text += f" act={act}"
        return text

    # -- reference -------------------------------------------------------------------------
    def _reference_args(self, a, act: str, x) -> tuple:
        args = tuple(a[n] for n in self.weights) + (a["x"] if x is None else x,)
        args += (a["ids"],) if self.routed else ()
        return args + ((act,) if self.has_activation else ())

    def canonical(self, a, act: str, x=None) -> np.ndarray:
        """The contract's float32 result; `x`: the activations as Q8KBlocks instead of a["x"]
        (a target's own quantization)."""
        return self.reference_forms[0](*self._reference_args(a, act, x))

    def exact(self, a, act: str, x=None) -> np.ndarray:
        return self.reference_forms[1](*self._reference_args(a, act, x))

    def bound(self, a, act: str, x=None) -> np.ndarray:
        return self.reference_forms[2](*self._reference_args(a, act, x))

    # -- targets ---------------------------------------------------------------------------
    def call(self, binding, a, act: str, options) -> np.ndarray:
        """Run the op on a target's binding (harness.targets)."""
        args = tuple(a[n] for n in self.arrays) + ((act,) if self.has_activation else ())
        return getattr(binding, self.name)(*args, options)


class MulMat(Op):
    name = "mul_mat"
    weights = ("w",)
    routed = False
    reference_forms = (reference.mul_mat, reference.mul_mat_exact, reference.mul_mat_bound)


class MulMatId(Op):
    name = "mul_mat_id"
    weights = ("w",)
    routed = True
    max_rows, max_blocks = 48, 12
    reference_forms = (reference.mul_mat_id, reference.mul_mat_id_exact, reference.mul_mat_id_bound)


class MoeUpGate(Op):
    """ffn_up and ffn_gate of the routed experts, fused: up * act(gate)."""
    name = "moe_up_gate"
    weights = ("w_up", "w_gate")
    routed = True
    has_activation = True
    unfused_variant = True
    max_rows, max_blocks = 48, 12
    reference_forms = (reference.moe_up_gate, reference.moe_up_gate_exact, reference.moe_up_gate_bound)


OPS: dict[str, Op] = {op.name: op for op in (MulMat(), MulMatId(), MoeUpGate())}
OP_NAMES = tuple(OPS)


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
