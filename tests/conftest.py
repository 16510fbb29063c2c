"""Shared fixtures: the real demo data (pulled once through the registry) and seeded RNGs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dh.config import DATA_RAW, apply_env_defaults

apply_env_defaults()


@pytest.fixture(scope="session")
def raw_data() -> Path:
    """`data/raw/`, with every registered demo file present and hash-verified."""
    from dh import registry

    registry.pull()
    return DATA_RAW


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded random generator for synthetic perturbations of real data."""
    return np.random.default_rng(20261203)


@pytest.fixture(scope="session")
def prefect_server():
    """One temporary Prefect API server (SQLite) for every flow test in the session.

    Flows otherwise start an ephemeral server per run, which costs 15-20 s each and can time
    out on a busy 2-core machine.
    """
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield
