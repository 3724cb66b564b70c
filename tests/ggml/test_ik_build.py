"""ik_llama.cpp at cc51044e7 (the parent of the fix of its issue 626), a real third-party
build: what the harness reports about it, each fact confirmed by calling the library
directly (a small C program, or ctypes in a child process) as well as through the harness.

- the seed's bug: the fused up+gate op aborts (`ggml.c:15254: fatal error`) whenever an
  expert gets 1..31 (token, slot) pairs; the unfused mul_mat_id on the same inputs works;
- a second abort on valid input: >= 32 tokens and a row count that is not a multiple of 8
  (`GGML_ASSERT(Nx%num_rows == 0) failed`);
- a silent wrong result: an expert named twice by one token overruns its row list;
- and what is not a bug: the 296-byte Q8_K block, -1 as "unused slot", the lossy int8
  repack at >= 32 tokens (bounded by harness.targets.requantized).
"""
import ctypes  # noqa: F401  (used in the child snippets)
import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from harness import strategies as hs
from harness.cases import Case, load_case
from harness.errors import KernelCrash, MemoryOverrun, Mismatch, UnwrittenOutput
from harness.repro import write_script
from harness.runner import Runner
from harness.targets import GgmlTarget
from harness.targets.ggml import no_debugger_dir
from harness.targets.libggml import probe_row
from harness.targets.requantized import repack_q8_k_r8

SEED_ABORT = "ggml.c:15254: "
ROWS_ASSERT = "GGML_ASSERT(Nx%num_rows == 0) failed"

pytestmark = pytest.mark.ik

SEED_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "ggml.h"

/* seed OP TOKENS ROWS [plan]: one expert of zero IQ1_M weights, TOKENS tokens routed to it. */
int main(int argc, char **argv) {
    const char *op = argv[1];
    int n = atoi(argv[2]), rows = atoi(argv[3]), k = 256;
    struct ggml_init_params params = {256u << 20, NULL, false};
    struct ggml_context *ctx = ggml_init(params);
    struct ggml_tensor *up = ggml_new_tensor_3d(ctx, GGML_TYPE_IQ1_M, k, rows, 1);
    struct ggml_tensor *gate = ggml_new_tensor_3d(ctx, GGML_TYPE_IQ1_M, k, rows, 1);
    struct ggml_tensor *x = ggml_new_tensor_3d(ctx, GGML_TYPE_F32, k, 1, n);
    struct ggml_tensor *ids = ggml_new_tensor_2d(ctx, GGML_TYPE_I32, 1, n);
    memset(up->data, 0, ggml_nbytes(up));
    memset(gate->data, 0, ggml_nbytes(gate));
    memset(ids->data, 0, ggml_nbytes(ids));
    for (int i = 0; i < k * n; i++) ((float *)x->data)[i] = 1.0f;
    struct ggml_tensor *out;
    if (!strcmp(op, "fused")) out = ggml_moe_up_gate(ctx, up, gate, x, ids, GGML_UNARY_OP_SILU);
    else if (!strcmp(op, "mul_mat_id")) out = ggml_mul_mat_id(ctx, up, x, ids);
    else out = ggml_mul_mat(ctx, ggml_view_2d(ctx, up, k, rows, up->nb[1], 0), ggml_reshape_2d(ctx, x, k, n));
    struct ggml_cgraph *graph = ggml_new_graph(ctx);
    ggml_build_forward_expand(graph, out);
    if (argc > 4) {  /* "plan": the work buffer ggml plans, then 1 MiB of canary after it */
        struct ggml_cplan plan = ggml_graph_plan(graph, 1);
        size_t canary = 1u << 20, stray = 0;
        unsigned char *buf = malloc(plan.work_size + canary);
        memset(buf, 0xA5, plan.work_size + canary);
        plan.work_data = buf;
        ggml_graph_compute(graph, &plan);
        for (size_t i = plan.work_size; i < plan.work_size + canary; i++) stray += buf[i] != 0xA5;
        printf("planned %zu stray %zu\n", plan.work_size, stray);
        return 0;
    }
    int status = ggml_graph_compute_with_ctx(ctx, graph, 2);
    printf("computed %s with %d tokens: status %d\n", op, n, status);
    return status;
}
"""


def _env() -> dict:
    """No debugger on PATH: these trees fork gdb on an abort (slow, and it writes to fd 1)."""
    return dict(os.environ, PATH=f"{no_debugger_dir()}{os.pathsep}{os.environ.get('PATH', '')}")


@pytest.fixture(scope="module")
def seed_program(ik_lib_dir, tmp_path_factory):
    if shutil.which("gcc") is None:
        pytest.skip("needs gcc")
    folder = tmp_path_factory.mktemp("seed")
    (folder / "seed.c").write_text(SEED_C)
    include = os.path.join(os.path.dirname(ik_lib_dir), "ggml", "include")
    subprocess.run(["gcc", "-std=c11", "-o", str(folder / "seed"), str(folder / "seed.c"), f"-I{include}",
                    f"-L{ik_lib_dir}", "-lggml", f"-Wl,-rpath,{ik_lib_dir}"], check=True)
    return str(folder / "seed")


def _run_seed(program, *args):
    return subprocess.run([program, *map(str, args)], capture_output=True, text=True, timeout=120, env=_env())


def _snippet(ik_lib_dir, code: str) -> dict:
    """Run ctypes code against the library in a child process; it prints one JSON object."""
    prelude = textwrap.dedent(f"""
        import ctypes, json, numpy as np
        lib = ctypes.CDLL({os.path.join(ik_lib_dir, 'libggml.so')!r})
        P = ctypes.c_void_p
        class InitParams(ctypes.Structure):
            _fields_ = [("mem_size", ctypes.c_size_t), ("mem_buffer", P), ("no_alloc", ctypes.c_bool)]
        lib.ggml_init.restype, lib.ggml_init.argtypes = P, [InitParams]
        lib.ggml_init(InitParams(1 << 20, None, False))  # fills the fp16 tables, as any caller must first
    """)
    proc = subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=120, env=_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def ik_runner(ik_lib_dir, tmp_path_factory):
    runner = Runner(GgmlTarget(ik_lib_dir), tmp_path_factory.mktemp("ik"), timeout=60)
    yield runner
    runner.close()


# -- the seed's bug -------------------------------------------------------------------------

def test_seed_abort_confirmed_directly(seed_program):
    """Called from C: the fused op aborts with 5 tokens on an expert, and runs with 32; the
    unfused mul_mat_id with 5 tokens runs."""
    small = _run_seed(seed_program, "fused", 5, 8)
    assert small.returncode == -6 and SEED_ABORT in small.stderr and "fatal error" in small.stderr, small.stderr
    assert _run_seed(seed_program, "fused", 32, 8).returncode == 0
    assert _run_seed(seed_program, "mul_mat_id", 5, 8).returncode == 0


def test_harness_reports_the_seed_abort_and_replays_it(ik_runner, tmp_path):
    case = hs.pinned_moe_case("moe_up_gate", [5], ["auto"], rows=8, k=256, top_k=1)
    with pytest.raises(KernelCrash) as info:
        ik_runner.check(case)
    failure = info.value
    assert failure.signal_name == "SIGABRT" and SEED_ABORT in failure.stderr_tail, failure.stderr_tail
    assert "gdb" not in failure.stderr_tail.lower().replace("iq1m-harness: debugger disabled", "")
    saved = load_case(failure.case_path)
    assert saved.expert_token_counts().tolist() == [5] and saved.target["name"] == "ggml"
    script = write_script(failure.case_path, failure, saved.describe(), ik_runner.target.label(), "seed")
    on_ik = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert on_ik.returncode == 1 and "fatal error" in on_ik.stdout, on_ik.stdout + on_ik.stderr
    on_ours = subprocess.run([sys.executable, str(script), "--target", "kernels"], capture_output=True, text=True,
                             timeout=300)
    assert on_ours.returncode == 0, on_ours.stdout + on_ours.stderr


# -- a second abort on valid input -----------------------------------------------------------

def test_rows_not_a_multiple_of_8_abort_at_32_tokens(seed_program, ik_runner):
    direct = _run_seed(seed_program, "mul_mat", 32, 12)
    assert direct.returncode == -6 and ROWS_ASSERT in direct.stderr, direct.stderr
    assert _run_seed(seed_program, "mul_mat", 31, 12).returncode == 0
    assert _run_seed(seed_program, "mul_mat", 32, 16).returncode == 0
    base = hs.pinned_moe_case("mul_mat_id", [32], ["auto"], rows=12, k=256, top_k=1)
    case = Case("mul_mat", {"w": base.arrays["w"][0], "x": base.arrays["x"]}, base.runs)
    with pytest.raises(KernelCrash) as info:
        ik_runner.check(case)
    assert ROWS_ASSERT in info.value.stderr_tail


# -- a silent wrong result --------------------------------------------------------------------

def test_repeated_expert_overruns_its_row_list(ik_lib_dir, ik_runner):
    """ids [[0, 0], [1, 0]]: expert 0 gets 3 (token, slot) pairs for 2 tokens. Called
    directly, token 1's slot 1 holds expert 1's product instead of expert 0's, and token 1's
    slot 0 (expert 1) is never written: the harness, which fills the result tensor with a
    canary first, reports that slot as unwritten (without the canary it held whatever was in
    ggml's context, and was a result beyond every bound, not the repack's by-design deviation)."""
    rng = np.random.default_rng(3)
    case = hs.pinned_moe_case("mul_mat_id", [2, 1], ["auto"], rows=8, k=256, top_k=1, seed=3)
    w = case.arrays["w"]
    x = rng.standard_normal((2, 256)).astype(np.float32)
    ids = np.array([[0, 0], [1, 0]], dtype=np.int32)
    found = _snippet(ik_lib_dir, f"""
        from harness.targets.libggml import GgmlLibrary
        from harness.options import KernelOptions
        g = GgmlLibrary({ik_lib_dir!r})
        w = np.frombuffer(bytes.fromhex({w.tobytes().hex()!r}), np.uint8).reshape({w.shape})
        x = np.frombuffer(bytes.fromhex({x.tobytes().hex()!r}), np.float32).reshape(2, 256)
        both = g.mul_mat_id(w, x, np.array([[0, 0], [1, 0]], np.int32), KernelOptions())
        e0 = g.mul_mat_id(w, x[1:], np.array([[0]], np.int32), KernelOptions())[0, 0]
        e1 = g.mul_mat_id(w, x[1:], np.array([[1]], np.int32), KernelOptions())[0, 0]
        print(json.dumps({{"slot": both[1, 1].tolist(), "e0": e0.tolist(), "e1": e1.tolist()}}))
    """)
    assert found["slot"] == found["e1"] != found["e0"]
    bad = Case("mul_mat_id", {"w": w, "x": x, "ids": ids}, case.runs)
    with pytest.raises(UnwrittenOutput, match=r"\(token, slot, row\)=\(1, 0, 0\)"):
        ik_runner.check(bad)


def test_fused_op_writes_past_its_planned_work_buffer(seed_program, ik_runner):
    """The fused op plans its Q8_K activation buffer from the gate weights' rows, not the
    tokens: with more than 2 x rows x experts tokens it writes past it. Called directly with
    ggml's own plan and a canary after the buffer; the harness sees the same in its pool."""
    import re

    def stray(*args):
        proc = _run_seed(seed_program, *args, "plan")
        assert proc.returncode == 0, proc.stderr
        return int(re.search(r"stray (\d+)", proc.stdout).group(1))

    assert stray("fused", 40, 8) > 0          # 40 tokens > 2 x 8 rows x 1 expert
    assert stray("fused", 40, 32) == 0         # 40 <= 64
    assert stray("mul_mat_id", 40, 8) == 0
    case = hs.pinned_moe_case("moe_up_gate", [40], ["auto"], rows=8, k=256, top_k=1)
    with pytest.raises(MemoryOverrun, match="past the end of the work buffer"):
        ik_runner.check(case)


def test_fused_op_plans_its_work_buffer_from_the_gate_weights(seed_program, ik_runner, monkeypatch):
    """What ik plans for the fused op is twice the Q8_K size of the gate weights' rows (not
    the tokens'), plus the row lists: far more than the activations need when experts are
    many. The harness gives the compute a work context sized from ggml's own plan, so a
    DeepSeek-sized layer (256 experts, K = 7168) runs instead of crashing in ggml_new_object."""
    import re

    def planned(*args):
        proc = _run_seed(seed_program, *args, "plan")
        assert proc.returncode == 0, proc.stderr
        return int(re.search(r"planned (\d+)", proc.stdout).group(1))

    q8k_row, row_lists = 296, 8 + 8 * 40  # one 256-wide Q8_K row; counts of 1 expert + 40 tokens' rows
    assert planned("fused", 40, 64) == 2 * 64 * q8k_row + row_lists
    assert planned("mul_mat_id", 40, 64) == 2 * 40 * q8k_row + row_lists
    counts = [32] + [0] * 255  # no expert below 32 tokens (the seed's abort), rows % 8 == 0
    case = hs.pinned_moe_case("moe_up_gate", counts, ["auto"], rows=24, k=7168, top_k=1)
    monkeypatch.setattr(ik_runner, "batch_check", False)  # its one-token sub-case is the seed's abort
    ik_runner.check(case)  # 2 x 6144 gate rows x 28 blocks x 296 bytes: a 102 MB plan


# -- what is not a bug ------------------------------------------------------------------------

def test_q8k_layout_is_read_from_the_library(ik_lib_dir, ik_runner):
    x, q = probe_row()
    raw = _snippet(ik_lib_dir, f"""
        lib.ggml_type_size.restype = ctypes.c_size_t
        size = lib.ggml_type_size(15)
        x = np.frombuffer(bytes.fromhex({x.tobytes().hex()!r}), np.float32)
        out = np.zeros(size, np.uint8)
        lib.quantize_row_q8_K(x.ctypes.data_as(P), out.ctypes.data_as(P), ctypes.c_int64(256))
        print(json.dumps({{"size": size, "bytes": out.tobytes().hex()}}))
    """)
    block = np.frombuffer(bytes.fromhex(raw["bytes"]), np.uint8)
    assert raw["size"] == 296
    d = block[0:4].view(np.float32)[0]
    quants = block[8:264].view(np.int8)
    assert abs(d) == np.float32(1 / 16) and np.array_equal(quants, np.sign(d) * q)
    assert np.array_equal(block[264:296].view(np.int16), quants.astype(np.int16).reshape(16, 16).sum(axis=1))
    assert ik_runner.hello["ggml"]["q8_K_layout"] == "296 bytes, d@0 qs@8 bsums@264"


def test_unused_slot_is_native_and_kept(ik_lib_dir, ik_runner):
    found = _snippet(ik_lib_dir, f"""
        from harness.targets.libggml import GgmlLibrary
        from harness.options import KernelOptions
        g = GgmlLibrary({ik_lib_dir!r})
        rng = np.random.default_rng(0)
        w = g._probe_weights(rng, (2, 8))
        out = g.mul_mat_id(w, rng.standard_normal((3, 256)).astype(np.float32),
                           np.array([[0], [-1], [1]], np.int32), KernelOptions())
        print(json.dumps({{"zero": bool((out[1] == 0).all()), "used": bool((out[0] != 0).any())}}))
    """)
    assert found == {"zero": True, "used": True}
    assert ik_runner.hello["ggml"]["unused_slot"] is True
    case = hs.pinned_moe_case("mul_mat_id", [3, 2], ["auto"], rows=8, k=256, top_k=1)
    case.arrays["ids"] = np.concatenate([case.arrays["ids"], -np.ones_like(case.arrays["ids"])], axis=1)
    ik_runner.check(case)
    assert (case.arrays["ids"] == -1).sum() == 5  # run as it is: no slot rerouted to expert 0


def test_activation_sum_overflow_gives_nan_on_the_repacked_path(ik_lib_dir, ik_runner):
    """ik's Q8_K block keeps `sum` = d x (sum of the quants) as a float32 (at byte 4); with
    activations near FLT_MAX it is inf, and the Q8_K_R8 path (>= 32 tokens) multiplies it by
    the weights' scale: a zero weight row gives NaN where the exact product is 0, in exactly
    the tokens whose `sum` overflowed (the direct path, below 32 tokens, gives 0). An
    overflow in the target's own order, outside the bound's model: not a failure."""
    case = hs.pinned_moe_case("mul_mat_id", [32], ["auto"], rows=8, k=256, top_k=1, seed=3)
    x = case.arrays["x"].astype(np.float64)
    case.arrays["x"] = (x / np.abs(x).max(axis=1, keepdims=True) * 3.0e38).astype(np.float32)
    case.arrays["w"][0, 3] = 0  # a zero row: every exact product in it is 0
    found = _snippet(ik_lib_dir, f"""
        from harness.targets.libggml import GgmlLibrary
        from harness.options import KernelOptions
        x = np.frombuffer(bytes.fromhex({case.arrays["x"].tobytes().hex()!r}), np.float32).reshape(32, 256)
        w = np.frombuffer(bytes.fromhex({case.arrays["w"][0].tobytes().hex()!r}), np.uint8).reshape(8, 56)
        sums = []
        for row in x:
            block = np.zeros(296, np.uint8)
            lib.quantize_row_q8_K(np.ascontiguousarray(row).ctypes.data_as(P), block.ctypes.data_as(P),
                                  ctypes.c_int64(256))
            sums.append(float(block[4:8].view(np.float32)[0]))
        g = GgmlLibrary({ik_lib_dir!r})
        nan32 = np.isnan(g.mul_mat(w, x, KernelOptions(n_threads=1))[:, 3])
        nan5 = np.isnan(g.mul_mat(w, x[:5], KernelOptions(n_threads=1))[:, 3])
        print(json.dumps({{"inf_sum": np.flatnonzero(~np.isfinite(sums)).tolist(),
                          "nan32": np.flatnonzero(nan32).tolist(), "nan5": int(nan5.sum())}}))
    """)
    assert found["inf_sum"] and found["nan32"] == found["inf_sum"] and found["nan5"] == 0, found
    before = ik_runner.target.stats["unbounded_elements"]
    ik_runner.check(case)
    assert ik_runner.target.stats["unbounded_elements"] > before


def test_repack_model_matches_the_library_converter(ik_lib_dir):
    """harness.targets.requantized's model of the IQ1_M -> Q8_K_R8 conversion equals the
    bytes of the library's own converter (iqk_convert_1bit_q80_r8), lossy blocks included."""
    rng = np.random.default_rng(5)
    w = hs.random_weights(rng, (8,), 512)
    w[:4] = hs.random_weights(rng, (4,), 512)  # and rows with scale code 7 everywhere: lossy
    fields = __import__("reference").decode_fields(w[:4].reshape(-1, 56))
    fields.scale[:] = 7
    w[:4] = __import__("reference").encode_fields(fields).reshape(4, -1)
    found = _snippet(ik_lib_dir, f"""
        w = np.frombuffer(bytes.fromhex({w.tobytes().hex()!r}), np.uint8).reshape(8, 112)
        buf = np.zeros(2 * (16 + 8 * 256), np.uint8)
        convert = getattr(lib, "_Z23iqk_convert_1bit_q80_r8iiPKvmPvi")  # a C++ symbol: bool (int, int, ...)
        convert.restype = ctypes.c_bool
        convert.argtypes = [ctypes.c_int, ctypes.c_int, P, ctypes.c_size_t, P, ctypes.c_int]
        ok = convert(29, 512, w.ctypes.data_as(P), 112, buf.ctypes.data_as(P), 8)
        print(json.dumps({{"ok": bool(ok), "bytes": buf.tobytes().hex()}}))
    """)
    assert found["ok"]
    buf = np.frombuffer(bytes.fromhex(found["bytes"]), np.uint8).reshape(1, 2, 16 + 2048)
    scales = buf[:, :, :16].copy().view(np.float16).astype(np.float32)[0].T       # [row, block]
    quants = buf[:, :, 16:].view(np.int8).reshape(1, 2, 16, 4, 8, 4)               # ib, j, row, b
    quants = quants.transpose(0, 4, 1, 2, 3, 5).reshape(8, 2, 256)
    q, D, dnew, _, _ = repack_q8_k_r8(w)
    assert np.array_equal(q, quants) and np.array_equal(D.view(np.uint32), scales.view(np.uint32))
    assert (dnew[:4] != 1).any()  # the lossy case was exercised


def test_repacked_path_is_a_finding_within_its_bound(ik_runner):
    before = ik_runner.target.stats["repacked_deviation"]
    ik_runner.check(hs.pinned_moe_case("mul_mat_id", [40, 3], ["auto"], rows=16, k=512, top_k=1, seed=8))
    assert ik_runner.target.stats["repacked_deviation"] == before + 1
    found = [f for f in ik_runner.findings if f["kind"] == "repacked-path-deviation"][-1]
    assert found["ratio"] > 1 and "within the repacked path's" in found["detail"]


def test_unary_ids_confirmed_by_value(ik_runner):
    check = ik_runner.hello["ggml"]["unary_check"]
    assert check["SILU"]["computes"] == "silu" and check["GELU"]["computes"] == "gelu", check
    assert ik_runner.hello["ggml"]["unary_ops"] == {"SILU": 10, "GELU": 8}


# -- findings (by design or harmless), each seen by calling the library directly ----------------

def _ggml_snippet(ik_lib_dir, body: str) -> dict:
    return _snippet(ik_lib_dir, textwrap.dedent(f"""
        from harness.targets.libggml import GgmlLibrary
        from harness.options import KernelOptions
        g = GgmlLibrary({ik_lib_dir!r})
        rng = np.random.default_rng(11)
    """) + textwrap.dedent(body))


def test_a_token_changes_between_31_and_32_tokens(ik_lib_dir):
    """The path switch (vec_dot below 32, the int8 repack at 32): token 0's output differs."""
    found = _ggml_snippet(ik_lib_dir, """
        w = g._probe_weights(rng, (1, 16))
        x = rng.standard_normal((32, 256)).astype(np.float32)
        at31 = g.mul_mat_id(w, x[:31], np.zeros((31, 1), np.int32), KernelOptions())[0]
        at32 = g.mul_mat_id(w, x, np.zeros((32, 1), np.int32), KernelOptions())[0]
        print(json.dumps({"differ": int((at31.view(np.uint32) != at32.view(np.uint32)).sum())}))
    """)
    assert found["differ"] > 0


def test_fused_op_result_depends_on_the_thread_count(ik_lib_dir):
    """The activation runs AVX-512 or AVX2 code depending on how rows split over threads."""
    found = _ggml_snippet(ik_lib_dir, """
        up, gate = g._probe_weights(rng, (1, 40)), g._probe_weights(rng, (1, 40))
        x = rng.standard_normal((48, 256)).astype(np.float32)
        ids = np.zeros((48, 1), np.int32)
        one = g._fused(up, gate, x, ids, g.unary_ops["GELU"], 1)
        two = g._fused(up, gate, x, ids, g.unary_ops["GELU"], 2)
        print(json.dumps({"differ": int((one.view(np.uint32) != two.view(np.uint32)).sum())}))
    """)
    assert found["differ"] > 0


def test_q8k_quants_differ_from_mainline_quantizer(ik_lib_dir):
    """d = amax/127 (positive): where the largest-magnitude value is positive, ik's quants
    are the negation of mainline's (whose d = -max/127); the products are the same."""
    import reference

    x = np.linspace(-1, 2, 256, dtype=np.float32)[None]  # largest magnitude positive
    found = _ggml_snippet(ik_lib_dir, f"""
        x = np.frombuffer(bytes.fromhex({x.tobytes().hex()!r}), np.float32).reshape(1, 256)
        print(json.dumps({{"bytes": g.quantize_q8k(x).tobytes().hex()}}))
    """)
    ik = reference.q8k_from_bytes(np.frombuffer(bytes.fromhex(found["bytes"]), np.uint8).reshape(1, 1, 292))
    ours = reference.quantize_q8k(x)
    assert ik.d[0, 0] > 0 > ours.d[0, 0] and np.array_equal(ik.qs, -ours.qs)


def test_tiny_activations_are_quantized_to_minus_128(ik_lib_dir, ik_runner):
    """A row whose largest magnitude is below about 3e-37: 127/amax overflows, every quant
    becomes -128 (the sign of the positive values lost) with bsums and sum left at 0.
    Called directly; the harness reports it as the quantizer's, before judging the GEMM."""
    x = (np.linspace(-1, 1, 256) * 1e-38).astype(np.float32)
    found = _snippet(ik_lib_dir, f"""
        x = np.frombuffer(bytes.fromhex({x.tobytes().hex()!r}), np.float32)
        out = np.zeros(296, np.uint8)
        lib.quantize_row_q8_K(x.ctypes.data_as(P), out.ctypes.data_as(P), ctypes.c_int64(256))
        print(json.dumps({{"qs": out[8:264].view(np.int8).tolist(), "bsums": out[264:].view(np.int16).tolist()}}))
    """)
    assert set(found["qs"]) == {-128} and set(found["bsums"]) == {0}
    case = hs.pinned_moe_case("mul_mat_id", [3], ["auto"], rows=8, k=256, top_k=1)
    case.arrays["x"] = np.tile(x, (3, 1))
    with pytest.raises(Mismatch, match="Q8_K quantizer wrote 3 of 3 blocks"):
        ik_runner.check(case)
