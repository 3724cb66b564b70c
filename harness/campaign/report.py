"""The campaign report: report.json (every counter, per minute too), report.md (what a person
reads) and report.png (failures and coverage over time, coverage of token-count buckets x
thread counts, error/bound ratios with the bound marked). The failures listed come from the
store (OUT/failures, or the shared Redis store), the record that survives a killed
campaign; the console prints the same list."""
from __future__ import annotations

import json
import time
from pathlib import Path

from ..cases import atomic_write_bytes
from .config import CampaignConfig
from .stats import BOUND_BIN, MINUTE_FIELDS, RATIO_EDGES, SLOT_SECONDS


def ratio_bin_labels(edges: list[str]) -> list[str]:
    """Histogram bin names: '<= edge', and the open last bin (past the bound) as '> previous'."""
    return [f"> {edges[i - 1]}" if e == "inf" and i else f"<= {e}" for i, e in enumerate(edges)]


def failure_entries(records: list[dict], total: dict) -> list[dict]:
    """One entry per failure record, with what this campaign saw of it."""
    out = []
    for rec in records:
        sig = rec.get("signature") or {}
        sid = sig.get("id", "")
        shrink = rec.get("shrink", {})
        first = rec.get("first_seen", {})
        replayed = total["replayed"].get(sid, "")
        sightings = int(total["sightings"].get(sid, 0))
        new = sid in total["found"]
        out.append({
            "id": sid, "slug": sig.get("slug", Path(rec["case"]).stem), "kind": rec.get("kind", "?"),
            "op": rec.get("op", "?"), "signature": sig.get("detail", rec.get("message", "")),
            "message": rec.get("message", ""), "signal": rec.get("signal", ""),
            "first_seen": first, "found_by": rec.get("found_by", {}),
            "minimised": bool(rec.get("minimised")), "shrink": shrink,
            "sightings": sightings, "new": new, "replayed": replayed,
            "current": bool(new or sightings or replayed == "reproduced" or not replayed),
            "run": rec.get("run", ""), "run_context": rec.get("run_context", ""),
            "also_shows": [s.get("detail", "") and f"{s['kind']}: {s['detail']}" for s in rec.get("also_shows", [])],
            "run_timeout_s": rec.get("run_timeout_s"), "case": rec["case"], "script": rec.get("script", ""),
            "describe": rec.get("describe", ""), "unreadable": rec.get("unreadable", ""),
        })
    return out


def per_minute(total: dict, seconds: int = 60) -> list[dict]:
    """The timeline summed per `seconds` (a multiple of SLOT_SECONDS), with cumulative
    token-bucket coverage."""
    from ..strategies import TOKEN_COUNT_BUCKETS

    per = max(1, seconds // SLOT_SECONDS)
    slots = sorted(int(m) for m in total["timeline"])
    rows, cumulative = [], {b: 0 for b in TOKEN_COUNT_BUCKETS}
    for m in range(slots[-1] // per + 1 if slots else 0):
        row = {"minute" if seconds == 60 else "start_s": m if seconds == 60 else m * seconds,
               **{f: 0 for f in MINUTE_FIELDS}, "token_buckets": {}}
        for slot in range(m * per, (m + 1) * per):
            entry = total["timeline"].get(str(slot), {})
            for f in MINUTE_FIELDS:
                row[f] += entry.get(f, 0)
            for b, n in entry.get("token_buckets", {}).items():
                row["token_buckets"][b] = row["token_buckets"].get(b, 0) + n
        for b in TOKEN_COUNT_BUCKETS:
            cumulative[b] += row["token_buckets"].get(b, 0)
        row["cumulative_token_buckets"] = dict(cumulative)
        rows.append(row)
    return rows


def build_report(cfg: CampaignConfig, target_label: str, total: dict, records: list[dict], *, elapsed: float,
                 how_stopped: str = "") -> dict:
    from ..strategies import TOKEN_COUNT_BUCKETS

    threads = sorted({int(t) for t in total["threads"]})
    failures = failure_entries(records, total)
    hang_timeouts = [f["run_timeout_s"] for f in failures if f["kind"] == "hang" and f["run_timeout_s"]]
    return {
        "target": target_label, "variant": cfg.variant, "jobs": cfg.jobs, "host": cfg.host,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(cfg.start)),
        "budget_s": cfg.budget, "grace_s": cfg.grace, "elapsed_s": round(elapsed, 1),
        "stopped": how_stopped or "at the deadline", "interrupted": how_stopped.startswith(("interrupted", "terminated")),
        "time_limits": {"explore_until_s": cfg.budget, "shrink_until_s": cfg.budget + cfg.grace,
                        "hard_stop_s": cfg.budget + cfg.grace + 30.0},
        "cases": total["cases"], "replays": total["replays"], "shrink_steps": total["shrink_steps"],
        "cache_hits": total["cache_hits"], "skipped": total["skipped"], "failing_cases": total["failing_cases"],
        "cases_per_s": round(total["cases"] / elapsed, 2) if elapsed > 0 else 0.0,
        "hangs": {"count": total["hangs"], "seconds_waited": round(total["hang_seconds"], 1),
                  "timeout_s": max(hang_timeouts) if hang_timeouts else None},
        "ops": dict(total["ops"]), "isas": dict(total["isas"]),
        "token_buckets": {b: total["token_buckets"].get(b, 0) for b in TOKEN_COUNT_BUCKETS},
        "threads": {str(t): total["threads"].get(str(t), 0) for t in threads},
        "coverage": dict(total["coverage"]),
        "events": dict(sorted(total["events"].items())),
        "uncovered_token_buckets": [b for b in TOKEN_COUNT_BUCKETS if not total["token_buckets"].get(b)],
        "error_bound_ratio": {"edges": [str(e) for e in RATIO_EDGES], "counts": total["ratio_hist"],
                              "max": total["max_ratio"], "bound_bin": BOUND_BIN},
        "per_minute": per_minute(total),
        "per_slot": per_minute(total, SLOT_SECONDS),
        "failures": failures,
        "current_failures": sum(1 for f in failures if f["current"]),
        "job_errors": total["errors"],
    }


def write_report(cfg: CampaignConfig, target, total: dict, *, elapsed: float, how_stopped: str = "",
                 campaigns: list[dict] | None = None) -> dict:
    from .fleet import open_store

    store = open_store(cfg)
    if hasattr(store, "sync"):
        store.sync()  # the shared store's failures, found anywhere, into OUT/failures
    records = store.records()
    report = build_report(cfg, target.label() if hasattr(target, "label") else str(target), total, records,
                          elapsed=elapsed, how_stopped=how_stopped)
    report["findings"] = dict(total["findings"])
    if campaigns is not None:
        report["campaigns"] = campaigns
    paths = {"json": cfg.out / "report.json", "md": cfg.out / "report.md", "png": cfg.out / "report.png"}
    atomic_write_bytes(paths["json"], json.dumps(report, indent=2, sort_keys=True).encode())
    atomic_write_bytes(paths["md"], markdown(report).encode())
    plot(paths["png"], report)
    report["paths"] = {k: str(v) for k, v in paths.items()}
    return report


def _when(f: dict) -> str:
    first = f.get("first_seen") or {}
    if not first:
        return "?"
    from .progress import mmss

    by = f"job {first.get('job')}" + (f" of campaign {first['campaign']}" if first.get("campaign") else
                                      f" on {first['host']}" if first.get("host") else "")
    return f"{first.get('time', '?')} ({mmss(first.get('elapsed_s', 0))} into its campaign, {by})"


def _shrunk(f: dict) -> str:
    s = f.get("shrink") or {}
    how = f" ({s.get('steps', 0)} steps, {s.get('seconds', 0)} s)" if s.get("steps") else ""
    return ("yes" if f["minimised"] else f"no, {s.get('status', 'not minimised')}") + how


def console_lines(report: dict, out: Path) -> list[str]:
    """What the console prints at the end: the same failures as report.md."""
    lines = [f"report: {report['paths']['md']}"]
    if report.get("findings"):
        lines.append("findings (not failures; --strict makes them fail): "
                     + ", ".join(f"{k} x{n}" for k, n in sorted(report["findings"].items()))
                     + f"; details: {out / 'findings'}")
    fails = report["failures"]
    if fails:
        lines.append(f"{len(fails)} failure(s) ({sum(f['new'] for f in fails)} new in this campaign):")
    for f in fails:
        state = "" if f["current"] else f" [replayed: {f['replayed']}]"
        lines.append(f"FAILURE {f['kind']} in {f['op']}: {f['signature']}{state}")
        lines.append(f"  shrunk: {_shrunk(f)}; first seen {_when(f)}; {f['sightings']} case(s) here")
        lines.append(f"  case: {f['case']}")
        lines.append(f"  reproduce: python {f['script']}")
    for e in report["job_errors"]:
        lines.append(f"iq1m-harness: {e}")
    return lines


def markdown(r: dict) -> str:
    from ..strategies import TOKEN_COUNT_BUCKETS

    threads = [int(t) for t in r["threads"]]
    hang = r["hangs"]
    lines = ["# iq1m-harness campaign report", "",
             f"- target `{r['target']}`, {r['jobs']} job(s) on {r['host']}, started {r['started']}",
             (f"- {r['stopped']}: {r['elapsed_s']} s from the first start to the last update" if r.get("campaigns")
              else f"- {r['elapsed_s']} s of a {r['budget_s']:.0f} s budget; stopped {r['stopped']}; shrinks may run "
                   f"{r['grace_s']:.0f} s past the deadline, jobs are stopped at deadline + "
                   f"{r['time_limits']['hard_stop_s'] - r['budget_s']:.0f} s"),
             f"- {r['cases']} new cases ({r['cases_per_s']}/s, {r['failing_cases']} failing), "
             f"{r['shrink_steps']} shrink steps, {r['replays']} replays of saved failures, "
             f"{r['cache_hits']} repeats answered from memory" + (f", {r['skipped']} skipped" if r["skipped"] else ""),
             "- operations: " + ", ".join(f"{k} {v}" for k, v in sorted(r["ops"].items())),
             "- cases per SIMD level (IQ1_M weights, and prepacked): "
             + ", ".join(f"{k} {v}" for k, v in sorted(r["isas"].items()))]
    if hang["count"]:
        lines.append(f"- {hang['count']} hung run(s): {hang['seconds_waited']} s spent waiting for timeouts "
                     f"(a run may take {hang['timeout_s'] or '?'} s before it counts as hung)")
    lines += [f"- **{len(r['failures'])} distinct failure(s)**, {r['current_failures']} failing now", ""]
    if r.get("campaigns"):
        lines += ["## Campaigns", "", "| campaign | target | jobs | started | budget |", "|---|---|---|---|---|"]
        for c in r["campaigns"]:
            started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(c["start"]))
            lines.append(f"| {c['id']} | {c.get('target_label', '?')} | {c['jobs']} | {started} | "
                         f"{c['minutes'] * 60:.0f} s |")
        lines.append("")
    if r["failures"]:
        lines += ["## Failures", ""]
        for f in r["failures"]:
            lines.append(f"### {f['kind']} in `{f['op']}`" + ("" if f["current"] else f" ({f['replayed']})"))
            lines.append("")
            lines.append(f"- signature: `{f['signature']}`")
            if f["signal"]:
                lines.append(f"- signal: {f['signal']}")
            lines.append(f"- message: {f['message']}")
            lines.append(f"- first seen: {_when(f)}")
            lines.append(f"- shrunk: {_shrunk(f)}")
            lines.append(f"- seen in {f['sightings']} case(s) of this campaign"
                         + (f"; replayed at start: {f['replayed']}" if f["replayed"] else ""))
            if f["run_context"]:
                lines.append(f"- failing run: {f['run_context']}")
            if f["also_shows"]:
                lines.append(f"- the same case also shows: {'; '.join(f['also_shows'])}")
            if f["kind"] == "hang" and f["run_timeout_s"]:
                lines.append(f"- a run counts as hung after {f['run_timeout_s']} s")
            if f["describe"]:
                lines.append(f"- case: {f['describe']}")
            lines += [f"- file `{f['case']}`", f"- reproduce: `python {f['script']}`", ""]
    if r["uncovered_token_buckets"]:
        lines += [f"Token-count buckets never covered: {', '.join(r['uncovered_token_buckets'])}", ""]
    lines += ["## Coverage: new cases per (tokens per expert, thread count)", "",
              "| tokens \\ threads | " + " | ".join(map(str, threads)) + " |",
              "|---|" + "---|" * len(threads)]
    for b in TOKEN_COUNT_BUCKETS:
        lines.append(f"| {b} | " + " | ".join(str(r["coverage"].get(f"{b}|{t}", 0)) for t in threads) + " |")
    lines += ["", "## Per minute", "",
              "| minute | new cases | failing | new failures | shrink steps | replays | "
              + " | ".join(f"tokens {b} (total)" for b in TOKEN_COUNT_BUCKETS) + " |",
              "|---|---|---|---|---|---|" + "---|" * len(TOKEN_COUNT_BUCKETS)]
    for m in r["per_minute"]:
        lines.append(f"| {m['minute']} | {m['cases']} | {m['failing_cases']} | {m['new_failures']} | "
                     f"{m['shrink_steps']} | {m['replays']} | "
                     + " | ".join(f"{m['token_buckets'].get(b, 0)} ({m['cumulative_token_buckets'][b]})"
                                  for b in TOKEN_COUNT_BUCKETS) + " |")
    e = r["error_bound_ratio"]
    labels = ratio_bin_labels(e["edges"])
    lines += ["", "## |output - exact| / bound (sampled elements of passing cases)", "",
              "| ratio | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels),
              "| elements | " + " | ".join(map(str, e["counts"])) + " |", "",
              f"Bins after `{labels[e['bound_bin']]}` are past the bound. Largest ratio seen: {e['max']:.3g}", ""]
    if r.get("findings"):
        lines += ["## Findings (not failures)", ""] + [f"- {k}: {n}" for k, n in sorted(r["findings"].items())] + [""]
    if r["job_errors"]:
        lines += ["## Job errors", ""] + [f"- {x}" for x in r["job_errors"]]
    return "\n".join(lines) + "\n"


def plot(path: Path, r: dict) -> None:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from ..strategies import TOKEN_COUNT_BUCKETS

    buckets = list(TOKEN_COUNT_BUCKETS)
    threads = [int(t) for t in r["threads"]]
    fig, axes = plt.subplots(2, 2, figsize=(13, 8.5))
    (ax_time, ax_fail), (ax_cov, ax_hist) = axes

    # coverage over time, with each failure's first sighting
    ends = [(m["start_s"] + SLOT_SECONDS) / 60.0 for m in r["per_slot"]]
    for b in buckets:
        ax_time.plot([0] + ends, [0] + [m["cumulative_token_buckets"][b] for m in r["per_slot"]],
                     label=f"{b} tokens")
    for i, f in enumerate(r["failures"]):
        t = (f.get("first_seen") or {}).get("elapsed_s")
        if t is None or not f["new"]:
            continue
        ax_time.axvline(t / 60.0, color="tab:red", ls="--", lw=0.8)
        ax_time.annotate(f"#{i + 1}", (t / 60.0, 0), xytext=(2, 4 + 10 * (i % 4)), textcoords="offset points",
                         color="tab:red", fontsize=8)
    ax_time.set_xlabel("minutes")
    ax_time.set_ylabel("new cases per token bucket (cumulative)")
    ax_time.set_title("coverage over time; red: first sighting of a failure")
    ax_time.legend(fontsize=7, loc="upper left")

    # failures
    ax_fail.axis("off")
    ax_fail.set_title(f"{len(r['failures'])} failure(s)")
    text = []
    for i, f in enumerate(r["failures"][:14]):
        first = (f.get("first_seen") or {}).get("elapsed_s")
        when = f"{first / 60:.1f} min" if first is not None and f["new"] else "earlier campaign"
        text.append(f"#{i + 1} {f['kind']} in {f['op']} ({when}; shrunk: {'yes' if f['minimised'] else 'no'})")
        text.append(f"    {f['signature'][:70]}")
    if len(r["failures"]) > 14:
        text.append(f"... {len(r['failures']) - 14} more in report.md")
    ax_fail.text(0, 1, "\n".join(text) or "none", va="top", ha="left", family="monospace", fontsize=8,
                 transform=ax_fail.transAxes)

    # coverage grid
    grid = np.array([[r["coverage"].get(f"{b}|{t}", 0) for t in threads] for b in buckets], dtype=float)
    if grid.size == 0:
        grid = np.zeros((len(buckets), 1))
    im = ax_cov.imshow(grid, cmap="viridis", aspect="auto")
    ax_cov.set_xticks(range(grid.shape[1]), [str(t) for t in threads] or [""])
    ax_cov.set_yticks(range(len(buckets)), buckets)
    ax_cov.set_xlabel("threads")
    ax_cov.set_ylabel("tokens per expert")
    ax_cov.set_title("new cases per (token bucket, thread count)")
    for (i, j), v in np.ndenumerate(grid):
        ax_cov.text(j, i, f"{int(v)}", ha="center", va="center", color="w" if v < grid.max() / 2 else "k", fontsize=8)
    fig.colorbar(im, ax=ax_cov)

    # error / bound
    e = r["error_bound_ratio"]
    counts = e["counts"]
    ax_hist.bar(range(len(counts)), counts, color=["tab:blue"] * (e["bound_bin"] + 1)
                + ["tab:red"] * (len(counts) - e["bound_bin"] - 1))
    ax_hist.axvline(e["bound_bin"] + 0.5, color="k", ls="--", lw=1)
    ax_hist.text(e["bound_bin"] + 0.55, 0.95, "bound", transform=ax_hist.get_xaxis_transform(), fontsize=8)
    ax_hist.set_xticks(range(len(counts)), ratio_bin_labels(e["edges"]), rotation=45, fontsize=8)
    ax_hist.set_yscale("symlog")
    ax_hist.set_title("|out - exact| / bound, sampled elements of passing cases")
    if not any(counts):
        ax_hist.text(0.5, 0.5, "no passing case was sampled", ha="center", va="center", transform=ax_hist.transAxes)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def merged_report(url: str, out: Path) -> dict:
    """report.{json,md,png} in `out` for every campaign that used `url`: their counters
    merged (per-minute rows aligned on the earliest start), every failure once, with who
    saw it first."""
    from .fleet import RedisFailureStore
    from .stats import JobStats, align, merge

    store = RedisFailureStore(out, url)
    campaigns = store.campaigns()
    stats = [JobStats.from_json(raw) for raw in store.all_stats()]
    starts = [c["start"] for c in campaigns.values()] or [s.campaign_start or s.started for s in stats] or [time.time()]
    start = min(starts)
    end = max([s.updated for s in stats] + [start])
    total = merge(align(stats, start))
    cfg = CampaignConfig(out=out, minutes=max(end - start, 1.0) / 60.0, jobs=len(stats), target={}, db=url,
                         grace=max([c.get("grace", 0.0) for c in campaigns.values()] or [0.0]), start=start,
                         host=", ".join(sorted({c["host"] for c in campaigns.values()})) or "?")
    labels = sorted({c.get("target_label", "?") for c in campaigns.values()})
    report = write_report(cfg, ", ".join(labels) or "?", total, elapsed=end - start,
                          how_stopped=f"merged report of {len(campaigns)} campaign(s) sharing {url}",
                          campaigns=[dict(c, id=k) for k, c in sorted(campaigns.items(), key=lambda kv: kv[1]["start"])])
    return report
