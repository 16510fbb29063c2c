"""Every flow test shares the session's Prefect server (see tests/conftest.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _shared_prefect_server(prefect_server):
    yield
