"""Deciding pass or fail: bit-exact equality, the float64 bound, and the invariances.

Bit-exact means: the same float32 bits, except that any NaN equals any NaN; +0 and -0 are
different. The invariances (threads, SIMD level, direct vs repacked path, fused vs
unfused) are checked between the runs of one case; then the first run is compared with
the reference's canonical emulation.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import reference

from .binding import REPACK_NEVER, KernelOptions
from .cases import Case
from .errors import HarnessFailure, IsaDivergence, KernelError, Mismatch, PathDivergence, ThreadDivergence

MAX_REPORTED = 5


def bits_equal(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Elementwise: identical float32 bits, or both NaN."""
    a = np.asarray(a, dtype=np.float32)
    b = np.asarray(b, dtype=np.float32)
    same = a.view(np.uint32) == b.view(np.uint32)
    return same | (np.isnan(a) & np.isnan(b))


def ulp_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Number of float32 values between a and b (0 for equal bits; -1 where a NaN is involved)."""
    def ordered(x):
        i = np.asarray(x, dtype=np.float32).view(np.int32).astype(np.int64)
        return np.where(i < 0, -(i & 0x7FFFFFFF), i)

    d = np.abs(ordered(a) - ordered(b))
    return np.where(np.isnan(a) | np.isnan(b), -1, d)


def describe_differences(actual: np.ndarray, expected: np.ndarray, *, exact: np.ndarray | None = None,
                         bound: np.ndarray | None = None, names: str = "index") -> str:
    """The first differing elements with their indices, both values, ulp distance and bound."""
    bad = ~bits_equal(actual, expected)
    idx = np.argwhere(bad)
    lines = [f"{len(idx)} of {actual.size} elements differ; first {min(len(idx), MAX_REPORTED)}:"]
    ulps = ulp_distance(actual, expected)
    for pos in idx[:MAX_REPORTED]:
        t = tuple(int(i) for i in pos)
        line = f"  {names}={t}: got {float(actual[t]):.9g} ({_hex(actual[t])}) " \
               f"expected {float(expected[t]):.9g} ({_hex(expected[t])}) ulp={ulps[t]}"
        if exact is not None and bound is not None:
            err = abs(float(actual[t]) - float(exact[t]))
            line += f" |got-exact|={err:.3g} bound={float(bound[t]):.3g}"
        lines.append(line)
    return "\n".join(lines)


def _hex(v) -> str:
    return f"0x{np.float32(v).view(np.uint32):08x}"


def index_names(op: str) -> str:
    return "(token, row)" if op == "mul_mat" else "(token, slot, row)"


# -- the reference --------------------------------------------------------------------------

def canonical(case: Case) -> np.ndarray:
    a = case.arrays
    if case.op == "mul_mat":
        return reference.mul_mat(a["w"], a["x"])
    if case.op == "mul_mat_id":
        return reference.mul_mat_id(a["w"], a["x"], a["ids"])
    return reference.moe_up_gate(a["w_up"], a["w_gate"], a["x"], a["ids"], case.act)


def exact_and_bound(case: Case) -> tuple[np.ndarray, np.ndarray]:
    a = case.arrays
    if case.op == "mul_mat":
        return reference.mul_mat_exact(a["w"], a["x"]), reference.mul_mat_bound(a["w"], a["x"])
    if case.op == "mul_mat_id":
        return (reference.mul_mat_id_exact(a["w"], a["x"], a["ids"]),
                reference.mul_mat_id_bound(a["w"], a["x"], a["ids"]))
    args = (a["w_up"], a["w_gate"], a["x"], a["ids"], case.act)
    return reference.moe_up_gate_exact(*args), reference.moe_up_gate_bound(*args)


# -- the checks -----------------------------------------------------------------------------

@dataclass
class Outcome:
    """What one run of a case produced: an output array, or an error code and message."""
    options: KernelOptions
    output: np.ndarray | None = None
    code: int = 0
    message: str = ""


def divergence_class(base: KernelOptions, other: KernelOptions) -> type[HarnessFailure]:
    changed = {f for f in ("n_threads", "isa", "repack_threshold", "fused")
               if getattr(base, f) != getattr(other, f)}
    if changed == {"n_threads"}:
        return ThreadDivergence
    if changed == {"isa"}:
        return IsaDivergence
    if changed == {"repack_threshold"}:
        return PathDivergence
    return Mismatch


def check_outcomes(case: Case, outcomes: list[Outcome], case_path=None, expected: np.ndarray | None = None) -> None:
    """Raise the most specific failure for this case, or return if every check passes."""
    names = index_names(case.op)
    for o in outcomes:
        if o.output is None:
            raise KernelError(f"library returned status {o.code} ({o.message!r}) for a valid case "
                              f"[{o.options.label()}]", case_path=case_path, detail=case.describe())
    if expected is None:
        expected = canonical(case)
    base = outcomes[0]
    for o in outcomes[1:]:
        if not bits_equal(o.output, base.output).all():
            cls = divergence_class(base.options, o.options)
            wrong, right = (o, base) if bits_equal(base.output, expected).all() else (base, o)
            detail = (f"{case.describe()}\n[{wrong.options.label()}] vs [{right.options.label()}]:\n"
                      + describe_differences(wrong.output, right.output, names=names))
            raise cls(f"runs disagree: {base.options.label()} vs {o.options.label()}",
                      case_path=case_path, detail=detail)
    if not bits_equal(base.output, expected).all():
        exact, bound = exact_and_bound(case)
        detail = (f"{case.describe()}\n[{base.options.label()}] vs reference canonical emulation:\n"
                  + describe_differences(base.output, expected, exact=exact, bound=bound, names=names))
        raise Mismatch("output differs from the reference (bit-exact contract)", case_path=case_path, detail=detail)


def within_bound_report(case: Case, output: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ok mask, error/bound ratio) of an output against the float64 value; for targets that
    promise no bit-exactness and for the error-ratio statistics of campaigns."""
    exact, bound = exact_and_bound(case)
    ok = reference.within_bound(output, exact, bound, canonical(case))
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.abs(output.astype(np.float64) - exact) / bound
    ratio = np.where(np.isfinite(ratio), ratio, 0.0)
    return ok, ratio


def standard_runs(isas: list[str], threads: list[int], *, fused_variants: bool = False,
                  threshold: int = 32) -> list[KernelOptions]:
    """A star of option sets around one baseline, each differing from it in one respect, so
    a disagreement names the cause (threads, SIMD level, path, fusion)."""
    best = isas[-1]
    base = KernelOptions(n_threads=1, isa=best, repack_threshold=threshold)
    runs = [base]
    runs += [KernelOptions(n_threads=t, isa=best, repack_threshold=threshold) for t in threads if t != 1]
    runs += [KernelOptions(n_threads=1, isa=i, repack_threshold=threshold) for i in isas if i != best]
    runs += [KernelOptions(n_threads=1, isa=best, repack_threshold=t) for t in (0, REPACK_NEVER) if t != threshold]
    if fused_variants:
        runs.append(KernelOptions(n_threads=1, isa=best, repack_threshold=threshold, fused=False))
    return runs
