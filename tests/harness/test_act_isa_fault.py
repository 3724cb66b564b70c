"""The activation is dispatched through the kernel table like every other ISA-specific
function, so options.isa selects it and the ISA-divergence check sees a bug in one ISA's
activation: fault point avx512_act_last_lane (kernels/FAULTS.md) breaks lane 7 of the
AVX-512 activation only, and a moe_up_gate case through the harness must fail as an
IsaDivergence, for both activations."""
import pytest

from harness import strategies
from harness.errors import IsaDivergence
from harness.runner import Runner

pytestmark = pytest.mark.slow

FAULT = "avx512_act_last_lane"


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    r = Runner(f"fault:{FAULT}", work_dir=tmp_path_factory.mktemp("act-fault"))
    yield r
    r.close()


@pytest.mark.parametrize("act", ["silu", "gelu"])
def test_avx512_activation_fault_is_an_isa_divergence(runner, act):
    if "avx512vnni" not in runner.isas:
        pytest.skip("the fault is in the AVX-512 activation; this CPU has no AVX-512 VNNI")
    # below and above the harness's threshold of 32: the direct and the repacked path
    case = strategies.pinned_moe_case("moe_up_gate", [3, 40], runner.isas, act=act)
    with pytest.raises(IsaDivergence) as info:
        runner.check(case)
    assert "avx512vnni" in str(info.value)
