"""A ggml build (llama.cpp mainline, or an older-API fork such as ik_llama.cpp) as a target.

The libraries come from `--ggml-lib-dir DIR` (anyone's own build: the directory with
libggml*.so, e.g. build/bin of llama.cpp or build/ggml/src of ik_llama.cpp) or, without
it, from the installed llama-cpp-python package (`pip install 'iq1m-harness[ggml]'`),
which builds ggml from source on install and ships its libraries in llama_cpp/lib.

What differs from the project's kernels, and how this target takes it into account:
- ggml promises no bit-exactness: every run is checked against the float64 bound of the
  same quantized product, with ggml's own Q8_K activation bytes (read in the layout the
  library itself has, see libggml) fed to the reference.
- ISA and repack threshold are options of our kernels only: a case's runs here vary the
  thread count (and fused/unfused for an op with an unfused variant).
- ggml has no unused routing slot: a -1 slot is routed to expert 0 (the case is rewritten
  so, and says so, before it runs: its per-expert counts are the ones ggml runs).
- a deviation beyond the exact-product bound, and the thread-count and batch-composition
  invariances, are findings (reported with their worst ratio, op, token counts and shape,
  while the case's other checks still run); with `strict` they are failures. Crashes,
  aborts, hangs and error statuses are always failures.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

import reference

from ..build import cache_root
from ..compare import bound_report, q8k_difference, q8k_invalid, require_outputs
from ..errors import Mismatch, ThreadDivergence, UsageError
from ..options import KernelOptions
from .base import Finding, Target
from .requantized import repacked_bound

MODELLED_REPACKS = ("q8_k_r8",)  # lossy repacked paths harness.targets.requantized bounds

# Set in every ggml worker: mainline's abort path would otherwise try to attach gdb.
GGML_BASE_ENV = {"GGML_NO_BACKTRACE": "1"}
# Older trees have no such switch and fork `gdb`, then `lldb`, found on PATH: the worker's PATH
# starts with a folder in which both exit at once with status 1, so ggml falls back to
# backtrace_symbols_fd (frames on stderr, into the worker's log) and aborts without delay.
_NO_DEBUGGER = "#!/bin/sh\necho 'iq1m-harness: debugger disabled in the worker' >&2\nexit 1\n"


def no_debugger_dir() -> Path:
    folder = cache_root().parent / "no-debugger"
    for name in ("gdb", "lldb"):
        path = folder / name
        if not path.is_file() or path.read_text() != _NO_DEBUGGER:
            folder.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{name}.{os.getpid()}")
            tmp.write_text(_NO_DEBUGGER)
            tmp.chmod(0o755)
            os.replace(tmp, path)
    return folder


def parse_env(items: list[str] | None) -> dict[str, str]:
    """['GGML_CPU_TILED_MM=0', ...] -> dict; a one-line UsageError for a malformed item."""
    env = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--ggml-env expects NAME=VALUE, got {item!r}")
        env[key] = value
    return env


def llama_cpp_lib_dir() -> Path | None:
    """The directory of the libggml*.so files of an installed llama-cpp-python, or None."""
    import importlib.util

    from .libggml import find_libraries

    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        root = Path(root)
        for cand in [root / "lib", root] + sorted(p for p in root.rglob("*") if p.is_dir()):
            if find_libraries(cand):
                return cand
    return None


def resolve_ggml_lib_dir(lib_dir: str | os.PathLike | None) -> Path:
    from .libggml import find_libraries

    if lib_dir:
        path = Path(lib_dir).expanduser().resolve()
        if not path.is_dir():
            raise UsageError(f"--ggml-lib-dir {lib_dir}: no such directory")
        if not find_libraries(path):
            raise UsageError(f"--ggml-lib-dir {lib_dir}: no libggml.so or libggml-base.so in it "
                             f"(point it at the directory holding your build's libggml*.so, e.g. build/bin)")
        return path
    found = llama_cpp_lib_dir()
    if found is None:
        raise UsageError("the ggml target needs ggml's shared libraries: pip install -e '.[ggml]' "
                         "(llama-cpp-python, builds ggml from source) or pass --ggml-lib-dir DIR")
    return found


def ggml_available() -> str | None:
    """None when the ggml target can run here, else the reason it cannot."""
    try:
        resolve_ggml_lib_dir(None)
    except UsageError as exc:
        return str(exc)
    return None


def thread_runs(runs: list[KernelOptions]) -> list[KernelOptions]:
    """A case's option sets reduced to what a ggml target varies: thread count and fused;
    ISA and repack threshold are dropped (they do not apply), duplicates removed."""
    seen, out = set(), []
    for r in runs:
        key = (r.n_threads, r.fused)
        if key not in seen:
            seen.add(key)
            out.append(KernelOptions(n_threads=r.n_threads, fused=r.fused))
    return out


class GgmlTarget(Target):
    name = "ggml"
    bit_exact = False
    routing = "mixed"  # what real routers emit, mostly; unused/repeated slots as a labelled class
    RUN_KNOBS = ("n_threads", "fused")
    load_hint = "check --ggml-lib-dir (a directory with your build's libggml*.so) or reinstall llama-cpp-python"

    def __init__(self, lib_dir: str = "", env: dict[str, str] | None = None, *, strict: bool = False):
        super().__init__(strict=strict)
        self.lib_dir = str(lib_dir or "")
        self.env = dict(env or {})
        self._resolved: Path | None = None
        self.build: dict = {}  # what the worker found out about the library (libggml describe())
        self.stats = {"cases": 0, "max_bound_ratio": {}, "unbounded_elements": 0, "thread_checked": 0,
                      "thread_divergent": 0, "q8k_differs": 0, "bound_exceeded": 0, "repacked_deviation": 0}

    def to_dict(self) -> dict:
        return {"name": self.name, "lib_dir": self.lib_dir, "env": dict(self.env)}

    def label(self) -> str:
        env = " ".join(f"{k}={v}" for k, v in sorted(self.env.items()))
        return f"ggml ({self.lib_dir or 'llama-cpp-python'}{', ' + env if env else ''})"

    def prepare(self) -> dict:
        self._resolved = resolve_ggml_lib_dir(self.lib_dir or None)
        return {"name": self.name, "lib_dir": str(self._resolved)}

    @property
    def library(self) -> Path:
        if self._resolved is None:
            self.prepare()
        return self._resolved

    def worker_env(self) -> dict[str, str]:
        path = os.pathsep.join(filter(None, [str(no_debugger_dir()), os.environ.get("PATH", "")]))
        return dict(GGML_BASE_ENV, PATH=path, **self.env)

    @staticmethod
    def open_binding(spec: dict):
        from .libggml import GgmlLibrary

        lib = GgmlLibrary(spec["lib_dir"])
        info = lib.describe()
        hello = {"target": "ggml", "version": info["version"], "ggml": info, "isas": ["auto"], "best_isa": "auto",
                 "build_info": f"{info['api']} API, {', '.join(info['libraries'])}; Q8_K by {info['quantizer']} "
                               f"({info['q8_K_layout']}); fused moe_up_gate: "
                               f"{'yes' if info['fused_moe_up_gate'] else 'no'}"}
        return lib, hello

    def info_lines(self, hello: dict) -> list[str]:
        g = hello["ggml"]
        env = " ".join(f"{k}={v}" for k, v in sorted(g["env"].items())) or "(none)"
        check = g.get("unary_check", {})
        unary = ", ".join(f"{k}={v} (computes {check.get(k, {}).get('computes', 'unconfirmed')})"
                          for k, v in sorted(g.get("unary_ops", {}).items())) or "(none)"
        repack = g.get("repack") or {}
        return [f"target:    ggml", f"libraries: {', '.join(g['libraries'])}", f"version:   {hello['version']}",
                f"identity:  {g.get('identity', '?')}",
                f"API:       {g['api']} (type ids by name: IQ1_M={g['iq1_m_type']}, Q8_K={g['q8_K_type']})",
                f"Q8_K:      {g['quantizer']}; layout {g.get('q8_K_layout', '?')}",
                f"fused:     ggml_moe_up_gate "
                f"{'present' if g['fused_moe_up_gate'] else 'absent (moe_up_gate = 2 x mul_mat_id + act)'}"
                + (f"; unary ops {unary}" if g['fused_moe_up_gate'] else ""),
                f"routing:   unused slot (-1) " + ("skipped natively" if g.get("unused_slot") else
                                                  "not supported: routed to expert 0, and counted there"),
                f"repack:    " + (f"IQ1_M weights converted to {repack['type']} at >= {repack['threshold']} tokens "
                                  f"per expert (lossy int8)" if repack else "none seen (no iqk_dequant_type)"),
                f"env:       {env}"]

    def adapt(self, case, hello: dict):
        if case.spec.rejected_status(case.arrays):
            raise UsageError(f"{case.describe()}: the activations are not all finite; ggml defines no behaviour "
                             f"for them (the project's kernels reject them: --target kernels)")
        case.runs = thread_runs(case.runs)
        if case.spec.routed and not hello["ggml"].get("unused_slot") and (case.arrays["ids"] < 0).any():
            ids = case.arrays["ids"]
            case.info["unused_slots_routed_to_expert_0"] = int((ids < 0).sum())
            case.arrays["ids"] = np.where(ids < 0, 0, ids).astype(np.int32)
        case.target = self.to_dict()
        self.build = hello.get("ggml", {})
        case.info.setdefault("ggml", self.build)
        return case

    def needs_extras(self) -> bool:
        return True

    def judge(self, case, outcomes, extras, case_path) -> list[Finding]:
        require_outputs(case, outcomes, case_path, who="target")
        s = self.stats
        s["cases"] += 1
        findings: list[Finding] = []
        if not case.n_tokens:
            return findings
        q8k = extras["q8k"]
        invalid = q8k_invalid(case.arrays["x"], q8k)
        if invalid:  # the activations the GEMM works on are already wrong: judging it on them says nothing
            raise Mismatch(invalid, case_path=case_path, detail=case.describe())
        q = reference.q8k_from_bytes(np.ascontiguousarray(q8k, dtype=np.uint8))
        repack = self.build.get("repack") or {}
        modelled = repack.get("type") in MODELLED_REPACKS
        repacked = (repacked_bound(case.spec, case.arrays, case.act, q, case.expert_token_counts(),
                                   repack["threshold"]) if modelled else None)
        report = bound_report(case, outcomes, q, repacked, label=self.run_label)
        ratios = s["max_bound_ratio"]
        ratios[case.op] = max(ratios.get(case.op, 0.0), report.max_ratio)
        s["unbounded_elements"] += report.unbounded
        if len({o.options.n_threads for o in outcomes}) > 1:
            s["thread_checked"] += 1
        if report.violations:
            s["bound_exceeded"] += 1
            worst = max(report.violations, key=lambda v: v.max_ratio)
            if repack and not modelled and not self.strict:  # a lossy design this harness has no model of
                findings.append(Finding(f"bound-exceeded (unmodelled {repack['type']} repack)", worst.detail,
                                        worst.options, worst.max_ratio))
            else:
                raise Mismatch(f"output beyond every error bound that applies (worst |got-exact|/bound "
                               f"{worst.max_ratio:.3g})", case_path=case_path, detail=worst.detail,
                               options=worst.options)
        if report.repacked:
            s["repacked_deviation"] += 1
            worst = max(report.repacked, key=lambda v: v.max_ratio)
            if self.strict:
                raise Mismatch(f"output outside the exact-product bound on the {repack['type']} repacked path "
                               f"(worst ratio {worst.max_ratio:.3g})", case_path=case_path, detail=worst.detail,
                               options=worst.options)
            findings.append(Finding("repacked-path-deviation", worst.detail, worst.options, worst.max_ratio))
        if report.thread_divergence:
            s["thread_divergent"] += 1
            if self.strict:
                raise ThreadDivergence("runs with different thread counts disagree", case_path=case_path,
                                       detail=report.thread_divergence, options=report.thread_options)
            findings.append(Finding("thread-divergence", report.thread_divergence, report.thread_options))
        diff = q8k_difference(case.arrays["x"], q8k)
        if diff:
            s["q8k_differs"] += 1
            findings.append(Finding("q8k-differs", diff))
        return findings

    def summary_lines(self) -> list[str]:
        s = self.stats
        lines = []
        if s["max_bound_ratio"]:
            lines.append("  max |out - exact| / bound: " + ", ".join(
                f"{op} {r:.3g}" for op, r in sorted(s["max_bound_ratio"].items())))
        lines.append(f"  exact-product bound exceeded in {s['bound_exceeded']} of {s['cases']} cases beyond every "
                     f"bound, in {s['repacked_deviation']} within the repacked path's (by design)")
        lines.append(f"  thread count: {s['thread_divergent']} of {s['thread_checked']} multi-thread cases differ")
        lines.append(f"  {s['unbounded_elements']} output elements outside the bound's model "
                     f"(inf/nan scales, float32 overflow, a Q8_K block's d x sum of quants beyond float32) got the "
                     f"weaker overflow check")
        lines.append(f"  Q8_K activations differ from the reference quantizer in {s['q8k_differs']} cases")
        return lines
