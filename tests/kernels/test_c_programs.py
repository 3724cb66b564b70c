"""The kernel library's own C tests, run by ctest on each build variant: the smoke test
(hand-computed cases, every ISA, thread count and threshold, the error paths), the
micro-kernel test (every table entry against the scalar definition), the tile test (the
loop nests' split of columns into kernel calls), the thread schedule test, the dispatch
test (each ISA's resolved kernel set) and the ISA detection on faked CPUs, clean under
the address+undefined and thread sanitizers; the activation accuracy check; and builds
free of compiler warnings (-Wall -Wextra)."""
import os
import subprocess

import pytest

from harness.build import build_tree, find_ctest


def _ctest(tree, *args, env=None):
    return subprocess.run([find_ctest(), "--output-on-failure", *args], cwd=tree, capture_output=True, text=True,
                          env=dict(os.environ, **(env or {})))


@pytest.mark.parametrize("variant,selection", [
    ("release", ["-L", "smoke"]),
    ("asan", ["-L", "smoke"]),
    ("tsan", ["-R", "^(smoke|schedule)$"]),  # the micro-kernels are single-threaded: nothing for TSan
    ("no-direct", ["-L", "smoke"]),
])
def test_c_smoke_and_ukernel_tests(variant, selection):
    proc = _ctest(build_tree(variant), *selection)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "tests passed" in proc.stdout


@pytest.mark.parametrize("variant", ["release", "no-direct"])
def test_build_has_no_compiler_warnings(variant):
    log = (build_tree(variant).parent / "build.log").read_text(errors="replace")
    warnings = [line for line in log.splitlines() if "warning:" in line]
    assert not warnings, "\n".join(warnings[:20])


def test_activation_accuracy():
    """Every 4099th float32 input by default; all 2^32 (minutes) with IQ1M_ACT_FULL=1, as CI does."""
    stride = "1" if os.environ.get("IQ1M_ACT_FULL") == "1" else "4099"
    proc = _ctest(build_tree("release"), "-L", "exhaustive", env={"IQ1M_ACT_STRIDE": stride})
    assert proc.returncode == 0, proc.stdout[-4000:]
