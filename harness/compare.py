"""Deciding pass or fail: bit-exact equality, the float64 bound, and the invariances.

Bit-exact means: the same float32 bits, except that any NaN equals any NaN; +0 and -0 are
different. The invariances (threads, SIMD level, direct vs repacked path, fused vs
unfused, prepacked weights) are checked between the runs of one case; then the first run
is compared with the reference's canonical emulation. Targets that promise no
bit-exactness (ggml builds) are judged against the float64 bound instead
(`bound_report`), and decide themselves what is a failure and what a finding.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

import reference

from .cases import Case
from .errors import (HarnessFailure, IsaDivergence, KernelError, Mismatch, PathDivergence,
                     PrepackDivergence, ThreadDivergence, UnwrittenOutput)
from .ops import FULL, Subset, ulp_distance  # noqa: F401  (ulp_distance: re-exported)
from .options import KernelOptions

MAX_REPORTED = 5
FLT32_MAX = float(np.finfo(np.float32).max)


def bits_equal(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Elementwise: identical float32 bits, or both NaN."""
    a = np.asarray(a, dtype=np.float32)
    b = np.asarray(b, dtype=np.float32)
    same = a.view(np.uint32) == b.view(np.uint32)
    return same | (np.isnan(a) & np.isnan(b))


def _hex(v) -> str:
    return f"0x{np.float32(v).view(np.uint32):08x}"


def describe_differences(actual: np.ndarray, expected: np.ndarray, *, exact: np.ndarray | None = None,
                         bound: np.ndarray | None = None, names: str = "index", subset: Subset = FULL) -> str:
    """The first differing elements with their indices (global ones when the arrays are a
    `subset` of the output), both values, ulp distance and bound."""
    bad = ~bits_equal(actual, expected)
    idx = np.argwhere(bad)
    lines = [f"{len(idx)} of {actual.size} elements differ; first {min(len(idx), MAX_REPORTED)}:"]
    ulps = ulp_distance(actual, expected)
    for pos in idx[:MAX_REPORTED]:
        t = tuple(int(i) for i in pos)
        line = f"  {names}={subset.global_index(t)}: got {float(actual[t]):.9g} ({_hex(actual[t])}) " \
               f"expected {float(expected[t]):.9g} ({_hex(expected[t])}) ulp={ulps[t]}"
        if exact is not None and bound is not None:
            err = abs(float(actual[t]) - float(exact[t]))
            line += f" |got-exact|={err:.3g} bound={float(bound[t]):.3g}"
        lines.append(line)
    return "\n".join(lines)


@dataclass
class Outcome:
    """What one run of a case produced: an output array, or an error code and message.
    `canary`: the canary the run's output was filled with (harness.canary); `scratch`:
    descriptions of bytes the library left unwritten in buffers it fills for the caller."""
    options: KernelOptions
    output: np.ndarray | None = None
    code: int = 0
    message: str = ""
    canary: int = -1
    scratch: list = field(default_factory=list)
    seconds: float = 0.0   # the library call as the worker timed it (wall)
    cpu: float = 0.0       # ... and the worker's CPU time in it (all its threads)
    defects: tuple[str, ...] = ()   # what the call did besides its output (a write past its buffers)


def divergence_class(base: KernelOptions, other: KernelOptions) -> type[HarnessFailure]:
    """The failure kind that names what two disagreeing runs differ in."""
    changed = base.differs_from(other)
    if "prepacked" in changed and not changed & {"n_threads", "repack_threshold", "fused"}:
        return PrepackDivergence  # on any SIMD level: the label names it
    return {frozenset({"n_threads"}): ThreadDivergence, frozenset({"isa"}): IsaDivergence,
            frozenset({"repack_threshold"}): PathDivergence}.get(frozenset(changed), Mismatch)


def require_outputs(case: Case, outcomes: list[Outcome], case_path=None, *, who: str = "library") -> None:
    for o in outcomes:
        if o.output is None:
            raise KernelError(f"{who} returned status {o.code} ({o.message!r}) for a valid case "
                              f"[{o.options.label()}]", case_path=case_path, detail=case.describe(),
                              options=o.options)


def check_unwritten(case: Case, outcomes: list[Outcome], case_path=None) -> None:
    """UnwrittenOutput when a run left output elements (or library-filled scratch) holding
    the canary they were filled with before the call."""
    spec = case.spec
    for o in outcomes:
        if o.scratch:
            raise UnwrittenOutput(f"the library left bytes of a buffer it fills unwritten [{o.options.label()}]",
                                  case_path=case_path, detail=f"{case.describe()}\n" + "\n".join(o.scratch),
                                  options=o.options)
        if o.output is None or o.canary < 0:
            continue
        n, where = spec.unwritten(case.arrays, o.output, o.canary)
        if n:
            raise UnwrittenOutput(f"{n} of {o.output.size} output elements never written [{o.options.label()}]",
                                  case_path=case_path,
                                  detail=f"{case.describe()}\nstill holding the canary: " + ", ".join(where)
                                  + (" ..." if n > len(where) else ""), options=o.options)


def check_outcomes(case: Case, outcomes: list[Outcome], case_path=None, expected: np.ndarray | None = None,
                   *, unwritten: bool = True) -> None:
    """The bit-exact contract: raise the most specific failure, or return if every check
    passes. Unwritten outputs first (`unwritten=False`: the caller checked them, as
    Runner.check does for every target); then runs are compared with each other on every
    element; the first run with the reference's canonical result on
    `case.reference_subset()` (every element of an affordable case) or against `expected`
    (the whole output) when given."""
    spec = case.spec
    require_outputs(case, outcomes, case_path)
    if not outcomes:
        return
    if unwritten:
        check_unwritten(case, outcomes, case_path)
    subset = FULL if expected is not None else case.reference_subset()
    if expected is None:
        expected = case.reference("canonical")
    base = outcomes[0]
    for o in outcomes[1:]:
        if not spec.equal(o.output, base.output).all():
            cls = divergence_class(base.options, o.options)
            wrong, right = (o, base) if spec.equal(subset.take(base.output), expected).all() else (base, o)
            detail = (f"{case.describe()}\n[{wrong.options.label()}] vs [{right.options.label()}]:\n"
                      + spec.describe_differences(wrong.output, right.output))
            raise cls(f"runs disagree: {base.options.label()} vs {o.options.label()}",
                      case_path=case_path, detail=detail, options=wrong.options)
    got = subset.take(base.output)
    if not spec.equal(got, expected).all():
        exact, bound = case.reference("exact"), case.reference("bound")
        where = "" if subset is FULL else f" ({subset.describe(case.n_tokens, case.rows)})"
        detail = (f"{case.describe()}\n[{base.options.label()}] vs reference canonical emulation{where}:\n"
                  + spec.describe_differences(got, expected, exact=exact, bound=bound, subset=subset))
        raise Mismatch("output differs from the reference (bit-exact contract)", case_path=case_path,
                       detail=detail, options=base.options)


def bound_ratio(output: np.ndarray, exact: np.ndarray, bound: np.ndarray) -> np.ndarray:
    """|output - exact| / bound, 0 where that is not a finite number."""
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        ratio = np.abs(np.asarray(output, dtype=np.float64) - exact) / bound
    return np.where(np.isfinite(ratio), ratio, 0.0)


def within_bound_report(case: Case, output: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ok mask, error/bound ratio) of an output against the float64 value, on a sample of
    the case's reference subset (STATS_TOKENS x STATS_ROWS, spread evenly); for the
    error-ratio statistics of campaigns (a campaign samples 256 of them per case anyway).
    Empty for an op with no error bound (the conversions are exact definitions)."""
    if case.spec.kind != "gemm" or output is None:
        return np.ones(0, bool), np.zeros(0)
    spec, a = case.spec, case.arrays
    sub = case.reference_subset().limit(case.n_tokens, case.rows, STATS_TOKENS, STATS_ROWS)
    output = sub.take(output)
    exact, bound = spec.exact(a, case.act, None, sub), spec.bound(a, case.act, None, sub)
    ok = reference.within_bound(output, exact, bound, spec.canonical(a, case.act, None, sub))
    return ok, bound_ratio(output, exact, bound)


# the statistics sample: at most this many tokens x rows of the reference subset
STATS_TOKENS, STATS_ROWS = 8, 32


# -- batch composition ----------------------------------------------------------------------

def batch_token(case: Case) -> int | None:
    """The token whose one-token sub-case is compared with the full case (chosen from the
    case's digest among the tokens of the expert with the most tokens); None when reducing
    the case to one token changes no expert's token count (nothing to compare)."""
    spec, a = case.spec, case.arrays
    if not spec.batched or case.n_tokens < 2:
        return None
    counts = case.expert_token_counts()
    busiest = int(np.argmax(counts))
    if counts[busiest] <= 1:
        return None
    tokens = spec.tokens_of_expert(a, busiest)
    return int(tokens[int(case.digest()[:8], 16) % tokens.size])


def batch_subcase(case: Case, token: int | None = None) -> tuple[Case, int] | Case | None:
    """The case reduced to one token, to be run with the first option set. With `token`
    (from batch_token): that sub-case. Without: (sub-case, token), or None when there is
    nothing to compare."""
    if token is None:
        token = batch_token(case)
        if token is None:
            return None
        return batch_subcase(case, token), token
    return case.with_arrays(case.spec.one_token(case.arrays, token), [case.runs[0]],
                            batch_subcase_of=case.digest()[:16], token=token)


def batch_difference(case: Case, token: int, full: np.ndarray, alone: np.ndarray) -> str | None:
    """None when token `token`'s rows of the full output equal the one-token output bit for
    bit; else a description of the difference."""
    mine = full[token:token + 1]
    if bits_equal(mine, alone).all():
        return None
    spec = case.spec
    if not spec.routed:
        where = f"token {token} of {case.n_tokens} ({case.n_tokens} activation rows vs 1)"
    else:
        ids = case.arrays["ids"][token]
        counts = case.expert_token_counts()
        experts = ", ".join(f"expert {int(e)} has {int(counts[e])} tokens" for e in np.unique(ids[ids >= 0]))
        where = f"token {token} (slots {ids.tolist()}; in the full case {experts}; alone: 1 each)"
    return (f"{where}\n[full case] vs [token alone]:\n"
            + describe_differences(mine, alone, names=spec.index_names))


# -- targets without bit-exactness (ggml) ---------------------------------------------------

def q8k_difference(x: np.ndarray, q8k: np.ndarray) -> str | None:
    """None when the target's Q8_K bytes (normalised to the reference's 292-byte layout)
    equal the reference quantizer's (bsums of all-zero blocks ignored: ggml leaves them
    unwritten); else a one-line description."""
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


def q8k_invalid(x: np.ndarray, q8k: np.ndarray) -> str | None:
    """None when every Q8_K block of the target is one a correct quantizer can write; else a
    one-line description. Whatever the rounding rule or sign convention, the quants lie in
    [-127, 127] (the scale maps the largest magnitude to 127) and each bsum is the sum of
    its 16 quants."""
    if x.size == 0:
        return None
    q = reference.q8k_from_bytes(q8k)
    sums = q.qs.astype(np.int32).reshape(q.qs.shape[:-1] + (16, 16)).sum(axis=-1)
    bad = (q.qs == -128).any(axis=-1) | (sums != q.bsums).any(axis=-1)
    if not bad.any():
        return None
    t, b = (int(i) for i in np.argwhere(bad)[0])
    xb = x[t, b * 256:(b + 1) * 256]
    return (f"the target's Q8_K quantizer wrote {int(bad.sum())} of {bad.size} blocks no correct quantizer writes; "
            f"first (token {t}, block {b}, max |x| {float(np.abs(xb).max()):.3g}): d {float(q.d[t, b]):.3g}, "
            f"{int((q.qs[t, b] == -128).sum())} quants of -128, bsums {q.bsums[t, b][:4].tolist()}... "
            f"vs sums of the quants {sums[t, b][:4].tolist()}...")


def _outside_model(bound: np.ndarray, canon: np.ndarray) -> np.ndarray:
    """Elements the bound does not cover: no finite bound, or a non-finite canonical result
    (inf/nan super-scales, or an intermediate that overflows float32)."""
    return ~np.isfinite(np.asarray(canon, dtype=np.float64)) | ~np.isfinite(bound)


def _outside_model_ok(out: np.ndarray, exact: np.ndarray, outside: np.ndarray) -> np.ndarray:
    """Elements outside the bound's model (`outside`: see _outside_model) where
    reference.within_bound asks for equality with the canonical result, which only a
    bit-exact implementation can meet: another summation order overflows elsewhere (and
    inf - inf gives NaN). What such a target must still satisfy there:
    - exact value non-finite or beyond FLT_MAX: the output is non-finite too;
    - exact value finite: a finite output has the sign of the exact value (or one of them
      is zero); a non-finite output counts as an overflow in the target's own order.
    Elements inside the model are not touched (False)."""
    out = np.asarray(out, dtype=np.float64)
    exact = np.asarray(exact, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        huge = ~np.isfinite(exact) | (np.abs(exact) > FLT32_MAX)
        same_sign = (np.sign(out) == np.sign(exact)) | (out == 0) | (exact == 0)
    return outside & np.where(huge, ~np.isfinite(out), ~np.isfinite(out) | same_sign)


def activation_sum_overflows(q) -> np.ndarray:
    """bool [..., tokens]: tokens with a Q8_K block whose scale times the sum of its quants
    is beyond float32. Kernels that factor IQ1_M's delta term through that per-block float
    (ik_llama.cpp keeps it in its Q8_K block as `sum`; its Q8_K_R8 path multiplies it by the
    weights' scale, so a zero weight row gives 0 * inf = NaN) overflow there in their own
    order, with activations near FLT_MAX."""
    sums = q.bsums.astype(np.int32).sum(axis=-1).astype(np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        return (~np.isfinite(q.d * sums)).any(axis=-1)


@dataclass
class BoundViolation:
    """Run `options` has elements outside the float64 bound of the exact product."""
    options: KernelOptions
    count: int
    size: int
    max_ratio: float
    detail: str


@dataclass
class BoundReport:
    """What the bound check of one case on a non-bit-exact target found (no exception)."""
    max_ratio: float = 0.0
    unbounded: int = 0                       # elements outside the bound's model (see _outside_model_ok)
    violations: list[BoundViolation] = field(default_factory=list)   # beyond every applicable bound
    repacked: list[BoundViolation] = field(default_factory=list)     # beyond the exact bound, within the repack's
    thread_divergence: str | None = None     # description of the first divergent run
    thread_options: KernelOptions | None = None
    q8k_difference: str | None = None


def _worst(case: Case, o: Outcome, out: np.ndarray, bad: np.ndarray, ratio: np.ndarray, exact, bound, canon,
           what: str, extra: np.ndarray | None, label, sub: Subset = FULL) -> BoundViolation:
    """`out`: the run's output on the reference subset `sub` (indices are reported globally)."""
    names = case.spec.index_names
    idx = np.argwhere(bad)
    order = np.argsort(-ratio[bad], kind="stable")  # the worst elements first
    worst = float(ratio[bad].max())
    where = "" if sub is FULL else f" ({sub.describe(case.n_tokens, case.rows)})"
    lines = [f"{len(idx)} of {bad.size} elements {what} (activations: the target's own Q8_K bytes){where}; "
             f"worst |got-exact|/bound {worst:.3g}; worst {min(len(idx), MAX_REPORTED)}:"]
    for pos in idx[order[:MAX_REPORTED]]:
        t = tuple(int(i) for i in pos)
        err = abs(float(out[t]) - float(exact[t]))
        line = (f"  {names}={sub.global_index(t)}: got {float(out[t]):.9g} ({_hex(out[t])}) exact {float(exact[t]):.9g} "
                f"|got-exact|={err:.3g} bound={float(bound[t]):.3g} ratio={float(ratio[t]):.3g}")
        if extra is not None and np.isfinite(extra[t]):
            line += f" repacked-path bound={float(extra[t]):.3g}"
        lines.append(line + f" canonical {float(canon[t]):.9g}")
    return BoundViolation(o.options, len(idx), bad.size, worst,
                          f"{case.describe()}\n[{label(o.options)}]:\n" + "\n".join(lines))


def bound_report(case: Case, outcomes: list[Outcome], q, repacked: np.ndarray | None = None,
                 label=KernelOptions.label) -> BoundReport:
    """For a target that promises no bit-exactness: every run's output against the float64
    bound of the same quantized product, `q` (Q8KBlocks) being the target's own quantized
    activations; and the thread-count invariance between runs. `repacked`: where the target
    computes on a lossy repacked path, that path's own bound (NaN elsewhere): an element
    beyond the exact bound but within it is by design (`repacked`), beyond both a violation.
    Nothing is raised: the target decides what fails."""
    spec, a = case.spec, case.arrays
    names = spec.index_names
    report = BoundReport()
    sub = case.reference_subset()
    if case.n_tokens and outcomes:
        canon, exact, bound = (spec.canonical(a, case.act, q, sub), spec.exact(a, case.act, q, sub),
                               spec.bound(a, case.act, q, sub))
        rep = None if repacked is None else sub.take(repacked)
        shape = outcomes[0].output.shape
        overflowing = activation_sum_overflows(q).reshape((shape[0],) + (1,) * (len(shape) - 1))
        outside = _outside_model(bound, canon) | sub.take(np.broadcast_to(overflowing, shape))
        for o in outcomes:
            out = sub.take(o.output)
            if spec.has_activation:
                # outside the model an up or gate value beyond float32 range (or overflowed in
                # the target's own order) propagates through act and the product arbitrarily
                # (-inf gate -> act 0 -> 0 output, for instance): those elements are not judged
                outside_ok = outside
            else:
                outside_ok = _outside_model_ok(out, exact, outside)
            ok = reference.within_bound(out, exact, bound, canon) | outside_ok
            ratio = bound_ratio(out, exact, bound)
            report.max_ratio = max(report.max_ratio, float(ratio.max()) if ratio.size else 0.0)
            report.unbounded = max(report.unbounded, int(outside.sum()))
            if ok.all():
                continue
            by_design = np.zeros_like(ok)
            if rep is not None:
                with np.errstate(invalid="ignore"):
                    err = np.abs(out.astype(np.float64) - exact)
                    by_design = ~ok & np.isfinite(rep) & (err <= rep)
                if by_design.any():
                    report.repacked.append(_worst(case, o, out, by_design, ratio, exact, bound, canon,
                                                  "outside the exact-product bound, within the repacked path's",
                                                  rep, label, sub))
            bad = ~ok & ~by_design
            if bad.any():
                report.violations.append(_worst(case, o, out, bad, ratio, exact, bound, canon,
                                                "outside every bound that applies", rep, label, sub))
    base = outcomes[0] if outcomes else None
    for o in outcomes[1:]:
        if o.options.n_threads == base.options.n_threads or o.options.fused != base.options.fused:
            continue
        if not bits_equal(o.output, base.output).all():
            report.thread_divergence = (f"{case.describe()}\n[{label(o.options)}] vs [{label(base.options)}]:\n"
                                        + describe_differences(o.output, base.output, names=names))
            report.thread_options = o.options
            break
    return report
