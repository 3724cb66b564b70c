"""The mutant generator: sites in code only, stable ids, exact application."""
from pathlib import Path

from harness.mutants import all_mutants, find_mutants, load_equivalent

SOURCE = """#include <stdint.h>
/* a + b in a comment */
static int f(const int *p, int n) {
    int s = 0;  // s - 1
    for (int i = 0; i < n; ++i) s += p[i] * 2;
    g(n, s);
    puts("a < b");
    return s >> 1;
}
"""


def _mutants(tmp_path, text=SOURCE):
    path = tmp_path / "k.c"
    path.write_text(text)
    return find_mutants(path, "src/k.c")


def test_sites_are_code_only(tmp_path):
    ms = _mutants(tmp_path)
    lines = {m.line for m in ms}
    assert 1 not in lines and 2 not in lines  # include, comment
    assert not any(m.line == 7 and m.original == "<" for m in ms)  # inside a string
    assert not any(m.line == 3 and m.original == "*" for m in ms)  # pointer declarator
    ops = {(m.line, m.original, m.replacement) for m in ms}
    assert (5, "<", "<=") in ops and (5, "*", "/") in ops and (8, ">>", "<<") in ops
    assert (5, "2", "3") in ops and (5, "2", "1") in ops
    assert any(m.operator == "swap-args" and m.replacement == "s, n" for m in ms)
    assert any(m.operator == "drop-statement" and m.line == 6 for m in ms)


def test_unobservable_regions_are_skipped_and_other_ids_kept(tmp_path):
    marked = SOURCE.replace("    g(n, s);\n", "    /* mutate: off (a hint) */\n    g(n, s);\n    h(n + 1);\n"
                                                "    /* mutate: on */\n")
    plain, skipped = _mutants(tmp_path), _mutants(tmp_path, marked)
    assert any(m.line == 6 for m in plain)
    assert {m.line for m in skipped}.isdisjoint({6, 7, 8, 9})  # the markers and the region
    # code outside the region keeps its mutants and their ids
    assert {m.mid for m in plain if m.line != 6} == {m.mid for m in skipped}


def test_apply_changes_exactly_one_site(tmp_path):
    for m in _mutants(tmp_path):
        mutated = m.apply(SOURCE)
        before, after = SOURCE.split("\n"), mutated.split("\n")
        assert [i for i, (a, b) in enumerate(zip(before, after)) if a != b] == [m.line - 1]
        assert m.replacement in after[m.line - 1]


def test_ids_survive_unrelated_edits(tmp_path):
    first = {m.mid for m in _mutants(tmp_path)}
    shifted = {m.mid for m in _mutants(tmp_path, "/* new header line */\n" + SOURCE)}
    assert first == shifted
    assert len(first) == len(_mutants(tmp_path))  # ids are unique


def test_generated_tables_are_not_mutated():
    kernels = Path(__file__).resolve().parents[2] / "kernels"
    files = {m.file for m in all_mutants(kernels)}
    assert "src/grid.c" not in files and "src/ops.c" in files


def test_equivalent_list_format(tmp_path):
    path = tmp_path / "eq.txt"
    path.write_text("# comment\nabc123 fault block only\n\ndef456 dead store\n")
    assert load_equivalent(path) == {"abc123": "fault block only", "def456": "dead store"}


def test_a_resumed_run_keeps_results_but_runs_survivors_again(tmp_path):
    import json
    from dataclasses import asdict

    from harness.mutate import MutantResult, results_to_keep

    def line(mid, status):
        return json.dumps(asdict(MutantResult(mid, "src/k.c", 1, "arith", status, 1.0, "diff")))

    log = tmp_path / "results.jsonl"
    log.write_text("\n".join([line("a", "killed"), line("b", "survived"), line("c", "killed"), line("c", "survived"),
                              line("d", "survived"), line("d", "killed"), line("e", "equivalent-binary"),
                              line("f", "killed")[:30], line("g", "equivalent-listed"),
                              line("h", "equivalent-listed")]) + "\n")
    kept = results_to_keep(log, {"g": "still listed"})
    assert {mid: r.status for mid, r in kept.items()} == {"a": "killed", "d": "killed", "e": "equivalent-binary",
                                                          "g": "equivalent-listed"}  # h was taken off the list


def test_the_score_interval_of_a_sample_holds_the_score_and_narrows_with_size():
    from harness.mutate import wilson_interval

    lo, hi = wilson_interval(95, 100)
    assert lo < 0.95 < hi and 0.88 < lo and hi < 0.98
    lo4, hi4 = wilson_interval(380, 400)
    assert lo < lo4 < 0.95 < hi4 < hi
    assert wilson_interval(10, 10)[1] == 1.0 and wilson_interval(0, 0) == [0.0, 1.0]


def test_a_comment_that_starts_after_code_and_ends_on_a_later_line_is_not_code(tmp_path):
    text = ("int f(int a) {\n"
            "    int b = a + 1; /* b: a + 1, or a - 1\n"
            "                      << 16 when a > 2 */\n"
            "    return b * 2;\n"
            "}\n")
    sites = {(m.line, m.original) for m in _mutants(tmp_path, text)}
    assert (2, "+") in sites and (2, "1") in sites and (4, "*") in sites and (4, "2") in sites
    assert not {s for s in sites if s[0] == 3} and (2, "-") not in sites


def test_a_workspace_copy_is_newer_than_any_build_of_a_stopped_run(tmp_path):
    import os
    import time

    from harness.mutate import fresh_copy

    src = tmp_path / "kernels"
    (src / "src").mkdir(parents=True)
    (src / "src" / "ops.c").write_text("int x;\n")
    os.utime(src / "src" / "ops.c", (1e9, 1e9))  # the checkout's time, older than any object
    object_of_the_stopped_run = time.time() - 1
    fresh_copy(src, tmp_path / "ws" / "kernels")
    assert (tmp_path / "ws" / "kernels" / "src" / "ops.c").stat().st_mtime > object_of_the_stopped_run


def test_a_fixed_sample_keeps_its_members_when_other_code_changes():
    from harness.build import KERNELS_DIR
    from harness.mutate import choose_sample

    mutants = all_mutants(KERNELS_DIR)
    sample = choose_sample(mutants, 24, seed=2026)
    assert len(sample) == 24 and len({m.mid for m in sample}) == 24
    assert [m.mid for m in sample] == [m.mid for m in mutants if m in sample]  # the population's order
    outside = next(m for m in mutants if m not in sample)
    fewer = choose_sample([m for m in mutants if m is not outside], 24, seed=2026)
    assert [m.mid for m in fewer] == [m.mid for m in sample]  # a mutant gone elsewhere changes nothing
    other_seed = choose_sample(mutants, 24, seed=2027)
    assert {m.mid for m in other_seed} != {m.mid for m in sample}
    files = {m.file for m in choose_sample(mutants, 400, seed=21)}
    assert len(files) > len({m.file for m in mutants}) // 2  # drawn across the files, not from one end


def test_report_only_tells_where_a_long_run_stands_without_running_anything(tmp_path):
    import io
    import json
    from dataclasses import asdict

    from harness.build import KERNELS_DIR
    from harness.mutate import MutantResult, report_only

    mutants = all_mutants(KERNELS_DIR, ["src/api.c"])
    listed = load_equivalent(KERNELS_DIR / "mutants-equivalent.txt")
    unlisted = [m for m in mutants if m.mid not in listed]
    killed, survivor, never_run = unlisted[0], unlisted[1], unlisted[2:]
    lines = [json.dumps(asdict(MutantResult(m.mid, m.file, m.line, m.operator, status, 1.0, "diff")))
             for m, status in ((killed, "survived"), (killed, "killed"), (survivor, "survived"),
                               (never_run[0], "equivalent-listed"))]  # listed once, taken off since: not run
    (tmp_path / "results.jsonl").write_text("\n".join(lines) + "\n" + lines[0][:20])  # and a line cut by a kill
    said = io.StringIO()
    assert report_only(tmp_path, files=["src/api.c"], stream=said) == 1  # not all run yet
    assert "score so far" in said.getvalue()
    report = json.loads((tmp_path / "mutation-report.json").read_text())
    assert report["by_status"]["killed"] == 1 and [s["mid"] for s in report["survivors"]] == [survivor.mid]
    assert report["not_run"] == len(never_run) and report["selected"] == len(mutants)
    assert report["by_status"].get("equivalent-listed", 0) == len(mutants) - len(unlisted)
    assert "not run yet" in (tmp_path / "mutation-report.md").read_text()

    every = [json.dumps(asdict(MutantResult(m.mid, m.file, m.line, m.operator, "killed", 1.0, "diff")))
             for m in unlisted]
    (tmp_path / "results.jsonl").write_text("\n".join(every) + "\n")
    said = io.StringIO()
    assert report_only(tmp_path, files=["src/api.c"], stream=said) == 0  # complete, above the target
    assert "mutation score 1.000" in said.getvalue()


def test_a_white_box_test_is_stopped_when_blocked_or_past_its_wall_limit(monkeypatch):
    """A deadlocked C test (a mutant's pool that never wakes) uses no CPU: it is stopped after
    IDLE_LIMIT seconds, not after the wall limit; a busy one after the wall limit; one that
    ends is returned with its output and status."""
    import sys
    import time

    from harness import mutate

    monkeypatch.setattr(mutate, "IDLE_LIMIT", 1.0)
    t0 = time.monotonic()
    assert mutate._run_watched(["sleep", "60"], 100) == "used no CPU for 1 s"
    assert time.monotonic() - t0 < 10
    assert mutate._run_watched([sys.executable, "-c", "while True: pass"], 2) == "exceeded 2 s"
    done = mutate._run_watched([sys.executable, "-c", "import sys; print('out'); sys.exit(3)"], 60)
    assert (done.returncode, done.stdout) == (3, "out\n")
