"""The `iq1m-harness` command line.

    iq1m-harness build [--variant V]       build (or reuse) a kernel variant, print its path
    iq1m-harness info                      library version, build info, usable SIMD levels
    iq1m-harness fuzz --minutes N          time-boxed fuzz campaign with a report
    iq1m-harness report --db redis://H/N   the merged report of campaigns sharing a Redis store
    iq1m-harness repro CASE                replay a saved case (exit 1 while it fails)
    iq1m-harness promote CASE              copy a case into harness/suite/regressions/
    iq1m-harness case-from-gguf MODEL.gguf --tensor NAME   a case from a real IQ1_M tensor
    iq1m-harness mutate --sample N         mutation score of the default test suite
    iq1m-harness bench [--smoke]           our kernels vs a ggml build: GOP/s, ratios, roofline
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from .errors import UsageError
from .ops import OP_NAMES
from .target_args import add_target_arguments, target_from_args

VARIANT_HELP = "kernel build: release (default), asan, tsan, no-direct or fault:NAME (see kernels/FAULTS.md)"


def cmd_build(args) -> int:
    from .build import build

    print(build(args.variant, echo=not args.quiet, rebuild=args.rebuild))
    return 0


def cmd_info(args) -> int:
    from .runner import Runner

    target = target_from_args(args)
    with Runner(target) as runner:
        print("\n".join(target.info_lines(runner.hello)))
    return 0


def cmd_fuzz(args) -> int:
    from .campaign import CampaignConfig, run_campaign
    from .campaign import config as cc
    from .ops import parse_ops

    minutes = cc.check_minutes(args.minutes)
    jobs = cc.check_jobs(args.jobs)
    try:
        ops = parse_ops(args.ops)
    except ValueError as exc:
        raise UsageError(f"--ops {args.ops!r}: {exc}") from None
    target = target_from_args(args)
    threads = cc.check_threads(cc.parse_number_list(args.threads, "--threads"), target.max_threads, target.label())
    isas = cc.check_isas(tuple(i.strip() for i in args.isas.split(",") if i.strip()), target)
    db = cc.check_db(args.db)
    out = cc.check_writable_dir(args.out or Path("iq1m-campaigns") / time.strftime("%Y%m%d-%H%M%S"), "--out")
    grace = cc.check_grace(args.shrink_grace, minutes * 60.0)
    if db.startswith("redis://"):
        from .campaign.fleet import check_redis

        check_redis(db)
    cfg = CampaignConfig(out=out.resolve(), minutes=minutes, jobs=jobs, target=dict(target.to_dict(), strict=target.strict),
                         variant=args.variant, ops=ops, threads=threads, isas=isas, seed=args.seed, db=db, grace=grace)
    print(f"campaign: {minutes:g} min (+ up to {grace:.0f} s to finish minimising), {jobs} job(s), "
          f"{target.label()}, output {out}", file=sys.stderr, flush=True)
    return run_campaign(cfg, target)


def cmd_report(args) -> int:
    from .campaign import config as cc
    from .campaign.fleet import check_redis
    from .campaign.report import console_lines, merged_report

    if not args.db.startswith("redis://"):
        raise UsageError(f"--db {args.db}: the merged report reads a shared store, redis://HOST[:PORT][/DB]/CAMPAIGN "
                         f"(a single campaign's report is in its --out directory)")
    check_redis(args.db)
    out = cc.check_writable_dir(args.out or Path("iq1m-campaigns") / f"fleet-{time.strftime('%Y%m%d-%H%M%S')}",
                                "--out")
    report = merged_report(args.db, out)
    for line in console_lines(report, out):
        print(line)
    return 0


def cmd_repro(args) -> int:
    from .repro import run_from_args

    return run_from_args(args)


def cmd_mutate(args) -> int:
    from .mutate import run_from_args

    return run_from_args(args)


def cmd_bench(args) -> int:
    from .tools.bench.run import run_from_args

    return run_from_args(args)


def cmd_case_from_gguf(args) -> int:
    from .cases import save_case
    from .gguf_cases import case_from_gguf

    from .campaign.config import parse_number_list

    threads = list(parse_number_list(args.threads, "--threads"))
    case = case_from_gguf(args.model, args.tensor, expert=args.expert, experts=args.experts, rows=args.rows,
                          tokens=args.tokens, routing=args.routing, top_k=args.top_k, op=args.op,
                          gate_tensor=args.gate_tensor, act=args.act, seed=args.seed, threads=threads)
    out = args.out or Path(f"{args.tensor.replace('/', '_')}-{case.op}-{case.digest()[:10]}.npz")
    save_case(case, out)
    print(f"{out}: {case.describe()}")
    return 0


def cmd_promote(args) -> int:
    from .repro import promote

    print(promote(args.case))
    return 0


class _Parser(argparse.ArgumentParser):
    """A usage mistake is one line on stderr and exit 2, like every other input mistake."""

    def error(self, message):
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="iq1m-harness",
        description="Differential testing of IQ1_M GEMM and fused MoE kernels: builds the kernel library, "
                    "runs random cases in an isolated worker, and compares every output with a numpy reference "
                    "bit for bit across thread counts, SIMD levels and per-expert token counts.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("build", help="build (or reuse from cache) a kernel variant and print the library path")
    p.add_argument("--variant", default="release", help=VARIANT_HELP)
    p.add_argument("--rebuild", action="store_true", help="ignore the cache")
    p.add_argument("--quiet", action="store_true", help="keep the compiler output in the log only")
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("info", help="show the library version, build options and usable SIMD levels")
    p.add_argument("--variant", default="release", help=VARIANT_HELP)
    add_target_arguments(p)
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("fuzz", help="run a time-boxed fuzz campaign and write a report",
                       description="Generate random cases on N processes until the time budget is spent. "
                                   "Every distinct failure is saved, minimised, with a repro script; the report "
                                   "(JSON, Markdown, PNG) lands in the output directory. Exit 1 if anything failed.")
    p.add_argument("--minutes", type=float, default=1.0, help="time budget (default 1)")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="parallel processes (default: cores)")
    p.add_argument("--variant", default="release", help=VARIANT_HELP)
    p.add_argument("--threads", default="1,2,3,4,7,16",
                   help="thread counts to cover, comma-separated (default 1,2,3,4,7,16; at most the target's limit)")
    p.add_argument("--isas", default="", help="SIMD levels to cover, comma-separated (default: all usable)")
    p.add_argument("--ops", default=",".join(OP_NAMES), help=f"operations to cover (default: {','.join(OP_NAMES)})")
    p.add_argument("--seed", type=int, help="seed for a reproducible campaign")
    p.add_argument("--out", type=Path, help="output directory (default iq1m-campaigns/<timestamp>)")
    p.add_argument("--db", default="",
                   help="example database and failure store: a directory (default OUT/examples) or "
                        "redis://HOST[:PORT][/CAMPAIGN] (campaigns on several machines with the same URL share "
                        "their failures)")
    p.add_argument("--shrink-grace", type=float, metavar="SECONDS",
                   help="how long minimising a failure may go on past the deadline (default: a quarter of the "
                        "budget, 15 s to 5 min)")
    add_target_arguments(p)
    p.set_defaults(func=cmd_fuzz)

    p = sub.add_parser("report", help="the merged report of the campaigns sharing a Redis store",
                       description="Campaigns on several machines started with the same --db redis://HOST/NAME "
                                   "share their failures; this writes report.{json,md,png} for all of them (every "
                                   "failure once, with the host, job and time that saw it first) and copies every "
                                   "failure's case and repro script into OUT/failures.")
    p.add_argument("--db", required=True, help="redis://HOST[:PORT][/DB]/CAMPAIGN, as given to fuzz")
    p.add_argument("--out", type=Path, help="output directory (default iq1m-campaigns/fleet-<timestamp>)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("repro", help="replay a saved case file; exit 0 if it passes, 1 if it still fails")
    from .repro import add_arguments as add_repro_arguments

    add_repro_arguments(p)
    p.set_defaults(func=cmd_repro)

    p = sub.add_parser("mutate", help="mutation testing: how many injected kernel bugs the default suite kills",
                       description="Generate mutants of kernels/src (operator swaps, off-by-one constants, shifts "
                                   "and masks, swapped arguments, dropped statements), build each incrementally, "
                                   "run the default pytest profile fail-fast against it, and report the score and "
                                   "every survivor. Exit 1 when the score is below --min-score.")
    from .mutate import add_arguments as add_mutate_arguments

    add_mutate_arguments(p)
    p.set_defaults(func=cmd_mutate)

    p = sub.add_parser("bench", help="time our kernels and a ggml build side by side (GOP/s, ratio, roofline)",
                       description="mul_mat K=M=4096 and a Kimi-K2-like MoE layer (fused up+gate vs ggml's fused "
                                   "ggml_moe_up_gate where the build has it, else two mul_mat_id + activation) at 1 "
                                   "and 2 threads, alternating runs of both libraries in this process (each ggml "
                                   "shape probed once in a child first: a shape it aborts on is reported, not "
                                   "timed); medians, spreads, ratios, the int8 peak and bandwidth; "
                                   "bench.{json,md,png} in --out.")
    from .tools.bench.run import add_arguments as add_bench_arguments

    add_bench_arguments(p)
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("case-from-gguf", help="build a case file from a real IQ1_M tensor of a GGUF model",
                       description="Read one IQ1_M tensor of MODEL.gguf (a 2-D [K, rows] matrix or an expert tensor "
                                   "[K, rows, n_expert], e.g. blk.N.ffn_up_exps.weight), take the selected experts "
                                   "and rows, add random activations and routing from --seed, and save a case file "
                                   "for 'repro' (on either target) and 'promote'.")
    p.add_argument("model", type=Path, metavar="MODEL.gguf")
    p.add_argument("--tensor", required=True, help="tensor name, e.g. blk.3.ffn_up_exps.weight")
    p.add_argument("--expert", type=int, help="one expert of an expert tensor (default op then: mul_mat)")
    p.add_argument("--experts", metavar="E0:E1", help="a range of experts of an expert tensor (default: all)")
    p.add_argument("--rows", metavar="R0:R1", help="a range of weight rows (default: all)")
    p.add_argument("--tokens", type=int, help="activation rows (tokens), random routing (default 8)")
    p.add_argument("--routing", metavar="N0,N1,...",
                   help="tokens per selected expert instead of random routing, e.g. 1,31,32,33")
    p.add_argument("--top-k", type=int, help="experts per token, 1..experts taken (default 2)")
    p.add_argument("--op", choices=OP_NAMES,
                   help="operation (default: mul_mat_id for an expert tensor, else mul_mat)")
    p.add_argument("--gate-tensor", help="moe_up_gate: the gate tensor (default: the name with ffn_up -> ffn_gate)")
    p.add_argument("--act", choices=["silu", "gelu"], help="moe_up_gate activation (default silu)")
    p.add_argument("--seed", type=int, default=0, help="seed of the activations and routing (default 0)")
    p.add_argument("--threads", default="1,2,4", help="thread counts of the runs (default 1,2,4)")
    p.add_argument("--out", type=Path, help="case file to write (default: TENSOR-OP-DIGEST.npz here)")
    p.set_defaults(func=cmd_case_from_gguf)

    p = sub.add_parser("promote", help="copy a case into harness/suite/regressions/ so pytest replays it on every run")
    p.add_argument("case", type=Path)
    p.set_defaults(func=cmd_promote)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UsageError as exc:
        print(f"iq1m-harness: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("iq1m-harness: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
