"""pytest integration: `--iq1m-variant` selects the build the kernel tests run against,
`--iq1m-target ggml` runs the same suite against a ggml build instead.

    pytest                          # release build
    pytest --iq1m-variant asan      # the same suite on the address+undefined sanitizer build
    pytest --iq1m-target ggml       # against llama-cpp-python's ggml (or --iq1m-ggml-lib-dir DIR)
    pytest --iq1m-target ggml --iq1m-ggml-env GGML_CPU_TILED_MM=0 --iq1m-strict

On ggml, outputs are checked against the float64 bound with ggml's own Q8_K activations;
thread-count and batch-composition divergences are findings, printed in the terminal
summary (and written to --iq1m-report PATH as JSON), failures only with --iq1m-strict.
"""
from __future__ import annotations

import os

import pytest

from .errors import UsageError
from .targets import TARGET_NAMES


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
        return from_choice(cfg.getoption("--iq1m-target"), variant=cfg.getoption("--iq1m-variant"),
                           lib_dir=cfg.getoption("--iq1m-ggml-lib-dir") or None,
                           env=parse_env(cfg.getoption("--iq1m-ggml-env")) or None,
                           strict=cfg.getoption("--iq1m-strict"))
    except UsageError as exc:
        pytest.exit(f"iq1m-harness: {exc}", returncode=2)


@pytest.fixture(scope="session")
def iq1m_variant(request) -> str:
    return request.config.getoption("--iq1m-variant")


@pytest.fixture(scope="session")
def iq1m_runner(iq1m_target):
    """A built library of the selected variant (or the selected ggml build) behind one
    isolated worker, for the session."""
    from .runner import Runner

    try:
        runner = Runner(iq1m_target)
    except UsageError as exc:
        pytest.exit(f"iq1m-harness: {exc}", returncode=2)
    register_runner(runner)
    yield runner
    runner.close()
