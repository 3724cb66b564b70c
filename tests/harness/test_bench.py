"""`iq1m-harness bench` (harness/tools/bench): the statistics and the report on synthetic
numbers, the workloads, the crash probe, the bindings' prepared calls, and the outputs of
real `bench --smoke` runs (mainline ggml; and, marked slow, the pre-fix ik_llama.cpp build,
whose fused MoE op aborts on some shapes). Nothing here looks at speed: a shared machine's
timings are noise to a test."""
from __future__ import annotations

import importlib.util
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness.targets.ggml import GgmlTarget, ggml_available, resolve_ggml_lib_dir
from harness.tools.bench import measure, probe, report, workloads

HERE = Path(__file__).parent
SEED_ABORT = "aborts (ggml.c:15254: fatal error)"  # ik_llama.cpp cc51044e7's fused op, 1..31 tokens on an expert


def _bench(out: Path, *args: str) -> dict:
    # In a subprocess: bench maps our library and ggml's into its own process, and two
    # foreign libraries unloaded at pytest's exit have crashed it.
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "bench", "--smoke", "--out", str(out), *args],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return json.loads((out / "bench.json").read_text())


# -- measure: timing and statistics -----------------------------------------------------------

def test_rotation_alternates_and_counts():
    calls = []
    runs = {name: (lambda name=name: calls.append(name)) for name in ("a", "b", "c")}
    meas = measure.rotation(runs, reps=3, min_time=0.0)
    assert calls[:3] == ["a", "b", "c"]  # one warm-up call each, then one call per repetition
    assert calls[3:] == ["a", "b", "c"] * 3
    for m in meas.values():
        assert len(m.times) == len(m.cpu) == len(m.calls) == len(m.cores) == len(m.starts) == 3
        assert m.calls == [1, 1, 1]
    for i in range(3):
        assert meas["a"].starts[i] <= meas["b"].starts[i] <= meas["c"].starts[i]
        if i < 2:
            assert meas["c"].starts[i] <= meas["a"].starts[i + 1]


def test_time_call_repeats_until_min_time_or_max_calls():
    n = []
    _, _, calls, _ = measure.time_call(lambda: n.append(1), min_time=10.0, max_calls=5)
    assert calls == len(n) == 5


def _measurement(times, cpu=None, cores=None) -> measure.Measurement:
    m = measure.Measurement()
    for i, t in enumerate(times):
        m.add(float(i), t, (cpu or times)[i], 3, (cores or [1.0] * len(times))[i])
    return m


def test_summary_of_synthetic_times():
    m = _measurement([0.002, 0.001, 0.004], cores=[1.0, 1.8, 1.9])
    s = measure.summary(m, ops=2e6)
    assert s["median_s"] == 0.002 and s["gops"] == 1.0
    assert s["gops_min"] == 0.5 and s["gops_max"] == 2.0
    assert s["spread"] == pytest.approx((0.004 - 0.001) / 0.002)
    assert s["cores_median"] == 1.8 and s["calls"] == [3, 3, 3] and s["starts_s"] == [0.0, 1.0, 2.0]


def test_ratios_from_medians_and_pairs():
    ours, ggml = [1.0, 2.0, 4.0], [3.0, 2.0, 16.0]
    assert measure.ratio(ours, ggml) == 1.5  # median 3 over median 2
    assert measure.paired_ratio(ours, ggml) == 3.0  # median of 3, 1, 4
    assert measure.ratio([0.0, 0.0, 0.0], ggml) is None


# -- workloads --------------------------------------------------------------------------------

def test_shapes():
    full, smoke = workloads.shapes(), workloads.shapes(smoke=True)
    assert [s["tokens"] for s in full if s["op"] == "mul_mat"] == list(workloads.MUL_MAT_NS)
    assert [s["tokens"] for s in full if s["op"] == "moe_up_gate"] == list(workloads.MOE_TOKENS)
    assert [(s["op"], s["tokens"]) for s in smoke] == [("mul_mat", 1), ("mul_mat", 32), ("moe_up_gate", 1),
                                                        ("moe_up_gate", 32)]
    assert [s["tokens"] for s in workloads.shapes(True, [4, 128])] == [4, 128, 4, 128]
    # ik_llama.cpp asserts rows % 8 == 0 from 32 tokens on: no shape may trip it
    assert all(s["rows"] % 8 == 0 for s in full)
    with pytest.raises(ValueError, match="tokens >= 1"):
        workloads.shapes(tokens=[0])


def test_ops_and_bytes():
    mm = {"op": "mul_mat", "k": 512, "rows": 16, "tokens": 3}
    assert workloads.shape_ops(mm) == 2 * 512 * 16 * 3
    assert workloads.shape_bytes(mm, None) == 16 * 2 * 56 + 4 * 512 * 3 + 4 * 16 * 3
    moe = {"op": "moe_up_gate", "k": 512, "rows": 16, "tokens": 2, "experts": 4, "top_k": 2}
    assert workloads.shape_ops(moe) == 2 * 2 * 512 * 16 * 2 * 2
    ids = np.array([[0, 1], [1, 3]])  # 3 experts used
    assert workloads.shape_bytes(moe, ids) == 2 * 3 * 16 * 2 * 56 + 4 * 512 * 2 + 4 * 16 * 2 * 2


def test_data_keeps_a_layers_weights_and_draws_sane_scales():
    data = workloads.Data(seed=1)
    small = [dict(s, k=512, rows=16, experts=4, top_k=2) for s in workloads.shapes(tokens=[1, 5])]
    a1, a5 = (data.arrays(s) for s in small[2:])
    assert a1["w_up"] is a5["w_up"] and a1["w_gate"] is a5["w_gate"]
    assert a1["x"].shape == (1, 512) and a5["ids"].shape == (5, 2) and a5["w_up"].shape == (4, 16, 2 * 56)
    assert all(len(set(row)) == len(row) for row in a5["ids"].tolist())  # no expert twice in a token
    blocks = a5["w_up"].reshape(-1, 56)
    words = blocks[:, 48:56].copy().view("<u2")
    d = sum(((words[:, i] >> 12) & 0xF).astype(np.uint16) << (4 * i) for i in range(4)).astype(np.uint16)
    d = d.view(np.float16).astype(np.float32)
    assert np.all((d >= 0.0019) & (d <= 0.0201))  # the fp16 super-scales: finite, normal, positive


# -- the crash probe --------------------------------------------------------------------------

def test_describe_death():
    earlier = "/src/ggml.c:101: GGML_ASSERT(a) failed\n"  # a passing run's binding probe, before the mark
    abort = f"{earlier}{probe.MARK} moe_up_gate on 2 thread(s)\n/build/ik/ggml/src/ggml.c:15254: fatal error\n" \
            "libggml.so(ggml_abort+0x1)[0x7f]\n"
    assert probe.describe_death(-6, abort) == SEED_ABORT
    assert probe.describe_death(-11, f"{probe.MARK} x\nggml_new_object: not enough space\n") \
        == "crashes with SIGSEGV (ggml_new_object: not enough space)"
    assert probe.describe_death(1, f"{earlier}{probe.MARK} x\nValueError: bad\n") == "exits with status 1 (ValueError: bad)"
    assert probe.describe_death(None, "").startswith("hangs (no result in")
    assert probe.describe_death(-9, "") == "crashes with SIGKILL"


@pytest.fixture(scope="module")
def mainline_dir():
    reason = ggml_available()
    if reason:
        pytest.skip(f"no mainline ggml (llama-cpp-python): {reason}")
    return str(resolve_ggml_lib_dir(None))


def test_probe_survives_an_abort_and_goes_on(mainline_dir):
    """A ggml assertion in one child is reported, and the next thread count is probed in a
    new child: x's K (512) does not match the weights' (256), which ggml_mul_mat asserts."""
    prober = probe.Prober(mainline_dir, GgmlTarget(mainline_dir).worker_env(), "reinit")
    try:
        w = workloads.random_iq1m(np.random.default_rng(0), (8,), 256)
        bad = prober.probe("mul_mat", {"w": w, "x": np.ones((2, 512), np.float32)}, [1, 2], "silu")
        assert set(bad) == {1, 2}
        assert all(v.startswith("aborts (ggml.c:") and "GGML_ASSERT" in v for v in bad.values()), bad
        assert prober.probe("mul_mat", {"w": w, "x": np.ones((2, 256), np.float32)}, [1, 2], "silu") == {}
    finally:
        prober.close()
    assert not prober.folder.exists()


# -- the bindings' prepared calls ---------------------------------------------------------------

def _prepared_calls(kind: str, path: str, env: dict | None = None) -> dict:
    proc = subprocess.run([sys.executable, str(HERE / "prepared_calls.py"), kind, path], capture_output=True,
                          text=True, timeout=300, env=dict(os.environ, **(env or {})))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_our_prepared_calls_match_the_binding_methods():
    from harness.build import build

    found = _prepared_calls("kernels", str(build("release")))
    assert len(found) == 6 and all(v["equal"] for v in found.values()), found


def test_ggml_prepared_graphs_match_the_binding_methods(mainline_dir):
    found = _prepared_calls("ggml", mainline_dir, GgmlTarget(mainline_dir).worker_env())
    assert {k.split("/")[1] for k in found} == {"reset", "reinit"}
    for name, v in found.items():
        if name.startswith("moe_up_gate"):  # mainline composes it: ggml_silu in the graph, float64 in the binding
            assert v["max_abs_diff"] < 1e-3, (name, v)
        else:
            assert v["equal"], (name, v)


# -- report: synthetic summary ------------------------------------------------------------------

def _rec(op, tokens, threads, ours_s, ggml_s=None, failure=None, **extra):
    s = {"op": op, "k": 512, "rows": 16, "tokens": tokens, "threads": threads, "ops": 1e9, "bytes": 1e6,
         "pp_bit_exact": True, "ggml_failure": failure}
    if op != "mul_mat":
        s.update(experts=4, top_k=2)
    for mode, t in (("ours", ours_s), ("ours_pp", ours_s / 2)):
        s[mode] = measure.summary(_measurement([t, t, t], cores=[threads] * 3), 1e9)
    s["ggml"] = measure.summary(_measurement([ggml_s] * 3), 1e9) if ggml_s else None
    s["ratio"] = measure.ratio([ours_s], [ggml_s]) if ggml_s else None
    s["ratio_pp"] = measure.ratio([ours_s / 2], [ggml_s]) if ggml_s else None
    s["ratio_paired"] = s["ratio"]
    s["ratio_cpu"] = s["ratio"] if threads == 1 else None
    return dict(s, **extra)


def _summary(records):
    return {"info": {"ours": {"version": "0.1.0", "isa": "avx512vnni", "build": "b"},
                     "ggml": {"version": "unknown", "identity": "ik_llama.cpp-like (...)", "lib_dir": "/ik/lib",
                              "moe_composition": "ggml_moe_up_gate", "work_method": "reinit", "probe": "probed"}},
            "smoke": True, "threads": [1, 2], "reps": 3, "min_time_s": 0.02, "seed": 0, "elapsed_s": 1.0,
            "peak": {"int8_gops": {"1": 400.0, "2": 800.0}, "read_gbs": {"1": 5.0, "2": 6.0},
                     "int8_samples": {"1": [390.0, 400.0], "2": [800.0]}},
            "records": records, "targets": report.targets(records, None)}


SYNTHETIC = [_rec("mul_mat", 1, 1, 0.01, 0.02), _rec("mul_mat", 1, 2, 0.006, 0.02),
             _rec("moe_up_gate", 1, 1, 0.05, failure=SEED_ABORT), _rec("moe_up_gate", 1, 2, 0.03, failure=SEED_ABORT),
             _rec("moe_up_gate", 128, 1, 0.5, 1.0,
                  work_ab={"methods": ["reset", "reinit"], "ratio": 1.004, "paired": 0.998, "cpu_ratio": 1.001})]


def test_markdown_shows_ratios_and_how_ggml_died():
    md = report.markdown(_summary(SYNTHETIC))
    rows = {line.split(" | ")[0] + " | " + line.split(" | ")[1]: line for line in md.splitlines()
            if line.startswith("| mul_mat") or line.startswith("| moe")}
    assert "| 2.00 | 2.00 |" in rows["| mul_mat K=M=512 N=1 | 1"]  # ours/ggml and paired
    died = rows["| moe 4x16x512 top2 T=1 | 2"]
    assert f"| {SEED_ABORT} | - | - | - |" in died
    assert "ik_llama.cpp-like" in md and "emptied by reinit" in md
    assert "## ggml work context: reset against reinit (same run)" in md and "| 1.004 | 0.998 | 1.001 |" in md
    assert SEED_ABORT in report.line(SYNTHETIC[2]) and "ratio" not in report.line(SYNTHETIC[2])


def test_targets_skip_shapes_ggml_did_not_run():
    names = [t["target"] for t in report.targets(SYNTHETIC, None)]
    assert "moe T=128 1 thread(s) >= 1.3x ggml" in names
    assert not any("T=1 " in n for n in names)
    mm = next(t for t in report.targets(SYNTHETIC, None) if t["target"] == "mul_mat N=1 1 thread >= 1.5x ggml")
    assert mm["ours"] == {"met": True, "detail": "2.00x"}


def test_contended_multi_thread_targets_say_so():
    rec = {"threads": 2, "ours": {"cores_median": 1.1}, "ours_pp": {"cores_median": 1.95}}
    assert report.cores_note(rec, "ours") == ", got 1.10 cores"
    assert report.cores_note(rec, "ours_pp") == ""
    assert report.cores_note(dict(rec, threads=1), "ours") == ""


def test_plot_keeps_curves_readable_beside_the_peak(tmp_path):
    """Issue 15: peak lines 100x above the curves flattened them on a linear axis. Log GOP/s
    keeps both libraries' curves apart; a shape ggml died on is marked, not drawn as 0."""
    import matplotlib.pyplot as plt

    summary = _summary(SYNTHETIC)
    fig = report.figure(summary)
    try:
        axes = fig.axes
        assert len(axes) == 2 and all(ax.get_yscale() == "log" for ax in axes)
        labels = [line.get_label() for line in axes[1].get_lines()]
        assert "ggml died, 1 thr" in labels and "int8 peak, 2 thr" in labels
    finally:
        plt.close(fig)
    report.write(tmp_path, summary)
    assert (tmp_path / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((tmp_path / "bench.json").read_text()) == summary
    assert (tmp_path / "bench.md").read_text() == report.markdown(summary)


# -- a real smoke run (mainline ggml through llama-cpp-python, when installed) -----------------

@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    return out, _bench(out, "--reps", "3", "--min-time", "0.005")


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
        assert r["ops"] == workloads.shape_ops(r) > 0
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


def _check_ratios(summary, records):
    for r in records:
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
        # the same product on both sides (ggml rounds differently; ik requantizes to int8: loose)
        assert r["max_rel_diff_vs_ggml"] < 1e-2


def test_ratios_from_same_run(smoke_run):
    _, summary = smoke_run
    if "unavailable" in summary["info"]["ggml"]:
        pytest.skip(f"ggml not available: {summary['info']['ggml']['unavailable']}")
    assert all(r["ggml_failure"] is None for r in summary["records"])  # mainline runs every shape
    assert summary["info"]["ggml"]["work_method"] == "reset"
    _check_ratios(summary, summary["records"])


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


def test_targets_evaluated_from_records(smoke_run):
    _, summary = smoke_run
    assert summary["targets"] == report.targets(summary["records"], summary["peak"])
    for t in summary["targets"]:
        assert set(t) <= {"target", "ours", "ours_pp"} and len(t) > 1
        for mode in ("ours", "ours_pp"):
            if mode in t:
                assert set(t[mode]) == {"met", "detail"} and isinstance(t[mode]["met"], bool)


# -- the pre-fix ik_llama.cpp build (older API, aborting fused op) ------------------------------

def _ik_lib_dir() -> str:
    """The shared ik_llama.cpp cc51044e7 build (found as tests/ggml's fixtures find it), or a
    skip saying why it cannot run here; IQ1M_REQUIRE_IK=1 makes an absent build an error."""
    spec = importlib.util.spec_from_file_location("ggml_conftest", HERE.parent / "ggml" / "conftest.py")
    conftest = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conftest)
    lib = conftest.find_ik_lib_dir()
    if lib is None:
        reason = f"no shared/{conftest.IK_BUILD}/lib beside or above the checkout (set IQ1M_IK_LIB_DIR)"
        if os.environ.get("IQ1M_REQUIRE_IK"):
            pytest.fail(f"IQ1M_REQUIRE_IK is set but {reason}")
        pytest.skip(reason)
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    if "avx512_vnni" not in flags.split():
        pytest.skip(f"this CPU has no AVX-512 VNNI: {lib}/libggml.so was built for Zen 4 (GGML_NATIVE)")
    return str(lib)


@pytest.mark.slow
def test_bench_smoke_on_ik_llama_cpp(tmp_path):
    """bench --ggml-lib-dir on the pre-fix ik_llama.cpp: no ggml_reset (the work context is
    re-initialised), its fused ggml_moe_up_gate is what our fused op is compared with, and
    where it aborts (an expert with 1..31 tokens: T=1) the table says so while the run goes
    on to the shapes it can run (T=128: every expert gets >= 32 tokens)."""
    lib = _ik_lib_dir()
    summary = _bench(tmp_path, "--ggml-lib-dir", lib, "--tokens", "1,128", "--reps", "2", "--min-time", "0.005")
    g = summary["info"]["ggml"]
    assert g["work_method"] == "reinit" and g["fused_moe"] is True and "ggml_moe_up_gate" in g["moe_composition"]
    assert "ik_llama.cpp-like" in g["identity"] and "SILU" in g["unary_ops"]
    by = {(r["op"], r["tokens"], r["threads"]): r for r in summary["records"]}
    died = [r for (op, t, _), r in by.items() if op == "moe_up_gate" and t == 1]
    assert died and all(r["ggml_failure"] == SEED_ABORT and r["ggml"] is None and r["ratio"] is None for r in died)
    ran = [r for r in summary["records"] if r not in died]
    assert all(r["ggml_failure"] is None for r in ran)
    _check_ratios(summary, ran)
    md = (tmp_path / "bench.md").read_text()
    assert f"| {SEED_ABORT} | - | - | - |" in md
    assert (tmp_path / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
