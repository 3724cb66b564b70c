"""Every saved case in regressions/ beside this file is replayed on every run, against the
variant under test (`--iq1m-variant`); a promoted failure must stay fixed."""
from pathlib import Path

import pytest

from harness.cases import load_case

CASES = sorted((Path(__file__).parent / "regressions").glob("*.npz"))


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_saved_case_passes(iq1m_runner, path):
    iq1m_runner.check(load_case(path))
