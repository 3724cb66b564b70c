"""The same inputs through our kernels and mainline ggml: both within the float64 bound of
the same quantized product, hence within twice the bound of each other; ggml's Q8_K
activation bytes equal the reference quantizer's (what our kernels use)."""
import numpy as np
import pytest

import reference
from harness import strategies as hs
from harness.cases import Case

CASES = [
    ("mul_mat_id", [1, 9, 31, 33], 19, 1024),
    ("moe_up_gate", [2, 12, 0], 17, 512),
]


@pytest.mark.parametrize("op,counts,rows,k", CASES, ids=[c[0] for c in CASES])
def test_kernels_and_ggml_agree_within_bound(iq1m_runner, ggml_runner, op, counts, rows, k):
    if not iq1m_runner.target.bit_exact:
        pytest.skip("needs the kernels target as --iq1m-target")
    case = hs.pinned_moe_case(op, counts, iq1m_runner.isas, rows=rows, k=k, seed=11, act="gelu")
    ours = iq1m_runner.check(case)[0].output  # bit-exact against the reference
    again = Case(case.op, dict(case.arrays), list(case.runs), act=case.act)
    theirs = ggml_runner.check(again)[0].output  # within the bound with ggml's own Q8_K
    _, _, extras = ggml_runner.execute(Case(case.op, dict(case.arrays), list(case.runs[:1]), act=case.act))
    assert np.array_equal(reference.q8k_to_bytes(reference.quantize_q8k(case.arrays["x"])), extras["q8k"])
    spec = case.spec
    exact, bound = spec.exact(case.arrays, case.act), spec.bound(case.arrays, case.act)
    used = (case.arrays["ids"] >= 0)[:, :, None] & np.isfinite(bound)
    diff = np.abs(ours.astype(np.float64) - theirs.astype(np.float64))
    assert (diff[used] <= 2 * bound[used]).all()
    assert reference.within_bound(theirs, exact, bound, spec.canonical(case.arrays, case.act)).all()


def test_mul_mat_agrees(iq1m_runner, ggml_runner):
    if not iq1m_runner.target.bit_exact:
        pytest.skip("needs the kernels target as --iq1m-target")
    base = hs.pinned_moe_case("mul_mat_id", [20], iq1m_runner.isas, rows=33, k=2048, top_k=1, seed=12)
    case = Case("mul_mat", {"w": base.arrays["w"][0], "x": base.arrays["x"]}, base.runs)
    ours = iq1m_runner.check(case)[0].output
    theirs = ggml_runner.check(Case("mul_mat", dict(case.arrays), list(case.runs)))[0].output
    exact, bound = case.spec.exact(case.arrays, case.act), case.spec.bound(case.arrays, case.act)
    assert (np.abs(ours.astype(np.float64) - theirs) <= 2 * bound).all()
    assert (np.abs(theirs - exact) <= bound).all()


@pytest.mark.parametrize("counts", [[40, 2], [33], [31, 1]], ids=lambda c: "counts=" + "-".join(map(str, c)))
def test_kernels_batch_composition_is_bit_exact(iq1m_runner, counts):
    """Our kernels: a token's output is the same bits computed alone (direct path) and in a
    batch of 31..40 tokens (repacked path at >= 32); a difference raises BatchDivergence."""
    if not iq1m_runner.target.bit_exact:
        pytest.skip("needs the kernels target as --iq1m-target")
    before = iq1m_runner.stats["batch_checked"]
    iq1m_runner.check(hs.pinned_moe_case("mul_mat_id", counts, iq1m_runner.isas, rows=17, k=512, top_k=1, seed=2))
    assert iq1m_runner.stats["batch_checked"] == before + 1
    assert iq1m_runner.stats["batch_divergent"] == 0
