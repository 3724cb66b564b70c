"""Self-describing case files: the exact input bytes of one kernel call and how to run it.

A case is a `.npz` archive holding the input arrays and a JSON header (`__meta__`) with
the operation, parameters, the option sets to run, the build variant, versions, a SHA-256
of every array (so a truncated or tampered file is detected), and, for a failure, what was
expected and observed. Files are written atomically (temporary file + rename), so a case
on disk is always complete, even if the writer is killed mid-way (SIGKILL of the writer
loses nothing written before the rename; no fsync: the rename is atomic in the page cache,
and durability across a power cut is not what a campaign promises).
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import CaseFormatError
from .ops import OPS, Op
from .options import KernelOptions

FORMAT_VERSION = 1


@dataclass
class Case:
    """One operation's input arrays plus the option sets to run them with. Constructing a
    Case validates it (`Op.validate`): a Case object is always a well-formed input."""
    op: str
    arrays: dict[str, np.ndarray]
    runs: list[KernelOptions]
    act: str = "silu"
    variant: str = "release"
    info: dict = field(default_factory=dict)  # origin, failure details, digests, versions
    # what the case runs on (harness.targets: Target.to_dict()); {} = the project's kernels
    target: dict = field(default_factory=dict)
    # reference results computed for this case (Case.reference); arrays are not changed in
    # place once a case exists, only replaced (a target's adapt), which clears it
    _memo: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self):
        if self.op not in OPS:
            raise ValueError(f"unknown operation {self.op!r}; expected one of {sorted(OPS)}")
        self.arrays = self.spec.coerce(self.arrays)
        self.spec.validate(self.arrays, self.act)
        if not self.runs:
            raise ValueError("a case needs at least one option set to run")

    @property
    def spec(self) -> Op:
        return OPS[self.op]

    # -- shape facts used by reports and timeouts ----------------------------------------
    @property
    def k(self) -> int:
        return self.spec.k(self.arrays)

    @property
    def n_tokens(self) -> int:
        return self.spec.n_tokens(self.arrays)

    @property
    def rows(self) -> int:
        return self.spec.rows(self.arrays)

    @property
    def slots(self) -> int:
        return self.spec.slots(self.arrays)

    def work(self) -> float:
        """Multiply-adds x2 over all runs: what a timeout should scale with."""
        return self.spec.work(self.arrays) * len(self.runs)

    def expert_token_counts(self) -> np.ndarray:
        return self.spec.expert_token_counts(self.arrays)

    def describe(self) -> str:
        where = f"target={self.target['name']}" if self.target.get("name", "kernels") != "kernels" \
            else f"variant={self.variant}"
        env = "".join(f" {k}={v}" for k, v in sorted(self.target.get("env", {}).items()))
        return f"{self.spec.describe(self.arrays, self.act)} {where}{env}"

    def reference_subset(self):
        """Where the output is compared with the reference (harness.ops.Subset)."""
        self._check_memo()
        key = ("subset",)
        if key not in self._memo:
            self._memo[key] = self.spec.reference_subset(self.arrays)
        return self._memo[key]

    def reference(self, kind: str = "canonical", x=None):
        """The reference's `kind` (canonical, exact or bound) of this case on its reference
        subset, computed once; `x`: a target's own quantized activations instead of x."""
        if x is not None:
            return getattr(self.spec, kind)(self.arrays, self.act, x, self.reference_subset())
        self._check_memo()
        key = (kind, self.act)
        if key not in self._memo:
            self._memo[key] = getattr(self.spec, kind)(self.arrays, self.act, None, self.reference_subset())
        return self._memo[key]

    def _check_memo(self) -> None:
        """Forget what was computed from arrays that have since been replaced."""
        current = tuple(sorted(self.arrays.items()))
        seen = self._memo.get("arrays")
        if seen is None or len(seen) != len(current) or any(
                n != m or a is not b for (n, a), (m, b) in zip(seen, current)):
            self._memo.clear()
            self._memo["arrays"] = current

    def with_arrays(self, arrays: dict, runs: list[KernelOptions] | None = None, **info) -> "Case":
        """A derived case (same op, activation and target) with other arrays."""
        return Case(self.op, arrays, list(runs or self.runs), act=self.act, variant=self.variant,
                    info=dict(info), target=dict(self.target))

    def digest(self) -> str:
        """SHA-256 of what the case is (op, activation, arrays, runs, a non-kernels target);
        remembered while those stay the same."""
        self._check_memo()
        key = ("digest", self.op, self.act, tuple(self.runs), json.dumps(self.target, sort_keys=True))
        if key not in self._memo:
            self._memo[key] = self._digest()
        return self._memo[key]

    def _digest(self) -> str:
        h = hashlib.sha256(self.op.encode() + self.act.encode())
        for name in sorted(self.arrays):
            h.update(name.encode())
            h.update(_array_digest(self.arrays[name]).encode())
        h.update(json.dumps([r.to_dict() for r in self.runs], sort_keys=True).encode())
        if self.target.get("name", "kernels") != "kernels":
            h.update(json.dumps(self.target, sort_keys=True).encode())
        return h.hexdigest()


_DIGESTS: dict[int, tuple[np.ndarray, str]] = {}


def _array_digest(a: np.ndarray) -> str:
    """SHA-256 of an array's dtype, shape and bytes, remembered while the array lives (a
    case's arrays are hashed for its name and its file; they are never changed in place)."""
    hit = _DIGESTS.get(id(a))
    if hit is not None and hit[0] is a:
        return hit[1]
    h = hashlib.sha256(str(a.dtype).encode() + str(a.shape).encode())
    h.update(np.ascontiguousarray(a).data)
    digest = h.hexdigest()
    if len(_DIGESTS) > 256:
        _DIGESTS.clear()
    _DIGESTS[id(a)] = (a, digest)
    return digest


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix="." + path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_arrays(path: Path, arrays: dict[str, np.ndarray], meta: dict) -> None:
    buf = io.BytesIO()
    meta = dict(meta, array_sha256={n: _array_digest(a) for n, a in arrays.items()})
    np.savez(buf, __meta__=np.frombuffer(json.dumps(meta, sort_keys=True).encode(), dtype=np.uint8), **arrays)
    atomic_write_bytes(path, buf.getvalue())


def load_arrays(path: Path) -> tuple[dict[str, np.ndarray], dict]:
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {n: npz[n] for n in npz.files}
    except FileNotFoundError:
        raise CaseFormatError(f"{path}: no such file")
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise CaseFormatError(f"{path}: not a readable case file (truncated or corrupt: {exc})")
    if "__meta__" not in arrays:
        raise CaseFormatError(f"{path}: no __meta__ header; not a case file")
    try:
        meta = json.loads(arrays.pop("__meta__").tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CaseFormatError(f"{path}: corrupt header ({exc})")
    for name, digest in meta.get("array_sha256", {}).items():
        if name not in arrays:
            raise CaseFormatError(f"{path}: array {name!r} is missing")
        if _array_digest(arrays[name]) != digest:
            raise CaseFormatError(f"{path}: array {name!r} does not match its checksum (file was modified)")
    return arrays, meta


def versions() -> dict:
    from . import __version__

    return {"harness": __version__, "numpy": np.__version__, "format": FORMAT_VERSION}


def save_case(case: Case, path: Path) -> Path:
    meta = {
        "format_version": FORMAT_VERSION,
        "op": case.op,
        "act": case.act,
        "variant": case.variant,
        "runs": [r.to_dict() for r in case.runs],
        "info": case.info,
        "versions": versions(),
        "saved_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if case.target:
        meta["target"] = case.target
    save_arrays(Path(path), case.arrays, meta)
    return Path(path)


def load_case(path: Path) -> Case:
    arrays, meta = load_arrays(path)
    version = meta.get("format_version")
    if not isinstance(version, int):
        raise CaseFormatError(f"{path}: header has no format_version")
    if version > FORMAT_VERSION:
        raise CaseFormatError(f"{path}: case format version {version} is newer than this harness "
                              f"understands ({FORMAT_VERSION}); upgrade iq1m-harness")
    try:
        runs = [KernelOptions.from_dict(r) for r in meta["runs"]]
        return Case(op=meta["op"], arrays=arrays, runs=runs, act=meta.get("act", "silu"),
                    variant=meta.get("variant", "release"), info=meta.get("info", {}),
                    target=meta.get("target", {}))
    except (KeyError, TypeError, ValueError) as exc:
        raise CaseFormatError(f"{path}: invalid case header ({exc})")
