"""Hypothesis profiles for the packaged suite (ci when CI is set, else dev; HYPOTHESIS_PROFILE
selects another), the same definitions as the repository's tests use."""
from harness import hypothesis_profiles

hypothesis_profiles.load()
