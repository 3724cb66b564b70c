"""Fault builds themselves: every known point compiles (all at once, warning-free) and
reports itself, and points listed together are all planted (kernels/FAULTS.md)."""
import numpy as np
import pytest

import reference
from harness.build import build, known_faults

from harness.targets.libiq1m import KernelOptions, Library
from harness.strategies import typical_scale_bits

pytestmark = pytest.mark.slow


def test_every_fault_point_builds_at_once_without_warnings():
    everything = ",".join(known_faults())
    lib = build(f"fault:{everything}")
    log = lib.with_name("build.log").read_text(errors="replace")
    assert not [line for line in log.splitlines() if "warning:" in line]
    assert f" fault={everything} " in Library(lib).build_info()


def _weights(rng, n_experts, rows, k):
    n = n_experts * rows * k // reference.QK_K
    fields = reference.IQ1MFields(grid_index=rng.integers(0, 2048, (n, 32), dtype=np.uint16),
                                  delta_negative=rng.random((n, 32)) < 0.5,
                                  scale=rng.integers(0, 8, (n, 16), dtype=np.uint8),
                                  d_bits=typical_scale_bits(rng, n))
    return reference.encode_fields(fields).reshape(n_experts, rows, -1)


def test_two_listed_points_are_both_planted():
    """drop_tail_rows zeroes rows 16..18 of every slot, duplicate_expert the second slot of
    a token that lists its expert twice; everything else stays the contract's value."""
    lib = Library(build("fault:drop_tail_rows,duplicate_expert"))
    assert " fault=drop_tail_rows,duplicate_expert " in lib.build_info()
    rng = np.random.default_rng(7)
    rows, k = 19, 512
    w = _weights(rng, 3, rows, k)
    x = rng.standard_normal((4, k)).astype(np.float32)
    ids = np.array([[0, 1], [2, 2], [1, -1], [0, 2]], dtype=np.int32)
    got = lib.mul_mat_id(w, x, ids, KernelOptions(isa="scalar"))
    want = reference.mul_mat_id(w, x, ids)
    assert np.any(want[:, :, 16:] != 0) and np.any(want[1, 1] != 0)
    want[:, :, 16:] = 0.0  # drop_tail_rows
    want[1, 1] = 0.0       # duplicate_expert: token 1 lists expert 2 twice
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
