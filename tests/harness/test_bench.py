"""`iq1m-harness bench --smoke`: the outputs' structure and that every ratio comes from the
same run's alternating measurements. Nothing here looks at speed (a shared machine's
timings are noise to a test)."""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys

import pytest

from harness import bench


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    # In a subprocess: bench maps our library and ggml's into its own process, and two
    # foreign libraries unloaded at pytest's exit have crashed it.
    out = tmp_path_factory.mktemp("bench")
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "bench", "--smoke", "--out", str(out), "--reps", "3",
                           "--min-time", "0.005"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, json.loads((out / "bench.json").read_text())


def test_outputs_written(smoke_run):
    out, summary = smoke_run
    assert (out / "bench.md").read_text().startswith("# iq1m-harness bench")
    png = (out / "bench.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert summary["smoke"] is True and summary["reps"] == 3
    assert {"info", "peak", "records", "targets", "threads"} <= set(summary)


def test_shapes_and_threads(smoke_run):
    _, summary = smoke_run
    recs = summary["records"]
    ops = {r["op"] for r in recs}
    assert ops == {"mul_mat", "moe_up_gate"}
    for r in recs:
        assert r["threads"] in summary["threads"]
        assert r["ops"] == bench.shape_ops(r) > 0
        o = r["ours"]
        assert len(o["times_s"]) == summary["reps"] and all(t > 0 for t in o["times_s"])
        assert o["median_s"] == pytest.approx(statistics.median(o["times_s"]), rel=1e-6)
        assert o["gops"] == pytest.approx(r["ops"] / o["median_s"] * 1e-9, rel=1e-2, abs=0.01)
        assert o["spread"] >= 0
        assert len(r["ours_pp"]["times_s"]) == summary["reps"]
        # the cores the process got while it ran: CPU time over wall time. The process CPU
        # clock adds the time of a thread running on another CPU late (up to a scheduler
        # tick), so a smoke window of 20 ms can read up to about 1.5x what the machine has
        assert len(o["cores"]) == summary["reps"] and 0 < o["cores_median"] <= 1.5 * os.cpu_count()
        assert o["cores_median"] == pytest.approx(statistics.median(o["cores"]), abs=1e-3)
        # prepacked weights are a lossless encoding: the same output bits
        assert r["pp_bit_exact"] is True
    seen = {(r["op"], r["tokens"], r["threads"]) for r in recs}
    assert len(seen) == len(recs)


def test_ratios_from_same_run(smoke_run):
    _, summary = smoke_run
    if "unavailable" in summary["info"]["ggml"]:
        pytest.skip(f"ggml not available: {summary['info']['ggml']['unavailable']}")
    for r in summary["records"]:
        o, p, g = r["ours"], r["ours_pp"], r["ggml"]
        assert len(g["times_s"]) == len(o["times_s"]) == summary["reps"]
        # alternating: ours rep i, then prepacked rep i, then ggml rep i, then ours rep i+1
        for i in range(summary["reps"]):
            assert o["starts_s"][i] < p["starts_s"][i] < g["starts_s"][i]
            if i + 1 < summary["reps"]:
                assert g["starts_s"][i] < o["starts_s"][i + 1]
        assert r["ratio"] == pytest.approx(g["median_s"] / o["median_s"], rel=2e-3)
        assert r["ratio_pp"] == pytest.approx(g["median_s"] / p["median_s"], rel=2e-3)
        paired = statistics.median(gt / ot for ot, gt in zip(o["times_s"], g["times_s"]))
        assert r["ratio_paired"] == pytest.approx(paired, rel=2e-3, abs=1e-3)
        if r["threads"] == 1:
            assert len(o["cpu_times_s"]) == len(g["cpu_times_s"]) == summary["reps"]
            assert r["ratio_cpu"] == pytest.approx(g["cpu_median_s"] / o["cpu_median_s"], rel=2e-3)
        else:
            assert r["ratio_cpu"] is None
        # the same product on both sides (ggml rounds differently: loose)
        assert r["max_rel_diff_vs_ggml"] < 1e-2


def test_thread_counts_in_one_rotation(smoke_run):
    """Every thread count of a shape is measured in the same rotation, so the 2-thread
    scaling compares time-adjacent repetitions."""
    _, summary = smoke_run
    by = {}
    for r in summary["records"]:
        by.setdefault((r["op"], r["tokens"]), {})[r["threads"]] = r
    for recs in by.values():
        one, two = recs[1], recs[2]
        for i in range(summary["reps"]):
            assert one["ours_pp"]["starts_s"][i] < two["ours"]["starts_s"][i] < two["ours_pp"]["starts_s"][i]
            if i + 1 < summary["reps"]:
                assert two["ours_pp"]["starts_s"][i] < one["ours"]["starts_s"][i + 1]
        for mode in ("ours", "ours_pp"):
            assert two[f"scaling_{mode}"] == pytest.approx(two[mode]["gops"] / one[mode]["gops"], rel=2e-2)
            paired = statistics.median(a / b for a, b in zip(one[mode]["times_s"], two[mode]["times_s"]))
            assert two[f"scaling_{mode}_paired"] == pytest.approx(paired, rel=2e-3, abs=1e-3)
        assert "scaling_ours" not in one


def test_roofline_lines(smoke_run):
    _, summary = smoke_run
    peak = summary["peak"]
    if peak is None:
        pytest.skip("peak library unavailable")
    n_shapes = len({(r["op"], r["tokens"]) for r in summary["records"]})
    for t in summary["threads"]:
        assert peak["int8_gops"][str(t)] > 0 and peak["read_gbs"][str(t)] > 0
        # sampled at the start and before every shape; the run's figure is their median
        samples = peak["int8_samples"][str(t)]
        assert len(samples) == 1 + n_shapes and all(v > 0 for v in samples)
        assert peak["int8_gops"][str(t)] == pytest.approx(statistics.median(samples), abs=0.051)
    for r in summary["records"]:
        assert r["peak_fraction_ours"] == pytest.approx(r["ours"]["gops"] / peak["int8_gops"][str(r["threads"])],
                                                        rel=1e-2, abs=1e-3)
        assert r["roofline_gops"] <= peak["int8_gops"][str(r["threads"])]


def test_contended_multi_thread_targets_say_so():
    rec = {"threads": 2, "ours": {"cores_median": 1.1}, "ours_pp": {"cores_median": 1.95}}
    assert bench._cores(rec, "ours") == ", got 1.10 cores"
    assert bench._cores(rec, "ours_pp") == ""
    assert bench._cores(dict(rec, threads=1), "ours") == ""


def test_targets_evaluated_from_records(smoke_run):
    _, summary = smoke_run
    assert summary["targets"] == bench.targets(summary["records"], summary["peak"])
    for t in summary["targets"]:
        assert set(t) <= {"target", "ours", "ours_pp"} and len(t) > 1
        for mode in ("ours", "ours_pp"):
            if mode in t:
                assert set(t[mode]) == {"met", "detail"} and isinstance(t[mode]["met"], bool)
