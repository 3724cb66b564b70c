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
import json
import os
import select
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import reference

from ..options import KernelOptions
from .libiq1m import BLOCK_BYTES, QK_K, LibraryError
from .prepared import Prepared

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


class _CPlanHead(ctypes.Structure):  # struct ggml_cplan: work_size first, then version-dependent fields
    _fields_ = [("work_size", ctypes.c_size_t), ("rest", ctypes.c_uint8 * 248)]


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


def _gelu_erf(g):
    from math import erf

    return 0.5 * g * (1.0 + np.vectorize(erf)(g / np.sqrt(2.0)))


_ACTIVATION_FORMS = {  # float64 candidates for what a unary id computes in the fused op
    "silu": reference.silu_exact,
    "gelu": reference.gelu_exact,  # the tanh form, as the contract's
    "gelu_erf": _gelu_erf,
    "gelu_quick": lambda g: g / (1.0 + np.exp(-1.702 * g)),
    "relu": lambda g: np.maximum(g, 0.0),
}


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
    """ggml loaded from one directory of shared libraries."""

    Error = LibraryError
    writes_into_out = True  # the op methods take `out=` (harness.ops.Op.call; canary-filled)

    def __init__(self, lib_dir: str | os.PathLike):
        self.lib_dir = str(lib_dir)
        paths = find_libraries(lib_dir)
        if not any(p.name.startswith("libggml.so") or p.name.startswith("libggml-base.so") for p in paths):
            raise OSError(f"no libggml.so or libggml-base.so in {lib_dir}")
        self.paths = [str(p) for p in paths]
        self.libs = [ctypes.CDLL(p, mode=ctypes.RTLD_GLOBAL) for p in self.paths]
        self.api = "split" if any("libggml-base" in p for p in self.paths) else "single"
        self._fns: dict[str, object] = {}
        self._pools: dict[int, tuple[np.ndarray, int]] = {}  # context -> (its memory pool, work estimate)
        self.defects: list[str] = []  # what the last call did beyond its output (worker protocol)
        sig = {
            "ggml_init": (_p, [_InitParams]),
            "ggml_free": (None, [_p]),
            "ggml_used_mem": (ctypes.c_size_t, [_p]),
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
            "iqk_dequant_type": (ctypes.c_int, [ctypes.c_int, ctypes.c_int]),
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
        self.repack = self._repack_switch()
        # What the library does is probed in forked children, before this process computes
        # anything (a probe may abort; a fork after OpenMP threads started would not be safe).
        self.unused_slot_ok = None
        self.unused_slot_ok = self._in_child(self._probe_unused_slot) is True
        names = self._unary_ids() if "ggml_unary_op_name" in self._fns else {}
        self.unary_check = {}
        self.unary_ops = {}
        if "ggml_moe_up_gate" in self._fns and {"SILU", "GELU"} <= set(names):
            self.unary_ops = {n: names[n] for n in ("SILU", "GELU")}
            self.unary_check = self._in_child(self._probe_unary) or {"probe": "died"}
            for name, seen in self.unary_check.items():
                if isinstance(seen, dict) and seen.get("computes") != name.lower():
                    del self.unary_ops[name]  # the id computes something else: the fused op is not used for it
        self.has_fused = bool(self.unary_ops)

    # -- lookup --------------------------------------------------------------------------
    def begin_call(self) -> None:
        """Forget the defects of the previous call (the worker asks before every run)."""
        self.defects.clear()

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
        return self._scan_names("ggml_type_name", 128, self.NEEDED_TYPES)

    def _unary_ids(self) -> dict[str, int]:
        """Unary op ids by name (same caution as _type_ids: stop once SILU and GELU are seen)."""
        return self._scan_names("ggml_unary_op_name", 64, ("SILU", "GELU"))

    def _scan_names(self, name_fn: str, limit: int, needed: tuple[str, ...]) -> dict[str, int]:
        """{name: first id} from `name_fn`(0, 1, ...) up to the first empty or NONE name, or
        until every `needed` name was seen."""
        ids = {}
        for i in range(limit):
            raw = self._fn(name_fn)(i)
            name = raw.decode(errors="replace") if raw else ""
            if not name or name == "NONE":
                break
            ids.setdefault(name, i)
            if all(n in ids for n in needed):
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

    def _repack_switch(self) -> dict:
        """ik_llama.cpp-style builds export iqk_dequant_type(type, n): the type whose rows a
        matmul with n activation rows converts the weights to (the weights' own type when
        none). The first n where IQ1_M turns into another type is where the lossy int8
        repacked path starts."""
        if "iqk_dequant_type" not in self._fns:
            return {}
        fn = self._fn("iqk_dequant_type")
        for n in range(1, 1025):
            t = fn(self.IQ1_M, n)
            if t != self.IQ1_M:
                raw = self._fn("ggml_type_name")(t) if 0 <= t < 1024 else None
                return {"threshold": n, "type": raw.decode(errors="replace") if raw else str(t)}
        return {}

    def _in_child(self, fn, timeout: float = 60.0):
        """fn()'s JSON-able result, computed in a forked child, or None when the child died,
        failed or took longer than `timeout` (its stderr goes to this worker's log)."""
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            try:
                data = json.dumps(fn()).encode()
                view = memoryview(data)
                while view:
                    view = view[os.write(w, view):]
                os._exit(0)
            except BaseException:
                os._exit(3)
        os.close(w)
        chunks, deadline = [], time.monotonic() + timeout
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not select.select([r], [], [], remaining)[0]:
                    os.kill(pid, signal.SIGKILL)
                    break
                chunk = os.read(r, 1 << 16)
                if not chunk:
                    break
                chunks.append(chunk)
        finally:
            os.close(r)
            _, status = os.waitpid(pid, 0)
        if not os.WIFEXITED(status) or os.WEXITSTATUS(status) != 0:
            return None
        return json.loads(b"".join(chunks))

    def _probe_weights(self, rng, leading: tuple[int, ...]) -> np.ndarray:
        n = int(np.prod(leading))
        fields = reference.IQ1MFields(grid_index=rng.integers(0, 2048, (n, 32), dtype=np.uint16),
                                      delta_negative=rng.random((n, 32)) < 0.5,
                                      scale=rng.integers(0, 7, (n, 16), dtype=np.uint8),
                                      d_bits=np.full(n, np.float16(1 / 16).view(np.uint16), dtype=np.uint16))
        return reference.encode_fields(fields).reshape(*leading, BLOCK_BYTES)

    def _probe_unused_slot(self) -> bool:
        """Does mul_mat_id take -1 as "slot unused" (skipped, output +0.0)? Mainline asserts
        0 <= id < n_expert (the child aborts); ik_llama.cpp skips such slots."""
        rng = np.random.default_rng(1)
        w = self._probe_weights(rng, (1, 8))
        x = rng.standard_normal((2, QK_K)).astype(np.float32)
        out = self.mul_mat_id(w, x, np.array([[0], [-1]], dtype=np.int32), KernelOptions())
        return bool(np.all(out[1] == 0) and np.any(out[0] != 0))

    def _probe_unary(self) -> dict:
        """What each unary id the fused op is called with computes, judged by value: the
        fused output against up * f(gate) for SiLU and the GELU forms, with up and gate from
        mul_mat_id on the same inputs (enough tokens for every build's fast path)."""
        rng = np.random.default_rng(2)
        w_up, w_gate = (self._probe_weights(rng, (1, 16)) for _ in range(2))
        n = max(64, self.repack.get("threshold", 0))
        x = rng.standard_normal((n, QK_K)).astype(np.float32)
        ids = np.zeros((n, 1), dtype=np.int32)
        up = self.mul_mat_id(w_up, x, ids, KernelOptions()).astype(np.float64)
        gate = self.mul_mat_id(w_gate, x, ids, KernelOptions()).astype(np.float64)
        seen = {}
        for name, op_id in self.unary_ops.items():
            out = self._fused(w_up, w_gate, x, ids, op_id, 1).astype(np.float64)
            errors = {f: float(np.max(np.abs(out - up * g)) / max(float(np.max(np.abs(up * g))), 1e-30))
                      for f, g in ((f, fn(gate)) for f, fn in _ACTIVATION_FORMS.items())}
            best = min(errors, key=errors.get)
            seen[name] = {"id": op_id, "computes": best if errors[best] < 1e-3 else "none of the known forms",
                          "relative_error": errors}
        return seen

    def version(self) -> str:
        parts = []
        for name in ("ggml_version", "ggml_commit"):
            if name in self._fns:
                raw = self._fn(name)()
                parts.append(raw.decode(errors="replace") if raw else "?")
        return " ".join(parts) or "unknown"

    def identity(self) -> str:
        """What kind of build this is, from what it exports (older trees have no version)."""
        ik = "iqk_dequant_type" in self._fns or "ggml_moe_up_gate" in self._fns
        family = "ik_llama.cpp-like" if ik else ("mainline" if self.api == "split" else "single-library ggml")
        marks = [m for m, present in (("ggml_moe_up_gate", "ggml_moe_up_gate" in self._fns),
                                      ("iqk_* kernels", "iqk_dequant_type" in self._fns),
                                      ("ggml_cpu_init", "ggml_cpu_init" in self._fns)) if present]
        marks.append(f"Q8_K block {self.q8k_type_size} bytes")
        version = self.version()
        marks.append(f"version {version}" if version != "unknown" else "no ggml_version")
        return f"{family} ({', '.join(marks)})"

    def describe(self) -> dict:
        return {"lib_dir": self.lib_dir, "libraries": self.paths, "api": self.api, "version": self.version(),
                "iq1_m_type": self.IQ1_M, "q8_K_type": self.Q8_K, "q8_K_type_size": self.q8k_type_size,
                "quantizer": self.quantizer_name, "fused_moe_up_gate": self.has_fused,
                "cpu_init": "ggml_cpu_init" in self._fns, "q8_K_layout": str(self.q8k_layout),
                "unused_slot": self.unused_slot_ok, "unary_ops": dict(self.unary_ops),
                "unary_check": self.unary_check, "repack": self.repack, "identity": self.identity(),
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
    CANARY = 0xA5
    CANARY_WINDOW = 4 << 20

    def _context(self, data_bytes: int, work_bytes: int):
        """A context for a graph's tensors on a memory pool of our own, with `work_bytes` our
        own estimate of the work buffer its compute needs (`_compute` gives the compute a
        work context of its own, sized from ggml's plan and this estimate)."""
        return self._pool_context(int(data_bytes + 64 * 1024 * 1024), work_bytes)

    def _pool_context(self, mem: int, work_bytes: int = 0):
        pool = np.empty(mem, dtype=np.uint8)
        ctx = self._fn("ggml_init")(_InitParams(mem, pool.ctypes.data, False))
        if not ctx:
            raise LibraryError(-1, f"ggml_init failed for {mem} bytes")
        self._pools[ctx] = (pool, int(work_bytes))
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

    def _free(self, ctx) -> None:
        self._fn("ggml_free")(ctx)
        self._pools.pop(ctx, None)

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
        # ggml_graph_compute_with_ctx allocates the work buffer it plans as the next object of
        # the context it is given: a context of its own, with room for the plan (some builds
        # plan far more than our estimate: ik_llama.cpp sizes the fused op's from the weights)
        # and for what a compute may write past it (ik's fused op plans too little for many
        # tokens). The free rest, filled with a canary first, shows such writes.
        estimate = self._pools[ctx][1]
        room = self._planned_work(graph, n_threads) + 2 * estimate + self.CANARY_WINDOW + (1 << 20)
        work_ctx = self._pool_context(room)
        try:
            pool = self._pools[work_ctx][0]
            start = self._fn("ggml_used_mem")(work_ctx)
            pool[start:] = self.CANARY
            status = self._fn("ggml_graph_compute_with_ctx")(work_ctx, graph, int(n_threads))
            if status != 0:
                raise LibraryError(status, f"ggml_graph_compute_with_ctx returned status {status}")
            planned_end = self._fn("ggml_used_mem")(work_ctx)
            stray = np.flatnonzero(pool[planned_end:] != self.CANARY)
        finally:
            self._free(work_ctx)
        if stray.size:
            self.defects.append(f"the compute wrote {stray.size} bytes past the end of the work buffer it planned "
                                f"({planned_end - start} bytes), the last {int(stray[-1]) + 1} bytes past it: "
                                f"a heap overflow in a context sized as ggml asks")
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
            self._free(ctx)

    def _id_inputs(self, ctx, x, ids):
        n_tokens, top_k = ids.shape
        k = x.shape[1]  # activations' own K
        if self.unused_slot_ok is False and (ids < 0).any():
            raise LibraryError(-1, "this ggml has no unused routing slot (-1): route every slot to an expert")
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
            self._free(ctx)

    def _fused(self, w_up, w_gate, x, ids, unary_id: int, n_threads: int, out=None) -> np.ndarray:
        n_experts, rows = w_up.shape[0], w_up.shape[1]
        n_tokens, top_k = ids.shape
        k = self._k(w_up)
        ctx = self._id_context([w_up, w_gate], x, ids)
        try:
            a_up = self._tensor(ctx, self.IQ1_M, k, rows, n_experts, data=w_up)
            a_gate = self._tensor(ctx, self.IQ1_M, k, rows, n_experts, data=w_gate)
            b, t_ids = self._id_inputs(ctx, x, ids)
            r = self._fn("ggml_moe_up_gate")(ctx, a_up, a_gate, b, t_ids, unary_id)
            return self._compute(ctx, r, n_threads, (n_tokens, top_k, rows), out)
        finally:
            self._free(ctx)

    def moe_up_gate(self, w_up: np.ndarray, w_gate: np.ndarray, x: np.ndarray, ids: np.ndarray, act: str,
                    opt: KernelOptions, *, out=None) -> np.ndarray:
        n_experts, rows = w_up.shape[0], w_up.shape[1]
        n_tokens, top_k = ids.shape
        k = self._k(w_up)
        if n_tokens == 0 or top_k == 0 or rows == 0:
            return np.zeros((n_tokens, top_k, rows), dtype=np.float32)
        if opt.fused and act.upper() in self.unary_ops:
            out = self._fused(w_up, w_gate, x, ids, self.unary_ops[act.upper()], opt.n_threads, out)
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

    # -- prepared graphs (iq1m-harness bench) ----------------------------------------------
    WORK_METHODS = ("reset", "reinit")

    @property
    def work_method(self) -> str:
        """How `prepared_graph` empties its work context before each run by default: "reset"
        (ggml_reset) where the build exports it, else "reinit" (ggml_free, then ggml_init on
        the same caller-owned buffer: older builds such as ik_llama.cpp have no ggml_reset)."""
        return "reset" if self._extra_fn("ggml_reset", None, [_p]) else "reinit"

    def prepared_graph(self, op: str, arrays: dict, opt: KernelOptions, act: str = "silu",
                       work: str | None = None) -> Prepared:
        """`op`'s graph built once on `arrays` (tensors uploaded, graph expanded); calling the
        result runs ggml_graph_compute_with_ctx alone, and `.fetch()` copies the result out.

        The compute takes its work buffer from the context it is given (a too-small one makes
        ggml print a message and crash), so every run gets a work context of its own, emptied
        first (`work`: WORK_METHODS, default `work_method`), with generous room: ggml's own
        plan, plus the activations' Q8_K copy and row lists, plus 64 MiB (ik_llama.cpp's
        fused op plans too little when tokens > 2 x rows x experts). moe_up_gate is
        ggml_moe_up_gate when `opt.fused` and the build has it for `act` (`unary_ops`), else
        two mul_mat_id, the activation and ggml_mul in one graph. `.close()` frees both
        contexts (older builds have 64 context slots in all)."""
        from ..ops import get

        spec = get(op)
        a = spec.coerce(arrays)
        work = work or self.work_method
        if work not in self.WORK_METHODS:
            raise ValueError(f"work method {work!r}: expected one of {self.WORK_METHODS}")
        k, n_tokens = self._k(a[spec.weights[0]]), spec.n_tokens(a)
        out = np.empty(spec.output_shape(a), dtype=np.float32)
        init, free = self._fn("ggml_init"), self._fn("ggml_free")
        ctx = self._context(sum(v.nbytes for v in a.values()) + 4 * out.nbytes, 0)  # + the intermediates
        contexts = [ctx]
        try:
            ws = [self._tensor(ctx, self.IQ1_M, k, *a[n].shape[-2::-1], data=a[n]) for n in spec.weights]
            inputs = self._id_inputs(ctx, a["x"], a["ids"]) if spec.routed else (
                self._tensor(ctx, self.F32, a["x"].shape[1], n_tokens, data=a["x"]),)
            result = getattr(self, f"_node_{op}")(ctx, ws, *inputs, opt=opt, act=act)
            if self._fn("ggml_nbytes")(result) != out.nbytes:
                raise LibraryError(-1, f"result holds {self._fn('ggml_nbytes')(result)} bytes, expected {out.nbytes}")
            graph = self._fn("ggml_new_graph")(ctx)
            self._fn("ggml_build_forward_expand")(graph, result)
            room = (self._planned_work(graph, opt.n_threads) + self._q8_bytes(n_tokens, k)
                    + 16 * spec.n_experts(a) * (n_tokens * spec.top_k(a) + 64) + (64 << 20))
            if work == "reset":
                reset = self._extra_fn("ggml_reset", None, [_p])
                if reset is None:
                    raise LibraryError(-1, "this ggml exports no ggml_reset: use work='reinit'")
                params, buffer = _InitParams(room, None, False), None
            else:
                buffer = np.empty(room + 64, dtype=np.uint8)
                params = _InitParams(room, buffer.ctypes.data + (-buffer.ctypes.data) % 64, False)
            contexts.append(init(params))
            if not contexts[1]:
                raise LibraryError(-1, f"ggml_init of a {room}-byte work context failed")
        except BaseException:
            for c in contexts:
                free(c)
            raise
        compute, data, n_threads = self._fn("ggml_graph_compute_with_ctx"), self._fn("ggml_get_data"), int(opt.n_threads)

        def renew() -> None:
            if work == "reset":
                reset(contexts[1])
                return
            free(contexts[1])
            contexts[1] = init(params)
            if not contexts[1]:
                raise LibraryError(-1, "ggml_init of the work context failed")

        def run() -> None:
            renew()
            status = compute(contexts[1], graph, n_threads)
            if status != 0:
                raise LibraryError(status, f"ggml_graph_compute_with_ctx returned status {status}")

        def fetch() -> np.ndarray:
            ctypes.memmove(out.ctypes.data, data(result), out.nbytes)
            return out

        def close() -> None:
            for c in contexts:
                free(c)
        return Prepared(run, fetch, close, keep=(a, buffer, params))

    def _planned_work(self, graph, n_threads: int) -> int:
        """ggml_graph_plan(graph, n_threads)'s work size (0 where it is not exported). The
        plan struct starts with the size in every API generation; what follows differs, so
        it is read into a larger opaque struct (returned through a hidden pointer either
        way), and the third argument (mainline's threadpool, NULL) is ignored by older
        two-argument builds."""
        plan = self._extra_fn("ggml_graph_plan", _CPlanHead, [_p, ctypes.c_int, _p])
        return int(plan(graph, int(n_threads), None).work_size) if plan else 0

    def _extra_fn(self, name: str, restype, argtypes):
        """A symbol only some callers need, bound on first use (None when not exported)."""
        if name not in self._fns:
            fn = self._lookup(name)
            if fn is None:
                return None
            fn.restype, fn.argtypes = restype, argtypes
            self._fns[name] = fn
        return self._fns[name]

    def _node_mul_mat(self, ctx, ws, b, *, opt, act):
        return self._fn("ggml_mul_mat")(ctx, ws[0], b)

    def _node_mul_mat_id(self, ctx, ws, b, ids, *, opt, act):
        return self._fn("ggml_mul_mat_id")(ctx, ws[0], b, ids)

    def _node_moe_up_gate(self, ctx, ws, b, ids, *, opt, act):
        if opt.fused and act.upper() in self.unary_ops:
            return self._fn("ggml_moe_up_gate")(ctx, *ws, b, ids, self.unary_ops[act.upper()])
        up, gate = (self._fn("ggml_mul_mat_id")(ctx, w, b, ids) for w in ws)
        f, mul = self._extra_fn(f"ggml_{act}", _p, [_p, _p]), self._extra_fn("ggml_mul", _p, [_p, _p, _p])
        return mul(ctx, up, f(ctx, gate))
