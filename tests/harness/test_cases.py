"""Case files: exact round trip, and a one-line error (exit 2) for every kind of bad file."""
import json
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from harness import strategies as hs
from harness.options import KernelOptions
from harness.cases import FORMAT_VERSION, load_arrays, load_case, save_arrays, save_case
from harness.errors import CaseFormatError


@pytest.fixture
def case():
    c = hs.pinned_moe_case("moe_up_gate", [3, 0, 33], ["scalar"], rows=5, k=512, seed=7, act="gelu")
    c.info["note"] = "made by a test"
    return c


def test_round_trip_is_exact(tmp_path, case):
    path = save_case(case, tmp_path / "c.npz")
    back = load_case(path)
    assert back.op == case.op and back.act == case.act and back.runs == case.runs and back.info == case.info
    for name, a in case.arrays.items():
        assert back.arrays[name].dtype == a.dtype and np.array_equal(back.arrays[name].view(np.uint8),
                                                                     a.view(np.uint8))
    assert back.digest() == case.digest()


def test_truncated_file_is_rejected(tmp_path, case):
    path = save_case(case, tmp_path / "c.npz")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CaseFormatError, match="c.npz"):
        load_case(path)


def test_tampered_array_is_rejected(tmp_path, case):
    path = save_case(case, tmp_path / "c.npz")
    arrays, meta = load_arrays(path)
    arrays["x"][0, 0] += 1
    # rewrite with the old checksums: a tampered payload
    import io
    buf = io.BytesIO()
    np.savez(buf, __meta__=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **arrays)
    path.write_bytes(buf.getvalue())
    with pytest.raises(CaseFormatError, match="checksum"):
        load_case(path)


def test_newer_format_is_rejected(tmp_path, case):
    path = save_case(case, tmp_path / "c.npz")
    arrays, meta = load_arrays(path)
    meta["format_version"] = FORMAT_VERSION + 1
    save_arrays(path, arrays, meta)
    with pytest.raises(CaseFormatError, match="newer"):
        load_case(path)


def test_not_a_case_file(tmp_path):
    path = tmp_path / "x.npz"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("a.npy", b"junk")
    with pytest.raises(CaseFormatError):
        load_case(path)


@pytest.mark.parametrize("damage", ["truncate", "missing", "newer"])
def test_cli_repro_bad_case_exits_2_with_one_line(tmp_path, case, damage):
    path = save_case(case, tmp_path / "c.npz")
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:100])
    elif damage == "missing":
        path.unlink()
    else:
        arrays, meta = load_arrays(path)
        meta["format_version"] = 99
        save_arrays(path, arrays, meta)
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "repro", str(path)], capture_output=True, text=True)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "c.npz" in lines[0] and "Traceback" not in proc.stderr


def test_case_rejects_unknown_operation():
    with pytest.raises(ValueError, match="unknown operation"):
        hs.Case("conv", {"x": np.zeros((1, 256), np.float32)}, [KernelOptions()])
