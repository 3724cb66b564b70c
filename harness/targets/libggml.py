"""numpy-in, numpy-out calls into a ggml build (llama.cpp mainline or ik_llama.cpp) via ctypes.

The ggml target's counterpart of `binding.Library`: same operations, same array layouts
(docs/numerics.md), so the worker runs a case on either. Used inside the isolated worker
process only; nothing here protects the caller from a crash or a GGML_ABORT.

Two API generations are handled:

- mainline (split libraries): libggml-base.so (graph building, type names),
  libggml-cpu.so (ggml_cpu_init, ggml_graph_compute_with_ctx, ggml_get_type_traits_cpu),
  libggml.so (backend registry). All three are loaded RTLD_GLOBAL, base first.
- older single library (ik_llama.cpp): libggml.so with everything, including
  ggml_graph_compute_with_ctx; no ggml_cpu_init (then it is simply not called).

Type ids are looked up by name with ggml_type_name over the type range (never hard-coded).

Activations: ggml quantizes float activations to its mul_mat "vec_dot_type" (Q8_K for
IQ1_M) inside the op. `quantize_q8k` calls that same quantizer (mainline: the CPU type
traits' from_float of Q8_K, which the vec_dot and the tiled paths both use; older builds:
the exported quantize_row_q8_K, else quantize_row_q8_K_ref) so the parent can feed
exactly those bytes to the reference (reference.q8k_from_bytes).

mul_mat_id and unused slots: ggml has no "unused slot" (-1) concept (it asserts
0 <= id < n_expert). An unused slot is routed to expert 0 and its output row is then
zeroed here, which matches the contract's "+0.0f". Note that this adds the token to
expert 0's batch inside ggml (the batch composition ggml sees differs from the case's
routing table): the outputs of used slots are still checked in full.

moe_up_gate: with ggml_moe_up_gate (ik_llama.cpp) the fused op is called. Without it
(mainline), the op is composed as two mul_mat_id graphs and the activation is applied in
numpy float64 (reference.silu_exact / gelu_exact), rounded once to float32 after the
multiplication with up; the result is checked against the fused op's float64 bound.
"""
from __future__ import annotations

import ctypes
import glob
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import reference

from ..options import KernelOptions
from .libiq1m import BLOCK_BYTES, QK_K, LibraryError

Q8K_BYTES = 292

# Load order: dependencies first. Names of the mainline split libraries and the older single one.
LIB_ORDER = ("libggml-base.so", "libggml-cpu.so", "libggml.so")

_p = ctypes.c_void_p
_i64 = ctypes.c_int64
_i32 = ctypes.c_int32


class _InitParams(ctypes.Structure):
    _fields_ = [("mem_size", ctypes.c_size_t), ("mem_buffer", ctypes.c_void_p), ("no_alloc", ctypes.c_bool)]


class _TypeTraitsCpu(ctypes.Structure):  # mainline ggml-cpu.h struct ggml_type_traits_cpu
    _fields_ = [("from_float", ctypes.c_void_p), ("vec_dot", ctypes.c_void_p), ("vec_dot_type", ctypes.c_int),
                ("nrows", ctypes.c_int64)]


_FROM_FLOAT = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)


@dataclass(frozen=True)
class Q8KLayout:
    """Where a build keeps the fields of its Q8_K block (byte offsets), as found by probing:
    mainline {float d; int8 qs[256]; int16 bsums[16]} is 292 bytes, ik_llama.cpp's has a
    float `sum` after d (296 bytes), a future fork may differ again."""
    size: int
    d: int
    qs: int
    bsums: int

    def __str__(self) -> str:
        return f"{self.size} bytes, d@{self.d} qs@{self.qs} bsums@{self.bsums}"

    def normalise(self, raw: np.ndarray) -> np.ndarray:
        """uint8 [..., size] blocks of the build -> [..., 292] in the reference's layout."""
        return np.ascontiguousarray(np.concatenate(
            [raw[..., self.d:self.d + 4], raw[..., self.qs:self.qs + QK_K], raw[..., self.bsums:self.bsums + 32]],
            axis=-1))


def probe_row() -> tuple[np.ndarray, np.ndarray]:
    """(x, q): a row of 256 activations whose Q8_K quantization leaves no rounding choice to
    any quantizer (x = q / 16 with integer q in [-127, 127], |q| = 127 once), so the quants
    are q or -q and d is 1/16 or -1/16 whatever the rounding rule or sign convention."""
    i = np.arange(QK_K)
    q = ((i * 37 + 11) % 251 - 125).astype(np.int8)
    q[5] = -127
    return (q.astype(np.float32) / np.float32(16)), q


def find_q8k_layout(raw: np.ndarray, q: np.ndarray) -> Q8KLayout | None:
    """The unique layout in which `raw` (one block, `size` bytes) holds quants +-q, d = +-1/16
    of the same sign, and the 16 bsums of those quants; None if there is none or several."""
    size = raw.size
    found = []
    for sign in (1, -1):
        quants = (sign * q.astype(np.int16)).astype(np.int8)
        d_bytes = np.float32(sign / 16).tobytes()
        bsums = quants.astype(np.int16).reshape(16, 16).sum(axis=1).astype("<i2").tobytes()
        for o_qs in range(0, size - QK_K + 1):
            if raw[o_qs:o_qs + QK_K].tobytes() != quants.tobytes():
                continue
            taken = set(range(o_qs, o_qs + QK_K))
            ds = [o for o in range(0, size - 3) if raw[o:o + 4].tobytes() == d_bytes and not taken & set(range(o, o + 4))]
            bs = [o for o in range(0, size - 31) if raw[o:o + 32].tobytes() == bsums and not taken & set(range(o, o + 32))]
            found += [Q8KLayout(size, o_d, o_qs, o_b) for o_d in ds for o_b in bs]
    return found[0] if len(found) == 1 else None


def find_libraries(lib_dir: str | os.PathLike) -> list[Path]:
    """The ggml shared libraries in a directory, in load order ([] when there are none)."""
    lib_dir = Path(lib_dir)
    found = []
    for name in LIB_ORDER:
        candidates = sorted(glob.glob(str(lib_dir / name))) or sorted(glob.glob(str(lib_dir / (name + ".*"))))
        if candidates:
            found.append(Path(candidates[0]))
    return found


class GgmlLibrary:
    writes_into_out = True  # the op methods take `out=` (harness.ops.Op.call; canary-filled)
    """ggml loaded from one directory of shared libraries."""

    Error = LibraryError

    def __init__(self, lib_dir: str | os.PathLike):
        self.lib_dir = str(lib_dir)
        paths = find_libraries(lib_dir)
        if not any(p.name.startswith("libggml.so") or p.name.startswith("libggml-base.so") for p in paths):
            raise OSError(f"no libggml.so or libggml-base.so in {lib_dir}")
        self.paths = [str(p) for p in paths]
        self.libs = [ctypes.CDLL(p, mode=ctypes.RTLD_GLOBAL) for p in self.paths]
        self.api = "split" if any("libggml-base" in p for p in self.paths) else "single"
        self._fns: dict[str, object] = {}
        sig = {
            "ggml_init": (_p, [_InitParams]),
            "ggml_free": (None, [_p]),
            "ggml_type_name": (ctypes.c_char_p, [ctypes.c_int]),
            "ggml_type_size": (ctypes.c_size_t, [ctypes.c_int]),
            "ggml_blck_size": (_i64, [ctypes.c_int]),
            "ggml_new_tensor_2d": (_p, [_p, ctypes.c_int, _i64, _i64]),
            "ggml_new_tensor_3d": (_p, [_p, ctypes.c_int, _i64, _i64, _i64]),
            "ggml_get_data": (_p, [_p]),
            "ggml_nbytes": (ctypes.c_size_t, [_p]),
            "ggml_mul_mat": (_p, [_p, _p, _p]),
            "ggml_mul_mat_id": (_p, [_p, _p, _p, _p]),
            "ggml_new_graph": (_p, [_p]),
            "ggml_build_forward_expand": (None, [_p, _p]),
            "ggml_graph_compute_with_ctx": (ctypes.c_int, [_p, _p, ctypes.c_int]),
        }
        optional = {
            "ggml_cpu_init": (None, []),
            "ggml_get_type_traits_cpu": (ctypes.POINTER(_TypeTraitsCpu), [ctypes.c_int]),
            "ggml_moe_up_gate": (_p, [_p, _p, _p, _p, _p, ctypes.c_int]),
            "ggml_unary_op_name": (ctypes.c_char_p, [ctypes.c_int]),
            "quantize_row_q8_K": (None, [_p, _p, _i64]),
            "quantize_row_q8_K_ref": (None, [_p, _p, _i64]),
            "ggml_commit": (ctypes.c_char_p, []),
            "ggml_version": (ctypes.c_char_p, []),
        }
        for name, (restype, argtypes) in sig.items():
            fn = self._lookup(name)
            if fn is None:
                raise OSError(f"{name} not found in {', '.join(self.paths)}")
            fn.restype, fn.argtypes = restype, argtypes
            self._fns[name] = fn
        for name, (restype, argtypes) in optional.items():
            fn = self._lookup(name)
            if fn is not None:
                fn.restype, fn.argtypes = restype, argtypes
                self._fns[name] = fn
        if "ggml_cpu_init" in self._fns:  # fp16 tables: without it every IQ1_M dot product is 0
            self._fns["ggml_cpu_init"]()
        self.types = self._type_ids()
        for name in ("iq1_m", "q8_K"):
            if name not in self.types:
                raise OSError(f"this ggml has no type {name!r} (types: {', '.join(sorted(self.types))})")
        self.IQ1_M, self.Q8_K = self.types["iq1_m"], self.types["q8_K"]
        self.F32, self.I32 = self.types["f32"], self.types["i32"]
        if self._fn("ggml_type_size")(self.IQ1_M) != BLOCK_BYTES or self._fn("ggml_blck_size")(self.IQ1_M) != QK_K:
            raise OSError("this ggml's IQ1_M block is not 56 bytes per 256 weights")
        self.q8k_type_size = int(self._fn("ggml_type_size")(self.Q8_K))
        self._quantizer, self.quantizer_name = self._find_quantizer()
        self.q8k_layout = self._probe_q8k_layout()
        self.unary_ops = self._unary_ids() if "ggml_unary_op_name" in self._fns else {}
        self.has_fused = "ggml_moe_up_gate" in self._fns and {"SILU", "GELU"} <= set(self.unary_ops)

    # -- lookup --------------------------------------------------------------------------
    def _lookup(self, name: str):
        for lib in reversed(self.libs):  # the most specific library first (cpu over base)
            try:
                return getattr(lib, name)
            except AttributeError:
                continue
        return None

    def _fn(self, name: str):
        return self._fns[name]

    NEEDED_TYPES = ("f32", "i32", "q8_K", "iq1_m")

    def _type_ids(self) -> dict[str, int]:
        """Type ids by name. ggml_type_name does not check its argument (mainline indexes its
        traits table with it; past GGML_TYPE_COUNT it returns garbage), and the count is not
        exported: so the scan stops as soon as every type this module needs was seen."""
        ids = {}
        for t in range(128):
            raw = self._fn("ggml_type_name")(t)
            name = raw.decode(errors="replace") if raw else ""
            if not name or name == "NONE":
                break
            ids.setdefault(name, t)
            if all(n in ids for n in self.NEEDED_TYPES):
                break
        return ids

    def _unary_ids(self) -> dict[str, int]:
        """Unary op ids by name (same caution as _type_ids: stop once SILU and GELU are seen)."""
        ids = {}
        for op in range(64):
            raw = self._fn("ggml_unary_op_name")(op)
            name = raw.decode(errors="replace") if raw else ""
            if not name or name == "NONE":
                break
            ids.setdefault(name, op)
            if "SILU" in ids and "GELU" in ids:
                break
        return ids

    def _find_quantizer(self):
        """The Q8_K quantizer ggml's own matmul uses for IQ1_M activations."""
        if "ggml_get_type_traits_cpu" in self._fns:
            traits = self._fn("ggml_get_type_traits_cpu")(self.IQ1_M).contents
            if traits.vec_dot_type != self.Q8_K:
                raise OSError(f"IQ1_M's vec_dot_type is type {traits.vec_dot_type}, not Q8_K")
            q8 = self._fn("ggml_get_type_traits_cpu")(self.Q8_K).contents
            if q8.from_float:
                return _FROM_FLOAT(q8.from_float), "ggml_get_type_traits_cpu(q8_K)->from_float"
        for name in ("quantize_row_q8_K", "quantize_row_q8_K_ref"):
            if name in self._fns:
                return self._fns[name], name
        raise OSError("no Q8_K quantizer exported (ggml_get_type_traits_cpu, quantize_row_q8_K)")

    def _probe_q8k_layout(self) -> Q8KLayout:
        x, q = probe_row()
        raw = np.zeros(self.q8k_type_size, dtype=np.uint8)
        self._quantizer(x.ctypes.data_as(_p), raw.ctypes.data_as(_p), QK_K)
        layout = find_q8k_layout(raw, q)
        if layout is None:
            raise OSError(f"cannot identify this build's Q8_K block layout ({self.q8k_type_size} bytes; "
                          f"{self.quantizer_name} of a probe row holds no unique d, qs, bsums)")
        return layout

    def version(self) -> str:
        parts = []
        for name in ("ggml_version", "ggml_commit"):
            if name in self._fns:
                raw = self._fn(name)()
                parts.append(raw.decode(errors="replace") if raw else "?")
        return " ".join(parts) or "unknown"

    def describe(self) -> dict:
        return {"lib_dir": self.lib_dir, "libraries": self.paths, "api": self.api, "version": self.version(),
                "iq1_m_type": self.IQ1_M, "q8_K_type": self.Q8_K, "q8_K_type_size": self.q8k_type_size,
                "quantizer": self.quantizer_name, "fused_moe_up_gate": self.has_fused,
                "cpu_init": "ggml_cpu_init" in self._fns, "q8_K_layout": str(self.q8k_layout),
                "env": {k: v for k, v in os.environ.items() if k.startswith("GGML_")}}

    def extras(self, case) -> dict[str, np.ndarray]:
        """ggml's own Q8_K bytes of the case's activations, for the bound check."""
        return {"q8k": self.quantize_q8k(case.arrays["x"])}

    # -- activations ---------------------------------------------------------------------
    def quantize_q8k(self, x: np.ndarray) -> np.ndarray:
        """x float32 [T, K] -> uint8 [T, K/256, 292]: ggml's own Q8_K bytes of each row, its
        d, qs and bsums moved to the reference's layout (`q8k_layout`)."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        t, k = x.shape
        nb = k // QK_K
        size = self.q8k_type_size
        raw = np.zeros((t, nb * size), dtype=np.uint8)
        for i in range(t):  # row by row, as the op does
            self._quantizer(x[i].ctypes.data_as(_p), raw[i].ctypes.data_as(_p), k)
        # ggml leaves bsums unwritten in an all-zero block (facts.md); we zero-initialised them.
        return self.q8k_layout.normalise(raw.reshape(t, nb, size))

    # -- graphs --------------------------------------------------------------------------
    def _context(self, data_bytes: int, work_bytes: int):
        mem = int(data_bytes + 2 * work_bytes + 64 * 1024 * 1024)
        ctx = self._fn("ggml_init")(_InitParams(mem, None, False))
        if not ctx:
            raise LibraryError(-1, f"ggml_init failed for {mem} bytes")
        return ctx

    def _tensor(self, ctx, type_id: int, *ne: int, data: np.ndarray | None = None):
        fn = self._fn("ggml_new_tensor_2d" if len(ne) == 2 else "ggml_new_tensor_3d")
        t = fn(ctx, type_id, *ne)
        if not t:
            raise LibraryError(-1, "ggml_new_tensor failed (context too small)")
        if data is not None:
            data = np.ascontiguousarray(data)
            n = self._fn("ggml_nbytes")(t)
            if n != data.nbytes:
                raise LibraryError(-1, f"tensor holds {n} bytes, array {data.nbytes}")
            ctypes.memmove(self._fn("ggml_get_data")(t), data.ctypes.data, n)
        return t

    def _compute(self, ctx, result, n_threads: int, shape: tuple[int, ...], out: np.ndarray | None = None
                 ) -> np.ndarray:
        """Compute the graph of `result` into `out` (allocated when None). A given `out`
        holds the harness's canary (harness.canary): it is copied into the result tensor
        before the computation, so an element ggml never writes comes back holding it."""
        graph = self._fn("ggml_new_graph")(ctx)
        self._fn("ggml_build_forward_expand")(graph, result)
        out = np.empty(shape, dtype=np.float32) if out is None else out
        n = self._fn("ggml_nbytes")(result)
        if n != out.nbytes:
            raise LibraryError(-1, f"result holds {n} bytes, expected {out.nbytes}")
        data = self._fn("ggml_get_data")(result)
        ctypes.memmove(data, out.ctypes.data, n)
        status = self._fn("ggml_graph_compute_with_ctx")(ctx, graph, int(n_threads))
        if status != 0:
            raise LibraryError(status, f"ggml_graph_compute_with_ctx returned status {status}")
        ctypes.memmove(out.ctypes.data, data, n)
        return out

    def _q8_bytes(self, n_tokens: int, k: int) -> int:
        return n_tokens * (k // QK_K) * max(self.q8k_type_size, Q8K_BYTES)

    # -- operations ----------------------------------------------------------------------
    @staticmethod
    def _k(w: np.ndarray) -> int:
        """K of the weights, from their bytes (x's K is given to ggml separately: a mismatch
        is ggml's to detect, as it would be in a real graph)."""
        return w.shape[-1] // BLOCK_BYTES * QK_K

    def mul_mat(self, w: np.ndarray, x: np.ndarray, opt: KernelOptions, *, out=None) -> np.ndarray:
        rows, k = w.shape[0], self._k(w)
        n_tokens = x.shape[0]
        if n_tokens == 0 or rows == 0:
            return np.zeros((n_tokens, rows), dtype=np.float32)
        ctx = self._context(w.nbytes + x.nbytes + 4 * rows * n_tokens, self._q8_bytes(n_tokens, k))
        try:
            a = self._tensor(ctx, self.IQ1_M, k, rows, data=w)
            b = self._tensor(ctx, self.F32, x.shape[1], n_tokens, data=x)
            r = self._fn("ggml_mul_mat")(ctx, a, b)
            return self._compute(ctx, r, opt.n_threads, (n_tokens, rows), out)
        finally:
            self._fn("ggml_free")(ctx)

    def _id_inputs(self, ctx, x, ids):
        n_tokens, top_k = ids.shape
        k = x.shape[1]  # activations' own K
        if (ids < 0).any():
            raise LibraryError(-1, "ggml has no unused routing slot (-1): route every slot to an expert")
        b = self._tensor(ctx, self.F32, k, 1, n_tokens, data=x)
        t_ids = self._tensor(ctx, self.I32, top_k, n_tokens, data=np.ascontiguousarray(ids, dtype=np.int32))
        return b, t_ids

    def _id_context(self, ws, x, ids):
        n_tokens, top_k = ids.shape
        n_experts = ws[0].shape[0]
        data = sum(w.nbytes for w in ws) + x.nbytes + ids.nbytes + 4 * n_tokens * top_k * ws[0].shape[1] * (len(ws) + 1)
        work = self._q8_bytes(n_tokens, x.shape[1]) + 16 * n_experts * (n_tokens * top_k + 64)
        return self._context(data, work)

    def mul_mat_id(self, w: np.ndarray, x: np.ndarray, ids: np.ndarray, opt: KernelOptions, *, out=None
                   ) -> np.ndarray:
        n_experts, rows = w.shape[0], w.shape[1]
        n_tokens, top_k = ids.shape
        k = self._k(w)
        if n_tokens == 0 or top_k == 0 or rows == 0:
            return np.zeros((n_tokens, top_k, rows), dtype=np.float32)
        ctx = self._id_context([w], x, ids)
        try:
            a = self._tensor(ctx, self.IQ1_M, k, rows, n_experts, data=w)
            b, t_ids = self._id_inputs(ctx, x, ids)
            r = self._fn("ggml_mul_mat_id")(ctx, a, b, t_ids)
            return self._compute(ctx, r, opt.n_threads, (n_tokens, top_k, rows), out)
        finally:
            self._fn("ggml_free")(ctx)

    def moe_up_gate(self, w_up: np.ndarray, w_gate: np.ndarray, x: np.ndarray, ids: np.ndarray, act: str,
                    opt: KernelOptions, *, out=None) -> np.ndarray:
        n_experts, rows = w_up.shape[0], w_up.shape[1]
        n_tokens, top_k = ids.shape
        k = self._k(w_up)
        if n_tokens == 0 or top_k == 0 or rows == 0:
            return np.zeros((n_tokens, top_k, rows), dtype=np.float32)
        if self.has_fused and opt.fused:
            ctx = self._id_context([w_up, w_gate], x, ids)
            try:
                a_up = self._tensor(ctx, self.IQ1_M, k, rows, n_experts, data=w_up)
                a_gate = self._tensor(ctx, self.IQ1_M, k, rows, n_experts, data=w_gate)
                b, t_ids = self._id_inputs(ctx, x, ids)
                r = self._fn("ggml_moe_up_gate")(ctx, a_up, a_gate, b, t_ids, self.unary_ops[act.upper()])
                out = self._compute(ctx, r, opt.n_threads, (n_tokens, top_k, rows), out)
            finally:
                self._fn("ggml_free")(ctx)
        else:
            # each mul_mat_id writes into a copy of the canary; an element either left holding
            # it keeps the canary in the composed output too
            fill = None if out is None else out.copy()
            up = self.mul_mat_id(w_up, x, ids, opt, out=None if fill is None else fill.copy())
            gate = self.mul_mat_id(w_gate, x, ids, opt, out=None if fill is None else fill.copy())
            act64 = {"silu": reference.silu_exact, "gelu": reference.gelu_exact}[act]
            with np.errstate(over="ignore", invalid="ignore", under="ignore"):
                composed = (up.astype(np.float64) * act64(gate.astype(np.float64))).astype(np.float32)
            if fill is None:
                return composed
            missed = (up.view(np.uint32) == fill.view(np.uint32)) | (gate.view(np.uint32) == fill.view(np.uint32))
            out[...] = np.where(missed, fill, composed)
        return out
