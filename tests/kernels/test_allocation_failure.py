"""Out of memory is a clear error, never a crash, a hang, or IQ1M_OK with outputs left
unwritten: each allocation the library makes in a call is failed in turn (an LD_PRELOADed
shim fails the n-th allocation whose caller is the library), in every op and on both paths,
and the library works again once memory is back."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.build import find_compiler

HERE = Path(__file__).parent


def test_every_allocation_failure_is_reported_and_leaves_the_library_working(iq1m_runner, tmp_path):
    if iq1m_runner.target.name != "kernels":
        pytest.skip("a property of the project's library")
    if iq1m_runner.variant.sanitizer:
        pytest.skip("a sanitizer runtime replaces the allocator the shim interposes")
    shim = tmp_path / "alloc_fail_shim.so"
    subprocess.run([find_compiler(), "-shared", "-fPIC", "-O2", "-Wall", "-Wextra", "-o", str(shim),
                    str(HERE / "alloc_fail_shim.c")], check=True, capture_output=True, text=True)
    proc = subprocess.run([sys.executable, str(HERE / "alloc_fail_child.py"), str(iq1m_runner.library), str(shim)],
                          capture_output=True, text=True, timeout=600, env=dict(os.environ, LD_PRELOAD=str(shim)))
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}{proc.stderr[-3000:]}"


def test_unloading_the_library_frees_every_block_it_holds(iq1m_runner, tmp_path):
    """The thread pool keeps its scratch between calls by design; the destructor that runs
    when the library is unloaded (a plugin host's dlclose) must give it all back."""
    if iq1m_runner.target.name != "kernels":
        pytest.skip("a property of the project's library")
    if iq1m_runner.variant.sanitizer:
        pytest.skip("a sanitizer runtime replaces the allocator the shim interposes")
    shim = tmp_path / "alloc_fail_shim.so"
    subprocess.run([find_compiler(), "-shared", "-fPIC", "-O2", "-Wall", "-Wextra", "-o", str(shim),
                    str(HERE / "alloc_fail_shim.c")], check=True, capture_output=True, text=True)
    proc = subprocess.run([sys.executable, str(HERE / "unload_child.py"), str(iq1m_runner.library), str(shim)],
                          capture_output=True, text=True, timeout=300, env=dict(os.environ, LD_PRELOAD=str(shim)))
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}{proc.stderr[-3000:]}"
