"""Where one job's time per case goes: draw, persist, IPC, kernel, reference, compare.

    python scripts/profile_cases.py [--seconds 30] [--ops mul_mat,...] [--seed 1]

Runs the campaign's strategy (harness.strategies.cases with the campaign's thread counts)
in one process against one isolated worker, the way a campaign job does, and times each
part of every case by wrapping the functions that do it (no profiler, so no distortion):

- draw: Hypothesis generating the case (strategies and the engine around them);
- persist: writing the case file (and the batch sub-case's), and removing it afterwards;
- IPC: the worker round trips minus the library calls the worker timed;
- kernel: the library calls themselves, as the worker timed them (also their CPU time, in
  all the worker's threads, by kind of run);
- reference: the numpy reference (canonical, exact and bound where computed);
- compare: the checks (invariances, unwritten outputs, the reference comparison);
- campaign: the campaign's bound statistics on every 4th case (within_bound_report).
Prints ms per case (wall) for each part, the rest, and cases/s; with --json the numbers.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402

from harness import cases as cases_mod  # noqa: E402
from harness import compare, runner as runner_mod  # noqa: E402
from harness import strategies as hs  # noqa: E402
from harness.campaign import DEFAULT_THREADS  # noqa: E402
from harness.ops import OP_NAMES  # noqa: E402
from harness.runner import Runner  # noqa: E402

T = defaultdict(float)
N = defaultdict(int)


_inside: list[str] = []


def timed(part, fn):
    """fn, its wall time added to `part` (time spent in a nested timed part counts there)."""
    def wrapper(*a, **kw):
        t0 = time.perf_counter()
        _inside.append(part)
        try:
            return fn(*a, **kw)
        finally:
            _inside.pop()
            dt = time.perf_counter() - t0
            T[part] += dt
            N[part] += 1
            if _inside:
                T[_inside[-1]] -= dt
    return wrapper


def process_cpu(pid: int) -> float:
    """utime + stime of a process (all its threads), seconds."""
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--seconds", type=float, default=30)
    p.add_argument("--ops", default=",".join(OP_NAMES))
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--variant", default="release")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()

    # persist: the case file written before each execution and removed after a pass
    runner_mod.save_case = timed("persist", cases_mod.save_case)
    # reference: every reference form a case computes
    for form in ("canonical", "exact", "bound"):
        for op in hs.OPS.values():
            setattr(op, form, timed("reference", getattr(op, form)))
    r = Runner(args.variant)
    worker = r.worker
    for name in ("send", "receive") if hasattr(worker, "send") else ("call",):  # (older harness: one call per run)
        setattr(worker, name, timed("ipc", getattr(worker, name)))
    kernel = [0.0]
    kernel_cpu = [0.0]
    by_run: dict[str, float] = defaultdict(float)
    real_execute = r.execute

    def execute(case, path=None, **kw):
        outcomes, path, extras = real_execute(case, path, **kw)
        kernel[0] += sum(getattr(o, "seconds", 0.0) for o in outcomes)
        kernel_cpu[0] += sum(getattr(o, "cpu", 0.0) for o in outcomes)
        for o in outcomes:
            key = f"{o.options.isa}{' prepacked' if o.options.prepacked else ''}" + (
                f" threads={o.options.n_threads}" if o.options.n_threads > 1 else "")
            by_run[key if o.options.n_threads == 1 else "threads>1"] += getattr(o, "cpu", 0.0)
        return outcomes, path, extras
    r.execute = execute
    unlink = Path.unlink
    Path.unlink = timed("persist", unlink)
    campaign_stats = timed("campaign", compare.within_bound_report)

    deadline = time.monotonic() + args.seconds
    count = [0]
    body = [0.0]
    slow: list[tuple[float, str]] = []
    isas = r.isas
    strategy = hs.cases(isas, args.ops.split(","), threads=list(DEFAULT_THREADS), routing=r.target.routing)

    @settings(max_examples=10**9, deadline=None, database=None, suppress_health_check=list(HealthCheck),
              phases=[Phase.generate], derandomize=False)
    @given(case=strategy)
    def prop(case):
        if time.monotonic() > deadline:
            raise KeyboardInterrupt
        t0 = time.perf_counter()
        count[0] += 1
        outcomes = r.check(case)
        if count[0] % 4 == 0:
            campaign_stats(case, outcomes[0].output)
        dt = time.perf_counter() - t0
        body[0] += dt
        slow.append((dt, case.describe()[:160]))

    import random
    random.seed(args.seed)
    start = time.perf_counter()
    cpu0 = time.process_time()
    wpid = worker.proc.pid
    wcpu0 = process_cpu(wpid)
    try:
        prop()
    except KeyboardInterrupt:
        pass
    wall = time.perf_counter() - start
    cpu = time.process_time() - cpu0
    wcpu = process_cpu(wpid) - wcpu0 if worker.proc is not None and worker.proc.pid == wpid else float("nan")
    r.close()
    n = max(count[0], 1)
    parts = {"draw": wall - body[0], "persist": T["persist"], "ipc": T["ipc"] - kernel[0], "kernel": kernel[0],
             "reference": T["reference"], "campaign": T["campaign"]}
    parts["compare"] = body[0] - sum(v for k, v in parts.items() if k not in ("draw",))
    result = {"cases": count[0], "wall_s": wall, "cases_per_s": count[0] / wall, "parent_cpu_s": cpu,
              "kernel_cpu_ms_per_case": 1e3 * kernel_cpu[0] / n, "worker_cpu_ms_per_case": 1e3 * wcpu / n,
              "ms_per_case": {k: 1e3 * v / n for k, v in parts.items()}}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{count[0]} cases in {wall:.1f} s: {count[0] / wall:.1f} cases/s; parent CPU {1e3 * cpu / n:.2f} ms/case, "
              f"worker CPU {1e3 * wcpu / n:.2f} ms/case, of which in the library {1e3 * kernel_cpu[0] / n:.2f}")
        for k, v in result["ms_per_case"].items():
            print(f"  {k:<10} {v:7.2f} ms/case")
        print("library CPU by run kind (ms/case): " + ", ".join(
            f"{k} {1e3 * v / n:.2f}" for k, v in sorted(by_run.items(), key=lambda kv: -kv[1])))
        slow.sort(reverse=True)
        total = sum(d for d, _ in slow)
        print(f"slowest cases (of {1e3 * total / n:.1f} ms/case checked):")
        for d, text in slow[:8]:
            print(f"  {1e3 * d:8.1f} ms  {text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
