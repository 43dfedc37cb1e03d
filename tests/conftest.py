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


@pytest.fixture(autouse=True)
def _contention_backoff_back_on():
    """A test may turn the contention backoff off (to count parallel regions on a busy
    machine); the next test starts with it on again."""
    yield
    from myelin import _kernels

    _kernels.backoff_set(0)
