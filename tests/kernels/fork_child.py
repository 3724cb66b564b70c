"""Run in a subprocess by test_fork.py: a multi-threaded op (which starts the library's
worker threads), then fork, then the same op with the same thread count in the child,
which has none of the parent's workers (the pool must start over there, src/threadpool.c).
Exit status 0: the child's output equals the parent's bit for bit; 1: it differs; 2: the
child failed or hung (SIGALRM after 30 s)."""
import os
import signal
import sys

import numpy as np

import reference
from harness.binding import KernelOptions, Library
from harness.strategies import typical_scale_bits

lib = Library(sys.argv[1])
rng = np.random.default_rng(3)
rows, k, n_tokens = 64, 512, 9
n = rows * k // reference.QK_K
w = reference.encode_fields(reference.IQ1MFields(
    grid_index=rng.integers(0, 2048, (n, 32), dtype=np.uint16), delta_negative=rng.random((n, 32)) < 0.5,
    scale=rng.integers(0, 8, (n, 16), dtype=np.uint8), d_bits=typical_scale_bits(rng, n))).reshape(rows, -1)
x = rng.standard_normal((n_tokens, k)).astype(np.float32)
opt = KernelOptions(n_threads=4)
before = lib.mul_mat(w, x, opt)

pid = os.fork()
if pid == 0:
    signal.alarm(30)
    try:
        after = lib.mul_mat(w, x, opt)
        os._exit(0 if np.array_equal(after.view(np.uint32), before.view(np.uint32)) else 1)
    except BaseException:
        os._exit(2)
_, status = os.waitpid(pid, 0)
code = os.waitstatus_to_exitcode(status)
print(f"child exit {code}" if code >= 0 else f"child killed by signal {-code}")
sys.exit(0 if code == 0 else 1)
