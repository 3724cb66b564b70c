"""Input mistakes are usage errors: exit 2, one line on stderr, nothing saved as a kernel
failure, no library built. `fuzz` and `case-from-gguf` options, checked before any work."""
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import reference
from harness.build import KERNELS_DIR
from harness.cli import main
from harness.targets import GgmlTarget, KernelsTarget

FUZZ_MISTAKES = [
    (["--threads", "100000"], "thread counts must be 1..1024"),
    (["--threads", "0"], "thread counts must be 1..1024"),
    (["--threads", "1,x"], "expected comma-separated integers"),
    (["--threads", ","], "empty list"),
    (["--minutes", "inf"], "must be a finite number of minutes"),
    (["--minutes", "nan"], "must be a finite number of minutes"),
    (["--minutes", "0"], "must be a finite number of minutes"),
    (["--minutes", "-1"], "must be a finite number of minutes"),
    (["--minutes", "abc"], "invalid float value"),
    (["--jobs", "0"], "--jobs 0: must be >= 1"),
    (["--isas", "neon"], "unknown SIMD level(s) neon"),
    (["--isas", "avx2", "--target", "ggml", "--ggml-lib-dir", "/nonexistent"], "has no selectable SIMD level"),
    (["--threads", "600", "--target", "ggml", "--ggml-lib-dir", "/nonexistent"], "thread counts must be 1..512"),
    (["--ops", ","], "no operation given"),
    (["--ops", "mul_mat,foo"], "unknown operation(s) ['foo']"),
    (["--db", "http://x"], "expected a directory or redis://"),
    (["--shrink-grace", "-1"], "--shrink-grace -1.0: must be a finite number of seconds >= 0"),
    (["--shrink-grace", "inf"], "must be a finite number of seconds"),
    (["--out", "{file}"], "exists and is not a directory"),
    (["--db", "{file}"], "exists and is not a directory"),
]


def _one_line(err: str, message: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert message in lines[0] and lines[0].startswith("iq1m-harness"), err


@pytest.mark.parametrize("args,message", FUZZ_MISTAKES, ids=[" ".join(a) for a, _ in FUZZ_MISTAKES])
def test_fuzz_option_mistakes_exit_2_with_one_line(tmp_path, capsys, args, message):
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    out = tmp_path / "out"
    argv = ["fuzz", "--minutes", "0.01", "--out", str(out)] + [a.format(file=a_file) for a in args]
    try:
        status = main(argv)
    except SystemExit as exc:  # argparse's own errors
        status = exc.code
    assert status == 2
    _one_line(capsys.readouterr().err, message)
    assert not (out / "failures").exists() and not (out / "jobs").exists()


def test_the_command_line_exits_2_with_one_line_too(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "fuzz", "--threads", "100000", "--out",
                           str(tmp_path / "o")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    _one_line(proc.stderr, "thread counts must be 1..1024")
    assert not (tmp_path / "o").exists()


def test_target_limits_match_the_sources():
    header = (KERNELS_DIR / "src" / "threadpool.h").read_text()
    assert int(re.search(r"#define IQ1M_MAX_THREADS (\d+)", header).group(1)) == KernelsTarget.max_threads
    assert set(KernelsTarget.isa_names) == {"scalar", "avx2", "avx512vnni"}
    assert GgmlTarget.isa_names == ()


# -- case-from-gguf ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def model(tmp_path_factory):
    from gguf import GGMLQuantizationType, GGUFWriter

    rng = np.random.default_rng(1)

    def blocks(n):
        fields = reference.IQ1MFields(grid_index=rng.integers(0, 2048, (n, 32), dtype=np.uint16),
                                      delta_negative=rng.random((n, 32)) < 0.5,
                                      scale=rng.integers(0, 8, (n, 16), dtype=np.uint8),
                                      d_bits=np.float16(np.exp2(rng.uniform(-10, -4, n))).view(np.uint16))
        return reference.encode_fields(fields)

    path = tmp_path_factory.mktemp("gguf") / "tiny.gguf"
    w = GGUFWriter(str(path), "llama")
    w.add_tensor("blk.0.ffn_up_exps.weight", blocks(3 * 4).reshape(3, 4, -1), raw_dtype=GGMLQuantizationType.IQ1_M)
    w.add_tensor("blk.0.ffn_gate_exps.weight", blocks(3 * 4).reshape(3, 4, -1), raw_dtype=GGMLQuantizationType.IQ1_M)
    w.add_tensor("blk.0.attn_q.weight", blocks(4).reshape(4, -1), raw_dtype=GGMLQuantizationType.IQ1_M)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


UP = ["--tensor", "blk.0.ffn_up_exps.weight"]
GGUF_MISTAKES = [
    (UP + ["--threads", "0"], "thread counts must be 1..512"),
    (UP + ["--threads", "100000"], "thread counts must be 1..512"),
    (UP + ["--threads", ""], "empty list"),
    (UP + ["--top-k", "0"], "--top-k 0: must be 1..3"),
    (UP + ["--top-k", "20"], "--top-k 20: must be 1..3"),
    (UP + ["--experts", "0:2", "--top-k", "3"], "--top-k 3: must be 1..2"),
    (["--tensor", "blk.0.attn_q.weight", "--top-k", "2"], "--top-k: mul_mat routes no tokens"),
    (UP + ["--act", "gelu"], "--act: mul_mat_id has no activation"),
    (UP + ["--routing", "1,2,3", "--tokens", "5"], "give one"),
    (UP + ["--tokens", "-1"], "--tokens must be >= 0"),
    (UP + ["--seed", "-3"], "--seed -3: must be >= 0"),
]


@pytest.mark.parametrize("args,message", GGUF_MISTAKES, ids=[" ".join(a[2:]) for a, _ in GGUF_MISTAKES])
def test_case_from_gguf_mistakes_exit_2_with_one_line(model, tmp_path, capsys, args, message):
    out = tmp_path / "c.npz"
    status = main(["case-from-gguf", str(model), *args, "--out", str(out)])
    assert status == 2
    _one_line(capsys.readouterr().err, message)
    assert not out.exists()


def test_case_from_gguf_defaults_still_work(model, tmp_path, capsys):
    out = tmp_path / "c.npz"
    assert main(["case-from-gguf", str(model), *UP, "--out", str(out)]) == 0
    from harness.cases import load_case

    case = load_case(out)
    assert case.op == "mul_mat_id" and case.spec.top_k(case.arrays) == 2 and case.n_tokens == 8
    assert {r.n_threads for r in case.runs} == {1, 2, 4}
    assert Path(out).exists()


def test_redis_urls_name_the_campaign():
    from harness.campaign.fleet import parse_url
    from harness.errors import UsageError

    assert parse_url("redis://h:6379/ik-cc51044e7") == ("redis://h:6379", "ik-cc51044e7")
    assert parse_url("redis://h/2/nightly") == ("redis://h/2", "nightly")
    assert parse_url("redis://h:1") == ("redis://h:1", "default")
    for bad in ("redis://h/a/b", "redis://h/na me", "redis:///x"):
        with pytest.raises(UsageError):
            parse_url(bad)
