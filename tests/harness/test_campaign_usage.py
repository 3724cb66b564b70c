"""Input mistakes are usage errors: exit 2, one line on stderr, nothing saved as a kernel
failure, no library built. `fuzz` and `case-from-gguf` options, checked before any work."""
import re
import subprocess
import sys

import pytest

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


