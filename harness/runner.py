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
from .compare import Outcome, check_outcomes
from .errors import UsageError
from .worker import Worker

# Worst-case throughput used to scale timeouts (multiply-adds x2 per second); a sanitized
# scalar build on a loaded machine is far slower than the release kernels.
_RATE = {"": 2e8, "address,undefined": 2e7, "thread": 1e7}
_BASE_TIMEOUT = 10.0


class Runner:
    def __init__(self, variant: str = "release", work_dir: Path | None = None, *, echo_build: bool = False,
                 timeout: float | None = None, keep_passing: bool = False):
        self.variant = parse_variant(variant)
        self.library = build(variant, echo=echo_build)
        runs_root = Path(os.environ.get("IQ1M_RUNS_DIR", PROJECT_ROOT / ".iq1m" / "runs"))
        self.work_dir = Path(work_dir or runs_root / f"{self.variant.slug}-{os.getpid()}")
        self.case_dir = self.work_dir / "cases"
        self.worker = Worker(self.library, self.variant, self.work_dir / "logs")
        self.hello = self.worker.start()
        self.fixed_timeout = timeout
        self.keep_passing = keep_passing
        self.cases_run = 0

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
        """Run every option set of the case in the worker; crashes and hangs raise."""
        case.variant = self.variant.name
        path = Path(path or self.case_dir / f"{case.op}-{case.digest()[:16]}.npz")
        save_case(case, path)
        result_path = path.with_name(path.stem + ".result.npz")
        self.worker.request(path, result_path, self.timeout_for(case))
        self.cases_run += 1
        arrays, meta = load_arrays(result_path)
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
        runs = [r for r in case.runs if r.isa == "auto" or r.isa in self.isas]
        if not runs:
            raise UsageError(f"none of the case's SIMD levels ({sorted({r.isa for r in case.runs})}) "
                             f"runs on this CPU ({', '.join(self.isas)})")
        case.runs = runs
        return case

    def check(self, case: Case) -> list[Outcome]:
        outcomes, path = self.execute(case)
        check_outcomes(case, outcomes, case_path=path)
        if not self.keep_passing:
            path.unlink(missing_ok=True)
        return outcomes


