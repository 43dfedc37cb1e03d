"""Fixtures of the kernel-core tests: every dispatch path, and a seeded generator."""

import numpy as np
import pytest

from myelin import _config


@pytest.fixture(params=_config.available_isas())
def isa(request):
    """Run the test on one instruction-set path (each the CPU supports), then restore the old."""
    previous = _config.current_isa()
    _config.set_isa(request.param)
    try:
        yield request.param
    finally:
        _config.set_isa(previous)


@pytest.fixture
def rng():
    return np.random.default_rng(20261124)
