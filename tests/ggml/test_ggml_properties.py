"""The property suite against mainline ggml's mul_mat, mul_mat_id and (composed) moe_up_gate
at several thread counts: every output within the float64 bound of the same quantized
product, ggml's own Q8_K activation bytes fed to the reference. Batch composition: the
tiled IQ1_M path (an expert or matmul with >= 8 activation rows) changes a token's output;
the harness must see that by default and must not with GGML_CPU_TILED_MM=0."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness import strategies as hs
from harness.errors import BatchDivergence
from harness.runner import Runner
from harness.targets import GgmlTarget

THREADS = (1, 2, 3, 4, 7)
# small shapes, few examples: CI runs this on 2 cores (the reference's float64 pass dominates)
SMALL = settings(max_examples=25)


@SMALL
@given(data=st.data())
def test_mul_mat_within_bound(ggml_runner, data):
    ggml_runner.check(data.draw(hs.op_cases("mul_mat", ggml_runner.isas, THREADS, max_rows=40, max_tokens=40),
                                label="case"))


@SMALL
@given(data=st.data())
def test_mul_mat_id_within_bound(ggml_runner, data):
    ggml_runner.check(data.draw(hs.op_cases("mul_mat_id", ggml_runner.isas, THREADS, max_rows=24, max_tokens=40,
                                             routing="mixed"), label="case"))


@settings(max_examples=12)
@given(data=st.data())
def test_moe_up_gate_within_fused_bound(ggml_runner, data):
    ggml_runner.check(data.draw(hs.op_cases("moe_up_gate", ggml_runner.isas, THREADS, max_rows=16, max_tokens=20,
                                             routing="mixed"), label="case"))


@SMALL
@given(data=st.data())
def test_untiled_mul_mat_id_within_bound(ggml_runner_untiled, data):
    ggml_runner_untiled.check(data.draw(hs.op_cases("mul_mat_id", ggml_runner_untiled.isas, THREADS, max_rows=24,
                                                     max_tokens=40, routing="mixed"), label="case"))


# per-expert token counts below and at/above the tiled path's 8 rows
COUNTS = [[1, 7], [8, 1], [12, 3, 0], [33, 2]]


@pytest.mark.parametrize("counts", COUNTS, ids=lambda c: "counts=" + "-".join(map(str, c)))
def test_batch_composition_tiled_vs_untiled(ggml_runner, ggml_runner_untiled, counts):
    """Default settings: a token whose expert has >= 8 tokens changes when computed alone
    (a finding); GGML_CPU_TILED_MM=0: never."""
    tiled_before = ggml_runner.stats["batch_divergent"]
    for runner in (ggml_runner, ggml_runner_untiled):
        runner.check(hs.pinned_moe_case("mul_mat_id", counts, runner.isas, rows=24, k=512, top_k=1, seed=3))
    assert ggml_runner_untiled.stats["batch_divergent"] == 0, ggml_runner_untiled.findings
    crosses = max(counts) >= 8
    assert (ggml_runner.stats["batch_divergent"] > tiled_before) == crosses, ggml_runner.findings[-1:]


def test_batch_divergence_fails_when_strict(ggml_lib_dir, tmp_path):
    runner = Runner(GgmlTarget(ggml_lib_dir, strict=True), work_dir=tmp_path)
    try:
        with pytest.raises(BatchDivergence) as info:
            runner.check(hs.pinned_moe_case("mul_mat_id", [16], runner.isas, rows=24, k=512, top_k=1, seed=4))
        assert "expert 0 has 16 tokens" in info.value.detail
    finally:
        runner.close()


def test_findings_are_reported(ggml_runner, ggml_runner_untiled):
    """What the session's runners found, as the terminal summary prints it."""
    for runner in (ggml_runner, ggml_runner_untiled):
        runner.check(hs.pinned_moe_case("mul_mat_id", [12, 1], runner.isas, rows=24, k=512, top_k=1, seed=5))
    text = ggml_runner.findings_summary()
    assert "batch composition" in text and "thread count" in text
    assert any(f["kind"] == "batch-divergence" for f in ggml_runner.findings)
    assert not any(f["kind"] == "batch-divergence" for f in ggml_runner_untiled.findings)
    assert ggml_runner.target.stats["q8k_differs"] == 0  # mainline's Q8_K bytes equal reference.quantize_q8k's
    for runner in (ggml_runner, ggml_runner_untiled):  # mainline stays within the exact-product bound
        assert runner.target.stats["bound_exceeded"] == 0, [f for f in runner.findings if f["kind"] == "bound-exceeded"]
