"""A fuzz campaign on the pre-fix ik_llama.cpp build (slow): its two aborts in the fused op
(the seed's ggml.c:15254 below 32 tokens, iqk_mul_mat.cpp:740 at >= 32 tokens with rows not
a multiple of 8) are two failures, each minimised on its own."""
import json
import subprocess
import sys

import pytest

from harness.cases import load_case

pytestmark = [pytest.mark.slow, pytest.mark.ik]


def test_the_two_aborts_in_moe_up_gate_are_two_minimised_failures(ik_lib_dir, tmp_path):
    out = tmp_path / "campaign"
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "fuzz", "--target", "ggml", "--ggml-lib-dir",
                           ik_lib_dir, "--ops", "moe_up_gate", "--minutes", "1.5", "--jobs", "2", "--seed", "1",
                           "--out", str(out)], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 1, proc.stderr[-3000:]
    sigs = {f["signature"]: f for f in json.loads((out / "report.json").read_text())["failures"]}
    seed = sigs.get("SIGABRT: ggml.c:15254: fatal error")
    rows = sigs.get("SIGABRT: iqk_mul_mat.cpp:740: GGML_ASSERT(Nx%num_rows == 0) failed")
    assert seed and rows, list(sigs)
    assert seed["minimised"] and rows["minimised"], (seed["shrink"], rows["shrink"])
    assert load_case(seed["case"]).expert_token_counts().tolist() == [1]
    small = load_case(rows["case"])
    assert small.rows % 8 and small.expert_token_counts().tolist() == [32]


def test_a_one_minute_campaign_on_all_ops_saves_the_seed_abort_minimised_and_replayable(ik_lib_dir, tmp_path):
    """Issue 14's acceptance, as a user runs it: no extra flags or environment."""
    out = tmp_path / "campaign"
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "fuzz", "--target", "ggml", "--ggml-lib-dir",
                           ik_lib_dir, "--minutes", "1", "--out", str(out)], capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 1, proc.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    seed = [f for f in report["failures"] if f["op"] == "moe_up_gate" and "ggml.c:15254: fatal error" in f["signature"]]
    assert seed, [f["signature"] for f in report["failures"]]
    seed = seed[0]
    assert "ggml.c:15254: fatal error" in (out / "report.md").read_text()
    case = load_case(seed["case"])
    assert "fatal error" in case.info.get("stderr_tail", "")
    counts = [int(c) for c in case.expert_token_counts() if c]
    assert seed["minimised"] and len(counts) == 1 and 1 <= counts[0] < 32, (seed, case.describe())
    script = seed["script"]
    for argv, expected in (([sys.executable, script], 1),
                           ([sys.executable, script, "--target", "kernels"], 0),
                           ([sys.executable, "-m", "harness.cli", "repro", seed["case"], "--ggml-lib-dir", ik_lib_dir], 1),
                           ([sys.executable, "-m", "harness.cli", "repro", seed["case"], "--target", "kernels"], 0)):
        replay = subprocess.run(argv, capture_output=True, text=True, timeout=600)
        assert replay.returncode == expected, (argv, replay.stdout[-2000:], replay.stderr[-2000:])
