"""`iq1m-harness bench`: the project's kernels and mainline ggml side by side.

Both libraries get the same weights and activations and are timed in this process
(no worker), alternately: ours, ggml, ours, ggml, ... and every thread count of a shape in
the same rotation (ours 1 thread, ggml 1 thread, ours 2 threads, ggml 2 threads, ours 1
thread, ...), so that a noisy neighbour or a clock change hits every figure that is
compared alike. Each measurement repeats the call until it lasts at least `--min-time`
seconds and records the time per call; a shape's figure is the median over `--reps` such
alternating repetitions, with the spread ((max - min) / median). The ratio ours/ggml is
computed from the two medians of the same run (and, as a check, the median of the
per-repetition ratios is reported beside it); so is the 2-thread scaling.

What is timed:

- ours: one `iq1m_mul_mat` / `iq1m_moe_up_gate` call (activation quantisation, routing,
  repacking, GEMM, activation: the whole op), through ctypes with preallocated buffers.
- ours, prepacked: the same call on weights converted once by `iq1m_prepack` (lossless,
  80 bytes per block instead of 56; the conversion is a load-time step and is not timed,
  like ggml's own repacked weight buffers). Its output is checked bit for bit against the
  IQ1_M call's.
- ggml: `ggml_graph_compute_with_ctx` of a graph built once per shape (graph
  construction and tensor upload are not timed). Its work buffer comes from a small
  context reset before every call (ggml_reset), so repeated calls reuse the same memory.
  The MoE layer on mainline ggml is its unfused equivalent: two `ggml_mul_mat_id` plus
  `ggml_silu` and `ggml_mul` in one graph (ik_llama.cpp's fused `ggml_moe_up_gate` is used
  when the library exports it).

Roofline: `libiq1m_peak.so` (kernels/bench/peak.c, built by CMake beside the library)
measures the int8 dot-product peak (vpdpbusd chains; per thread count, run concurrently
on that many threads) and the memory read bandwidth. The int8 peak is measured again
before every shape, and the run's figure is the median of those samples: a median GOP/s
taken under the machine's load of the moment is compared with a peak taken under the same
loads, not with one quiet burst. Each shape reports the fraction of that peak it reaches
and the bandwidth-bound ceiling for its bytes (weights + activations + output, read once).

Outputs in --out: bench.json, bench.md, bench.png (GOP/s against tokens, both libraries).
"""
from __future__ import annotations

import argparse
import ctypes
import json
import math
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .targets.libiq1m import BLOCK_BYTES, QK_K, Library, _COptions

_p = ctypes.c_void_p
_i64 = ctypes.c_int64
_i32 = ctypes.c_int32

MUL_MAT_K = MUL_MAT_M = 4096
MUL_MAT_NS = (1, 2, 4, 8, 16, 31, 32, 64, 128, 512)
MOE_K, MOE_ROWS, MOE_EXPERTS, MOE_TOP_K = 7168, 2048, 16, 8  # Kimi-K2's layer, 16 of 384 experts
MOE_TOKENS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
SMOKE_MUL_MAT_NS = (1, 32)
SMOKE_MOE_TOKENS = (1, 32)
SMOKE_MOE_EXPERTS = 16  # the same layer (fewer token counts)


# ---------------------------------------------------------------------------------------
# data


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
    return np.stack([rng.permutation(n_experts)[:top_k] for _ in range(n_tokens)]).astype(np.int32)


# ---------------------------------------------------------------------------------------
# callables: one call of the op, preallocated, nothing else


class OursRunner:
    def __init__(self, lib: Library):
        self.lib = lib
        lib.lib.iq1m_default_options.restype = None
        lib.lib.iq1m_default_options.argtypes = [ctypes.POINTER(_COptions)]

    def _options(self, n_threads: int) -> _COptions:
        """The library's defaults (ISA auto, its repack threshold, fused), n_threads."""
        opt = _COptions()
        self.lib.lib.iq1m_default_options(ctypes.byref(opt))
        opt.n_threads = n_threads
        return opt

    def mul_mat(self, w: np.ndarray, x: np.ndarray, n_threads: int, prepacked: bool = False):
        rows, k, n = w.shape[0], x.shape[1], x.shape[0]
        out = np.zeros((n, rows), dtype=np.float32)
        opt = self._options(n_threads)
        if prepacked:
            w, opt.prepacked = self.lib.prepack(w, k), 1
        fn = self.lib.lib.iq1m_mul_mat
        args = (w.ctypes.data_as(_p), rows, k, x.ctypes.data_as(_p), n, out.ctypes.data_as(_p), ctypes.byref(opt))

        def call():
            if fn(*args) != 0:
                raise RuntimeError(self.lib.lib.iq1m_last_error().decode(errors="replace"))
        call.keep = (w, x, out, opt)  # type: ignore[attr-defined]
        return call, out

    def moe(self, w_up, w_gate, x, ids, n_threads: int, prepacked: bool = False):
        n_experts, rows = w_up.shape[0], w_up.shape[1]
        n_tokens, top_k = ids.shape
        out = np.zeros((n_tokens, top_k, rows), dtype=np.float32)
        opt = self._options(n_threads)
        opt.fused = 1
        if prepacked:
            k = x.shape[1]
            w_up, w_gate, opt.prepacked = self.lib.prepack(w_up, k), self.lib.prepack(w_gate, k), 1
        fn = self.lib.lib.iq1m_moe_up_gate
        args = (w_up.ctypes.data_as(_p), w_gate.ctypes.data_as(_p), n_experts, rows, x.shape[1], x.ctypes.data_as(_p),
                n_tokens, ids.ctypes.data_as(_p), top_k, 0, out.ctypes.data_as(_p), ctypes.byref(opt))

        def call():
            if fn(*args) != 0:
                raise RuntimeError(self.lib.lib.iq1m_last_error().decode(errors="replace"))
        call.keep = (w_up, w_gate, x, ids, out, opt)  # type: ignore[attr-defined]
        return call, out


class GgmlRunner:
    """Graphs built once per shape on a GgmlLibrary (harness/ggml_binding.py's loader);
    the returned callable runs ggml_graph_compute_with_ctx only."""

    def __init__(self, g):
        from .targets.libggml import _InitParams

        self.g = g
        self._InitParams = _InitParams
        extra = {"ggml_silu": (_p, [_p, _p]), "ggml_mul": (_p, [_p, _p, _p]), "ggml_reset": (None, [_p]),
                 "ggml_used_mem": (ctypes.c_size_t, [_p])}
        self.fn = {}
        for name, (restype, argtypes) in extra.items():
            f = g._lookup(name)
            if f is None:
                raise OSError(f"{name} not found in {', '.join(g.paths)}")
            f.restype, f.argtypes = restype, argtypes
            self.fn[name] = f
        self._contexts: list = []

    def close(self) -> None:
        for ctx in self._contexts:
            self.g._fn("ggml_free")(ctx)
        self._contexts.clear()

    def _ctx(self, nbytes: int):
        ctx = self.g._fn("ggml_init")(self._InitParams(int(nbytes), None, False))
        if not ctx:
            raise MemoryError(f"ggml_init of {nbytes} bytes failed")
        self._contexts.append(ctx)
        return ctx

    def _graph(self, ctx, result, n_threads: int, shape, n_out_bytes: int):
        g = self.g
        graph = g._fn("ggml_new_graph")(ctx)
        g._fn("ggml_build_forward_expand")(graph, result)
        work = self._ctx(2 * n_out_bytes + 64 * 1024 * 1024)  # the op's Q8_K copy of x and its tables fit
        compute, reset = g._fn("ggml_graph_compute_with_ctx"), self.fn["ggml_reset"]
        n_threads = int(n_threads)
        data = g._fn("ggml_get_data")
        out = np.empty(shape, dtype=np.float32)

        def call():
            reset(work)
            status = compute(work, graph, n_threads)
            if status != 0:
                raise RuntimeError(f"ggml_graph_compute_with_ctx returned {status}")

        def fetch():
            ctypes.memmove(out.ctypes.data, data(result), out.nbytes)
            return out
        call.fetch = fetch  # type: ignore[attr-defined]
        return call

    def mul_mat(self, w, x, n_threads: int):
        g = self.g
        rows, k, n = w.shape[0], x.shape[1], x.shape[0]
        ctx = self._ctx(w.nbytes + x.nbytes + 4 * rows * n + 16 * 1024 * 1024)
        a = g._tensor(ctx, g.IQ1_M, k, rows, data=w)
        b = g._tensor(ctx, g.F32, k, n, data=x)
        r = g._fn("ggml_mul_mat")(ctx, a, b)
        return self._graph(ctx, r, n_threads, (n, rows), x.nbytes)

    def moe(self, w_up, w_gate, x, ids, n_threads: int):
        g = self.g
        n_experts, rows = w_up.shape[0], w_up.shape[1]
        n_tokens, top_k = ids.shape
        k = x.shape[1]
        ctx = self._ctx(w_up.nbytes + w_gate.nbytes + x.nbytes + ids.nbytes + 16 * n_tokens * top_k * rows
                        + 16 * 1024 * 1024)
        a_up = g._tensor(ctx, g.IQ1_M, k, rows, n_experts, data=w_up)
        a_gate = g._tensor(ctx, g.IQ1_M, k, rows, n_experts, data=w_gate)
        b = g._tensor(ctx, g.F32, k, 1, n_tokens, data=x)
        t_ids = g._tensor(ctx, g.I32, top_k, n_tokens, data=ids)
        if g.has_fused:
            r = g._fn("ggml_moe_up_gate")(ctx, a_up, a_gate, b, t_ids, g.unary_ops["SILU"])
        else:
            up = g._fn("ggml_mul_mat_id")(ctx, a_up, b, t_ids)
            gate = g._fn("ggml_mul_mat_id")(ctx, a_gate, b, t_ids)
            r = self.fn["ggml_mul"](ctx, up, self.fn["ggml_silu"](ctx, gate))
        return self._graph(ctx, r, n_threads, (n_tokens, top_k, rows), x.nbytes + 8 * n_tokens * top_k * rows)


# ---------------------------------------------------------------------------------------
# roofline


class Peak:
    """int8 dot-product peak and read bandwidth from libiq1m_peak.so."""

    def __init__(self, path: Path):
        self.path = str(path)
        self.lib = ctypes.CDLL(self.path)
        self.lib.iq1m_peak_int8_gops.restype = ctypes.c_double
        self.lib.iq1m_peak_int8_gops.argtypes = [ctypes.c_int, ctypes.c_double]
        self.lib.iq1m_peak_read_gbs.restype = ctypes.c_double
        self.lib.iq1m_peak_read_gbs.argtypes = [ctypes.c_size_t, ctypes.c_double]

    def _parallel(self, n_threads: int, fn, *args) -> list[float]:
        """fn on n_threads OS threads at once (ctypes releases the GIL during the call)."""
        results = [0.0] * n_threads
        def run(i):
            results[i] = fn(*args)
        ts = [threading.Thread(target=run, args=(i,)) for i in range(n_threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        return results

    KINDS = {"avx512vnni_512": 0, "avx512vnni_256": 1, "avx2": 2}

    def int8(self, kind: str, n_threads: int, seconds: float) -> float:
        """GOP/s of the int8 chains of one kind on n_threads threads at once."""
        return round(sum(self._parallel(n_threads, self.lib.iq1m_peak_int8_gops, self.KINDS[kind], seconds)), 1)

    def measure(self, threads: list[int], seconds: float) -> dict:
        per_thread = {name: {str(n): self.int8(name, n, seconds) for n in threads} for name in self.KINDS}
        best_kind = {str(n): max(self.KINDS, key=lambda k: per_thread[k][str(n)]) for n in threads}
        best = {str(n): per_thread[best_kind[str(n)]][str(n)] for n in threads}
        bw = {str(n): round(sum(self._parallel(n, self.lib.iq1m_peak_read_gbs, 256 << 20, seconds)), 2)
              for n in threads}
        return {"int8_gops": best, "int8_gops_by_kind": per_thread, "int8_kind": best_kind,
                "int8_samples": {str(n): [best[str(n)]] for n in threads}, "read_gbs": bw,
                "note": "int8 peak: independent vpdpbusd (or AVX2 maddubs+madd+add) chains, one per thread, "
                        "2 ops per u8 x s8 multiply-accumulate, the fastest kind; measured at the start and "
                        "again before every shape, int8_gops = the median of those samples; read bandwidth: "
                        "streaming 256-bit loads of a 256 MiB buffer per thread, at the start"}

    def resample(self, peak: dict, seconds: float) -> None:
        """One more int8 sample per thread count (the kind found fastest at the start);
        int8_gops becomes the median of all samples so far."""
        for n, kind in peak["int8_kind"].items():
            samples = peak["int8_samples"][n]
            samples.append(self.int8(kind, int(n), seconds))
            peak["int8_gops"][n] = round(statistics.median(samples), 1)


def build_peak_library(variant: str) -> Path:
    from .build import build, find_cmake, _run_logged, _LogSink

    library = build(variant)
    tree = library.parent / "cmake"
    log_path = library.parent / "build-peak.log"
    with open(log_path, "w") as log:
        _run_logged([find_cmake(), "--build", str(tree), "--target", "iq1m_peak"], _LogSink(log, False), log_path,
                    variant)
    found = sorted(tree.rglob("libiq1m_peak.so"))
    if not found:
        raise FileNotFoundError(f"libiq1m_peak.so not built in {tree}; log {log_path}")
    return _private_copy([found[0]])[0]


def _private_copy(paths: list[Path]) -> list[Path]:
    """Copies of shared libraries in a fresh temporary directory, loaded from there: a library
    rewritten in place while mapped (a rebuild of a shared build tree, a reinstall of
    llama-cpp-python by someone else on the machine) would kill this process with SIGBUS."""
    import shutil
    import tempfile

    d = Path(tempfile.mkdtemp(prefix="iq1m-bench-libs-"))
    out = []
    for p in paths:
        dst = d / Path(p).name
        shutil.copy2(p, dst)
        out.append(dst)
    return out


# ---------------------------------------------------------------------------------------
# timing


def _time_call(call, min_time: float, max_calls: int = 1000) -> tuple[float, float, int, float]:
    """Wall seconds and calling-thread CPU seconds per call: the call repeated until min_time
    has passed (at least once). With one thread all the work runs on the calling thread, so
    the CPU time leaves out the time the OS gave the core to someone else. Also the cores
    the process got meanwhile (its CPU time over the wall time, all threads): a 2-thread run
    that got 1.2 cores was measured on a machine that lent the other core to someone else."""
    n, t0, c0, p0 = 0, time.perf_counter(), time.thread_time(), time.process_time()
    while True:
        call()
        n += 1
        el = time.perf_counter() - t0
        if el >= min_time or n >= max_calls:
            return el / n, (time.thread_time() - c0) / n, n, (time.process_time() - p0) / el


@dataclass
class Measurement:
    times: list = field(default_factory=list)    # seconds per call, one per repetition
    cpu: list = field(default_factory=list)      # calling thread's CPU seconds per call
    starts: list = field(default_factory=list)   # perf_counter at the start of each repetition
    calls: list = field(default_factory=list)
    cores: list = field(default_factory=list)    # the process's CPU time / wall time


def _summary(m: Measurement, ops: float) -> dict:
    med = statistics.median(m.times)
    gops = [ops / t * 1e-9 for t in m.times]
    return {"times_s": [round(t, 9) for t in m.times], "starts_s": [round(s, 6) for s in m.starts],
            "calls": m.calls, "median_s": med, "gops": round(ops / med * 1e-9, 2),
            "gops_min": round(min(gops), 2), "gops_max": round(max(gops), 2),
            "spread": round((max(m.times) - min(m.times)) / med, 4),
            "cpu_times_s": [round(t, 9) for t in m.cpu], "cpu_median_s": statistics.median(m.cpu),
            "cores": [round(c, 3) for c in m.cores], "cores_median": round(statistics.median(m.cores), 3)}


def measure_pair(runs: dict, reps: int, min_time: float, pause: float) -> dict[str, Measurement]:
    """Alternating repetitions over the named callables (ours, ggml, ours, ggml, ...)."""
    res = {name: Measurement() for name in runs}
    for call in runs.values():  # warm-up: caches, pools, lazily built tables
        call()
    for _ in range(reps):
        for name, call in runs.items():
            time.sleep(pause)  # let the other library's spinning threads go to sleep
            res[name].starts.append(time.perf_counter() - _T0)
            t, c, n, cores = _time_call(call, min_time)
            res[name].times.append(t)
            res[name].cpu.append(c)
            res[name].calls.append(n)
            res[name].cores.append(cores)
    return res


_T0 = time.perf_counter()


# ---------------------------------------------------------------------------------------
# the run


def _shapes(smoke: bool) -> list[dict]:
    shapes = []
    for n in (SMOKE_MUL_MAT_NS if smoke else MUL_MAT_NS):
        shapes.append({"op": "mul_mat", "k": MUL_MAT_K, "rows": MUL_MAT_M, "tokens": n})
    for t in (SMOKE_MOE_TOKENS if smoke else MOE_TOKENS):
        shapes.append({"op": "moe_up_gate", "k": MOE_K, "rows": MOE_ROWS,
                       "experts": SMOKE_MOE_EXPERTS if smoke else MOE_EXPERTS, "top_k": MOE_TOP_K, "tokens": t})
    return shapes


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


def run_bench(out: Path, *, smoke: bool = False, threads=(1, 2), reps: int | None = None,
              min_time: float | None = None, variant: str = "release", ggml: bool = True,
              ggml_lib_dir: str | None = None, seed: int = 0, echo=print) -> dict:
    from .build import build

    reps = reps or (2 if smoke else 7)
    min_time = min_time if min_time is not None else (0.02 if smoke else 0.06)
    pause = 0.002 if smoke else 0.01
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    lib = Library(str(_private_copy([build(variant)])[0]))
    ours = OursRunner(lib)
    info: dict = {"ours": {"library": str(build(variant)), "version": lib.version(), "build": lib.build_info(),
                           "isa": lib.best_isa()}}
    g_runner, ggml_reason = None, None
    if ggml:
        try:
            from .targets.libggml import GgmlLibrary
            from .targets.ggml import resolve_ggml_lib_dir

            from .targets.libggml import find_libraries

            src_dir = resolve_ggml_lib_dir(ggml_lib_dir)
            glib = GgmlLibrary(_private_copy(find_libraries(src_dir))[0].parent)
            g_runner = GgmlRunner(glib)
            info["ggml"] = {"lib_dir": str(src_dir), "version": glib.version(), "fused_moe": glib.has_fused,
                            "moe_composition": "ggml_moe_up_gate" if glib.has_fused
                            else "2 x ggml_mul_mat_id + ggml_silu + ggml_mul (one graph)"}
        except Exception as exc:  # no llama-cpp-python, no libraries: ours alone
            ggml_reason = f"{type(exc).__name__}: {exc}"
            info["ggml"] = {"unavailable": ggml_reason}
    else:
        info["ggml"] = {"unavailable": "--no-ggml"}
    echo(f"bench: ours {lib.best_isa()} ({lib.path}); ggml "
         + (info["ggml"].get("version", "") if g_runner else f"unavailable ({info['ggml']['unavailable']})"))

    peak, peak_lib = None, None
    try:
        peak_lib = Peak(build_peak_library(variant))
        peak = peak_lib.measure(list(threads), 0.1 if smoke else 0.4)
        echo(f"peak: int8 {peak['int8_gops']} GOP/s, read {peak['read_gbs']} GB/s (by thread count)")
    except Exception as exc:
        echo(f"peak: unavailable ({type(exc).__name__}: {exc})")

    rng = np.random.default_rng(seed)
    records = []
    data_cache: dict = {}
    for s in _shapes(smoke):
        if s["op"] == "mul_mat":
            key = ("mm", s["k"], s["rows"])
            if key not in data_cache:
                data_cache.clear()
                data_cache[key] = random_iq1m(rng, (s["rows"],), s["k"])
            w = data_cache[key]
            x = rng.standard_normal((s["tokens"], s["k"]), dtype=np.float32)
            ids = None
        else:
            key = ("moe", s["k"], s["rows"], s["experts"])
            if key not in data_cache:
                data_cache.clear()
                data_cache[key] = (random_iq1m(rng, (s["experts"], s["rows"]), s["k"]),
                                   random_iq1m(rng, (s["experts"], s["rows"]), s["k"]))
            w_up, w_gate = data_cache[key]
            x = rng.standard_normal((s["tokens"], s["k"]), dtype=np.float32)
            ids = random_routing(rng, s["tokens"], s["experts"], s["top_k"])
        ops = shape_ops(s)
        nbytes = shape_bytes(s, ids)
        if peak_lib:
            peak_lib.resample(peak, 0.02 if smoke else 0.1)
        runs, outs = {}, {}
        for nth in threads:  # every thread count in one rotation: scaling from the same run
            if s["op"] == "mul_mat":
                runs[("ours", nth)], outs[("ours", nth)] = ours.mul_mat(w, x, nth)
                runs[("ours_pp", nth)], outs[("ours_pp", nth)] = ours.mul_mat(w, x, nth, prepacked=True)
                if g_runner:
                    runs[("ggml", nth)] = g_runner.mul_mat(w, x, nth)
            else:
                runs[("ours", nth)], outs[("ours", nth)] = ours.moe(w_up, w_gate, x, ids, nth)
                runs[("ours_pp", nth)], outs[("ours_pp", nth)] = ours.moe(w_up, w_gate, x, ids, nth,
                                                                          prepacked=True)
                if g_runner:
                    runs[("ggml", nth)] = g_runner.moe(w_up, w_gate, x, ids, nth)
        meas = measure_pair(runs, reps, min_time, pause)
        for nth in threads:
            our_out, pp_out = outs[("ours", nth)], outs[("ours_pp", nth)]
            rec = dict(s, threads=nth, ops=ops, bytes=nbytes,
                       ours=_summary(meas[("ours", nth)], ops), ours_pp=_summary(meas[("ours_pp", nth)], ops))
            # the prepacked weights must give the same bits (numerics contract)
            rec["pp_bit_exact"] = bool(np.array_equal(our_out.view(np.uint32), pp_out.view(np.uint32)))
            if ("ggml", nth) in meas:
                g_meas = meas[("ggml", nth)]
                rec["ggml"] = _summary(g_meas, ops)
                # same-run medians; and the median of the per-repetition (adjacent) ratios
                rec["ratio"] = round(rec["ggml"]["median_s"] / rec["ours"]["median_s"], 3)
                rec["ratio_pp"] = round(rec["ggml"]["median_s"] / rec["ours_pp"]["median_s"], 3)
                rec["ratio_paired"] = round(statistics.median(
                    g / o for o, g in zip(meas[("ours", nth)].times, g_meas.times)), 3)
                # one thread: the same ratio from the calling thread's CPU time (robust to a
                # busy machine descheduling us); with more threads the CPU time is not a speed
                rec["ratio_cpu"] = (round(rec["ggml"]["cpu_median_s"] / rec["ours"]["cpu_median_s"], 3)
                                    if nth == 1 and rec["ours"]["cpu_median_s"] > 0 else None)
                # sanity: same product (loose: ggml is not bit-exact with us)
                ref = runs[("ggml", nth)].fetch()
                scale = float(np.max(np.abs(our_out))) or 1.0
                rec["max_rel_diff_vs_ggml"] = float(np.max(np.abs(ref - our_out)) / scale)
            else:
                rec["ggml"], rec["ratio"], rec["ratio_paired"], rec["ratio_cpu"] = None, None, None, None
                rec["ratio_pp"] = None
            rec["gops_cpu_ours"] = (round(ops / rec["ours"]["cpu_median_s"] * 1e-9, 2)
                                    if nth == 1 and rec["ours"]["cpu_median_s"] > 0 else None)
            if nth != 1 and 1 in threads:
                for mode in ("ours", "ours_pp"):  # this thread count against one, same rotation
                    one = meas[(mode, 1)].times
                    rec[f"scaling_{mode}"] = round(rec[mode]["gops"] / _summary(meas[(mode, 1)], ops)["gops"], 3)
                    rec[f"scaling_{mode}_paired"] = round(statistics.median(
                        a / b for a, b in zip(one, meas[(mode, nth)].times)), 3)
            records.append(rec)
            echo(_line(rec))
        if g_runner:
            g_runner.close()
    if peak:  # fractions against the run's median peak, known only now
        for rec in records:
            p = peak["int8_gops"].get(str(rec["threads"]))
            bw = peak["read_gbs"].get(str(rec["threads"]))
            rec["peak_fraction_ours"] = round(rec["ours"]["gops"] / p, 3) if p else None
            rec["peak_fraction_pp"] = round(rec["ours_pp"]["gops"] / p, 3) if p else None
            rec["bandwidth_bound_gops"] = round(rec["ops"] / rec["bytes"] * bw, 1) if bw else None
            rec["roofline_gops"] = round(min(p, rec["ops"] / rec["bytes"] * bw), 1) if p and bw else None
    summary = {"info": info, "smoke": smoke, "threads": list(threads), "reps": reps, "min_time_s": min_time,
               "seed": seed, "peak": peak, "records": records, "targets": targets(records, peak),
               "elapsed_s": round(time.time() - t_start, 1)}
    (out / "bench.json").write_text(json.dumps(summary, indent=2))
    (out / "bench.md").write_text(markdown(summary))
    plot(out / "bench.png", summary)
    echo(f"bench: {summary['elapsed_s']} s; wrote {out}/bench.json, bench.md, bench.png")
    return summary


def _label(r: dict) -> str:
    if r["op"] == "mul_mat":
        return f"mul_mat K=M={r['k']} N={r['tokens']}"
    return f"moe {r['experts']}x{r['rows']}x{r['k']} top{r['top_k']} T={r['tokens']}"


def _line(r: dict) -> str:
    o = r["ours"]
    s = f"{_label(r):<40} t={r['threads']}  ours {o['gops']:8.1f} GOP/s (±{100 * o['spread']:.0f}%)"
    if r.get("ggml"):
        s += f"  ggml {r['ggml']['gops']:8.1f} (±{100 * r['ggml']['spread']:.0f}%)  ratio {r['ratio']:.2f}"
    if r.get("ratio_cpu") is not None:
        s += f" (cpu {r['ratio_cpu']:.2f})"
    s += f"  prepacked {r['ours_pp']['gops']:8.1f}"
    if r.get("ratio_pp") is not None:
        s += f" ratio {r['ratio_pp']:.2f}"
    if not r["pp_bit_exact"]:
        s += "  PREPACKED OUTPUT DIFFERS"
    if r.get("scaling_ours") is not None:
        s += f"  vs 1 thread {r['scaling_ours']:.2f}x, prepacked {r['scaling_ours_pp']:.2f}x"
    if r["threads"] > 1:
        s += f"  (got {o['cores_median']:.2f} cores)"
    return s


MODES = (("ours", "ratio", "peak_fraction_ours"), ("ours_pp", "ratio_pp", "peak_fraction_pp"))


def _cores(r: dict, mode: str) -> str:
    """', got 1.2 cores' when a multi-thread measurement got fewer cores than threads: the
    figure then says more about the machine than about the kernels."""
    got = r[mode].get("cores_median")
    return f", got {got:.2f} cores" if r["threads"] > 1 and got is not None and got < 0.9 * r["threads"] else ""


def targets(records: list[dict], peak: dict | None) -> list[dict]:
    """The issue's speed goals, evaluated on this run for both ways of passing the weights
    (IQ1_M per call, prepacked once); informational, nothing asserts them."""
    by = {(r["op"], r["tokens"], r["threads"]): r for r in records}
    res: dict[str, dict] = {}

    def add(name, mode, ok, detail):
        res.setdefault(name, {"target": name})[mode] = {"met": ok, "detail": detail}

    for mode, ratio, pf in MODES:
        for r in records:
            if r["threads"] != 1 or r[ratio] is None or r["op"] != "mul_mat":
                continue
            n = r["tokens"]
            need = 1.5 if n == 1 else 3.0 if n in (8, 16) else 1.5 if n >= 32 else None
            if need:
                add(f"mul_mat N={n} 1 thread >= {need}x ggml", mode, r[ratio] >= need, f"{r[ratio]:.2f}x")
        for r in records:
            if r["op"] == "moe_up_gate" and r[ratio] is not None:
                add(f"moe T={r['tokens']} {r['threads']} thread(s) >= 1.3x ggml", mode, r[ratio] >= 1.3,
                    f"{r[ratio]:.2f}x")
        for (op, n, t), r in sorted(by.items()):
            if op == "mul_mat" and t == 2 and n >= 32 and (op, n, 1) in by:
                sc = r[mode]["gops"] / by[(op, n, 1)][mode]["gops"]
                add(f"mul_mat N={n} 2 threads >= 1.8x 1 thread", mode, sc >= 1.8, f"{sc:.2f}x{_cores(r, mode)}")
        if peak:
            for r in records:
                if r["op"] == "mul_mat" and r["tokens"] >= 128 and r.get(pf) is not None:
                    add(f"mul_mat N={r['tokens']} {r['threads']} thread(s) >= 60% of int8 peak", mode,
                        r[pf] >= 0.6, f"{100 * r[pf]:.0f}%{_cores(r, mode)}")
    return list(res.values())


def _samples(peak: dict, t: int) -> str:
    v = peak.get("int8_samples", {}).get(str(t)) or [peak["int8_gops"][str(t)]]
    return f"{min(v)} - {max(v)} ({len(v)})"


def markdown(s: dict) -> str:
    info = s["info"]
    lines = ["# iq1m-harness bench", "",
             f"- ours: `{info['ours']['version']}` {info['ours']['isa']}, build `{info['ours']['build']}`",
             "- ggml: " + (f"`{info['ggml'].get('version')}` ({info['ggml'].get('lib_dir')}); moe = "
                           f"{info['ggml'].get('moe_composition')}" if "unavailable" not in info["ggml"]
                           else f"unavailable ({info['ggml']['unavailable']})"),
             f"- {s['reps']} alternating repetitions per shape (ours, ggml, ours, ..., every thread count in the "
             f"same rotation), each >= {s['min_time_s']} s "
             "of calls; figures are medians, spread = (max - min) / median of the times; "
             "ratio = ggml median time / our median time (> 1: ours faster), same run; paired = median of "
             "the per-repetition ratios; CPU-time ratio (1 thread) = the same from the calling thread's CPU "
             "time, which a busy machine's descheduling does not inflate; cores got = our process's CPU time over "
             "the wall time during our runs (median): below the thread count, the machine lent cores elsewhere",
             f"- elapsed {s['elapsed_s']} s", ""]
    if s["peak"]:
        p = s["peak"]
        lines += ["| roofline | " + " | ".join(f"{t} thread(s)" for t in s["threads"]) + " |",
                  "| --- | " + " | ".join("---" for _ in s["threads"]) + " |",
                  "| int8 dot-product peak (GOP/s), median of the run's samples | "
                  + " | ".join(str(p["int8_gops"][str(t)]) for t in s["threads"]) + " |",
                  "| int8 peak samples (min - max, count) | "
                  + " | ".join(_samples(p, t) for t in s["threads"]) + " |",
                  "| read bandwidth (GB/s) | " + " | ".join(str(p["read_gbs"][str(t)]) for t in s["threads"]) + " |",
                  ""]
    lines += ["| shape | threads | cores got | ours GOP/s | spread | ggml GOP/s | spread | ours/ggml | paired "
              "| CPU-time ratio | % int8 peak | bw-bound GOP/s | prepacked GOP/s | prepacked/ggml |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in s["records"]:
        g = r.get("ggml")
        pf = r.get("peak_fraction_ours")
        pp = f"{r['ours_pp']['gops']:.1f}" + ("" if r["pp_bit_exact"] else " (OUTPUT DIFFERS)")
        lines.append(f"| {_label(r)} | {r['threads']} | {r['ours']['cores_median']:.2f} "
                     f"| {r['ours']['gops']:.1f} | {100 * r['ours']['spread']:.0f}% | "
                     + (f"{g['gops']:.1f} | {100 * g['spread']:.0f}% | {r['ratio']:.2f} | {r['ratio_paired']:.2f}"
                        if g else "- | - | - | -")
                     + f" | {'-' if r.get('ratio_cpu') is None else format(r['ratio_cpu'], '.2f')}"
                     + f" | {'-' if pf is None else f'{100 * pf:.0f}%'} | {r.get('bandwidth_bound_gops', '-')}"
                     + f" | {pp} | {'-' if r.get('ratio_pp') is None else format(r['ratio_pp'], '.2f')} |")
    if s["targets"]:
        def cell(t, mode):
            v = t.get(mode)
            return "-" if v is None else f"{'yes' if v['met'] else 'NO'} ({v['detail']})"
        lines += ["", "## Targets (this run)", "", "| target | IQ1_M per call | prepacked once |",
                  "| --- | --- | --- |"]
        lines += [f"| {t['target']} | {cell(t, 'ours')} | {cell(t, 'ours_pp')} |" for t in s["targets"]]
    return "\n".join(lines) + "\n"


def plot(path: Path, s: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ops = [op for op in ("mul_mat", "moe_up_gate") if any(r["op"] == op for r in s["records"])]
    fig, axes = plt.subplots(1, max(1, len(ops)), figsize=(6.5 * max(1, len(ops)), 4.8), squeeze=False)
    for ax, op in zip(axes[0], ops):
        for t in s["threads"]:
            rs = [r for r in s["records"] if r["op"] == op and r["threads"] == t]
            if not rs:
                continue
            n = [r["tokens"] for r in rs]
            ax.plot(n, [r["ours"]["gops"] for r in rs], "o-", label=f"ours, {t} thr")
            ax.plot(n, [r["ours_pp"]["gops"] for r in rs], "^-", label=f"ours prepacked, {t} thr")
            if any(r.get("ggml") for r in rs):
                ax.plot(n, [r["ggml"]["gops"] if r.get("ggml") else math.nan for r in rs], "s--",
                        label=f"ggml, {t} thr")
            if s["peak"]:
                ax.axhline(s["peak"]["int8_gops"][str(t)], color="gray", lw=0.8,
                           ls=":" if t == 1 else "-.", label=f"int8 peak, {t} thr")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("tokens (N)")
        ax.set_ylabel("GOP/s")
        rs0 = [r for r in s["records"] if r["op"] == op]
        ax.set_title(_label(rs0[0]).rsplit(" ", 1)[0] if rs0 else op)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------------------------
# CLI


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--smoke", action="store_true", help="a tiny subset (seconds; for CI, no thresholds)")
    p.add_argument("--out", type=Path, help="output directory (default iq1m-bench/<timestamp>)")
    p.add_argument("--threads", default="1,2", help="thread counts, comma-separated (default 1,2)")
    p.add_argument("--reps", type=int, help="alternating repetitions per shape (default 7; smoke 2)")
    p.add_argument("--min-time", type=float, help="seconds of calls per measurement (default 0.06; smoke 0.02)")
    p.add_argument("--variant", default="release", help="kernel build (default release)")
    p.add_argument("--no-ggml", action="store_true", help="time the project's kernels only")
    p.add_argument("--ggml-lib-dir", metavar="DIR", help="ggml build to compare with (default: llama-cpp-python's)")
    p.add_argument("--seed", type=int, default=0, help="seed of the weights, activations and routing")


def run_from_args(args) -> int:
    threads = [int(t) for t in str(args.threads).split(",") if t]
    if not threads or min(threads) < 1:
        print("iq1m-harness bench: --threads values must be >= 1", file=sys.stderr)
        return 2
    out = args.out or Path("iq1m-bench") / time.strftime("%Y%m%d-%H%M%S")
    run_bench(out, smoke=args.smoke, threads=threads, reps=args.reps, min_time=args.min_time, variant=args.variant,
              ggml=not args.no_ggml, ggml_lib_dir=args.ggml_lib_dir, seed=args.seed,
              echo=lambda m: print(m, flush=True))
    return 0
