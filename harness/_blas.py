"""One BLAS thread in harness processes.

The reference's matrix products are small (one block's tokens x 256 x rows) and the cores
are busy with the kernels under test: OpenBLAS's own threads then spin on a core the
worker needs, and a product cost 5-12x the CPU time of a single-threaded one on this
project's 2-core host (docs/performance.md). Set before numpy loads OpenBLAS, the usual
environment variables do it; when numpy is already loaded, the library's
`openblas_set_num_threads` is called through ctypes (found among the loaded libraries, as
threadpoolctl does). Nothing happens when neither applies (another BLAS, another OS).
"""
from __future__ import annotations

import ctypes
import os
import sys

_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def single_threaded_blas() -> None:
    if os.environ.get("IQ1M_BLAS_THREADS"):  # an explicit choice wins
        return
    if "numpy" not in sys.modules:
        for var in _VARS:
            os.environ.setdefault(var, "1")
        return
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "openblas" in line.lower() and "/" in line}
    except OSError:
        return
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for name in ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads",
                     "openblas_set_num_threads64_", "openblas_set_num_threads"):
            fn = getattr(lib, name, None)
            if fn is not None:
                fn.argtypes, fn.restype = [ctypes.c_int], None
                fn(1)
                break
