"""What a person reads of a bench run: a console line per record, bench.md, bench.png, and
the issue's speed targets evaluated on the run (informational: nothing asserts them).

Everything here is a function of the summary dict that bench.json holds, so a report can be
redrawn from a saved run (`write(out, json.loads(...))`).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

MODES = (("ours", "ratio", "peak_fraction_ours"), ("ours_pp", "ratio_pp", "peak_fraction_pp"))


def label(r: dict) -> str:
    if r["op"] == "mul_mat":
        return f"mul_mat K=M={r['k']} N={r['tokens']}"
    return f"moe {r['experts']}x{r['rows']}x{r['k']} top{r['top_k']} T={r['tokens']}"


def _num(v, fmt: str = ".2f") -> str:
    return "-" if v is None else format(v, fmt)


def line(r: dict) -> str:
    """One console line for a record."""
    o = r["ours"]
    s = f"{label(r):<40} t={r['threads']}  ours {o['gops']:8.1f} GOP/s (±{100 * o['spread']:.0f}%)"
    if r.get("ggml"):
        s += f"  ggml {r['ggml']['gops']:8.1f} (±{100 * r['ggml']['spread']:.0f}%)  ratio {r['ratio']:.2f}"
    elif r.get("ggml_failure"):
        s += f"  ggml {r['ggml_failure']}"
    if r.get("ratio_cpu") is not None:
        s += f" (cpu {r['ratio_cpu']:.2f})"
    s += f"  prepacked {r['ours_pp']['gops']:8.1f}"
    if r.get("ratio_pp") is not None:
        s += f" ratio {r['ratio_pp']:.2f}"
    if not r["pp_bit_exact"]:
        s += "  PREPACKED OUTPUT DIFFERS"
    if r.get("scaling_ours") is not None:
        s += f"  vs 1 thread {r['scaling_ours']:.2f}x, prepacked {r['scaling_ours_pp']:.2f}x"
    if r["threads"] > 1:
        s += f"  (got {o['cores_median']:.2f} cores)"
    if r.get("work_ab"):
        ab = r["work_ab"]
        s += f"  ggml {ab['methods'][1]}/{ab['methods'][0]} time {ab['ratio']:.3f}"
    return s


def cores_note(r: dict, mode: str) -> str:
    """', got 1.2 cores' when a multi-thread measurement got fewer cores than threads: the
    figure then says more about the machine than about the kernels."""
    got = r[mode].get("cores_median")
    return f", got {got:.2f} cores" if r["threads"] > 1 and got is not None and got < 0.9 * r["threads"] else ""


def targets(records: list[dict], peak: dict | None) -> list[dict]:
    """The issue's speed goals, evaluated on this run for both ways of passing the weights
    (IQ1_M per call, prepacked once); informational, nothing asserts them. A shape the
    ggml build could not run has no ratio and no target."""
    by = {(r["op"], r["tokens"], r["threads"]): r for r in records}
    res: dict[str, dict] = {}

    def add(name, mode, ok, detail):
        res.setdefault(name, {"target": name})[mode] = {"met": ok, "detail": detail}

    for mode, ratio, pf in MODES:
        for r in records:
            if r["threads"] != 1 or r[ratio] is None or r["op"] != "mul_mat":
                continue
            n = r["tokens"]
            need = 1.5 if n == 1 else 3.0 if n in (8, 16) else 1.5 if n >= 32 else None
            if need:
                add(f"mul_mat N={n} 1 thread >= {need}x ggml", mode, r[ratio] >= need, f"{r[ratio]:.2f}x")
        for r in records:
            if r["op"] == "moe_up_gate" and r[ratio] is not None:
                add(f"moe T={r['tokens']} {r['threads']} thread(s) >= 1.3x ggml", mode, r[ratio] >= 1.3,
                    f"{r[ratio]:.2f}x")
        for (op, n, t), r in sorted(by.items()):
            if op == "mul_mat" and t == 2 and n >= 32 and (op, n, 1) in by:
                sc = r[mode]["gops"] / by[(op, n, 1)][mode]["gops"]
                add(f"mul_mat N={n} 2 threads >= 1.8x 1 thread", mode, sc >= 1.8, f"{sc:.2f}x{cores_note(r, mode)}")
        if peak:
            for r in records:
                if r["op"] == "mul_mat" and r["tokens"] >= 128 and r.get(pf) is not None:
                    add(f"mul_mat N={r['tokens']} {r['threads']} thread(s) >= 60% of int8 peak", mode,
                        r[pf] >= 0.6, f"{100 * r[pf]:.0f}%{cores_note(r, mode)}")
    return list(res.values())


def _samples(peak: dict, t: int) -> str:
    v = peak.get("int8_samples", {}).get(str(t)) or [peak["int8_gops"][str(t)]]
    return f"{min(v)} - {max(v)} ({len(v)})"


def _ggml_line(g: dict) -> str:
    if "unavailable" in g:
        return f"- ggml: unavailable ({g['unavailable']})"
    return (f"- ggml: {g.get('identity', g.get('version'))} ({g.get('lib_dir')}); moe = "
            f"{g.get('moe_composition')}; work context emptied by {g.get('work_method', 'reset')} before each "
            f"call; {g.get('probe', '')}")


def _peak_table(s: dict) -> list[str]:
    p, ts = s["peak"], s["threads"]
    return ["| roofline | " + " | ".join(f"{t} thread(s)" for t in ts) + " |",
            "| --- | " + " | ".join("---" for _ in ts) + " |",
            "| int8 dot-product peak (GOP/s), median of the run's samples | "
            + " | ".join(str(p["int8_gops"][str(t)]) for t in ts) + " |",
            "| int8 peak samples (min - max, count) | " + " | ".join(_samples(p, t) for t in ts) + " |",
            "| read bandwidth (GB/s) | " + " | ".join(str(p["read_gbs"][str(t)]) for t in ts) + " |", ""]


def _row(r: dict) -> str:
    g = r.get("ggml")
    pf = r.get("peak_fraction_ours")
    pp = f"{r['ours_pp']['gops']:.1f}" + ("" if r["pp_bit_exact"] else " (OUTPUT DIFFERS)")
    if g:
        ggml = f"{g['gops']:.1f} | {100 * g['spread']:.0f}% | {r['ratio']:.2f} | {r['ratio_paired']:.2f}"
    else:
        ggml = f"{r.get('ggml_failure') or '-'} | - | - | -"
    return (f"| {label(r)} | {r['threads']} | {r['ours']['cores_median']:.2f} | {r['ours']['gops']:.1f} "
            f"| {100 * r['ours']['spread']:.0f}% | {ggml} | {_num(r.get('ratio_cpu'))} "
            f"| {'-' if pf is None else f'{100 * pf:.0f}%'} | {r.get('bandwidth_bound_gops', '-')} "
            f"| {pp} | {_num(r.get('ratio_pp'))} |")


def _work_ab(records: list[dict]) -> list[str]:
    rows = [r for r in records if r.get("work_ab")]
    if not rows:
        return []
    a, b = rows[0]["work_ab"]["methods"]
    return ["", f"## ggml work context: {a} against {b} (same run)", "",
            f"Time per call with the work context emptied by {b}, over the time with {a}: medians, the "
            "median of the per-repetition ratios, and (1 thread) the calling thread's CPU time; 1.0 = no "
            "difference; compare with the spreads above.", "",
            "| shape | threads | time ratio | paired | CPU-time ratio |", "| --- | ---: | ---: | ---: | ---: |"]\
        + [f"| {label(r)} | {r['threads']} | {r['work_ab']['ratio']:.3f} | {r['work_ab']['paired']:.3f} "
           f"| {_num(r['work_ab'].get('cpu_ratio'), '.3f')} |" for r in rows]


def markdown(s: dict) -> str:
    info = s["info"]
    lines = ["# iq1m-harness bench", "",
             f"- ours: `{info['ours']['version']}` {info['ours']['isa']}, build `{info['ours']['build']}`",
             _ggml_line(info["ggml"]),
             f"- {s['reps']} alternating repetitions per shape (ours, ggml, ours, ..., every thread count in the "
             f"same rotation), each >= {s['min_time_s']} s "
             "of calls; figures are medians, spread = (max - min) / median of the times; "
             "ratio = ggml median time / our median time (> 1: ours faster), same run; paired = median of "
             "the per-repetition ratios; CPU-time ratio (1 thread) = the same from the calling thread's CPU "
             "time, which a busy machine's descheduling does not inflate; cores got = our process's CPU time over "
             "the wall time during our runs (median): below the thread count, the machine lent cores elsewhere; "
             "a ggml cell that says how ggml died is a shape its probe run did not survive (not timed)",
             f"- elapsed {s['elapsed_s']} s", ""]
    if s["peak"]:
        lines += _peak_table(s)
    lines += ["| shape | threads | cores got | ours GOP/s | spread | ggml GOP/s | spread | ours/ggml | paired "
              "| CPU-time ratio | % int8 peak | bw-bound GOP/s | prepacked GOP/s | prepacked/ggml |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    lines += [_row(r) for r in s["records"]]
    lines += _work_ab(s["records"])
    if s["targets"]:
        def cell(t, mode):
            v = t.get(mode)
            return "-" if v is None else f"{'yes' if v['met'] else 'NO'} ({v['detail']})"
        lines += ["", "## Targets (this run)", "", "| target | IQ1_M per call | prepacked once |",
                  "| --- | --- | --- |"]
        lines += [f"| {t['target']} | {cell(t, 'ours')} | {cell(t, 'ours_pp')} |" for t in s["targets"]]
    return "\n".join(lines) + "\n"


def figure(s: dict):
    """GOP/s against tokens, one panel per op, on log-log axes: the int8 peak lines (up to
    100x the slowest curves) stay on the chart without flattening the libraries' curves.
    A ggml point that was not timed (its probe died) is an x on the panel's floor."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ops = [op for op in ("mul_mat", "moe_up_gate") if any(r["op"] == op for r in s["records"])]
    fig, axes = plt.subplots(1, max(1, len(ops)), figsize=(6.5 * max(1, len(ops)), 4.8), squeeze=False)
    for ax, op in zip(axes[0], ops):
        for i, t in enumerate(s["threads"]):
            rs = [r for r in s["records"] if r["op"] == op and r["threads"] == t]
            if not rs:
                continue
            n = [r["tokens"] for r in rs]
            color = f"C{i}"
            ax.plot(n, [r["ours"]["gops"] for r in rs], "o-", color=color, label=f"ours, {t} thr")
            ax.plot(n, [r["ours_pp"]["gops"] for r in rs], "^-", color=color, alpha=0.6,
                    label=f"ours prepacked, {t} thr")
            if any(r.get("ggml") for r in rs):
                ax.plot(n, [r["ggml"]["gops"] if r.get("ggml") else math.nan for r in rs], "s--", color=color,
                        mfc="none", label=f"ggml, {t} thr")
            died = [r["tokens"] for r in rs if r.get("ggml_failure")]
            if died:
                ax.plot(died, [0.03 + 0.05 * i] * len(died), "x", color=color, ms=9, mew=2, clip_on=False,
                        transform=ax.get_xaxis_transform(), label=f"ggml died, {t} thr")
            if s["peak"]:
                ax.axhline(s["peak"]["int8_gops"][str(t)], color=color, lw=0.8, ls=":",
                           label=f"int8 peak, {t} thr")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("tokens (N)")
        ax.set_ylabel("GOP/s (log scale)")
        rs0 = [r for r in s["records"] if r["op"] == op]
        ax.set_title(label(rs0[0]).rsplit(" ", 1)[0] if rs0 else op)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot(path: Path, s: dict) -> None:
    import matplotlib.pyplot as plt

    fig = figure(s)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(out: Path, summary: dict) -> None:
    """bench.json, bench.md and bench.png in `out`."""
    (out / "bench.json").write_text(json.dumps(summary, indent=2))
    (out / "bench.md").write_text(markdown(summary))
    plot(out / "bench.png", summary)
