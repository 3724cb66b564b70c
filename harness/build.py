"""Configure and build variants of kernels/ with CMake, cached by a hash of what goes in.

A variant is one of `release`, `asan`, `tsan`, `no-direct` or `fault:NAME`, or
`prebuilt:PATH` for a library built elsewhere (used as is). The cache key
covers the kernel sources, the CMake options, the compiler and the CMake version, so a
second call with nothing changed returns at once. The compiler output is streamed live
(subprocess-tee) and kept in `build.log` beside the library.
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from .errors import BuildError, UsageError
from .paths import cache_home, kernels_dir

PROJECT_ROOT = Path(__file__).resolve().parent.parent
KERNELS_DIR = kernels_dir()  # the checkout's kernels/, or the sources shipped in the package (harness/paths.py)
LIBRARY_NAME = "libiq1m.so"
_FAULT_NAME = re.compile(r"^[a-z0-9_]+$")


@dataclass(frozen=True)
class Variant:
    name: str
    cmake_options: tuple[str, ...]
    sanitizer: str = ""  # "", "address,undefined" or "thread": the worker preloads its runtime

    @property
    def slug(self) -> str:
        return re.sub(r"[^A-Za-z0-9_.]+", "-", self.name).strip("-")[-60:]


def parse_variant(name: str) -> Variant:
    """Turn a variant name into CMake options; unknown names are a UsageError."""
    if name == "release":
        return Variant(name, ("-DCMAKE_BUILD_TYPE=Release",))
    if name == "asan":
        return Variant(name, ("-DCMAKE_BUILD_TYPE=RelWithDebInfo", "-DIQ1M_SANITIZE=address,undefined"),
                       sanitizer="address,undefined")
    if name == "tsan":
        return Variant(name, ("-DCMAKE_BUILD_TYPE=RelWithDebInfo", "-DIQ1M_SANITIZE=thread"), sanitizer="thread")
    if name == "no-direct":
        return Variant(name, ("-DCMAKE_BUILD_TYPE=Release", "-DIQ1M_DIRECT_KERNEL=OFF"))
    if name.startswith("prebuilt:"):
        return Variant(name, (), sanitizer=_linked_sanitizer(Path(name.split(":", 1)[1])))
    if name.startswith("fault:"):
        fault = name.split(":", 1)[1]
        if not _FAULT_NAME.match(fault):
            raise UsageError(f"bad fault name {fault!r}: use lowercase letters, digits and _ (see kernels/FAULTS.md)")
        return Variant(name, ("-DCMAKE_BUILD_TYPE=Release", f"-DIQ1M_FAULT={fault}"))
    raise UsageError(f"unknown build variant {name!r}: use release, asan, tsan, no-direct, fault:NAME "
                     f"or prebuilt:PATH")


def _linked_sanitizer(library: Path) -> str:
    """The sanitizer runtime a prebuilt library needs preloaded (from its DT_NEEDED names)."""
    try:
        data = library.read_bytes()
    except OSError:
        return ""  # reported as missing when it is built
    if b"libtsan.so" in data:
        return "thread"
    if b"libasan.so" in data:
        return "address,undefined"
    return ""


def find_cmake() -> str:
    try:
        import cmake  # the PyPI package: no system CMake needed

        candidate = Path(cmake.CMAKE_BIN_DIR) / "cmake"
        if candidate.exists():
            return str(candidate)
    except ImportError:
        pass
    found = shutil.which("cmake")
    if not found:
        raise UsageError("CMake not found: install the project (pip install -e .) which brings cmake from PyPI")
    return found


def find_compiler() -> str:
    for name in (os.environ.get("CC", ""), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return shutil.which(name)
    raise UsageError("no C compiler found: install gcc (e.g. apt-get install gcc) or set CC")


def _tool_version(tool: str) -> str:
    try:
        out = subprocess.run([tool, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UsageError(f"{tool} does not run ({exc}); reinstall it") from exc
    return out.splitlines()[0] if out else tool


def source_digest() -> str:
    """Hash of every file the library is built from."""
    if not (KERNELS_DIR / "CMakeLists.txt").exists():
        raise UsageError(f"kernel sources not found at {KERNELS_DIR}: reinstall iq1m-harness (a wheel carries them "
                         f"in harness/_kernels) or set IQ1M_KERNELS_DIR to a checkout's kernels/")
    h = hashlib.sha256()
    for path in sorted(p for sub in ("CMakeLists.txt", "include", "src") for p in _files(KERNELS_DIR / sub)):
        h.update(str(path.relative_to(KERNELS_DIR)).encode())
        h.update(b"\0")
        h.update(path.read_bytes())
        h.update(b"\0")
    return h.hexdigest()


def _files(path: Path):
    if path.is_file():
        yield path
    elif path.is_dir():
        yield from (p for p in path.rglob("*") if p.is_file())


def cache_root() -> Path:
    return cache_home() / "build"


class _LogSink:
    """File-like target for subprocess-tee: every line to the log, optionally to stderr."""

    def __init__(self, log, echo: bool):
        self.log = log
        self.echo = echo

    def write(self, text: str) -> None:
        self.log.write(text)
        self.log.flush()
        if self.echo:
            sys.stderr.write(text)
            sys.stderr.flush()


def build(variant_name: str = "release", *, echo: bool = False, rebuild: bool = False) -> Path:
    """Build (or reuse) a variant and return the path of its shared library."""
    variant = parse_variant(variant_name)
    if variant.name.startswith("prebuilt:"):  # a library built elsewhere (mutants, someone's own build)
        library = Path(variant.name.split(":", 1)[1]).expanduser().resolve()
        if not library.is_file():
            raise UsageError(f"prebuilt library {library} does not exist")
        return library
    cmake_bin = find_cmake()
    compiler = find_compiler()
    key = hashlib.sha256("\n".join([str(KERNELS_DIR), source_digest(), *variant.cmake_options, _tool_version(compiler),
                                    _tool_version(cmake_bin)]).encode()).hexdigest()[:16]
    build_dir = cache_root() / f"{variant.slug}-{key}"
    build_dir.mkdir(parents=True, exist_ok=True)
    library = build_dir / LIBRARY_NAME
    stamp = build_dir / "stamp"
    with open(build_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # concurrent campaigns build each variant once
        if not rebuild and _cache_intact(stamp, library, key):
            return library
        stamp.unlink(missing_ok=True)
        log_path = build_dir / "build.log"
        with open(log_path, "w") as log:
            sink = _LogSink(log, echo)
            steps = [
                [cmake_bin, "-S", str(KERNELS_DIR), "-B", str(build_dir / "cmake"), f"-DCMAKE_C_COMPILER={compiler}",
                 *variant.cmake_options],
                [cmake_bin, "--build", str(build_dir / "cmake"), "--target", "iq1m", "-j", str(os.cpu_count() or 2)],
            ]
            for cmd in steps:
                _run_logged(cmd, sink, log_path, variant.name)
        built = sorted((build_dir / "cmake").rglob(LIBRARY_NAME))
        if not built:
            raise BuildError(f"build of {variant.name} finished but {library} is missing; log: {log_path}", log_path)
        # a new inode, never an in-place rewrite: a worker may have the old library mapped,
        # and truncating a mapped file kills it with SIGBUS/SIGSEGV
        tmp = library.with_name(library.name + ".tmp")
        shutil.copy2(built[0], tmp)
        os.replace(tmp, library)
        stamp.write_text(f"{key} {_file_digest(library)}")
        return library


def build_tree(variant_name: str = "release", target: str | None = None) -> Path:
    """Build every CMake target of a variant (the library, the C tests, the benchmark), or
    only `target` (e.g. "iq1m_peak"), and return the CMake build directory, where `ctest`
    runs. CMake's own dependency tracking makes a second call cheap."""
    library = build(variant_name)
    tree = library.parent / "cmake"
    log_path = library.parent / f"build-{target or 'all'}.log"
    with open(log_path, "w") as log:
        _run_logged([find_cmake(), "--build", str(tree), "-j", str(os.cpu_count() or 2),
                     *(["--target", target] if target else [])], _LogSink(log, False), log_path, variant_name)
    return tree


def find_ctest() -> str:
    ctest = Path(find_cmake()).with_name("ctest")
    return str(ctest) if ctest.exists() else (shutil.which("ctest") or "ctest")


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _cache_intact(stamp: Path, library: Path, key: str) -> bool:
    """The cached build is reused only if its stamp names this key and the library's bytes
    are the ones built (a truncated or overwritten library is rebuilt, not loaded)."""
    try:
        stamp_key, digest = stamp.read_text().split()
        return stamp_key == key and _file_digest(library) == digest
    except (OSError, ValueError):
        return False


def _run_logged(cmd: list[str], sink: _LogSink, log_path: Path, variant: str) -> None:
    import subprocess_tee

    sink.write("$ " + " ".join(cmd) + "\n")
    result = subprocess_tee.run(cmd, stdout=sink, stderr=sink, quiet=False)
    if result.returncode != 0:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-25:])
        raise BuildError(f"building variant {variant} failed (exit {result.returncode}); full log: {log_path}\n{tail}",
                         log_path, tail)
