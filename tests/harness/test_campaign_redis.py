"""One campaign across machines on Redis (a real redis-server on loopback, started and
stopped by the test): campaigns with the same --db redis://HOST/NAME share failures and
examples; the merged report lists each failure once with who saw it first; a campaign
killed mid-run loses none of what it saved; a campaign that joins late replays the known
failures first."""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

from harness.cases import load_case

pytestmark = pytest.mark.slow

CLI = [sys.executable, "-m", "harness.cli"]
FUZZ = CLI + ["fuzz"]


@pytest.fixture
def redis_url(tmp_path):
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("redis-server is not installed (CI installs Debian's redis-server)")
    pytest.importorskip("redis", reason="the redis client comes with the 'redis' extra")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import redis

    client = redis.Redis(host="127.0.0.1", port=port)
    for _ in range(100):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}", client
    proc.terminate()
    proc.wait(timeout=10)


def _report(out):
    return json.loads((out / "report.json").read_text())


def test_two_campaigns_share_failures_and_examples_through_redis(tmp_path, redis_url):
    url, client = redis_url
    args = ["--minutes", "0.2", "--jobs", "1", "--variant", "fault:small_expert_segv", "--ops", "mul_mat",
            "--db", url]
    first = subprocess.run(FUZZ + args + ["--out", str(tmp_path / "a")], capture_output=True, text=True, timeout=600)
    assert first.returncode == 1, first.stderr[-2000:]
    assert client.dbsize() > 0, "nothing was stored in redis"
    assert any(k.startswith(b"iq1m:default:examples:") for k in client.keys()), client.keys()
    assert not (tmp_path / "a" / "examples").exists(), "examples went to the local directory instead"
    second = subprocess.run(FUZZ + args + ["--out", str(tmp_path / "b")], capture_output=True, text=True, timeout=600)
    assert second.returncode == 1
    report = _report(tmp_path / "b")
    assert [f["kind"] for f in report["failures"]] == ["crash"]
    assert report["failures"][0]["replayed"] == "reproduced" and not report["failures"][0]["new"]


def test_a_fleet_merges_failures_once_each_with_their_finders(tmp_path, redis_url):
    """Two campaigns at once on one campaign name, each on its own planted fault; one is
    killed mid-run. The merged report lists both failures once, with finder and time; a
    third campaign that joins late replays them first."""
    url, client = redis_url
    fleet = url + "/fleet-test"
    common = ["--jobs", "1", "--ops", "mul_mat", "--db", fleet]
    a = subprocess.Popen(FUZZ + common + ["--minutes", "2", "--variant", "fault:small_expert_segv",
                                          "--out", str(tmp_path / "a")],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    b = subprocess.run(FUZZ + common + ["--minutes", "0.5", "--variant", "fault:drop_tail_rows",
                                        "--out", str(tmp_path / "b")], capture_output=True, text=True, timeout=600)
    assert b.returncode == 1, b.stderr[-3000:]
    deadline = time.time() + 120
    while time.time() < deadline and not list((tmp_path / "a" / "failures").glob("crash-*.npz")):
        time.sleep(0.2)
    os.killpg(a.pid, signal.SIGKILL)  # a machine dies mid-run
    a.wait()
    saved_by_a = [p.name for p in (tmp_path / "a" / "failures").glob("*.npz")]
    assert saved_by_a, "campaign a saved nothing before it was killed"

    merged = tmp_path / "merged"
    rep = subprocess.run(CLI + ["report", "--db", fleet, "--out", str(merged)], capture_output=True, text=True,
                         timeout=300)
    assert rep.returncode == 0, rep.stderr[-3000:]
    report = _report(merged)
    kinds = sorted((f["kind"], f["op"]) for f in report["failures"])
    assert kinds == [("crash", "mul_mat"), ("mismatch", "mul_mat")], report["failures"]
    assert {p.name for p in (merged / "failures").glob("*.npz")} >= set(saved_by_a)
    finders = {f["kind"]: f["first_seen"] for f in report["failures"]}
    assert finders["crash"]["campaign"] != finders["mismatch"]["campaign"]
    for first in finders.values():
        assert first["host"] and first["job"] == 0 and first["time"]
    for f in report["failures"]:
        load_case(f["case"])
        assert os.path.exists(f["script"])
    assert len(report["campaigns"]) == 2 and report["cases"] > 0
    assert "crash in mul_mat" in rep.stdout and "mismatch in mul_mat" in rep.stdout

    late = subprocess.run(FUZZ + common + ["--minutes", "0.3", "--variant", "fault:small_expert_segv",
                                           "--out", str(tmp_path / "c")], capture_output=True, text=True, timeout=600)
    assert late.returncode == 1, late.stderr[-3000:]
    report = _report(tmp_path / "c")
    crash = next(f for f in report["failures"] if f["kind"] == "crash")
    assert crash["replayed"] == "reproduced", report["failures"]
    assert all(f["replayed"] for f in report["failures"]) and report["replays"] >= 1  # (equal cases run once)


def test_unreachable_redis_is_a_one_line_error(tmp_path):
    pytest.importorskip("redis")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once the socket is closed
    for url in (f"redis://127.0.0.1:{port}", f"redis://127.0.0.1:{port}/name", "redis://127.0.0.1:1/a/b"):
        proc = subprocess.run(FUZZ + ["--minutes", "0.05", "--jobs", "1", "--db", url, "--out", str(tmp_path / "c")],
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 2, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr, proc.stderr
