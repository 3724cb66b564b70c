"""Run in a subprocess by test_fork.py, on the C ABI alone (ctypes): one thread keeps
calling a 4-thread op while the main thread forks, so most forks land inside a call, with
the library's locks held by threads the child does not have. Each child calls the same op
with 4 threads and must give the single-threaded bits, promptly. Exit status 0: every child
did; 1: a child differed, failed or hung (SIGALRM after 20 s): the first such fork, printed."""
import signal
import sys
import threading
import time

from abi_case import SmallMulMat, call_in_forked_child, load

FORKS = 24

case = SmallMulMat(load(sys.argv[1]), n_tokens=40)
want = case.run(1)
stop = threading.Event()


def keep_calling() -> None:
    while not stop.is_set():
        case.run(4)


def outcome(code: int) -> str:
    if code > 0:
        return "gave other bits" if code == 1 else "raised"
    return f"was killed by {signal.Signals(-code).name}" + (" (it hung)" if -code == signal.SIGALRM else "")


busy = threading.Thread(target=keep_calling)
busy.start()
failures = []
try:
    for i in range(FORKS):
        time.sleep(0.001 * (i % 4))  # forks at different points of the busy thread's calls
        code = call_in_forked_child(case, 4, want, alarm=20)
        if code != 0:
            failures.append(f"fork {i}: the child's call {outcome(code)}")
            break
finally:
    stop.set()
    busy.join()
print("\n".join(failures) or f"ok: {FORKS} forks")
sys.exit(1 if failures else 0)
