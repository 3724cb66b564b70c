"""`iq1m-harness mutate`: how many injected bugs does the default test suite catch?

Each job owns a copy of kernels/ and one CMake build tree. A mutant is applied to the
copy, the library rebuilt incrementally (one translation unit and the link), and:
- a compile error makes it stillborn (not counted);
- a library byte-identical to the unmutated one makes it equivalent (dead or compiled-out
  code: the fault-injection blocks, for example);
- otherwise, on the release build, then the no-direct build, then address+undefined
  (KILL_CHAIN), each built only when the ones before it did not kill the mutant: the
  default suite, profile `mutation` (the ci profile's examples without shrinking, which
  kills the same mutants sooner), fail-fast, in three parts: the cases its property and
  regression tests check (replayed from a record, below), the library's white-box C
  tests (`iq1m_ukernel_test`, one rep: every table entry and SIMD repack against the
  scalar definition, shapes the Python suite does not reach; `iq1m_tile_test`: the loop
  nests' split of columns into kernel calls, with partial kernel sets too;
  `iq1m_schedule_test`: the split of rows between threads; `iq1m_dispatch_test`: each
  ISA's resolved kernel set; `iq1m_isa_detect_test`: the detection on faked CPUs;
  `iq1m_smoke`: the API on hand-checked cases, where the sanitized build also reports
  leaks), then its other tests in a separate pytest process (`--iq1m-variant
  prebuilt:LIB`); any failure, crash or hang kills it.

The record: the mutation profile is derandomized, and what Hypothesis draws does not depend
on the library (only on the test and its seed, until a test fails), so the cases the
property and regression tests check are recorded once, in order, from the unmutated
library (`IQ1M_RECORD_CASES`), and each mutant's library runs them in this process's
isolated worker: the same cases and checks as a pytest run, without a pytest start and
with the reference computed once per case for the whole run. A mutant that fails one of
them would have failed the same test at the same example.

Mutants listed in kernels/mutants-equivalent.txt (id and a reason) are skipped.
The score is killed / (killed + survived); the report lists every survivor with its diff.
Results are appended to OUT/results.jsonl as they come: `--resume` skips mutants already
there, except survivors, which run again against the tests as they are now (or count as
equivalent once listed); a whole-population run takes hours (see docs/performance.md), and
`--report-only` reports where it stands without running anything:

    iq1m-harness mutate --jobs 2 --out .iq1m/mutation-full [--resume | --report-only]
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from .build import KERNELS_DIR, PROJECT_ROOT, find_cmake, find_compiler
from .cases import atomic_write_bytes
from .errors import UsageError
from .mutants import Mutant, all_mutants, load_equivalent
from .runner import Runner

EQUIVALENT_LIST = KERNELS_DIR / "mutants-equivalent.txt"
DEFAULT_TESTS = ("tests/kernels/test_isa_detection.py", "tests/kernels/test_fork.py",
                 "tests/kernels/test_thread_start.py", "tests/kernels/test_lock_discipline.py",
                 "tests/kernels/test_allocation_failure.py",
                 "tests/kernels/test_large_batch.py",
                 "tests/kernels/test_library_errors.py",
                 "tests/kernels/test_conversions.py", "tests/kernels/test_path_selection.py",
                 "harness/suite/test_properties.py", "harness/suite/test_regressions.py")
# the tests whose every check goes through the session's Runner: recorded and replayed
RECORDED_TESTS = ("harness/suite/test_properties.py", "harness/suite/test_regressions.py")


@dataclass
class MutantResult:
    mid: str
    file: str
    line: int
    operator: str
    status: str  # killed | survived | equivalent-binary | equivalent-listed | stillborn | timeout
    seconds: float
    diff: str
    detail: str = ""


# A mutant is run against these builds in turn and killed by the first that fails: the
# release build, the seed's configuration without the direct kernel (whose scalar
# fallback the release build never calls), and address+undefined (memory errors that
# leave release outputs intact).
KILL_CHAIN = (
    ("release", ("-DCMAKE_BUILD_TYPE=Release",)),
    ("no-direct", ("-DCMAKE_BUILD_TYPE=Release", "-DIQ1M_DIRECT_KERNEL=OFF")),
    ("asan", ("-DCMAKE_BUILD_TYPE=RelWithDebInfo", "-DIQ1M_SANITIZE=address,undefined")),
)


def fresh_copy(src: Path, dst: Path) -> None:
    """Copy the kernel sources with new modification times. The build trees are kept between
    runs, and a run stopped by a signal leaves its last mutant compiled into them: copies
    with the originals' (older) times would not be rebuilt, and every mutant after would run
    on top of that one."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("build*", "__pycache__"), copy_function=shutil.copy)


class Workspace:
    """A private copy of kernels/ with one incremental CMake build per kill-chain variant."""

    def __init__(self, root: Path, cmake: str, compiler: str):
        self.root = root
        self.src = root / "kernels"
        if self.src.exists():
            shutil.rmtree(self.src)
        fresh_copy(KERNELS_DIR, self.src)
        self.cmake = cmake
        self.baseline: dict[str, str] = {}
        for name, options in KILL_CHAIN:
            subprocess.run([cmake, "-S", str(self.src), "-B", str(self.build_dir(name)),
                            f"-DCMAKE_C_COMPILER={compiler}", *options], check=True, capture_output=True)
            ok, log = self.rebuild(name, parallel=os.cpu_count() or 1)  # the first build is of every file
            if not ok:
                raise UsageError(f"the unmutated kernels do not build ({name}) in {self.root}:\n{log[-2000:]}")
            self.baseline[name] = self.library_digest(name)

    def build_dir(self, variant: str) -> Path:
        return self.root / f"build-{variant}"

    def rebuild(self, variant: str, parallel: int = 1) -> tuple[bool, str]:
        p = subprocess.run([self.cmake, "--build", str(self.build_dir(variant)), "--target", "iq1m",
                            "-j", str(parallel)], capture_output=True, text=True)
        return p.returncode == 0, p.stdout + p.stderr

    def library(self, variant: str) -> Path:
        return next(self.build_dir(variant).rglob("libiq1m.so"))

    def library_digest(self, variant: str) -> str:
        return hashlib.sha256(self.library(variant).read_bytes()).hexdigest()


def run_one(ws: Workspace, m: Mutant, tests: list[str], timeout: float, lib_dir: Path,
            corpus: "Corpus | None" = None) -> MutantResult:
    path = ws.src / m.file
    original = path.read_text()
    t0 = time.monotonic()

    def result(status, detail=""):
        return MutantResult(m.mid, m.file, m.line, m.operator, status, time.monotonic() - t0, m.diff(original),
                            detail)

    replayed = [t for t in tests if t in RECORDED_TESTS] if corpus is not None else []
    others = [t for t in tests if t not in replayed]
    try:
        path.write_text(m.apply(original))
        changed = []
        for name, _ in KILL_CHAIN:  # built one after another: most mutants die on the first
            ok, log = ws.rebuild(name)
            if not ok:
                return result("stillborn", log[-500:])
            if ws.library_digest(name) == ws.baseline[name]:
                continue
            changed.append(name)
            killed, detail = corpus.replay(ws, name, timeout) if replayed else (False, "")
            if not killed:
                killed, detail = _run_whitebox_tests(ws, name, timeout)
            if not killed and others:
                killed, detail = _run_suite(ws, ws.library(name), m, others, timeout, lib_dir)
            if killed:
                return result("killed", f"[{name}] {detail}")
        if not changed:
            return result("equivalent-binary")
        return result("survived", f"survived {', '.join(changed)}")
    finally:
        path.write_text(original)


class Corpus:
    """The cases the recorded tests check, in order, recorded once from the unmutated
    library (see the module docstring), and replayed on each mutant's library."""

    def __init__(self, out: Path, ws: "Workspace", tests: list[str], timeout: float, stream=sys.stderr):
        from .cases import load_case

        self.dir = out / "corpus"
        if self.dir.exists():
            shutil.rmtree(self.dir)
        print(f"mutate: recording the cases of {', '.join(tests)} on the unmutated library ...", file=stream,
              flush=True)
        env = dict(os.environ, HYPOTHESIS_PROFILE="mutation", IQ1M_RUNS_DIR=str(out / "corpus-runs"),
                   IQ1M_BASE_TIMEOUT=str(BASE_TIMEOUT), IQ1M_RECORD_CASES=str(self.dir))
        p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                            f"--iq1m-variant=prebuilt:{ws.library('release')}", *tests], cwd=PROJECT_ROOT, env=env,
                           capture_output=True, text=True, timeout=max(timeout, 1800))
        shutil.rmtree(out / "corpus-runs", ignore_errors=True)
        if p.returncode != 0:
            raise UsageError(f"the unmutated library fails the suite; fix that first:\n{p.stdout[-3000:]}")
        self.cases = [load_case(f) for f in sorted(self.dir.glob("*.npz"))]
        if not self.cases:
            raise UsageError(f"recording {tests} checked no case")
        print(f"mutate: {len(self.cases)} cases recorded", file=stream, flush=True)

    def replay(self, ws: "Workspace", variant: str, timeout: float) -> tuple[bool, str]:
        """(killed, detail): the recorded cases on `variant`'s mutant library, fail-fast."""
        from .errors import HarnessFailure, UsageError as _UsageError

        deadline = time.monotonic() + max(timeout, REPLAY_LIMIT)  # each run has its own hang timeout
        work = ws.root / "replay"
        try:
            runner = Runner(f"prebuilt:{ws.library(variant)}", work, base_timeout=BASE_TIMEOUT)
        except _UsageError as exc:  # the library does not even load
            return True, f"worker start: {str(exc)[:300]}"
        try:
            for i, case in enumerate(self.cases):
                if time.monotonic() > deadline:
                    return True, f"replay exceeded {max(timeout, REPLAY_LIMIT):.0f} s (hang)"
                try:
                    runner.check(case)
                except HarnessFailure as failure:
                    first = str(failure).splitlines()[0][:250]
                    return True, f"recorded case {i} ({case.op}): {first}"
                except RuntimeError as exc:  # the worker's harness error on this library
                    return True, f"recorded case {i} ({case.op}): worker error {str(exc).splitlines()[-1][:200]}"
                except _UsageError as exc:  # the case ran on the unmutated library: the mutant refuses it
                    # (a dispatch mutant that reports no scalar ISA, say)
                    return True, f"recorded case {i} ({case.op}): refused: {str(exc).splitlines()[0][:200]}"
            return False, ""
        finally:
            runner.close()
            shutil.rmtree(work, ignore_errors=True)


# smoke: the public API against values it computes itself, with leak detection in the
# address+undefined build (the Python worker cannot have it: the interpreter leaks by design)
WHITEBOX_TESTS = ("iq1m_ukernel_test", "iq1m_tile_test", "iq1m_schedule_test", "iq1m_dispatch_test",
                  "iq1m_isa_detect_test", "iq1m_smoke")
WHITEBOX_TEST_TIMEOUT = 60.0  # CPU seconds; one ukernel rep takes about 1 s, 15 s under address+undefined
IDLE_LIMIT = 30.0  # wall seconds a white-box test may use no CPU at all before it counts as blocked
# Hang limits, wide enough for a host shared with other work (2 cores here, often at load 10,
# where everything takes ~10x its time): a mutant counts as hung only when it is, not when
# the machine is busy. A kernel run's timeout starts at BASE_TIMEOUT seconds (plus its work);
# a C test is stopped after WHITEBOX_TEST_TIMEOUT seconds of CPU, 10x that of wall time, or
# IDLE_LIMIT seconds without any CPU (blocked: a busy host slows a process, it does not stop it).
BASE_TIMEOUT = 20.0
REPLAY_LIMIT = 7200.0


def _cpu_ticks(pid: int) -> int | None:
    """User + system clock ticks of a process, all its threads; None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, IndexError, ValueError):
        return None


def _run_watched(cmd: list[str], wall_limit: float, **popen) -> subprocess.CompletedProcess | str:
    """Run cmd to its end, or stop it and say why: past `wall_limit` seconds, or blocked
    (no CPU time for IDLE_LIMIT seconds: a deadlock, which RLIMIT_CPU never ends and the
    wall limit, generous for a busy machine, ends late)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)
    out: dict[str, str] = {}
    readers = [threading.Thread(target=lambda k=k, f=f: out.__setitem__(k, f.read()), daemon=True)
               for k, f in (("stdout", proc.stdout), ("stderr", proc.stderr))]
    for r in readers:
        r.start()
    start = last_progress = time.monotonic()
    ticks = _cpu_ticks(proc.pid)
    why = ""
    while proc.poll() is None:
        time.sleep(0.5)
        now, t = time.monotonic(), _cpu_ticks(proc.pid)
        if t is not None and t != ticks:
            ticks, last_progress = t, now
        if now - start > wall_limit:
            why = f"exceeded {wall_limit:.0f} s"
        elif now - last_progress > IDLE_LIMIT:
            why = f"used no CPU for {IDLE_LIMIT:.0f} s"
        if why:
            proc.kill()
            break
    proc.wait()
    for r in readers:
        r.join()
    if why:
        return why
    return subprocess.CompletedProcess(cmd, proc.returncode, out.get("stdout", ""), out.get("stderr", ""))


def _run_whitebox_tests(ws: Workspace, variant: str, timeout: float) -> tuple[bool, str]:
    """(killed, detail) from the mutant build's white-box C tests (the micro-kernels at one
    rep, the thread schedule); a test whose target does not build is skipped (the Python
    suite decides then)."""
    build = ws.build_dir(variant)
    limit = min(timeout, WHITEBOX_TEST_TIMEOUT)
    for name in WHITEBOX_TESTS:
        p = subprocess.run([ws.cmake, "--build", str(build), "--target", name, "-j", "1"],
                           capture_output=True, text=True)
        exe = next((f for f in build.rglob(name) if f.is_file()), None)
        if p.returncode != 0 or exe is None:
            continue
        t = _run_watched([str(exe), "1"], 10 * limit, env=dict(os.environ, ASAN_OPTIONS="detect_leaks=1:halt_on_error=1"),
                         preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_CPU, (int(limit), int(limit) + 5)))
        if isinstance(t, str):
            return True, f"{name} {t} (hang)"
        if t.returncode in (-signal.SIGXCPU, -signal.SIGKILL):
            return True, f"{name} exceeded {limit:.0f} CPU seconds (hang)"
        if t.returncode != 0:
            lines = (t.stderr + t.stdout).splitlines()
            first = next((x for x in lines if x.startswith("FAIL") or "ERROR" in x),
                         f"exit status {t.returncode}")
            return True, f"{name}: {first[:300]}"
    return False, ""


def _run_suite(ws: Workspace, library: Path, m: Mutant, tests: list[str], timeout: float, lib_dir: Path
               ) -> tuple[bool, str]:
    lib = lib_dir / f"libiq1m-{m.mid}.so"
    shutil.copyfile(library, lib)
    env = dict(os.environ, HYPOTHESIS_PROFILE="mutation", IQ1M_RUNS_DIR=str(ws.root / "runs"),
                   IQ1M_BASE_TIMEOUT=str(BASE_TIMEOUT))
    try:
        p = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
                            f"--iq1m-variant=prebuilt:{lib}", *tests], cwd=PROJECT_ROOT, env=env,
                           capture_output=True, text=True, timeout=timeout)
        return p.returncode != 0, _first_failure(p.stdout)
    except subprocess.TimeoutExpired:
        return True, f"test run exceeded {timeout:.0f} s (hang)"
    finally:
        lib.unlink(missing_ok=True)
        shutil.rmtree(ws.root / "runs", ignore_errors=True)


def _first_failure(stdout: str) -> str:
    for line in stdout.splitlines():
        if line.startswith("FAILED") or line.startswith("ERROR"):
            return line[:300]
    return stdout.strip().splitlines()[-1][:300] if stdout.strip() else ""


def select_mutants(files: list[str] | None, sample: int | None, seed: int, ids: list[str] | None = None
                   ) -> list[Mutant]:
    mutants = all_mutants(KERNELS_DIR, files)
    if ids:
        unknown = set(ids) - {m.mid for m in mutants}
        if unknown:
            raise UsageError(f"no mutant with id {', '.join(sorted(unknown))} (the code may have changed; "
                             f"'iq1m-harness mutate --list' shows the current ids)")
        return [m for m in mutants if m.mid in set(ids)]
    if files and not mutants:
        raise UsageError(f"no mutation sites in {files}; files are paths under kernels/src, e.g. ops.c")
    if sample is not None:
        mutants = choose_sample(mutants, sample, seed)
    return mutants


def choose_sample(mutants: list[Mutant], size: int, seed: int) -> list[Mutant]:
    """A uniform random sample of `size`, in the population's order. Each mutant's rank is a
    hash of the seed and its own id, so a fixed sample (CI's) keeps its members when code
    elsewhere gains or loses mutants."""
    ranked = sorted(mutants, key=lambda m: hashlib.sha256(f"{seed}:{m.mid}".encode()).digest())
    chosen = {m.mid for m in ranked[:size]}
    return [m for m in mutants if m.mid in chosen]


def last_results(log_path: Path) -> dict[str, MutantResult]:
    """The last result of each mutant in results.jsonl, by id."""
    last: dict[str, MutantResult] = {}
    for line in log_path.read_text().splitlines():
        try:
            r = MutantResult(**json.loads(line))
        except (ValueError, TypeError):
            continue  # a line cut by a kill
        last[r.mid] = r
    return last


def results_to_keep(log_path: Path, equivalent: dict[str, str] | None = None) -> dict[str, MutantResult]:
    """The results of results.jsonl a resumed run keeps, by id: the last one of each mutant,
    except survivors (the tests may have changed since: they run again) and mutants listed as
    equivalent then but not in `equivalent` now (an entry found wrong is taken out: the
    mutant runs)."""
    return {mid: r for mid, r in last_results(log_path).items()
            if r.status != "survived" and not (r.status == "equivalent-listed" and mid not in (equivalent or {}))}


def report_only(out: Path, *, files=None, sample=None, seed=0, ids=None, min_score=0.95, stream=None) -> int:
    """Where a long run stands: the report of OUT/results.jsonl over the mutants selected now,
    with the equivalence list as it is now; nothing is built or run. A survivor stays one
    until a run tests it again. stream: where the summary line goes (sys.stderr as it is at
    the call, not at import: pytest swaps it)."""
    stream = stream or sys.stderr
    log_path = out / "results.jsonl"
    if not log_path.exists():
        raise UsageError(f"{log_path} does not exist: --report-only reads the results of an earlier run in --out")
    mutants = select_mutants(files, sample, seed, ids)
    equivalent = load_equivalent(EQUIVALENT_LIST)
    last = last_results(log_path)
    results = []
    for m in mutants:
        if m.mid in equivalent:
            results.append(MutantResult(m.mid, m.file, m.line, m.operator, "equivalent-listed", 0.0,
                                        m.diff((KERNELS_DIR / m.file).read_text()), equivalent[m.mid]))
        elif m.mid in last and last[m.mid].status != "equivalent-listed":  # else taken off the list: not run
            results.append(last[m.mid])
    report = summarise(results, len(mutants), sum(r.seconds for r in results), min_score,
                       population=len(all_mutants(KERNELS_DIR, files)) if sample is not None else None)
    atomic_write_bytes(out / "mutation-report.json", json.dumps(report, indent=2).encode())
    atomic_write_bytes(out / "mutation-report.md", markdown(report).encode())
    partial = " so far" if report["not_run"] else ""
    print(f"mutation score{partial} {report['score']:.3f} ({report['killed']} killed / {report['scored']} scored; "
          f"{len(report['survivors'])} survivor(s); {report['not_run']} of {len(mutants)} not run yet); "
          f"report: {out / 'mutation-report.md'}", file=stream)
    return 0 if report["score"] >= min_score and not report["not_run"] else 1


def run_mutation(out: Path, *, files=None, sample=None, seed=0, jobs=1, minutes=None, min_score=0.95,
                 tests=DEFAULT_TESTS, timeout=900.0, ids=None, stream=sys.stderr, resume=False, replay=True) -> int:
    mutants = select_mutants(files, sample, seed, ids)
    equivalent = load_equivalent(EQUIVALENT_LIST)
    out.mkdir(parents=True, exist_ok=True)
    lib_dir = out / "libs"
    lib_dir.mkdir(exist_ok=True)
    log_path = out / "results.jsonl"
    done: dict[str, MutantResult] = {}
    if resume and log_path.exists():
        done = results_to_keep(log_path, equivalent)
    elif log_path.exists():
        log_path.unlink()
    cmake, compiler = find_cmake(), find_compiler()
    todo = [m for m in mutants if m.mid not in done]
    print(f"mutate: {len(mutants)} mutant(s) ({len(mutants) - len(todo)} already done), {jobs} job(s); "
          f"preparing workspaces ...", file=stream, flush=True)
    workspaces = [Workspace(out / f"ws{j}", cmake, compiler) for j in range(jobs)]
    recorded = [t for t in tests if t in RECORDED_TESTS]
    corpus = Corpus(out, workspaces[0], recorded, timeout, stream) if replay and recorded and todo else None
    deadline = time.monotonic() + minutes * 60 if minutes else None
    results: list[MutantResult] = [done[m.mid] for m in mutants if m.mid in done]
    queue = todo
    lock = threading.Lock()
    start = time.monotonic()

    def worker(ws: Workspace):
        while True:
            with lock:
                if not queue or (deadline and time.monotonic() > deadline):
                    return
                m = queue.pop(0)
            if m.mid in equivalent:
                # the workspace's copy: the checkout may be edited while a run of hours goes on
                r = MutantResult(m.mid, m.file, m.line, m.operator, "equivalent-listed", 0.0,
                                 m.diff((ws.src / m.file).read_text()), equivalent[m.mid])
            else:
                try:
                    r = run_one(ws, m, list(tests), timeout, lib_dir, corpus)
                except Exception as exc:  # the harness, not the mutant: stop this job, say so
                    with lock:
                        errors.append(f"{m.mid} ({m.file}:{m.line}): {type(exc).__name__}: {exc}")
                    return
            with lock:
                results.append(r)
                with open(log_path, "a") as log:
                    log.write(json.dumps(asdict(r)) + "\n")
                done = len(results)
                killed = sum(x.status == "killed" for x in results)
                survived = sum(x.status == "survived" for x in results)
                print(f"[{done}/{len(mutants)} {time.monotonic() - start:.0f}s] {r.status:<17} {r.file}:{r.line} "
                      f"{r.operator} ({r.seconds:.1f}s)  killed {killed} survived {survived}", file=stream, flush=True)

    errors: list[str] = []
    threads = [threading.Thread(target=worker, args=(ws,)) for ws in workspaces]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    report = summarise(results, len(mutants), time.monotonic() - start, min_score,
                       population=len(all_mutants(KERNELS_DIR, files)) if sample is not None else None)
    atomic_write_bytes(out / "mutation-report.json", json.dumps(report, indent=2).encode())
    atomic_write_bytes(out / "mutation-report.md", markdown(report).encode())
    print(f"mutation score {report['score']:.3f} ({report['killed']} killed / {report['scored']} scored; "
          f"{len(report['survivors'])} survivor(s)); report: {out / 'mutation-report.md'}", file=stream)
    for e in errors:
        print(f"iq1m-harness mutate: a job stopped on a harness error at {e}", file=stream)
    if errors:
        return 2
    return 0 if report["score"] >= min_score else 1


def wilson_interval(killed: int, scored: int, z: float = 1.96) -> list[float]:
    """The 95% Wilson interval of the population's score when the scored mutants are a
    uniform random sample of it (--sample); a whole-population run's score is exact."""
    if not scored:
        return [0.0, 1.0]
    p = killed / scored
    centre = (p + z * z / (2 * scored)) / (1 + z * z / scored)
    half = z * math.sqrt(p * (1 - p) / scored + z * z / (4 * scored * scored)) / (1 + z * z / scored)
    return [round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4)]


def summarise(results: list[MutantResult], selected: int, elapsed: float, min_score: float,
              population: int | None = None) -> dict:
    by_status: dict[str, int] = {}
    for r in results:
        by_status[r.status] = by_status.get(r.status, 0) + 1
    killed = by_status.get("killed", 0)
    scored = killed + by_status.get("survived", 0)
    kill_times = sorted(r.seconds for r in results if r.status == "killed")
    return {
        "selected": selected, "population": population or selected, "run": len(results),
        "not_run": selected - len(results), "elapsed_s": round(elapsed, 1),
        "by_status": by_status, "killed": killed, "scored": scored,
        "score": killed / scored if scored else 1.0, "min_score": min_score,
        "score_interval_95": wilson_interval(killed, scored),
        "median_kill_s": kill_times[len(kill_times) // 2] if kill_times else None,
        "survivors": [asdict(r) for r in results if r.status == "survived"],
        "results": [asdict(r) for r in results],
    }


def markdown(r: dict) -> str:
    lines = ["# Mutation testing report", "",
             f"- {r['run']} of {r['selected']} selected mutants run in {r['elapsed_s']} s"
             + (f" ({r['not_run']} not run yet: time budget, or a run still to resume)" if r["not_run"] else ""),
             f"- status: " + ", ".join(f"{k} {v}" for k, v in sorted(r["by_status"].items())),
             f"- **score {r['score']:.3f}** ({r['killed']} killed of {r['scored']} scored; target {r['min_score']})",
             (f"- a random sample of {r['population']} mutants (`--sample`): the whole population's score lies "
              f"in [{r['score_interval_95'][0]:.3f}, {r['score_interval_95'][1]:.3f}] with 95% confidence"
              if r["population"] > r["selected"] else ""),
             f"- median time to kill: {r['median_kill_s']:.1f} s" if r["median_kill_s"] is not None else "", ""]
    if r["survivors"]:
        lines += ["## Survivors", ""]
        for s in r["survivors"]:
            lines += [f"### `{s['mid']}` {s['operator']} at {s['file']}:{s['line']}", "", "```diff", s["diff"], "```", ""]
    return "\n".join(lines) + "\n"


def add_arguments(p) -> None:
    p.add_argument("--minutes", type=float, help="time budget; mutants not started by then are reported as not run")
    p.add_argument("--files", help="comma-separated files under kernels/src to mutate (default: all code)")
    p.add_argument("--sample", type=int, help="run a random sample of this many mutants")
    p.add_argument("--seed", type=int, default=0, help="seed of the sample (default 0)")
    p.add_argument("--jobs", type=int, default=max(1, (os.cpu_count() or 2) // 2),
                   help="mutants built and tested at once (default: half the cores)")
    p.add_argument("--min-score", type=float, default=0.95, help="exit 1 below this score (default 0.95)")
    p.add_argument("--timeout", type=float, default=900.0, help="wall seconds one mutant's pytest run may take")
    p.add_argument("--out", type=Path, default=Path("iq1m-mutation"), help="output directory")
    p.add_argument("--ids", help="comma-separated mutant ids to run (e.g. the survivors of a report)")
    p.add_argument("--list", action="store_true", help="only list the selected mutants with their ids and diffs")
    p.add_argument("--resume", action="store_true",
                   help="keep the results of mutants OUT/results.jsonl already has (a long run that was stopped)")
    p.add_argument("--report-only", action="store_true",
                   help="build and run nothing: write the report of the results OUT/results.jsonl has so far "
                        "(where a long, resumed run stands), with the current equivalence list")
    p.add_argument("--no-replay", action="store_true",
                   help="run the whole suite in pytest for every mutant instead of replaying the recorded cases")


def run_from_args(args) -> int:
    if args.jobs < 1:
        raise UsageError("--jobs must be >= 1")
    files = [f for f in (args.files or "").split(",") if f] or None
    ids = [i for i in (args.ids or "").split(",") if i] or None
    if args.list:
        for m in select_mutants(files, args.sample, args.seed, ids):
            print(f"{m.mid} {m.operator}\n{m.diff((KERNELS_DIR / m.file).read_text())}\n")
        return 0
    if args.report_only:
        return report_only(args.out, files=files, sample=args.sample, seed=args.seed, ids=ids,
                           min_score=args.min_score)
    return run_mutation(args.out, files=files, sample=args.sample, seed=args.seed, jobs=args.jobs,
                        minutes=args.minutes, min_score=args.min_score, timeout=args.timeout, ids=ids,
                        resume=args.resume, replay=not args.no_replay)
