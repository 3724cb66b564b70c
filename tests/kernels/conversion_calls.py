"""Run in a subprocess by test_conversions.py: applies the library's dequantize, Q8_K
quantizer and activations to the arrays of IN.npz and writes the results to OUT.npz."""
import sys

import numpy as np

from harness.targets.libiq1m import Library

lib = Library(sys.argv[1])
with np.load(sys.argv[2]) as inputs:
    results = {
        "dequantize": lib.dequantize(inputs["blocks"]),
        "prepack": lib.prepack(inputs["blocks"], 256).reshape(-1, 80),
        "q8k": lib.quantize_q8k(inputs["x"]),
        "silu": lib.activation("silu", inputs["act_in"]),
        "gelu": lib.activation("gelu", inputs["act_in"]),
        # one element per call: the scalar definition, which a SIMD ISA runs only for the tail
        **{f"{act} one at a time": np.concatenate([lib.activation(act, x[None]) for x in inputs["act_ties"]])
           for act in ("silu", "gelu")},
    }
np.savez(sys.argv[3], **results)
