"""Workers come from a fork server that loaded the library once (harness.fork_server): a
worker that died is replaced by a fork. What a death reports must not change with it, and
a server that dies or cannot start must cost nothing but the speed."""
import os
import signal
import subprocess
import time

from harness import strategies as hs
from harness.fork_server import ForkedWorker
from harness.runner import Runner


def _case(runner):
    return hs.pinned_moe_case("mul_mat_id", [3], runner.isas, rows=16, k=256, top_k=1, threads=(1, 2))


def _parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def _wait_dead(pid: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] in "ZX":
                    return
        except FileNotFoundError:
            return
        time.sleep(0.02)
    raise AssertionError(f"process {pid} still runs")


def test_a_killed_worker_is_replaced_by_a_fork_of_the_server(tmp_path):
    with Runner("release", tmp_path) as runner:
        runner.check(_case(runner))
        first = runner.worker.proc
        server = runner.worker._server.proc.pid
        assert isinstance(first, ForkedWorker) and _parent_of(first.pid) == server
        assert len(os.listdir(f"/proc/{server}/task")) == 1, "forking a process with threads is unsafe"
        assert os.getpgid(first.pid) == first.pid, "a worker leads its own process group"
        os.kill(first.pid, signal.SIGSEGV)
        assert first.wait(timeout=30) == -signal.SIGSEGV, "the server reports the worker's own death"
        runner.check(_case(runner))
        second = runner.worker.proc
        assert second.pid != first.pid and _parent_of(second.pid) == server


def test_a_dead_server_is_a_plain_start_not_a_failure(tmp_path):
    with Runner("release", tmp_path) as runner:
        runner.check(_case(runner))
        worker = runner.worker.proc.pid
        os.kill(runner.worker._server.proc.pid, signal.SIGKILL)
        _wait_dead(worker)  # the server's death takes its workers (PR_SET_PDEATHSIG)
        runner.check(_case(runner))  # between cases: nothing lost, a new worker of the plain kind
        assert isinstance(runner.worker.proc, subprocess.Popen)
        assert "died" in runner.worker.fork_server_error


def test_the_fork_server_can_be_turned_off(tmp_path, monkeypatch):
    monkeypatch.setenv("IQ1M_FORK_SERVER", "0")
    with Runner("release", tmp_path) as runner:
        runner.check(_case(runner))
        assert isinstance(runner.worker.proc, subprocess.Popen) and runner.worker._server is None


def test_closing_the_runner_stops_the_server(tmp_path):
    runner = Runner("release", tmp_path)
    runner.check(_case(runner))
    server = runner.worker._server.proc
    runner.close()
    assert server.poll() is not None
