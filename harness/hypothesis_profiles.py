"""Hypothesis profiles of the harness's test suites (the packaged `harness.suite` and the
repository's `tests/`), defined once here.

ci:       deterministic (derandomized), modest budgets; the default when CI is set.
dev:      random, modest budgets; the default on a developer machine.
fuzz:     large budgets, for long local searches.
mutation: ci without shrinking, used by `iq1m-harness mutate`.
Select with HYPOTHESIS_PROFILE=name.

Loaded by the suites' conftest.py files, not by the pytest plugin: the plugin is active in
every pytest session of an environment that has the harness installed, and must not change
another project's Hypothesis settings.
"""
from __future__ import annotations

import os

PROFILES = ("ci", "dev", "fuzz", "mutation")


def register() -> None:
    from hypothesis import HealthCheck, Phase, settings

    common = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    settings.register_profile("ci", derandomize=True, max_examples=60, print_blob=True, **common)
    settings.register_profile("dev", max_examples=60, **common)
    settings.register_profile("fuzz", max_examples=5000, **common)
    # The ci profile's examples without shrinking: kills exactly the same mutants, sooner.
    settings.register_profile("mutation", derandomize=True, max_examples=60,
                              phases=[Phase.explicit, Phase.generate], **common)


def selected() -> str:
    """HYPOTHESIS_PROFILE, else ci when CI is set, else dev."""
    return os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev")


def load() -> str:
    """Register the profiles and load the selected one; returns its name."""
    from hypothesis import settings

    register()
    name = selected()
    settings.load_profile(name)  # an unknown name raises InvalidArgument listing the registered ones
    return name
