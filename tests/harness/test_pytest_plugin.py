"""The pytest plugin as another project's CI meets it: loaded from the pytest11 entry point
(no conftest), failing cases moved into --iq1m-cases-dir with a repro script, every JUnit
failure message naming the kind and the case file, pytest's exit codes.

The failing tests here raise the harness's failures by hand (no kernel build), so the
mechanics are checked in the default run; tests/harness/test_installed_suite.py runs the
real suite from an installed wheel."""
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from harness.cases import load_case
from harness.paths import REGRESSIONS_DIR

FAILING_TESTS = '''
import numpy as np

from harness.options import KernelOptions
from harness.cases import Case, save_case
from harness.errors import KernelCrash, Mismatch


def _case(tmp_path, name, rows):
    case = Case("mul_mat", {"w": np.zeros((rows, 56), np.uint8), "x": np.ones((1, 256), np.float32)},
                [KernelOptions()])
    return save_case(case, tmp_path / name)


def test_one_failure(tmp_path):
    raise Mismatch("output differs from the reference", case_path=_case(tmp_path, "a.npz", 1),
                   detail="\\n".join(f"element {i}: got 1 expected 2" for i in range(40)))


def test_two_failures(tmp_path):  # what Hypothesis raises for two distinct failures
    raise ExceptionGroup("Hypothesis found 2 distinct failures.", [
        KernelCrash("SIGSEGV", case_path=_case(tmp_path, "b.npz", 2)),
        Mismatch("output differs from the reference", case_path=_case(tmp_path, "c.npz", 3))])


def test_plain_failure():
    assert 1 == 2


def test_passes():
    pass
'''


def _clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("IQ1M_")}
    env.update(extra)
    return env


def _pytest(cwd: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args], cwd=cwd,
                          env=_clean_env(), capture_output=True, text=True, timeout=timeout)


def _failures(junit: Path) -> dict[str, str]:
    """test name -> its JUnit <failure> message (passing tests left out)."""
    out = {}
    for tc in ET.parse(junit).iter("testcase"):
        failure = tc.find("failure")
        if failure is not None:
            out[tc.get("name")] = failure.get("message")
    return out


def test_failing_cases_are_kept_in_the_named_directory(tmp_path):
    (tmp_path / "test_fake.py").write_text(FAILING_TESTS)
    proc = _pytest(tmp_path, "test_fake.py", "--iq1m-cases-dir", "failures", "--junitxml", "junit.xml")
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-2000:]
    failures = _failures(tmp_path / "junit.xml")
    assert sorted(failures) == ["test_one_failure", "test_plain_failure", "test_two_failures"]

    kept = sorted((tmp_path / "failures").glob("*.npz"))
    assert [p.name.rsplit("-", 1)[0] for p in kept] == ["crash-mul_mat-test_two_failures",
                                                        "mismatch-mul_mat-test_one_failure",
                                                        "mismatch-mul_mat-test_two_failures"]
    for path in kept:
        assert path.with_name(f"repro_{path.stem}.py").is_file()
        assert load_case(path).info["failure_kind"] in ("crash", "mismatch")
    assert not (tmp_path / "failures" / "runs").exists()

    # each failure's message names its kind and its kept file, in the first lines (pytest
    # keeps ~500 characters of it), even behind 40 lines of detail or inside a group
    one = failures["test_one_failure"].splitlines()
    assert one[0].startswith("[mismatch] output differs from the reference (case: failures/mismatch-mul_mat-")
    two = failures["test_two_failures"].splitlines()
    assert two[0].startswith("[crash] kernel process killed by SIGSEGV (case: failures/crash-mul_mat-")
    assert two[1].startswith("[mismatch] output differs from the reference (case: failures/mismatch-mul_mat-")
    for line in one[:1] + two[:2]:
        assert (tmp_path / line.rsplit("(case: ", 1)[1].rstrip(")")).is_file(), line
    assert "assert 1 == 2" in failures["test_plain_failure"]
    # the full report (the element text, and the terminal) names the kept file too
    assert f"case saved at: {kept[1]}" in proc.stdout


def test_without_a_cases_directory_messages_name_the_work_files(tmp_path):
    (tmp_path / "test_fake.py").write_text(FAILING_TESTS)
    proc = _pytest(tmp_path, "test_fake.py", "--junitxml", "junit.xml")
    assert proc.returncode == 1
    first = _failures(tmp_path / "junit.xml")["test_one_failure"].splitlines()[0]
    assert first.startswith("[mismatch] output differs from the reference (case: ")
    assert Path(first.rsplit("(case: ", 1)[1].rstrip(")")).name == "a.npz"


def test_saved_cases_of_another_directory_are_replayed(tmp_path):
    mine = tmp_path / "my-regressions"
    mine.mkdir()
    shipped = sorted(REGRESSIONS_DIR.glob("*.npz"))
    assert shipped, "the packaged suite ships no saved case"
    shutil.copy(shipped[0], mine / "promoted-by-me.npz")
    proc = _pytest(tmp_path, "--collect-only", "-q", "--pyargs", "harness.suite", f"--iq1m-regressions-dir={mine}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"test_saved_case_passes[{shipped[0].stem}]" in proc.stdout
    assert "test_saved_case_passes[my-regressions/promoted-by-me]" in proc.stdout


def test_usage_errors_exit_4_in_one_line(tmp_path):
    (tmp_path / "test_runner.py").write_text("def test_needs_the_runner(iq1m_runner):\n    pass\n")
    proc = _pytest(tmp_path, "-q", "test_runner.py", "--iq1m-regressions-dir=nowhere")
    assert proc.returncode == 4 and "--iq1m-regressions-dir nowhere: no such directory" in proc.stderr
    proc = _pytest(tmp_path, "-q", "test_runner.py", "--iq1m-target", "ggml", f"--iq1m-ggml-lib-dir={tmp_path}")
    assert proc.returncode == 4, proc.stdout[-2000:]
    assert "iq1m-harness: --ggml-lib-dir" in proc.stdout and "no libggml.so" in proc.stdout


def test_a_path_option_in_the_space_form_is_warned_about(tmp_path):
    here, elsewhere = tmp_path / "project", tmp_path / "build" / "bin"
    here.mkdir()
    elsewhere.mkdir(parents=True)
    (here / "test_nothing.py").write_text("def test_nothing():\n    pass\n")
    proc = _pytest(here, "--collect-only", "test_nothing.py", "--iq1m-ggml-lib-dir", str(elsewhere))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"write --iq1m-ggml-lib-dir={elsewhere}" in proc.stdout
    proc = _pytest(here, "--collect-only", "test_nothing.py", f"--iq1m-ggml-lib-dir={elsewhere}")
    assert proc.returncode == 0 and "PytestConfigWarning" not in proc.stdout and f"rootdir: {here}" in proc.stdout
