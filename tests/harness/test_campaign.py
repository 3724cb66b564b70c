"""Campaigns end to end: the seed's bug is found, saved minimised with a working repro
script; a clean build yields a clean report; SIGKILL loses nothing found so far."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.cases import load_case

pytestmark = pytest.mark.slow

FUZZ = [sys.executable, "-m", "harness.cli", "fuzz"]


def _run(args, timeout=600):
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout)


def test_campaign_finds_the_seed_bug_and_the_script_reproduces_it(tmp_path):
    out = tmp_path / "campaign"
    proc = _run(FUZZ + ["--minutes", "0.5", "--jobs", "1", "--variant", "fault:small_expert_abort",
                        "--ops", "moe_up_gate", "--seed", "1", "--out", str(out)])
    assert proc.returncode == 1, proc.stderr
    report = json.loads((out / "report.json").read_text())
    crashes = [f for f in report["failures"] if f["kind"] == "crash"]
    assert crashes, report["failures"]
    case = load_case(crashes[0]["case"])
    assert sorted(int(c) for c in case.expert_token_counts() if c) == [1], case.describe()
    script = Path(crashes[0]["script"])
    still = _run([sys.executable, str(script)])
    assert still.returncode == 1 and "SIGABRT" in still.stdout, still.stdout + still.stderr
    fixed = _run([sys.executable, str(script), "--variant", "release"])
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert (out / "report.md").exists() and (out / "report.png").read_bytes()[:4] == b"\x89PNG"


def test_clean_campaign_covers_every_bucket_and_thread_count(tmp_path):
    out = tmp_path / "campaign"
    proc = _run(FUZZ + ["--minutes", "0.5", "--jobs", "2", "--seed", "2", "--out", str(out)])
    assert proc.returncode == 0, proc.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["failures"] == [] and report["cases"] > 0
    assert report["uncovered_token_buckets"] == [], report["token_buckets"]
    assert set(report["threads"]) == {"1", "2", "3", "4", "7", "16"}
    assert report["error_bound_ratio"]["max"] <= 1.0


def test_sigkill_loses_no_failure(tmp_path):
    out = tmp_path / "campaign"
    args = FUZZ + ["--minutes", "2", "--jobs", "1", "--variant", "fault:small_expert_segv", "--ops", "mul_mat",
                   "--out", str(out)]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 240
    while time.time() < deadline and not list((out / "failures").glob("*.npz")):
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    saved = list((out / "failures").glob("*.npz"))
    assert saved, "campaign found nothing before the deadline"
    for path in saved:
        load_case(path)  # complete and readable
        assert path.with_name(f"repro_{path.stem}.py").exists()
    # (whether Hypothesis had stored the example before the kill is a matter of timing;
    # resuming from the database is test_rerun_resumes_from_saved_examples)


def test_rerun_resumes_from_saved_examples(tmp_path):
    out = tmp_path / "campaign"
    args = FUZZ + ["--minutes", "0.1", "--jobs", "1", "--variant", "fault:small_expert_segv", "--ops", "mul_mat",
                   "--out", str(out)]
    assert _run(args).returncode == 1
    examples = [p for p in (out / "examples").rglob("*") if p.is_file()]
    assert examples, "nothing saved in the example database"
    again = _run(args)
    assert again.returncode == 1
    report = json.loads((out / "report.json").read_text())
    assert [f["kind"] for f in report["failures"]] == ["crash"]  # deduplicated across runs
