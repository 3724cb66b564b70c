"""The project's own kernels (libiq1m), built from kernels/ as a variant: bit-exact to
docs/numerics.md, so every run of a case must equal the reference's canonical emulation and
every invariance (threads, SIMD level, path, fusion, prepacked weights, batch) is a failure."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

from ..build import Variant, build, parse_variant
from ..compare import check_outcomes
from ..errors import KernelError, UsageError
from .base import Finding, Target
from .libiq1m import ISA_NAMES, STATUS_CODES, Library


def sanitizer_environment(variant: Variant) -> dict[str, str]:
    """A sanitized library loaded into a plain Python needs its runtime preloaded."""
    env = {}
    if not variant.sanitizer:
        return env
    runtime = "libtsan.so" if variant.sanitizer == "thread" else "libasan.so"
    cc = os.environ.get("CC", "gcc")
    try:
        path = subprocess.run([cc, f"-print-file-name={runtime}"], capture_output=True, text=True,
                              timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UsageError(f"cannot locate the {runtime} runtime with {cc} ({exc})") from exc
    if not path or not Path(path).exists() or path == runtime:
        raise UsageError(f"{cc} has no {runtime}; install the compiler's sanitizer runtime")
    preload = [path]
    if variant.sanitizer == "address,undefined":
        ubsan = subprocess.run([cc, "-print-file-name=libubsan.so"], capture_output=True, text=True).stdout.strip()
        if ubsan and Path(ubsan).exists():
            preload.append(ubsan)
    env["LD_PRELOAD"] = ":".join(preload)
    env["ASAN_OPTIONS"] = "detect_leaks=0:abort_on_error=1:halt_on_error=1"
    env["UBSAN_OPTIONS"] = "halt_on_error=1:abort_on_error=1:print_stacktrace=1"
    env["TSAN_OPTIONS"] = "halt_on_error=1:abort_on_error=1:report_signal_unsafe=0"
    return env


class KernelsTarget(Target):
    name = "kernels"
    bit_exact = True
    routing = "any"  # unused slots and repeated experts are part of the library's contract
    ops = None       # every operation of the registry: the GEMMs and the standalone entry points
    load_hint = "rebuild it with 'iq1m-harness build --rebuild'"
    max_threads = 1024  # IQ1M_MAX_THREADS in kernels/src/threadpool.h
    isa_names = tuple(n for n in ISA_NAMES if n != "auto")

    def __init__(self, variant: str = "release", *, echo_build: bool = False):
        super().__init__(strict=True)
        self._variant = parse_variant(variant)
        self.echo_build = echo_build
        self._library: Path | None = None

    @property
    def variant(self) -> Variant:
        return self._variant

    def label(self) -> str:
        return f"kernels ({self._variant.name})"

    @property
    def slug(self) -> str:
        return self._variant.slug

    def prepare(self) -> dict:
        self._library = build(self._variant.name, echo=self.echo_build)
        return {"name": self.name, "library": str(self._library)}

    @property
    def library(self) -> Path:
        if self._library is None:
            self.prepare()
        return self._library

    def worker_env(self) -> dict[str, str]:
        return sanitizer_environment(self._variant)

    @staticmethod
    def open_binding(spec: dict):
        lib = Library(spec["library"])
        hello = {"target": "kernels", "version": lib.version(), "build_info": lib.build_info(),
                 "isas": lib.available_isas(), "best_isa": lib.best_isa()}
        return lib, hello

    def info_lines(self, hello: dict) -> list[str]:
        return [f"library:   {self.library}", f"version:   {hello['version']}", f"build:     {hello['build_info']}",
                f"SIMD:      {', '.join(hello['isas'])} (auto picks {hello['best_isa']})"]

    def adapt(self, case, hello: dict):
        """The runs this CPU can execute (a case saved on another machine may name a SIMD
        level this one lacks)."""
        runs = [r for r in case.runs if r.isa == "auto" or r.isa in hello["isas"]]
        if not runs:
            raise UsageError(f"none of the case's SIMD levels ({sorted({r.isa for r in case.runs})}) "
                             f"runs on this CPU ({', '.join(hello['isas'])})")
        case.runs = runs
        case.variant = self._variant.name
        case.target = {}
        return case

    def judge(self, case, outcomes, extras, case_path) -> list[Finding]:
        rejected = case.spec.rejected_status(case.arrays)
        if rejected is None:
            check_outcomes(case, outcomes, case_path=case_path, unwritten=False)  # Runner.check did
            return []
        code = STATUS_CODES[rejected]
        for o in outcomes:
            if o.output is not None or o.code != code:
                got = "accepted it" if o.output is not None else f"returned status {o.code} ({o.message!r})"
                raise KernelError(f"the contract says the library rejects this input with status {code} "
                                  f"({rejected}); it {got} [{o.options.label()}]", case_path=case_path,
                                  detail=case.describe(), options=o.options)
        return []
