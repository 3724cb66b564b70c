"""The library's C ABI called directly (ctypes), for the tests whose checks need a process of their
own (fork_child.py, thread_start_child.py, alloc_fail_child.py): small mul_mat and MoE
cases and calls of them."""
import ctypes
import os
import signal

import numpy as np

from harness.strategies import random_weights
from harness.targets.libiq1m import COptions, Library

IQ1M_ACT_SILU = 0


def load(path: str) -> ctypes.CDLL:
    """The raw CDLL, its functions typed by the harness's binding; the calls here go to it
    directly, so a status comes back as it is and an output array is the one passed in."""
    lib = Library(path).lib
    lib.iq1m_default_options.argtypes = [ctypes.POINTER(COptions)]
    return lib


def library_span(path: str) -> tuple[int, int]:
    """[lo, hi): the addresses the library at `path` is mapped at in this process, to tell a
    preloaded shim which callers are the library's."""
    library = os.path.realpath(path)
    with open("/proc/self/maps") as f:
        spans = [[int(a, 16) for a in line.split()[0].split("-")] for line in f if line.rstrip().endswith(library)]
    return min(s[0] for s in spans), max(s[1] for s in spans)


def options(lib: ctypes.CDLL, n_threads: int, fused: int = 1) -> COptions:
    opt = COptions()
    lib.iq1m_default_options(ctypes.byref(opt))
    opt.n_threads, opt.fused = n_threads, fused
    return opt


class AbiCase:
    """A call's status and its output, which starts as NaN so an element never written shows."""

    def __init__(self, lib: ctypes.CDLL):
        self.lib = lib

    def call(self, n_threads: int) -> tuple[int, np.ndarray]:
        raise NotImplementedError

    def run(self, n_threads: int) -> np.ndarray:
        status, out = self.call(n_threads)
        if status != 0:
            raise RuntimeError(f"{type(self).__name__} returned {status}: {self.lib.iq1m_last_error().decode()}")
        return out


class SmallMulMat(AbiCase):
    """64 rows x K = 512 (4 panels, so 4 threads all have rows); 9 tokens take the direct path,
    32 or more the repacked one."""

    def __init__(self, lib: ctypes.CDLL, n_tokens: int = 9, seed: int = 3):
        super().__init__(lib)
        rng = np.random.default_rng(seed)
        self.rows, self.k, self.n_tokens = 64, 512, n_tokens
        self.w = random_weights(rng, (self.rows,), self.k)
        self.x = rng.standard_normal((n_tokens, self.k)).astype(np.float32)

    def call(self, n_threads: int) -> tuple[int, np.ndarray]:
        out = np.full((self.n_tokens, self.rows), np.nan, np.float32)
        status = self.lib.iq1m_mul_mat(self.w.ctypes.data, self.rows, self.k, self.x.ctypes.data, self.n_tokens,
                                       out.ctypes.data, ctypes.byref(options(self.lib, n_threads)))
        return status, out


class SmallMoe(AbiCase):
    """3 experts x 64 rows x K = 512, 40 tokens with top_k = 2: expert 0 has every token (the
    repacked path), experts 1 and 2 fewer than 32 (the direct path), and some slots are unused.
    op: "mul_mat_id", or "moe_up_gate" fused (fused=1) or not."""

    def __init__(self, lib: ctypes.CDLL, op: str, fused: int = 1, seed: int = 5):
        super().__init__(lib)
        rng = np.random.default_rng(seed)
        self.op, self.fused = op, fused
        self.n_experts, self.rows, self.k, self.n_tokens, self.top_k = 3, 64, 512, 40, 2
        self.w_up, self.w_gate = (random_weights(rng, (self.n_experts * self.rows,), self.k) for _ in range(2))
        self.x = rng.standard_normal((self.n_tokens, self.k)).astype(np.float32)
        self.ids = np.stack([np.zeros(self.n_tokens, np.int32),
                             rng.choice(np.array([1, 2, -1], np.int32), self.n_tokens)], axis=1)

    def call(self, n_threads: int) -> tuple[int, np.ndarray]:
        out = np.full((self.n_tokens, self.top_k, self.rows), np.nan, np.float32)
        opt = ctypes.byref(options(self.lib, n_threads, self.fused))
        shape = (self.n_experts, self.rows, self.k, self.x.ctypes.data, self.n_tokens, self.ids.ctypes.data,
                 self.top_k)
        if self.op == "mul_mat_id":
            status = self.lib.iq1m_mul_mat_id(self.w_up.ctypes.data, *shape, out.ctypes.data, opt)
        else:
            status = self.lib.iq1m_moe_up_gate(self.w_up.ctypes.data, self.w_gate.ctypes.data, *shape,
                                               IQ1M_ACT_SILU, out.ctypes.data, opt)
        return status, out


def every_op_case(lib: ctypes.CDLL) -> dict[str, AbiCase]:
    """A case of each op, mul_mat on both paths and moe_up_gate fused and not, by name."""
    return {
        "mul_mat, 9 tokens (direct)": SmallMulMat(lib, 9),
        "mul_mat, 40 tokens (repacked)": SmallMulMat(lib, 40),
        "mul_mat_id": SmallMoe(lib, "mul_mat_id"),
        "moe_up_gate fused": SmallMoe(lib, "moe_up_gate", fused=1),
        "moe_up_gate unfused": SmallMoe(lib, "moe_up_gate", fused=0),
    }


def call_in_forked_child(case: AbiCase, n_threads: int, want: np.ndarray, alarm: int = 30) -> int:
    """Forks; the child runs the case and exits 0 if it gives `want`'s bits, 1 if other bits,
    2 if the call raised; SIGALRM ends it after `alarm` s (a hang). The child's exit code
    (negative: the signal that ended it)."""
    pid = os.fork()
    if pid == 0:
        signal.alarm(alarm)
        try:
            os._exit(0 if np.array_equal(case.run(n_threads).view(np.uint32), want.view(np.uint32)) else 1)
        except BaseException:
            os._exit(2)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
