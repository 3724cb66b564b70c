"""The library offers exactly the SIMD levels this CPU (and its OS) supports. Without this
check a broken CPUID/XCR0 test would silently shrink the ISA star every property test
runs, and IsaDivergence could never fire."""
from pathlib import Path

import pytest

CPUINFO = Path("/proc/cpuinfo")
NEEDS = {
    "avx2": {"avx2", "fma", "f16c"},
    "avx512vnni": {"avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_vnni"},
}


def cpu_flags() -> set[str]:
    for line in CPUINFO.read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


@pytest.mark.skipif(not CPUINFO.exists(), reason="needs Linux /proc/cpuinfo to know what the CPU has")
def test_available_isas_match_the_cpu(iq1m_runner):
    flags = cpu_flags()  # the kernel lists AVX flags only when the OS enabled their state
    expected = ["scalar"] + [isa for isa, needs in NEEDS.items() if needs <= flags]
    assert iq1m_runner.isas == expected, f"library offers {iq1m_runner.isas}, CPU flags imply {expected}"
    assert iq1m_runner.hello["best_isa"] == expected[-1]
