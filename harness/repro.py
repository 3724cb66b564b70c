"""Replaying saved cases, and writing the standalone reproduction script beside each one.

`replay(path, variant)` builds the variant, runs the case in a fresh isolated worker and
returns the failure (or None when it passes). Exit codes used by `repro`: 0 passes,
1 still fails, 2 the case or the build cannot be used.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

from .cases import load_case
from .errors import HarnessFailure, UsageError
from .paths import REGRESSIONS_DIR, checkout_root
from .target_args import add_target_arguments, target_from_args

SCRIPT_TEMPLATE = '''#!/usr/bin/env python3
"""Reproduces a saved iq1m-harness failure.

  failure: {kind}: {message}
  case:    {describe}
  file:    {case_name} (beside this script)

Needs only iq1m-harness installed. It replays the case on what it was found on ({where})
in an isolated worker, prints the first differences (or the signal and stderr of a
crash), and exits 1 while the failure reproduces, 0 once it is fixed, 2 if the case or the
library cannot be used. Pass --target kernels (or --variant V, --target ggml
--ggml-lib-dir DIR) to replay it on something else.
"""
import sys
from pathlib import Path

from harness.repro import main

if __name__ == "__main__":
    case = Path(__file__).resolve().with_name({case_name!r})
    sys.exit(main([str(case), "--trust-case-target"] + sys.argv[1:]))
'''


def write_script(case_path: Path, failure: HarnessFailure, describe: str, where: str, case_id: str) -> Path:
    """The standalone reproduction script beside a saved case (`where`: the target's label)."""
    script = Path(case_path).with_name(f"repro_{case_id}.py")
    text = SCRIPT_TEMPLATE.format(kind=failure.kind, message=failure.message.replace('"', "'"),
                                  describe=describe, case_name=Path(case_path).name, where=where)
    tmp = script.with_name(f".{script.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.chmod(0o755)
    os.replace(tmp, script)
    return script


def replay(path: Path, target=None, *, timeout: float | None = None) -> HarnessFailure | None:
    """Run a saved case in a fresh worker on `target` (a harness.targets.Target; default:
    the one the case records, loaded without asking): the failure, or None when it passes."""
    from .runner import Runner
    from .targets import from_dict

    case = load_case(path)
    target = target or from_dict(case.target, variant=case.variant)
    with tempfile.TemporaryDirectory(prefix="iq1m-repro-") as work, \
            Runner(target, Path(work), timeout=timeout) as runner:
        try:
            runner.check(case)
        except HarnessFailure as failure:
            return failure
    return None


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("case", type=Path, help="a .npz case file")
    p.add_argument("--variant", help="build variant to replay on (default: the one recorded in the case)")
    p.add_argument("--timeout", type=float, help="seconds before the kernel counts as hung")
    add_target_arguments(p, replay=True)
    p.add_argument("--trust-case-target", action="store_true",
                   help="load the library the case file names (a ggml folder, a prebuilt:PATH variant) without "
                        "naming it again on the command line")


def run_from_args(args) -> int:
    from .targets import library_named_by

    try:
        if args.timeout is not None and not args.timeout > 0:
            raise UsageError(f"--timeout {args.timeout}: must be a positive number of seconds")
        case = load_case(args.case)
        variant = args.variant or case.variant
        named = None if args.target or args.ggml_lib_dir is not None or args.variant else \
            library_named_by(case.target, variant)
        if named and not args.trust_case_target:
            raise UsageError(f"{args.case} names code to load ({named}); a case file is data: pass it on the "
                             f"command line (--ggml-lib-dir / --variant) or add --trust-case-target")
        target = target_from_args(args, case.target, variant)
        print(f"replaying {args.case} on {target.label()}"
              + (f" (loading {named}, as the case records)" if named else "") + f": {case.describe()}", flush=True)
        failure = replay(args.case, target, timeout=args.timeout)
    except UsageError as exc:
        print(f"iq1m-harness: {exc}", file=sys.stderr)
        return 2
    if failure is None:
        print("PASS: the case no longer fails")
        return 0
    failure.case_path = args.case
    print(f"FAIL: {failure._render()}")
    for other in failure.also:
        print(f"also: [{other.kind}] {other.message}")
    return 1


def main(argv: list[str] | None = None) -> int:
    """`iq1m-harness repro` as a function (the reproduction scripts call it)."""
    parser = argparse.ArgumentParser(prog="iq1m-harness repro", description="Replay a saved case file.")
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv))


def promote(path: Path, dest_dir: Path | None = None) -> Path:
    """Copy a case into harness/suite/regressions/ of the checkout (validated first), where
    the packaged suite replays it."""
    if dest_dir is None:
        if checkout_root() is None:
            raise UsageError("promote copies a case into a checkout's harness/suite/regressions/; this harness is "
                             "installed: keep the case in a folder of your project and replay it with "
                             "pytest --pyargs harness.suite --iq1m-regressions-dir=FOLDER")
        dest_dir = REGRESSIONS_DIR
    case = load_case(path)
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / f"{case.op}-{case.digest()[:16]}.npz"
    shutil.copyfile(path, dest)
    return dest
