"""The build driver: variants, caching, and one-line errors for a broken environment."""
import os
import subprocess
import sys

import pytest

from harness.build import build, parse_variant
from harness.errors import UsageError


def test_unknown_variant_is_a_usage_error():
    with pytest.raises(UsageError, match="unknown build variant"):
        parse_variant("debugg")
    with pytest.raises(UsageError, match="fault name"):
        parse_variant("fault:Bad Name")


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
