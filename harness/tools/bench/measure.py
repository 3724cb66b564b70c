"""Timing and its statistics.

The callables of one shape are timed alternately (`rotation`): a, b, c, a, b, c, ... so that
a noisy neighbour or a clock change hits every figure that is compared alike. Each
measurement repeats the call until it lasts at least `min_time` seconds and records the
time per call; a figure is the median over the repetitions, with the spread
((max - min) / median). Ratios come from two medians of the same run (`ratio`), and as a
check from the repetitions side by side (`paired_ratio`).
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field

T0 = time.perf_counter()  # the origin of the recorded start times


@dataclass
class Measurement:
    times: list = field(default_factory=list)    # seconds per call, one per repetition
    cpu: list = field(default_factory=list)      # calling thread's CPU seconds per call
    starts: list = field(default_factory=list)   # perf_counter - T0 at the start of each repetition
    calls: list = field(default_factory=list)
    cores: list = field(default_factory=list)    # the process's CPU time / wall time

    def add(self, start: float, wall: float, cpu: float, calls: int, cores: float) -> None:
        self.starts.append(start)
        self.times.append(wall)
        self.cpu.append(cpu)
        self.calls.append(calls)
        self.cores.append(cores)


def time_call(call, min_time: float, max_calls: int = 1000) -> tuple[float, float, int, float]:
    """Wall seconds and calling-thread CPU seconds per call, the number of calls, and the
    cores the process got meanwhile: the call repeated until min_time has passed (at least
    once). With one thread all the work runs on the calling thread, so the CPU time leaves
    out the time the OS gave the core to someone else. The cores are the process's CPU time
    over the wall time (all threads): a 2-thread run that got 1.2 cores was measured on a
    machine that lent the other core to someone else."""
    n, t0, c0, p0 = 0, time.perf_counter(), time.thread_time(), time.process_time()
    while True:
        call()
        n += 1
        el = time.perf_counter() - t0
        if el >= min_time or n >= max_calls:
            return el / n, (time.thread_time() - c0) / n, n, (time.process_time() - p0) / el


def rotation(runs: dict, reps: int, min_time: float, pause: float = 0.0) -> dict:
    """Alternating repetitions over the named callables, in the dict's order, after one
    warm-up call each (caches, thread pools, lazily built tables): {name: Measurement}."""
    res = {name: Measurement() for name in runs}
    for call in runs.values():
        call()
    for _ in range(reps):
        for name, call in runs.items():
            time.sleep(pause)  # let the previous library's spinning threads go to sleep
            start = time.perf_counter() - T0
            res[name].add(start, *time_call(call, min_time))
    return res


def summary(m: Measurement, ops: float) -> dict:
    """A measurement as bench.json keeps it: the raw repetitions, the median time and
    GOP/s (ops per call / median seconds), the spread, and the CPU and cores medians."""
    med = statistics.median(m.times)
    gops = [ops / t * 1e-9 for t in m.times]
    return {"times_s": [round(t, 9) for t in m.times], "starts_s": [round(s, 6) for s in m.starts],
            "calls": m.calls, "median_s": med, "gops": round(ops / med * 1e-9, 2),
            "gops_min": round(min(gops), 2), "gops_max": round(max(gops), 2),
            "spread": round((max(m.times) - min(m.times)) / med, 4),
            "cpu_times_s": [round(t, 9) for t in m.cpu], "cpu_median_s": statistics.median(m.cpu),
            "cores": [round(c, 3) for c in m.cores], "cores_median": round(statistics.median(m.cores), 3)}


def ratio(fast: list[float], slow: list[float]) -> float | None:
    """How many times faster `fast` is than `slow`: median(slow) / median(fast), from the
    same run (None when a side has no time, e.g. a zero CPU time)."""
    a, b = statistics.median(fast), statistics.median(slow)
    return round(b / a, 3) if a > 0 else None


def paired_ratio(fast: list[float], slow: list[float]) -> float:
    """The median of the per-repetition ratios slow[i] / fast[i]: each pair was measured
    back to back in the rotation, so a slow stretch of the machine hits both."""
    return round(statistics.median(s / f for f, s in zip(fast, slow)), 3)
