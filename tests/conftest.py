"""Shared pytest fixtures. Keep this small: fixtures used by more than one test module."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded numpy generator: each test gets the same, fresh random stream."""
    return np.random.default_rng(0)
