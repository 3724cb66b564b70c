"""The failure store under many writers (processes racing, no kernels): one claim wins, one
valid record and script per signature remain, a minimised record is never replaced by a
first sighting, and a new campaign forgets old claims but not what was minimised."""
import multiprocessing

from harness.campaign.signature import Signature
from harness.campaign.store import FailureStore
from harness.cases import load_case
from harness.errors import KernelCrash
from harness.strategies import pinned_moe_case

SIG = Signature("crash", "mul_mat_id", "SIGABRT: ops.c:84: GGML_ASSERT(x) failed")


def _case(n):
    return pinned_moe_case("mul_mat_id", [n, 3], ["scalar"], rows=5, k=256, seed=n)


def _claimer(out, queue):
    queue.put(FailureStore(out).claim(SIG, {"pid": multiprocessing.current_process().pid}))


def _saver(out, worker, rounds):
    store = FailureStore(out)
    for i in range(rounds):
        minimised = (worker + i) % 3 == 0
        info = {"minimised": minimised, "signature": SIG.to_dict(), "writer": worker,
                "first_seen": {"unix": float(worker)}}
        store.save(SIG, _case(1 + (worker + i) % 7), KernelCrash("SIGABRT"), info, where="kernels (test)")


def test_exactly_one_claim_wins(tmp_path):
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_claimer, args=(tmp_path, queue)) for _ in range(6)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    results = [queue.get(timeout=5) for _ in procs]
    assert results.count(True) == 1
    assert FailureStore(tmp_path).is_known(SIG.id)


def test_racing_writers_leave_one_valid_minimised_record(tmp_path):
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_saver, args=(tmp_path, w, 12)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    store = FailureStore(tmp_path)
    npz = sorted(store.root.glob("*.npz"))
    scripts = sorted(store.root.glob("repro_*.py"))
    assert [p.name for p in npz] == [f"{SIG.slug}.npz"] and [p.name for p in scripts] == [f"repro_{SIG.slug}.py"]
    assert not list(store.root.glob(".*.tmp"))
    case = load_case(npz[0])
    assert case.info["minimised"] is True  # once minimised, never replaced by a first sighting
    assert f"{SIG.slug}.npz" in scripts[0].read_text()
    records = store.records()
    assert len(records) == 1 and records[0]["script"] == str(scripts[0])


def test_only_if_absent_keeps_the_first_record(tmp_path):
    store = FailureStore(tmp_path)
    store.save(SIG, _case(1), KernelCrash("SIGABRT"), {"minimised": False, "n": 1}, where="k")
    store.save(SIG, _case(2), KernelCrash("SIGABRT"), {"minimised": False, "n": 2}, where="k", only_if_absent=True)
    assert store.existing(SIG.id)["n"] == 1


def test_a_new_campaign_forgets_claims_but_keeps_minimised_failures_known(tmp_path):
    store = FailureStore(tmp_path)
    other = Signature("hang", "mul_mat", "timeout")
    store.save(SIG, _case(1), KernelCrash("SIGABRT"), {"minimised": True, "signature": SIG.to_dict()}, where="k")
    store.save(other, _case(2), KernelCrash("SIGABRT"), {"minimised": False, "signature": other.to_dict()}, where="k")
    assert store.claim(other, {}) and not store.claim(other, {})
    (store.root / ".x.npz.123.tmp").write_bytes(b"half")
    store.begin_campaign()
    assert store.is_known(SIG.id) and not store.is_known(other.id)  # the unminimised one may be shrunk again
    assert not list(store.root.glob(".*.tmp"))
    assert len(store.records()) == 2
