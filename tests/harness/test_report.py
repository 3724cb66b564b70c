"""The campaign report: histogram bins read as 'past the bound' (not '<= inf'), the bound is
marked, the per-minute rows add up, and the console lists the failures report.md lists."""
import json
from collections import Counter

from harness.campaign import RATIO_EDGES, CampaignConfig
from harness.campaign.report import build_report, console_lines, markdown, per_minute, plot, ratio_bin_labels
from harness.campaign.stats import BOUND_BIN, SLOT_SECONDS, JobStats, merge


def test_ratio_bins_are_upper_bounds_except_the_open_last_one():
    labels = ratio_bin_labels([str(e) for e in RATIO_EDGES])
    assert len(labels) == len(RATIO_EDGES)
    assert labels[0] == "<= 0.0"
    assert labels[-2] == "<= 1.0" == labels[BOUND_BIN]
    assert labels[-1] == "> 1.0"
    assert not any("inf" in label for label in labels)


def _total():
    a, b = JobStats(job=0), JobStats(job=1)
    for s, slot, n in ((a, "0", 3), (a, "7", 2), (b, "7", 4)):
        s.timeline[slot] = {"cases": n, "replays": 0, "shrink_steps": 1, "failing_cases": 0, "new_failures": 0,
                            "token_buckets": {"1-31": n}}
        s.cases += n
        s.token_buckets["1-31"] += n
        s.threads["1"] += n
        s.coverage["1-31|1"] += n
    a.found.append("abc")
    a.sightings["abc"] = 5
    b.sightings["abc"] = 2
    return merge([JobStats.from_json(a.to_json()), JobStats.from_json(b.to_json())])


def test_per_minute_sums_slots_and_accumulates_coverage():
    total = _total()
    rows = per_minute(total)
    assert 60 // SLOT_SECONDS == 6
    assert [r["cases"] for r in rows] == [3, 6]  # slot 7 is in minute 1
    assert [r["cumulative_token_buckets"]["1-31"] for r in rows] == [3, 9]
    assert total["sightings"] == Counter({"abc": 7})


def test_report_console_and_markdown_list_the_same_failures(tmp_path):
    total = _total()
    cfg = CampaignConfig(out=tmp_path, minutes=2, jobs=2, target={"name": "kernels"}, start=1e9)
    records = [{"signature": {"id": "abc", "kind": "crash", "op": "mul_mat", "detail": "SIGABRT: ops.c:84: x",
                              "slug": "crash-mul_mat-SIGABRT-abc"},
                "kind": "crash", "op": "mul_mat", "message": "kernel process killed by SIGABRT", "minimised": True,
                "shrink": {"status": "minimised", "steps": 12, "seconds": 3.0},
                "first_seen": {"unix": 1e9 + 30, "elapsed_s": 30.0, "job": 0, "host": "h", "time": "t"},
                "case": str(tmp_path / "a.npz"), "script": str(tmp_path / "repro_a.py")},
               {"signature": {"id": "old", "kind": "hang", "op": "mul_mat_id", "detail": "timeout", "slug": "s"},
                "kind": "hang", "op": "mul_mat_id", "message": "no answer", "minimised": False,
                "shrink": {"status": "stopped at the deadline + 30 s grace"}, "run_timeout_s": 10.5,
                "first_seen": {}, "case": str(tmp_path / "b.npz"), "script": ""}]
    total["replayed"]["old"] = "did not reproduce"
    r = build_report(cfg, "kernels (release)", total, records, elapsed=121.0)
    r["paths"] = {"md": str(tmp_path / "report.md")}
    assert [f["id"] for f in r["failures"]] == ["abc", "old"]
    assert r["current_failures"] == 1  # the old one did not reproduce
    assert r["failures"][0]["sightings"] == 7 and r["failures"][0]["new"]
    md = markdown(r)
    console = "\n".join(console_lines(r, tmp_path))
    for f in r["failures"]:
        assert f["signature"] in md and f["signature"] in console
    assert "shrunk: yes (12 steps" in md and "shrunk: no, stopped at the deadline + 30 s grace" in md
    assert "[replayed: did not reproduce]" in console
    json.dumps(r)  # serialisable as is
    plot(tmp_path / "report.png", r)
    assert (tmp_path / "report.png").read_bytes()[:4] == b"\x89PNG"
