"""Run in a subprocess by test_fork.py, on the C ABI alone (ctypes): a multi-threaded op
(which starts the library's worker threads), then fork, then the same op with the same
thread count in the child, which has none of the parent's workers (the pool must start
over there, src/threadpool.c). Exit status 0: the child's output equals the parent's bit
for bit; 1: it differs, or the child failed or hung (SIGALRM after 30 s)."""
import ctypes
import os
import signal
import sys

import numpy as np

import reference


class Options(ctypes.Structure):  # iq1m_options (tests/kernels/test_header_constants.py checks it)
    _fields_ = [(name, ctypes.c_int32) for name in ("n_threads", "isa", "repack_threshold", "fused", "prepacked")]


lib = ctypes.CDLL(sys.argv[1])
P, I64 = ctypes.c_void_p, ctypes.c_int64
lib.iq1m_mul_mat.argtypes = [P, I64, I64, P, I64, P, ctypes.POINTER(Options)]
lib.iq1m_default_options.argtypes = [ctypes.POINTER(Options)]

rng = np.random.default_rng(3)
rows, k, n_tokens = 64, 512, 9
n = rows * k // reference.QK_K
w = reference.encode_fields(reference.IQ1MFields(
    grid_index=rng.integers(0, 2048, (n, 32), dtype=np.uint16), delta_negative=rng.random((n, 32)) < 0.5,
    scale=rng.integers(0, 8, (n, 16), dtype=np.uint8), d_bits=np.full(n, 0x2c00, np.uint16))).reshape(rows, -1)
x = rng.standard_normal((n_tokens, k)).astype(np.float32)
opt = Options()
lib.iq1m_default_options(ctypes.byref(opt))
opt.n_threads = 4


def mul_mat() -> np.ndarray:
    out = np.zeros((n_tokens, rows), np.float32)
    status = lib.iq1m_mul_mat(w.ctypes.data, rows, k, x.ctypes.data, n_tokens, out.ctypes.data, ctypes.byref(opt))
    if status != 0:
        raise RuntimeError(f"iq1m_mul_mat returned {status}")
    return out


before = mul_mat()
pid = os.fork()
if pid == 0:
    signal.alarm(30)
    try:
        os._exit(0 if np.array_equal(mul_mat().view(np.uint32), before.view(np.uint32)) else 1)
    except BaseException:
        os._exit(2)
_, status = os.waitpid(pid, 0)
code = os.waitstatus_to_exitcode(status)
print(f"child exit {code}" if code >= 0 else f"child killed by signal {-code}")
sys.exit(0 if code == 0 else 1)
