"""Campaigns on several machines share one example store through Hypothesis's Redis
database: here two campaigns with separate output directories share a real redis-server
on loopback, started and stopped by the test."""
import json
import shutil
import socket
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.slow

FUZZ = [sys.executable, "-m", "harness.cli", "fuzz"]


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


def test_two_campaigns_share_examples_through_redis(tmp_path, redis_url):
    url, client = redis_url
    args = ["--minutes", "0.1", "--jobs", "1", "--variant", "fault:small_expert_segv", "--ops", "mul_mat",
            "--db", url]
    first = subprocess.run(FUZZ + args + ["--out", str(tmp_path / "a")], capture_output=True, text=True, timeout=300)
    assert first.returncode == 1, first.stderr[-2000:]
    assert client.dbsize() > 0, "nothing was stored in redis"
    assert not (tmp_path / "a" / "examples").exists(), "examples went to the local directory instead"
    second = subprocess.run(FUZZ + args + ["--out", str(tmp_path / "b")], capture_output=True, text=True, timeout=300)
    assert second.returncode == 1
    report = json.loads((tmp_path / "b" / "report.json").read_text())
    assert [f["kind"] for f in report["failures"]] == ["crash"]


def test_unreachable_redis_is_a_one_line_error(tmp_path):
    pytest.importorskip("redis")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once the socket is closed
    proc = subprocess.run(FUZZ + ["--minutes", "0.05", "--jobs", "1", "--db", f"redis://127.0.0.1:{port}",
                                  "--out", str(tmp_path / "c")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert "redis" in proc.stderr and "Traceback" not in proc.stderr
