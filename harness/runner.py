"""A session: one target, one isolated worker, and the check of each case.

`Runner.check(case)` adapts the case to the target, saves it atomically, runs each of its
option sets in the worker, and lets the target judge the outcomes; a passing case's files
are removed, a failing one's stay where the exception says. Everything that can fail is
raised as a HarnessFailure subclass; what a target reports without failing (findings) is
collected in `findings`.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from .cases import Case, save_case
from .compare import Outcome, batch_difference, batch_subcase, batch_token, check_unwritten
from .errors import (BatchDivergence, HarnessFailure, KernelCorruption, KernelCrash, KernelExit, KernelHang,
                     MemoryOverrun)
from .fork_server import ForkServerLost
from .paths import runs_dir
from .targets import Finding, KernelsTarget, Target
from .worker import Worker

# Worst-case throughput used to scale timeouts (multiply-adds x2 per second); a sanitized
# scalar build on a loaded machine is far slower than the release kernels.
_RATE = {"": 2e8, "address,undefined": 2e7, "thread": 1e7}
_BASE_TIMEOUT = float(os.environ.get("IQ1M_BASE_TIMEOUT", "10"))
DEATHS = (KernelCrash, KernelExit, KernelHang, KernelCorruption)


class Runner:
    def __init__(self, target: Target | str = "release", work_dir: Path | None = None, *, echo_build: bool = False,
                 timeout: float | None = None, keep_passing: bool = False, batch_check: bool = True,
                 base_timeout: float | None = None, record_dir: Path | None = None):
        """`target`: what runs the cases (a variant name means the project's kernels built
        so). `timeout`: seconds per run before the worker counts as hung (default: scaled
        with the run's work, from `base_timeout` seconds, IQ1M_BASE_TIMEOUT or 10).
        `batch_check`: also run each case's one-token sub-case and compare that token's
        output (batch-composition invariance). `record_dir` (or IQ1M_RECORD_CASES): keep a
        copy of every case checked, numbered in order (`iq1m-harness mutate` replays the
        suite's cases from such a record)."""
        self.target = KernelsTarget(target, echo_build=echo_build) if isinstance(target, str) else target
        spec = self.target.prepare()
        runs_root = runs_dir()
        self.work_dir = Path(work_dir or runs_root / f"{self.target.slug}-{os.getpid()}")
        self.case_dir = self.work_dir / "cases"
        self.worker = Worker(spec, self.work_dir / "logs", env=self.target.worker_env(),
                             load_hint=self.target.load_hint)
        self.hello = self.worker.start()
        self.fixed_timeout = timeout
        self.base_timeout = _BASE_TIMEOUT if base_timeout is None else base_timeout
        record = record_dir or os.environ.get("IQ1M_RECORD_CASES")
        self.record_dir = Path(record) if record else None
        self._recorded = 0
        if self.record_dir is not None:
            self.record_dir.mkdir(parents=True, exist_ok=True)
            self._recorded = len(list(self.record_dir.glob("*.npz")))
        self.keep_passing = keep_passing
        self.batch_check = batch_check
        self.executions = 0
        self.findings: list[dict] = []
        self.finding_counts: dict[str, int] = {}  # per kind, also past MAX_KEPT_FINDINGS
        self.stats = {"cases": 0, "batch_checked": 0, "batch_divergent": 0}

    @property
    def isas(self) -> list[str]:
        return list(self.hello["isas"])

    @property
    def variant(self):
        return self.target.variant

    @property
    def library(self) -> Path:
        return self.target.library

    def close(self) -> None:
        self.worker.shutdown()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def timeout_for(self, case: Case) -> float:
        """Seconds one run of the case may take."""
        if self.fixed_timeout is not None:
            return self.fixed_timeout
        return self.base_timeout + case.spec.work(case.arrays) / _RATE[self.target.variant.sanitizer]

    def execute(self, case: Case, path: Path | None = None, *, batch: bool = False
                ) -> tuple[list[Outcome], Path, dict]:
        try:
            return self._execute(case, path, batch=batch)
        except ForkServerLost:
            # the worker died with its fork server (killed from outside), whatever the case
            # did: the case runs again, in a worker of the plain kind
            return self._execute(case, path, batch=batch)

    def _execute(self, case: Case, path: Path | None = None, *, batch: bool = False
                 ) -> tuple[list[Outcome], Path, dict]:
        """Adapt the case to the target, save it, and run every option set in the worker in
        one request (its arrays sent along, its replies streamed back one per run; each run
        writes into an output filled with its own canary): (outcomes, case path, the
        target's extras). A death raises, carrying the run it happened in and the outcomes
        of the runs before it (`completed`).

        `batch`: the same request also runs the first option set on the case reduced to one
        token (compare.batch_token; recorded in the saved case's info), after the runs; its
        outcome, or the death it met, is left in `self.last_batch` as (token, Outcome or
        death), the death not raised: the case's own runs are judged first.

        A case whose info has `fresh_worker` runs first in a new worker process."""
        if case.info.get("fresh_worker"):
            # what the library keeps between calls (its scratch buffers, its thread pool)
            # would hide what the case tests: it runs first in a new worker process
            self.worker.close()
        case = self.target.adapt(case, self.hello)
        self.last_batch = None
        token = batch_token(case) if batch else None
        if token is not None:
            case.info["batch_token"] = token
        # one file per execution: a later passing run of the same case (a flaky crash
        # replayed by Hypothesis) must not delete the file an earlier failure pointed to
        self.executions += 1
        path = Path(path or self.case_dir / f"{case.op}-{case.digest()[:16]}-{self.executions}.npz")
        save_case(case, path)  # on disk before the library sees it
        timeout = self.timeout_for(case)
        extras: dict = {}
        outcomes: list[Outcome] = []
        marks = [self.canary_base + i for i in range(len(case.runs))]
        request = {"case": str(path), "op": case.op, "act": case.act, "options": [r.to_dict() for r in case.runs],
                   "canary": marks, "extras": self.target.needs_extras()}
        if token is not None:
            request.update(sub_token=token, sub_canary=self.SUB_CANARY)
        in_extras = request["extras"]
        try:
            try:
                self.worker.send(request, case.arrays, timeout, case_path=path)
                if in_extras:
                    _, extras = self.worker.receive(timeout, case_path=path)
                    in_extras = False
                for i, options in enumerate(case.runs):
                    header, arrays = self.worker.receive(timeout, case_path=path)
                    if header.get("index") != i:
                        raise RuntimeError(f"the worker answered run {header.get('index')} for run {i} of {path}")
                    outcomes.append(self._outcome(options, header, arrays, marks[i]))
            except DEATHS as death:
                run = None if in_extras else case.runs[len(outcomes)]
                death.set_run(run, self.target.run_label(run) if run is not None else "")
                raise
        except DEATHS as death:
            death.completed = (case, outcomes, extras)
            raise
        if token is not None:
            try:
                header, arrays = self.worker.receive(self.timeout_for(case), case_path=path)
                self.last_batch = (token, self._outcome(case.runs[0], header, arrays, self.SUB_CANARY))
            except DEATHS as death:
                death.set_run(case.runs[0], self.target.run_label(case.runs[0]))
                self.last_batch = (token, death)
        return outcomes, path, extras

    @staticmethod
    def _outcome(options, header: dict, arrays: dict, mark: int) -> Outcome:
        if not header["ok"]:
            return Outcome(options, None, header["code"], header["message"])
        return Outcome(options, arrays["out"], canary=mark, scratch=header.get("scratch", []),
                       seconds=header.get("seconds", 0.0), cpu=header.get("cpu", 0.0),
                       defects=tuple(header.get("defects", ())))

    # canary numbers of the runs of a case: run i of a case gets canary_base + i; the batch
    # sub-case's run another (harness.canary: an unwritten element also differs between runs)
    canary_base = 0
    SUB_CANARY = 97
    last_batch = None

    def check(self, case: Case) -> list[Outcome]:
        """Run and judge one case; raises the most specific HarnessFailure. When the worker
        dies in a run, the runs before it are judged too, and what they show is attached to
        the death (`failure.also`): a crash at one option set must not hide a wrong result
        at another."""
        try:
            outcomes, path, extras = self.execute(case, batch=self.batch_check)
        except DEATHS as death:
            self._record(death.case_path)
            adapted, done, extras = death.completed
            if done:
                try:
                    check_unwritten(adapted, done, death.case_path)
                    self.target.judge(adapted, done, extras, death.case_path)
                except HarnessFailure as other:
                    death.also.append(other)
            raise
        self._record(path)
        self.stats["cases"] += 1
        for o in outcomes:
            if o.defects:
                raise MemoryOverrun(o.defects[0], case_path=path, detail=case.describe(), options=o.options)
        keep = self.keep_passing
        check_unwritten(case, outcomes, path)
        for finding in self.target.judge(case, outcomes, extras, path):
            keep = self._finding(finding, case, path) or keep
        if self.last_batch is not None and outcomes and outcomes[0].output is not None:
            keep = self._check_batch(case, outcomes[0].output, path, *self.last_batch) or keep
        if not keep:
            path.unlink(missing_ok=True)
        return outcomes

    def _record(self, path) -> None:
        if self.record_dir is not None and path is not None:
            target = self.record_dir / f"{self._recorded:05d}.npz"
            self._recorded += 1
            try:
                os.link(path, target)
            except OSError:
                shutil.copyfile(path, target)

    def _check_batch(self, case: Case, full, path: Path, token: int, alone) -> bool:
        """Batch-composition invariance: the one-token sub-run against the full case. The
        sub-case's file is written when there is something to show (a divergence, or a death
        in the sub-run: then that death is raised with it). Returns True when a
        (non-failing) finding was recorded."""
        sub_path = path.with_name(path.stem + f".token{token}.npz")
        if isinstance(alone, HarnessFailure):
            save_case(batch_subcase(case, token), sub_path)
            alone.case_path = sub_path
            alone.set_run(alone.options, alone.run_label)
            raise alone
        self.stats["batch_checked"] += 1
        if alone.output is None:
            return False  # the sub-case's own status is judged when it runs as a case
        if case.spec.unwritten(case.spec.one_token(case.arrays, token), alone.output, alone.canary)[0]:
            sub = batch_subcase(case, token)
            save_case(sub, sub_path)
            check_unwritten(sub, [alone], sub_path)  # raises
        diff = batch_difference(case, token, full, alone.output)
        if diff is None:
            return False
        self.stats["batch_divergent"] += 1
        save_case(batch_subcase(case, token), sub_path)
        message = f"token {token}'s output changes with the batch around it [{self.target.run_label(case.runs[0])}]"
        if self.target.invariance_fails:
            raise BatchDivergence(message, case_path=path, detail=f"{case.describe()}\n{diff}\n"
                                  f"one-token sub-case saved at: {sub_path}", options=case.runs[0])
        kept = self._finding(Finding("batch-divergence", diff, case.runs[0]), case, path, sub_path=sub_path)
        if not kept:
            sub_path.unlink(missing_ok=True)
        return kept

    MAX_KEPT_FINDINGS = 20

    def _finding(self, finding: Finding, case: Case, path: Path, sub_path: Path | None = None) -> bool:
        """Record a finding; its case files are kept for the first MAX_KEPT_FINDINGS of each
        kind (returns whether they are), later ones are only counted."""
        kind = finding.kind
        n = self.finding_counts[kind] = self.finding_counts.get(kind, 0) + 1
        keep = n <= self.MAX_KEPT_FINDINGS
        detail = finding.detail
        self.findings.append({"kind": kind, "target": self.target.label(), "op": case.op,
                              "describe": case.describe(),
                              "expert_token_counts": case.expert_token_counts().tolist(),
                              "threads": sorted({r.n_threads for r in case.runs}),
                              "run": self.target.run_label(finding.options) if finding.options is not None else "",
                              "ratio": finding.ratio,
                              "case": str(path) if keep else "", "sub_case": str(sub_path) if sub_path and keep else "",
                              "detail": detail[:3000] if keep else detail.splitlines()[0][:300]})
        return keep

    def findings_summary(self) -> str:
        """A few lines for a person: what the checks found on this target."""
        s = self.stats
        lines = [f"target {self.target.label()}: {s['cases']} cases",
                 f"  batch composition: {s['batch_divergent']} of {s['batch_checked']} checked cases "
                 f"change a token's output when its expert's token count changes"]
        lines += self.target.summary_lines()
        by_kind: dict[str, list[dict]] = {}
        for f in self.findings:
            by_kind.setdefault(f["kind"], []).append(f)
        for kind, items in sorted(by_kind.items()):
            first = items[0]
            worst = max((f["ratio"] or 0.0 for f in items), default=0.0)
            ratio = f", worst ratio {worst:.3g}" if worst else ""
            lines.append(f"  finding {kind} x{self.finding_counts.get(kind, len(items))}{ratio}, e.g. "
                         f"{first['describe']} (case {first['case']})")
        return "\n".join(lines)
