"""Failure signatures (harness.campaign.signature): hand-made stderr tails and failures, no
kernels. Two different aborts in one op are two failures; the same abort seen with other
paths, addresses, numbers or thread interleaving is one."""
import numpy as np
import pytest

from harness.campaign.signature import Signature, crash_site, normalise_message, run_context, signature_of, \
    signatures_of
from harness.cases import Case
from harness.errors import (BatchDivergence, KernelCrash, KernelError, KernelExit, KernelHang, Mismatch,
                            PathDivergence, ThreadDivergence)
from harness.options import REPACK_NEVER, KernelOptions, run_star
from harness.strategies import pinned_moe_case

IK_15254 = """ik_llama.cpp-pre/ggml/src/ggml.c:15254: fatal error
iq1m-harness: debugger disabled in the worker
/work/shared/ik_llama.cpp-cc51044e7/lib/libggml.so(+0x179a8)[0x7f10a4a179a8]
/work/shared/ik_llama.cpp-cc51044e7/lib/libggml.so(ggml_abort+0x135)[0x7f10a4a19d85]
/work/shared/ik_llama.cpp-cc51044e7/lib/libggml.so(ggml_graph_compute+0x182)[0x7f10a4a5e672]
"""
IK_740 = """ik_llama.cpp-pre/ggml/src/iqk/iqk_mul_mat.cpp:740: GGML_ASSERT(Nx%num_rows == 0) failed
/opt/x/libggml.so(ggml_abort+0x135)[0x7fbb3c419d85]
/opt/x/libggml.so(iqk_moe_fused_up_gate+0x1379)[0x7fbb3c4c7fb9]
"""
OUR_ABORT = "kernels/src/ops.c:84: GGML_ASSERT(direct kernel for IQ1_M x Q8_K) failed: expert {e} has {n} < 32 tokens\n"


def moe_case(counts=(1, 40), rows=13):
    return pinned_moe_case("moe_up_gate", list(counts), ["scalar"], rows=rows, k=256)


def crash(tail, signal="SIGABRT"):
    return KernelCrash(signal, stderr_tail=tail)


def test_the_two_ik_aborts_in_one_op_are_two_failures():
    case = moe_case()
    a, b = signature_of(crash(IK_15254), case), signature_of(crash(IK_740), case)
    assert a.detail == "SIGABRT: ggml.c:15254: fatal error"
    assert b.detail == "SIGABRT: iqk_mul_mat.cpp:740: GGML_ASSERT(Nx%num_rows == 0) failed"
    assert a.id != b.id and a.kind == b.kind == "crash" and a.op == b.op == "moe_up_gate"
    assert "ggml.c_15254" in a.slug and "iqk_mul_mat.cpp_740" in b.slug


def test_what_varies_between_runs_does_not_change_the_signature():
    case = moe_case()
    ours = {signature_of(crash(OUR_ABORT.format(e=e, n=n)), case).id for e, n in [(0, 1), (3, 17), (1, 31)]}
    assert len(ours) == 1
    # another build machine's path prefix, other addresses
    moved = IK_15254.replace("ik_llama.cpp-pre/ggml/src/", "/home/ci/build-77/ggml/src/").replace("0x7f10", "0x7ff3")
    assert signature_of(crash(moved), case) == signature_of(crash(IK_15254), case)
    # several threads printed the message at once
    interleaved = ("/b/ggml/src/ggml.c:15254: /b/ggml/src/ggml.c:15254: fatal error\nfatal error\n"
                   "/b/ggml/src/ggml.c:15254: fatal error\n")
    prefix_alone = "/b/ggml/src/ggml.c:15254: /b/ggml/src/ggml.c:15254: \nfatal error\nfatal error\n"
    # seen with 4 threads on ik_llama.cpp (notes/ik/q3_aborts.py): two messages glued on one line
    glued = ("ik_llama.cpp-pre/ggml/src/ggml.c:15254: fatal errorik_llama.cpp-pre/ggml/src/ggml.c:15254: fatal error\n"
             "ik_llama.cpp-pre/ggml/src/ggml.c:15254: fatal error\n")
    for tail in (interleaved, prefix_alone, glued):
        assert signature_of(crash(tail), case) == signature_of(crash(IK_15254), case), tail


def test_signal_op_and_site_separate_failures():
    case, dense = moe_case(), Case("mul_mat", {"w": moe_case().arrays["w_up"][0], "x": moe_case().arrays["x"]},
                                   run_star(["scalar"], [2]))
    base = signature_of(crash(IK_15254), case)
    assert signature_of(crash(IK_15254, "SIGSEGV"), case) != base
    assert signature_of(crash(IK_15254), dense) != base
    assert signature_of(crash(IK_15254.replace("15254", "15260")), case) != base
    assert signature_of(crash(""), case).detail == "SIGABRT"
    assert signature_of(KernelExit(3, stderr_tail=""), case).detail == "exit status 3"
    assert signature_of(KernelHang(12.5), case).detail == "timeout"


@pytest.mark.parametrize("tail, site", [
    ("=================================================================\n==1234==ERROR: AddressSanitizer: "
     "heap-buffer-overflow on address 0x602000000014 at pc 0x7f bp 0x7ff sp 0x7fe\nWRITE of size 4 at "
     "0x602000000014 thread T0\n    #0 0x7f8e1 in __interceptor_memcpy ../../libsanitizer/asan.cpp:1\n"
     "    #1 0x7f8e2 in scatter_rows /b/kernels/src/ops.c:210:5\n    #2 0x7f8e3 in run_chunk /b/kernels/src/ops.c:330\n"
     "    #3 0x7f8e4 in iq1m_op_run /b/kernels/src/ops.c:400\n    #4 0x7f8e4 in iq1m_mul_mat /b/src/api.c:40\n",
     "AddressSanitizer: heap-buffer-overflow in scatter_rows > run_chunk > iq1m_op_run"),
    ("/b/kernels/src/q8k.c:57:12: runtime error: signed integer overflow: 2147483647 + 1 cannot be represented "
     "in type 'int'\n", "q8k.c:57: runtime error: signed integer overflow"),
    ("WARNING: ThreadSanitizer: data race (pid=4242)\n  Write of size 4 at 0x7b04 by thread T2:\n"
     "    #0 store_row /b/src/ops.c:99 (libiq1m.so+0x1234)\n    #1 worker_main /b/src/threadpool.c:88 (x+0x9)\n",
     "ThreadSanitizer: data race in store_row > worker_main"),
    ("free(): invalid pointer\n", "free(): invalid pointer"),
    ("*** stack smashing detected ***: terminated\n", "*** stack smashing detected ***: terminated"),
    ("python3: /b/src/x.c:12: foo: Assertion `n > 0' failed.\n", "x.c:12: foo: Assertion `n > 0' failed."),
    ("/x/libggml.so(+0x1)[0x7f01]\n/x/libggml.so(ggml_abort+0x135)[0x7f02]\n/x/libggml.so(iqk_mul_mat+0x9)[0x7f03]\n"
     "/x/libggml.so(ggml_graph_compute+0x1)[0x7f04]\n/x/libggml.so(ggml_graph_compute_with_ctx+0x1)[0x7f05]\n"
     "/x/libggml.so(ggml_more+0x1)[0x7f06]\n", "in iqk_mul_mat > ggml_graph_compute > ggml_graph_compute_with_ctx"),
    ("Python noise\n", ""),
])
def test_crash_site_of_sanitizers_asserts_glibc_and_backtraces(tail, site):
    assert crash_site(tail) == site


def test_normalise_message_keeps_assert_expressions_and_drops_numbers_elsewhere():
    assert normalise_message("GGML_ASSERT(n == 32) failed: got 17 at 0xdeadbeef") == \
        "GGML_ASSERT(n == 32) failed: got N at ADDR"
    assert normalise_message("  a   b ") == "a b"


def test_wrong_results_are_keyed_by_the_failing_invariance():
    case = moe_case()
    base, other = case.runs[0], case.runs[1]
    fused = next(r for r in case.runs if not r.fused)
    def disagree(cls, a, b):
        return cls(f"runs disagree: {a.label()} vs {b.label()}", options=b)
    t = signature_of(disagree(ThreadDivergence, base, other), case)
    assert t.detail == "n_threads differ" and t.kind == "thread-divergence"
    never = next(r for r in case.runs if r.repack_threshold == REPACK_NEVER)
    assert signature_of(disagree(PathDivergence, base, never), case).detail == "repack_threshold differ"
    assert signature_of(disagree(Mismatch, base, fused), case).detail == "fused differ"
    ref = signature_of(Mismatch("output differs from the reference (bit-exact contract)", options=base), case)
    assert ref.detail == "differs from the reference" and ref != signature_of(disagree(Mismatch, base, fused), case)
    assert signature_of(BatchDivergence("token 3's output changes", options=base), case).detail == "batch composition"


def test_error_status_keeps_the_code_and_drops_the_run_and_numbers():
    case = moe_case()
    a = KernelError("library returned status 5 ('n_threads 100000 > 1024') for a valid case "
                    "[threads=100000 isa=scalar threshold=32]")
    b = KernelError("library returned status 5 ('n_threads 2048 > 1024') for a valid case "
                    "[threads=2048 isa=avx2 threshold=32]")
    assert signature_of(a, case) == signature_of(b, case)
    assert signature_of(a, case).detail.startswith("status 5:")


def test_a_death_also_shows_what_the_runs_before_it_showed():
    case = moe_case()
    death = crash(IK_740)
    death.also.append(ThreadDivergence(f"runs disagree: {case.runs[0].label()} vs {case.runs[1].label()}"))
    death.also.append(crash(IK_740))  # the same signature twice is listed once
    sigs = [s for s, _ in signatures_of(death, case)]
    assert [s.kind for s in sigs] == ["crash", "thread-divergence"]


def test_signature_round_trip_and_slug_is_a_file_name():
    s = Signature("crash", "moe_up_gate", "SIGABRT: iqk_mul_mat.cpp:740: GGML_ASSERT(Nx%num_rows == 0) failed")
    assert Signature.from_dict(s.to_dict()) == s
    assert "/" not in s.slug and " " not in s.slug and s.slug.endswith(s.id) and len(s.slug) < 100


def test_run_context_names_the_path_and_buckets():
    case = moe_case((1, 40, 0))
    text = run_context(case, KernelOptions(n_threads=2, isa="scalar", repack_threshold=32))
    assert "direct: 1 expert(s) (1-31)" in text and "repacked: 1 expert(s) (34+)" in text
    assert "threads=2" in text
    ggml = Case(case.op, case.arrays, case.runs, act=case.act, target={"name": "ggml"})
    assert "direct" not in run_context(ggml, case.runs[0]) and "1 (1-31)" in run_context(ggml, case.runs[0])
    assert np.array_equal(ggml.expert_token_counts(), [1, 40, 0])
