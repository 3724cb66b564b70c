"""What a wheel of the project carries, checked without building one (the slow
test_installed_suite.py builds and installs one): pyproject.toml's explicit package list
names every Python package of the tree, and every folder of kernels/."""
import tomllib

from harness.build import PROJECT_ROOT


def _config() -> dict:
    return tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())


def test_every_python_package_is_listed():
    listed = set(_config()["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(PROJECT_ROOT).parts)
             for top in ("harness", "reference") for p in (PROJECT_ROOT / top).rglob("__init__.py")}
    assert found <= listed, f"packages missing from pyproject.toml: {sorted(found - listed)}"


def test_every_kernels_folder_is_shipped():
    cfg = _config()["tool"]["setuptools"]
    assert cfg["package-dir"]["harness._kernels"] == "kernels"
    listed = {p for p in cfg["packages"] if p.startswith("harness._kernels")}
    kernels = PROJECT_ROOT / "kernels"
    folders = {".".join(("harness._kernels", *d.relative_to(kernels).parts)).rstrip(".")
               for d in [kernels, *kernels.rglob("*")] if d.is_dir() and "__pycache__" not in d.parts
               and not d.name.startswith(("build", "."))}
    assert folders <= listed, f"kernels/ folders missing from pyproject.toml: {sorted(folders - listed)}"
