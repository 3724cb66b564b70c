"""A case can ask to run first in a new worker process (info["fresh_worker"]): what the
library keeps between calls, like a scratch buffer an earlier, larger case left, would
otherwise hide what it tests. Every other case reuses the worker. The flag is saved with
the case, so a replay (mutate's recorded cases, a regression file) honours it too."""
from harness import strategies as hs
from harness.cases import load_case, save_case


def _small_case(runner):
    return hs.pinned_moe_case("mul_mat_id", [3], runner.isas, rows=16, k=256, top_k=1, threads=(1, 2))


def test_only_a_case_asking_for_it_gets_a_new_worker(iq1m_runner, tmp_path):
    case = _small_case(iq1m_runner)
    iq1m_runner.check(case)
    pid = iq1m_runner.worker.proc.pid
    iq1m_runner.check(case)
    assert iq1m_runner.worker.proc.pid == pid, "a plain case must reuse the running worker"
    case.info["fresh_worker"] = True
    save_case(case, tmp_path / "fresh.npz")
    replayed = load_case(tmp_path / "fresh.npz")
    assert replayed.info.get("fresh_worker") is True
    iq1m_runner.check(replayed)
    fresh = iq1m_runner.worker.proc.pid
    assert fresh != pid, "a case with fresh_worker must start a new worker"
    iq1m_runner.check(_small_case(iq1m_runner))
    assert iq1m_runner.worker.proc.pid == fresh
