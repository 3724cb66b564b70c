"""Worker threads that cannot start (no address space left for their stacks) are a clear
error of the call, not a hang or a crash, and the thread pool recovers once they can."""
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest


def test_threads_that_cannot_start_are_an_error_and_the_pool_recovers(iq1m_runner):
    if iq1m_runner.target.name != "kernels":
        pytest.skip("a property of the project's thread pool")
    if iq1m_runner.variant.sanitizer:
        pytest.skip("a sanitizer runtime reserves terabytes of address space: a limit on it cannot be placed")
    proc = subprocess.run([sys.executable, str(Path(__file__).with_name("thread_start_child.py")),
                           str(iq1m_runner.library)], capture_output=True, text=True, env=dict(os.environ),
                          timeout=120)
    assert proc.returncode != -signal.SIGALRM, "a call hung (SIGALRM after 30 s): waiting for threads never started?"
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}{proc.stderr[-3000:]}"
