"""Named historical faults, each compiled into the kernels through a fault-injection point
(kernels/FAULTS.md): the default property suite (profile ci) must catch every one, and
name it as the right kind of failure."""
import os
import subprocess
import sys

import pytest

from harness.build import PROJECT_ROOT

pytestmark = pytest.mark.slow

# fault -> failure kinds that correctly describe it
HISTORICAL_FAULTS = {
    "seed_missing_kernel": {"KernelCrash"},                     # 1. the seed: fused op aborts below 32 tokens
    "lossy_repack": {"PathDivergence"},                         # 2. int8 rescale to 126 on the >= 32 path
    "tail_activation": {"ThreadDivergence", "Mismatch"},        # 3. scalar tail depends on the thread slice
    "avx512_delta_sign": {"IsaDivergence"},                     # 4. delta sign flipped in one SIMD level
    "scale_nibble_order": {"IsaDivergence", "PathDivergence", "Mismatch"},  # 5. fp16 nibbles misassembled
    "drop_tail_rows": {"Mismatch"},                             # 6. rows past the last multiple of 16 lost
    "duplicate_expert": {"Mismatch"},                           # 7. same expert twice in one token
    "row_race": {"ThreadDivergence", "Mismatch"},               # 8. two threads write one row
}


@pytest.mark.parametrize("fault", sorted(HISTORICAL_FAULTS))
def test_default_suite_catches_historical_fault(fault):
    env = dict(os.environ, HYPOTHESIS_PROFILE="ci", IQ1M_RUNS_DIR=str(PROJECT_ROOT / ".iq1m" / "runs" / "faults"))
    proc = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
                           f"--iq1m-variant=fault:{fault}", "harness/suite/test_properties.py"],
                          cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 1, f"fault {fault} was not caught:\n{proc.stdout[-3000:]}"
    kinds = {k for k in ("KernelCrash", "KernelHang", "KernelError", "Mismatch", "ThreadDivergence",
                         "IsaDivergence", "PathDivergence", "PrepackDivergence") if f"harness.errors.{k}" in proc.stdout}
    assert kinds & HISTORICAL_FAULTS[fault], f"{fault} reported as {kinds or 'nothing known'}:\n{proc.stdout[-3000:]}"
