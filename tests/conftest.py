"""The repository's own tests. The pytest plugin (`harness.pytest_plugin`) comes from the
`pytest11` entry point of the installed project (`pip install -e '.[test]'`); the Hypothesis
profiles (ci, dev, fuzz, mutation) are defined in `harness/hypothesis_profiles.py`, shared
with the packaged suite `harness/suite/`, which `pytest` in the checkout also collects."""
from harness import hypothesis_profiles

hypothesis_profiles.load()


# The fast differential properties run first, so a broken kernel fails within seconds of
# the start (the C programs and the harness self-tests take minutes); then the saved
# regressions and the rest of the packaged suite, the other kernel tests, the reference's
# unit tests, and everything else in file order.
_FIRST = ("harness/suite/test_properties.py::test_op_matches_reference", "harness/suite/test_regressions.py",
          "harness/suite/", "tests/kernels/", "tests/reference/")
_LAST = ("tests/kernels/test_c_programs.py",)


def pytest_collection_modifyitems(config, items):
    def rank(item):
        node = item.nodeid
        for i, prefix in enumerate(_FIRST):
            if node.startswith(prefix) and not node.startswith(_LAST):
                return i
        return len(_FIRST) + (1 if node.startswith(_LAST) else 0)

    items.sort(key=rank)  # stable: file order within a rank
