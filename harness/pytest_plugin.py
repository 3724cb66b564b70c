"""pytest integration: `--iq1m-variant` selects the build the kernel tests run against,
`--iq1m-target ggml` runs the same suite against a ggml build instead.

    pytest                          # release build
    pytest --iq1m-variant asan      # the same suite on the address+undefined sanitizer build
    pytest --iq1m-target ggml       # against llama-cpp-python's ggml (or --iq1m-ggml-lib-dir DIR)
    pytest --iq1m-target ggml --iq1m-ggml-env GGML_CPU_TILED_MM=0 --iq1m-strict

On ggml, outputs are checked against the float64 bound with ggml's own Q8_K activations;
thread-count and batch-composition divergences are findings, printed in the terminal
summary (and written to --iq1m-report PATH as JSON), failures only with --iq1m-strict.

Registered as a `pytest11` entry point (`iq1m`): installed, it is active in every pytest
session, so another project runs the packaged suite on its own build with

    pytest --pyargs harness.suite --iq1m-target ggml --iq1m-ggml-lib-dir=build/bin \\
        --iq1m-cases-dir=iq1m-failures --junitxml=iq1m-junit.xml

`--iq1m-cases-dir DIR`: every failing case is kept in DIR as `<kind>-<op>-<test>-<digest>.npz`
with a standalone `repro_<same>.py` beside it, and the failure's message (terminal and JUnit
XML) names that file; the runner works in `DIR/runs/` (what an interrupted run leaves) and
removes its intermediate files (the shrinking's other failing examples) at the end of the
session. Exit codes are pytest's (a usage error of the harness itself, such as a bad
`--iq1m-ggml-lib-dir`, is 4).
"""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from .errors import HarnessFailure, UsageError
from .targets import TARGET_NAMES

_CASES_DIR = pytest.StashKey["Path | None"]()
_SAVED = pytest.StashKey["list[Path]"]()


def pytest_addoption(parser):
    group = parser.getgroup("iq1m")
    group.addoption("--iq1m-variant", default=os.environ.get("IQ1M_VARIANT", "release"),
                    help="kernel build variant to test: release, asan, tsan, no-direct or fault:NAME")
    group.addoption("--iq1m-target", default=os.environ.get("IQ1M_TARGET", "kernels"), choices=TARGET_NAMES,
                    help="what the kernel tests run against: the project's kernels (default) or a ggml build")
    group.addoption("--iq1m-ggml-lib-dir", default=os.environ.get("IQ1M_GGML_LIB_DIR", ""),
                    help="directory with a ggml build's libggml*.so (default: llama-cpp-python's)")
    group.addoption("--iq1m-ggml-env", action="append", default=[], metavar="NAME=VALUE",
                    help="environment of the ggml worker, repeatable (e.g. GGML_CPU_TILED_MM=0)")
    group.addoption("--iq1m-strict", action="store_true",
                    help="on ggml, findings fail the tests: outputs beyond the exact-product bound, thread-count "
                         "and batch-composition divergence")
    group.addoption("--iq1m-report", default="", metavar="PATH",
                    help="write the runners' findings (bound ratios, invariance) as JSON to PATH")
    group.addoption("--iq1m-cases-dir", default=os.environ.get("IQ1M_CASES_DIR", ""), metavar="DIR",
                    help="keep every failing case in DIR (with a repro_*.py script beside it); "
                         "default: the runner's work folder in the cache")
    group.addoption("--iq1m-regressions-dir", action="append", default=[], metavar="DIR",
                    help="also replay the saved cases (*.npz) in DIR in test_regressions, repeatable")


def pytest_configure(config):
    cases_dir = config.getoption("--iq1m-cases-dir")
    config.stash[_CASES_DIR] = Path(cases_dir).expanduser().resolve() if cases_dir else None
    config.stash[_SAVED] = []
    for d in config.getoption("--iq1m-regressions-dir"):
        if not Path(d).is_dir():
            raise pytest.UsageError(f"--iq1m-regressions-dir {d}: no such directory")
    # pytest picks its rootdir before it loads this plugin, so the value of `--iq1m-... PATH`
    # counts as a test path then: one outside this directory moves the rootdir (and its
    # .pytest_cache) up or away, test ids become relative to it. `--iq1m-...=PATH` is safe.
    args, here = list(config.invocation_params.args), config.invocation_params.dir
    for opt, value in zip(args, args[1:]):
        path = (here / value).resolve()
        if opt in _PATH_OPTIONS and path.exists() and not path.is_relative_to(here):
            config.issue_config_time_warning(pytest.PytestConfigWarning(
                f"rootdir is {config.rootpath}: pytest took '{value}' after {opt} for a test path when it chose "
                f"the rootdir (before the iq1m plugin was loaded); write {opt}={value}"), stacklevel=2)
            break


_PATH_OPTIONS = ("--iq1m-ggml-lib-dir", "--iq1m-cases-dir", "--iq1m-report", "--iq1m-regressions-dir")


def pytest_report_header(config):
    from .targets import from_choice, parse_env

    try:
        target = from_choice(config.getoption("--iq1m-target"), variant=config.getoption("--iq1m-variant"),
                             lib_dir=config.getoption("--iq1m-ggml-lib-dir") or None,
                             env=parse_env(config.getoption("--iq1m-ggml-env")) or None,
                             strict=config.getoption("--iq1m-strict"))
    except UsageError as exc:
        return f"iq1m target: unusable ({exc})"
    return f"iq1m target: {target.label()}{', strict' if target.strict else ''}"


_RUNNERS: list = []  # every runner made in this session, for the findings summary


def register_runner(runner) -> None:
    """Tests that make their own Runner register it here to get its findings reported."""
    _RUNNERS.append(runner)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    saved = config.stash.get(_SAVED, [])
    if saved:
        terminalreporter.section("iq1m failing cases")
        terminalreporter.write_line(f"{len(saved)} failing case(s) kept in {config.stash[_CASES_DIR]} "
                                    f"(replay one: python repro_<name>.py, or iq1m-harness repro CASE):")
        for path in saved:
            terminalreporter.write_line(f"  {path.name}")
    runners = [r for r in _RUNNERS if r.stats["cases"]]
    if not runners:
        return
    terminalreporter.section("iq1m findings")
    for r in runners:
        terminalreporter.write_line(r.findings_summary())
    path = config.getoption("--iq1m-report")
    if path:
        import json

        data = [{"target": r.target.label(), "stats": r.stats, "findings": r.findings} for r in runners]
        with open(path, "w") as f:
            json.dump(data, f, indent=2, sort_keys=True)
        terminalreporter.write_line(f"findings written to {path}")


@pytest.fixture(scope="session")
def iq1m_target(request):
    """The harness.targets.Target the session's tests run against."""
    from .targets import from_choice, parse_env

    cfg = request.config
    try:
        lib_dir = cfg.getoption("--iq1m-ggml-lib-dir")
        # absolute: the saved cases record it, and their repro scripts run from anywhere
        return from_choice(cfg.getoption("--iq1m-target"), variant=cfg.getoption("--iq1m-variant"),
                           lib_dir=str(Path(lib_dir).expanduser().resolve()) if lib_dir else None,
                           env=parse_env(cfg.getoption("--iq1m-ggml-env")) or None,
                           strict=cfg.getoption("--iq1m-strict"))
    except UsageError as exc:
        pytest.exit(f"iq1m-harness: {exc}", returncode=pytest.ExitCode.USAGE_ERROR)


@pytest.fixture(scope="session")
def iq1m_variant(request) -> str:
    return request.config.getoption("--iq1m-variant")


@pytest.fixture(scope="session")
def iq1m_runner(request, iq1m_target):
    """A built library of the selected variant (or the selected ggml build) behind one
    isolated worker, for the session."""
    from .runner import Runner

    cases_dir = request.config.stash[_CASES_DIR]
    work_dir = None
    if cases_dir is not None:
        work_dir = cases_dir / "runs" / f"{iq1m_target.slug}-{os.getpid()}"
    try:
        runner = Runner(iq1m_target, work_dir=work_dir)
    except UsageError as exc:
        pytest.exit(f"iq1m-harness: {exc}", returncode=pytest.ExitCode.USAGE_ERROR)
    register_runner(runner)
    yield runner
    runner.close()
    if work_dir is not None:
        _tidy_work_dir(runner, work_dir)


def _tidy_work_dir(runner, work_dir: Path) -> None:
    """After the session: the reported failures were moved out of the work folder; what is
    left there is the shrinking's intermediate failing examples. Keep only the files the
    findings name (the --iq1m-report JSON points at them); drop the folder when nothing is."""
    keep = {f[k] for f in runner.findings for k in ("case", "sub_case") if f.get(k)}
    for path in (work_dir / "cases").glob("*.npz"):
        if str(path) not in keep:
            path.unlink(missing_ok=True)
    if not keep:
        shutil.rmtree(work_dir, ignore_errors=True)
        try:
            work_dir.parent.rmdir()  # DIR/runs, when no other session uses it
        except OSError:
            pass


# -- failures: kept in --iq1m-cases-dir, named in the report -------------------------------

def harness_failures(exc: BaseException | None) -> list[HarnessFailure]:
    """The HarnessFailures in an exception: itself, or inside (nested) exception groups, as
    Hypothesis raises for several distinct failures or a flaky one."""
    if isinstance(exc, HarnessFailure):
        return [exc]
    if isinstance(exc, BaseExceptionGroup):
        found = [f for sub in exc.exceptions for f in harness_failures(sub)]
        return [f for i, f in enumerate(found) if all(f is not g for g in found[:i])]
    return []


def _slug(text: str, limit: int) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "-", text).strip("-")[:limit].strip("-")


def keep_failure(failure: HarnessFailure, dest: Path, test_name: str, where: str = "") -> Path | None:
    """Move the failure's case file into `dest` as `<kind>-<op>-<test>-<digest>.npz`, with
    the failure recorded in its header and a `repro_<stem>.py` beside it, and point the
    failure (and its message) at it. `where`: the target's label, for the script's text
    (default: the target the case records). Returns the new path (None: no case file)."""
    from .cases import load_case, save_case
    from .repro import write_script

    src = Path(failure.case_path) if failure.case_path else None
    if src is None or not src.is_file():
        return None
    if src.parent == dest:
        return src  # already kept (the same exception reported twice)
    case = load_case(src)
    stem = f"{_slug(f'{failure.kind}-{case.op}-{test_name}', 90)}-{case.digest()[:10]}"
    target = dest / f"{stem}.npz"
    dest.mkdir(parents=True, exist_ok=True)
    moved = {}
    for sub in sorted(src.parent.glob(src.stem + ".token*.npz")):  # a batch divergence's one-token case
        moved[str(sub)] = dest / f"{stem}{sub.name[len(src.stem):]}"
        shutil.move(sub, moved[str(sub)])
    for old, new in moved.items():
        failure.detail = failure.detail.replace(old, str(new))
    case.info.update({"failure_kind": failure.kind, "message": failure.message, "detail": failure.detail,
                      "stderr_tail": failure.stderr_tail[-4000:], "signal": getattr(failure, "signal_name", ""),
                      "test": test_name})
    if not where:
        from .targets import from_dict

        where = from_dict(case.target, variant=case.variant).label()
    write_script(target, failure, case.describe(), where, stem)  # script first: a case on disk has one
    save_case(case, target)
    src.unlink(missing_ok=True)
    failure.case_path = target
    failure.args = (failure._render(),)
    return target


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    failures = harness_failures(call.excinfo.value) if call.excinfo is not None else []
    dest = item.config.stash.get(_CASES_DIR, None)
    if dest is not None:
        for failure in failures:
            runner = getattr(item, "funcargs", {}).get("iq1m_runner")
            try:
                kept = keep_failure(failure, dest, item.name, runner.target.label() if runner is not None else "")
            except Exception as exc:  # the failure is reported anyway, naming its file where it is
                item.warn(pytest.PytestWarning(f"iq1m: could not keep {failure.case_path} in {dest}: {exc!r}"))
                continue
            if kept is not None:
                item.config.stash[_SAVED].append(kept)
    outcome = yield
    report = outcome.get_result()
    crash = getattr(report.longrepr, "reprcrash", None)
    if failures and report.failed and crash is not None:
        # The crash message is JUnit's failure message (pytest keeps its first ~500
        # characters) and the short summary's line: one line per failure first, each with
        # its kind and case file (an exception group's own text names neither)
        crash.message = "\n".join([failure_line(f, item.config.invocation_params.dir) for f in failures]
                                  + [crash.message])


def failure_line(failure: HarnessFailure, base: Path) -> str:
    """`[kind] first line of the message (case: PATH)`, PATH relative to `base` when inside it."""
    path = Path(failure.case_path) if failure.case_path else None
    if path is not None and path.is_relative_to(base):
        path = path.relative_to(base)
    first = failure.message.splitlines()[0] if failure.message else ""
    if len(first) > 120:
        first = first[:117] + "..."
    return f"[{failure.kind}] {first} (case: {path if path is not None else 'not saved'})"
