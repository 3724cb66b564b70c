"""The campaign's parent process: it prepares the output directory and the library, starts
the jobs, shows one progress line, stops the jobs on time (or on Ctrl-C), and writes the
report. It never runs a kernel itself.

Time: the jobs stop exploring at the deadline; a shrink in progress may go on for
`grace` seconds more; a run in progress then may take up to its timeout. At
deadline + grace + STOP_SLACK the parent sends SIGTERM (a job kills its worker at once and
saves what it has), and SIGKILL KILL_AFTER seconds later. Ctrl-C (SIGINT) or SIGTERM does
the same at once; the report is written from what was saved, and the exit status is 130
(143 for SIGTERM).
"""
from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from ..errors import UsageError
from .config import CampaignConfig, check_usable_isas, harness_env
from .stats import merge, read_stats

STOP_SLACK = 30.0
KILL_AFTER = 10.0
POLL = 0.5


class _Terminated(Exception):
    """SIGTERM to the parent: stop like Ctrl-C."""


def _raise_terminated(signum, frame):
    raise _Terminated


def lock_output(out: Path):
    """One campaign at a time per output directory (the lock dies with the process)."""
    f = open(out / ".campaign.lock", "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        raise UsageError(f"--out {out}: another campaign is writing there right now") from None
    return f


def prepare_output(cfg: CampaignConfig) -> None:
    """Working state of an earlier campaign in the same directory goes; its failures stay."""
    from .fleet import open_store

    shutil.rmtree(cfg.out / "jobs", ignore_errors=True)
    shutil.rmtree(cfg.out / "findings", ignore_errors=True)
    (cfg.out / "jobs").mkdir(parents=True)
    open_store(cfg).begin_campaign()


def check_target(cfg: CampaignConfig, target, stream) -> None:
    """Build or locate the library now (a one-line error, not one per job); with --isas,
    load it once to check that this CPU runs the levels asked for."""
    print(f"preparing {target.label()} ...", file=stream, flush=True)
    target.prepare()
    if cfg.isas:
        from ..runner import Runner

        with Runner(target, cfg.out / "jobs" / "probe") as runner:
            check_usable_isas(cfg.isas, runner.isas, target.label())
        shutil.rmtree(cfg.out / "jobs" / "probe", ignore_errors=True)


def announce(cfg: CampaignConfig, target) -> None:
    """A shared store learns of this campaign (its merged report lists it)."""
    import json

    from .fleet import open_store
    from .job import campaign_id

    store = open_store(cfg)
    if hasattr(store, "publish_campaign"):
        store.publish_campaign(campaign_id(cfg), json.dumps(dict(json.loads(cfg.to_json()),
                                                                 target_label=target.label())))


def start_jobs(cfg: CampaignConfig) -> list[subprocess.Popen]:
    procs = []
    env = harness_env()
    for j in range(cfg.jobs):
        with open(cfg.out / "jobs" / f"job-{j}.stderr", "ab") as err:
            # -P: the job imports the harness this process runs (PYTHONPATH), never one that
            # happens to be in the current directory
            procs.append(subprocess.Popen([sys.executable, "-P", "-m", "harness.campaign", "--config", cfg.to_json(),
                                           "--job", str(j)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                          stderr=err, env=env))
    return procs


def _signal_all(procs, sig) -> None:
    for p in procs:
        if p.poll() is None:
            try:
                p.send_signal(sig)
            except ProcessLookupError:
                pass


def stop_jobs(procs, *, wait: float = STOP_SLACK) -> None:
    """SIGTERM, then SIGKILL after KILL_AFTER seconds; a second Ctrl-C kills at once."""
    _signal_all(procs, signal.SIGTERM)
    deadline = time.time() + min(wait, KILL_AFTER)
    try:
        while time.time() < deadline and any(p.poll() is None for p in procs):
            time.sleep(0.1)
    except (KeyboardInterrupt, _Terminated):
        pass
    _signal_all(procs, signal.SIGKILL)
    for p in procs:
        p.wait()


def run_campaign(cfg: CampaignConfig, target, stream=sys.stderr) -> int:
    from .report import console_lines, write_report
    from .progress import Progress

    cfg.out.mkdir(parents=True, exist_ok=True)
    lock = lock_output(cfg.out)
    old_term = signal.signal(signal.SIGTERM, _raise_terminated)
    procs: list[subprocess.Popen] = []
    how_stopped = ""
    try:
        prepare_output(cfg)
        check_target(cfg, target, stream)
        cfg.start = time.time()
        cfg.parent_pid = os.getpid()
        announce(cfg, target)
        procs = start_jobs(cfg)
        progress = Progress(cfg, stream)
        hard_stop = cfg.deadline + cfg.grace + STOP_SLACK
        try:
            while any(p.poll() is None for p in procs):
                time.sleep(POLL)
                progress.update(merge(read_stats(cfg.out)))
                if time.time() > hard_stop:
                    how_stopped = f"stopped by the parent at the deadline + {cfg.grace:.0f} s grace + {STOP_SLACK:.0f} s"
                    stop_jobs(procs)
        except KeyboardInterrupt:
            how_stopped = "interrupted (Ctrl-C)"
            stop_jobs(procs)
        except _Terminated:
            how_stopped = "terminated (SIGTERM)"
            stop_jobs(procs)
        progress.finish(merge(read_stats(cfg.out)))
    except BaseException:
        _signal_all(procs, signal.SIGKILL)
        raise
    finally:
        signal.signal(signal.SIGTERM, old_term)
    # Ctrl-C from here on must not lose the report: it is quick, and written atomically
    old_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        total = merge(read_stats(cfg.out))
        report = write_report(cfg, target, total, elapsed=time.time() - cfg.start, how_stopped=how_stopped)
        try:
            for line in console_lines(report, cfg.out):
                print(line, file=stream)
        except (OSError, ValueError):
            pass  # the report files are written; a closed console loses only this echo
    finally:
        signal.signal(signal.SIGINT, old_int)
        lock.close()
    if how_stopped.startswith("interrupted"):
        return 130
    if how_stopped.startswith("terminated"):
        return 143
    if report["current_failures"]:
        return 1
    return 2 if report["job_errors"] else 0
