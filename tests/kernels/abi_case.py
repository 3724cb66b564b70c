"""The library's C ABI alone (ctypes), for the tests whose checks need a process of their
own (fork_child.py, thread_start_child.py): one small mul_mat case and a call of it."""
import ctypes

import numpy as np

import reference


class Options(ctypes.Structure):  # iq1m_options (tests/kernels/test_header_constants.py checks it)
    _fields_ = [(name, ctypes.c_int32) for name in ("n_threads", "isa", "repack_threshold", "fused", "prepacked")]


def load(path: str) -> ctypes.CDLL:
    lib = ctypes.CDLL(path)
    p, i64 = ctypes.c_void_p, ctypes.c_int64
    lib.iq1m_mul_mat.argtypes = [p, i64, i64, p, i64, p, ctypes.POINTER(Options)]
    lib.iq1m_default_options.argtypes = [ctypes.POINTER(Options)]
    lib.iq1m_last_error.restype = ctypes.c_char_p
    return lib


class SmallMulMat:
    """64 rows x K = 512, 9 tokens: 4 panels, so 4 threads all have rows."""

    def __init__(self, lib: ctypes.CDLL, seed: int = 3):
        rng = np.random.default_rng(seed)
        self.lib, self.rows, self.k, self.n_tokens = lib, 64, 512, 9
        n = self.rows * self.k // reference.QK_K
        self.w = reference.encode_fields(reference.IQ1MFields(
            grid_index=rng.integers(0, 2048, (n, 32), dtype=np.uint16), delta_negative=rng.random((n, 32)) < 0.5,
            scale=rng.integers(0, 8, (n, 16), dtype=np.uint8),
            d_bits=np.full(n, 0x2c00, np.uint16))).reshape(self.rows, -1)
        self.x = rng.standard_normal((self.n_tokens, self.k)).astype(np.float32)

    def call(self, n_threads: int) -> tuple[int, np.ndarray]:
        """(status, output) of iq1m_mul_mat with n_threads."""
        opt = Options()
        self.lib.iq1m_default_options(ctypes.byref(opt))
        opt.n_threads = n_threads
        out = np.zeros((self.n_tokens, self.rows), np.float32)
        status = self.lib.iq1m_mul_mat(self.w.ctypes.data, self.rows, self.k, self.x.ctypes.data, self.n_tokens,
                                       out.ctypes.data, ctypes.byref(opt))
        return status, out

    def run(self, n_threads: int) -> np.ndarray:
        status, out = self.call(n_threads)
        if status != 0:
            raise RuntimeError(f"iq1m_mul_mat returned {status}: {self.lib.iq1m_last_error().decode()}")
        return out
