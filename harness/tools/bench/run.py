"""The `bench` command: every shape timed on both libraries in this process, alternately.

Per shape: the ggml build's prepared graph is probed once per thread count in a child
(a thread count whose probe died is reported as such and not timed); then our IQ1_M call,
our prepacked call and ggml's graph, for every thread count, are measured in one rotation
(ours 1 thread, prepacked 1 thread, ggml 1 thread, ours 2 threads, ..., then again), so
ratios and the 2-thread scaling compare time-adjacent repetitions. The prepacked output is
checked bit for bit against the IQ1_M call's (a lossless encoding), and ggml's against
ours loosely (ggml rounds differently).

Outputs in --out: bench.json (everything, raw repetitions included), bench.md, bench.png.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from ...errors import UsageError
from . import measure, report, roofline, workloads
from .contenders import GgmlPeer, Ours

WORK_CHOICES = ("auto", "reset", "reinit", "ab")


def _open_peer(ggml_lib_dir: str | None, ggml_work: str) -> tuple[GgmlPeer, str | None]:
    """The ggml build, and the second work method to time against the first ("ab")."""
    peer = GgmlPeer(ggml_lib_dir, "auto" if ggml_work == "ab" else ggml_work)
    if ggml_work != "ab":
        return peer, None
    others = [m for m in peer.work_methods if m != peer.work]
    if not others:
        peer.close()
        raise UsageError(f"--ggml-work ab: this build can empty a work context only by {peer.work}")
    return peer, others[0]


def _record(s: dict, nth: int, threads, meas: dict, runs: dict, failure: str | None, alt: str | None,
            peer: GgmlPeer | None) -> dict:
    ops = workloads.shape_ops(s)
    ours, pp = meas[("ours", nth)], meas[("ours_pp", nth)]
    rec = dict(s, threads=nth, ops=ops, ours=measure.summary(ours, ops), ours_pp=measure.summary(pp, ops))
    our_out = runs[("ours", nth)].fetch()
    # the prepacked weights must give the same bits (numerics contract)
    rec["pp_bit_exact"] = bool(np.array_equal(our_out.view(np.uint32), runs[("ours_pp", nth)].fetch().view(np.uint32)))
    rec["ggml_failure"] = failure
    g = meas.get(("ggml", nth))
    if g is None:
        rec.update(ggml=None, ratio=None, ratio_pp=None, ratio_paired=None, ratio_cpu=None, max_rel_diff_vs_ggml=None)
    else:
        rec["ggml"] = measure.summary(g, ops)
        rec["ratio"] = measure.ratio(ours.times, g.times)
        rec["ratio_pp"] = measure.ratio(pp.times, g.times)
        rec["ratio_paired"] = measure.paired_ratio(ours.times, g.times)
        # one thread: the same ratio from the calling thread's CPU time (robust to a busy
        # machine descheduling us); with more threads the CPU time is not a speed
        rec["ratio_cpu"] = measure.ratio(ours.cpu, g.cpu) if nth == 1 else None
        scale = float(np.max(np.abs(our_out))) or 1.0
        rec["max_rel_diff_vs_ggml"] = float(np.max(np.abs(runs[("ggml", nth)].fetch() - our_out)) / scale)
    if g is not None and ("ggml_alt", nth) in meas:
        b = meas[("ggml_alt", nth)]
        rec["ggml_alt"] = measure.summary(b, ops)
        rec["work_ab"] = {"methods": [peer.work, alt], "ratio": measure.ratio(g.times, b.times),
                          "paired": measure.paired_ratio(g.times, b.times),
                          "cpu_ratio": measure.ratio(g.cpu, b.cpu) if nth == 1 else None}
    rec["gops_cpu_ours"] = (round(ops / rec["ours"]["cpu_median_s"] * 1e-9, 2)
                            if nth == 1 and rec["ours"]["cpu_median_s"] > 0 else None)
    if nth != 1 and 1 in threads:
        for mode in ("ours", "ours_pp"):  # this thread count against one, same rotation
            one, this = meas[(mode, 1)].times, meas[(mode, nth)].times
            rec[f"scaling_{mode}"] = measure.ratio(this, one)
            rec[f"scaling_{mode}_paired"] = measure.paired_ratio(this, one)
    return rec


def _prepare(s: dict, arrays: dict, threads, ours: Ours, peer: GgmlPeer | None, failures: dict,
             alt: str | None) -> dict:
    """The shape's prepared calls in rotation order."""
    runs = {}
    try:
        for nth in threads:
            runs[("ours", nth)] = ours.prepared(s["op"], arrays, nth)
            runs[("ours_pp", nth)] = ours.prepared(s["op"], arrays, nth, prepacked=True)
            if peer is not None and nth not in failures:
                runs[("ggml", nth)] = peer.prepared(s["op"], arrays, nth)
                if alt:
                    runs[("ggml_alt", nth)] = peer.prepared(s["op"], arrays, nth, work=alt)
    except BaseException:
        for p in runs.values():
            p.close()
        raise
    return runs


def run_bench(out: Path, *, smoke: bool = False, threads=(1, 2), reps: int | None = None,
              min_time: float | None = None, variant: str = "release", ggml: bool = True,
              ggml_lib_dir: str | None = None, ggml_work: str = "auto", tokens=None, seed: int = 0,
              echo=print) -> dict:
    reps = reps or (2 if smoke else 7)
    min_time = min_time if min_time is not None else (0.02 if smoke else 0.06)
    pause = 0.002 if smoke else 0.01
    threads = list(threads)
    shapes = workloads.shapes(smoke, tokens)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    ours = Ours(variant)
    info: dict = {"ours": ours.info()}
    peer, alt = None, None
    if ggml:
        try:
            peer, alt = _open_peer(ggml_lib_dir, ggml_work)
            info["ggml"] = peer.info()
        except Exception as exc:
            if ggml_lib_dir or ggml_work == "ab":  # asked for by name: not silently left out
                if isinstance(exc, UsageError):
                    raise
                raise UsageError(f"--ggml-lib-dir {ggml_lib_dir}: {type(exc).__name__}: {exc}") from exc
            info["ggml"] = {"unavailable": f"{type(exc).__name__}: {exc}"}  # no llama-cpp-python: ours alone
    else:
        info["ggml"] = {"unavailable": "--no-ggml"}
    echo(f"bench: ours {ours.lib.best_isa()} ({ours.lib.path}); ggml "
         + (f"{info['ggml']['identity']}, work context by {peer.work}"
            + (f" (A/B against {alt})" if alt else "") if peer else f"unavailable ({info['ggml']['unavailable']})"))

    peak, peak_lib = None, None
    try:
        peak_lib = roofline.Peak(roofline.build_peak_library(variant))
        peak = peak_lib.measure(threads, 0.1 if smoke else 0.4)
        echo(f"peak: int8 {peak['int8_gops']} GOP/s, read {peak['read_gbs']} GB/s (by thread count)")
    except Exception as exc:
        echo(f"peak: unavailable ({type(exc).__name__}: {exc})")

    data = workloads.Data(seed)
    records = []
    try:
        for s in shapes:
            arrays = data.arrays(s)
            s = dict(s, bytes=workloads.shape_bytes(s, arrays.get("ids")))
            if peak_lib:
                peak_lib.resample(peak, 0.02 if smoke else 0.1)
            failures = peer.probe(s["op"], arrays, threads) if peer else {}
            runs = _prepare(s, arrays, threads, ours, peer, failures, alt)
            try:
                meas = measure.rotation(runs, reps, min_time, pause)
                for nth in threads:
                    records.append(_record(s, nth, threads, meas, runs, failures.get(nth), alt, peer))
                    echo(report.line(records[-1]))
            finally:
                for p in runs.values():
                    p.close()
    finally:
        if peer:
            peer.close()
    if peak:  # fractions against the run's median peak, known only now
        roofline.fractions(records, peak)
    summary = {"info": info, "smoke": smoke, "threads": threads, "reps": reps, "min_time_s": min_time,
               "seed": seed, "peak": peak, "records": records, "targets": report.targets(records, peak),
               "elapsed_s": round(time.time() - t_start, 1)}
    report.write(out, summary)
    echo(f"bench: {summary['elapsed_s']} s; wrote {out}/bench.json, bench.md, bench.png")
    return summary


def _ints(text: str) -> list[int]:
    try:
        values = [int(t) for t in str(text).split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected integers >= 1, got {text!r}")
    return values


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--smoke", action="store_true", help="a tiny subset (seconds; for CI, no thresholds)")
    p.add_argument("--out", type=Path, help="output directory (default iq1m-bench/<timestamp>)")
    p.add_argument("--threads", type=_ints, default=[1, 2], help="thread counts, comma-separated (default 1,2)")
    p.add_argument("--tokens", type=_ints, metavar="N,N,...",
                   help="token counts of both ops instead of the default (or --smoke) lists")
    p.add_argument("--reps", type=int, help="alternating repetitions per shape (default 7; smoke 2)")
    p.add_argument("--min-time", type=float, help="seconds of calls per measurement (default 0.06; smoke 0.02)")
    p.add_argument("--variant", default="release", help="kernel build (default release)")
    p.add_argument("--no-ggml", action="store_true", help="time the project's kernels only")
    p.add_argument("--ggml-lib-dir", metavar="DIR",
                   help="ggml build to compare with, mainline or older single-library API such as ik_llama.cpp "
                        "(default: llama-cpp-python's)")
    p.add_argument("--ggml-work", choices=WORK_CHOICES, default="auto",
                   help="how ggml's work context is emptied before each call: reset (ggml_reset), reinit "
                        "(ggml_free + ggml_init on the same buffer), auto (reset where the build has it), or "
                        "ab (auto, and the other method timed beside it in the same rotation)")
    p.add_argument("--seed", type=int, default=0, help="seed of the weights, activations and routing")


def run_from_args(args) -> int:
    out = args.out or Path("iq1m-bench") / time.strftime("%Y%m%d-%H%M%S")
    run_bench(out, smoke=args.smoke, threads=args.threads, reps=args.reps, min_time=args.min_time,
              variant=args.variant, ggml=not args.no_ggml, ggml_lib_dir=args.ggml_lib_dir, ggml_work=args.ggml_work,
              tokens=args.tokens, seed=args.seed, echo=lambda m: print(m, flush=True))
    return 0

