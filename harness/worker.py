"""The parent side of the isolated worker.

The library under test runs in a persistent child process (harness._worker_main) that
talks to this one over two private pipes (harness.protocol); the child's stdin is
/dev/null and its stdout and stderr go to a log file, so nothing the library (or a
debugger it forks) prints can reach the protocol. Each call waits with a timeout and turns
a death by signal, an abnormal exit or a timeout into a KernelCrash / KernelExit /
KernelHang carrying the stderr tail. The worker is restarted on the next call; the parent
never dies with it. Workers are forked from a per-Worker fork server (harness.fork_server)
that loaded the library once, unless IQ1M_FORK_SERVER=0 or the server cannot start.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np

from .errors import KernelCorruption, KernelCrash, KernelExit, KernelHang, WorkerStartError
from ._worker_main import launch, set_pipe_size
from .fork_server import ForkServer, ForkServerLost
from .protocol import ProtocolError, Reader, write_message

STDERR_TAIL_LINES = 40
START_TIMEOUT = 60.0
LOG_LIMIT = 8 << 20  # a worker log past this size is cut to its tail when the worker restarts


def signal_name(returncode: int) -> str:
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


def harness_import_root() -> str:
    """The directory this process imported `harness` from: the worker runs the same code
    (never a `harness/` that happens to be in its current directory)."""
    return str(Path(__file__).resolve().parent.parent)


class Worker:
    def __init__(self, spec: dict, log_dir: Path, *, env: dict[str, str] | None = None,
                 load_hint: str = "check the library"):
        """`spec`: the target's worker spec (Target.prepare()); `env`: set in the worker's
        environment (sanitizer runtimes, GGML_* switches, ...); `load_hint`: what to do
        when the library does not load."""
        self.spec = dict(spec)
        self.load_hint = load_hint
        self.extra_env = dict(env or {})
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen | None = None
        self.hello: dict = {}
        self.log_path = self.log_dir / f"worker-{os.getpid()}-{id(self):x}.log"
        self.restarts = 0
        self._to_child = self._from_child = None
        self._reader: Reader | None = None
        self._since = 0
        self.use_fork_server = os.environ.get("IQ1M_FORK_SERVER", "1") != "0"
        self.fork_server_error = ""
        self._server: ForkServer | None = None

    # -- lifecycle -----------------------------------------------------------------------
    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.extra_env)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [harness_import_root(), env.get("PYTHONPATH", "")]))
        return env

    def start(self) -> dict:
        self._trim_log()
        since = self.log_path.stat().st_size if self.log_path.exists() else 0
        forked = self._fork()
        if forked is not None:
            self.proc, (req_w, rep_r) = forked
        else:
            req_w, rep_r = self._spawn()
        self._to_child, self._from_child = req_w, rep_r
        os.set_blocking(req_w, False)  # requests are written with a deadline (write_message)
        self._reader = Reader(rep_r)
        try:
            message = self._reader.read(START_TIMEOUT)
        except (EOFError, ProtocolError):
            message = None
        if message is None or not message[0].get("ready"):
            death = self._death()
            self._kill()
            last = (self.stderr_tail(since).strip().splitlines() or ["no message"])[-1]
            raise WorkerStartError(f"the worker could not load {self.spec.get('library') or self.spec.get('lib_dir')} "
                                   f"({death}: {last}); {self.load_hint} (full log: {self.log_path})")
        self.hello = message[0]
        return self.hello

    def _spawn(self) -> tuple[int, int]:
        """A new interpreter as the worker: (request pipe, reply pipe) to it."""
        req_r, req_w = os.pipe()
        rep_r, rep_w = os.pipe()
        for fd in (req_w, rep_w):
            set_pipe_size(fd)
        try:
            self.proc = launch(["--fds", f"{req_r},{rep_w}"], self.spec, self._env(), self.log_path, (req_r, rep_w))
        finally:
            os.close(req_r)
            os.close(rep_w)
        return req_w, rep_r

    def _fork(self):
        """A worker forked from this Worker's fork server (started on first use), or None
        where there is none: IQ1M_FORK_SERVER=0, or a server that could not start or died
        (the plain start then reports what is wrong with the library)."""
        if not self.use_fork_server:
            return None
        try:
            if self._server is None:
                self._server = ForkServer(self.spec, self._env(), self.log_path)
            return self._server.fork()
        except (OSError, ValueError, ForkServerLost) as exc:
            self._give_up_server(exc)
            return None

    def _give_up_server(self, why: Exception) -> None:
        """Workers of this Worker start plain from now on."""
        self.use_fork_server = False
        self.fork_server_error = str(why)
        self._stop_server()

    def _stop_server(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    def _trim_log(self) -> None:
        try:
            if self.log_path.stat().st_size > LOG_LIMIT:
                with open(self.log_path, "rb") as f:
                    f.seek(-LOG_LIMIT // 4, os.SEEK_END)
                    tail = f.read()
                self.log_path.write_bytes(b"[... earlier log cut ...]\n" + tail)
        except OSError:
            pass

    def alive(self) -> bool:
        try:
            return self.proc is not None and self.proc.poll() is None
        except ForkServerLost:
            return False  # between calls: nothing of a case is lost, the next call starts anew

    def _close_pipes(self) -> None:
        for fd in (self._to_child, self._from_child):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._to_child = self._from_child = None

    def close(self) -> None:
        """Stop the worker (the next call starts a new one); `shutdown` also stops the fork
        server."""
        if self.proc is not None:
            self._close_pipes()  # EOF on its request pipe: it exits
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._kill()
            except ForkServerLost:
                pass  # the server's death took the worker with it
            self.proc = None
        self._close_pipes()

    def shutdown(self) -> None:
        self.close()
        self._stop_server()

    def _kill(self) -> None:
        """Kill the worker's whole process group (it is a session leader): the worker if it
        still runs, and whatever it forked."""
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                self.proc.wait()
            except ForkServerLost:
                pass  # killed anyway (the server's death kills its workers: PR_SET_PDEATHSIG)
        self._close_pipes()

    def _death(self) -> str:
        rc = self.proc.poll() if self.proc else None
        if rc is None:
            return "no answer"
        return signal_name(rc) if rc < 0 else f"exit status {rc}"

    # -- I/O -----------------------------------------------------------------------------
    def log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0

    def stderr_tail(self, since: int = 0) -> str:
        """The last lines the worker (and the library in it) printed since byte `since`."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(since)
                text = f.read().decode(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-STDERR_TAIL_LINES:])

    def call(self, request: dict, timeout: float, case_path=None, arrays=None) -> tuple[dict, dict[str, np.ndarray]]:
        """Send one request and return the (first) reply (header, arrays); raises KernelCrash
        / KernelExit / KernelHang on a bad death."""
        self.send(request, arrays, timeout, case_path)
        return self.receive(timeout, case_path)

    def send(self, request: dict, arrays: dict[str, np.ndarray] | None, timeout: float, case_path=None) -> None:
        """Send a request (restarting the worker first if it is not running). A worker that
        died meanwhile is reported by the next `receive`; one that takes nothing within
        `timeout` is a KernelHang."""
        if not self.alive():
            if self.hello:
                self.restarts += 1
            if self.proc is not None:
                self._kill()
            self.start()
        self._since = self.log_size()
        try:
            write_message(self._to_child, request, arrays, timeout=timeout)
        except BrokenPipeError:
            pass  # it died; the read reports how
        except TimeoutError:
            self._kill()
            self.proc = None
            raise KernelHang(timeout, case_path=case_path, stderr_tail=self.stderr_tail(self._since)) from None

    def receive(self, timeout: float, case_path=None) -> tuple[dict, dict[str, np.ndarray]]:
        """The next reply (header, arrays) within `timeout` seconds; raises KernelCrash /
        KernelExit / KernelHang on a bad death, RuntimeError on a harness error reply, and
        ForkServerLost when the worker's fork server died (later workers start plain)."""
        try:
            return self._receive(timeout, case_path)
        except ForkServerLost as lost:
            self._kill()
            self.proc = None
            self._give_up_server(lost)
            raise

    def _receive(self, timeout: float, case_path=None) -> tuple[dict, dict[str, np.ndarray]]:
        since = self._since
        eof = False
        try:
            message = self._await(timeout)
        except EOFError:
            message, eof = None, True
        except ProtocolError as exc:  # our worker writes messages only: the library wrote there
            self._kill()
            self.proc = None
            raise KernelCorruption(f"the worker's private channel was written to by someone else ({exc})",
                                   case_path=case_path, stderr_tail=self.stderr_tail(since)) from None
        if message is None:
            if eof:
                self._reap()
            hung = self.proc.poll() is None
            self._kill()  # a hung worker, or what a dead one forked (a debugger, a helper) and left
            rc = self.proc.returncode
            self.proc = None
            self._close_pipes()
            tail = self.stderr_tail(since)
            if hung:
                raise KernelHang(timeout, case_path=case_path, stderr_tail=tail)
            if rc < 0:
                raise KernelCrash(signal_name(rc), case_path=case_path, stderr_tail=tail)
            raise KernelExit(rc, case_path=case_path, stderr_tail=tail)
        header, arrays = message
        if "error" in header:
            raise RuntimeError(f"the worker failed to process {case_path}:\n{header['error']}")
        return header, arrays

    POLL = 0.2

    def _await(self, timeout: float):
        """The next message, or None once the worker is dead or `timeout` has passed. The
        process is watched, not only the pipe: a child it forked holds the pipe open after
        it dies (until exec, descriptors are shared)."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            message = self._reader.read(min(self.POLL, max(remaining, 0.0)))
            if message is not None or remaining <= 0:
                return message
            if self.proc.poll() is not None:
                return self._reader.read(0.05)  # whatever it wrote before it died

    def _reap(self) -> None:
        """It closed its end: it is exiting. Wait for the status (a child it forked may still
        hold nothing of ours: the protocol descriptors are not inheritable)."""
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._kill()
