"""The library's dequantize, prepack, Q8_K quantizer and activation entry points, bit for bit
against the reference, on inputs that cover every special case at once (run in a subprocess)."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import reference
from harness import strategies as hs
from harness.compare import bits_equal
from harness.targets import sanitizer_environment


def _blocks(rng, n):
    bits = hs.typical_scale_bits(rng, n)
    specials = np.concatenate(list(hs.SPECIAL_SCALES.values()))
    bits[: len(specials)] = specials
    bits[len(specials):2000] = rng.integers(0, 2**16, 2000 - len(specials))  # every fp16 class
    fields = reference.IQ1MFields(grid_index=rng.integers(0, 2048, (n, 32), dtype=np.uint16),
                                  delta_negative=rng.random((n, 32)) < 0.5,
                                  scale=rng.integers(0, 8, (n, 16), dtype=np.uint8), d_bits=bits)
    return reference.encode_fields(fields)


def _activation_rows(rng):
    kinds = [hs.activation_values(kind, rng, 16, 1024) for kind in hs.ACTIVATION_KINDS]
    return np.concatenate(kinds).astype(np.float32)


def _activation_ties():
    """Both functions' rounding edges (harness/act_edges.py)."""
    return np.concatenate([hs.rounding_edge_inputs(act) for act in ("silu", "gelu")])


def _activation_inputs(rng):
    patterns = rng.integers(0, 2**32, 200_000, dtype=np.uint64).astype(np.uint32).view(np.float32)
    edges = np.float32([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, -1e-45, 88.7, -88.7, -104.0, 10.0, -10.2])
    return np.concatenate([patterns, edges, np.linspace(-120, 40, 50_001, dtype=np.float32), _activation_ties()])


@pytest.fixture(scope="module")
def library_results(iq1m_runner, tmp_path_factory):
    rng = np.random.default_rng(20261126)
    inputs = {"blocks": _blocks(rng, 8000), "x": _activation_rows(rng), "act_in": _activation_inputs(rng),
              "act_ties": _activation_ties()}
    tmp = tmp_path_factory.mktemp("conversions")
    np.savez(tmp / "in.npz", **inputs)
    env = dict(os.environ, **sanitizer_environment(iq1m_runner.variant))
    proc = subprocess.run([sys.executable, str(Path(__file__).with_name("conversion_calls.py")),
                           str(iq1m_runner.library), str(tmp / "in.npz"), str(tmp / "out.npz")],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with np.load(tmp / "out.npz") as out:
        return inputs, {k: out[k] for k in out.files}


def test_dequantize_matches_reference(library_results):
    inputs, out = library_results
    assert bits_equal(out["dequantize"], reference.dequantize(inputs["blocks"])).all()


def test_prepack_matches_reference(library_results):
    inputs, out = library_results
    assert np.array_equal(out["prepack"], reference.prepack(inputs["blocks"]))


def test_prepack_reference_keeps_every_weight():
    """The prepacked encoding read back field by field gives the block's weights: lossless."""
    rng = np.random.default_rng(7)
    blocks = _blocks(rng, 3000)
    pp = reference.prepack(blocks)
    w, _, _ = reference.weight_integers(blocks)
    k = np.arange(256)
    grid = ((pp[:, k % 64] >> (2 * (k // 64))) & 3).astype(np.int16) - 1
    plus = (pp[:, 64 + (k // 8) // 8] >> ((k // 8) % 8)) & 1
    assert np.array_equal(8 * grid + np.where(plus == 1, 1, -1), w)
    assert np.array_equal(pp[:, 68:76], blocks[:, 48:56]) and not pp[:, 76:].any()


def test_q8k_bytes_match_reference(library_results):
    inputs, out = library_results
    expected = reference.q8k_to_bytes(reference.quantize_q8k(inputs["x"]))
    assert out["q8k"].shape == expected.shape and np.array_equal(out["q8k"], expected)


@pytest.mark.parametrize("act", ["silu", "gelu"])
def test_activation_matches_reference(library_results, act):
    inputs, out = library_results
    canonical = reference.ACTIVATIONS[act][0](inputs["act_in"])
    assert bits_equal(out[act], canonical).all()


@pytest.mark.parametrize("act", ["silu", "gelu"])
def test_scalar_activation_matches_reference_at_the_rounding_edges(library_results, act):
    """Called one element at a time, the library runs its scalar definition of the
    activation (the SIMD kernels take whole vectors only), which every ISA uses for its
    tail: it must give the contract's bits exactly where the smallest deviation shows."""
    inputs, out = library_results
    expected = reference.ACTIVATIONS[act][0](inputs["act_ties"])
    assert bits_equal(out[f"{act} one at a time"], expected).all()
