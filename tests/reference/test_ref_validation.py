"""Every public function rejects bad input with a ValueError that says what is wrong."""
import numpy as np
import pytest

import reference as R

RNG = np.random.default_rng(0)
W = RNG.integers(0, 256, (4, 112), dtype=np.uint8)           # 4 rows, nb = 2
W3 = RNG.integers(0, 256, (3, 4, 112), dtype=np.uint8)       # 3 experts
X = RNG.standard_normal((2, 512)).astype(np.float32)
IDS = np.array([[0, 2], [-1, 1]], np.int32)
Q = R.quantize_q8k(X)
F = R.decode_fields(W.reshape(-1, 56))


def fields(**kw):
    args = dict(grid_index=F.grid_index, delta_negative=F.delta_negative, scale=F.scale, d_bits=F.d_bits)
    args.update(kw)
    return lambda: R.IQ1MFields(**args)


def x_nan():
    x = X.copy()
    x[1, 7] = np.nan
    return x


GEMMS = [R.mul_mat, R.mul_mat_exact, R.mul_mat_bound]
ID_GEMMS = [R.mul_mat_id, R.mul_mat_id_exact, R.mul_mat_id_bound]
MOES = [R.moe_up_gate, R.moe_up_gate_exact, R.moe_up_gate_bound]

CASES = [
    # formats
    ("decode dtype", lambda: R.decode_fields(W.reshape(-1, 56).view(np.int8)), r"blocks must have dtype uint8"),
    ("decode ndim", lambda: R.decode_fields(W.reshape(-1)), r"blocks must be 2-D"),
    ("decode width", lambda: R.decode_fields(W[:, :55]), r"blocks must have shape \[n, 56\]"),
    ("encode type", lambda: R.encode_fields({"grid_index": 1}), r"fields must be IQ1MFields"),
    ("fields grid range", fields(grid_index=F.grid_index + 2047), r"grid_index values must be in \[0, 2047\]"),
    ("fields scale range", fields(scale=F.scale + 7), r"scale values must be in \[0, 7\]"),
    ("fields shape", fields(scale=F.scale[:, :15]), r"IQ1MFields.scale must have shape \(8, 16\)"),
    ("fields n mismatch", fields(d_bits=F.d_bits[:3]), r"grid_index must have shape \(3, 32\)"),
    ("fields d_bits ndim", fields(d_bits=F.d_bits.reshape(2, 4)), r"d_bits must be 1-D"),
    ("fields d_bits range", fields(d_bits=F.d_bits.astype(np.int64) + 0x10000), r"d_bits values must be in"),
    ("fields delta dtype", fields(delta_negative=F.delta_negative.astype(np.uint8)), r"delta_negative must be bool"),
    ("fields float", fields(scale=F.scale.astype(np.float32)), r"scale must be an integer array"),
    ("dequantize dtype", lambda: R.dequantize(W.reshape(-1, 56).astype(np.int16)), r"dtype uint8"),
    ("weight_integers width", lambda: R.weight_integers(W[:, :57]), r"\[n, 56\]"),
    ("as_blocks length", lambda: R.as_blocks(W[:, :57]), r"57 bytes is not a multiple of 56"),
    ("as_blocks dtype", lambda: R.as_blocks(W.astype(np.int8)), r"w must have dtype uint8"),
    # Q8_K
    ("q8k dtype", lambda: R.quantize_q8k(X.astype(np.float64)), r"x must have dtype float32, got float64"),
    ("q8k K", lambda: R.quantize_q8k(np.zeros((2, 300), np.float32)), r"K=300 is not a multiple of 256"),
    ("q8k scalar", lambda: R.quantize_q8k(np.float32(1.0)), r"x must be a numpy array|at least 1"),
    ("q8k nan", lambda: R.quantize_q8k(x_nan()), r"non-finite value nan at index \(1, 7\)"),
    ("q8k list", lambda: R.quantize_q8k([1.0] * 256), r"x must be a numpy array"),
    ("dequantize_q8k type", lambda: R.dequantize_q8k(X), r"q must be Q8KBlocks"),
    ("to_bytes type", lambda: R.q8k_to_bytes(X), r"q must be Q8KBlocks"),
    ("from_bytes width", lambda: R.q8k_from_bytes(np.zeros((2, 291), np.uint8)), r"last dimension 292"),
    ("from_bytes dtype", lambda: R.q8k_from_bytes(np.zeros((2, 292), np.int8)), r"b must have dtype uint8"),
    ("Q8KBlocks qs shape", lambda: R.Q8KBlocks(Q.d, Q.qs[..., :255], Q.bsums), r"Q8KBlocks.qs must have shape"),
    ("Q8KBlocks d dtype", lambda: R.Q8KBlocks(Q.d.astype(np.float64), Q.qs, Q.bsums), r"Q8KBlocks.d must have dtype float32"),
    ("Q8KBlocks bsums", lambda: R.Q8KBlocks(Q.d, Q.qs, Q.bsums.astype(np.int32)), r"Q8KBlocks.bsums must have dtype int16"),
    # activations
    ("silu dtype", lambda: R.silu(X.astype(np.float64)), r"float32"),
    ("gelu dtype", lambda: R.gelu(X.astype(np.float16)), r"float32"),
]

for f in GEMMS:
    n = f.__name__
    CASES += [
        (f"{n} w dtype", lambda f=f: f(W.view(np.int8), X), r"w must have dtype uint8, got int8"),
        (f"{n} w ndim", lambda f=f: f(W3, X), r"w must be 2-D"),
        (f"{n} w bytes", lambda f=f: f(W[:, :100], X), r"w row length 100 bytes is not a multiple of 56"),
        (f"{n} x dtype", lambda f=f: f(W, X.astype(np.float64)), r"x must have dtype float32"),
        (f"{n} x ndim", lambda f=f: f(W, X[0]), r"x must be 2-D"),
        (f"{n} x K", lambda f=f: f(W, np.zeros((2, 300), np.float32)), r"K=300 is not a multiple of 256"),
        (f"{n} K mismatch", lambda f=f: f(W, np.zeros((2, 768), np.float32)), r"K mismatch: x has K=768 but weight rows hold 2 blocks"),
        (f"{n} q8 nb", lambda f=f: f(W[:, :56], Q), r"number of blocks mismatch"),
        (f"{n} q8 ndim", lambda f=f: f(W, Q[0]), r"\[n_tokens, nb\]"),
        (f"{n} x nan", lambda f=f: f(W, x_nan()), r"non-finite"),
    ]

for f in ID_GEMMS:
    n = f.__name__
    CASES += [
        (f"{n} w ndim", lambda f=f: f(W, X, IDS), r"w must be 3-D"),
        (f"{n} id high", lambda f=f: f(W3, X, np.array([[0, 3], [1, 1]], np.int32)), r"ids\[0, 1\] = 3 is outside \[-1, 3\)"),
        (f"{n} id low", lambda f=f: f(W3, X, np.array([[0, 1], [-2, 1]], np.int32)), r"ids\[1, 0\] = -2 is outside"),
        (f"{n} ids dtype", lambda f=f: f(W3, X, IDS.astype(np.int64)), r"ids must have dtype int32"),
        (f"{n} ids ndim", lambda f=f: f(W3, X, IDS[0]), r"ids must be 2-D"),
        (f"{n} ids tokens", lambda f=f: f(W3, X, IDS[:1]), r"ids has 1 rows but x has 2 tokens"),
        (f"{n} K mismatch", lambda f=f: f(W3[:, :, :56], X, IDS), r"K mismatch"),
    ]

for f in MOES:
    n = f.__name__
    CASES += [
        (f"{n} act", lambda f=f: f(W3, W3, X, IDS, "relu"), r"unknown act 'relu'"),
        (f"{n} gate shape", lambda f=f: f(W3, W3[:, :3], X, IDS, "silu"), r"w_up has shape \(3, 4, 112\) but w_gate has shape \(3, 3, 112\)"),
        (f"{n} gate dtype", lambda f=f: f(W3, W3.view(np.int8), X, IDS, "gelu"), r"w_gate must have dtype uint8"),
        (f"{n} ids", lambda f=f: f(W3, W3, X, IDS + 5, "silu"), r"ids\[0, 0\] = 5 is outside"),
        (f"{n} up bytes", lambda f=f: f(W3[..., :60], W3[..., :60], X, IDS, "silu"), r"w_up row length 60"),
    ]


@pytest.mark.parametrize("call, pattern", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_raises_value_error(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call()


def test_good_inputs_of_the_cases_work():
    # The fixtures above are valid apart from the one thing each case breaks.
    R.mul_mat(W, X), R.mul_mat(W, Q), R.mul_mat_id(W3, X, IDS)
    R.moe_up_gate(W3, W3, X, IDS, "silu"), R.IQ1MFields(F.grid_index, F.delta_negative, F.scale, F.d_bits)
