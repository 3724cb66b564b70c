"""Hypothesis profiles shared by the whole suite.

ci:   deterministic (derandomized), modest budgets; the default when CI is set.
dev:  random, modest budgets; the default on a developer machine.
fuzz: large budgets, used by campaigns and long local searches.
mutation: ci without shrinking, used by `iq1m-harness mutate`.
Select with HYPOTHESIS_PROFILE=name.
"""
import os

from hypothesis import HealthCheck, Phase, settings

_common = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("ci", derandomize=True, max_examples=60, print_blob=True, **_common)
settings.register_profile("dev", max_examples=60, **_common)
settings.register_profile("fuzz", max_examples=5000, **_common)
# The ci profile's examples without shrinking: kills exactly the same mutants, sooner.
settings.register_profile("mutation", derandomize=True, max_examples=60, phases=[Phase.explicit, Phase.generate],
                          **_common)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))

pytest_plugins = ["harness.pytest_plugin"]


# The fast differential properties run first, so a broken kernel fails within seconds of
# the start (the C programs and the harness self-tests take minutes); then the other kernel
# tests and saved regressions, the reference's unit tests, and everything else in file order.
_FIRST = ("tests/kernels/test_properties.py::test_op_matches_reference", "tests/test_regressions.py",
          "tests/kernels/test_properties.py", "tests/kernels/", "tests/reference/")
_LAST = ("tests/kernels/test_c_programs.py",)


def pytest_collection_modifyitems(config, items):
    def rank(item):
        node = item.nodeid
        for i, prefix in enumerate(_FIRST):
            if node.startswith(prefix) and not node.startswith(_LAST):
                return i
        return len(_FIRST) + (1 if node.startswith(_LAST) else 0)

    items.sort(key=rank)  # stable: file order within a rank
