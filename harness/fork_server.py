"""The parent side of a worker fork server (harness._worker_main.fork_server).

One server per Worker, started with the worker's environment and log: it loads the library
once and forks a worker per request, so replacing a worker that a crash killed costs a
fork, not an interpreter start and a library load. The server, not this process, is the
workers' parent: it sends each worker's exit status back on the socket, and `ForkedWorker`
gives the Worker the subset of subprocess.Popen it uses (pid, poll, wait, returncode).
"""
from __future__ import annotations

import json
import select
import socket
import subprocess
import time
from pathlib import Path

from ._worker_main import launch

START_TIMEOUT = 60.0


class ForkServerLost(RuntimeError):
    """The server died (killed from outside: it runs no library code after loading), and
    with it what it knew of its workers' exits: never a kernel failure (Runner.execute runs
    the case again in a plain worker)."""


class ForkServer:
    def __init__(self, spec: dict, env: dict[str, str], log_path: Path):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.proc = launch(["--fork-server", str(theirs.fileno())], spec, env, log_path, (theirs.fileno(),))
        finally:
            theirs.close()
        self.sock = ours
        self.sock.setblocking(False)  # a message another reader took (a signal handler) is no reason to block
        self.exits: dict[int, int] = {}
        try:
            ready = self._next(START_TIMEOUT)
        except ForkServerLost:
            ready = None  # it died loading the library
        if not ready or not ready.get("ready"):
            self.close()
            raise OSError("the fork server did not start (the plain worker start reports why)")

    def _next(self, timeout: float) -> dict | None:
        """The server's next message, or None after `timeout`; an exit status is filed."""
        if not select.select([self.sock], [], [], max(timeout, 0.0))[0]:
            return None
        try:
            data, fds, _, _ = socket.recv_fds(self.sock, 4096, 2)
        except BlockingIOError:
            return None
        except ConnectionError:
            data, fds = b"", []
        if not data:
            raise self._lost()
        message = json.loads(data)
        if "exit" in message:
            self.exits[message["exit"]] = message["code"]
        message["fds"] = fds
        return message

    def _lost(self) -> ForkServerLost:
        return ForkServerLost(f"the worker fork server (pid {self.proc.pid}) died: the exit status of "
                              f"its workers is lost; see the worker log")

    def fork(self) -> tuple[ForkedWorker, tuple[int, int]]:
        """A new worker: (its handle, (request pipe, reply pipe) to it)."""
        try:
            self.sock.send(b"fork")  # one small datagram: never blocks
        except OSError:
            raise self._lost() from None
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            message = self._next(deadline - time.monotonic())
            if message is None:
                raise OSError("the fork server did not answer")
            if "pid" in message:
                req_w, rep_r = message["fds"]
                return ForkedWorker(self, message["pid"]), (req_w, rep_r)

    def exit_code(self, pid: int, timeout: float) -> int | None:
        """pid's exit code as subprocess reports it (-N for signal N) once the server has
        reaped it, waiting up to `timeout` seconds; None if it still runs."""
        deadline = time.monotonic() + timeout
        while pid not in self.exits:
            # a bounded wait: a reader between this check and the select may file the status
            if self._next(min(deadline - time.monotonic(), 0.2)) is None and time.monotonic() >= deadline:
                return None
        return self.exits.pop(pid)

    def close(self) -> None:
        self.sock.close()  # the server exits on EOF
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class ForkedWorker:
    """A worker forked by a ForkServer, with the Popen methods harness.worker uses."""

    def __init__(self, server: ForkServer, pid: int):
        self.server = server
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self.server.exit_code(self.pid, 0.0)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            self.returncode = self.server.exit_code(self.pid, 1e9 if timeout is None else timeout)
            if self.returncode is None:
                raise subprocess.TimeoutExpired(f"worker {self.pid}", timeout)
        return self.returncode
