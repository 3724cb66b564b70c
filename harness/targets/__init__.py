"""The libraries under test, one `Target` class per kind, registered in `TARGETS`.

A case file records the target it ran on (`Case.target`, from `Target.to_dict()`), so
`repro` can replay it there; `from_dict` turns that record (or the command line's choice)
back into a Target.
"""
from __future__ import annotations

from ..errors import UsageError
from .base import Finding, Target
from .ggml import GgmlTarget, ggml_available, parse_env
from .kernels import KernelsTarget, sanitizer_environment

TARGETS: dict[str, type[Target]] = {cls.name: cls for cls in (KernelsTarget, GgmlTarget)}
TARGET_NAMES = tuple(TARGETS)


def from_dict(d: dict | None, *, variant: str = "release", strict: bool = False) -> Target:
    """The Target a case records (`{}` or {"name": "kernels"}: the kernels, built as `variant`)."""
    return from_choice(None, variant=variant, strict=strict, recorded=d)


def from_choice(name: str | None, *, variant: str = "release", lib_dir: str | None = None,
                env: dict[str, str] | None = None, strict: bool = False, recorded: dict | None = None) -> Target:
    """The Target a command line asks for. `recorded`: the target a case file names, the
    default for whatever the command line leaves open (replays)."""
    recorded = recorded or {}
    name = name or recorded.get("name", KernelsTarget.name)
    if name not in TARGETS:
        raise UsageError(f"unknown target {name!r}; choose from {', '.join(TARGETS)}")
    if name == KernelsTarget.name:
        if lib_dir or env:
            raise UsageError("--ggml-lib-dir and --ggml-env need --target ggml")
        return KernelsTarget(variant)
    same = recorded.get("name") == name
    return GgmlTarget(lib_dir if lib_dir is not None else (recorded.get("lib_dir", "") if same else ""),
                      env if env is not None else (dict(recorded.get("env", {})) if same else {}), strict=strict)


def library_named_by(recorded: dict, variant: str) -> str | None:
    """The file or folder of code a case's record would have a replay load, when it names
    one (a ggml build's folder, a prebuilt kernel library): loading it runs its code, so a
    replay asks for it explicitly."""
    if recorded.get("name", KernelsTarget.name) == KernelsTarget.name:
        return variant.split(":", 1)[1] if variant.startswith("prebuilt:") else None
    return recorded.get("lib_dir") or None


def open_binding(spec: dict):
    """Inside the worker: (binding, hello) of the target the parent's spec names."""
    return TARGETS[spec["name"]].open_binding(spec)


__all__ = ["Finding", "GgmlTarget", "KernelsTarget", "TARGETS", "TARGET_NAMES", "Target", "from_choice", "from_dict",
           "ggml_available", "library_named_by", "open_binding", "parse_env", "sanitizer_environment"]
