"""The `iq1m-harness` command line.

    iq1m-harness build [--variant V]       build (or reuse) a kernel variant, print its path
    iq1m-harness info                      library version, build info, usable SIMD levels
    iq1m-harness fuzz --minutes N          time-boxed fuzz campaign with a report
    iq1m-harness repro CASE                replay a saved case (exit 1 while it fails)
    iq1m-harness promote CASE              copy a case into tests/regressions/
    iq1m-harness case-from-gguf MODEL.gguf --tensor NAME   a case from a real IQ1_M tensor
    iq1m-harness mutate --sample N         mutation score of the default test suite
    iq1m-harness bench [--smoke]           our kernels vs mainline ggml: GOP/s, ratios, roofline
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from .errors import UsageError

VARIANT_HELP = "kernel build: release (default), asan, tsan, no-direct or fault:NAME (see kernels/FAULTS.md)"


def add_target_arguments(p: argparse.ArgumentParser, *, replay: bool = False) -> None:
    """--target and the ggml target's options (see harness/targets.py)."""
    g = p.add_argument_group("target")
    g.add_argument("--target", choices=["kernels", "ggml"], default=None if replay else "kernels",
                   help="what to test: the project's kernels (default) or a ggml build"
                        + (" (default: the case's own)" if replay else ""))
    g.add_argument("--ggml-lib-dir", metavar="DIR",
                   help="directory with your ggml build's libggml*.so (mainline or ik_llama.cpp); default: the "
                        "libraries of the installed llama-cpp-python (pip install -e '.[ggml]')")
    g.add_argument("--ggml-env", metavar="NAME=VALUE", action="append", default=None,
                   help="environment of the ggml worker, repeatable (e.g. GGML_CPU_TILED_MM=0)")
    g.add_argument("--strict-invariance", action="store_true",
                   help="on ggml, count thread-count and batch-composition divergence as failures "
                        "(by default they are reported as findings)")


def target_from_args(args, case_target: dict | None = None):
    """The Target the options name; for a replay, the case's own target unless overridden."""
    from .targets import Target, parse_env

    base = Target.from_dict(case_target or {})
    name = args.target or base.name
    if name != "ggml":
        if args.ggml_lib_dir or args.ggml_env:
            raise UsageError("--ggml-lib-dir and --ggml-env need --target ggml")
        return Target("kernels", strict=True)
    lib_dir = args.ggml_lib_dir if args.ggml_lib_dir is not None else (base.lib_dir if base.is_ggml else "")
    env = parse_env(args.ggml_env) if args.ggml_env is not None else (base.env if base.is_ggml else {})
    return Target("ggml", lib_dir=str(lib_dir or ""), env=env, strict=args.strict_invariance)


def _csv(kind):
    def parse(text: str):
        try:
            return [kind(v) for v in text.split(",") if v]
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list: {exc}")
    return parse


def cmd_build(args) -> int:
    from .build import build

    print(build(args.variant, echo=not args.quiet, rebuild=args.rebuild))
    return 0


def cmd_info(args) -> int:
    from .runner import Runner

    target = target_from_args(args)
    with Runner(args.variant, target=target) as runner:
        h = runner.hello
        if target.is_ggml:
            g = h["ggml"]
            env = " ".join(f"{k}={v}" for k, v in sorted(g["env"].items())) or "(none)"
            print(f"target:    ggml\nlibraries: {', '.join(g['libraries'])}\nversion:   {h['version']}\n"
                  f"API:       {g['api']} (type ids by name: IQ1_M={g['iq1_m_type']}, Q8_K={g['q8_K_type']})\n"
                  f"Q8_K:      {g['quantizer']}\nfused:     ggml_moe_up_gate "
                  f"{'present' if g['fused_moe_up_gate'] else 'absent (moe_up_gate = 2 x mul_mat_id + act)'}\n"
                  f"env:       {env}")
            return 0
        print(f"library:   {runner.library}\nversion:   {h['version']}\nbuild:     {h['build_info']}\n"
              f"SIMD:      {', '.join(h['isas'])} (auto picks {h['best_isa']})")
    return 0


def cmd_fuzz(args) -> int:
    from .campaign import OPS, run_campaign

    bad = [op for op in args.ops if op not in OPS]
    if bad:
        raise UsageError(f"unknown operation(s) {bad}; choose from {', '.join(OPS)}")
    if args.minutes <= 0 or args.jobs < 1:
        raise UsageError("--minutes must be > 0 and --jobs >= 1")
    if any(t < 1 for t in args.threads):
        raise UsageError("--threads values must be >= 1")
    out = args.out or Path("iq1m-campaigns") / time.strftime("%Y%m%d-%H%M%S")
    print(f"campaign: {args.minutes:g} min, {args.jobs} job(s), variant {args.variant}, output {out}",
          file=sys.stderr, flush=True)
    target = target_from_args(args)
    return run_campaign(out, args.minutes, args.jobs, args.variant, args.ops, args.threads, args.isas,
                        args.seed, args.db, target=target)


def cmd_repro(args) -> int:
    from .repro import main

    argv = [str(args.case)] + (["--variant", args.variant] if args.variant else [])
    argv += ["--timeout", str(args.timeout)] if args.timeout else []
    argv += ["--target", args.target] if args.target else []
    argv += ["--ggml-lib-dir", args.ggml_lib_dir] if args.ggml_lib_dir is not None else []
    for item in args.ggml_env or []:
        argv += ["--ggml-env", item]
    argv += ["--strict-invariance"] if args.strict_invariance else []
    return main(argv)


def cmd_mutate(args) -> int:
    from .mutate import run_from_args

    return run_from_args(args)


def cmd_bench(args) -> int:
    from .bench import run_from_args

    return run_from_args(args)


def cmd_case_from_gguf(args) -> int:
    from .cases import save_case
    from .gguf_cases import case_from_gguf

    case = case_from_gguf(args.model, args.tensor, expert=args.expert, experts=args.experts, rows=args.rows,
                          tokens=args.tokens, routing=args.routing, top_k=args.top_k, op=args.op,
                          gate_tensor=args.gate_tensor, act=args.act, seed=args.seed, threads=args.threads)
    out = args.out or Path(f"{args.tensor.replace('/', '_')}-{case.op}-{case.digest()[:10]}.npz")
    save_case(case, out)
    print(f"{out}: {case.describe()}")
    return 0


def cmd_promote(args) -> int:
    from .repro import promote

    print(promote(args.case))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
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
    p.add_argument("--threads", type=_csv(int), default=[1, 2, 3, 4, 7, 16],
                   help="thread counts to cover, comma-separated (default 1,2,3,4,7,16)")
    p.add_argument("--isas", type=_csv(str), default=[], help="SIMD levels to cover (default: all usable)")
    p.add_argument("--ops", type=_csv(str), default=["mul_mat", "mul_mat_id", "moe_up_gate"],
                   help="operations to cover (default: mul_mat,mul_mat_id,moe_up_gate)")
    p.add_argument("--seed", type=int, help="seed for a reproducible campaign")
    p.add_argument("--out", type=Path, help="output directory (default iq1m-campaigns/<timestamp>)")
    p.add_argument("--db", default="", help="example database: a directory (default OUT/examples) or redis://HOST:PORT")
    add_target_arguments(p)
    p.set_defaults(func=cmd_fuzz)

    p = sub.add_parser("repro", help="replay a saved case file; exit 0 if it passes, 1 if it still fails")
    p.add_argument("case", type=Path)
    p.add_argument("--variant", help="build to replay on (default: the case's own)")
    p.add_argument("--timeout", type=float, help="seconds before the kernel counts as hung")
    add_target_arguments(p, replay=True)
    p.set_defaults(func=cmd_repro)

    p = sub.add_parser("mutate", help="mutation testing: how many injected kernel bugs the default suite kills",
                       description="Generate mutants of kernels/src (operator swaps, off-by-one constants, shifts "
                                   "and masks, swapped arguments, dropped statements), build each incrementally, "
                                   "run the default pytest profile fail-fast against it, and report the score and "
                                   "every survivor. Exit 1 when the score is below --min-score.")
    from .mutate import add_arguments as add_mutate_arguments

    add_mutate_arguments(p)
    p.set_defaults(func=cmd_mutate)

    p = sub.add_parser("bench", help="time our kernels and mainline ggml side by side (GOP/s, ratio, roofline)",
                       description="mul_mat K=M=4096 and a Kimi-K2-like MoE layer (fused up+gate vs ggml's two "
                                   "mul_mat_id + activation) at 1 and 2 threads, alternating runs of both libraries "
                                   "in this process; medians, spreads, ratios, the int8 peak and bandwidth; "
                                   "bench.{json,md,png} in --out.")
    from .bench import add_arguments as add_bench_arguments

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
    p.add_argument("--tokens", type=int, default=8, help="activation rows (tokens), random routing (default 8)")
    p.add_argument("--routing", metavar="N0,N1,...",
                   help="tokens per selected expert instead of random routing, e.g. 1,31,32,33")
    p.add_argument("--top-k", type=int, default=2, help="experts per token (default 2)")
    p.add_argument("--op", choices=["mul_mat", "mul_mat_id", "moe_up_gate"],
                   help="operation (default: mul_mat_id for an expert tensor, else mul_mat)")
    p.add_argument("--gate-tensor", help="moe_up_gate: the gate tensor (default: the name with ffn_up -> ffn_gate)")
    p.add_argument("--act", choices=["silu", "gelu"], default="silu", help="moe_up_gate activation (default silu)")
    p.add_argument("--seed", type=int, default=0, help="seed of the activations and routing (default 0)")
    p.add_argument("--threads", type=_csv(int), default=[1, 2, 4], help="thread counts of the runs (default 1,2,4)")
    p.add_argument("--out", type=Path, help="case file to write (default: TENSOR-OP-DIGEST.npz here)")
    p.set_defaults(func=cmd_case_from_gguf)

    p = sub.add_parser("promote", help="copy a case into tests/regressions/ so pytest replays it on every run")
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
