"""The generated grid equals the gguf package's IQ1_S grid, and the generator is in sync."""
import subprocess
import sys
from pathlib import Path

import numpy as np
from gguf.quants import IQ1_S, IQ1_M

from reference import IQ1S_GRID

ROOT = Path(__file__).resolve().parents[2]


def test_grid_equals_gguf_entry_for_entry():
    IQ1_S.init_grid()
    theirs = np.asarray(IQ1_S.grid).reshape(2048, 8)
    assert IQ1S_GRID.shape == (2048, 8) and IQ1S_GRID.dtype == np.int8
    assert np.array_equal(IQ1S_GRID.astype(np.float32), theirs)
    IQ1_M.init_grid()  # IQ1_M uses the same grid
    assert np.array_equal(IQ1S_GRID.astype(np.float32), np.asarray(IQ1_M.grid).reshape(2048, 8))


def test_grid_known_rows():
    # Read off the generated hex words by hand: row 0 is 0x0000 (all -1), row 1 is 0x0002
    # (value 0 is code 2 = +1), row 2047 is 0xaaaa (all +1).
    assert IQ1S_GRID[0].tolist() == [-1] * 8
    assert IQ1S_GRID[1].tolist() == [1, -1, -1, -1, -1, -1, -1, -1]
    assert IQ1S_GRID[2047].tolist() == [1] * 8
    assert set(np.unique(IQ1S_GRID).tolist()) == {-1, 0, 1}
    assert len({tuple(r) for r in IQ1S_GRID.tolist()}) == 2048  # all rows distinct


def test_grid_is_read_only():
    assert not IQ1S_GRID.flags.writeable


def test_gen_grid_check_is_up_to_date():
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_grid.py"), "--check"],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr


def test_gen_grid_check_detects_stale_file(tmp_path, monkeypatch):
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import gen_grid
    finally:
        sys.path.pop(0)
    stale = tmp_path / "grid_data.py"
    stale.write_text(gen_grid.render(gen_grid.gguf_grid()).replace("aaaa", "aaa9", 1))
    monkeypatch.setattr(gen_grid, "OUT", stale)
    assert gen_grid.main(["--check"]) == 1
    assert gen_grid.main([]) == 0
    assert gen_grid.main(["--check"]) == 0
