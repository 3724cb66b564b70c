"""The worker's protocol cannot be broken by the library under test: a fake libiq1m
(compiled here, loaded as a prebuilt variant) prints to fd 1 and 2, forks a child that
writes to them and lingers holding every descriptor, then aborts with a message. That is a
crash with its message and run, reported at once, with nothing left running; a library
that writes garbage into every open descriptor is a `corruption` failure, never a
misread reply or a harness traceback."""
import os
import shutil
import subprocess
import time

import numpy as np
import pytest

from harness import strategies as hs
from harness.errors import KernelCorruption, KernelCrash
from harness.runner import Runner

FAKE = r"""
#include <dirent.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *iq1m_version(void) { return "fake"; }
const char *iq1m_build_info(void) { return "fake library of test_worker_protocol"; }
const char *iq1m_last_error(void) { return ""; }
uint32_t iq1m_available_isas(void) { return 1u << 1; }
int32_t iq1m_best_isa(void) { return 1; }
int iq1m_quantize_q8_K(const float *x, void *y, int64_t k) { return 0; }
int iq1m_dequantize_iq1_m(const void *b, float *y, int64_t k) { return 0; }
int iq1m_activation(int32_t act, const float *x, float *y, int64_t n) { return 0; }
int iq1m_prepack(const void *w, int64_t n, int64_t k, void *out) { return 0; }

static void misbehave(void) {
    const char *mode = getenv("FAKE_MODE");
    if (mode && !strcmp(mode, "scribble")) {     /* garbage into every descriptor it can find */
        DIR *d = opendir("/proc/self/fd");
        struct dirent *e;
        while (d && (e = readdir(d)))
            if (e->d_name[0] != '.') (void)!write(atoi(e->d_name), "{\"ok\": true}\n", 13);
        if (d) closedir(d);
        return;
    }
    if (mode && !strcmp(mode, "kill-server-once")) { /* the parent (a fork server) killed mid-call */
        const char *flag = getenv("FAKE_FLAG");
        if (flag && unlink(flag) == 0) {
            kill(getppid(), SIGKILL);
            sleep(10);
        }
    }
    printf("{\"ok\": true, \"arrays\": []}\n");  /* what a confused protocol would accept */
    fflush(stdout);
    fprintf(stderr, "fake: about to fail\n");
    if (fork() == 0) {                            /* a debugger-like child: holds every fd */
        printf("(gdb) bt\n#0 fake_frame ()\n");
        fflush(stdout);
        fprintf(stderr, "child writes to stderr\n");
        sleep(30);
        _exit(0);
    }
    fprintf(stderr, "fake.c:42: fatal error\n");
    abort();
}

int iq1m_mul_mat(const void *w, int64_t rows, int64_t k, const float *x, int64_t n, float *out,
                 const void *opt) { misbehave(); return 0; }
int iq1m_mul_mat_id(const void *w, int64_t e, int64_t rows, int64_t k, const float *x, int64_t n,
                    const int32_t *ids, int64_t top_k, float *out, const void *opt) { misbehave(); return 0; }
int iq1m_moe_up_gate(const void *u, const void *g, int64_t e, int64_t rows, int64_t k, const float *x,
                     int64_t n, const int32_t *ids, int64_t top_k, int32_t act, float *out,
                     const void *opt) { misbehave(); return 0; }
"""


@pytest.fixture(scope="module")
def fake_library(tmp_path_factory):
    if shutil.which("gcc") is None:
        pytest.skip("needs gcc")
    folder = tmp_path_factory.mktemp("fake")
    (folder / "fake.c").write_text(FAKE)
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(folder / "libfake.so"), str(folder / "fake.c")], check=True)
    return folder / "libfake.so"


def _case():
    case = hs.pinned_moe_case("mul_mat_id", [2], ["scalar"], rows=3, k=256, top_k=1)
    case.runs = case.runs[:2]
    return case


def _processes_in_group(pgid: int) -> list[int]:
    """Live (not zombie) processes of a process group, after a moment to be reaped."""
    time.sleep(0.2)
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = open(f"/proc/{pid}/stat").read()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            found.append(int(pid))
    return found


@pytest.mark.parametrize("fork_server", ["1", "0"], ids=["forked-worker", "plain-worker"])
def test_output_and_forked_children_cannot_break_the_protocol(fake_library, tmp_path, monkeypatch, fork_server):
    monkeypatch.setenv("FAKE_MODE", "noisy-abort")
    monkeypatch.setenv("IQ1M_FORK_SERVER", fork_server)
    runner = Runner(f"prebuilt:{fake_library}", tmp_path, timeout=20)
    try:
        pgid = runner.worker.proc.pid
        started = time.monotonic()
        with pytest.raises(KernelCrash) as info:
            runner.check(_case())
        took = time.monotonic() - started
    finally:
        runner.close()
    failure = info.value
    assert failure.signal_name == "SIGABRT"
    assert "fake.c:42: fatal error" in failure.stderr_tail
    assert failure.options is not None and "threads=1" in str(failure)
    assert took < 10, f"the death took {took:.1f} s to report: the lingering child held it up"
    assert not _processes_in_group(pgid), "the forked child outlived the worker"


def test_garbage_in_every_descriptor_is_a_corruption_failure(fake_library, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_MODE", "scribble")
    runner = Runner(f"prebuilt:{fake_library}", tmp_path, timeout=20)
    try:
        with pytest.raises(KernelCorruption) as info:
            runner.check(_case())
        assert "private channel" in info.value.message
        # the harness goes on: the next case gets a fresh worker (and the same verdict)
        with pytest.raises(KernelCorruption):
            runner.check(_case())
        assert runner.worker.restarts >= 1
    finally:
        runner.close()


def test_a_fork_server_killed_during_a_call_costs_a_rerun_not_a_verdict(fake_library, tmp_path, monkeypatch):
    """Killed from outside, the server takes its worker with it (PR_SET_PDEATHSIG), whatever
    the case did: the case runs again in a plain worker and gets the library's own verdict."""
    flag = tmp_path / "flag"
    flag.touch()
    monkeypatch.setenv("FAKE_MODE", "kill-server-once")
    monkeypatch.setenv("FAKE_FLAG", str(flag))
    runner = Runner(f"prebuilt:{fake_library}", tmp_path, timeout=20)
    try:
        with pytest.raises(KernelCrash) as info:
            runner.check(_case())
        assert not flag.exists(), "the forked worker never ran the call"
        assert isinstance(runner.worker.proc, subprocess.Popen) or runner.worker.proc is None
        assert "died" in runner.worker.fork_server_error
    finally:
        runner.close()
    assert info.value.signal_name == "SIGABRT"
