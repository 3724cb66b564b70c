"""Replaying saved cases, and writing the standalone reproduction script beside each one.

`replay(path, variant)` builds the variant, runs the case in a fresh isolated worker and
returns the failure (or None when it passes). Exit codes used by `repro`: 0 passes,
1 still fails, 2 the case or the build cannot be used.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from .build import PROJECT_ROOT
from .cases import load_case
from .errors import HarnessFailure, UsageError

REGRESSIONS_DIR = PROJECT_ROOT / "tests" / "regressions"

SCRIPT_TEMPLATE = '''#!/usr/bin/env python3
"""Reproduces a saved iq1m-harness failure.

  failure: {kind}: {message}
  case:    {describe}
  file:    {case_name} (beside this script)

Needs only iq1m-harness installed (pip install -e . in a checkout). It builds the variant
the failure was found on ({variant}), replays the case in an isolated worker, prints the
first differences (or the signal and stderr of a crash), and exits 1 while the failure
reproduces, 0 once it is fixed, 2 if the case or build cannot be used.
Pass --variant release (or another variant) to replay it against a different build.
"""
import sys
from pathlib import Path

from harness.repro import main

if __name__ == "__main__":
    case = Path(__file__).resolve().with_name({case_name!r})
    sys.exit(main([str(case), "--variant", {variant!r}] + sys.argv[1:]))
'''


def write_script(case_path: Path, failure: HarnessFailure, describe: str, variant: str, case_id: str) -> Path:
    script = Path(case_path).with_name(f"repro_{case_id}.py")
    text = SCRIPT_TEMPLATE.format(kind=failure.kind, message=failure.message.replace('"', "'"),
                                  describe=describe, case_name=Path(case_path).name, variant=variant)
    script.write_text(text)
    script.chmod(0o755)
    return script


def replay(path: Path, variant: str | None = None, *, timeout: float | None = None,
           target=None) -> HarnessFailure | None:
    """`target`: a harness.targets.Target; default: the one recorded in the case."""
    from .runner import Runner
    from .targets import Target

    case = load_case(path)
    target = target or Target.from_dict(case.target)
    with tempfile.TemporaryDirectory(prefix="iq1m-repro-") as work, \
            Runner(variant or case.variant, Path(work), echo_build=False, timeout=timeout, target=target) as runner:
        try:
            runner.check(runner.portable(case))
        except HarnessFailure as failure:
            return failure
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="iq1m-harness repro", description="Replay a saved case file.")
    parser.add_argument("case", type=Path, help="a .npz case file")
    parser.add_argument("--variant", help="build variant to replay on (default: the one recorded in the case)")
    parser.add_argument("--timeout", type=float, help="seconds before the kernel counts as hung")
    from .cli import add_target_arguments, target_from_args

    add_target_arguments(parser, replay=True)
    args = parser.parse_args(argv)
    try:
        case = load_case(args.case)
        variant = args.variant or case.variant
        target = target_from_args(args, case.target)
        where = target.label() if target.is_ggml else f"variant {variant}"
        print(f"replaying {args.case} on {where}: {case.describe()}", flush=True)
        failure = replay(args.case, variant, timeout=args.timeout, target=target)
    except UsageError as exc:
        print(f"iq1m-harness: {exc}", file=sys.stderr)
        return 2
    if failure is None:
        print("PASS: the case no longer fails")
        return 0
    failure.case_path = args.case
    print(f"FAIL: {failure._render()}")
    return 1


def promote(path: Path, dest_dir: Path = REGRESSIONS_DIR) -> Path:
    """Copy a case into tests/regressions/ (validated first), where pytest replays it."""
    case = load_case(path)
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / f"{case.op}-{case.digest()[:16]}.npz"
    shutil.copyfile(path, dest)
    return dest
