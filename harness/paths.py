"""Where the harness finds the kernel sources and keeps its cache, both in a source checkout
and installed from a wheel.

- Source checkout (an editable install, or `harness/` imported from the checkout): the
  kernels are `<checkout>/kernels` and the cache is `<checkout>/.iq1m`, as they always were.
- Installed (`pip install iq1m-harness-*.whl`, or a non-editable install of a checkout):
  the kernel sources shipped inside the package (`harness/_kernels`, package data), built
  on first use into a per-user cache, `$XDG_CACHE_HOME/iq1m-harness` or
  `~/.cache/iq1m-harness`.

Environment overrides: IQ1M_KERNELS_DIR (kernel sources), IQ1M_CACHE_DIR (the cache: builds
in `build/`, in-flight cases in `runs/`), IQ1M_RUNS_DIR (in-flight cases only).

Nothing here imports the rest of the harness, so every module can use it.
"""
from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
# The directory the imported `harness` package lives in: the checkout, or site-packages.
# (What `harness.build.PROJECT_ROOT` has always been.)
IMPORT_ROOT = PACKAGE_DIR.parent
PACKAGED_KERNELS = PACKAGE_DIR / "_kernels"   # where a wheel carries kernels/
SUITE_DIR = PACKAGE_DIR / "suite"             # the installable property suite (pytest --pyargs harness.suite)
REGRESSIONS_DIR = SUITE_DIR / "regressions"   # saved cases it replays


def checkout_root() -> Path | None:
    """The source checkout this harness runs from, or None when it runs installed."""
    root = IMPORT_ROOT
    if (root / "pyproject.toml").is_file() and (root / "kernels" / "CMakeLists.txt").is_file():
        return root
    return None


def kernels_dir() -> Path:
    """The kernel sources CMake builds: IQ1M_KERNELS_DIR, else the checkout's kernels/, else
    the copy shipped in the package."""
    if os.environ.get("IQ1M_KERNELS_DIR"):
        return Path(os.environ["IQ1M_KERNELS_DIR"])
    root = checkout_root()
    return root / "kernels" if root else PACKAGED_KERNELS


def cache_home() -> Path:
    """The harness's writable cache: IQ1M_CACHE_DIR, else `.iq1m/` of the checkout, else the
    user cache (`$XDG_CACHE_HOME/iq1m-harness`, default `~/.cache/iq1m-harness`)."""
    if os.environ.get("IQ1M_CACHE_DIR"):
        return Path(os.environ["IQ1M_CACHE_DIR"])
    root = checkout_root()
    if root:
        return root / ".iq1m"
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return base / "iq1m-harness"


def runs_dir() -> Path:
    """Where runners keep in-flight cases by default: IQ1M_RUNS_DIR, else `runs/` of the cache."""
    return Path(os.environ.get("IQ1M_RUNS_DIR") or cache_home() / "runs")

