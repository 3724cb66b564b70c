"""Time-boxed fuzz campaigns (`iq1m-harness fuzz`): a fuzzer, not a replayer.

The flow, one module each:

    config     the campaign's settings, every one validated up front (a mistake is exit 2)
    parent     prepares OUT, builds the library, starts N job processes, shows one progress
               line, stops the jobs on time or on Ctrl-C, writes the report
    job        one job: replays the saved failures once, then explores new cases with
               Hypothesis; each new failure is claimed, saved at once, and minimised on its
               own; then back to exploring until the deadline
    signature  what makes two failures the same bug (kind, op, abort site or invariance)
    store      the failures on disk: one record (case + repro script) per signature,
               written atomically, safe for many jobs
    fleet      the same store on Redis: one campaign across machines
    stats      a job's counters (per minute too) and their merge
    progress   the progress line
    report     report.{json,md,png} and the console's list of failures

Layout of the output directory:

    failures/            <slug>.npz + repro_<slug>.py per distinct failure (see store)
    examples/            Hypothesis's example database: each failure's choice sequence,
                         to resume an interrupted shrink (or --db DIR / redis://...)
    jobs/job-N.json      live counters of job N; jobs/job-N/ its worker log and working files
    findings/            a ggml target's non-failing observations (the first 100 of each kind per
                         job, one JSON line each; all are counted in the report)
    report.json, report.md, report.png
"""
from .config import DEFAULT_THREADS, CampaignConfig
from .parent import run_campaign
from .stats import RATIO_EDGES, JobStats, merge, read_stats

__all__ = ["CampaignConfig", "DEFAULT_THREADS", "JobStats", "RATIO_EDGES", "merge", "read_stats", "run_campaign"]
