"""The libraries `bench` compares, and their prepared calls.

- `Ours`: the project's kernels (a build variant) with the library's own default options
  (ISA auto, its repack threshold, fused), on IQ1_M weights per call and on weights
  prepacked once (`iq1m_prepack`, lossless; the conversion is a load-time step and is not
  timed, like ggml's repacked weight buffers).
- `GgmlPeer`: a ggml build (llama-cpp-python's mainline, or `--ggml-lib-dir`, e.g. the older
  single-library API of ik_llama.cpp). The MoE layer is ik_llama.cpp's fused
  `ggml_moe_up_gate` where the build has it (`GgmlLibrary.has_fused`, with the unary id the
  binding probed for SiLU), else two `ggml_mul_mat_id` + `ggml_silu` + `ggml_mul` in one
  graph. Every shape is first run once in a child (`probe`).

Both load private copies of their shared libraries (`private_copy`).
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from ...errors import UsageError
from ...options import KernelOptions
from ...targets.ggml import GgmlTarget, resolve_ggml_lib_dir
from ...targets.libggml import GgmlLibrary, find_libraries
from ...targets.libiq1m import Library
from ...targets.prepared import Prepared
from .probe import Prober
from .workloads import ACT


def private_copy(paths: list[Path]) -> list[Path]:
    """Copies of shared libraries in a fresh temporary directory, loaded from there: a library
    rewritten in place while mapped (a rebuild of a shared build tree, a reinstall of
    llama-cpp-python by someone else on the machine) would kill this process with SIGBUS."""
    d = Path(tempfile.mkdtemp(prefix="iq1m-bench-libs-"))
    out = []
    for p in paths:
        dst = d / Path(p).name
        shutil.copy2(p, dst)
        out.append(dst)
    return out


class Ours:
    def __init__(self, variant: str):
        from ...build import build

        self.source = build(variant)
        self.lib = Library(str(private_copy([self.source])[0]))

    def info(self) -> dict:
        return {"library": str(self.source), "version": self.lib.version(), "build": self.lib.build_info(),
                "isa": self.lib.best_isa(), "options": self.lib.default_options().to_dict()}

    def prepared(self, op: str, arrays: dict, n_threads: int, prepacked: bool = False) -> Prepared:
        return self.lib.prepared(op, arrays, self.lib.default_options(n_threads=n_threads, prepacked=prepacked), ACT)


class GgmlPeer:
    """`work`: how the graphs' work context is emptied before each run ("reset", "reinit",
    or "auto": the build's `work_method`)."""

    def __init__(self, lib_dir: str | None, work: str = "auto"):
        self.source = resolve_ggml_lib_dir(lib_dir)
        self.lib = GgmlLibrary(private_copy(find_libraries(self.source))[0].parent)
        self.work = self.lib.work_method if work == "auto" else work
        if self.work not in self.work_methods:
            raise UsageError(f"--ggml-work {work}: work method {work!r} is not available on this build (it has: {self.work_methods})")
        self.prober = Prober(self.lib.lib_dir, GgmlTarget(str(self.source)).worker_env(), self.work)

    @property
    def work_methods(self) -> list[str]:
        """The work methods this build can run (reset needs ggml_reset)."""
        return [m for m in self.lib.WORK_METHODS if m != "reset" or self.lib.work_method == "reset"]

    def info(self) -> dict:
        g = self.lib
        return {"lib_dir": str(self.source), "version": g.version(), "identity": g.identity(),
                "fused_moe": g.has_fused, "unary_ops": dict(g.unary_ops),
                "moe_composition": (f"ggml_moe_up_gate (unary op {ACT.upper()} = {g.unary_ops[ACT.upper()]})"
                                    if g.has_fused else "2 x ggml_mul_mat_id + ggml_silu + ggml_mul (one graph)"),
                "work_method": self.work,
                "probe": "each shape runs once per thread count in a child process before it is timed"}

    def prepared(self, op: str, arrays: dict, n_threads: int, work: str | None = None) -> Prepared:
        return self.lib.prepared_graph(op, arrays, KernelOptions(n_threads=n_threads), ACT, work or self.work)

    def probe(self, op: str, arrays: dict, threads: list[int]) -> dict[int, str]:
        return self.prober.probe(op, arrays, threads, ACT)

    def close(self) -> None:
        self.prober.close()
