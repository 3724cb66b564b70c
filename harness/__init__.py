"""iq1m-harness: differential testing of IQ1_M GEMM and fused MoE kernels."""

__version__ = "0.1.0"

from ._blas import single_threaded_blas as _single_threaded_blas

_single_threaded_blas()  # the reference's small products: see harness/_blas.py
