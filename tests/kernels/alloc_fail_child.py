"""Run by test_allocation_failure.py with alloc_fail_shim.so preloaded, on the C ABI alone.
For each case and n = 1, 2, ...: a forked child fails the library's n-th allocation in a
4-thread call, then calls again with nothing failing. The first call must return either
IQ1M_OK with the second call's bits (NaN-filled outputs, so an element left unwritten
shows) or IQ1M_ERR_NOMEM with a message about memory, and leave none of the library's blocks
allocated (a leak on the error path); the second must succeed. Ends when
a call makes fewer than n allocations. Exit status 0: every case held and each failed at
least one allocation (so the shim works); 1: a failure, printed."""
import ctypes
import os
import signal
import sys

import numpy as np

from abi_case import every_op_case, library_span, load

IQ1M_ERR_NOMEM = 7
N_THREADS = 4
NOT_REACHED = 10  # a child's exit status: the call made fewer than n allocations

shim = ctypes.CDLL(sys.argv[2])
shim.alloc_fail_arm.argtypes = [ctypes.c_size_t, ctypes.c_size_t, ctypes.c_long]
shim.alloc_fail_count.restype = ctypes.c_long
shim.alloc_fail_live.restype = ctypes.c_long
lib = load(sys.argv[1])
lo, hi = library_span(sys.argv[1])

CASES = every_op_case(lib)


def child(case, n: int) -> int:
    signal.alarm(30)
    shim.alloc_fail_arm(lo, hi, n)
    status, out = case.call(N_THREADS)
    made, live = shim.alloc_fail_count(), shim.alloc_fail_live()
    shim.alloc_fail_disarm()
    message = lib.iq1m_last_error().decode()
    again, want = case.call(N_THREADS)
    if again != 0:
        print(f"  after the failed allocation {n}, a call with nothing failing returns {again}: "
              f"{lib.iq1m_last_error().decode()}")
        return 1
    if live != 0:
        print(f"  allocation {n} failed, the call returned {status}, and left "
              + (f"{live} block(s) of the library allocated (a leak)" if live > 0 else "too many blocks to track"))
        return 1
    if made < n:
        return NOT_REACHED if status == 0 and np.array_equal(out.view(np.uint32), want.view(np.uint32)) else 1
    if status == 0:
        if not np.array_equal(out.view(np.uint32), want.view(np.uint32)):
            unwritten = int(np.isnan(out).sum())
            print(f"  allocation {n} failed, the call returned IQ1M_OK, and its output differs "
                  f"({unwritten} element(s) never written)")
            return 1
        return 0
    if status != IQ1M_ERR_NOMEM or "memory" not in message:
        print(f"  allocation {n} failed: status {status}, message {message!r} "
              f"(want {IQ1M_ERR_NOMEM}, IQ1M_ERR_NOMEM, and a message about memory)")
        return 1
    return 0


failed = False
for name, case in CASES.items():
    sys.stdout.flush()
    for n in range(1, 200):
        pid = os.fork()
        if pid == 0:
            try:
                code = child(case, n)
            except BaseException as exc:
                print(f"  {type(exc).__name__}: {exc}")
                code = 2
            sys.stdout.flush()
            os._exit(code)
        code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        if code == NOT_REACHED:
            break
        if code != 0:
            print(f"{name}: allocation {n}: " + (f"exit {code}" if code > 0 else f"killed by signal {-code}"))
            failed = True
    print(f"{name}: {n - 1} allocation(s), each failed in turn")
    if n == 1:
        print(f"{name}: no allocation of the library was seen: is the shim preloaded?")
        failed = True
sys.exit(1 if failed else 0)
