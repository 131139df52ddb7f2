"""Fuzz suite fixtures and Hypothesis profiles.

Profiles (select with HYPOTHESIS_PROFILE=name; default "ci"):
  ci    derandomized (the same cases on every run), max_examples per test chosen so that the suite runs more than
        1,000 generated cases (CLI, Python API and the C++ runtime) in a few minutes on 2 cores;
  long  random, 100x the ci counts per reader (benchmarks/fuzz.py runs it and writes the report);
  dev   random, like ci in size: a different sample each run, for hunting.
Every case runs with a soft time limit (harness.SOFT_LIMIT_S); faulthandler dumps all stacks and exits if one
case blocks for 10 minutes, so a real hang fails the run instead of stalling it.
"""

from __future__ import annotations

import faulthandler
import os

import pytest
from hypothesis import HealthCheck, settings

# examples per reader test in the ci profile (tests/fuzz/test_fuzz_readers.py scales them)
CI_EXAMPLES = int(os.environ.get("REPMEDSAM_FUZZ_CI_EXAMPLES", "0")) or None

_common = dict(deadline=None, print_blob=True, database=None,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much,
                                      HealthCheck.function_scoped_fixture, HealthCheck.large_base_example])
settings.register_profile("ci", derandomize=True, max_examples=100, **_common)
settings.register_profile("dev", derandomize=False, max_examples=100, **_common)
settings.register_profile("long", derandomize=False, max_examples=10_000, **_common)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="session")
def fuzz_model(tmp_path_factory):
    """The toy model folder (tests/python/conftest.py): instant to compile, the real model interface."""
    from tests.python.conftest import build_toy_model

    return build_toy_model(tmp_path_factory.mktemp("fuzz_toy") / "model")


@pytest.fixture(scope="session")
def fuzz_root(tmp_path_factory):
    """A folder per session holding one sandbox folder per case."""
    return tmp_path_factory.mktemp("fuzz_cases")


@pytest.fixture(autouse=True, scope="session")
def _watchdog():
    faulthandler.dump_traceback_later(600, repeat=True, exit=False)
    yield
    faulthandler.cancel_dump_traceback_later()
