"""Run by test_lock_discipline.py with lock_check_shim.so preloaded, on the C ABI alone.
Calls that grow the thread pool step by step (2, 4, 8, 16 threads) and reuse it, in every op
and on both paths, with the shim checking each of the library's mutex operations: no thread
may unlock a mutex it does not hold or lock one it already holds, and no call may return
with a mutex of the library still held by the caller. Each call must also give the
single-threaded bits. Last, the library is unloaded (dlclose), so its destructor stops the
pool under the same checks, and must join each thread it started, once. Exit status 0: all held, and the shim saw the library's
operations (so it is preloaded); 1: a violation or a differing output, printed."""
import _ctypes
import ctypes
import signal
import sys

import numpy as np

from abi_case import every_op_case, library_span, load

KINDS = {1: "a mutex unlocked by a thread that does not hold it", 2: "a mutex locked by the thread that holds it",
         3: "more mutexes or threads than the shim can track", 4: "a join of a thread the library did not start"}

shim = ctypes.CDLL(sys.argv[2])
shim.lock_check_arm.argtypes = [ctypes.c_size_t, ctypes.c_size_t]
shim.lock_check_checked.restype = shim.lock_check_violations.restype = ctypes.c_long
shim.lock_check_held_by_me.restype = shim.lock_check_unjoined.restype = ctypes.c_long
shim.lock_check_first_caller.restype = ctypes.c_size_t
lib = load(sys.argv[1])
lo, hi = library_span(sys.argv[1])

CASES = every_op_case(lib)


def violations(where: str) -> list[str]:
    n = shim.lock_check_violations()
    caller = shim.lock_check_first_caller()
    at = f"library offset {caller - lo:#x}" if lo <= caller < hi else "outside the library: a tail call"
    return [f"{where}: {n} violation(s), the first {KINDS[shim.lock_check_first_kind()]} (caller {at})"] if n else []


signal.alarm(120)
single = {name: case.run(1) for name, case in CASES.items()}
shim.lock_check_arm(lo, hi)
failures = []
for n_threads in (2, 4, 8, 16, 4):
    for name, case in CASES.items():
        out = case.run(n_threads)
        where = f"{name}, {n_threads} threads"
        if not np.array_equal(out.view(np.uint32), single[name].view(np.uint32)):
            failures.append(f"{where}: other bits than 1 thread")
        if shim.lock_check_held_by_me():
            failures.append(f"{where}: the call returned holding {shim.lock_check_held_by_me()} of the library's mutexes")
        failures += violations(where)
        if failures:
            break
    if failures:
        break
total = shim.lock_check_checked()
if not failures:
    _ctypes.dlclose(lib._handle)  # nothing calls into the library after this
    if shim.lock_check_checked() == total:
        failures.append("unloading the library made no mutex operation: did its destructor run?")
    failures += violations("unloading the library (its destructor stops the pool)")
    if shim.lock_check_unjoined():
        failures.append(f"unloading the library left {shim.lock_check_unjoined()} of its threads unjoined")
    total = shim.lock_check_checked()
    shim.lock_check_arm(0, 0)  # the library's addresses are free for other mappings now
if not failures and total == 0:
    failures.append("the shim saw no mutex operation of the library: is it preloaded?")
print("\n".join(failures) or f"ok: {total} mutex operations checked")
sys.exit(1 if failures else 0)
