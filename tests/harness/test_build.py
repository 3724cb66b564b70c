"""The build driver: variants, caching, and one-line errors for a broken environment."""
import os
import re
import subprocess
import sys

import pytest

from harness.build import KERNELS_DIR, build, find_cmake, find_compiler, known_faults, parse_variant
from harness.errors import UsageError


def test_unknown_variant_is_a_usage_error():
    with pytest.raises(UsageError, match="unknown build variant"):
        parse_variant("debugg")
    with pytest.raises(UsageError, match="fault name"):
        parse_variant("fault:Bad Name")


def test_misspelled_fault_point_is_refused_naming_the_known_ones():
    with pytest.raises(UsageError) as info:
        parse_variant("fault:lossy_repak")
    message = str(info.value)
    assert "\n" not in message and "'lossy_repak'" in message
    assert all(name in message for name in known_faults())
    with pytest.raises(UsageError, match="unknown fault point 'nope'"):
        parse_variant("fault:row_race,nope")  # one bad name in a list is enough
    with pytest.raises(UsageError, match="listed twice"):
        parse_variant("fault:row_race,row_race")
    with pytest.raises(UsageError, match="fault name ''"):
        parse_variant("fault:row_race,")


def test_fault_points_combine():
    variant = parse_variant("fault:drop_tail_rows,duplicate_expert")
    assert "-DIQ1M_FAULT=drop_tail_rows,duplicate_expert" in variant.cmake_options
    assert variant.slug == "fault-drop_tail_rows-duplicate_expert"


def test_known_fault_points_are_the_documented_ones():
    """kernels/faults.txt (read by CMake and by parse_variant) and the table of FAULTS.md
    name the same points."""
    table = (KERNELS_DIR / "FAULTS.md").read_text()
    documented = re.findall(r"^\| `([a-z0-9_]+)` \|", table, flags=re.M)
    assert documented and sorted(documented) == sorted(known_faults())


def test_cmake_refuses_an_unknown_fault_point(tmp_path):
    proc = subprocess.run([find_cmake(), "-S", str(KERNELS_DIR), "-B", str(tmp_path / "b"),
                           "-DIQ1M_FAULT=row_race,lossy_repak"], capture_output=True, text=True)
    assert proc.returncode != 0
    assert "unknown fault point 'lossy_repak'" in proc.stderr and "lossy_repack" in proc.stderr


def test_set_but_missing_compiler_is_refused(monkeypatch):
    """CC set to something that does not exist is a one-line error, not a silent fallback to
    another compiler."""
    monkeypatch.setenv("CC", "/nonexistent/cc")
    with pytest.raises(UsageError, match="CC='/nonexistent/cc'") as info:
        find_compiler()
    assert "\n" not in str(info.value)
    monkeypatch.delenv("CC")
    assert find_compiler()  # this machine has one on PATH


def test_set_but_missing_compiler_is_one_line_from_the_cli(tmp_path):
    env = dict(os.environ, CC="/nonexistent/cc", IQ1M_CACHE_DIR=str(tmp_path / "cache"))
    proc = _cli("build", env=env)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "/nonexistent/cc" in proc.stderr


def test_second_build_reuses_the_cache():
    first = build("release")
    log = first.with_name("build.log")
    stamp = log.stat().st_mtime_ns
    assert build("release") == first
    assert log.stat().st_mtime_ns == stamp, "CMake ran again for an unchanged tree"


def test_corrupt_cached_library_is_rebuilt():
    lib = build("release")
    good = lib.read_bytes()
    lib.unlink()  # a new file: the session's worker may have the old one mapped
    lib.write_bytes(good[:1000])
    assert build("release").read_bytes() == good


def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, env=env)


def test_missing_compiler_is_one_line(tmp_path):
    env = dict(os.environ, CC="/nonexistent/cc", PATH=str(tmp_path), IQ1M_CACHE_DIR=str(tmp_path / "cache"))
    proc = _cli("build", env=env)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "compiler" in proc.stderr


def test_library_for_another_machine_is_one_line(tmp_path):
    from harness.errors import WorkerStartError
    from harness.worker import Worker

    fake = tmp_path / "libiq1m.so"
    fake.write_bytes(b"\x7fELF" + b"\0" * 60)  # not loadable here
    worker = Worker({"name": "kernels", "library": str(fake)}, tmp_path)
    with pytest.raises(WorkerStartError, match="could not load") as info:
        worker.start()
    assert "\n" not in str(info.value)
    assert worker._server is None and "did not start" in worker.fork_server_error  # and it was reaped
