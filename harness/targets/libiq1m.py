"""numpy-in, numpy-out calls into a built libiq1m.so (the ABI of kernels/include/iq1m.h).

The project kernels' binding: one method per operation of harness.ops (named after it).
Used inside the isolated worker process (and by tests and bench in-process); nothing here
protects the caller from a crash.

Every method takes an optional `out` array to write into (the worker passes one filled with
a canary, harness.canary, so an element the library never writes is seen); without it the
output is allocated here. The conversions (quantize_q8k, dequantize, prepack, activation)
take the options like the ops, but the ABI's entry points have none: every SIMD level runs
the library's own choice there.
"""
from __future__ import annotations

import ctypes
import dataclasses

import numpy as np

from ..options import REPACK_NEVER, KernelOptions  # noqa: F401  (re-exported: the ABI's options)
from .prepared import Prepared

ISA_NAMES = {"auto": 0, "scalar": 1, "avx2": 2, "avx512vnni": 3}
ISA_BY_VALUE = {v: k for k, v in ISA_NAMES.items()}
ACT_NAMES = {"silu": 0, "gelu": 1}
STATUS_CODES = {"null": 1, "shape": 2, "expert_id": 3, "nonfinite": 4, "threads": 5, "isa": 6, "nomem": 7,
                "invalid": 8}  # enum iq1m_status
BLOCK_BYTES = 56
PREPACKED_BLOCK_BYTES = 80
QK_K = 256


class LibraryError(Exception):
    """A non-zero status returned by the library; `code` is the iq1m_status value."""

    def __init__(self, code: int, message: str):
        self.code = code
        self.message = message
        super().__init__(f"iq1m status {code}: {message}")


class COptions(ctypes.Structure):
    _fields_ = [("n_threads", ctypes.c_int32), ("isa", ctypes.c_int32),
                ("repack_threshold", ctypes.c_int32), ("fused", ctypes.c_int32),
                ("prepacked", ctypes.c_int32)]


_p = ctypes.c_void_p
_i64 = ctypes.c_int64
_i32 = ctypes.c_int32


def _ptr(a: np.ndarray | None):
    return None if a is None or a.size == 0 else a.ctypes.data_as(ctypes.c_void_p)


def _out(out: np.ndarray | None, shape, dtype) -> np.ndarray:
    if out is None:
        return np.zeros(shape, dtype=dtype)
    if out.shape != tuple(shape) or out.dtype != np.dtype(dtype) or not out.flags.c_contiguous:
        raise ValueError(f"out must be a C-contiguous {np.dtype(dtype).name} array of shape {tuple(shape)}, "
                         f"got {out.dtype} {out.shape}")
    return out


class Library:
    Error = LibraryError
    writes_into_out = True  # the op methods take `out=` (harness.ops.Op.call)
    defects: tuple[str, ...] = ()

    def __init__(self, path: str):
        self.path = str(path)
        self.lib = lib = ctypes.CDLL(self.path)
        sig = {
            "iq1m_version": (ctypes.c_char_p, []),
            "iq1m_build_info": (ctypes.c_char_p, []),
            "iq1m_last_error": (ctypes.c_char_p, []),
            "iq1m_available_isas": (ctypes.c_uint32, []),
            "iq1m_best_isa": (_i32, []),
            "iq1m_quantize_q8_K": (ctypes.c_int, [_p, _p, _i64]),
            "iq1m_dequantize_iq1_m": (ctypes.c_int, [_p, _p, _i64]),
            "iq1m_activation": (ctypes.c_int, [_i32, _p, _p, _i64]),
            "iq1m_prepack": (ctypes.c_int, [_p, _i64, _i64, _p]),
            "iq1m_mul_mat": (ctypes.c_int, [_p, _i64, _i64, _p, _i64, _p, ctypes.POINTER(COptions)]),
            "iq1m_mul_mat_id": (ctypes.c_int, [_p, _i64, _i64, _i64, _p, _i64, _p, _i64, _p,
                                               ctypes.POINTER(COptions)]),
            "iq1m_moe_up_gate": (ctypes.c_int, [_p, _p, _i64, _i64, _i64, _p, _i64, _p, _i64, _i32, _p,
                                                ctypes.POINTER(COptions)]),
        }
        for name, (restype, argtypes) in sig.items():
            fn = getattr(lib, name)
            fn.restype = restype
            fn.argtypes = argtypes

    # -- queries -------------------------------------------------------------------------
    def version(self) -> str:
        return self.lib.iq1m_version().decode()

    def build_info(self) -> str:
        return self.lib.iq1m_build_info().decode()

    def available_isas(self) -> list[str]:
        mask = self.lib.iq1m_available_isas()
        return [name for name, v in ISA_NAMES.items() if v and mask & (1 << v)]

    def best_isa(self) -> str:
        return ISA_BY_VALUE.get(self.lib.iq1m_best_isa(), "unknown")

    def last_path_rows(self) -> tuple[int, int]:
        """(direct, repacked) weight rows the last op on this thread ran on each path, per
        expert and matrix. Looked up on first use: older builds lack the symbol."""
        fn = self.lib.iq1m_last_path_rows
        fn.restype, fn.argtypes = None, [ctypes.POINTER(_i64), ctypes.POINTER(_i64)]
        direct, repacked = _i64(), _i64()
        fn(ctypes.byref(direct), ctypes.byref(repacked))
        return direct.value, repacked.value

    def begin_call(self) -> None:
        """Nothing to reset: this binding sees no defects beside the outputs."""

    def extras(self, case) -> dict[str, np.ndarray]:
        """Nothing besides the outputs: the kernels are judged against the reference alone."""
        return {}

    def default_options(self, **changes) -> KernelOptions:
        """The library's own defaults (iq1m_default_options: ISA auto, its repack threshold,
        fused), with `changes` applied (e.g. n_threads=2, prepacked=True). The harness's
        KernelOptions() default to the 32-token baseline threshold instead."""
        fn = self.lib.iq1m_default_options
        fn.restype, fn.argtypes = None, [ctypes.POINTER(COptions)]
        c = COptions()
        fn(ctypes.byref(c))
        return dataclasses.replace(KernelOptions(c.n_threads, ISA_BY_VALUE[c.isa], c.repack_threshold, bool(c.fused),
                                                 bool(c.prepacked)), **changes)

    def prepared(self, op: str, arrays: dict, opt: KernelOptions, act: str = "silu") -> Prepared:
        """`op` (a harness.ops name) on `arrays` with all but the library call done once: the
        output allocated, the options converted, the weights prepacked when `opt.prepacked`
        (a load-time step, like ggml's repacked weight buffers). Calling the result runs
        iq1m_<op> with the arguments in the ABI's order (weights, [experts], rows, K, x,
        tokens, [ids, top_k], [act], out, options)."""
        from ..ops import get

        spec = get(op)
        a = spec.coerce(arrays)
        k, out = spec.k(a), np.zeros(spec.output_shape(a), dtype=np.float32)
        weights = [self._weights(a[name], k, opt) for name in spec.weights]
        copt = self._options(opt)
        args = (*map(_ptr, weights), *((spec.n_experts(a),) if spec.routed else ()), spec.rows(a), k, _ptr(a["x"]),
                spec.n_tokens(a), *((_ptr(a["ids"]), spec.top_k(a)) if spec.routed else ()),
                *((ACT_NAMES[act],) if spec.has_activation else ()), _ptr(out), ctypes.byref(copt))
        fn = getattr(self.lib, f"iq1m_{op}")

        def run() -> None:
            self._check(fn(*args))
        return Prepared(run, lambda: out, keep=(a, weights, out, copt))

    # -- helpers -------------------------------------------------------------------------
    def _check(self, status: int) -> None:
        if status != 0:
            raise LibraryError(status, self.lib.iq1m_last_error().decode(errors="replace"))

    @staticmethod
    def _options(opt: KernelOptions) -> COptions:
        if opt.isa not in ISA_NAMES:
            raise ValueError(f"unknown isa {opt.isa!r}")
        return COptions(opt.n_threads, ISA_NAMES[opt.isa], opt.repack_threshold, int(opt.fused),
                         int(opt.prepacked))

    def _weights(self, w: np.ndarray, k: int, opt: KernelOptions) -> np.ndarray:
        """The weights as the options say the library takes them: IQ1_M blocks, or their
        iq1m_prepack form (made here from IQ1_M rows, or given already prepacked: rows of
        k/256 blocks of 80 bytes)."""
        if not opt.prepacked or w.shape[-1] == k // QK_K * PREPACKED_BLOCK_BYTES:
            return w
        return self.prepack(w, k)

    # -- operations ----------------------------------------------------------------------
    def quantize_q8k(self, x: np.ndarray, opt: KernelOptions | None = None, *, out=None) -> np.ndarray:
        """x float32 [..., K] -> uint8 [..., K/256, 292] (the C struct's bytes)."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        nb = x.shape[-1] // QK_K if x.ndim else 0
        out = _out(out, x.shape[:-1] + (nb, 292), np.uint8)
        self._check(self.lib.iq1m_quantize_q8_K(_ptr(x), _ptr(out), x.size))
        return out

    def dequantize(self, blocks: np.ndarray, opt: KernelOptions | None = None, *, out=None) -> np.ndarray:
        """IQ1_M blocks (any shape, 56 bytes each) -> float32 [n, 256]."""
        blocks = np.ascontiguousarray(blocks, dtype=np.uint8)
        n = blocks.size // BLOCK_BYTES
        out = _out(out, (n, QK_K), np.float32)
        self._check(self.lib.iq1m_dequantize_iq1_m(_ptr(blocks), _ptr(out), n * QK_K))
        return out

    def prepack(self, w: np.ndarray, k: int, opt: KernelOptions | None = None, *, out=None) -> np.ndarray:
        """IQ1_M weight rows of k weights (any shape, k/256 blocks of 56 bytes per row) ->
        their prepacked blocks, flat uint8 (k/256 blocks of 80 bytes per row)."""
        w = np.ascontiguousarray(w, dtype=np.uint8)
        nb = k // QK_K
        n_rows = w.size // (BLOCK_BYTES * nb) if nb else 0
        out = _out(out, (n_rows * nb * PREPACKED_BLOCK_BYTES,), np.uint8)
        self._check(self.lib.iq1m_prepack(_ptr(w), n_rows, k, _ptr(out)))
        return out

    def activation(self, act: str, x: np.ndarray, opt: KernelOptions | None = None, *, out=None) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        out = np.empty_like(x) if out is None else _out(out, x.shape, np.float32)
        self._check(self.lib.iq1m_activation(ACT_NAMES[act], _ptr(x), _ptr(out), x.size))
        return out

    def mul_mat(self, w: np.ndarray, x: np.ndarray, opt: KernelOptions, *, out=None) -> np.ndarray:
        rows, k = w.shape[0], x.shape[1]
        out = _out(out, (x.shape[0], rows), np.float32)
        copt = self._options(opt)
        w = self._weights(w, k, opt)
        self._check(self.lib.iq1m_mul_mat(_ptr(w), rows, k, _ptr(x), x.shape[0], _ptr(out), ctypes.byref(copt)))
        return out

    def mul_mat_id(self, w: np.ndarray, x: np.ndarray, ids: np.ndarray, opt: KernelOptions, *, out=None
                   ) -> np.ndarray:
        n_experts, rows = w.shape[0], w.shape[1]
        n_tokens, top_k = ids.shape
        out = _out(out, (n_tokens, top_k, rows), np.float32)
        copt = self._options(opt)
        w = self._weights(w, x.shape[1], opt)
        self._check(self.lib.iq1m_mul_mat_id(_ptr(w), n_experts, rows, x.shape[1], _ptr(x), n_tokens, _ptr(ids),
                                             top_k, _ptr(out), ctypes.byref(copt)))
        return out

    def moe_up_gate(self, w_up: np.ndarray, w_gate: np.ndarray, x: np.ndarray, ids: np.ndarray, act: str,
                    opt: KernelOptions, *, out=None) -> np.ndarray:
        n_experts, rows = w_up.shape[0], w_up.shape[1]
        n_tokens, top_k = ids.shape
        out = _out(out, (n_tokens, top_k, rows), np.float32)
        copt = self._options(opt)
        w_up, w_gate = self._weights(w_up, x.shape[1], opt), self._weights(w_gate, x.shape[1], opt)
        self._check(self.lib.iq1m_moe_up_gate(_ptr(w_up), _ptr(w_gate), n_experts, rows, x.shape[1], _ptr(x),
                                              n_tokens, _ptr(ids), top_k, ACT_NAMES[act], _ptr(out),
                                              ctypes.byref(copt)))
        return out
