"""The library in a process that forks after using it (multiprocessing's fork start method,
a server that forks workers): the child has none of the parent's worker threads, and its
multi-threaded calls must still run and give the same bits."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.targets import sanitizer_environment


def test_multithreaded_op_in_a_forked_child(iq1m_runner):
    if iq1m_runner.target.name != "kernels":
        pytest.skip("a property of the project's thread pool")
    if iq1m_runner.variant.sanitizer == "thread":
        pytest.skip("ThreadSanitizer does not support threads started after a multi-threaded fork")
    env = dict(os.environ, **sanitizer_environment(iq1m_runner.variant))
    proc = subprocess.run([sys.executable, str(Path(__file__).with_name("fork_child.py")), str(iq1m_runner.library)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, f"{proc.stdout}{proc.stderr[-3000:]}"


def test_fork_while_another_thread_is_inside_a_call(iq1m_runner):
    """A fork while a multi-threaded call runs in another thread copies the library's locks as
    that call holds them; the child, which has neither that thread nor the workers, must
    still run its own multi-threaded calls."""
    if iq1m_runner.target.name != "kernels":
        pytest.skip("a property of the project's thread pool")
    if iq1m_runner.variant.sanitizer:
        # GCC 12's ASan allocator takes no lock around fork: a child forked while the busy
        # thread allocates waits forever on the allocator's lock (seen in gdb: FutexWait under
        # SizeClassAllocator64::GetFromAllocator), whatever the library does
        pytest.skip("the sanitizer runtimes are not fork-safe while another thread allocates")
    proc = subprocess.run([sys.executable, str(Path(__file__).with_name("fork_during_call_child.py")),
                           str(iq1m_runner.library)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{proc.stdout}{proc.stderr[-3000:]}"
