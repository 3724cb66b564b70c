"""`iq1m_last_path_rows`: every expert runs on the path its token count selects (direct below
the repack threshold, repacked at or above it), whatever the thread count, and a failed call
reports no rows. The outputs cannot show this: both paths give the same bits by contract, so
without it a threshold test turned around would pass every property. Runs in a subprocess."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.targets.libiq1m import REPACK_NEVER
from harness.targets import sanitizer_environment

NONFINITE = 4


def _case(op, counts, threshold, threads=1, rows=19, k=256, fused=True, prepacked=False, nan=False):
    return {"op": op, "counts": counts, "rows": rows, "k": k, "nan": nan,
            "options": {"n_threads": threads, "repack_threshold": threshold, "fused": fused,
                        "prepacked": prepacked}}


def _expected(case):
    mats = 2 if case["op"] == "moe_up_gate" else 1
    thr = case["options"]["repack_threshold"]
    direct = sum(case["rows"] * mats for c in case["counts"] if 0 < c < thr)
    repacked = sum(case["rows"] * mats for c in case["counts"] if c > 0 and c >= thr)
    return [direct, repacked]


CASES = [
    *[_case("mul_mat", [n], thr, threads) for n in (1, 7, 8, 31, 32, 33) for thr in (8, 32)
      for threads in (1, 2)],
    _case("mul_mat", [5], 0), _case("mul_mat", [40], REPACK_NEVER),
    _case("mul_mat", [40], 32, threads=3, rows=600), _case("mul_mat", [3], 32, threads=2, rows=600),
    *[_case("mul_mat_id", [0, 1, 31, 32, 33, 100], thr, threads) for thr in (1, 32, 33)
      for threads in (1, 2)],
    *[_case("moe_up_gate", [2, 0, 40, 32, 9], 32, threads, fused=fused, prepacked=prepacked)
      for threads in (1, 2) for fused in (True, False) for prepacked in (False, True)],
]


@pytest.fixture(scope="module")
def path_rows(iq1m_runner, tmp_path_factory):
    def run(cases):
        spec = tmp_path_factory.mktemp("paths") / "cases.json"
        spec.write_text(json.dumps(cases))
        env = dict(os.environ, **sanitizer_environment(iq1m_runner.variant))
        proc = subprocess.run([sys.executable, str(Path(__file__).with_name("path_calls.py")),
                               str(iq1m_runner.library), str(spec)],
                              capture_output=True, text=True, env=env, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return json.loads(proc.stdout)
    return run


def test_each_expert_runs_on_the_path_its_token_count_selects(path_rows):
    got = path_rows(CASES)
    wrong = [(c["op"], c["counts"], c["options"], g, _expected(c))
             for c, g in zip(CASES, got) if g != _expected(c)]
    assert not wrong, "(op, counts, options, got [direct, repacked], want):\n" + "\n".join(map(str, wrong))


@pytest.mark.parametrize("op", ["mul_mat", "mul_mat_id", "moe_up_gate"])
def test_a_failed_or_empty_call_reports_no_rows(path_rows, op):
    both = _case("mul_mat_id", [1, 40], 32)  # rows on both paths, so stale counts would show
    counts = [40] if op == "mul_mat" else [1, 40]
    got = path_rows([both, _case(op, counts, 32, nan=True), both, _case(op, [0] * len(counts), 32)])
    assert got == [[19, 19], {"error": NONFINITE, "paths": [0, 0]}, [19, 19], [0, 0]]
