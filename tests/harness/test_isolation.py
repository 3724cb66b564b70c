"""Self-test of the isolation: builds with an injected fault that crashes, aborts or hangs
when an expert gets fewer than 32 tokens (the seed's condition). The property test must
fail with the right exception, Hypothesis must shrink the routing table to a single
token, the case must be on disk, and this pytest process must live on."""
import os

import pytest
from hypothesis import HealthCheck, Phase, given, settings

from harness import strategies as hs
from harness.cases import load_case
from harness.errors import KernelCrash, KernelHang
from harness.runner import Runner

pytestmark = pytest.mark.slow

FAULTS = [
    ("small_expert_segv", KernelCrash, "SIGSEGV", None),
    ("small_expert_abort", KernelCrash, "SIGABRT", None),
    ("small_expert_hang", KernelHang, None, 1.5),
]


@pytest.mark.parametrize("fault,kind,signal_name,timeout", FAULTS, ids=[f[0] for f in FAULTS])
def test_fault_is_caught_shrunk_and_saved(tmp_path, fault, kind, signal_name, timeout):
    runner = Runner(f"fault:{fault}", work_dir=tmp_path, timeout=timeout)
    pid = os.getpid()

    @settings(max_examples=100, database=None, derandomize=True, deadline=None,
              phases=[Phase.generate, Phase.shrink], suppress_health_check=list(HealthCheck))
    @given(case=hs.op_cases("mul_mat_id", runner.isas, max_rows=20))
    def property_under_test(case):
        runner.check(case)

    try:
        with pytest.raises(kind) as info:
            property_under_test()
    finally:
        runner.close()
    failure = info.value
    assert os.getpid() == pid
    if signal_name:
        assert failure.signal_name == signal_name
    saved = load_case(failure.case_path)
    nonzero = sorted(int(c) for c in saved.expert_token_counts() if c)
    assert nonzero == [1], f"not shrunk to one expert with one token: {saved.describe()}"
    assert saved.rows == 1 and saved.k == 256, saved.describe()
    assert runner.worker.restarts >= 1
