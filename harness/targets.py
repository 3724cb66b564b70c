"""What a case runs on: the project's kernels (`kernels`, the default) or a ggml build (`ggml`).

A `Target` is recorded in every case file (`info["target"]`), so `repro` replays a case on
the implementation it was found on. For ggml it names the library directory and the
environment the worker ran with (e.g. GGML_CPU_TILED_MM=0).

The ggml libraries come from `--ggml-lib-dir DIR` (anyone's own build: the directory with
libggml*.so, e.g. build/bin of llama.cpp or ik_llama.cpp) or, without it, from the
installed llama-cpp-python package (`pip install 'iq1m-harness[ggml]'`), which builds ggml
from source on install and ships its libraries in llama_cpp/lib.

Differences between the targets the checks take into account:
- kernels promise bit-exactness (docs/numerics.md); ggml is checked against the float64
  bound, using ggml's own Q8_K activation bytes.
- ISA and repack threshold are options of our kernels only: on ggml a case's run star
  varies the thread count (and fused/unfused for moe_up_gate) only.
- invariances (thread count, batch composition) are failures for the kernels and findings
  for ggml, failures there only when asked (`strict`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from .errors import UsageError

TARGETS = ("kernels", "ggml")
# Set in every ggml worker: mainline's abort path would otherwise try to attach gdb.
GGML_BASE_ENV = {"GGML_NO_BACKTRACE": "1"}


@dataclass
class Target:
    name: str = "kernels"
    lib_dir: str = ""                          # ggml: directory of libggml*.so ("" = llama-cpp-python's)
    env: dict[str, str] = field(default_factory=dict)   # ggml: extra environment of the worker
    strict: bool = False                       # invariance findings fail (always true for kernels)

    def __post_init__(self):
        if self.name not in TARGETS:
            raise UsageError(f"unknown target {self.name!r}; choose from {', '.join(TARGETS)}")

    @property
    def is_ggml(self) -> bool:
        return self.name == "ggml"

    @property
    def invariance_fails(self) -> bool:
        return not self.is_ggml or self.strict

    def to_dict(self) -> dict:
        d = {"name": self.name}
        if self.is_ggml:
            d.update(lib_dir=self.lib_dir, env=dict(self.env))
        return d

    @classmethod
    def from_dict(cls, d: dict | None, *, strict: bool = False) -> "Target":
        d = d or {}
        return cls(name=d.get("name", "kernels"), lib_dir=d.get("lib_dir", ""), env=dict(d.get("env", {})),
                   strict=strict)

    def label(self) -> str:
        if not self.is_ggml:
            return "kernels"
        env = " ".join(f"{k}={v}" for k, v in sorted(self.env.items()))
        return f"ggml ({self.lib_dir or 'llama-cpp-python'}{', ' + env if env else ''})"

    def worker_env(self) -> dict[str, str]:
        return dict(GGML_BASE_ENV, **self.env) if self.is_ggml else {}

    def resolved_lib_dir(self) -> Path:
        return resolve_ggml_lib_dir(self.lib_dir or None)


def parse_env(items: list[str] | None) -> dict[str, str]:
    """['GGML_CPU_TILED_MM=0', ...] -> dict; a one-line UsageError for a malformed item."""
    env = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--ggml-env expects NAME=VALUE, got {item!r}")
        env[key] = value
    return env


def llama_cpp_lib_dir() -> Path | None:
    """The directory of the libggml*.so files of an installed llama-cpp-python, or None."""
    import importlib.util

    from .ggml_binding import find_libraries

    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        root = Path(root)
        for cand in [root / "lib", root] + sorted(p for p in root.rglob("*") if p.is_dir()):
            if find_libraries(cand):
                return cand
    return None


def resolve_ggml_lib_dir(lib_dir: str | os.PathLike | None) -> Path:
    from .ggml_binding import find_libraries

    if lib_dir:
        path = Path(lib_dir).expanduser().resolve()
        if not path.is_dir():
            raise UsageError(f"--ggml-lib-dir {lib_dir}: no such directory")
        if not find_libraries(path):
            raise UsageError(f"--ggml-lib-dir {lib_dir}: no libggml.so or libggml-base.so in it "
                             f"(point it at the directory holding your build's libggml*.so, e.g. build/bin)")
        return path
    found = llama_cpp_lib_dir()
    if found is None:
        raise UsageError("the ggml target needs ggml's shared libraries: pip install -e '.[ggml]' "
                         "(llama-cpp-python, builds ggml from source) or pass --ggml-lib-dir DIR")
    return found


def ggml_available() -> str | None:
    """None when the ggml target can run here, else the reason it cannot."""
    try:
        resolve_ggml_lib_dir(None)
    except UsageError as exc:
        return str(exc)
    return None
