"""Shared pytest fixtures. Keep this small: fixtures used by more than one test module."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded numpy generator: each test gets the same, fresh random stream."""
    return np.random.default_rng(0)


@pytest.fixture(scope="module")
def app_server(tmp_path_factory):
    """The web app (``app.py --tiny-random``) in a child process, one per test module that
    asks for it; ``.url`` is its address. Stopped when the module's tests are done."""
    from _app_server import AppServer

    log = tmp_path_factory.mktemp("app") / "app.log"
    with AppServer(log) as server:
        yield server
