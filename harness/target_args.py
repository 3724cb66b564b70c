"""The command-line options that choose a target, shared by every command that runs one."""
from __future__ import annotations

import argparse


def add_target_arguments(p: argparse.ArgumentParser, *, replay: bool = False) -> None:
    """--target and the ggml target's options (see harness/targets/)."""
    from .targets import TARGET_NAMES

    g = p.add_argument_group("target")
    g.add_argument("--target", choices=TARGET_NAMES, default=None,
                   help="what to test: the project's kernels (default) or a ggml build"
                        + (" (default: the case's own)" if replay else ""))
    g.add_argument("--ggml-lib-dir", metavar="DIR",
                   help="directory with your ggml build's libggml*.so (mainline or ik_llama.cpp); default: the "
                        "libraries of the installed llama-cpp-python (pip install -e '.[ggml]')")
    g.add_argument("--ggml-env", metavar="NAME=VALUE", action="append", default=None,
                   help="environment of the ggml worker, repeatable (e.g. GGML_CPU_TILED_MM=0)")
    g.add_argument("--strict", "--strict-invariance", dest="strict", action="store_true",
                   help="on ggml, count findings as failures: outputs beyond the exact-product error bound, "
                        "thread-count and batch-composition divergence (by default they are reported as findings)")


def target_from_args(args, recorded: dict | None = None, variant: str | None = None):
    """The Target the options name; for a replay, the case's own target (`recorded`) for
    whatever the options leave open."""
    from .targets import from_choice, parse_env

    env = parse_env(args.ggml_env) if args.ggml_env is not None else None
    return from_choice(args.target, variant=variant or getattr(args, "variant", None) or "release",
                       lib_dir=args.ggml_lib_dir, env=env, strict=args.strict, recorded=recorded)
