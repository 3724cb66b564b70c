"""Every saved case is replayed on every run against the variant (or target) under test: the
cases shipped in `regressions/` beside this file (`iq1m-harness promote` adds to them) and
those in each `--iq1m-regressions-dir DIR` (a project's own promoted failures). A promoted
failure must stay fixed."""
from pathlib import Path

from harness.cases import load_case

SHIPPED = Path(__file__).parent / "regressions"


def pytest_generate_tests(metafunc):
    if "saved_case" not in metafunc.fixturenames:
        return
    cases = [(p, p.stem) for p in sorted(SHIPPED.glob("*.npz"))]
    for d in metafunc.config.getoption("--iq1m-regressions-dir"):
        cases += [(p, f"{Path(d).name}/{p.stem}") for p in sorted(Path(d).glob("*.npz"))]  # checked by the plugin
    metafunc.parametrize("saved_case", [c[0] for c in cases], ids=[c[1] for c in cases])


def test_saved_case_passes(iq1m_runner, saved_case):
    iq1m_runner.check(load_case(saved_case))
