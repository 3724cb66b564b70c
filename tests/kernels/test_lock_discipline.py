"""The thread pool's locking is checked directly, not only through outputs: a preloaded shim
watches every mutex operation the library makes while calls grow and reuse the pool, in
every op and on both paths, and while unloading the library stops the pool. An unlock of a mutex another thread holds opens a race that an
output shows only by chance; the shim shows it on every call that makes it."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.build import find_compiler

HERE = Path(__file__).parent


def test_every_mutex_the_library_unlocks_is_held_by_the_unlocking_thread(iq1m_runner, tmp_path):
    if iq1m_runner.target.name != "kernels":
        pytest.skip("a property of the project's library")
    if iq1m_runner.variant.sanitizer:
        pytest.skip("a sanitizer runtime intercepts the pthread functions the shim interposes")
    shim = tmp_path / "lock_check_shim.so"
    subprocess.run([find_compiler(), "-shared", "-fPIC", "-O2", "-Wall", "-Wextra", "-pthread", "-o", str(shim),
                    str(HERE / "lock_check_shim.c"), "-ldl"], check=True, capture_output=True, text=True)
    proc = subprocess.run([sys.executable, str(HERE / "lock_check_child.py"), str(iq1m_runner.library), str(shim)],
                          capture_output=True, text=True, timeout=300, env=dict(os.environ, LD_PRELOAD=str(shim)))
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}{proc.stderr[-3000:]}"
    assert "mutex operations checked" in proc.stdout
