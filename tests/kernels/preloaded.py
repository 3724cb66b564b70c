"""For the tests that watch the library through an LD_PRELOADed shim (alloc_fail_shim.c,
lock_check_shim.c): compile the shim, then run a child script on the library with it
preloaded. The shims interpose allocator and pthread functions, which a sanitizer runtime
interposes too, and they watch the project's own library only."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.build import find_compiler

HERE = Path(__file__).parent


def run_child_with_shim(runner, tmp_path: Path, shim_source: str, child: str, *, libs: tuple[str, ...] = (),
                        timeout: float = 300) -> subprocess.CompletedProcess:
    """The child's result (`python child LIBRARY SHIM`); skips where the shim cannot work."""
    if runner.target.name != "kernels":
        pytest.skip("a property of the project's library")
    if runner.variant.sanitizer:
        pytest.skip("a sanitizer runtime interposes the functions the shim interposes")
    shim = tmp_path / Path(shim_source).with_suffix(".so").name
    subprocess.run([find_compiler(), "-shared", "-fPIC", "-O2", "-Wall", "-Wextra", "-pthread", "-o", str(shim),
                    str(HERE / shim_source), *libs], check=True, capture_output=True, text=True)
    return subprocess.run([sys.executable, str(HERE / child), str(runner.library), str(shim)], capture_output=True,
                          text=True, timeout=timeout, env=dict(os.environ, LD_PRELOAD=str(shim)))
