"""kernels/src/grid.c is what kernels/tools/gen_grid_c.py generates from the gguf package
(the grid is stored once, as ggml's uint64 words); a hand edit or a stale file fails here."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_grid_c_is_generated_and_up_to_date():
    r = subprocess.run([sys.executable, str(ROOT / "kernels" / "tools" / "gen_grid_c.py"), "--check"],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
