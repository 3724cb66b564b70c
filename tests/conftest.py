"""The repository's own tests. The pytest plugin (`harness.pytest_plugin`) comes from the
`pytest11` entry point of the installed project (`pip install -e '.[test]'`); the Hypothesis
profiles (ci, dev, fuzz, mutation) are defined in `harness/hypothesis_profiles.py`, shared
with the packaged suite `harness/suite/`, which `pytest` in the checkout also collects."""
from harness import hypothesis_profiles

hypothesis_profiles.load()
