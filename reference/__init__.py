"""Independent numpy reference of the IQ1_M kernels (docs/numerics.md).

Pure functions of numpy arrays; depends on numpy only.
"""
from .activations import (ACT_MAX_SLOPE, ACT_MAX_ULP, ACTIVATIONS, exp_nonpos, gelu, gelu_exact,
                          silu, silu_exact)
from .bounds import within_bound
from .gemm import (moe_up_gate, moe_up_gate_bound, moe_up_gate_exact, mul_mat, mul_mat_bound,
                   mul_mat_exact, mul_mat_id, mul_mat_id_bound, mul_mat_id_exact)
from .grid_data import IQ1S_GRID
from .iq1m import (IQ1M_BLOCK_BYTES, PREPACKED_BLOCK_BYTES, QK_K, IQ1MFields, as_blocks,
                   decode_fields, dequantize, encode_fields, prepack, weight_integers)
from .q8k import (Q8K_BLOCK_BYTES, Q8KBlocks, dequantize_q8k, q8k_from_bytes, q8k_to_bytes,
                  quantize_q8k)

__all__ = [
    "ACT_MAX_SLOPE", "ACT_MAX_ULP", "ACTIVATIONS", "exp_nonpos", "gelu", "gelu_exact", "silu",
    "silu_exact", "within_bound", "moe_up_gate", "moe_up_gate_bound", "moe_up_gate_exact",
    "mul_mat", "mul_mat_bound", "mul_mat_exact", "mul_mat_id", "mul_mat_id_bound",
    "mul_mat_id_exact", "IQ1S_GRID", "IQ1M_BLOCK_BYTES", "QK_K", "IQ1MFields", "as_blocks",
    "decode_fields", "dequantize", "encode_fields", "prepack", "PREPACKED_BLOCK_BYTES",
    "weight_integers", "Q8K_BLOCK_BYTES",
    "Q8KBlocks", "dequantize_q8k", "q8k_from_bytes", "q8k_to_bytes", "quantize_q8k",
]
