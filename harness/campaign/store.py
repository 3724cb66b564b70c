"""Where a campaign keeps its failures: one record per signature, safe for many writers.

Layout of OUT/failures/:

    <slug>.npz          the record: the failing case, with everything known about the
                        failure in its info (signature, first sighting, minimised, ...)
    repro_<slug>.py     its standalone reproduction script
    .claims/<id>        "this signature is being (or has been) minimised by someone"
    .lock               serialises writers of records (flock)

A record's name depends on its signature only, so the minimised case replaces the first
sighting under the same name, and the script (written first, naming that file) stays
valid. Both are written to a temporary file and renamed, so a record on disk is always
complete, whatever is killed when. A claim is created with O_EXCL: of two jobs that find
the same new signature, one minimises it and the other counts it as known. A record
that is minimised is never replaced by one that is not.
"""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import shutil
from pathlib import Path

from ..cases import Case, load_case, save_case
from ..errors import CaseFormatError, HarnessFailure
from ..repro import write_script
from .signature import Signature


class FailureStore:
    def __init__(self, out: Path):
        self.root = Path(out) / "failures"
        self.claims = self.root / ".claims"

    # -- the parent, before any job starts --------------------------------------------------
    def begin_campaign(self) -> None:
        """Forget the claims of earlier campaigns (their owners are gone), mark the
        minimised records as known, and drop half-written temporary files a kill left."""
        self.root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.claims, ignore_errors=True)
        self.claims.mkdir()
        for tmp in self.root.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)
        for rec in self.records():
            if rec.get("minimised") and rec.get("signature"):
                self._write_claim(rec["signature"]["id"], {"state": "minimised by an earlier campaign"})

    # -- jobs -------------------------------------------------------------------------------
    def is_known(self, sig_id: str) -> bool:
        """Claimed (being minimised, or done) by this campaign's jobs."""
        return (self.claims / sig_id).exists()

    def claim(self, sig: Signature, owner: dict) -> bool:
        """True for exactly one caller per signature and campaign."""
        return self._write_claim(sig.id, dict(owner, signature=sig.to_dict(), state="minimising"))

    def _write_claim(self, sig_id: str, content: dict) -> bool:
        self.claims.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.claims / sig_id, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as f:
            json.dump(content, f)
        return True

    def heartbeat(self, sig: Signature) -> None:
        """Renew a claim being worked on (claims here live as long as the campaign)."""

    def path_of(self, sig: Signature) -> Path:
        return self.root / f"{sig.slug}.npz"

    @contextlib.contextmanager
    def _lock(self):
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a+") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def save(self, sig: Signature, case: Case, failure: HarnessFailure, info: dict, *, where: str,
             only_if_absent: bool = False) -> Path:
        """Write (or replace) the record of `sig`: `case` with `info`, and its script.
        `only_if_absent`: keep an existing record. A minimised record is never replaced by
        one that is not."""
        path = self.path_of(sig)
        with self._lock():
            if path.exists():
                if only_if_absent:
                    return path
                if not info.get("minimised") and self._existing_info(path).get("minimised"):
                    return path
            record = dataclasses.replace(case, info=dict(info))
            write_script(path, failure, record.describe(), where, sig.slug)  # a case on disk always has its script
            save_case(record, path)
        return path

    @staticmethod
    def _existing_info(path: Path) -> dict:
        try:
            return load_case(path).info
        except CaseFormatError:
            return {}

    def existing(self, sig_id: str) -> dict | None:
        for path in self.root.glob(f"*-{sig_id}.npz"):
            info = self._existing_info(path)
            if info:
                return info
        return None

    def records(self) -> list[dict]:
        """Every record's info plus 'case' and 'script' paths (and 'describe', 'op'),
        oldest first sighting first; an unreadable file is listed as such."""
        out = []
        for path in sorted(self.root.glob("*.npz")):
            try:
                case = load_case(path)
            except CaseFormatError as exc:
                out.append({"case": str(path), "unreadable": str(exc), "kind": "unreadable", "op": "?",
                            "message": str(exc), "first_seen": {}})
                continue
            rec = dict(case.info, case=str(path), script=str(path.with_name(f"repro_{path.stem}.py")),
                       describe=case.describe(), op=case.op)
            rec.setdefault("kind", case.info.get("failure_kind", "?"))
            out.append(rec)
        out.sort(key=lambda r: (r.get("first_seen", {}).get("unix", 0.0), r["case"]))
        return out

    def load(self, record: dict) -> Case:
        return load_case(record["case"])
