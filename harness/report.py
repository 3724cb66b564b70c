"""The end-of-campaign report: report.json (every counter), report.md (a summary a person
reads) and report.png (coverage of token-count buckets x thread counts, and the
distribution of error/bound ratios). Failures are listed from the failures/ directory,
which is the record that survives even a killed campaign."""
from __future__ import annotations

import json
from pathlib import Path

from .cases import atomic_write_bytes, load_case
from .errors import CaseFormatError


def ratio_bin_labels(edges: list[str]) -> list[str]:
    """Histogram bin names: '<= edge', and the open last bin (past the bound) as '> previous'."""
    return [f"> {edges[i - 1]}" if e == "inf" and i else f"<= {e}" for i, e in enumerate(edges)]


def saved_failures(out: Path) -> list[dict]:
    failures = []
    for path in sorted((out / "failures").glob("*.npz")):
        try:
            case = load_case(path)
        except CaseFormatError as exc:
            failures.append({"id": path.stem, "kind": "unreadable", "op": "?", "message": str(exc), "case": str(path)})
            continue
        info = case.info
        failures.append({"id": path.stem, "kind": info.get("failure_kind", "?"), "op": case.op,
                         "message": info.get("message", ""), "case": str(path), "describe": case.describe(),
                         "script": str(path.with_name(f"repro_{path.stem}.py"))})
    return failures


def write_report(out: Path, total: dict, *, elapsed: float, budget: float, variant: str, jobs: int,
                 interrupted: bool = False) -> dict[str, Path]:
    from .campaign import RATIO_EDGES
    from .strategies import TOKEN_COUNT_BUCKETS

    failures = saved_failures(out)
    threads = sorted({int(t) for t in total["threads"]})
    report = {
        "variant": variant, "jobs": jobs, "elapsed_s": round(elapsed, 1), "budget_s": budget,
        "interrupted": interrupted, "cases": total["cases"],
        "cases_per_s": round(total["cases"] / elapsed, 2) if elapsed else 0.0,
        "ops": dict(total["ops"]), "isas": dict(total["isas"]),
        "token_buckets": {b: total["token_buckets"].get(b, 0) for b in TOKEN_COUNT_BUCKETS},
        "threads": {str(t): total["threads"].get(str(t), 0) for t in threads},
        "coverage": dict(total["coverage"]),
        "events": dict(sorted(total.get("events", {}).items())),
        "uncovered_token_buckets": [b for b in TOKEN_COUNT_BUCKETS if not total["token_buckets"].get(b)],
        "error_bound_ratio": {"edges": [str(e) for e in RATIO_EDGES], "counts": total["ratio_hist"],
                              "max": total["max_ratio"]},
        "failures": failures, "job_errors": total["errors"],
    }
    paths = {"json": out / "report.json", "md": out / "report.md", "png": out / "report.png"}
    atomic_write_bytes(paths["json"], json.dumps(report, indent=2, sort_keys=True).encode())
    atomic_write_bytes(paths["md"], _markdown(report, TOKEN_COUNT_BUCKETS, threads).encode())
    _plot(paths["png"], report, TOKEN_COUNT_BUCKETS, threads)
    return paths


def _markdown(r: dict, buckets, threads) -> str:
    lines = [f"# iq1m-harness campaign report", "",
             f"- variant `{r['variant']}`, {r['jobs']} job(s), {r['elapsed_s']} s of {r['budget_s']:.0f} s"
             + (" (interrupted)" if r["interrupted"] else ""),
             f"- {r['cases']} cases, {r['cases_per_s']} cases/s; operations: "
             + ", ".join(f"{k} {v}" for k, v in sorted(r["ops"].items())),
             f"- cases per SIMD level (IQ1_M weights, and prepacked): "
             + ", ".join(f"{k} {v}" for k, v in sorted(r["isas"].items())),
             f"- **{len(r['failures'])} distinct failure(s)**", ""]
    if r["uncovered_token_buckets"]:
        lines += [f"Token-count buckets never covered: {', '.join(r['uncovered_token_buckets'])}", ""]
    lines += ["## Coverage: cases per (tokens per expert, thread count)", "",
              "| tokens \\ threads | " + " | ".join(map(str, threads)) + " |",
              "|---|" + "---|" * len(threads)]
    for b in buckets:
        lines.append(f"| {b} | " + " | ".join(str(r["coverage"].get(f"{b}|{t}", 0)) for t in threads) + " |")
    e = r["error_bound_ratio"]
    lines += ["", "## |output - exact| / bound (sampled elements)", "",
              "| ratio | " + " | ".join(ratio_bin_labels(e["edges"])) + " |", "|---|" + "---|" * len(e["edges"]),
              "| elements | " + " | ".join(map(str, e["counts"])) + " |", "", f"Largest ratio seen: {e['max']:.3g}", ""]
    if r["failures"]:
        lines += ["## Failures", ""]
        for f in r["failures"]:
            lines += [f"- **{f['kind']}** in `{f['op']}`: {f['message']}",
                      f"  - case `{f['case']}`", f"  - reproduce: `python {f.get('script', '')}`"]
            if f.get("describe"):
                lines.append(f"  - {f['describe']}")
    if r["job_errors"]:
        lines += ["", "## Job errors", ""] + [f"- {e}" for e in r["job_errors"]]
    return "\n".join(lines) + "\n"


def _plot(path: Path, r: dict, buckets, threads) -> None:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    grid = np.array([[r["coverage"].get(f"{b}|{t}", 0) for t in threads] for b in buckets], dtype=float)
    im = ax1.imshow(grid if grid.size else np.zeros((len(buckets), 1)), cmap="viridis", aspect="auto")
    ax1.set_xticks(range(len(threads)), [str(t) for t in threads])
    ax1.set_yticks(range(len(buckets)), buckets)
    ax1.set_xlabel("threads")
    ax1.set_ylabel("tokens per expert")
    ax1.set_title("cases per (token bucket, thread count)")
    for (i, j), v in np.ndenumerate(grid):
        ax1.text(j, i, f"{int(v)}", ha="center", va="center", color="w" if v < grid.max() / 2 else "k", fontsize=8)
    fig.colorbar(im, ax=ax1)
    e = r["error_bound_ratio"]
    ax2.bar(range(len(e["counts"])), e["counts"], color="tab:blue")
    ax2.set_xticks(range(len(e["counts"])), ratio_bin_labels(e["edges"]), rotation=45, fontsize=8)
    ax2.set_yscale("symlog")
    ax2.set_title("|out - exact| / bound")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())

