"""The differential property suite, installable: run it against your own build with

    pytest --pyargs harness.suite --iq1m-target ggml --iq1m-ggml-lib-dir=build/bin \\
        --iq1m-cases-dir=iq1m-failures --junitxml=iq1m-junit.xml

(or without `--iq1m-target ggml`: against the project's own kernels, built on first use).
`test_properties.py` runs Hypothesis-generated cases, `test_regressions.py` replays the
saved cases in `regressions/` (and those in any `--iq1m-regressions-dir DIR`). The plugin
(`harness.pytest_plugin`, a pytest11 entry point) supplies the options and fixtures.
"""
