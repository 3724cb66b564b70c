"""Run a ggml shape once in a child process before `bench` times it in its own.

A ggml build may abort on valid input (ik_llama.cpp before the fix of its issue 626 aborts
in its fused MoE op whenever an expert gets 1..31 tokens, and asserts rows % 8 == 0 at
>= 32 tokens); a crash in the bench process would lose the whole run. So each shape's
prepared graph is first built and run once per thread count in a fresh Python process
(`python -m harness.tools.bench.probe SPEC`; a fork of the bench process would not do:
ggml's OpenMP threads do not survive a fork), with the ggml target's worker environment
(no backtrace, no debugger on PATH). A death is described the way ggml printed it, e.g.
"aborts (ggml.c:15254: fatal error)", and that thread count is not timed.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from ...options import KernelOptions
from ...worker import harness_import_root, signal_name

MARK = "iq1m-bench-probe: running"
# GGML_ABORT / GGML_ASSERT print "file:line: message" (the file with its build path)
_ABORT_LINE = re.compile(r"(?:^|[\s/])([\w.+-]+\.(?:c|cc|cpp|h)):(\d+): (.+)")
TIMEOUT = 600.0


def describe_death(returncode: int | None, stderr: str) -> str:
    """"aborts (ggml.c:15254: fatal error)", "crashes with SIGSEGV (...)", "exits with
    status 1 (...)", "hangs (...)": what a child's death says, from the stderr it wrote
    after its last MARK (what came before belongs to earlier, passing runs)."""
    tail = stderr.rsplit(MARK, 1)[-1].partition("\n")[2] if MARK in stderr else stderr
    lines = [line.strip() for line in tail.splitlines() if line.strip()]
    found = [m for line in lines if (m := _ABORT_LINE.search(line))]
    if found:
        file, line, message = found[-1].groups()
        detail = f"{file}:{line}: {message.strip()}"
    else:
        detail = lines[-1][-200:] if lines else ""
    if returncode is None:
        verb = "hangs"
        detail = detail or f"no result in {TIMEOUT:.0f} s"
    elif returncode < 0:
        name = signal_name(returncode)
        verb = "aborts" if name == "SIGABRT" else f"crashes with {name}"
    else:
        verb = f"exits with status {returncode}"
    return f"{verb} ({detail})" if detail else verb


class Prober:
    """Probes shapes on one ggml build. Arrays go to the child as .npy files in a private
    folder, each written once while the caller keeps passing the same array object (a
    layer's weights serve all its token counts)."""

    def __init__(self, lib_dir: str, env: dict[str, str], work: str):
        self.lib_dir, self.work = str(lib_dir), work
        self.env = dict(os.environ, **env)
        self.env["PYTHONPATH"] = os.pathsep.join(filter(None, [harness_import_root(), os.environ.get("PYTHONPATH")]))
        self.folder = Path(tempfile.mkdtemp(prefix="iq1m-bench-probe-"))
        self._files: dict[int, tuple[np.ndarray, str]] = {}
        self._written = 0

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
        self._files.clear()

    def _file(self, array: np.ndarray) -> str:
        if id(array) not in self._files:
            self._written += 1
            path = self.folder / f"{self._written}.npy"
            np.save(path, array)
            self._files[id(array)] = (array, str(path))
        return self._files[id(array)][1]

    def _forget_all_but(self, arrays: dict) -> None:
        keep = {id(a) for a in arrays.values()}
        for key in [k for k in self._files if k not in keep]:
            Path(self._files.pop(key)[1]).unlink(missing_ok=True)

    def probe(self, op: str, arrays: dict, threads: list[int], act: str) -> dict[int, str]:
        """{thread count: how the child died} for the thread counts whose run did not come
        back ({} when all did). A death ends that child: the thread counts after it are
        probed in a new one."""
        self._forget_all_but(arrays)
        spec = {"lib_dir": self.lib_dir, "op": op, "act": act, "work": self.work,
                "arrays": {name: self._file(a) for name, a in arrays.items()}}
        failures: dict[int, str] = {}
        left = list(threads)
        while left:
            spec_path = self.folder / "spec.json"
            spec_path.write_text(json.dumps(dict(spec, threads=left)))
            try:
                proc = subprocess.run([sys.executable, "-P", "-m", __name__, str(spec_path)], stdin=subprocess.DEVNULL,
                                      capture_output=True, text=True, env=self.env, timeout=TIMEOUT)
                returncode, stdout, stderr = proc.returncode, proc.stdout, proc.stderr
            except subprocess.TimeoutExpired as exc:
                returncode = None
                stdout, stderr = (s.decode(errors="replace") if isinstance(s, bytes) else s or ""
                                  for s in (exc.stdout, exc.stderr))
            done = {int(line.split()[1]) for line in stdout.splitlines() if line.startswith("ok ")}
            if returncode == 0 and done >= set(left):
                break
            failed = next(t for t in left if t not in done)
            failures[failed] = describe_death(returncode, stderr)
            left = left[left.index(failed) + 1:]
        return failures


def main(argv: list[str] | None = None) -> int:
    from ...targets.libggml import GgmlLibrary

    spec = json.loads(Path((argv or sys.argv[1:])[0]).read_text())
    g = GgmlLibrary(spec["lib_dir"])
    arrays = {name: np.load(path) for name, path in spec["arrays"].items()}
    for t in spec["threads"]:
        print(f"{MARK} {spec['op']} on {t} thread(s)", file=sys.stderr, flush=True)
        with g.prepared_graph(spec["op"], arrays, KernelOptions(n_threads=t), spec["act"], spec["work"]) as run:
            run()
        print(f"ok {t}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
