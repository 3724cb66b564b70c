"""Run in a subprocess by test_fork.py, on the C ABI alone (ctypes): a multi-threaded op
(which starts the library's worker threads), then fork, then the same op with the same
thread count in the child, which has none of the parent's workers (the pool must start
over there, src/threadpool.c). Exit status 0: the child's output equals the parent's bit
for bit; 1: it differs, or the child failed or hung (SIGALRM after 30 s)."""
import sys

from abi_case import SmallMulMat, call_in_forked_child, load

case = SmallMulMat(load(sys.argv[1]))
before = case.run(4)
code = call_in_forked_child(case, 4, before)
print(f"child exit {code}" if code >= 0 else f"child killed by signal {-code}")
sys.exit(0 if code == 0 else 1)
