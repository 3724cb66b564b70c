"""Issue 18's done-when: the wheel works outside the checkout.

A wheel is built from a copy of the working tree (`pip wheel --no-deps`), installed in a
fresh virtual environment outside the repository (its dependencies from PyPI or pip's
cache) by the README's CI recipe, step 2, as written; then, from an empty project folder:
- the documented command on the harness's own kernels (compiled from the sources the wheel
  carries, into the user cache `$XDG_CACHE_HOME/iq1m-harness`) must pass every test;
- the recipe's step 3, as written, on the shared ik_llama.cpp build must run, write JUnit
  XML, and name a failure kind and an existing case file in the named folder for every
  failure. (That build fails today: its Q8_K layout is misread, and its fused op aborts
  below 32 tokens; only the mechanics are asserted until the ggml target is fixed.)
"""
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness.build import PROJECT_ROOT
from harness.errors import FAILURE_KINDS

pytestmark = pytest.mark.slow

IK_DIR_NAME = "ik_llama.cpp-cc51044e7"
CASES = "iq1m-failures"
JUNIT = "iq1m-junit.xml"
# not part of the source tree: the checkout's caches, builds, environments and outputs
_TOP_LEVEL_JUNK = {".git", ".iq1m", ".venv", "build", "dist", ".hypothesis", ".pytest_cache", "iq1m-campaigns",
                   "iq1m-mutation", "iq1m-bench"}


def _not_sources(directory: str, names: list[str]) -> set[str]:
    junk = {n for n in names if n == "__pycache__" or n.endswith(".egg-info")}
    return junk | (_TOP_LEVEL_JUNK & set(names) if Path(directory) == PROJECT_ROOT else set())


def ik_lib_dir() -> Path | None:
    """The shared ik_llama.cpp build: IQ1M_IK_LIB_DIR, else shared/ beside the checkout (CI's
    layout) or /work/shared."""
    if os.environ.get("IQ1M_IK_LIB_DIR"):
        return Path(os.environ["IQ1M_IK_LIB_DIR"])
    for root in (PROJECT_ROOT.parent / "shared", Path("/work/shared")):
        if (root / IK_DIR_NAME / "lib").is_dir():
            return root / IK_DIR_NAME / "lib"
    return None


def readme_recipe() -> tuple[str, str, str]:
    """Steps 1, 2 and 3 of the README's shell recipe, as written."""
    text = (PROJECT_ROOT / "README.md").read_text()
    block = re.search(r"<!-- ci-recipe-shell[^>]*-->\n```sh\n(.*?)```", text, re.S)
    assert block, "README.md has no ci-recipe-shell block"
    steps = re.split(r"^(?=# [123]\. )", block.group(1), flags=re.M)
    steps = [s for s in steps if s.strip()]
    assert [s[:4] for s in steps] == ["# 1.", "# 2.", "# 3."], steps
    return tuple(steps)


def _env(tmp: Path, **extra) -> dict:
    """A CI-like environment without this checkout's venv or the harness's overrides."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("IQ1M_") and k not in ("VIRTUAL_ENV", "PYTHONPATH", "HYPOTHESIS_PROFILE")}
    venv_bin = str(Path(sys.prefix) / "bin")
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p != venv_bin)
    env.update(CI="true", XDG_CACHE_HOME=str(tmp / "xdg-cache"), IQ1M_VENV=str(tmp / "iq1m-venv"), **extra)
    return env


def _bash(script: str, cwd: Path, env: dict, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(tmp, project folder, venv): the wheel installed by the README's step 2."""
    tmp = tmp_path_factory.mktemp("installed")
    src = tmp / "src"
    shutil.copytree(PROJECT_ROOT, src, ignore=_not_sources)  # stale build/ files never reach the wheel
    wheel = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp / "dist"),
                            str(src)], capture_output=True, text=True, timeout=600)
    assert wheel.returncode == 0, wheel.stderr[-3000:]
    (wheel_path,) = (tmp / "dist").glob("iq1m_harness-*.whl")
    project = tmp / "project"  # the other project's checkout: nothing of ours in it
    project.mkdir()
    _, install, _ = readme_recipe()
    proc = _bash(install, project, _env(tmp, IQ1M_HARNESS=str(wheel_path)), timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return tmp, project, tmp / "iq1m-venv"


def _junit(path: Path) -> tuple[int, dict[str, str]]:
    """(number of tests, {test name: failure message} of the failed ones)."""
    cases = list(ET.parse(path).iter("testcase"))
    failed = {}
    for tc in cases:
        bad = tc.find("failure")
        if bad is None:
            bad = tc.find("error")
        if bad is not None:
            failed[tc.get("name")] = bad.get("message") or ""
    return len(cases), failed


def _checkout_suite_size(*select: str) -> int:
    """How many tests the checkout's harness/suite collects (with `select`: pytest options
    such as -k)."""
    proc = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                           "harness/suite", *select], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    match = re.search(r"(\d+)(?:/\d+)? tests? collected", proc.stdout)
    assert match, proc.stdout[-2000:]
    return int(match.group(1))


def test_the_wheel_carries_the_harness_and_every_kernel_source(installed):
    tmp, project, venv = installed
    probe = subprocess.run([str(venv / "bin" / "python"), "-c",
                            "import harness, harness.build as b; print(harness.__file__); print(b.KERNELS_DIR); "
                            "print(b.cache_root())"], cwd=project, env=_env(tmp), capture_output=True, text=True)
    module, kernels, cache = probe.stdout.split()
    assert Path(module).is_relative_to(venv), module
    assert Path(kernels) == Path(module).parent / "_kernels"
    assert Path(cache) == tmp / "xdg-cache" / "iq1m-harness" / "build"
    ours = {p.relative_to(PROJECT_ROOT / "kernels") for p in (PROJECT_ROOT / "kernels").rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and not p.name.startswith(".")}
    shipped = {p.relative_to(kernels) for p in Path(kernels).rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    assert shipped == ours


def test_the_packaged_suite_passes_on_the_harness_kernels(installed):
    tmp, project, venv = installed
    run = project / "kernels-run"
    run.mkdir()
    # the documented command (README, "In another project's CI"), without the ggml target
    proc = subprocess.run([str(venv / "bin" / "pytest"), "--pyargs", "harness.suite", f"--iq1m-cases-dir={CASES}",
                           f"--junitxml={JUNIT}"], cwd=run, env=_env(tmp), capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stdout[-5000:]
    assert "iq1m target: kernels (release)" in proc.stdout
    n, failed = _junit(run / JUNIT)
    assert not failed and n == _checkout_suite_size() and n > 40, (n, failed)
    assert list((tmp / "xdg-cache" / "iq1m-harness" / "build").glob("release-*/libiq1m.so")), \
        "the kernels were not built into the user cache"
    assert not (run / CASES).exists() or not any((run / CASES).iterdir())


def test_the_readme_recipe_runs_the_suite_on_ik_llama_cpp(installed):
    lib = ik_lib_dir()
    if lib is None:
        pytest.skip(f"no shared {IK_DIR_NAME}/lib beside the checkout or in /work/shared (IQ1M_IK_LIB_DIR unset)")
    if "avx512_vnni" not in Path("/proc/cpuinfo").read_text():
        pytest.skip(f"{lib}/libggml.so was built for AVX-512 VNNI (GGML_NATIVE on Zen 4); this CPU lacks it")
    tmp, project, venv = installed
    run = project / "ik-run"
    run.mkdir()
    _, _, suite = readme_recipe()
    # the whole suite takes minutes there (every abort is shrunk through dozens more), and
    # tests/ggml/test_ik_suite.py runs it whole: here the tests with fixed cases, the seed's
    # among them, are enough to show the recipe works on that build
    select = "-k 'ik_llama_626 or pinned'"
    env = _env(tmp, GGML_LIB_DIR=str(lib), PYTEST_ADDOPTS=select)
    proc = _bash(suite, run, env, timeout=900)
    assert proc.returncode in (0, 1), proc.stdout[-5000:] + proc.stderr[-2000:]
    assert f"iq1m target: ggml ({lib})" in proc.stdout
    n, failed = _junit(run / JUNIT)
    assert n == _checkout_suite_size("-k", "ik_llama_626 or pinned") > 3, n
    assert any("ik_llama_626" in name for name in failed), failed  # the seed's abort, from the test named for it
    kinds = "|".join(re.escape(k) for k in FAILURE_KINDS)
    for name, message in failed.items():
        named = re.findall(rf"^\[({kinds})\] .* \(case: (.+)\)$", message, re.M)
        assert named, f"{name}: no kind and case in its JUnit message:\n{message}"
        for _, case in named:
            path = run / case
            assert path.is_file() and path.parent == run / CASES, f"{name}: {case} is not in {CASES}/"
            assert path.with_name(f"repro_{path.stem}.py").is_file()
    assert proc.returncode == (1 if failed else 0)
