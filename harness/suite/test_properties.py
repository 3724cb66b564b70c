"""Property tests of the kernel library against the reference, in the isolated worker.

One property per operation of the registry (harness.ops.OPS: the GEMM ops and every
standalone entry point of iq1m.h), skipped for an operation the target does not run. Each
case runs a star of option sets (threads, SIMD levels, repack thresholds 0 / 32 / never,
fused vs unfused, prepacked weights); every run writes into an output filled with its own
canary, and every run must equal the reference's canonical emulation bit for bit, so a
disagreement is reported as the most specific failure kind.

The everyday strategy draws real-model shape classes only now and then; every class is
also drawn here on every run (`test_real_model_shape_classes`).
"""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness import strategies as hs
from harness.ops import OP_NAMES, OPS


def _supported(runner, op):
    if not runner.target.supports(OPS[op]):
        pytest.skip(f"{runner.target.label()} does not run {op}")


# The routed ops first: they reach every path mul_mat does and the routing too, so a broken
# kernel fails the first test (the suite's time to its first failure, tests/conftest.py).
FIRST = ("mul_mat_id", "moe_up_gate", "mul_mat")


@pytest.mark.parametrize("op", sorted(OP_NAMES, key=lambda op: (FIRST + OP_NAMES).index(op)))
@given(data=st.data())
def test_op_matches_reference(iq1m_runner, op, data):
    _supported(iq1m_runner, op)
    iq1m_runner.check(data.draw(hs.op_cases(op, iq1m_runner.isas, routing=iq1m_runner.target.routing), label="case"))


CLASSES = [(op, cls) for op in OP_NAMES if OPS[op].kind == "gemm" for cls in hs.shape_classes(op)]


@pytest.mark.parametrize("op,shape", CLASSES, ids=[f"{op}-{cls.split(':')[0].replace(' ', '-')}" for op, cls in CLASSES])
@settings(max_examples=1)
@given(data=st.data())
def test_real_model_shape_classes(iq1m_runner, op, shape, data):
    """Every real-model shape class on every run (one case each): big cases, compared with the reference on
    a drawn subset of rows and tokens and between runs on every element."""
    _supported(iq1m_runner, op)
    iq1m_runner.check(data.draw(hs.op_cases(op, iq1m_runner.isas, routing=iq1m_runner.target.routing, shapes=shape),
                                label="case"))


# Both sides of the threshold in every run, whatever Hypothesis draws.
PINNED_COUNTS = [[0], [1], [31], [32], [33], [1, 31, 32, 33], [0, 33, 1], [100, 2]]


@pytest.mark.parametrize("op", ["mul_mat_id", "moe_up_gate"])
@pytest.mark.parametrize("counts", PINNED_COUNTS, ids=lambda c: "counts=" + "-".join(map(str, c)))
def test_pinned_expert_token_counts(iq1m_runner, op, counts):
    for act in (["silu", "gelu"] if op == "moe_up_gate" else ["silu"]):
        iq1m_runner.check(hs.pinned_moe_case(op, counts, iq1m_runner.isas, act=act))


@pytest.mark.parametrize("counts", [[1], [31], [5, 40]], ids=lambda c: "counts=" + "-".join(map(str, c)))
def test_fused_moe_with_an_expert_below_32_tokens_ik_llama_626(iq1m_runner, counts):
    """The seed (ik_llama.cpp issue 626): the fused up+gate op aborted whenever an expert got
    fewer than 32 tokens (its pre-fix build still does: run this suite with --iq1m-target
    ggml --iq1m-ggml-lib-dir on it). Row counts a multiple of 8, so nothing else is hit."""
    for act in ("silu", "gelu"):
        iq1m_runner.check(hs.pinned_moe_case("moe_up_gate", counts, iq1m_runner.isas, rows=16, act=act))


@pytest.mark.parametrize("n_tokens", [0, 1, 31, 32, 33, 100])
# 600 rows: chunks of many panels, past the tile a direct-path chunk may fill. 224 rows at
# K = 3840: a first chunk of 7 panels (guided: 14 panels / 2) of 15 blocks each, so the
# repacked panels' scratch is an odd multiple of 64 bytes, filled to its last byte; in a
# new worker, since a scratch an earlier case left larger would be reused.
@pytest.mark.parametrize("rows,k", [(1, 256), (17, 512), (40, 7168), (600, 256), (224, 3840)])
def test_pinned_mul_mat_shapes(iq1m_runner, n_tokens, rows, k):
    case = hs.pinned_moe_case("mul_mat_id", [n_tokens], iq1m_runner.isas, rows=rows, k=k, top_k=1)
    mm = hs.Case("mul_mat", {"w": case.arrays["w"][0], "x": case.arrays["x"]}, case.runs,
                 info={"fresh_worker": True} if (rows, k) == (224, 3840) else {})
    iq1m_runner.check(mm)
