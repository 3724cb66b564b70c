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
from .errors import (HarnessFailure, IsaDivergence, KernelError, Mismatch,
                     PathDivergence, PrepackDivergence, ThreadDivergence)

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
    changed = {f for f in ("n_threads", "isa", "repack_threshold", "fused", "prepacked")
               if getattr(base, f) != getattr(other, f)}
    if "prepacked" in changed and not changed & {"n_threads", "repack_threshold", "fused"}:
        return PrepackDivergence  # on any SIMD level: the label names it
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
    a disagreement names the cause (threads, SIMD level, path, fusion), plus prepacked weights
    on every SIMD level (the prepacked kernels, or the scalar ones a level falls back to)."""
    best = isas[-1]
    base = KernelOptions(n_threads=1, isa=best, repack_threshold=threshold)
    runs = [base]
    runs += [KernelOptions(n_threads=t, isa=best, repack_threshold=threshold) for t in threads if t != 1]
    runs += [KernelOptions(n_threads=1, isa=i, repack_threshold=threshold) for i in isas if i != best]
    runs += [KernelOptions(n_threads=1, isa=best, repack_threshold=t) for t in (0, REPACK_NEVER) if t != threshold]
    if fused_variants:
        runs.append(KernelOptions(n_threads=1, isa=best, repack_threshold=threshold, fused=False))
    # prepacked weights on every SIMD level (each level's own kernels or its fallback)
    runs += [KernelOptions(n_threads=1, isa=i, repack_threshold=threshold, prepacked=True) for i in isas]
    return runs


# -- batch composition ----------------------------------------------------------------------

def batch_subcase(case: Case) -> tuple[Case, int] | None:
    """The case reduced to one token (chosen from the case's digest among the tokens of the
    expert with the most tokens), to be run with the first option set; None when that
    changes no expert's token count (then there is nothing to compare)."""
    n = case.n_tokens
    if n < 2:
        return None
    if case.op == "mul_mat":
        tokens = np.arange(n)
    else:
        ids = case.arrays["ids"]
        tokens = np.nonzero((ids >= 0).any(axis=1))[0]
        if tokens.size == 0:
            return None
    if case.op != "mul_mat":
        # a token of the busiest expert: the largest change of a token count
        counts = case.expert_token_counts()
        busiest = int(np.argmax(counts))
        if counts[busiest] <= 1:
            return None
        tokens = np.nonzero((case.arrays["ids"] == busiest).any(axis=1))[0]
    t = int(tokens[int(case.digest()[:8], 16) % tokens.size])
    arrays = {name: (a[t:t + 1] if name in ("x", "ids") else a) for name, a in case.arrays.items()}
    sub = Case(case.op, arrays, [case.runs[0]], act=case.act, variant=case.variant,
               info={"batch_subcase_of": case.digest()[:16], "token": t}, target=dict(case.target))
    return sub, t


def batch_difference(case: Case, token: int, full: np.ndarray, alone: np.ndarray) -> str | None:
    """None when token `token`'s rows of the full output equal the one-token output bit for
    bit; else a description of the difference."""
    mine = full[token:token + 1]
    if bits_equal(mine, alone).all():
        return None
    if case.op == "mul_mat":
        where = f"token {token} of {case.n_tokens} (mul_mat: {case.n_tokens} activation rows vs 1)"
    else:
        ids = case.arrays["ids"][token]
        counts = case.expert_token_counts()
        experts = ", ".join(f"expert {int(e)} has {int(counts[e])} tokens" for e in np.unique(ids[ids >= 0]))
        where = f"token {token} (slots {ids.tolist()}; in the full case {experts}; alone: 1 each)"
    return (f"{where}\n[full case] vs [token alone]:\n"
            + describe_differences(mine, alone, names=index_names(case.op)))


# -- targets without bit-exactness (ggml) ---------------------------------------------------

def exact_and_bound_q(case: Case, q) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(canonical, exact, bound) of the case with the activations given as Q8KBlocks (the
    target's own quantized activations) instead of the reference's quantization of x."""
    a = case.arrays
    if case.op == "mul_mat":
        return (reference.mul_mat(a["w"], q), reference.mul_mat_exact(a["w"], q),
                reference.mul_mat_bound(a["w"], q))
    if case.op == "mul_mat_id":
        return (reference.mul_mat_id(a["w"], q, a["ids"]), reference.mul_mat_id_exact(a["w"], q, a["ids"]),
                reference.mul_mat_id_bound(a["w"], q, a["ids"]))
    args = (a["w_up"], a["w_gate"], q, a["ids"], case.act)
    return reference.moe_up_gate(*args), reference.moe_up_gate_exact(*args), reference.moe_up_gate_bound(*args)


def q8k_difference(x: np.ndarray, q8k: np.ndarray) -> str | None:
    """None when the target's Q8_K bytes equal the reference quantizer's (bsums of all-zero
    blocks ignored: ggml leaves them unwritten); else a one-line description."""
    if x.size == 0:
        return None
    ours = reference.quantize_q8k(x)
    theirs = reference.q8k_from_bytes(q8k)
    live = ours.d != 0
    same = ((ours.d.view(np.uint32) == theirs.d.view(np.uint32))
            & (ours.qs == theirs.qs).all(axis=-1)
            & ((ours.bsums == theirs.bsums).all(axis=-1) | ~live))
    if same.all():
        return None
    bad = np.argwhere(~same)
    t, b = (int(i) for i in bad[0])
    return (f"{len(bad)} of {same.size} Q8_K blocks differ from reference.quantize_q8k; first (token {t}, "
            f"block {b}): d {float(theirs.d[t, b]):.9g} vs {float(ours.d[t, b]):.9g}, "
            f"{int((ours.qs[t, b] != theirs.qs[t, b]).sum())} of 256 qs differ")


@dataclass
class TargetReport:
    """What the bound check of one case on a non-bit-exact target found (no exception)."""
    max_ratio: float = 0.0
    unbounded: int = 0                       # elements outside the bound's model (see _outside_model_ok)
    thread_divergence: str | None = None     # description of the first divergent run
    q8k_difference: str | None = None


def _outside_model(bound: np.ndarray, canon: np.ndarray) -> np.ndarray:
    """Elements the bound does not cover: no finite bound, or a non-finite canonical result
    (inf/nan super-scales, or an intermediate that overflows float32)."""
    return ~np.isfinite(np.asarray(canon, dtype=np.float64)) | ~np.isfinite(bound)


def _outside_model_ok(out: np.ndarray, exact: np.ndarray, bound: np.ndarray, canon: np.ndarray) -> np.ndarray:
    """There reference.within_bound asks for equality with the canonical result, which
    only a bit-exact implementation can meet: another summation order overflows elsewhere
    (and inf - inf gives NaN). What such a target must still satisfy there:
    - exact value non-finite or beyond FLT_MAX: the output is non-finite too;
    - exact value finite: a finite output has the sign of the exact value (or one of them
      is zero); a non-finite output counts as an overflow in the target's own order.
    Elements covered by the bound are not touched (False)."""
    out = np.asarray(out, dtype=np.float64)
    exact = np.asarray(exact, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        huge = ~np.isfinite(exact) | (np.abs(exact) > FLT32_MAX)
        same_sign = (np.sign(out) == np.sign(exact)) | (out == 0) | (exact == 0)
    return _outside_model(bound, canon) & np.where(huge, ~np.isfinite(out), ~np.isfinite(out) | same_sign)


FLT32_MAX = float(np.finfo(np.float32).max)


def check_bound_outcomes(case: Case, outcomes: list[Outcome], q8k: np.ndarray, case_path=None,
                         *, strict: bool = False) -> TargetReport:
    """For a target that promises no bit-exactness: every run's output within the float64
    bound of the same quantized product, with the target's own Q8_K bytes `q8k`
    ([n_tokens, nb, 292]) as the activations. Raises KernelError (a status) or Mismatch (out
    of bound); a thread-count divergence is returned as a finding, raised as
    ThreadDivergence when `strict`."""
    names = index_names(case.op)
    for o in outcomes:
        if o.output is None:
            raise KernelError(f"target returned status {o.code} ({o.message!r}) for a valid case "
                              f"[{o.options.label()}]", case_path=case_path, detail=case.describe())
    report = TargetReport()
    if case.n_tokens:
        q = reference.q8k_from_bytes(np.ascontiguousarray(q8k, dtype=np.uint8))
        canon, exact, bound = exact_and_bound_q(case, q)
        report.q8k_difference = q8k_difference(case.arrays["x"], q8k)
    else:
        canon = exact = bound = None
    base = outcomes[0]
    for o in outcomes:
        if canon is None:
            break
        if case.op == "moe_up_gate":
            # outside the model an up or gate value beyond float32 range (or overflowed in
            # the target's own order) propagates through act and the product arbitrarily
            # (-inf gate -> act 0 -> 0 output, for instance): those elements are not judged
            outside_ok = _outside_model(bound, canon)
        else:
            outside_ok = _outside_model_ok(o.output, exact, bound, canon)
        ok = reference.within_bound(o.output, exact, bound, canon) | outside_ok
        if not ok.all():
            bad = np.argwhere(~ok)
            lines = [f"{len(bad)} of {ok.size} elements outside the float64 bound "
                     f"(activations: the target's own Q8_K bytes); first {min(len(bad), MAX_REPORTED)}:"]
            for pos in bad[:MAX_REPORTED]:
                t = tuple(int(i) for i in pos)
                err = abs(float(o.output[t]) - float(exact[t]))
                lines.append(f"  {names}={t}: got {float(o.output[t]):.9g} ({_hex(o.output[t])}) "
                             f"exact {float(exact[t]):.9g} |got-exact|={err:.3g} bound={float(bound[t]):.3g} "
                             f"canonical {float(canon[t]):.9g}")
            raise Mismatch("output outside the float64 error bound", case_path=case_path,
                           detail=f"{case.describe()}\n[{o.options.label()}]:\n" + "\n".join(lines))
        report.unbounded = max(report.unbounded, int(_outside_model(bound, canon).sum()))
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            ratio = np.abs(o.output.astype(np.float64) - exact) / bound
        ratio = np.where(np.isfinite(ratio), ratio, 0.0)
        if ratio.size:
            report.max_ratio = max(report.max_ratio, float(ratio.max()))
    for o in outcomes[1:]:
        if o.options.n_threads == base.options.n_threads or o.options.fused != base.options.fused:
            continue
        if not bits_equal(o.output, base.output).all():
            detail = (f"{case.describe()}\n[{o.options.label()}] vs [{base.options.label()}]:\n"
                      + describe_differences(o.output, base.output, names=names))
            if strict:
                raise ThreadDivergence(f"runs disagree: {base.options.label()} vs {o.options.label()}",
                                       case_path=case_path, detail=detail)
            report.thread_divergence = report.thread_divergence or detail
    return report


def only_thread_runs(runs: list[KernelOptions]) -> list[KernelOptions]:
    """A case's option sets reduced to what a ggml target varies: thread count and fused;
    ISA and repack threshold are dropped (they do not apply), duplicates removed."""
    seen, out = set(), []
    for r in runs:
        key = (r.n_threads, r.fused)
        if key not in seen:
            seen.add(key)
            out.append(KernelOptions(n_threads=r.n_threads, fused=r.fused))
    return out
