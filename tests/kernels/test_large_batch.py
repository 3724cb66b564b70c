"""Sizes past the library's own limits run like any other and give the reference's bits on
every ISA and thread count: a batch of more tokens than it has thread slots (IQ1M_MAX_THREADS
= 1024: a long prompt's prefill), whose work splits over the threads asked for, never one
thread per token; a row too long for the repacked block size it aims at."""
import harness.strategies as hs


def test_a_batch_of_more_tokens_than_the_thread_limit(iq1m_runner):
    iq1m_runner.check(hs.pinned_moe_case("mul_mat_id", [1100, 30], iq1m_runner.isas, rows=16, k=256, top_k=1,
                                         threads=(1, 3)))


def test_a_row_longer_than_a_repacked_block(iq1m_runner):
    """K = 30720: one panel of a row's blocks (120 x 4416 bytes) is larger than the 512 KiB a
    thread's repacked block aims at, so every block holds a single panel."""
    iq1m_runner.check(hs.pinned_moe_case("mul_mat_id", [33, 2], iq1m_runner.isas, rows=16, k=30720, top_k=1,
                                         threads=(1, 2)))
