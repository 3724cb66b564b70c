"""Time-boxed fuzz campaigns: N job processes, live progress, saved failures, a report.

Layout of the output directory:

    jobs/job-N.json      live counters of job N (rewritten atomically about once a second)
    jobs/job-N/          the job's worker logs and in-flight case files
    failures/            one minimised case file + repro_<id>.py per distinct failure;
                         written before the failure is counted, so nothing found is lost
    examples/            Hypothesis example database (unless --db redis://...): a rerun
                         replays what earlier runs found first
    report.json, report.md, report.png   written at the end and on Ctrl-C

Each job is a separate process running Hypothesis in batches until the deadline; each
case runs in that job's isolated kernel worker.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .cases import atomic_write_bytes
from .errors import UsageError
from .ops import OP_NAMES as OPS
DEFAULT_THREADS = (1, 2, 3, 4, 7, 16)


@dataclass
class JobConfig:
    out: Path
    job: int
    deadline: float  # time.time() value
    variant: str = "release"
    ops: tuple[str, ...] = OPS
    threads: tuple[int, ...] = DEFAULT_THREADS
    isas: tuple[str, ...] = ()
    seed: int | None = None
    db: str = ""
    target: str = ""  # JSON of harness.targets.Target.to_dict() plus "strict"; "" = the kernels

    def to_argv(self) -> list[str]:
        argv = ["--out", str(self.out), "--job", str(self.job), "--deadline", repr(self.deadline),
                "--variant", self.variant, "--ops", ",".join(self.ops),
                "--threads", ",".join(map(str, self.threads)), "--db", self.db]
        if self.isas:
            argv += ["--isas", ",".join(self.isas)]
        if self.seed is not None:
            argv += ["--seed", str(self.seed)]
        if self.target:
            argv += ["--target-json", self.target]
        return argv


@dataclass
class JobStats:
    job: int
    cases: int = 0
    started: float = field(default_factory=time.time)
    updated: float = 0.0
    failures: list[dict] = field(default_factory=list)
    ops: Counter = field(default_factory=Counter)
    token_buckets: Counter = field(default_factory=Counter)
    threads: Counter = field(default_factory=Counter)
    isas: Counter = field(default_factory=Counter)
    coverage: Counter = field(default_factory=Counter)  # "bucket|threads" -> cases
    events: Counter = field(default_factory=Counter)    # classes drawn (Case.info["events"]) -> cases
    ratio_hist: list[int] = field(default_factory=lambda: [0] * len(RATIO_EDGES))
    max_ratio: float = 0.0
    finished: bool = False
    error: str = ""

    def to_json(self) -> bytes:
        d = {k: (dict(v) if isinstance(v, Counter) else v) for k, v in self.__dict__.items()}
        return json.dumps(d, sort_keys=True).encode()

    @classmethod
    def from_json(cls, text: bytes) -> "JobStats":
        d = json.loads(text)
        for k in ("ops", "token_buckets", "threads", "isas", "coverage", "events"):
            d[k] = Counter(d.get(k, {}))
        return cls(**d)


# error/bound ratio histogram edges: [0], (0, 1e-6], ... (0.1, 1], > 1 (a bound violation)
RATIO_EDGES = [0.0, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, float("inf")]


def ratio_bucket(r: float) -> int:
    for i, edge in enumerate(RATIO_EDGES):
        if r <= edge:
            return i
    return len(RATIO_EDGES) - 1


def failure_key(failure, op: str) -> str:
    detail = getattr(failure, "signal_name", "") or ""
    return f"{failure.kind}-{op}{'-' + detail if detail else ''}"


# -- one job ----------------------------------------------------------------------------

class _Stop(BaseException):
    """Raised inside the property on SIGTERM; a BaseException so Hypothesis lets it through."""


def run_job(cfg: JobConfig) -> int:
    from hypothesis import HealthCheck, Phase, given, settings

    from . import strategies as hs
    from .cases import load_case, save_case
    from .compare import within_bound_report
    from .errors import HarnessFailure
    from .repro import write_script
    from .runner import Runner

    stats = JobStats(job=cfg.job)
    status_path = cfg.out / "jobs" / f"job-{cfg.job}.json"
    failures_dir = cfg.out / "failures"
    failures_dir.mkdir(parents=True, exist_ok=True)
    last_write = [0.0]

    def publish(force=False):
        now = time.time()
        if force or now - last_write[0] > 0.5:
            stats.updated = now
            atomic_write_bytes(status_path, stats.to_json())
            last_write[0] = now

    stopping = [False]

    def on_term(signum, frame):
        stopping[0] = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    publish(force=True)
    try:
        from .targets import from_dict

        tdict = json.loads(cfg.target) if cfg.target else {}
        target = from_dict(tdict, variant=cfg.variant, strict=bool(tdict.get("strict")))
        runner = Runner(target, cfg.out / "jobs" / f"job-{cfg.job}")
    except Exception as exc:  # reported by the parent as a one-line error
        stats.error = str(exc)
        stats.finished = True
        publish(force=True)
        return 2
    isas = [i for i in runner.isas if not cfg.isas or i in cfg.isas] or runner.isas[:1]
    database = _database(cfg)
    if cfg.seed is not None:
        _seed_hypothesis(cfg.seed * 1000 + cfg.job)
    saved_keys: dict[str, Path] = {}  # failure key -> its case file, for this run

    def persist(failure, minimised: bool) -> None:
        """Save a failure's case and repro script at once (the first sighting, unshrunk),
        then replace it by the minimised one when Hypothesis has shrunk it."""
        case = load_case(failure.case_path)
        key = failure_key(failure, case.op)
        if key in saved_keys and not minimised:
            return
        case_id = f"{key}__{case.digest()[:10]}"
        case.info.update({"failure_kind": failure.kind, "message": failure.message, "detail": failure.detail,
                          "stderr_tail": failure.stderr_tail[-4000:], "signal": getattr(failure, "signal_name", ""),
                          "minimised": minimised, "found_by_job": cfg.job, "library": runner.hello})
        target = failures_dir / f"{case_id}.npz"
        write_script(target, failure, case.describe(), runner.target.label(), case_id)  # script first: a case
        save_case(case, target)                                               # on disk has its script
        for old in failures_dir.glob(f"{key}__*.npz"):
            if old != target:
                old.unlink(missing_ok=True)
                old.with_name(f"repro_{old.stem}.py").unlink(missing_ok=True)
        entry = {"id": case_id, "kind": failure.kind, "op": case.op, "message": failure.message,
                 "case": str(target), "describe": case.describe(), "minimised": minimised}
        stats.failures = [f for f in stats.failures if not f["id"].startswith(key + "__")] + [entry]
        saved_keys[key] = target
        publish(force=True)

    def record(case):
        stats.cases += 1
        stats.ops[case.op] += 1
        buckets = {hs.token_count_bucket(int(c)) for c in case.expert_token_counts()}
        threads = {r.n_threads for r in case.runs}
        for b in buckets:
            stats.token_buckets[b] += 1
            for t in threads:
                stats.coverage[f"{b}|{t}"] += 1
        for t in threads:
            stats.threads[str(t)] += 1
        for i in {r.isa + (" prepacked" if r.prepacked else "") for r in case.runs}:
            stats.isas[i] += 1
        stats.events.update(case.info.get("events", ()))

    ops = [op for op in cfg.ops if runner.target.supports(op)]
    if not ops:
        stats.error = f"{runner.target.label()} runs none of the operations {', '.join(cfg.ops)}"
        stats.finished = True
        publish(force=True)
        runner.close()
        return 2
    strategy = hs.cases(isas, ops, threads=list(cfg.threads), routing=runner.target.routing)

    # Small batches: the deadline is checked between them (a property that returned early
    # near the deadline would make Hypothesis's final replay of a failure look flaky).
    @settings(database=database, max_examples=20, deadline=None, derandomize=False,
              suppress_health_check=list(HealthCheck), report_multiple_bugs=False,
              phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink])
    @given(case=strategy)
    def campaign_property(case):
        if stopping[0]:
            raise _Stop()
        record(case)
        try:
            outcomes = runner.check(case)
        except HarnessFailure as failure:
            persist(failure, minimised=False)
            raise
        if runner.findings:  # non-failing observations on a ggml target (thread/batch invariance)
            _append_findings(cfg, runner.findings)
            runner.findings.clear()
        if stats.cases % 4 == 0:  # error/bound statistics on a sample: the bound costs a float64 pass
            ok, ratio = within_bound_report(case, outcomes[0].output)
            if ratio.size:
                stats.max_ratio = max(stats.max_ratio, float(ratio.max()))
                for r in ratio.ravel()[:: max(1, ratio.size // 256)]:
                    stats.ratio_hist[ratio_bucket(float(r))] += 1
        publish()

    while not stopping[0] and time.time() < cfg.deadline:
        try:
            campaign_property()
        except _Stop:
            break
        except HarnessFailure as failure:
            persist(failure, minimised=True)
        except BaseExceptionGroup as exc:  # a flaky (non-deterministic) failure: its first sighting is saved
            print(f"job {cfg.job}: {type(exc).__name__}: {exc}"[:2000], file=sys.stderr, flush=True)
        except Exception as exc:  # the harness itself cannot go on (e.g. the example database is gone)
            stats.error = f"{type(exc).__name__}: {exc}"[:500]
            break
        publish(force=True)
    runner.close()
    stats.finished = True
    publish(force=True)
    return 0


def _append_findings(cfg: JobConfig, findings: list[dict]) -> None:
    """Findings go to findings/job-N.jsonl, one JSON object a line (appended; survives a kill)."""
    path = cfg.out / "findings" / f"job-{cfg.job}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        for item in findings:
            f.write(json.dumps(item, sort_keys=True) + "\n")


def read_findings(out: Path) -> list[dict]:
    items = []
    for path in sorted((out / "findings").glob("job-*.jsonl")):
        for line in path.read_text().splitlines():
            try:
                items.append(json.loads(line))
            except ValueError:
                continue  # a line cut by a kill
    return items


def _check_database(db: str) -> None:
    """A shared example store that cannot be reached is an error before any job starts."""
    if not db.startswith("redis://"):
        return
    try:
        import redis
    except ImportError as exc:
        raise UsageError("--db redis://... needs the redis client: pip install -e '.[redis]'") from exc
    try:
        redis.Redis.from_url(db, socket_connect_timeout=5).ping()
    except (redis.RedisError, ValueError) as exc:
        raise UsageError(f"cannot reach the example database {db}: {exc}") from exc


def _seed_hypothesis(value: int) -> None:
    """Seed Hypothesis's own generator. `hypothesis.seed()` would do it too but also turns
    the example database off, and the database is what lets a campaign resume."""
    import random

    import hypothesis.core

    local = getattr(hypothesis.core, "threadlocal", None)
    if local is not None and hasattr(local, "_hypothesis_global_random"):
        local._hypothesis_global_random = random.Random(value)


def _database(cfg: JobConfig):
    from hypothesis.database import DirectoryBasedExampleDatabase

    if cfg.db.startswith("redis://"):
        try:
            import redis
            from hypothesis.extra.redis import RedisExampleDatabase
        except ImportError as exc:
            raise UsageError("--db redis://... needs the redis client: pip install -e '.[redis]'") from exc
        return RedisExampleDatabase(redis.Redis.from_url(cfg.db))
    return DirectoryBasedExampleDatabase(str(Path(cfg.db) if cfg.db else cfg.out / "examples"))


def job_main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m harness.campaign")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--job", type=int, required=True)
    p.add_argument("--deadline", type=float, required=True)
    p.add_argument("--variant", default="release")
    p.add_argument("--ops", default=",".join(OPS))
    p.add_argument("--threads", default=",".join(map(str, DEFAULT_THREADS)))
    p.add_argument("--isas", default="")
    p.add_argument("--seed", type=int)
    p.add_argument("--db", default="")
    p.add_argument("--target-json", default="")
    a = p.parse_args(argv)
    cfg = JobConfig(out=a.out, job=a.job, deadline=a.deadline, variant=a.variant, ops=tuple(a.ops.split(",")),
                    threads=tuple(int(t) for t in a.threads.split(",")),
                    isas=tuple(filter(None, a.isas.split(","))), seed=a.seed, db=a.db, target=a.target_json)
    return run_job(cfg)


# -- the parent: jobs, progress, report ------------------------------------------------

def read_stats(out: Path) -> list[JobStats]:
    stats = []
    for path in sorted((out / "jobs").glob("job-*.json")):
        try:
            stats.append(JobStats.from_json(path.read_bytes()))
        except (OSError, ValueError, TypeError):
            continue  # being replaced right now; next poll reads it
    return stats


def merge(stats: list[JobStats]) -> dict:
    total = {"cases": 0, "ops": Counter(), "token_buckets": Counter(), "threads": Counter(), "isas": Counter(),
             "coverage": Counter(), "events": Counter(), "ratio_hist": [0] * len(RATIO_EDGES), "max_ratio": 0.0, "failures": [],
             "errors": []}
    for s in stats:
        total["cases"] += s.cases
        for k in ("ops", "token_buckets", "threads", "isas", "coverage", "events"):
            total[k].update(getattr(s, k))
        total["ratio_hist"] = [a + b for a, b in zip(total["ratio_hist"], s.ratio_hist)]
        total["max_ratio"] = max(total["max_ratio"], s.max_ratio)
        total["failures"] += s.failures
        if s.error:
            total["errors"].append(f"job {s.job}: {s.error}")
    return total


def progress_line(total: dict, elapsed: float, budget: float) -> str:
    from .strategies import TOKEN_COUNT_BUCKETS

    rate = total["cases"] / elapsed if elapsed > 0 else 0.0
    buckets = " ".join(f"{b}:{total['token_buckets'].get(b, 0)}" for b in TOKEN_COUNT_BUCKETS)
    threads = " ".join(f"{t}:{n}" for t, n in sorted(total["threads"].items(), key=lambda kv: int(kv[0])))
    return (f"[{_mmss(elapsed)}/{_mmss(budget)}] cases {total['cases']} ({rate:.1f}/s) "
            f"failures {len(_distinct(total['failures']))} | expert tokens {buckets} | threads {threads}")


def _mmss(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60:02d}:{seconds % 60:02d}"


def _distinct(failures: list[dict]) -> list[dict]:
    seen, out = set(), []
    for f in failures:
        key = f["id"].split("__")[0]
        if key not in seen:
            seen.add(key)
            out.append(f)
    return out


def run_campaign(out: Path, minutes: float, jobs: int, variant: str, ops, threads, isas, seed, db: str,
                 stream=sys.stderr, target=None) -> int:
    out.mkdir(parents=True, exist_ok=True)
    (out / "jobs").mkdir(exist_ok=True)
    for stale in (out / "jobs").glob("job-*.json"):
        stale.unlink()
    _check_database(db)
    from .targets import KernelsTarget

    target = target or KernelsTarget(variant)
    print(f"preparing {target.label()} ...", file=stream, flush=True)
    target.prepare()  # a build, or a one-line error now rather than in every job
    target_json = json.dumps(dict(target.to_dict(), strict=target.strict))
    budget = minutes * 60.0
    start = time.time()
    deadline = start + budget
    procs = []
    for j in range(jobs):
        cfg = JobConfig(out=out, job=j, deadline=deadline, variant=variant,
                        ops=tuple(ops), threads=tuple(threads), isas=tuple(isas), seed=seed, db=db, target=target_json)
        procs.append(subprocess.Popen([sys.executable, "-m", "harness.campaign", *cfg.to_argv()],
                                      stdout=subprocess.DEVNULL, stderr=open(out / "jobs" / f"job-{j}.stderr", "wb")))
    interactive = stream.isatty()
    last_line = 0.0
    interrupted = False
    try:
        while any(p.poll() is None for p in procs):
            time.sleep(0.5)
            now = time.time()
            line = progress_line(merge(read_stats(out)), now - start, budget)
            if interactive:
                stream.write("\r\033[K" + line)
                stream.flush()
            elif now - last_line >= 10:
                print(line, file=stream, flush=True)
                last_line = now
            if now > deadline + 120:  # a job stuck past its deadline (e.g. a long shrink): stop it
                for p in procs:
                    p.terminate()
    except KeyboardInterrupt:
        interrupted = True
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
    elapsed = time.time() - start
    total = merge(read_stats(out))
    if interactive:
        stream.write("\n")
    print(progress_line(total, elapsed, budget), file=stream, flush=True)
    from .report import write_report

    paths = write_report(out, total, elapsed=elapsed, budget=budget, variant=target.label(), jobs=jobs,
                         interrupted=interrupted)
    print(f"report: {paths['md']}", file=stream)
    findings = read_findings(out)
    if findings:
        kinds = Counter(f["kind"] for f in findings)
        print("findings (not failures; --strict-invariance makes invariance findings fail): "
              + ", ".join(f"{k} x{n}" for k, n in sorted(kinds.items())) + f"; details: {out / 'findings'}",
              file=stream)
    for f in _distinct(total["failures"]):
        print(f"FAILURE {f['kind']} in {f['op']}: {f['message']}\n  case: {f['case']}", file=stream)
    if total["errors"]:
        for e in total["errors"]:
            print(f"iq1m-harness: {e}", file=stream)
        return 2
    return 1 if total["failures"] else 0


if __name__ == "__main__":
    sys.exit(job_main())
