"""pytest integration: `--iq1m-variant` selects the build the kernel tests run against.

    pytest                          # release build
    pytest --iq1m-variant asan      # the same suite on the address+undefined sanitizer build
"""
from __future__ import annotations

import os

import pytest

from .errors import UsageError


def pytest_addoption(parser):
    group = parser.getgroup("iq1m")
    group.addoption("--iq1m-variant", default=os.environ.get("IQ1M_VARIANT", "release"),
                    help="kernel build variant to test: release, asan, tsan, no-direct or fault:NAME")


def pytest_report_header(config):
    return f"iq1m kernel variant: {config.getoption('--iq1m-variant')}"


@pytest.fixture(scope="session")
def iq1m_variant(request) -> str:
    return request.config.getoption("--iq1m-variant")


@pytest.fixture(scope="session")
def iq1m_runner(iq1m_variant):
    """A built library of the selected variant behind one isolated worker, for the session."""
    from .runner import Runner

    try:
        runner = Runner(iq1m_variant)
    except UsageError as exc:
        pytest.exit(f"iq1m-harness: {exc}", returncode=2)
    yield runner
    runner.close()
