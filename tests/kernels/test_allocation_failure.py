"""Out of memory is a clear error, never a crash, a hang, or IQ1M_OK with outputs left
unwritten: each allocation the library makes in a call is failed in turn (an LD_PRELOADed
shim fails the n-th allocation whose caller is the library), in every op and on both paths,
and the library works again once memory is back."""
from preloaded import run_child_with_shim


def test_every_allocation_failure_is_reported_and_leaves_the_library_working(iq1m_runner, tmp_path):
    proc = run_child_with_shim(iq1m_runner, tmp_path, "alloc_fail_shim.c", "alloc_fail_child.py", timeout=600)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}{proc.stderr[-3000:]}"


def test_unloading_the_library_frees_every_block_it_holds(iq1m_runner, tmp_path):
    """The thread pool keeps its scratch between calls by design; the destructor that runs
    when the library is unloaded (a plugin host's dlclose) must give it all back."""
    proc = run_child_with_shim(iq1m_runner, tmp_path, "alloc_fail_shim.c", "unload_child.py")
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}{proc.stderr[-3000:]}"
