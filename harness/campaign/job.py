"""One job of a campaign: a fuzzer on one core, with its own isolated kernel worker.

    replay   the saved failures assigned to this job run once: still failing, or fixed?
             One that is not minimised yet (an earlier campaign was stopped while shrinking
             it) is shrunk again from its example in the example database.
    explore  Hypothesis generates new cases (its generate phase only: no replay of stored
             examples, no shrinking). A failing case is classified by its signatures
             (harness.campaign.signature): a known signature is counted and the property
             returns normally, so generation goes on; a new one is claimed in the store,
             saved at once (its first sighting), and ends the batch, and Hypothesis's
             choice sequence of the case is kept for the shrink.
    shrink   every new signature is minimised on its own: hypothesis.find() from its
             choice sequence, with the predicate "this case shows signature S" (S may also
             be among the failures of the runs before a death, `failure.also`). The
             minimised case replaces the first sighting under the same name. A shrink stops
             at the deadline + grace, keeping the smallest case it found.

Then back to exploring until the deadline. Every case runs at most once per job: results
are remembered by the case's digest, so Hypothesis's own replays cost nothing.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

from ..cases import atomic_write_bytes
from ..errors import HarnessFailure, KernelHang, UsageError
from .config import CampaignConfig
from .fleet import example_database, open_store
from .signature import Signature, run_context, signatures_of
from .stats import JobStats, ratio_bucket

BATCH_EXAMPLES = 200       # new cases per Hypothesis run (a new signature ends a run early)
CACHE_ENTRIES = 128        # failing results remembered (with their cases)
PERSIST_EVERY = 10.0       # seconds between saves of a shrink's best case so far
SWEEP_EVERY = 50           # cases between sweeps of the job's working case files
STATS_EVERY = 5.0          # seconds between pushes of a job's counters to a shared store
FINDING_LINES = 100        # findings written per kind and job (all are counted)
CLAIM_RENEWAL = 20.0       # seconds between renewals of this job's claims


class _Stop(BaseException):
    """SIGTERM/SIGINT or the parent is gone: stop now (a BaseException: Hypothesis lets it through)."""


class _OutOfTime(BaseException):
    """The deadline of the current phase passed (exploring: the deadline; shrinking: + grace)."""


class _NewSignature(Exception):
    """Ends an exploration batch: its case showed a signature this job claimed."""


def signature_key(sig: Signature) -> bytes:
    """The example database key of one signature's choice sequences (its own corpus:
    the minimised example under the key, earlier ones under key + b'.secondary')."""
    return b"iq1m-signature:" + sig.id.encode()


@dataclass
class Result:
    """What one case showed: nothing (passed), or failures by signature id."""
    failures: dict[str, tuple[Signature, HarnessFailure]] = field(default_factory=dict)
    case: object = None            # the case as the target ran it (failing results only)
    outcomes: list | None = None   # passing results, for the error/bound statistics
    claimed_in_batch: int = -1     # the exploration batch in which this case's new signatures were claimed
    ran: bool = True               # False: answered from memory


def _capture_database():
    from hypothesis.database import ExampleDatabase

    class CaptureDatabase(ExampleDatabase):
        """Hypothesis saves the choice sequence of a failing example here (and replays
        nothing): how an exploration run hands its new failure to the shrink."""

        def __init__(self):
            super().__init__()
            self.saved: list[bytes] = []

        def save(self, key: bytes, value: bytes) -> None:
            if not key.endswith((b".secondary", b".pareto")):
                self.saved.append(value)

        def fetch(self, key: bytes):
            return iter(())

        def delete(self, key: bytes, value: bytes) -> None:
            pass

    return CaptureDatabase()


class Job:
    def __init__(self, cfg: CampaignConfig, job: int):
        self.cfg = cfg
        self.job = job
        self.stats = JobStats(job=job, host=cfg.host, pid=os.getpid(), campaign=campaign_id(cfg),
                              campaign_start=cfg.start)
        self.status_path = cfg.out / "jobs" / f"job-{job}.json"
        self.store = open_store(cfg)
        self.stopping = False
        self.runner = None
        self.cache: OrderedDict[str, Result] = OrderedDict()
        self.passed: set[str] = set()
        self.batch_no = 0
        self.pending: list[Signature] = []          # claimed here, to be shrunk
        self.first: dict[str, tuple] = {}           # signature id -> (case, failure) of its first sighting here
        self.first_seen: dict[str, dict] = {}       # signature id -> when and where it was first seen
        self.kept_findings: set[str] = set()
        self._last_publish = 0.0
        self._last_push = 0.0
        self._last_renewal = 0.0
        self.holding: dict[str, Signature] = {}     # claimed here, not minimised yet
        self._evaluations = 0
        self._passing = 0

    # -- plumbing ----------------------------------------------------------------------------
    def publish(self, force: bool = False) -> None:
        now = time.time()
        if force or now - self._last_publish > 0.5:
            self.stats.updated = now
            data = self.stats.to_json()
            atomic_write_bytes(self.status_path, data)
            self._last_publish = now
            if hasattr(self.store, "publish_stats") and (force or now - self._last_push > STATS_EVERY):
                self.store.publish_stats(self.stats.campaign, self.job, data)  # the fleet's merged report
                self._last_push = now

    def _on_signal(self, signum, frame) -> None:
        self.stopping = True
        self._kill_worker()  # a run in progress (a hang) ends now; the case is then not judged

    def _kill_worker(self) -> None:
        proc = getattr(getattr(self.runner, "worker", None), "proc", None)
        # returncode, not poll(): this runs in a signal handler, and a forked worker's poll()
        # reads the fork server's socket, which the interrupted code may be reading
        if proc is not None and proc.returncode is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def log(self, text: str) -> None:
        print(f"job {self.job}: {text}"[:4000], file=sys.stderr, flush=True)

    # -- main ----------------------------------------------------------------------------------
    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        die_with_parent(self.cfg.parent_pid)
        self.publish(force=True)
        try:
            self._setup()
        except _Stop:
            return self._finish()
        except Exception as exc:  # reported by the parent as a one-line error
            self.stats.error = f"{exc}"[:500]
            return self._finish(2)
        try:
            self.stats.phase = "replay"
            self.replay_known()
            self.shrink_pending()
            while not self.stopping and time.time() < self.cfg.deadline:
                self.stats.phase = "explore"
                self.explore_batch()
                self.shrink_pending()
        except _Stop:
            pass
        except Exception as exc:  # the harness itself cannot go on
            import traceback

            self.log(traceback.format_exc())
            self.stats.error = f"{type(exc).__name__}: {exc}"[:500]
        finally:
            self._finish()
        return 0

    def _finish(self, status: int = 0) -> int:
        if self.runner is not None:
            self.runner.close()
            self._sweep()
        self.stats.phase = "done"
        self.stats.finished = True
        self.publish(force=True)
        return status

    def _setup(self) -> None:
        from .. import strategies as hs
        from ..runner import Runner
        from ..targets import from_dict

        tdict = dict(self.cfg.target)
        target = from_dict(tdict, variant=self.cfg.variant, strict=bool(tdict.get("strict")))
        self.runner = Runner(target, self.cfg.out / "jobs" / f"job-{self.job}")
        if self.stopping:
            raise _Stop
        isas = [i for i in self.runner.isas if not self.cfg.isas or i in self.cfg.isas] or self.runner.isas[:1]
        ops = [op for op in self.cfg.ops if target.supports(op)]  # e.g. ggml: the GEMM ops only
        if not ops:
            raise UsageError(f"{target.label()} runs none of the operations {', '.join(self.cfg.ops)}")
        self.strategy = hs.cases(isas, ops, threads=list(self.cfg.threads), routing=target.routing)
        self.db = example_database(self.cfg)
        if self.cfg.seed is not None:
            seed_hypothesis(self.cfg.seed * 1000 + self.job)

    # -- running one case -----------------------------------------------------------------------
    def evaluate(self, case, purpose: str) -> Result:
        """Run `case` once (or answer from memory) and classify what it showed. `purpose`:
        explore (new signatures are claimed here), shrink, or replay."""
        digest = case.digest()
        if digest in self.passed:
            self.stats.cache_hits += 1
            return Result(ran=False)
        hit = self.cache.get(digest)
        if hit is not None:
            self.cache.move_to_end(digest)
            self.stats.cache_hits += 1
            return Result(hit.failures, hit.case, None, hit.claimed_in_batch, ran=False)
        if self.stopping:
            raise _Stop
        self._renew_claims()
        try:
            outcomes = self.runner.check(case)
        except HarnessFailure as failure:
            if self.stopping:
                raise _Stop from None  # the worker was killed by our own signal handler
            result = Result({s.id: (s, f) for s, f in signatures_of(failure, case)}, case)
            if isinstance(failure, KernelHang):
                self.stats.hangs += 1
                self.stats.hang_seconds += failure.timeout
        except UsageError as exc:  # the target cannot run this case here (e.g. no usable SIMD level)
            self.stats.skipped += 1
            if self.stats.skipped <= 3:
                self.log(f"skipped a case: {exc}")
            self.passed.add(digest)
            return Result(ran=True)
        else:
            result = Result(outcomes=outcomes)
            self.passed.add(digest)
            if len(self.passed) > 100_000:
                self.passed.clear()
        self._count(case, purpose, result)
        self._take_findings()
        self._evaluations += 1
        if result.failures or self._evaluations % SWEEP_EVERY == 0:
            self._sweep()
        if result.failures:
            self.cache[digest] = result
            while len(self.cache) > CACHE_ENTRIES:
                self.cache.popitem(last=False)
            self._classify(result, purpose)
        self.publish()
        return result

    def _renew_claims(self) -> None:
        """Keep the claims of the signatures this job has yet to finish minimising (on a
        shared store they expire, so a dead machine's work is taken over)."""
        now = time.monotonic()
        if now - self._last_renewal < CLAIM_RENEWAL or not self.holding:
            return
        for sig in self.holding.values():
            self.store.heartbeat(sig)
        self._last_renewal = now

    def _count(self, case, purpose: str, result: Result) -> None:
        from ..strategies import token_count_bucket

        s = self.stats
        slot = s.slot(self.cfg.start)
        if purpose == "shrink":
            s.shrink_steps += 1
            slot["shrink_steps"] += 1
            return
        if purpose == "replay":
            s.replays += 1
            slot["replays"] += 1
            return
        s.cases += 1
        slot["cases"] += 1
        if result.failures:
            s.failing_cases += 1
            slot["failing_cases"] += 1
        s.ops[case.op] += 1
        buckets = {token_count_bucket(int(c)) for c in case.expert_token_counts()}
        threads = {r.n_threads for r in case.runs}
        for b in buckets:
            s.token_buckets[b] += 1
            slot["token_buckets"][b] = slot["token_buckets"].get(b, 0) + 1
            for t in threads:
                s.coverage[f"{b}|{t}"] += 1
        for t in threads:
            s.threads[str(t)] += 1
        for i in {r.isa + (" prepacked" if r.prepacked else "") for r in case.runs}:
            s.isas[i] += 1
        s.events.update(case.info.get("events", ()))  # shape classes, Q8_K corners, canaries, ...
        if result.outcomes and result.outcomes[0].output is not None:
            self._passing += 1
            if self._passing % 4 == 1:
                self._ratio_sample(case, result.outcomes[0].output)

    def _ratio_sample(self, case, output) -> None:
        """Error/bound statistics on a sample of cases (the bound costs a float64 pass)."""
        from ..compare import within_bound_report

        _, ratio = within_bound_report(case, output)
        if ratio.size:
            self.stats.max_ratio = max(self.stats.max_ratio, float(ratio.max()))
            for r in ratio.ravel()[:: max(1, ratio.size // 256)]:
                self.stats.ratio_hist[ratio_bucket(float(r))] += 1

    def _take_findings(self) -> None:
        """Non-failing observations of a ggml target are counted; the first
        FINDING_LINES of each kind go to findings/job-N.jsonl (one JSON object a line)."""
        if not self.runner.findings:
            return
        path = self.cfg.out / "findings" / f"job-{self.job}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as f:
            for item in self.runner.findings:
                self.stats.findings[item["kind"]] += 1
                if self.stats.findings[item["kind"]] <= FINDING_LINES:
                    f.write(json.dumps(item, sort_keys=True) + "\n")
                    self.kept_findings.update(p for p in (item.get("case"), item.get("sub_case")) if p)
        self.runner.findings.clear()

    def _sweep(self) -> None:
        """Working case files are kept only while a case runs and for kept findings: the
        failures that matter are in the store by now."""
        case_dir = getattr(self.runner, "case_dir", None)
        if case_dir is None or not case_dir.exists():
            return
        for path in case_dir.iterdir():
            if str(path) not in self.kept_findings:
                path.unlink(missing_ok=True)

    # -- signatures --------------------------------------------------------------------------------
    def _classify(self, result: Result, purpose: str) -> None:
        """Count every signature the case shows; claim and save the new ones."""
        for sig, failure in result.failures.values():
            self.stats.sightings[sig.id] += 1
            if self.store.is_known(sig.id) or sig.id in self.first:
                continue
            also = [s for s, _ in result.failures.values() if s.id != sig.id]
            if purpose == "explore":
                if not self.store.claim(sig, self.owner()):
                    continue  # another job got there first: it minimises it, this one counts it
                self.first[sig.id] = (result.case, failure)
                self._note_first_sighting(sig)
                self.pending.append(sig)
                self.holding[sig.id] = sig
                result.claimed_in_batch = self.batch_no
                self.persist(sig, result.case, failure, also, minimised=False, status="found; minimising")
                self.log(f"new failure {sig.label()}")
            elif sig.id not in self.first_seen and self._note_first_sighting(sig):
                # seen while shrinking another failure (or replaying one): saved now, so it is not
                # lost; there is no choice sequence to shrink it from, exploration may find it again
                status = f"seen while {'minimising another failure' if purpose == 'shrink' else 'replaying'} " \
                         f"(no example to minimise it from; a later sighting will be)"
                self.persist(sig, result.case, failure, also, minimised=False, status=status, only_if_absent=True)
                self.log(f"new failure {sig.label()} ({status})")

    def _note_first_sighting(self, sig: Signature) -> bool:
        """Remember when `sig` was first seen: now, unless a record already says earlier.
        Returns whether this is the first sighting anywhere (it counts as a new failure)."""
        old = self.store.existing(sig.id)
        if old and old.get("first_seen"):
            self.first_seen.setdefault(sig.id, old["first_seen"])
            return False
        self.first_seen.setdefault(sig.id, self._first_seen(sig))
        if sig.id not in self.stats.found:
            self.stats.found.append(sig.id)
            self.stats.slot(self.cfg.start)["new_failures"] += 1
        return True

    def owner(self) -> dict:
        return {"host": self.cfg.host, "job": self.job, "pid": os.getpid(), "time": time.time()}

    def _first_seen(self, sig: Signature) -> dict:
        now = time.time()
        return {"unix": now, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
                "elapsed_s": round(now - self.cfg.start, 1), "host": self.cfg.host, "job": self.job,
                "campaign": self.stats.campaign}

    def persist(self, sig: Signature, case, failure: HarnessFailure, also: list[Signature], *, minimised: bool,
                status: str, steps: int = 0, seconds: float = 0.0, only_if_absent: bool = False) -> None:
        first = self.first_seen.get(sig.id)
        if first is None:
            old = self.store.existing(sig.id) or {}
            first = self.first_seen[sig.id] = old.get("first_seen") or self._first_seen(sig)
        info = {
            "failure_kind": failure.kind, "message": failure.message, "detail": failure.detail[:4000],
            "stderr_tail": failure.stderr_tail[-4000:], "signal": getattr(failure, "signal_name", ""),
            "signature": sig.to_dict(), "run": failure.options.label() if failure.options is not None else "",
            "run_context": run_context(case, failure.options), "also_shows": [s.to_dict() for s in also],
            "first_seen": first, "minimised": minimised,
            "shrink": {"status": status, "steps": steps, "seconds": round(seconds, 1)},
            "found_by_job": first.get("job"),
            "found_by": {k: first.get(k) for k in ("host", "job", "campaign")},
            "library": self.runner.hello, "target_label": self.runner.target.label(),
            "run_timeout_s": round(self.runner.timeout_for(case), 1),
        }
        self.store.save(sig, case, failure, info, where=self.runner.target.label(), only_if_absent=only_if_absent)
        self.stats.shrinks[sig.id] = {"status": status, "steps": steps, "seconds": round(seconds, 1),
                                      "minimised": minimised, "job": self.job}
        self.publish(force=True)

    # -- phases ------------------------------------------------------------------------------------
    def replay_known(self) -> None:
        """Run the saved failures assigned to this job once (a fix shows up as 'did not
        reproduce'); queue the unminimised ones that have an example to shrink from."""
        records = [r for r in self.store.records() if r.get("signature")]
        for i, rec in enumerate(records):
            if i % self.cfg.jobs != self.job or self.stopping:
                continue
            if time.time() >= self.cfg.deadline:
                break
            sig = Signature.from_dict(rec["signature"])
            try:
                case = self.store.load(rec)
            except Exception as exc:
                self.stats.replayed[sig.id] = f"unreadable: {exc}"[:200]
                continue
            result = self.evaluate(case, "replay")
            shown = result.failures.get(sig.id)
            others = sorted({f"{s.kind}: {s.detail}" for s, _ in result.failures.values() if s.id != sig.id})
            self.stats.replayed[sig.id] = "reproduced" if shown else \
                (f"fails differently ({'; '.join(others)})"[:300] if others else "did not reproduce")
            if shown and not rec.get("minimised") and self._has_examples(sig) \
                    and self.store.claim(sig, self.owner()):
                self.first[sig.id] = (result.case, shown[1])
                self.first_seen[sig.id] = rec.get("first_seen") or self._first_seen(sig)
                key = signature_key(sig)
                for value in list(self.db.fetch(key)):  # the best so far, to shrink further
                    self.db.move(key, key + b".secondary", value)
                self.pending.append(sig)
                self.holding[sig.id] = sig
            self.publish()

    def _has_examples(self, sig: Signature) -> bool:
        key = signature_key(sig)
        return any(True for _ in self.db.fetch(key)) or any(True for _ in self.db.fetch(key + b".secondary"))

    def explore_batch(self) -> None:
        from hypothesis import HealthCheck, Phase, Verbosity, given, settings

        self.batch_no += 1
        capture = _capture_database()
        claimed: list[Signature] = []

        @settings(database=capture, max_examples=BATCH_EXAMPLES, deadline=None, derandomize=False,
                  suppress_health_check=list(HealthCheck), phases=[Phase.generate], report_multiple_bugs=False,
                  verbosity=Verbosity.quiet)
        @given(case=self.strategy)
        def explore(case):
            if time.time() >= self.cfg.deadline:
                raise _OutOfTime
            before = len(self.pending)
            result = self.evaluate(case, "explore")
            claimed.extend(self.pending[before:])
            if result.claimed_in_batch == self.batch_no:
                raise _NewSignature  # Hypothesis saves the choice sequence into `capture`

        try:
            explore()
        except _NewSignature:
            if capture.saved:
                for sig in claimed:
                    self.db.save(signature_key(sig) + b".secondary", capture.saved[-1])
            else:
                self.log("no choice sequence captured for " + ", ".join(s.slug for s in claimed))
        except _OutOfTime:
            pass

    def shrink_pending(self) -> None:
        while self.pending:
            sig = self.pending.pop(0)
            self.shrink(sig)

    def shrink(self, sig: Signature) -> None:
        """Minimise one signature from its stored choice sequence."""
        from hypothesis import HealthCheck, Phase, Verbosity, find, settings
        from hypothesis.errors import Flaky, NoSuchExample

        self.stats.phase = f"shrink {sig.slug}"
        case0, failure0 = self.first[sig.id]
        best = [case0, failure0, {}]
        steps0 = self.stats.shrink_steps
        t0 = time.monotonic()
        last_save = [t0]
        give_up_at = self.cfg.deadline + self.cfg.grace

        def shows(case) -> bool:
            if self.stopping:
                raise _Stop
            if time.time() >= give_up_at:
                raise _OutOfTime
            try:
                result = self.evaluate(case, "shrink")
            except (_Stop, _OutOfTime):
                raise
            except Exception as exc:  # a harness error must not count as "shows S" (find would accept it)
                self.log(f"error while minimising {sig.slug}: {type(exc).__name__}: {exc}")
                return False
            hit = result.failures.get(sig.id)
            if hit is None:
                return False
            best[:] = [result.case, hit[1], result.failures]
            if time.monotonic() - last_save[0] > PERSIST_EVERY:
                self._persist_best(sig, best, minimised=False, status="minimising", t0=t0, steps0=steps0)
                last_save[0] = time.monotonic()
            return True

        opts = settings(database=self.db, phases=[Phase.reuse, Phase.shrink], max_examples=100, deadline=None,
                        suppress_health_check=list(HealthCheck), verbosity=Verbosity.quiet)
        try:
            find(self.strategy, shows, settings=opts, database_key=signature_key(sig))
        except _Stop:
            self._persist_best(sig, best, minimised=False, status="interrupted while minimising", t0=t0,
                               steps0=steps0)
            raise
        except _OutOfTime:
            self._persist_best(sig, best, minimised=False,
                               status=f"stopped at the deadline + {self.cfg.grace:.0f} s grace",
                               t0=t0, steps0=steps0)
        except (NoSuchExample, Flaky) as exc:
            self._persist_best(sig, best, minimised=False, t0=t0, steps0=steps0,
                               status=f"the case did not fail the same way when replayed "
                                      f"({type(exc).__name__}: flaky or timing-dependent)")
        else:
            self._persist_best(sig, best, minimised=True, status="minimised", t0=t0, steps0=steps0)
            key = signature_key(sig) + b".secondary"
            for value in list(self.db.fetch(key)):
                self.db.delete(key, value)
        self.holding.pop(sig.id, None)  # minimised (known for good), or left for whoever sees it next
        self.stats.phase = "explore"

    def _persist_best(self, sig, best, *, minimised: bool, status: str, t0: float, steps0: int) -> None:
        case, failure, failures = best
        also = [s for s, _ in failures.values() if s.id != sig.id] if failures else []
        self.persist(sig, case, failure, also, minimised=minimised, status=status,
                     steps=self.stats.shrink_steps - steps0, seconds=time.monotonic() - t0)


# -- helpers shared with the parent ---------------------------------------------------------

def campaign_id(cfg: CampaignConfig) -> str:
    """Names a campaign among the fleet's: host, parent pid, start."""
    return f"{cfg.host}:{cfg.parent_pid}:{int(cfg.start)}"


def seed_hypothesis(value: int) -> None:
    """Seed Hypothesis's own generator. `hypothesis.seed()` would do it too but also turns
    the example database off, and the shrinks need it."""
    import random

    import hypothesis.core

    local = getattr(hypothesis.core, "threadlocal", None)
    if local is not None and hasattr(local, "_hypothesis_global_random"):
        local._hypothesis_global_random = random.Random(value)


def die_with_parent(parent_pid: int) -> None:
    """SIGTERM when the campaign's parent process dies (even by SIGKILL): a job never
    outlives its campaign."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    if parent_pid and os.getppid() != parent_pid:  # it died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def job_main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m harness.campaign")
    p.add_argument("--config", required=True, help="the campaign's settings (JSON)")
    p.add_argument("--job", type=int, required=True)
    a = p.parse_args(argv)
    return Job(CampaignConfig.from_json(a.config), a.job).run()
