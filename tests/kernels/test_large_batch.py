"""A batch of more tokens than the library has thread slots (IQ1M_MAX_THREADS = 1024: a long
prompt's prefill) runs like any other: its work splits over the threads asked for, never one
thread per token, and gives the reference's bits on every ISA and thread count."""
import harness.strategies as hs


def test_a_batch_of_more_tokens_than_the_thread_limit(iq1m_runner):
    iq1m_runner.check(hs.pinned_moe_case("mul_mat_id", [1100, 30], iq1m_runner.isas, rows=16, k=256, top_k=1,
                                         threads=(1, 3)))
