"""Generate harness/act_edges.py: float32 inputs whose SiLU / GELU lands next to a float32
rounding boundary.

The contract evaluates the activations in binary64 and rounds once to float32 (numerics.md).
A kernel that computes a slightly different binary64 value (a polynomial term dropped, an
operation reordered) almost always rounds to the same float32: random inputs see the
difference once in millions. Inputs whose exact binary64 value lies within 2^-22 of a
float32 ulp from a rounding midpoint flip with any deviation larger than that, so a few
hundred of them test the whole binary64 sequence bit for bit. This scans a fixed-seed sample
of inputs where e = exp(-|z|) matters (|z| < 40, where the polynomial, the reduction and the
split scaling all take part) and keeps the nearest ties, spread over the range.

The last terms of the exp polynomial move the binary64 value by far less than 2^-22 ulps,
so no sampled tie depends on them. TERM_EDGES holds, for each of those terms, inputs whose
float32 result it decides: the result changes when the term's coefficient is replaced by 0
or negated, or its Horner step is left out. They come from a scan of every float32 input
where the polynomial's argument is large enough to matter (scripts/act_ties.c, built here
with the C compiler), each checked with the reference. A term with no such input is
reported: leaving it out changes no float32 output at all.

    python scripts/gen_act_edges.py [--candidates 300000000]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness.build import KERNELS_DIR, find_compiler  # noqa: E402
from reference.activations import GELU_A, POLY, TWO_K0, _sigmoid_times  # noqa: E402

KEEP = 512          # inputs per activation
LIMIT = 2.0 ** -22  # distance from a midpoint, in float32 ulps of the result
TERMS = (11, 12, 13)  # the polynomial terms below the sampled ties' reach: C11 r^11, ...
TERM_KEEP = 6       # inputs per term and change
SCAN_LIMIT_LOG2 = -12  # candidates of the full scan: far wider than any of TERMS moves a result


def binary64(act: str, x: np.ndarray, poly=POLY) -> np.ndarray:
    X = x.astype(np.float64)
    z = X if act == "silu" else TWO_K0 * (X + GELU_A * ((X * X) * X))
    return _sigmoid_times(X, z, poly)


def term_changes(k: int) -> dict[str, tuple]:
    """The Horner steps with term k's coefficient C_k set to 0, negated, or its step left out."""
    i = 13 - k
    return {"zero": POLY[:i] + (0.0,) + POLY[i + 1:], "negated": POLY[:i] + (-POLY[i],) + POLY[i + 1:],
            "left out": POLY[:i] + POLY[i + 1:]}


def decides(act: str, x: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """For each change of term k: which inputs' float32 results it changes."""
    base = binary64(act, x).astype(np.float32).view(np.uint32)
    return {how: binary64(act, x, poly).astype(np.float32).view(np.uint32) != base
            for how, poly in term_changes(k).items()}


def tie_distance(v: np.ndarray) -> np.ndarray:
    """|v - nearest float32 rounding midpoint| in ulps of the float32 result."""
    f = v.astype(np.float32)
    toward = np.where(f.astype(np.float64) > v, -np.inf, np.inf).astype(np.float32)
    other = np.nextafter(f, toward)
    step = np.abs(other.astype(np.float64) - f.astype(np.float64))
    mid = (f.astype(np.float64) + other.astype(np.float64)) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.abs(v - mid) / step


def scan(act: str, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    found = []
    chunk = 1 << 22
    for _ in range(0, n, chunk):
        # uniform in [-40, 40] and log-uniform magnitudes down to 2^-30, either sign
        u = rng.uniform(-40, 40, chunk // 2)
        g = rng.choice([-1.0, 1.0], chunk // 2) * np.exp2(rng.uniform(-30, 5.4, chunk // 2))
        x = np.concatenate([u, g]).astype(np.float32)
        d = tie_distance(binary64(act, x))
        found.append(x[d < LIMIT])
    x = np.unique(np.concatenate(found))
    if len(x) > KEEP:  # spread over the range rather than the first found
        x = x[np.linspace(0, len(x) - 1, KEEP).round().astype(np.int64)]
    return x


def scan_every_input(act: str, work: Path) -> np.ndarray:
    exe = work / "act_ties"
    subprocess.run([find_compiler(), "-O2", "-std=c11", "-ffp-contract=off", f"-I{KERNELS_DIR / 'src'}",
                    f"-I{KERNELS_DIR / 'include'}", str(ROOT / "scripts" / "act_ties.c"),
                    str(KERNELS_DIR / "src" / "act.c"), "-lm", "-o", str(exe)], check=True)
    out = subprocess.run([str(exe), act, str(SCAN_LIMIT_LOG2)], check=True, capture_output=True, text=True).stdout
    return np.array([int(line.split()[0], 16) for line in out.splitlines()], dtype=np.uint32).view(np.float32)


def term_edges(act: str, work: Path) -> dict[int, np.ndarray]:
    x = scan_every_input(act, work)
    edges = {}
    for k in TERMS:
        picked = []
        for how, changed in decides(act, x, k).items():
            hits = x[changed]
            print(f"{act}: term {k} {how}: decides {len(hits)} of {len(x)} candidates", file=sys.stderr)
            picked.append(hits[np.linspace(0, len(hits) - 1, min(len(hits), TERM_KEEP)).round().astype(np.int64)]
                          if len(hits) else hits)
        edges[k] = np.unique(np.concatenate(picked))
    return edges


def table(name: str, acts: dict) -> list[str]:
    lines = [f"{name} = {{"]
    for act, bits in acts.items():
        lines.append(f'    "{act}": (')
        for i in range(0, len(bits), 8):
            lines.append("        " + " ".join(f"0x{int(b):08x}," for b in bits[i:i + 8]))
        lines.append("    ),")
    return lines + ["}"]


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--candidates", type=int, default=300_000_000)
    p.add_argument("--out", type=Path, default=ROOT / "harness" / "act_edges.py")
    args = p.parse_args()
    lines = ['"""GENERATED by scripts/gen_act_edges.py: float32 inputs (bit patterns) whose SiLU / GELU',
             'binary64 value lies within 2^-22 float32 ulps of a rounding midpoint (EDGES), and inputs',
             'whose float32 result a last term of the exp polynomial decides (TERM_EDGES, by term; see',
             'that script).', '"""', ""]
    edges, terms = {}, {}
    with tempfile.TemporaryDirectory() as work:
        for seed, act in enumerate(("silu", "gelu")):
            edges[act] = scan(act, args.candidates, 2026 + seed).view(np.uint32)
            print(f"{act}: {len(edges[act])} inputs", file=sys.stderr)
            for k, x in term_edges(act, Path(work)).items():
                terms[f"{act} C{k}"] = x.view(np.uint32)
    lines += table("EDGES", edges) + [""] + table("TERM_EDGES", terms)
    args.out.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
