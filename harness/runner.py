"""A session: one built variant, one isolated worker, and the check of each case.

`Runner.check(case)` saves the case atomically, runs it in the worker, and compares the
outcome; a passing case's files are removed, a failing one's stay where the exception
says. Everything that can fail is raised as a HarnessFailure subclass.
"""
from __future__ import annotations

import os
from pathlib import Path

from .build import PROJECT_ROOT, build, parse_variant
from .cases import Case, load_arrays, save_case
from .compare import (Outcome, batch_difference, batch_subcase, check_bound_outcomes,
                      check_outcomes, only_thread_runs)
from .errors import BatchDivergence, UsageError
from .targets import Target
from .worker import Worker

# Worst-case throughput used to scale timeouts (multiply-adds x2 per second); a sanitized
# scalar build on a loaded machine is far slower than the release kernels.
_RATE = {"": 2e8, "address,undefined": 2e7, "thread": 1e7}
_BASE_TIMEOUT = float(os.environ.get("IQ1M_BASE_TIMEOUT", "10"))


class Runner:
    def __init__(self, variant: str = "release", work_dir: Path | None = None, *, echo_build: bool = False,
                 timeout: float | None = None, keep_passing: bool = False, target: Target | None = None,
                 batch_check: bool = True):
        """`target`: what runs the cases (default: the project's kernels, built as `variant`;
        a ggml target ignores the variant). `batch_check`: also run each case's one-token
        sub-case and compare that token's output (batch-composition invariance)."""
        self.target = target or Target()
        runs_root = Path(os.environ.get("IQ1M_RUNS_DIR", PROJECT_ROOT / ".iq1m" / "runs"))
        if self.target.is_ggml:
            self.variant = parse_variant("release")
            self.library = self.target.resolved_lib_dir()
            slug = "ggml"
        else:
            self.variant = parse_variant(variant)
            self.library = build(variant, echo=echo_build)
            slug = self.variant.slug
        self.work_dir = Path(work_dir or runs_root / f"{slug}-{os.getpid()}")
        self.case_dir = self.work_dir / "cases"
        self.worker = Worker(self.library, self.variant, self.work_dir / "logs", ggml=self.target.is_ggml,
                             extra_env=self.target.worker_env())
        self.hello = self.worker.start()
        self.fixed_timeout = timeout
        self.keep_passing = keep_passing
        self.batch_check = batch_check
        self.executions = 0
        # what the checks found that is not (or, for ggml without strict, not counted as) a failure
        self.findings: list[dict] = []
        self.finding_counts: dict[str, int] = {}  # per kind, also past MAX_KEPT_FINDINGS
        self.stats = {"cases": 0, "batch_checked": 0, "batch_divergent": 0, "thread_checked": 0,
                      "thread_divergent": 0, "q8k_differs": 0, "max_bound_ratio": {}}

    @property
    def isas(self) -> list[str]:
        return list(self.hello["isas"])

    def close(self) -> None:
        self.worker.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def timeout_for(self, case: Case) -> float:
        if self.fixed_timeout is not None:
            return self.fixed_timeout
        return _BASE_TIMEOUT + case.work() / _RATE[self.variant.sanitizer]

    def execute(self, case: Case, path: Path | None = None) -> tuple[list[Outcome], Path]:
        """Run every option set of the case in the worker; crashes and hangs raise.
        On ggml the target's Q8_K bytes of x are kept in `self.last_q8k`."""
        case.variant = self.variant.name
        if self.target.is_ggml:
            case.target = self.target.to_dict()
            case.info.setdefault("ggml", self.hello.get("ggml", {}))
            case.runs = only_thread_runs(case.runs)
        else:
            case.target = {}
        # one file per execution: a later passing run of the same case (a flaky crash
        # replayed by Hypothesis) must not delete the file an earlier failure pointed to
        self.executions += 1
        path = Path(path or self.case_dir / f"{case.op}-{case.digest()[:16]}-{self.executions}.npz")
        save_case(case, path)
        result_path = path.with_name(path.stem + ".result.npz")
        self.worker.request(path, result_path, self.timeout_for(case))
        arrays, meta = load_arrays(result_path)
        self.last_q8k = arrays.get("q8k")
        outcomes = []
        for i, (opt, status) in enumerate(zip(case.runs, meta["statuses"])):
            if status["ok"]:
                outcomes.append(Outcome(opt, arrays[f"out{i}"]))
            else:
                outcomes.append(Outcome(opt, None, status["code"], status["message"]))
        result_path.unlink(missing_ok=True)
        return outcomes, path

    def portable(self, case: Case) -> Case:
        """The case with the option sets this CPU cannot run (a SIMD level it lacks) left out,
        for replaying cases saved on another machine."""
        if self.target.is_ggml:
            return case  # ISA does not apply; execute() reduces the runs to thread counts
        runs = [r for r in case.runs if r.isa == "auto" or r.isa in self.isas]
        if not runs:
            raise UsageError(f"none of the case's SIMD levels ({sorted({r.isa for r in case.runs})}) "
                             f"runs on this CPU ({', '.join(self.isas)})")
        case.runs = runs
        return case

    def check(self, case: Case) -> list[Outcome]:
        """Run and judge one case. Kernels: bit-exact against the reference, every
        invariance a failure. ggml: every run within the float64 bound with ggml's own Q8_K
        activations; thread-count and batch-composition invariance are findings (failures
        with target.strict)."""
        outcomes, path = self.execute(case)
        self.stats["cases"] += 1
        keep = self.keep_passing
        if self.target.is_ggml:
            report = check_bound_outcomes(case, outcomes, self.last_q8k, case_path=path, strict=self.target.strict)
            ratios = self.stats["max_bound_ratio"]
            ratios[case.op] = max(ratios.get(case.op, 0.0), report.max_ratio)
            self.stats["unbounded_elements"] = self.stats.get("unbounded_elements", 0) + report.unbounded
            if len({o.options.n_threads for o in outcomes}) > 1:
                self.stats["thread_checked"] += 1
            if report.thread_divergence:
                self.stats["thread_divergent"] += 1
                keep = self._finding("thread-divergence", case, path, report.thread_divergence) or keep
            if report.q8k_difference:
                self.stats["q8k_differs"] += 1
                keep = self._finding("q8k-differs", case, path, report.q8k_difference) or keep
        else:
            check_outcomes(case, outcomes, case_path=path)
        if self.batch_check and outcomes and outcomes[0].output is not None:
            keep = self._check_batch(case, outcomes[0].output, path) or keep
        if not keep:
            path.unlink(missing_ok=True)
        return outcomes

    def _check_batch(self, case: Case, full, path: Path) -> bool:
        """Batch-composition invariance: the one-token sub-case against the full case.
        Returns True when a (non-failing) finding was recorded."""
        made = batch_subcase(case)
        if made is None:
            return False
        sub, token = made
        sub_path = path.with_name(path.stem + f".token{token}.npz")
        sub_outcomes, _ = self.execute(sub, sub_path)
        self.stats["batch_checked"] += 1
        if sub_outcomes[0].output is None:
            sub_path.unlink(missing_ok=True)
            return False  # the sub-case's own status is judged when it runs as a case
        diff = batch_difference(case, token, full, sub_outcomes[0].output)
        if diff is None:
            sub_path.unlink(missing_ok=True)
            return False
        self.stats["batch_divergent"] += 1
        message = f"token {token}'s output changes with the batch around it [{case.runs[0].label()}]"
        if self.target.invariance_fails:
            raise BatchDivergence(message, case_path=path, detail=f"{case.describe()}\n{diff}\n"
                                  f"one-token sub-case saved at: {sub_path}")
        kept = self._finding("batch-divergence", case, path, diff, sub_path=sub_path)
        if not kept:
            sub_path.unlink(missing_ok=True)
        return kept

    MAX_KEPT_FINDINGS = 20

    def _finding(self, kind: str, case: Case, path: Path, detail: str, sub_path: Path | None = None) -> bool:
        """Record a finding; its case files are kept for the first MAX_KEPT_FINDINGS of each
        kind (returns whether they are), later ones are only counted."""
        n = self.finding_counts[kind] = self.finding_counts.get(kind, 0) + 1
        keep = n <= self.MAX_KEPT_FINDINGS
        counts = case.expert_token_counts().tolist()
        self.findings.append({"kind": kind, "target": self.target.label(), "op": case.op,
                              "describe": case.describe(), "expert_token_counts": counts,
                              "threads": sorted({r.n_threads for r in case.runs}),
                              "case": str(path) if keep else "", "sub_case": str(sub_path) if sub_path and keep else "",
                              "detail": detail[:3000] if keep else detail.splitlines()[0][:300]})
        return keep

    def findings_summary(self) -> str:
        """A few lines for a person: what the checks found on this target."""
        s = self.stats
        lines = [f"target {self.target.label()}: {s['cases']} cases"]
        if s["max_bound_ratio"]:
            lines.append("  max |out - exact| / bound: " + ", ".join(
                f"{op} {r:.3g}" for op, r in sorted(s["max_bound_ratio"].items())))
        lines.append(f"  batch composition: {s['batch_divergent']} of {s['batch_checked']} checked cases "
                     f"change a token's output when its expert's token count changes")
        if self.target.is_ggml:
            lines.append(f"  thread count: {s['thread_divergent']} of {s['thread_checked']} multi-thread cases differ")
            lines.append(f"  {s.get('unbounded_elements', 0)} output elements outside the bound's model "
                         f"(inf/nan scales, float32 overflow) got the weaker overflow check")
            lines.append(f"  Q8_K activations differ from the reference quantizer in {s['q8k_differs']} cases")
        by_kind: dict[str, list[dict]] = {}
        for f in self.findings:
            by_kind.setdefault(f["kind"], []).append(f)
        for kind, items in sorted(by_kind.items()):
            first = items[0]
            lines.append(f"  finding {kind} x{self.finding_counts.get(kind, len(items))}, e.g. {first['describe']} "
                         f"(case {first['case']})")
        return "\n".join(lines)


