"""Where the harness finds the kernel sources and its cache (checkout vs installed), and that
its worker runs this harness whatever the current directory holds."""
from pathlib import Path

from harness import paths
from harness.build import PROJECT_ROOT


def test_a_checkout_keeps_its_sources_and_cache(monkeypatch):
    for name in ("IQ1M_CACHE_DIR", "IQ1M_KERNELS_DIR", "IQ1M_RUNS_DIR"):
        monkeypatch.delenv(name, raising=False)
    assert paths.checkout_root() == PROJECT_ROOT
    assert paths.kernels_dir() == PROJECT_ROOT / "kernels"
    assert paths.cache_home() == PROJECT_ROOT / ".iq1m"
    assert paths.runs_dir() == PROJECT_ROOT / ".iq1m" / "runs"
    monkeypatch.setenv("IQ1M_CACHE_DIR", "/elsewhere")
    assert paths.cache_home() == Path("/elsewhere") and paths.runs_dir() == Path("/elsewhere/runs")


def test_installed_uses_the_packaged_sources_and_the_user_cache(monkeypatch, tmp_path):
    for name in ("IQ1M_CACHE_DIR", "IQ1M_KERNELS_DIR", "IQ1M_RUNS_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(paths, "IMPORT_ROOT", tmp_path / "site-packages")  # no checkout around it
    assert paths.checkout_root() is None
    assert paths.kernels_dir() == paths.PACKAGED_KERNELS
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert paths.cache_home() == tmp_path / "xdg" / "iq1m-harness"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")  # the XDG spec: only absolute paths count
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert paths.cache_home() == tmp_path / "home" / ".cache" / "iq1m-harness"



def test_the_worker_runs_this_harness_not_the_current_directorys(tmp_path, monkeypatch):
    """Run from a project that has a `harness/` folder of its own, the worker must still
    import the harness this process runs (installed or from the checkout)."""
    from harness.targets import KernelsTarget
    from harness.worker import Worker

    decoy = tmp_path / "harness"
    decoy.mkdir()
    (decoy / "__init__.py").write_text("raise SystemExit('a decoy harness was imported')\n")
    (decoy / "_worker_main.py").write_text("")
    target = KernelsTarget("release")
    spec = target.prepare()
    monkeypatch.chdir(tmp_path)
    worker = Worker(spec, tmp_path / "logs", env=target.worker_env())
    try:
        assert worker.start()["ready"]
    finally:
        worker.close()
