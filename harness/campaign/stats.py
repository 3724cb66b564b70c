"""A job's counters, published as jobs/job-N.json about twice a second, and their merge.

New cases (generated and run for the first time), replays (saved failures run again at the
start) and shrink steps (cases run while minimising one failure) are counted apart; the
coverage counters (ops, token-count buckets, thread counts, SIMD levels) count new cases
only, so they show how far the search went. `timeline` holds the same counters per
SLOT_SECONDS of the campaign (slot 0 starts when the parent starts the jobs); the report
sums them per minute, so it shows that coverage kept growing after the first failure.
"""
from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

# error/bound ratio histogram edges: [0], (0, 1e-6], ... (0.1, 1], > 1 (a bound violation)
RATIO_EDGES = [0.0, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, float("inf")]
BOUND_BIN = RATIO_EDGES.index(1.0)  # the last bin within the bound
COUNTERS = ("ops", "token_buckets", "threads", "isas", "coverage", "sightings", "findings", "events")
MINUTE_FIELDS = ("cases", "replays", "shrink_steps", "failing_cases", "new_failures")
SLOT_SECONDS = 10


def ratio_bucket(r: float) -> int:
    for i, edge in enumerate(RATIO_EDGES):
        if r <= edge:
            return i
    return len(RATIO_EDGES) - 1


@dataclass
class JobStats:
    job: int
    host: str = ""
    pid: int = 0
    phase: str = "starting"       # starting, replay, explore, shrink <slug>, done
    cases: int = 0                # new cases run
    replays: int = 0              # saved failures run again at the start
    shrink_steps: int = 0         # cases run while minimising a failure
    cache_hits: int = 0           # a case Hypothesis drew again, answered from memory
    skipped: int = 0              # cases the target cannot run (e.g. a SIMD level this CPU lacks)
    failing_cases: int = 0        # new cases that failed (known or new signature)
    hangs: int = 0
    hang_seconds: float = 0.0     # time spent waiting for hung runs to time out
    started: float = field(default_factory=time.time)
    campaign: str = ""            # host:parent pid:start of the campaign the job belongs to
    campaign_start: float = 0.0   # its slot 0
    updated: float = 0.0
    ops: Counter = field(default_factory=Counter)
    token_buckets: Counter = field(default_factory=Counter)
    threads: Counter = field(default_factory=Counter)
    isas: Counter = field(default_factory=Counter)
    coverage: Counter = field(default_factory=Counter)     # "bucket|threads" -> cases
    sightings: Counter = field(default_factory=Counter)    # signature id -> cases that showed it
    findings: Counter = field(default_factory=Counter)     # a ggml target's non-failing observations, by kind
    events: Counter = field(default_factory=Counter)       # classes drawn (Case.info["events"]) -> new cases
    found: list[str] = field(default_factory=list)         # signature ids this job saw first
    shrinks: dict = field(default_factory=dict)            # signature id -> {status, steps, seconds}
    replayed: dict = field(default_factory=dict)           # signature id -> "reproduced" / "did not reproduce"
    timeline: dict = field(default_factory=dict)           # "slot" -> {counter: n, "token_buckets": {...}}
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
        for k in COUNTERS:
            d[k] = Counter(d.get(k, {}))
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})

    def slot(self, start: float) -> dict:
        """The timeline entry of the current SLOT_SECONDS of the campaign."""
        m = str(max(0, int((time.time() - start) // SLOT_SECONDS)))
        entry = self.timeline.get(m)
        if entry is None:
            entry = self.timeline[m] = {f: 0 for f in MINUTE_FIELDS} | {"token_buckets": {}}
        return entry


def read_stats(out: Path) -> list[JobStats]:
    stats = []
    for path in sorted((out / "jobs").glob("job-*.json")):
        try:
            stats.append(JobStats.from_json(path.read_bytes()))
        except (OSError, ValueError, TypeError):
            continue  # being replaced right now; the next poll reads it
    return stats


def align(stats: list[JobStats], start: float) -> list[JobStats]:
    """Jobs of campaigns started at other times (a fleet), their slots renumbered from `start`."""
    for s in stats:
        shift = int(round((s.campaign_start - start) / SLOT_SECONDS)) if s.campaign_start else 0
        if shift:
            s.timeline = {str(int(k) + shift): v for k, v in s.timeline.items()}
    return stats


def merge(stats: list[JobStats]) -> dict:
    total = {"cases": 0, "replays": 0, "shrink_steps": 0, "cache_hits": 0, "skipped": 0, "failing_cases": 0,
             "hangs": 0, "hang_seconds": 0.0, "ratio_hist": [0] * len(RATIO_EDGES), "max_ratio": 0.0,
             "found": {}, "shrinks": {}, "replayed": {}, "timeline": {}, "errors": [], "phases": {}}
    for k in COUNTERS:
        total[k] = Counter()
    for s in stats:
        for k in ("cases", "replays", "shrink_steps", "cache_hits", "skipped", "failing_cases", "hangs",
                  "hang_seconds"):
            total[k] += getattr(s, k)
        for k in COUNTERS:
            total[k].update(getattr(s, k))
        total["ratio_hist"] = [a + b for a, b in zip(total["ratio_hist"], s.ratio_hist)]
        total["max_ratio"] = max(total["max_ratio"], s.max_ratio)
        for sig in s.found:
            total["found"].setdefault(sig, s.job)
        total["shrinks"].update(s.shrinks)
        total["replayed"].update(s.replayed)
        for m, entry in s.timeline.items():
            t = total["timeline"].setdefault(m, {f: 0 for f in MINUTE_FIELDS} | {"token_buckets": {}})
            for f in MINUTE_FIELDS:
                t[f] += entry.get(f, 0)
            for b, n in entry.get("token_buckets", {}).items():
                t["token_buckets"][b] = t["token_buckets"].get(b, 0) + n
        total["phases"][s.job] = "done" if s.finished else s.phase
        if s.error:
            total["errors"].append(f"job {s.job}: {s.error}")
    return total
