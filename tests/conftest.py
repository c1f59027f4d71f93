"""Shared test settings: hypothesis profiles, and a Keras cache of its own for every test.

- "ci" (the default): derandomized, no example database, no deadline. Every run draws the same
  examples, so a red CI run is reproduced by running the same test locally, and no run turns red
  on a change that has nothing to do with it; deadlines would only add flakes on shared machines.
- "wide" (on demand): `FASTCONV_HYPOTHESIS=wide pytest tests/test_property_wide.py` or
  `pytest --hypothesis-profile=wide ...`: random seeds, the local example database (a failure is
  replayed first on the next run), 10x the examples (~10 min for test_property_wide.py).

max_examples is the base count: tests/test_property_wide.py scales it per test by the test's cost;
tests that set their own max_examples keep it under either profile.
"""
import os

import pytest
from hypothesis import HealthCheck, settings

_SLOW = [HealthCheck.too_slow, HealthCheck.data_too_large]

settings.register_profile("ci", max_examples=350, derandomize=True, database=None, deadline=None,
                          print_blob=True, suppress_health_check=_SLOW)
settings.register_profile("wide", max_examples=3500, deadline=None, print_blob=True,
                          suppress_health_check=_SLOW)
settings.load_profile(os.environ.get("FASTCONV_HYPOTHESIS", "ci"))


@pytest.fixture(autouse=True)
def _empty_keras_cache(tmp_path_factory, monkeypatch):
    """The dataset loaders read Keras's downloads (KERAS_HOME, ~/.keras) when no path is given: each
    test starts from an empty cache, so a developer's own downloads never change what a test reads."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path_factory.mktemp("keras_home")))
