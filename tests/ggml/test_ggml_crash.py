"""A crash inside ggml is a KernelCrash like any other: shrunk by Hypothesis, saved with a
reproduction script whose case file records the target, and `repro` replays it on ggml.

The provoked bug: an activation row length K that is not a multiple of 256 reaches ggml,
whose ggml_row_size fails GGML_ASSERT (always on, also in release builds) and takes the
GGML_ABORT path: message with file:line on stderr, then abort() (GGML_NO_BACKTRACE=1 keeps
it from attaching gdb)."""
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings

from harness import strategies as hs
from harness.cases import load_case
from harness.errors import KernelCrash
from harness.repro import write_script
from harness.runner import Runner
from harness.targets import Target


def test_ggml_abort_is_caught_shrunk_saved_and_replayed(ggml_lib_dir, tmp_path):
    runner = Runner(target=Target("ggml", lib_dir=ggml_lib_dir), work_dir=tmp_path / "run", timeout=30)

    @settings(max_examples=30, database=None, derandomize=True, deadline=None,
              phases=[Phase.generate, Phase.shrink], suppress_health_check=list(HealthCheck))
    @given(case=hs.mul_mat_cases(runner.isas, max_rows=8, max_tokens=12, threads=(1, 2)))
    def property_under_test(case):
        if case.n_tokens >= 1:  # the "bug": 44 stray activation columns
            case.arrays["x"] = np.pad(case.arrays["x"], ((0, 0), (0, 44)))
        runner.check(case)

    try:
        with pytest.raises(KernelCrash) as info:
            property_under_test()
    finally:
        runner.close()
    failure = info.value
    assert failure.signal_name == "SIGABRT"
    assert "GGML_ASSERT" in failure.stderr_tail
    saved = load_case(failure.case_path)
    assert saved.target["name"] == "ggml" and saved.target["lib_dir"] == ggml_lib_dir
    assert saved.target["env"] == {}
    assert saved.rows == 1 and saved.k == 256 + 44 and saved.n_tokens == 1, saved.describe()
    assert runner.worker.restarts >= 1
    script = write_script(failure.case_path, failure, saved.describe(), saved.variant, "ggml-abort")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "SIGABRT" in proc.stdout and "target=ggml" in proc.stdout, proc.stdout
