"""One run's knobs (`KernelOptions`) and the repack thresholds the harness runs.

The kernel library's own default threshold is its measured crossover (8); the harness runs
ik_llama.cpp's 32 as the baseline of every case (where the seed's bug lived) and also 0
("always repacked") and REPACK_NEVER ("always direct"), so both paths are compared on every
case.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

REPACK_NEVER = 2**31 - 1     # IQ1M_REPACK_NEVER in kernels/include/iq1m.h
BASELINE_THRESHOLD = 32      # ik_llama.cpp's is_dequant_better() switch
PATH_THRESHOLDS = (0, REPACK_NEVER)


@dataclass(frozen=True)
class KernelOptions:
    n_threads: int = 1
    isa: str = "auto"
    repack_threshold: int = BASELINE_THRESHOLD
    fused: bool = True
    prepacked: bool = False  # the binding converts the weights with iq1m_prepack first

    def to_dict(self) -> dict:
        return {name: getattr(self, name) for name in _FIELDS}  # asdict() deep-copies: slow in hot loops

    @classmethod
    def from_dict(cls, d: dict) -> "KernelOptions":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown option field(s) {unknown}")
        return cls(**d)

    def label(self, knobs: tuple[str, ...] | None = None) -> str:
        """"threads=2 isa=avx2 threshold=32 unfused prepacked"; `knobs`: only those fields (a
        target that varies fewer of them)."""
        thr = "never" if self.repack_threshold >= REPACK_NEVER else str(self.repack_threshold)
        parts = {"n_threads": f"threads={self.n_threads}", "isa": f"isa={self.isa}",
                 "repack_threshold": f"threshold={thr}", "fused": "" if self.fused else "unfused",
                 "prepacked": "prepacked" if self.prepacked else ""}
        return " ".join(p for name, p in parts.items() if p and (knobs is None or name in knobs))

    def differs_from(self, other: "KernelOptions") -> set[str]:
        """The knobs in which two runs differ (names of the fields)."""
        return {f.name for f in fields(self) if getattr(self, f.name) != getattr(other, f.name)}


_FIELDS = tuple(f.name for f in fields(KernelOptions))


def run_star(isas: list[str], threads: list[int], *, unfused: bool = False,
             threshold: int = BASELINE_THRESHOLD) -> list[KernelOptions]:
    """A star of option sets around one baseline, each differing from it in one respect, so
    a disagreement names the cause (threads, SIMD level, path, fusion), plus prepacked weights
    on every SIMD level (the prepacked kernels, or the scalar ones a level falls back to)."""
    best = isas[-1]
    base = KernelOptions(n_threads=1, isa=best, repack_threshold=threshold)
    runs = [base]
    runs += [KernelOptions(n_threads=t, isa=best, repack_threshold=threshold) for t in threads if t != 1]
    runs += [KernelOptions(n_threads=1, isa=i, repack_threshold=threshold) for i in isas if i != best]
    runs += [KernelOptions(n_threads=1, isa=best, repack_threshold=t) for t in PATH_THRESHOLDS if t != threshold]
    if unfused:
        runs.append(KernelOptions(n_threads=1, isa=best, repack_threshold=threshold, fused=False))
    runs += [KernelOptions(n_threads=1, isa=i, repack_threshold=threshold, prepacked=True) for i in isas]
    return runs
