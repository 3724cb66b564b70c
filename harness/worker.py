"""The parent side of the isolated worker.

The kernels run in a persistent child process (`python -m harness._worker_main LIB`).
The parent writes each case to disk atomically before sending it, waits for the answer
with a timeout, and turns a death by signal, an abnormal exit or a timeout into a
KernelCrash / KernelExit / KernelHang carrying the case path and the stderr tail. The
worker is restarted on the next call; the parent never dies with it.
"""
from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from .build import PROJECT_ROOT, Variant
from .errors import KernelCrash, KernelExit, KernelHang, UsageError, WorkerStartError

STDERR_TAIL_LINES = 40
START_TIMEOUT = 60.0


def sanitizer_environment(variant: Variant) -> dict[str, str]:
    """A sanitized library loaded into a plain Python needs its runtime preloaded."""
    env = {}
    if not variant.sanitizer:
        return env
    runtime = "libtsan.so" if variant.sanitizer == "thread" else "libasan.so"
    cc = os.environ.get("CC", "gcc")
    try:
        path = subprocess.run([cc, f"-print-file-name={runtime}"], capture_output=True, text=True,
                              timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UsageError(f"cannot locate the {runtime} runtime with {cc} ({exc})") from exc
    if not path or not Path(path).exists() or path == runtime:
        raise UsageError(f"{cc} has no {runtime}; install the compiler's sanitizer runtime")
    preload = [path]
    if variant.sanitizer == "address,undefined":
        ubsan = subprocess.run([cc, "-print-file-name=libubsan.so"], capture_output=True, text=True).stdout.strip()
        if ubsan and Path(ubsan).exists():
            preload.append(ubsan)
    env["LD_PRELOAD"] = ":".join(preload)
    env["ASAN_OPTIONS"] = "detect_leaks=0:abort_on_error=1:halt_on_error=1"
    env["UBSAN_OPTIONS"] = "halt_on_error=1:abort_on_error=1:print_stacktrace=1"
    env["TSAN_OPTIONS"] = "halt_on_error=1:abort_on_error=1:report_signal_unsafe=0"
    return env


def signal_name(returncode: int) -> str:
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


class Worker:
    def __init__(self, library: Path, variant: Variant, log_dir: Path, *, ggml: bool = False,
                 extra_env: dict[str, str] | None = None):
        """`library`: the kernels' .so, or with ggml=True the directory of ggml's libraries;
        `extra_env`: set in the worker's environment (e.g. GGML_CPU_TILED_MM=0)."""
        self.library = Path(library)
        self.variant = variant
        self.ggml = ggml
        self.extra_env = dict(extra_env or {})
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen | None = None
        self.hello: dict = {}
        self._buffer = b""
        self._stderr_path = self.log_dir / f"worker-{os.getpid()}-{id(self):x}.stderr"
        self.restarts = 0

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> dict:
        env = dict(os.environ)
        env.update(sanitizer_environment(self.variant))
        env.update(self.extra_env)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH", "")]))
        if getattr(self, "_stderr", None) is None or self._stderr.closed:
            self._stderr = open(self._stderr_path, "ab")
        since = self._stderr_path.stat().st_size
        target_args = ["--ggml", str(self.library)] if self.ggml else [str(self.library)]
        self.proc = subprocess.Popen([sys.executable, "-m", "harness._worker_main", *target_args],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
                                     env=env, start_new_session=True)
        self._buffer = b""
        line = self._read_line(START_TIMEOUT)
        if line is None:
            death = self._death()
            self._kill()
            last = (self.stderr_tail(since).strip().splitlines() or ["no message"])[-1]
            fix = ("check --ggml-lib-dir (a directory with your build's libggml*.so) or reinstall "
                   "llama-cpp-python" if self.ggml else "rebuild it with 'iq1m-harness build --rebuild'")
            raise WorkerStartError(f"the kernel worker could not start with {self.library} ({death}: {last}); "
                                   f"{fix} (full log: {self._stderr_path})")
        self.hello = json.loads(line)
        return self.hello

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def close(self) -> None:
        if self.proc is not None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                self._kill()
            self.proc = None
        if getattr(self, "_stderr", None):
            self._stderr.close()

    def _kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()

    def _death(self) -> str:
        rc = self.proc.poll() if self.proc else None
        if rc is None:
            return "no answer"
        return signal_name(rc) if rc < 0 else f"exit status {rc}"

    # -- I/O -----------------------------------------------------------------------------
    def stderr_tail(self, since: int = 0) -> str:
        try:
            with open(self._stderr_path, "rb") as f:
                f.seek(since)
                text = f.read().decode(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-STDERR_TAIL_LINES:])

    def _read_line(self, timeout: float) -> bytes | None:
        """One line from the worker, or None on timeout or EOF. On EOF the process is reaped
        first, so `poll()` afterwards tells a death (EOF) from a hang (still running)."""
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                try:
                    self.proc.wait(timeout=30)  # it closed stdout: it is exiting
                except subprocess.TimeoutExpired:
                    pass
                return None
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line

    # -- requests ------------------------------------------------------------------------
    def request(self, case_path: Path, result_path: Path, timeout: float) -> None:
        """Run one saved case; raises KernelCrash / KernelExit / KernelHang on a bad death."""
        if not self.alive():
            if self.hello:
                self.restarts += 1
            if self.proc is not None:
                self._kill()
            self.start()
        since = self._stderr_path.stat().st_size
        try:
            self.proc.stdin.write((json.dumps({"case": str(case_path), "result": str(result_path)}) + "\n").encode())
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass  # it died; the read below reports how
        line = self._read_line(timeout)
        if line is None:
            hung = self.proc.poll() is None
            if hung:
                self._kill()
            else:
                self.proc.wait()
            tail = self.stderr_tail(since)
            rc = self.proc.returncode
            self.proc = None
            if hung:
                raise KernelHang(timeout, case_path=case_path, stderr_tail=tail)
            if rc < 0:
                raise KernelCrash(signal_name(rc), case_path=case_path, stderr_tail=tail)
            raise KernelExit(rc, case_path=case_path, stderr_tail=tail)
        reply = json.loads(line)
        if not reply.get("done"):
            raise RuntimeError(f"worker failed to process {case_path}:\n{reply.get('error')}")
