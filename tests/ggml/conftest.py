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


# -- ik_llama.cpp at cc51044e7 (the seed's project, pre-fix): a real third-party build -------

IK_BUILD = "ik_llama.cpp-cc51044e7"


def find_ik_lib_dir():
    """The shared pre-fix ik_llama.cpp build's lib/ (IQ1M_IK_LIB_DIR, else a `shared/` folder
    beside the checkout or above it), or None."""
    from pathlib import Path

    from harness.build import PROJECT_ROOT

    if os.environ.get("IQ1M_IK_LIB_DIR"):
        return Path(os.environ["IQ1M_IK_LIB_DIR"])
    for folder in [PROJECT_ROOT, *PROJECT_ROOT.parents, Path("/work")]:
        candidate = folder / "shared" / IK_BUILD / "lib"
        if (candidate / "libggml.so").is_file():
            return candidate
    return None


def ik_unusable_reason(lib_dir) -> str | None:
    """None when the build runs on this CPU; else why not (GGML_NATIVE=ON compiled it for the
    machine it was built on: elsewhere it may die with SIGILL)."""
    import subprocess
    import sys

    probe = ("import numpy as np; from harness.targets.libggml import GgmlLibrary; from harness.options import "
             f"KernelOptions; g = GgmlLibrary({str(lib_dir)!r}); "
             "g.mul_mat(np.zeros((8, 56), np.uint8), np.ones((40, 256), np.float32), KernelOptions())")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    if proc.returncode == -4:  # SIGILL
        return f"this CPU lacks instructions {lib_dir}/libggml.so was compiled for (SIGILL): rebuild it (its README)"
    if proc.returncode != 0:
        raise RuntimeError(f"{lib_dir} does not load: {proc.stderr[-2000:]}")
    return None


@pytest.fixture(scope="session")
def ik_lib_dir():
    """The pre-fix ik_llama.cpp build's lib/ as a string. Skips (with the reason) where it is
    absent or this CPU cannot run it; with IQ1M_REQUIRE_IK=1 (CI) an absent build is an error."""
    lib = find_ik_lib_dir()
    if lib is None:
        if os.environ.get("IQ1M_REQUIRE_IK"):
            pytest.fail(f"IQ1M_REQUIRE_IK is set but no shared/{IK_BUILD}/lib was found (set IQ1M_IK_LIB_DIR)")
        pytest.skip(f"no shared/{IK_BUILD}/lib beside or above the checkout (set IQ1M_IK_LIB_DIR)")
    reason = ik_unusable_reason(lib)
    if reason:
        pytest.skip(reason)
    return str(lib)
