"""The thread pool's locking is checked directly, not only through outputs: a preloaded shim
watches every mutex operation the library makes while calls grow and reuse the pool, in
every op and on both paths, and while unloading the library stops the pool. An unlock of a
mutex another thread holds opens a race that an output shows only by chance; the shim shows
it on every call that makes it."""
from preloaded import run_child_with_shim


def test_every_mutex_the_library_unlocks_is_held_by_the_unlocking_thread(iq1m_runner, tmp_path):
    proc = run_child_with_shim(iq1m_runner, tmp_path, "lock_check_shim.c", "lock_check_child.py", libs=("-ldl",))
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}{proc.stderr[-3000:]}"
    assert "mutex operations checked" in proc.stdout
