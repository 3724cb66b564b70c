"""iq1m-harness: differential testing of IQ1_M GEMM and fused MoE kernels."""

__version__ = "0.1.0"
