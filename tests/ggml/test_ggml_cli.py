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
    plain = _cli("repro", str(tmp_path / "case.npz"), "--trust-case-target")
    assert plain.returncode == 0 and "target=ggml" in plain.stdout, plain.stdout + plain.stderr
    strict = _cli("repro", str(tmp_path / "case.npz"), "--strict", "--trust-case-target")
    assert strict.returncode == 1 and "batch-divergence" in strict.stdout, strict.stdout + strict.stderr
    saved.target = dict(saved.target, env={"GGML_CPU_TILED_MM": "0"})  # recorded env is replayed
    save_case(saved, tmp_path / "untiled.npz")
    untiled = _cli("repro", str(tmp_path / "untiled.npz"), "--strict", "--trust-case-target")
    assert untiled.returncode == 0, untiled.stdout + untiled.stderr


def test_fuzz_campaign_on_ggml(ggml_lib_dir, tmp_path):
    out = tmp_path / "campaign"
    proc = _cli("fuzz", "--target", "ggml", *_lib_args(ggml_lib_dir), "--minutes", "0.15", "--jobs", "1",
                "--ops", "mul_mat_id", "--threads", "1,2", "--seed", "1", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["cases"] > 0 and report["failures"] == []
    assert "findings" in proc.stderr or not (out / "findings").exists(), proc.stderr


def test_target_round_trip_and_env_parsing(tmp_path):
    import pytest

    from harness.errors import UsageError
    from harness.targets import GgmlTarget, KernelsTarget, from_choice, from_dict, parse_env
    from harness.targets.libggml import find_libraries

    t = GgmlTarget("/opt/ik/build", parse_env(["GGML_CPU_TILED_MM=0", "A=b=c"]))
    back = from_dict(t.to_dict())
    assert back.to_dict() == t.to_dict() and t.env == {"GGML_CPU_TILED_MM": "0", "A": "b=c"}
    assert t.worker_env()["GGML_NO_BACKTRACE"] == "1" and not t.invariance_fails
    assert from_dict(t.to_dict(), strict=True).invariance_fails and KernelsTarget().invariance_fails
    with pytest.raises(UsageError):
        parse_env(["NOVALUE"])
    with pytest.raises(UsageError):
        from_choice("cuda")
    with pytest.raises(UsageError):
        from_choice("kernels", lib_dir="/x")
    for name in ("libggml-base.so", "libggml-cpu.so", "libggml.so.0"):  # a versioned name is enough
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in find_libraries(tmp_path)] == ["libggml-base.so", "libggml-cpu.so", "libggml.so.0"]
    (tmp_path / "single").mkdir()
    (tmp_path / "single" / "libggml.so").write_bytes(b"")
    assert [p.name for p in find_libraries(tmp_path / "single")] == ["libggml.so"]


def test_single_library_layout(ggml_lib_dir, tmp_path):
    """A directory with one libggml.so (the older API generation's layout, e.g. ik_llama.cpp):
    here a shim linked against the real libraries, so every symbol resolves through it."""
    import shutil

    import pytest

    from harness.runner import Runner
    from harness.targets import GgmlTarget
    from harness.targets.ggml import resolve_ggml_lib_dir

    if shutil.which("gcc") is None:
        pytest.skip("needs gcc to link the shim")
    real = resolve_ggml_lib_dir(ggml_lib_dir or None)
    shim_dir = tmp_path / "single"
    shim_dir.mkdir()
    (tmp_path / "shim.c").write_text("int iq1m_test_shim;\n")
    libs = [f"-l:{p.name}" for p in sorted(real.glob("libggml*.so")) if p.name in
            ("libggml-base.so", "libggml-cpu.so", "libggml.so")]
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(shim_dir / "libggml.so"), str(tmp_path / "shim.c"),
                    "-Wl,--no-as-needed", f"-L{real}", *libs, f"-Wl,-rpath,{real}"], check=True)
    runner = Runner(GgmlTarget(str(shim_dir)), work_dir=tmp_path / "run")
    try:
        assert runner.hello["ggml"]["api"] == "single"
        assert runner.hello["ggml"]["libraries"] == [str(shim_dir / "libggml.so")]
        runner.check(hs.pinned_moe_case("mul_mat_id", [3, 9], ["auto"], rows=5, k=512, top_k=1, seed=9))
    finally:
        runner.close()
