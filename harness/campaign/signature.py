"""Failure signatures: what makes two failures the same bug, as a crash triager sees it.

ClusterFuzz keys a crash by its type and "crash state" (the top frames); here a signature is
(kind, op, detail), and the detail is what distinguishes the fault within that kind:

- a death (crash, exit, corruption): the signal or exit status, then the first of
  - a sanitizer report: its error type and top frames (function names),
  - an abort or assert line `file:line: message` (GGML_ABORT, GGML_ASSERT, assert(3),
    UBSan's `runtime error:`), the file reduced to its name,
  - a glibc abort message (`free(): invalid pointer`, `*** stack smashing detected ***`),
  - the top named frames of a backtrace (ggml's backtrace_symbols_fd, gdb);
- a hang: "timeout" (a hung run prints nothing to tell two hangs apart);
- a wrong result: the failing invariance, i.e. the knobs in which the two disagreeing runs
  differ (n_threads, isa, repack_threshold, fused, prepacked), "reference" for a result that
  all runs agree on but the reference does not, "batch composition";
- an error status: the status code and the library's message.

Everything that varies from run to run is normalised away: build-machine path prefixes,
the same message printed by several threads at once (interleaved), addresses, process
ids, and numbers in message text (token counts, expert ids); assert expressions and line
numbers are kept, they are source text.

The token-count bucket and the path of the run are recorded with a failure (`run_context`)
but are not part of the key: a case has several experts, and a bug's minimal case holds a
different set of buckets than its first sighting, so a key that contained them would split
one bug into several and stop the shrinker from removing experts.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass

from ..errors import (BatchDivergence, HarnessFailure, KernelCorruption, KernelCrash, KernelError, KernelExit,
                      KernelHang, Mismatch)
from ..options import REPACK_NEVER

SOURCE_EXTENSIONS = r"(?:c|cc|cpp|cxx|h|hh|hpp|cu|m|mm|inc)"
# file:line[:col]: message  (the file may carry any path prefix of the machine that built it)
_SITE = re.compile(r"(?P<file>[\w.+\-/\\]*?(?P<base>[\w.+\-]+\." + SOURCE_EXTENSIONS + r")):(?P<line>\d+)(?::\d+)?:\s*")
_SANITIZER = re.compile(r"(?:ERROR|WARNING): (?P<tool>\w*Sanitizer): (?P<what>[\w\-]+(?: [\w\-]+)*?)(?= on | \(|:|$)",
                        re.M)
_RUNTIME_ERROR = re.compile(r"runtime error: (?P<what>[^:\n]*)")
_FRAME_SAN = re.compile(r"^\s*#(?P<n>\d+) (?:0x[0-9a-fA-F]+ in )?(?P<func>[A-Za-z_][^\s(]*)", re.M)
_FRAME_BT = re.compile(r"^[^\s(]+\((?P<func>[A-Za-z_][\w:.<>~]*)\+0x[0-9a-fA-F]+\)\s*\[0x[0-9a-fA-F]+\]", re.M)
_FRAME_GDB = re.compile(r"^#\d+\s+(?:0x[0-9a-fA-F]+ in )?(?P<func>[A-Za-z_][\w:.<>~]*) \(", re.M)
_GLIBC = re.compile(r"^(?:\w[\w.\-]*: )?(?P<msg>(?:free|malloc|realloc|calloc|munmap_chunk|corrupted|double free)"
                    r"[^\n]*|\*\*\* [^\n]*? \*\*\*[^\n]*)$", re.M)
_ASSERT_EXPR = re.compile(r"(?:GGML_ASSERT|assert|Assertion)\s*(?:\(.*\)|`.*')")
_HEX = re.compile(r"0x[0-9a-fA-F]+")
_NUMBER = re.compile(r"(?<![\w.])[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?(?![\w.])")
# frames that are the abort machinery, not the place that decided to abort
_NOISE_FRAMES = re.compile(r"^(?:abort|raise|gsignal|__GI_\w+|__pthread_kill\w*|pthread_kill|__libc_\w+|_start|"
                           r"ggml_abort|ggml_print_backtrace\w*|ggml_print_backtrace|__assert_fail\w*|__assert\w*|"
                           r"__asan\w*|__ubsan\w*|__tsan\w*|__sanitizer\w*|__interceptor\w*|__interception\w*|"
                           r"ffi_call\w*|_Py\w*|Py\w*|_ctypes\w*|main|__libc_start_main\w*|start_thread|clone\d*)$")
MAX_FRAMES = 3


@dataclass(frozen=True)
class Signature:
    kind: str     # the failure class's kind: crash, hang, mismatch, thread-divergence, ...
    op: str
    detail: str   # what distinguishes the fault within (kind, op); see the module docstring

    @property
    def id(self) -> str:
        return hashlib.sha1(f"{self.kind}|{self.op}|{self.detail}".encode()).hexdigest()[:10]

    @property
    def slug(self) -> str:
        """A file-name-safe name: kind, op, the short form of the detail, and the id."""
        short = _slug_text(self.short_detail)
        return f"{self.kind}-{self.op}-{short}-{self.id}" if short else f"{self.kind}-{self.op}-{self.id}"

    @property
    def short_detail(self) -> str:
        """The detail's most telling part: a site (file:line), a signal, an invariance."""
        site = re.search(r"[\w.+\-]+\." + SOURCE_EXTENSIONS + r":\d+", self.detail)
        head = self.detail.split(":", 1)[0]
        return f"{head}-{site.group(0)}" if site and not self.detail.startswith(site.group(0)) else \
            (site.group(0) if site else head)

    def label(self) -> str:
        return f"{self.kind} in {self.op}: {self.detail}"

    def to_dict(self) -> dict:
        return dict(asdict(self), id=self.id, slug=self.slug)

    @classmethod
    def from_dict(cls, d: dict) -> "Signature":
        return cls(d["kind"], d["op"], d["detail"])


def _slug_text(text: str, limit: int = 48) -> str:
    s = re.sub(r"[^A-Za-z0-9_.]+", "_", text).strip("_.")
    return s[:limit].rstrip("_.")


# -- stderr --------------------------------------------------------------------------------

def normalise_message(text: str) -> str:
    """One message line without what varies between runs: site prefixes repeated by other
    threads, addresses, numbers outside assert expressions, runs of spaces."""
    text = text.strip()
    # several threads printed the same `file:line: ` prefix before the message got written
    while True:
        m = _SITE.match(text)
        if not m:
            break
        text = text[m.end():]
    kept = []
    pos = 0
    for m in _ASSERT_EXPR.finditer(text):  # assert expressions are source text: keep them verbatim
        kept.append(_normalise_free_text(text[pos:m.start()]))
        kept.append(m.group(0))
        pos = m.end()
    kept.append(_normalise_free_text(text[pos:]))
    return re.sub(r"\s+", " ", "".join(kept)).strip()


def _normalise_free_text(text: str) -> str:
    return _NUMBER.sub("N", _HEX.sub("ADDR", text))


def _frames(tail: str, pattern: re.Pattern) -> list[str]:
    out = []
    for m in pattern.finditer(tail):
        func = m.group("func")
        if _NOISE_FRAMES.match(func) or func in out:
            continue
        out.append(func)
        if len(out) == MAX_FRAMES:
            break
    return out


def crash_site(tail: str) -> str:
    """What the stderr tail of a dead worker says about where it died ('' when nothing)."""
    if not tail:
        return ""
    tail = tail.replace("\r", "")
    san = _SANITIZER.search(tail)
    if san:
        frames = _frames(tail[san.end():], _FRAME_SAN)
        what = f"{san.group('tool')}: {san.group('what').strip()}"
        return what + (" in " + " > ".join(frames) if frames else "")
    for m in _SITE.finditer(tail):
        line_end = tail.find("\n", m.end())
        rest = tail[m.end(): line_end if line_end >= 0 else len(tail)]
        glued = rest.find(m.group("file"))  # another thread's copy of the same message, glued on
        message = normalise_message(rest[:glued] if glued > 0 else rest)
        if not message and line_end >= 0:
            # another thread's prefix came first and this thread's message went onto the next line
            nxt = tail.find("\n", line_end + 1)
            message = normalise_message(tail[line_end + 1: nxt if nxt >= 0 else len(tail)])
        rt = _RUNTIME_ERROR.search(message)
        if rt:
            message = "runtime error: " + normalise_message(rt.group("what"))
        return f"{m.group('base')}:{m.group('line')}: {message}" if message else f"{m.group('base')}:{m.group('line')}"
    glibc = _GLIBC.search(tail)
    if glibc:
        return normalise_message(glibc.group("msg"))
    frames = _frames(tail, _FRAME_BT) or _frames(tail, _FRAME_GDB)
    if frames:
        return "in " + " > ".join(frames)
    return ""


# -- failures ------------------------------------------------------------------------------

_LABEL = re.compile(r"\s*\[threads=[^\]]*\]")


def _invariance(failure: HarnessFailure, case) -> str | None:
    """For 'runs disagree: A vs B': the knobs in which A and B differ."""
    prefix = "runs disagree: "
    if not failure.message.startswith(prefix) or case is None:
        return None
    a, sep, b = failure.message[len(prefix):].partition(" vs ")
    by_label = {r.label(): r for r in case.runs}
    if not sep or a.strip() not in by_label or b.strip() not in by_label:
        return None
    knobs = by_label[a.strip()].differs_from(by_label[b.strip()])
    return "+".join(sorted(knobs)) + " differ" if knobs else None


def signature_of(failure: HarnessFailure, case) -> Signature:
    """The signature of one failure of `case` (the case as the target ran it)."""
    op = case.op if case is not None else "?"
    kind = failure.kind
    if isinstance(failure, KernelHang):
        return Signature(kind, op, "timeout")
    if isinstance(failure, (KernelCrash, KernelExit, KernelCorruption)):
        how = getattr(failure, "signal_name", "") or \
            (f"exit status {failure.returncode}" if isinstance(failure, KernelExit) else "channel written to")
        site = crash_site(failure.stderr_tail)
        return Signature(kind, op, f"{how}: {site}" if site else how)
    if isinstance(failure, BatchDivergence):
        return Signature(kind, op, "batch composition")
    knobs = _invariance(failure, case)
    if knobs:
        return Signature(kind, op, knobs)
    if isinstance(failure, Mismatch) and "reference" in failure.message:
        return Signature(kind, op, "differs from the reference")
    if isinstance(failure, KernelError):
        text = _LABEL.sub("", failure.message)
        status = re.search(r"status (\d+)", text)
        rest = normalise_message(text)
        return Signature(kind, op, f"status {status.group(1)}: {rest}" if status else rest)
    return Signature(kind, op, normalise_message(_LABEL.sub("", failure.message)))


def signatures_of(failure: HarnessFailure, case) -> list[tuple[Signature, HarnessFailure]]:
    """Every signature a failing case shows: the failure that stopped it first, then what
    the runs before a death showed (`failure.also`); each once."""
    seen: dict[str, tuple[Signature, HarnessFailure]] = {}
    for f in [failure] + list(getattr(failure, "also", [])):
        s = signature_of(f, case)
        seen.setdefault(s.id, (s, f))
    return list(seen.values())


def run_context(case, options) -> str:
    """The run a failure happened in and the token counts per expert, with the path each
    expert took at the run's threshold on the project's kernels: e.g. 'threads=1 isa=avx2
    threshold=32; direct: 1 expert(s) (1-31), repacked: 1 expert(s) (34+)'. Descriptive
    only (not part of the key)."""
    from ..strategies import token_count_bucket
    from ..targets import from_dict

    if case is None:
        return ""
    counts = [int(c) for c in case.expert_token_counts()]
    if options is None:
        options = case.runs[0] if case.runs else None
    if options is None:
        return ""
    target = from_dict(case.target)
    if not target.varies("repack_threshold"):  # the threshold is an option of our kernels only
        return f"{target.run_label(options)}; tokens per expert " + \
            ", ".join(f"{c} ({token_count_bucket(c)})" for c in counts)
    thr = options.repack_threshold
    paths: dict[str, list[str]] = {}
    for c in counts:
        if c == 0:
            continue
        path = "direct" if c < thr else "repacked"
        paths.setdefault(path, []).append(token_count_bucket(c))
    thr_label = "never" if thr >= REPACK_NEVER else str(thr)
    parts = [f"{p}: {len(b)} expert(s) ({', '.join(sorted(set(b)))})" for p, b in sorted(paths.items())]
    return f"{options.label()}; at threshold {thr_label} " + ("; ".join(parts) if parts else "no tokens")
