"""Run in a subprocess by test_thread_start.py, on the C ABI alone (ctypes). With the address
space limited to what the process maps now plus 1.5 MiB, a worker's 1 MiB stack fits at most
once: a 4-thread call must return IQ1M_ERR_THREADS, saying it could not start its 3 workers,
promptly, having started no more than one thread. With the limit lifted, the same call must
start the rest and give the single-threaded bits. Exit status 0: both hold; 1: a status or
an output differs (printed); a hang ends by SIGALRM after 30 s."""
import resource
import signal
import sys

import numpy as np

from abi_case import SmallMulMat, load

IQ1M_ERR_THREADS = 5

case = SmallMulMat(load(sys.argv[1]))
single = case.run(1)
signal.alarm(30)
soft, hard = resource.getrlimit(resource.RLIMIT_AS)
with open("/proc/self/status") as f:
    mapped = next(int(line.split()[1]) for line in f if line.startswith("VmSize:")) * 1024
resource.setrlimit(resource.RLIMIT_AS, (mapped + (3 << 19), hard))
try:
    status, _ = case.call(4)
finally:
    resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
message = case.lib.iq1m_last_error().decode()
failures = []
if status != IQ1M_ERR_THREADS or "3 worker threads" not in message:
    failures.append(f"with no room for the threads: status {status}, message {message!r} "
                    f"(want {IQ1M_ERR_THREADS}, IQ1M_ERR_THREADS, and a message about the 3 worker threads)")
status, out = case.call(4)
if status != 0:
    failures.append(f"with the limit lifted: status {status}, {case.lib.iq1m_last_error().decode()}")
elif not np.array_equal(out.view(np.uint32), single.view(np.uint32)):
    failures.append("with the limit lifted: 4 threads give other bits than 1 thread")
print("\n".join(failures) or "ok")
sys.exit(1 if failures else 0)
