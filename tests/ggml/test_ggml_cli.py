"""The command line on the ggml target: info, repro of a saved ggml case (the target and
its environment come from the case file), a short fuzz campaign with findings, and the
one-line errors of a bad library directory."""
import json
import subprocess
import sys

from harness import strategies as hs
from harness.cases import load_case, save_case


def _cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


def _lib_args(lib_dir):
    return ["--ggml-lib-dir", lib_dir] if lib_dir else []


def test_info(ggml_lib_dir):
    proc = _cli("info", "--target", "ggml", *_lib_args(ggml_lib_dir), "--ggml-env", "GGML_CPU_TILED_MM=0")
    assert proc.returncode == 0, proc.stderr
    assert "IQ1_M=" in proc.stdout and "Q8_K:" in proc.stdout and "GGML_CPU_TILED_MM=0" in proc.stdout


def test_bad_lib_dir_is_one_line_exit_2(tmp_path):
    proc = _cli("info", "--target", "ggml", "--ggml-lib-dir", str(tmp_path))
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "no libggml.so or libggml-base.so" in proc.stderr
    proc = _cli("info", "--ggml-env", "GGML_CPU_TILED_MM=0")
    assert proc.returncode == 2 and "need --target ggml" in proc.stderr


def test_repro_replays_the_case_target(ggml_runner, ggml_lib_dir, tmp_path):
    case = hs.pinned_moe_case("mul_mat_id", [12, 1], ["auto"], rows=24, k=512, top_k=1, seed=6)
    ggml_runner.execute(case, tmp_path / "case.npz")  # saved as the ggml runner saves it
    saved = load_case(tmp_path / "case.npz")
    assert saved.target == {"name": "ggml", "lib_dir": ggml_lib_dir, "env": {}}
    plain = _cli("repro", str(tmp_path / "case.npz"))
    assert plain.returncode == 0 and "target=ggml" in plain.stdout, plain.stdout + plain.stderr
    strict = _cli("repro", str(tmp_path / "case.npz"), "--strict-invariance")
    assert strict.returncode == 1 and "batch-divergence" in strict.stdout, strict.stdout + strict.stderr
    saved.target = dict(saved.target, env={"GGML_CPU_TILED_MM": "0"})  # recorded env is replayed
    save_case(saved, tmp_path / "untiled.npz")
    untiled = _cli("repro", str(tmp_path / "untiled.npz"), "--strict-invariance")
    assert untiled.returncode == 0, untiled.stdout + untiled.stderr


def test_fuzz_campaign_on_ggml(ggml_lib_dir, tmp_path):
    out = tmp_path / "campaign"
    proc = _cli("fuzz", "--target", "ggml", *_lib_args(ggml_lib_dir), "--minutes", "0.15", "--jobs", "1",
                "--ops", "mul_mat_id", "--threads", "1,2", "--seed", "1", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["cases"] > 0 and report["failures"] == []
    assert "findings" in proc.stderr or not (out / "findings").exists(), proc.stderr
