"""Forward error bounds against binary64 (design.md point 5) and the comparison rule.

This module is the authority on the exact formulas (docs/numerics.md, "Error bound").

Notation: u = 2^-24 (float32 unit roundoff), gamma_n = n*u / (1 - n*u).  For one output
element (weight row r, token c) with blocks b, weights i:

    M'_b = sum_{i in b} |q8_i| * (2s+1) * (8|grid_i| + 1)          exact integer
    M    = sum_b |dw_b * dy_b| * M'_b                              split-absolute magnitude
    exact = sum_b dw_b * dy_b * S_b / 8

mul_mat bound (`gemm_bound`)
----------------------------
Model.  A kernel computes the element as a sum of *terms*  t = ((dw*dy) * T) * c, where T is
an exact integer partial sum (|T| < 2^24, so converting it to float is exact) of either the
grid part sum q8*(2s+1)*8*grid or the delta part sum q8*(2s+1)*sign of some of the weights
of one block, c is 1 or a power of two (the 0.125), every weight lands in exactly one grid
and one delta term, and the terms are added by any float32 summation whose tree depth
(additions on the path of any term) is at most nb + 4: block-serial accumulation (nb - 1),
a horizontal reduction over up to 16 SIMD lanes (4) and combining the grid and delta parts
(1).  With the final scaling by 0.125 (or any exact power of two) every term goes through at
most n = nb + SLACK roundings, SLACK = 8 (3 multiplications + 5).  The contract's canonical
order (two multiplications per block, nb - 1 additions, one final scaling) is a special
case, and so is ggml's AVX2 dot product (grid and delta accumulated separately in 8 lanes).

Rounding model with underflow (IEEE binary32, round to nearest): fl(a*b) = ab(1+d) + e with
|d| <= u, |e| <= 2^-150 (e != 0 only when the result is subnormal); fl(a+b) = (a+b)(1+d)
exactly, with no absolute term (a sum that lands in the subnormal range is exact).

Relative part.  Each term carries at most n factors (1+d_k), so it equals t_exact(1+theta),
|theta| <= gamma_n (Higham, Lemma 3.1), and the additions keep that form.  Hence
|sum - exact| <= gamma_n * sum |t_exact| and, in units of the output (the factor 1/8 of the
weight integers), sum |t_exact| <= 0.125 * sum_b |dw dy| * sum_i |q8_i| (2s+1) (8|grid_i| + 1)
= 0.125 * M, because the terms' integer parts T are sub-sums of the split magnitudes.

Absolute (underflow) part.  The e of fl(dw*dy) is multiplied by T and c <= 1 (weight units):
at most 2^-150 |T| / 8 per term once the final 0.125 is applied; the e of the two later
multiplications add 2 * 2^-150 per term.  A term with T = 0 is an exact zero, and a nonzero
integer has |T| >= 1, so the number of nonzero terms is at most sum |T| <= M'_total =
sum_b M'_b.  Per term the absolute error is thus <= 3 * 2^-150 * |T|, in total
<= 3 * 2^-150 * M'_total, amplified by later roundings by at most (1 + gamma_n), plus 2^-150
for the final scaling:  E_abs = 2^-150 * (3 (1 + gamma_n) M'_total + 1).

Overflow.  The model needs every intermediate finite: intermediates are bounded by
(1 + gamma_n) times the sum of |terms| in accumulator units, which is at most M (the
accumulator holds 8x the output).  Where (1 + gamma_n) * M > FLT_MAX, or some float32
dw*dy is not finite (inf/nan scales, or an overflowing product), the bound is +inf and the
comparison falls back to exact equality with the canonical result (`within_bound`).

Reference's own error.  `mul_mat_exact` forms dw*dy exactly in float64 (24 x 11 bits), then
one rounding for the product with S_b and nb - 1 additions in some order: its error is at
most gamma64_{nb} * 0.125 * M with gamma64 for u64 = 2^-53; added to the bound.  Computing
M and the bound in float64 and the difference |result - exact| costs at most nb + 5 more
roundings of 2^-53 each; the whole bound is multiplied by (1 + 2^-40), which covers that
for nb < 2^12 (K < 10^6).

    bound = (gamma32_{nb+8} + gamma64_{nb}) * 0.125 * M * (1 + 2^-40) + E_abs

moe_up_gate bound (`moe_bound`)
-------------------------------
u, g canonical up/gate (float32), U, G their float64 exact values with |u-U| <= Bu,
|g-G| <= Bg (bounds above, which include the float64 error of U and G).  A = act_exact(G)
(float64; its own relative error against the true act at G is below eps_A = 2^-38: libm exp
within 1 ulp, a handful of roundings, and the rounding of z = 2k0(G+0.044715G^3) gives a
relative change of at most |dz| <= 4*2^-53*|z| <= 4e-13 for |z| <= 746; beyond that e^-|z|
is 0 in binary64 either way).  a = act(g) (float32, canonical).  Then
  |a - A| <= |act(g) - act_true(g)| + |act_true(g) - act_true(G)| + |act_true(G) - A|
          <= ACT_MAX_ULP * ulp(act_true(g)) + ACT_MAX_SLOPE * Bg + eps_A |A|
  with ulp(v) <= 2^-23 |v| + 2^-149 and |act_true(g)| <= (1+eps_A)|A| + ACT_MAX_SLOPE * Bg.
  (act_true is the libm evaluation; the slope bound holds for the mathematical function,
  which differs from it by at most eps_A relative at g and at G: one more eps_A term.)
  Ea = ACT_MAX_SLOPE*Bg + ACT_MAX_ULP*(2^-23*((1+eps_A)|A| + ACT_MAX_SLOPE*Bg) + 2^-149)
       + 2 eps_A ((1+eps_A)|A| + ACT_MAX_SLOPE*Bg).
The result is o = fl32(u*a); the reference is fl64(U*A).
  |o - fl64(UA)| <= |fl32(ua) - ua| + |ua - UA| + |UA - fl64(UA)|
               <= 2^-24 |ua| + 2^-150 + Bu |a| + |U| Ea + 2^-53 |U A|
  with |u| <= |U| + Bu, |a| <= |A| + Ea:
  bound = (2^-24 (|U|+Bu)(|A|+Ea) + Bu (|A|+Ea) + |U| Ea + 2^-53 |U||A|) * (1 + 2^-40) + 2^-150.
It is +inf where Bu or Bg is +inf, u or g is not finite, or (|U|+Bu)(|A|+Ea) may exceed
FLT_MAX (the float32 product could overflow).  Unused slots have bound 0.
"""
import numpy as np

from .activations import ACT_MAX_SLOPE, ACT_MAX_ULP

U32 = 2.0 ** -24
U64 = 2.0 ** -53
SLACK = 8
INFLATE = 1.0 + 2.0 ** -40
EPS_A = 2.0 ** -38
TINY = 2.0 ** -150                   # half the smallest subnormal float32 spacing
FLT_MAX = float(np.finfo(np.float32).max)


def gamma(n, u=U32):
    n = np.asarray(n, dtype=np.float64)
    return n * u / (1.0 - n * u)


def gemm_bound(M, m_int_total, nb, dwdy_finite):
    """The mul_mat bound from M (float64), M'_total (float64 integer), nb, and a bool
    array telling where every float32 dw*dy of the element is finite (see module doc)."""
    g32 = gamma(nb + SLACK)
    g64 = gamma(nb, U64)
    with np.errstate(invalid="ignore", over="ignore"):
        rel = (g32 + g64) * 0.125 * M * INFLATE
        b = rel + TINY * (3.0 * (1.0 + g32) * m_int_total + 1.0)
        ok = dwdy_finite & np.isfinite(M) & ((1.0 + g32) * M <= FLT_MAX)
    return np.where(ok, b, np.inf)


def moe_bound(U, Bu, A, Bg, u_finite, g_finite, act_ulp=ACT_MAX_ULP):
    """The moe_up_gate bound from exact up U, its bound Bu, A = act_exact(G), the gate
    bound Bg and where the canonical up/gate values are finite (see module doc);
    `act_ulp`: the activation's error in ulp (the contract's; another implementation's)."""
    with np.errstate(invalid="ignore", over="ignore"):
        aU, aA = np.abs(U), np.abs(A)
        Ea = (ACT_MAX_SLOPE * Bg
              + act_ulp * (2.0 ** -23 * ((1.0 + EPS_A) * aA + ACT_MAX_SLOPE * Bg) + 2.0 ** -149)
              + 2.0 * EPS_A * ((1.0 + EPS_A) * aA + ACT_MAX_SLOPE * Bg))
        big = (aU + Bu) * (aA + Ea)
        b = (U32 * big + Bu * (aA + Ea) + aU * Ea + U64 * aU * aA) * INFLATE + TINY
        ok = np.isfinite(b) & u_finite & g_finite & (big * (1.0 + U32) <= FLT_MAX)
    return np.where(ok, b, np.inf)


def within_bound(result, exact, bound, canonical):
    """True where |result - exact| <= bound (finite bound, finite canonical); elsewhere
    (bound inf or canonical non-finite) True iff result equals canonical, NaN == NaN and
    infinities of the same sign equal."""
    result = np.asarray(result, dtype=np.float64)
    exact = np.asarray(exact, dtype=np.float64)
    bound = np.asarray(bound, dtype=np.float64)
    canonical = np.asarray(canonical, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        close = np.abs(result - exact) <= bound
    equal = (result == canonical) | (np.isnan(result) & np.isnan(canonical))
    use_bound = np.isfinite(bound) & np.isfinite(canonical)
    return np.where(use_bound, close, equal)
