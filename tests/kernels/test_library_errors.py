"""Invalid arguments return the right status and a message that says what is wrong; valid
edge cases (no tokens, no rows, NULL options) succeed. The calls run in a subprocess:
"never aborts" is part of what is tested."""
import json
import re
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.targets import sanitizer_environment

OK, NULL, SHAPE, EXPERT_ID, NONFINITE, THREADS, ISA, NOMEM, INVALID = range(9)

EXPECTED = {
    "mul_mat K not multiple": (SHAPE, "300"),
    "mul_mat K zero": (SHAPE, "k = 0"),
    "mul_mat rows negative": (SHAPE, "rows"),
    "mul_mat tokens negative": (SHAPE, "n_tokens"),
    "mul_mat null weights": (NULL, "weights"),
    "mul_mat null x": (NULL, "x"),
    "mul_mat null out": (NULL, "out"),
    "mul_mat nan activation": (NONFINITE, "x[1][7] = nan"),
    "mul_mat inf activation": (NONFINITE, "x[0][255]"),
    "threads zero": (THREADS, "n_threads = 0"),
    "threads too many": (THREADS, "n_threads = 100000"),
    "isa unknown": (ISA, "9"),
    "isa negative": (ISA, "-1"),
    "threshold negative": (INVALID, "repack_threshold"),
    "fused not boolean": (INVALID, "fused"),
    "prepacked not boolean": (INVALID, "prepacked = 3"),
    "prepack K not multiple": (SHAPE, "k = 100"),
    "prepack rows negative": (SHAPE, "n_rows = -1"),
    "prepack null weights": (NULL, "w is NULL"),
    "prepack null out": (NULL, "out is NULL"),
    "prepack sizes overflow": (SHAPE, "overflow"),
    "prepack no rows, null pointers": (OK, ""),
    "ids too large": (EXPERT_ID, "ids[1][0] = 2"),
    "ids below -1": (EXPERT_ID, "ids[0][0] = -2"),
    "experts zero": (SHAPE, "n_experts"),
    "top_k zero": (SHAPE, "top_k"),
    "null ids": (NULL, "ids"),
    "moe unknown act": (INVALID, "activation 7"),
    "moe null gate": (NULL, "gate"),
    "moe null up": (NULL, "up"),
    "moe expert id too large": (EXPERT_ID, "ids[1][0] = 2"),
    "moe one row, null up": (NULL, "up weights are NULL"),
    "moe one row, null gate": (NULL, "gate weights are NULL"),
    "moe nan activation": (NONFINITE, "x[1][7]"),
    "activation unknown": (INVALID, "activation 3"),
    "activation negative n": (SHAPE, "n = -1"),
    "activation null": (NULL, "x"),
    "quantize K not multiple": (SHAPE, "100"),
    "quantize nan": (NONFINITE, "x[7]"),
    "quantize null": (NULL, "x"),
    "quantize inf first": (NONFINITE, "x[0]"),
    "mul_mat inf first": (NONFINITE, "x[0][0]"),
    "mul_mat first of several non-finite": (NONFINITE, "x[1][70]"),
    "mul_mat a chunk of nan": (NONFINITE, "x[0][0]"),
    "dequantize K not multiple": (SHAPE, "257"),
    "dequantize null": (NULL, "blocks"),
    "sizes overflow": (SHAPE, "overflow"),
    "mul_mat sizes overflow": (SHAPE, "overflow"),
    "prepack largest size, null pointers": (NULL, "w is NULL"),
    "prepack sizes overflow, wide K": (SHAPE, "overflow"),
    "weight bytes overflow, no tokens": (SHAPE, "overflow"),
    "mul_mat largest weights, null pointers": (NULL, "weights are NULL"),
    "mul_mat weight bytes overflow, no tokens": (SHAPE, "overflow"),
    "one token, nan activation": (NONFINITE, "x[0][7] = nan"),
    "tokens x top_k x rows overflows": (SHAPE, "overflow"),
    "largest output, null pointers": (NULL, "weights are NULL"),
    "output one element too large": (SHAPE, "overflow"),
    "ids too large, second slot of the second token": (EXPERT_ID, "ids[1][1] = 5"),
    "top_k zero, one token": (SHAPE, "top_k = 0"),
    "one row, null weights": (NULL, "weights are NULL"),
    "one token, null x": (NULL, "x is NULL"),
    "one token, null out": (NULL, "out is NULL"),
    "one row and token, null out": (NULL, "out is NULL"),
    "one token, null ids": (NULL, "ids is NULL"),
    "one token, expert id too large": (EXPERT_ID, "ids[0][0] = 2"),
    "threads at the limit": (OK, ""),
    "top_k zero, no tokens": (OK, ""),
    "dequantize K zero, null pointers": (OK, ""),
    "quantize K zero, null pointers": (OK, ""),
    "quantize after an error": (OK, ""),
    "dequantize after an error": (OK, ""),
    "prepack after an error": (OK, ""),
    "activation after an error": (OK, ""),
    "mul_mat after an error": (OK, ""),
    "mul_mat_id after an error": (OK, ""),
    "moe after an error": (OK, ""),
    "moe zero rows, null weights and out": (OK, ""),
    "zero tokens, null x and out": (OK, ""),
    "zero rows, null weights and out": (OK, ""),
    "zero rows, null weights": (OK, ""),
    "null options mean defaults": (OK, ""),
    "moe zero tokens": (OK, ""),
    "activation empty": (OK, ""),
}


@pytest.fixture(scope="module")
def results(iq1m_runner):
    env = dict(os.environ, **sanitizer_environment(iq1m_runner.variant))
    proc = subprocess.run([sys.executable, str(Path(__file__).with_name("error_calls.py")), str(iq1m_runner.library)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, f"the library died on invalid input (status {proc.returncode}):\n{proc.stderr[-3000:]}"
    return json.loads(proc.stdout)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_status_and_message(results, name):
    code, fragment = EXPECTED[name]
    got_code, message = results[name]
    assert got_code == code, f"{name}: status {got_code} ({message!r}), expected {code}"
    assert fragment in message, f"{name}: message {message!r} does not mention {fragment!r}"
    if code == OK:
        assert message == ""


def test_default_options_are_the_documented_ones(iq1m_runner):
    """iq1m_default_options fills what iq1m.h documents: one thread (a caller that does not
    ask for more gets no threads it did not plan for), ISA auto, the header's repack
    threshold, fused, IQ1_M (not prepacked) weights."""
    if iq1m_runner.target.name != "kernels":
        pytest.skip("an API of the project's library")
    header = (Path(__file__).resolve().parents[2] / "kernels" / "include" / "iq1m.h").read_text()
    threshold = int(re.search(r"#define IQ1M_DEFAULT_REPACK_THRESHOLD (\d+)", header).group(1))
    code = ("import sys; from harness.targets.libiq1m import Library; o = Library(sys.argv[1]).default_options(); "
            "print(o.n_threads, o.isa, o.repack_threshold, o.fused, o.prepacked)")
    env = dict(os.environ, **sanitizer_environment(iq1m_runner.variant))
    proc = subprocess.run([sys.executable, "-c", code, str(iq1m_runner.library)], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["1", "auto", str(threshold), "True", "False"]
