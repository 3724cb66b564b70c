"""A campaign's settings, validated before anything starts: every mistake in them is a
one-line UsageError (exit 2), never a job error or a failure saved as the kernel's."""
from __future__ import annotations

import json
import math
import os
import socket
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import UsageError

DEFAULT_THREADS = (1, 2, 3, 4, 7, 16)
MAX_MINUTES = 7 * 24 * 60


def default_grace(budget_s: float) -> float:
    """How long a shrink in progress may go on past the deadline: a quarter of the budget,
    at least 15 s and at most 5 minutes."""
    return min(300.0, max(15.0, 0.25 * budget_s))


@dataclass
class CampaignConfig:
    out: Path
    minutes: float
    jobs: int
    target: dict                    # Target.to_dict() plus "strict"
    variant: str = "release"
    ops: tuple[str, ...] = ()
    threads: tuple[int, ...] = DEFAULT_THREADS
    isas: tuple[str, ...] = ()
    seed: int | None = None
    db: str = ""                    # example database: "" (OUT/examples), a directory, or redis://...
    grace: float = 15.0             # seconds a shrink may run past the deadline
    start: float = 0.0              # time.time() when the jobs started
    host: str = field(default_factory=socket.gethostname)
    parent_pid: int = 0

    @property
    def budget(self) -> float:
        return self.minutes * 60.0

    @property
    def deadline(self) -> float:
        return self.start + self.budget

    def to_json(self) -> str:
        d = asdict(self)
        d["out"] = str(self.out)
        return json.dumps(d)

    @classmethod
    def from_json(cls, text: str) -> "CampaignConfig":
        d = json.loads(text)
        d["out"] = Path(d["out"])
        for k in ("ops", "threads", "isas"):
            d[k] = tuple(d[k])
        return cls(**d)


def parse_number_list(text, what: str, kind=int) -> tuple:
    if isinstance(text, (list, tuple)):
        return tuple(text)
    items = [t.strip() for t in str(text).split(",")]
    if not any(items):
        raise UsageError(f"{what}: empty list")
    try:
        return tuple(kind(t) for t in items if t)
    except ValueError:
        raise UsageError(f"{what} {text!r}: expected comma-separated {'integers' if kind is int else 'values'}") \
            from None


def check_minutes(minutes: float) -> float:
    if not (isinstance(minutes, (int, float)) and math.isfinite(minutes) and 0 < minutes <= MAX_MINUTES):
        raise UsageError(f"--minutes {minutes}: must be a finite number of minutes, > 0 and <= {MAX_MINUTES} (a week)")
    return float(minutes)


def check_threads(threads: tuple[int, ...], max_threads: int, who: str) -> tuple[int, ...]:
    bad = [t for t in threads if not 1 <= t <= max_threads]
    if bad or not threads:
        raise UsageError(f"--threads {','.join(map(str, threads)) or '(empty)'}: thread counts must be 1.."
                         f"{max_threads} ({who}'s limit)")
    return tuple(dict.fromkeys(threads))


def check_writable_dir(path: Path, what: str) -> Path:
    """Create `path` if needed and prove it writable; a one-line error otherwise."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UsageError(f"{what} {path}: exists and is not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise UsageError(f"{what} {path}: not a writable directory ({exc.strerror or exc})") from None
    return path


def check_db(db: str) -> str:
    """'' (the output directory's examples/), a directory, or redis://HOST[:PORT][/NAME]."""
    if not db:
        return ""
    if "://" in db:
        if not db.startswith("redis://"):
            raise UsageError(f"--db {db}: expected a directory or redis://HOST[:PORT][/CAMPAIGN]")
        from .fleet import parse_url

        parse_url(db)
        return db
    check_writable_dir(Path(db), "--db")
    return str(Path(db).resolve())


def check_grace(grace: float | None, budget: float) -> float:
    if grace is None:
        return default_grace(budget)
    if not (math.isfinite(grace) and grace >= 0):
        raise UsageError(f"--shrink-grace {grace}: must be a finite number of seconds >= 0")
    return float(grace)


def check_jobs(jobs: int) -> int:
    if jobs < 1:
        raise UsageError(f"--jobs {jobs}: must be >= 1")
    return jobs


def check_isas(isas: tuple[str, ...], target) -> tuple[str, ...]:
    """Names only (whether this CPU runs them is checked once the library is loaded)."""
    if not isas:
        return ()
    known = tuple(getattr(target, "isa_names", ()))
    if not known:
        raise UsageError(f"--isas: {target.label()} has no selectable SIMD level (its build fixes it)")
    bad = [i for i in isas if i not in known]
    if bad:
        raise UsageError(f"--isas {','.join(isas)}: unknown SIMD level(s) {', '.join(bad)}; "
                         f"{target.label()} knows {', '.join(known)}")
    return tuple(dict.fromkeys(isas))


def check_usable_isas(isas: tuple[str, ...], usable: list[str], label: str) -> None:
    missing = [i for i in isas if i not in usable]
    if missing:
        raise UsageError(f"--isas: {', '.join(missing)} cannot run on this CPU with {label} "
                         f"(usable here: {', '.join(usable)})")


def harness_env() -> dict[str, str]:
    """The environment of a job process: it imports the same harness as this process."""
    from ..worker import harness_import_root

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [harness_import_root(), env.get("PYTHONPATH", "")]))
    return env
