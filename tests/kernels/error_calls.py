"""Run in a subprocess by test_library_errors.py: calls the library with invalid (and
edge-case valid) arguments through raw ctypes, so NULL pointers and impossible sizes can
be passed, and prints {name: [status, message]} as JSON. A crash kills only this process."""
import ctypes
import json
import re
import sys

import numpy as np

from harness.targets.libiq1m import Library, COptions

lib = Library(sys.argv[1]).lib
P = ctypes.c_void_p


def ptr(a):
    return a.ctypes.data_as(P)


def opts(n_threads=1, isa=0, threshold=32, fused=1, prepacked=0):
    return ctypes.byref(COptions(n_threads, isa, threshold, fused, prepacked))


K, ROWS, T = 256, 3, 2
w = np.zeros((2, ROWS, 56), np.uint8)
x = np.ones((T, K), np.float32)
ids = np.zeros((T, 1), np.int32)
out = np.zeros((T, 1, ROWS), np.float32)
out2 = np.zeros((T, 2, ROWS), np.float32)
bad_x = x.copy()
bad_x[1, 7] = np.nan
inf_x = x.copy()
inf_x[0, 255] = np.inf
first_x = x.copy()
first_x[0, 0] = -np.inf  # the first element: an off-by-one in the scan misses it
# The library skips clean 64-float chunks: values that are not powers of two (whose bits an
# or-mask test would mistake for an exponent), a NaN alone in its chunk with only the lowest
# mantissa bit set, later ones after it; and a chunk with nothing finite in it.
later_x = np.full((T, K), 1.5, np.float32)
later_x.view(np.uint32)[1, 70] = 0x7F800001
later_x[1, [130, 200]] = [-np.inf, np.nan]
chunk_x = np.full((T, K), 1.5, np.float32)
chunk_x[0, :64] = np.nan
q8 = np.zeros((1, 292), np.uint8)
pp = np.zeros((2, ROWS, 80), np.uint8)
row = np.zeros(K, np.float32)

def thread_limit() -> int:
    """The largest n_threads the library accepts, as its own error message states it."""
    lib.iq1m_mul_mat(ptr(w), ROWS, K, ptr(x), T, ptr(out), opts(n_threads=10**6))
    return int(re.search(rb"must be in \[1, (\d+)\]", lib.iq1m_last_error()).group(1))


def after_an_error(call):
    lib.iq1m_mul_mat(ptr(w), ROWS, 300, ptr(x), T, ptr(out), opts())
    assert lib.iq1m_last_error()
    return call()


calls = {
    "mul_mat K not multiple": lambda: lib.iq1m_mul_mat(ptr(w), ROWS, 300, ptr(x), T, ptr(out), opts()),
    "mul_mat K zero": lambda: lib.iq1m_mul_mat(ptr(w), ROWS, 0, ptr(x), T, ptr(out), opts()),
    "mul_mat rows negative": lambda: lib.iq1m_mul_mat(ptr(w), -1, K, ptr(x), T, ptr(out), opts()),
    "mul_mat tokens negative": lambda: lib.iq1m_mul_mat(ptr(w), ROWS, K, ptr(x), -2, ptr(out), opts()),
    "mul_mat null weights": lambda: lib.iq1m_mul_mat(None, ROWS, K, ptr(x), T, ptr(out), opts()),
    "mul_mat null x": lambda: lib.iq1m_mul_mat(ptr(w), ROWS, K, None, T, ptr(out), opts()),
    "mul_mat null out": lambda: lib.iq1m_mul_mat(ptr(w), ROWS, K, ptr(x), T, None, opts()),
    "mul_mat nan activation": lambda: lib.iq1m_mul_mat(ptr(w), ROWS, K, ptr(bad_x), T, ptr(out), opts()),
    "mul_mat inf activation": lambda: lib.iq1m_mul_mat(ptr(w), ROWS, K, ptr(inf_x), T, ptr(out), opts()),
    "threads zero": lambda: lib.iq1m_mul_mat(ptr(w), ROWS, K, ptr(x), T, ptr(out), opts(n_threads=0)),
    "threads too many": lambda: lib.iq1m_mul_mat(ptr(w), ROWS, K, ptr(x), T, ptr(out), opts(n_threads=100000)),
    "isa unknown": lambda: lib.iq1m_mul_mat(ptr(w), ROWS, K, ptr(x), T, ptr(out), opts(isa=9)),
    "isa negative": lambda: lib.iq1m_mul_mat(ptr(w), ROWS, K, ptr(x), T, ptr(out), opts(isa=-1)),
    "threshold negative": lambda: lib.iq1m_mul_mat(ptr(w), ROWS, K, ptr(x), T, ptr(out), opts(threshold=-1)),
    "fused not boolean": lambda: lib.iq1m_mul_mat(ptr(w), ROWS, K, ptr(x), T, ptr(out), opts(fused=2)),
    "prepacked not boolean": lambda: lib.iq1m_mul_mat(ptr(w), ROWS, K, ptr(x), T, ptr(out), opts(prepacked=3)),
    "prepack K not multiple": lambda: lib.iq1m_prepack(ptr(w), ROWS, 100, ptr(pp)),
    "prepack rows negative": lambda: lib.iq1m_prepack(ptr(w), -1, K, ptr(pp)),
    "prepack null weights": lambda: lib.iq1m_prepack(None, ROWS, K, ptr(pp)),
    "prepack null out": lambda: lib.iq1m_prepack(ptr(w), ROWS, K, None),
    "prepack sizes overflow": lambda: lib.iq1m_prepack(ptr(w), 2**60, K, ptr(pp)),
    "prepack no rows, null pointers": lambda: lib.iq1m_prepack(None, 0, K, None),
    "ids too large": lambda: lib.iq1m_mul_mat_id(ptr(w), 2, ROWS, K, ptr(x), T, ptr(np.array([[0], [2]], np.int32)), 1,
                                                 ptr(out), opts()),
    "ids below -1": lambda: lib.iq1m_mul_mat_id(ptr(w), 2, ROWS, K, ptr(x), T, ptr(np.array([[-2], [0]], np.int32)),
                                                1, ptr(out), opts()),
    "experts zero": lambda: lib.iq1m_mul_mat_id(ptr(w), 0, ROWS, K, ptr(x), T, ptr(ids), 1, ptr(out), opts()),
    "top_k zero": lambda: lib.iq1m_mul_mat_id(ptr(w), 2, ROWS, K, ptr(x), T, ptr(ids), 0, ptr(out), opts()),
    "null ids": lambda: lib.iq1m_mul_mat_id(ptr(w), 2, ROWS, K, ptr(x), T, None, 1, ptr(out), opts()),
    "moe unknown act": lambda: lib.iq1m_moe_up_gate(ptr(w), ptr(w), 2, ROWS, K, ptr(x), T, ptr(ids), 1, 7, ptr(out),
                                                    opts()),
    "moe null gate": lambda: lib.iq1m_moe_up_gate(ptr(w), None, 2, ROWS, K, ptr(x), T, ptr(ids), 1, 0, ptr(out),
                                                  opts()),
    "moe null up": lambda: lib.iq1m_moe_up_gate(None, ptr(w), 2, ROWS, K, ptr(x), T, ptr(ids), 1, 0, ptr(out),
                                                opts()),
    "moe nan activation": lambda: lib.iq1m_moe_up_gate(ptr(w), ptr(w), 2, ROWS, K, ptr(bad_x), T, ptr(ids), 1, 1,
                                                       ptr(out), opts()),
    "activation unknown": lambda: lib.iq1m_activation(3, ptr(x), ptr(out), 4),
    "activation negative n": lambda: lib.iq1m_activation(0, ptr(x), ptr(out), -1),
    "activation null": lambda: lib.iq1m_activation(0, None, ptr(out), 4),
    "quantize K not multiple": lambda: lib.iq1m_quantize_q8_K(ptr(x), ptr(q8), 100),
    "quantize nan": lambda: lib.iq1m_quantize_q8_K(ptr(bad_x[1]), ptr(q8), 256),
    "quantize inf first": lambda: lib.iq1m_quantize_q8_K(ptr(first_x[0]), ptr(q8), 256),
    "mul_mat inf first": lambda: lib.iq1m_mul_mat(ptr(w), ROWS, K, ptr(first_x), T, ptr(out), opts()),
    "mul_mat first of several non-finite": lambda: lib.iq1m_mul_mat(ptr(w), ROWS, K, ptr(later_x), T, ptr(out),
                                                                    opts()),
    "mul_mat a chunk of nan": lambda: lib.iq1m_mul_mat(ptr(w), ROWS, K, ptr(chunk_x), T, ptr(out), opts()),
    "quantize null": lambda: lib.iq1m_quantize_q8_K(None, ptr(q8), 256),
    "dequantize K not multiple": lambda: lib.iq1m_dequantize_iq1_m(ptr(w), ptr(out), 257),
    "dequantize null": lambda: lib.iq1m_dequantize_iq1_m(None, ptr(out), 256),
    # n_tokens * top_k * rows = 2^61: every factor and pair is fine, the output size is not
    "sizes overflow": lambda: lib.iq1m_mul_mat_id(ptr(w), 2, 2**21, K, ptr(x), 2**20, ptr(ids), 2**20, ptr(out),
                                                  opts()),
    "mul_mat sizes overflow": lambda: lib.iq1m_mul_mat(ptr(w), 2**62, K, ptr(x), 2**8, ptr(out), opts()),
    # the largest size that fits: a x b == INT64_MAX - 7 does not overflow (the NULL is what fails)
    "prepack largest size, null pointers": lambda: lib.iq1m_prepack(None, (2**63 - 1) // 80, K, None),
    # n_rows x (blocks x 80 bytes) overflows where n_rows x (blocks + 80) would not
    "prepack sizes overflow, wide K": lambda: lib.iq1m_prepack(None, 2**50, 1000 * K, None),
    # experts x rows x blocks x 56 bytes overflows where blocks / 56 or blocks + 56 would not
    "weight bytes overflow, no tokens": lambda: lib.iq1m_mul_mat_id(None, 2**20, 1, 2**48, None, 0, None, 1, None,
                                                                    opts()),
    # the plain GEMM's weights are one expert's: rows x 56 bytes at the limit fits, and
    # overflows are found with no tokens to compute
    "mul_mat largest weights, null pointers": lambda: lib.iq1m_mul_mat(None, (2**63 - 1) // 56, K, None, 0, None,
                                                                       opts()),
    "mul_mat weight bytes overflow, no tokens": lambda: lib.iq1m_mul_mat(None, 2**58, K, None, 0, None, opts()),
    "one token, nan activation": lambda: lib.iq1m_mul_mat(ptr(w), ROWS, K, ptr(bad_x[1]), 1, ptr(out), opts()),
    # tokens x top_k fits, times rows it does not (and wraps to exactly 0 in 64 bits)
    "tokens x top_k x rows overflows": lambda: lib.iq1m_mul_mat_id(None, 1, 2**24, K, None, 2**20, None, 2**20, None,
                                                                   opts()),
    # the output's element count times 8 bytes: (2^60 - 1) x 8 fits, 2^60 x 8 does not
    "largest output, null pointers": lambda: lib.iq1m_mul_mat(None, 225225, K, None, (2**60 - 1) // 225225, None,
                                                              opts()),
    "output one element too large": lambda: lib.iq1m_mul_mat(None, 2**20, K, None, 2**40, None, opts()),
    # top_k > 1: the id checked is token t's slot s, not one at t / top_k
    "ids too large, second slot of the second token": lambda: lib.iq1m_mul_mat_id(
        ptr(w), 2, ROWS, K, ptr(x), T, ptr(np.array([[0, 1], [1, 5]], np.int32)), 2, ptr(out2), opts()),
    "top_k zero, one token": lambda: lib.iq1m_mul_mat_id(ptr(w), 2, ROWS, K, ptr(x), 1, ptr(ids), 0, ptr(out), opts()),
    # one row, one token: the smallest sizes whose pointers are still needed
    "one row, null weights": lambda: lib.iq1m_mul_mat(None, 1, K, ptr(x), T, ptr(out), opts()),
    "one token, null x": lambda: lib.iq1m_mul_mat_id(ptr(w), 2, ROWS, K, None, 1, ptr(ids), 1, ptr(out), opts()),
    "one token, null out": lambda: lib.iq1m_mul_mat(ptr(w), ROWS, K, ptr(x), 1, None, opts()),
    "one row and token, null out": lambda: lib.iq1m_mul_mat(ptr(w), 1, K, ptr(x), 1, None, opts()),
    "one token, null ids": lambda: lib.iq1m_mul_mat_id(ptr(w), 2, ROWS, K, ptr(x), 1, None, 1, ptr(out), opts()),
    "one token, expert id too large": lambda: lib.iq1m_mul_mat_id(ptr(w), 2, ROWS, K, ptr(x), 1,
                                                                  ptr(np.array([[2]], np.int32)), 1, ptr(out), opts()),
    "moe expert id too large": lambda: lib.iq1m_moe_up_gate(ptr(w), ptr(w), 2, ROWS, K, ptr(x), T,
                                                            ptr(np.array([[0], [2]], np.int32)), 1, 0, ptr(out), opts()),
    "moe one row, null up": lambda: lib.iq1m_moe_up_gate(None, ptr(w), 2, 1, K, ptr(x), T, ptr(ids), 1, 0, ptr(out),
                                                         opts()),
    "moe one row, null gate": lambda: lib.iq1m_moe_up_gate(ptr(w), None, 2, 1, K, ptr(x), T, ptr(ids), 1, 0,
                                                           ptr(out), opts()),
    # valid edge cases
    "threads at the limit": lambda: lib.iq1m_mul_mat(ptr(w), ROWS, K, ptr(x), T, ptr(out),
                                                     opts(n_threads=thread_limit())),
    "top_k zero, no tokens": lambda: lib.iq1m_mul_mat_id(ptr(w), 2, ROWS, K, None, 0, None, 0, None, opts()),
    "dequantize K zero, null pointers": lambda: lib.iq1m_dequantize_iq1_m(None, None, 0),
    "quantize K zero, null pointers": lambda: lib.iq1m_quantize_q8_K(None, None, 0),
    # a call that succeeds clears the error of the call before it
    "quantize after an error": lambda: after_an_error(lambda: lib.iq1m_quantize_q8_K(ptr(x), ptr(q8), 256)),
    "dequantize after an error": lambda: after_an_error(lambda: lib.iq1m_dequantize_iq1_m(ptr(w), ptr(row), 256)),
    "prepack after an error": lambda: after_an_error(lambda: lib.iq1m_prepack(ptr(w), ROWS, K, ptr(pp))),
    "activation after an error": lambda: after_an_error(lambda: lib.iq1m_activation(0, ptr(x), ptr(out), 4)),
    "mul_mat_id after an error": lambda: after_an_error(lambda: lib.iq1m_mul_mat_id(ptr(w), 2, ROWS, K, ptr(x), T,
                                                                                    ptr(ids), 1, ptr(out), opts())),
    "moe after an error": lambda: after_an_error(lambda: lib.iq1m_moe_up_gate(ptr(w), ptr(w), 2, ROWS, K, ptr(x), T,
                                                                              ptr(ids), 1, 0, ptr(out), opts())),
    "moe zero rows, null weights and out": lambda: lib.iq1m_moe_up_gate(None, None, 2, 0, K, ptr(x), T, ptr(ids), 1, 0,
                                                                        None, opts()),
    "mul_mat after an error": lambda: after_an_error(lambda: lib.iq1m_mul_mat(ptr(w), ROWS, K, ptr(x), T, ptr(out),
                                                                               opts())),
    "zero tokens, null x and out": lambda: lib.iq1m_mul_mat(ptr(w), ROWS, K, None, 0, None, opts()),
    "zero rows, null weights and out": lambda: lib.iq1m_mul_mat(None, 0, K, ptr(x), T, None, opts()),
    "zero rows, null weights": lambda: lib.iq1m_mul_mat(None, 0, K, ptr(x), T, ptr(out), opts()),
    "null options mean defaults": lambda: lib.iq1m_mul_mat(ptr(w), ROWS, K, ptr(x), T, ptr(out), None),
    "moe zero tokens": lambda: lib.iq1m_moe_up_gate(ptr(w), ptr(w), 2, ROWS, K, None, 0, None, 1, 0, None, opts()),
    "activation empty": lambda: lib.iq1m_activation(1, None, None, 0),
}
results = {}
for name, call in calls.items():
    status = call()
    results[name] = [status, lib.iq1m_last_error().decode()]
print(json.dumps(results))
