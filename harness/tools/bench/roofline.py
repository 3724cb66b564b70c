"""The machine's ceilings: int8 dot-product peak and read bandwidth.

`libiq1m_peak.so` (kernels/bench/peak.c, built by CMake beside the library) measures the
int8 dot-product peak (vpdpbusd chains; per thread count, run concurrently on that many
threads) and the memory read bandwidth. The int8 peak is measured again before every
shape (`Peak.resample`), and the run's figure is the median of those samples: a median
GOP/s taken under the machine's load of the moment is compared with a peak taken under the
same loads, not with one quiet burst.
"""
from __future__ import annotations

import ctypes
import statistics
import threading
from pathlib import Path

from ...build import build_tree
from .contenders import private_copy


def build_peak_library(variant: str) -> Path:
    """libiq1m_peak.so of the variant's CMake tree, as a private copy."""
    tree = build_tree(variant, target="iq1m_peak")
    found = sorted(tree.rglob("libiq1m_peak.so"))
    if not found:
        raise FileNotFoundError(f"libiq1m_peak.so not built in {tree}")
    return private_copy([found[0]])[0]


class Peak:
    """int8 dot-product peak and read bandwidth from libiq1m_peak.so."""

    KINDS = {"avx512vnni_512": 0, "avx512vnni_256": 1, "avx2": 2}

    def __init__(self, path: Path):
        self.path = str(path)
        self.lib = ctypes.CDLL(self.path)
        self.lib.iq1m_peak_int8_gops.restype = ctypes.c_double
        self.lib.iq1m_peak_int8_gops.argtypes = [ctypes.c_int, ctypes.c_double]
        self.lib.iq1m_peak_read_gbs.restype = ctypes.c_double
        self.lib.iq1m_peak_read_gbs.argtypes = [ctypes.c_size_t, ctypes.c_double]

    @staticmethod
    def _parallel(n_threads: int, fn, *args) -> list[float]:
        """fn on n_threads OS threads at once (ctypes releases the GIL during the call)."""
        results = [0.0] * n_threads

        def run(i):
            results[i] = fn(*args)
        ts = [threading.Thread(target=run, args=(i,)) for i in range(n_threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        return results

    def int8(self, kind: str, n_threads: int, seconds: float) -> float:
        """GOP/s of the int8 chains of one kind on n_threads threads at once."""
        return round(sum(self._parallel(n_threads, self.lib.iq1m_peak_int8_gops, self.KINDS[kind], seconds)), 1)

    def measure(self, threads: list[int], seconds: float) -> dict:
        per_thread = {name: {str(n): self.int8(name, n, seconds) for n in threads} for name in self.KINDS}
        best_kind = {str(n): max(self.KINDS, key=lambda k: per_thread[k][str(n)]) for n in threads}
        best = {str(n): per_thread[best_kind[str(n)]][str(n)] for n in threads}
        bw = {str(n): round(sum(self._parallel(n, self.lib.iq1m_peak_read_gbs, 256 << 20, seconds)), 2)
              for n in threads}
        return {"int8_gops": best, "int8_gops_by_kind": per_thread, "int8_kind": best_kind,
                "int8_samples": {str(n): [best[str(n)]] for n in threads}, "read_gbs": bw,
                "note": "int8 peak: independent vpdpbusd (or AVX2 maddubs+madd+add) chains, one per thread, "
                        "2 ops per u8 x s8 multiply-accumulate, the fastest kind; measured at the start and "
                        "again before every shape, int8_gops = the median of those samples; read bandwidth: "
                        "streaming 256-bit loads of a 256 MiB buffer per thread, at the start"}

    def resample(self, peak: dict, seconds: float) -> None:
        """One more int8 sample per thread count (the kind found fastest at the start);
        int8_gops becomes the median of all samples so far."""
        for n, kind in peak["int8_kind"].items():
            samples = peak["int8_samples"][n]
            samples.append(self.int8(kind, int(n), seconds))
            peak["int8_gops"][n] = round(statistics.median(samples), 1)


def fractions(records: list[dict], peak: dict) -> None:
    """Each record's fraction of the run's median int8 peak and its bandwidth-bound ceiling
    (its bytes read once at the measured read bandwidth), known only after the last shape."""
    for rec in records:
        p = peak["int8_gops"].get(str(rec["threads"]))
        bw = peak["read_gbs"].get(str(rec["threads"]))
        rec["peak_fraction_ours"] = round(rec["ours"]["gops"] / p, 3) if p else None
        rec["peak_fraction_pp"] = round(rec["ours_pp"]["gops"] / p, 3) if p else None
        rec["bandwidth_bound_gops"] = round(rec["ops"] / rec["bytes"] * bw, 1) if bw else None
        rec["roofline_gops"] = round(min(p, rec["ops"] / rec["bytes"] * bw), 1) if p and bw else None
