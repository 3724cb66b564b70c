"""Every way a case can fail, one exception class per kind.

Each carries the saved case path and the worker's stderr tail so that a report (or a
Hypothesis failure) is enough to reproduce it. `UsageError` is different: it means the
harness cannot run at all (no compiler, a corrupt cache, ...) and the CLI prints it as one
line instead of a traceback.
"""
from __future__ import annotations


class UsageError(Exception):
    """The harness cannot proceed; the message says what to do. Printed without traceback."""


class BuildError(UsageError):
    def __init__(self, message: str, log_path=None, tail: str = ""):
        self.log_path = log_path
        self.tail = tail
        super().__init__(message)


class WorkerStartError(UsageError):
    pass


class CaseFormatError(UsageError):
    """A case file is truncated, tampered with, or from a newer format version."""


class HarnessFailure(AssertionError):
    """A kernel misbehaved on a case. Subclasses say how."""

    kind = "failure"

    def __init__(self, message: str, case_path=None, stderr_tail: str = "", detail: str = "", options=None):
        self.message = message
        self.case_path = case_path
        self.stderr_tail = stderr_tail
        self.detail = detail
        self.options = options   # the run (KernelOptions) that failed, when one run is to blame
        self.run_label = ""      # how the target names that run (default: options.label())
        self.also: list[HarnessFailure] = []  # other failures the same case showed (runs before a crash)
        super().__init__(self._render())

    def set_run(self, options, label: str = "") -> None:
        """Name the run (KernelOptions) the failure happened in."""
        self.options = options
        self.run_label = label
        self.args = (self._render(),)

    def _render(self) -> str:
        label = self.run_label or (self.options.label() if self.options is not None else "")
        run = f" [{label}]" if label and "[" not in self.message else ""
        parts = [f"[{self.kind}] {self.message}{run}"]
        if self.detail:
            parts.append(self.detail)
        if self.case_path:
            parts.append(f"case saved at: {self.case_path}")
        if self.stderr_tail:
            parts.append("worker stderr (tail):\n" + self.stderr_tail)
        return "\n".join(parts)


class KernelCrash(HarnessFailure):
    """The worker died by a signal (SIGSEGV, SIGABRT, a sanitizer abort, ...)."""

    kind = "crash"

    def __init__(self, signal_name: str, **kw):
        self.signal_name = signal_name
        super().__init__(f"kernel process killed by {signal_name}", **kw)


class KernelExit(HarnessFailure):
    """The worker exited on its own with a non-zero status in the middle of a case."""

    kind = "exit"

    def __init__(self, returncode: int, **kw):
        self.returncode = returncode
        super().__init__(f"kernel process exited with status {returncode}", **kw)


class KernelHang(HarnessFailure):
    kind = "hang"

    def __init__(self, timeout: float, **kw):
        self.timeout = timeout
        super().__init__(f"no answer within {timeout:.1f} s; worker killed", **kw)


class KernelCorruption(HarnessFailure):
    """The worker's private channel carried bytes that are no message of the protocol: the
    library wrote to a descriptor it does not own (found by scanning open descriptors)."""

    kind = "corruption"


class MemoryOverrun(HarnessFailure):
    """The library wrote past a buffer it owns the size of (e.g. the work buffer ggml plans
    for a graph): a heap overflow that a larger allocation hides and a tighter one turns into
    corrupted memory."""

    kind = "overrun"


class KernelError(HarnessFailure):
    """The library returned an error code for input the contract says is valid
    (or accepted input it should have rejected)."""

    kind = "error"


class Mismatch(HarnessFailure):
    """Output differs from the reference (bit-exact) or lies outside the error bound."""

    kind = "mismatch"


class ThreadDivergence(HarnessFailure):
    kind = "thread-divergence"


class IsaDivergence(HarnessFailure):
    kind = "isa-divergence"


class PathDivergence(HarnessFailure):
    """Direct (< threshold tokens) and repacked (>= threshold) paths disagree."""

    kind = "path-divergence"


class PrepackDivergence(HarnessFailure):
    """The same case on prepacked weights (iq1m_prepack, a lossless encoding) and on the IQ1_M
    bytes disagree."""

    kind = "prepack-divergence"


class UnwrittenOutput(HarnessFailure):
    """The library returned without writing some output elements (or a buffer it fills for
    the caller, such as iq1m_prepack's): they still hold the canary the harness put there
    before the call (harness.canary)."""

    kind = "unwritten-output"


class BatchDivergence(HarnessFailure):
    """A token's output changed when the batch around it changed (its expert got more or
    fewer tokens): the same (token, expert) product computed alone and inside the full case."""

    kind = "batch-divergence"


FAILURE_KINDS = {cls.kind: cls for cls in (KernelCrash, KernelExit, KernelHang, KernelCorruption, MemoryOverrun,
                                           KernelError, Mismatch,
                                           ThreadDivergence, IsaDivergence, PathDivergence, PrepackDivergence,
                                           UnwrittenOutput, BatchDivergence)}
