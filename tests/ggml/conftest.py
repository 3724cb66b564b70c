"""Fixtures of the ggml target tests: runners on mainline ggml (llama-cpp-python's build, or
IQ1M_GGML_LIB_DIR), with the tiled IQ1_M path on (default) and off (GGML_CPU_TILED_MM=0).

Skipped, with the reason, only when no ggml library can be found (llama-cpp-python is not
installed and IQ1M_GGML_LIB_DIR is unset): CI installs '.[test,ggml]'."""
import os

import pytest

from harness.pytest_plugin import register_runner
from harness.targets import GgmlTarget, ggml_available

LIB_DIR = os.environ.get("IQ1M_GGML_LIB_DIR", "")


@pytest.fixture(scope="session")
def ggml_lib_dir():
    """The ggml library directory ("" = llama-cpp-python's); skips the test when there is none."""
    reason = None if LIB_DIR else ggml_available()
    if reason is not None:
        pytest.skip(f"no ggml library (llama-cpp-python not installed, IQ1M_GGML_LIB_DIR unset): {reason}")
    return LIB_DIR


def _runner(tmp_path_factory, name, **target):
    from harness.runner import Runner

    runner = Runner(GgmlTarget(LIB_DIR, **target), work_dir=tmp_path_factory.mktemp(name))
    register_runner(runner)
    return runner


@pytest.fixture(scope="session")
def ggml_runner(tmp_path_factory, ggml_lib_dir):
    runner = _runner(tmp_path_factory, "ggml-tiled")
    yield runner
    runner.close()


@pytest.fixture(scope="session")
def ggml_runner_untiled(tmp_path_factory, ggml_lib_dir):
    runner = _runner(tmp_path_factory, "ggml-untiled", env={"GGML_CPU_TILED_MM": "0"})
    yield runner
    runner.close()
