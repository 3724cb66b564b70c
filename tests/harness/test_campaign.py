"""Campaigns end to end on fault-injected builds: a campaign keeps exploring after it finds
and minimises failures, each signature is one failure, two jobs finding the same one leave
one valid record, a rerun replays saved failures once, SIGKILL at any moment loses nothing
saved and leaves no process behind, Ctrl-C exits 130 with the report written."""
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.cases import load_case
from harness.errors import UsageError

pytestmark = pytest.mark.slow

FUZZ = [sys.executable, "-m", "harness.cli", "fuzz"]


def _run(args, timeout=900):
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout)


def _report(out: Path) -> dict:
    return json.loads((out / "report.json").read_text())


def _console_failures(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("FAILURE ")]


def processes_using(out: Path) -> list[str]:
    """Processes that name `out` on their command line (jobs) or hold a file under it open
    (jobs, and workers: their stdout and stderr are their log there)."""
    out = str(out.resolve())
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            fds = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        except OSError:
            continue
        if out in cmd or any(fd.startswith(out + "/") for fd in fds):
            found.append(f"{pid}: {cmd[:200]}")
    return found


def _wait_gone(out: Path, seconds: float = 30.0) -> list[str]:
    deadline = time.time() + seconds
    while time.time() < deadline:
        left = processes_using(out)
        if not left:
            return []
        time.sleep(0.2)
    return processes_using(out)


def test_campaign_keeps_exploring_after_it_finds_and_minimises_failures(tmp_path):
    out = tmp_path / "campaign"
    proc = _run(FUZZ + ["--minutes", "1", "--jobs", "2", "--variant", "fault:small_expert_abort",
                        "--ops", "mul_mat,moe_up_gate", "--seed", "1", "--out", str(out)])
    assert proc.returncode == 1, proc.stderr[-3000:]
    report = _report(out)
    failures = report["failures"]
    assert {f["op"] for f in failures} == {"mul_mat", "moe_up_gate"}, failures
    assert {f["kind"] for f in failures} == {"crash"}
    for f in failures:
        assert "ops.c:" in f["signature"] and "GGML_ASSERT" in f["signature"], f["signature"]
        assert f["minimised"], f["shrink"]
        case = load_case(f["case"])
        assert sorted(int(c) for c in case.expert_token_counts() if c) == [1], case.describe()
        assert Path(f["script"]).exists()
    # known failures were counted again, not minimised again; exploration went on after the first one
    assert sum(f["sightings"] for f in failures) > len(failures)
    first = min(f["first_seen"]["elapsed_s"] for f in failures)
    after = [row for row in report["per_slot"] if row["start_s"] > first + 10]
    assert sum(row["cases"] for row in after) >= 10, report["per_slot"]
    assert len({b for row in after for b, n in row["token_buckets"].items() if n}) >= 3, report["per_slot"]
    assert report["cases"] > report["failing_cases"] and report["shrink_steps"] > 0
    # the console lists the failures the report lists
    console = _console_failures(proc.stderr)
    assert len(console) == len(failures)
    for f in failures:
        assert any(f["signature"] in line for line in console)
    # working files do not pile up
    assert not [p for p in out.glob("jobs/job-*/cases/*")]
    # the script reproduces the crash, and passes on the fixed build
    script = failures[0]["script"]
    still = _run([sys.executable, script])
    assert still.returncode == 1 and "SIGABRT" in still.stdout, still.stdout + still.stderr
    fixed = _run([sys.executable, script, "--variant", "release"])
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert (out / "report.md").exists() and (out / "report.png").read_bytes()[:4] == b"\x89PNG"


def test_clean_campaign_covers_every_bucket_and_thread_count(tmp_path):
    out = tmp_path / "campaign"
    proc = _run(FUZZ + ["--minutes", "0.5", "--jobs", "2", "--seed", "2", "--out", str(out)])
    assert proc.returncode == 0, proc.stderr
    report = _report(out)
    assert report["failures"] == [] and report["cases"] > 0
    assert report["uncovered_token_buckets"] == [], report["token_buckets"]
    assert set(report["threads"]) == {"1", "2", "3", "4", "7", "16"}
    assert report["error_bound_ratio"]["max"] <= 1.0 and sum(report["error_bound_ratio"]["counts"]) > 0
    assert report["per_minute"] and sum(m["cases"] for m in report["per_minute"]) == report["cases"]


def test_two_jobs_finding_the_same_signature_leave_one_valid_record(tmp_path):
    out = tmp_path / "campaign"
    proc = _run(FUZZ + ["--minutes", "0.4", "--jobs", "2", "--variant", "fault:small_expert_abort",
                        "--ops", "mul_mat", "--out", str(out)])
    assert proc.returncode == 1, proc.stderr[-3000:]
    cases = sorted((out / "failures").glob("*.npz"))
    scripts = sorted((out / "failures").glob("repro_*.py"))
    assert len(cases) == 1 and len(scripts) == 1, cases + scripts
    assert scripts[0].name == f"repro_{cases[0].stem}.py"
    load_case(cases[0])
    sig = _report(out)["failures"][0]["id"]
    seen_by = [json.loads(p.read_text())["sightings"].get(sig, 0) for p in sorted(out.glob("jobs/job-*.json"))]
    assert len(seen_by) == 2 and all(seen_by), seen_by  # both jobs found it
    assert len(_report(out)["failures"]) == 1 and len(_console_failures(proc.stderr)) == 1
    assert not [p for p in (out / "failures").iterdir() if p.name.startswith(".") and p.name.endswith(".tmp")]


def test_rerun_replays_saved_failures_once_and_keeps_their_first_sighting(tmp_path):
    out = tmp_path / "campaign"
    args = FUZZ + ["--minutes", "0.3", "--jobs", "1", "--variant", "fault:small_expert_segv", "--ops", "mul_mat",
                   "--out", str(out)]
    first = _run(args)
    assert first.returncode == 1, first.stderr[-3000:]
    before = _report(out)["failures"]
    assert [f["kind"] for f in before] == ["crash"] and before[0]["minimised"]
    assert any((out / "examples").rglob("*")), "the minimised example is not in the example database"
    again = _run(args)
    assert again.returncode == 1, again.stderr[-3000:]
    after = _report(out)
    assert [f["id"] for f in after["failures"]] == [before[0]["id"]]  # deduplicated across runs
    f = after["failures"][0]
    assert f["replayed"] == "reproduced" and not f["new"] and f["minimised"]
    assert f["first_seen"] == before[0]["first_seen"]
    assert after["replays"] == 1 and after["cases"] > 0


def _kill_rounds():
    return [("fault:small_expert_abort", 3, "parent"), ("fault:small_expert_abort", 1, "group"),
            ("fault:small_expert_hang", 1, "parent")]


@pytest.mark.parametrize("variant,rounds,how", _kill_rounds(), ids=lambda v: str(v))
def test_sigkill_at_random_moments_loses_nothing_and_leaves_no_process(tmp_path, variant, rounds, how):
    """Kill the campaign (its parent alone, or its whole process group) at random moments,
    several times on the same output directory: every failure saved before a kill is there
    after it, complete, with its script, never less minimised; no job or worker survives."""
    out = tmp_path / "campaign"
    rng = random.Random(f"{variant}{how}")
    saved: dict[str, bool] = {}
    for _ in range(rounds):
        proc = subprocess.Popen(FUZZ + ["--minutes", "1", "--jobs", "2", "--variant", variant, "--out", str(out)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        moment = time.time() + rng.uniform(4, 30)
        while time.time() < moment and proc.poll() is None:
            time.sleep(0.1)
        for path in (out / "failures").glob("*.npz"):
            saved[path.name] = saved.get(path.name, False) or bool(load_case(path).info.get("minimised"))
        if how == "parent":
            proc.kill()
        else:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        left = _wait_gone(out)
        assert not left, left
        for name, minimised in saved.items():
            path = out / "failures" / name
            case = load_case(path)  # complete and readable
            assert path.with_name(f"repro_{path.stem}.py").exists()
            assert case.info["minimised"] or not minimised
    assert saved, "nothing was found before the kills"


def test_ctrl_c_exits_130_with_the_report_written(tmp_path):
    out = tmp_path / "campaign"
    proc = subprocess.Popen(FUZZ + ["--minutes", "3", "--jobs", "2", "--variant", "fault:small_expert_abort",
                                    "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 180
    while time.time() < deadline and not list((out / "failures").glob("*.npz")):
        time.sleep(0.2)
    assert list((out / "failures").glob("*.npz")), "nothing found to save"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    report = _report(out)
    assert report["interrupted"] and report["stopped"].startswith("interrupted")
    saved = sorted(str(p) for p in (out / "failures").glob("*.npz"))
    assert sorted(f["case"] for f in report["failures"]) == saved
    assert len(_console_failures(err)) == len(saved)
    assert not _wait_gone(out)


def _variant_accepted(name: str) -> bool:
    from harness.build import parse_variant

    try:
        parse_variant(name)
    except UsageError:
        return False
    return True


COMBINED = "fault:small_expert_abort,drop_tail_rows"


@pytest.mark.skipif(not _variant_accepted(COMBINED), reason="combined fault variants (fault:a,b) are not built here")
def test_two_bugs_in_one_build_are_distinct_minimised_failures_in_several_ops(tmp_path):
    out = tmp_path / "campaign"
    proc = _run(FUZZ + ["--minutes", "2", "--jobs", "2", "--variant", COMBINED, "--seed", "3", "--out", str(out)])
    assert proc.returncode == 1, proc.stderr[-3000:]
    report = _report(out)
    by_kind: dict[str, set] = {}
    for f in report["failures"]:
        if f["minimised"]:
            by_kind.setdefault(f["kind"], set()).add(f["op"])
    assert len(by_kind.get("crash", ())) >= 2 and len(by_kind.get("mismatch", ())) >= 2, report["failures"]
    first = min(f["first_seen"]["elapsed_s"] for f in report["failures"])
    rows = report["per_slot"]
    grown = [row["start_s"] for row in rows if row["start_s"] > first + 30 and row["cases"]]
    assert grown, rows
