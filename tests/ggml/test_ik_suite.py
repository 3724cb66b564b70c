"""The property suite run as a user would on the pre-fix ik_llama.cpp build, in the CI
profile (`pytest --iq1m-target ggml --iq1m-ggml-lib-dir ...`): it reports the seed's abort
from the test named for it, and every failure it reports is one of the three bugs that
test_ik_build.py confirms by calling the library directly, checked against the saved case:

- the seed's abort (`ggml.c:15254: fatal error`): moe_up_gate with an expert at 1..31 pairs;
- `GGML_ASSERT(Nx%num_rows == 0) failed`: an expert (or mul_mat) at >= 32 tokens, rows % 8 != 0;
- a result beyond every bound: an expert named twice by one token and given more pairs
  than there are tokens (its row list overruns);
- a write past the work buffer the fused op plans: more tokens than 2 x rows x experts;
- the Q8_K quantizer's invalid blocks (quants of -128): exactly the blocks whose largest
  magnitude is below 127/FLT_MAX (about 3.7e-37).
"""
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from harness.cases import load_case

pytestmark = [pytest.mark.slow, pytest.mark.ik]

SEED_TEST = "test_fused_moe_with_an_expert_below_32_tokens_ik_llama_626"
# 127/amax overflows float32 below this block maximum: ik writes quants of -128 (test_ik_build.py)
TINY_AMAX = 127 / np.finfo(np.float32).max


def _explains(text: str) -> str | None:
    """Which confirmed bugs a test's failure text shows, or None when one of its failures is
    none of them. Hypothesis can report several distinct failures of one test (an exception
    group): each is checked against its own saved case."""
    headers = list(re.finditer(r"harness\.errors\.\w+: \[", text))
    if not headers:
        return _explains_one(text)
    ends = [h.start() for h in headers[1:]] + [len(text)]
    kinds = [_explains_one(text[h.start():end]) for h, end in zip(headers, ends)]
    return None if None in kinds else "+".join(sorted(set(kinds)))


def _explains_one(text: str) -> str | None:
    """Which confirmed bug one failure (its message, and its saved case) shows, or None."""
    found = re.search(r"case saved at: (\S+)", text)
    if not found:
        return None
    case = load_case(found.group(1))
    counts = case.expert_token_counts()
    if "[crash]" in text and re.search(r"ggml\.c:15254: .*fatal error", text):
        return "seed abort" if case.op == "moe_up_gate" and ((counts > 0) & (counts < 32)).any() else None
    if "[crash]" in text and "GGML_ASSERT(Nx%num_rows == 0) failed" in text:
        return "rows assert" if case.rows % 8 and (counts >= 32).any() else None
    if "[overrun]" in text:
        n_experts = case.arrays["w_up"].shape[0] if case.op == "moe_up_gate" else 0
        return "work buffer overrun" if case.n_tokens > 2 * case.rows * n_experts else None
    if "[mismatch]" in text and "Q8_K quantizer wrote" in text:
        invalid = int(re.search(r"Q8_K quantizer wrote (\d+) of", text).group(1))
        tiny = (np.abs(case.arrays["x"]).reshape(case.n_tokens, -1, 256).max(axis=-1) < TINY_AMAX).sum()
        return "quantizer" if invalid == tiny else None
    if "[mismatch]" in text and "beyond every error bound" in text:
        ids = case.arrays["ids"]
        repeated = any(len(set(row[row >= 0])) < (row >= 0).sum() for row in ids)
        return "row-list overrun" if repeated and (counts > case.n_tokens).any() else None
    return None


def test_property_suite_on_ik_reports_the_seed_and_only_true_failures(ik_lib_dir, tmp_path):
    junit = tmp_path / "junit.xml"
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--iq1m-target", "ggml",
                           f"--iq1m-ggml-lib-dir={ik_lib_dir}", "harness/suite",
                           f"--junitxml={junit}"],
                          capture_output=True, text=True, timeout=1800, env={**os.environ, "CI": "1"})
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]  # failures, not errors or usage
    failures, passed, unexplained = {}, 0, []
    for tc in ET.parse(junit).iter("testcase"):
        failure = tc.find("failure")
        if tc.find("error") is not None:
            unexplained.append((tc.get("name"), "error"))
        elif failure is None:
            passed += tc.find("skipped") is None
        else:
            text = (failure.get("message") or "") + "\n" + (failure.text or "")
            kind = _explains(text)
            failures[tc.get("name")] = kind
            if kind is None:
                unexplained.append((tc.get("name"), text[:1500]))
    assert not unexplained, unexplained
    seed = {name: kind for name, kind in failures.items() if name.startswith(SEED_TEST)}
    assert len(seed) == 3 and set(seed.values()) == {"seed abort"}, failures
    assert passed > 0  # the suite runs on this build; not everything fails
    assert {k for kind in failures.values() for k in kind.split("+")} >= {"seed abort", "rows assert"}
