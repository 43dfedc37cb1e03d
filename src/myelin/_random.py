"""Random number generation: one default generator that ``myelin.manual_seed`` reseeds.

Initialisation, dropout masks and DataLoader shuffling all draw from a :class:`Generator`
(the default one unless a ``generator=`` is passed), so ``manual_seed(n)`` makes a whole
training run reproducible.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from typing import Any

import numpy as np


class Generator:
    """A seedable source of random numbers (``torch.Generator``), over NumPy's PCG64.

    >>> g = myelin.Generator().manual_seed(42)
    >>> loader = DataLoader(ds, batch_size=16, shuffle=True, generator=g)
    """

    def __init__(self, seed: int | None = None) -> None:
        self._seed = None
        self.rng = np.random.default_rng(seed)
        if seed is not None:
            self._seed = operator.index(seed)

    def manual_seed(self, seed: int) -> Generator:
        """Reseed in place; returns ``self`` (as PyTorch does)."""
        try:
            seed = operator.index(seed)
        except TypeError:
            raise TypeError(f"seed must be an int, got {type(seed).__name__}") from None
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        self._seed = seed
        self.rng = np.random.default_rng(seed)
        return self

    def initial_seed(self) -> int | None:
        """The seed this generator was last seeded with (None if never)."""
        return self._seed

    def get_state(self) -> Mapping[str, Any]:
        """The NumPy bit generator's state (a dict), for :meth:`set_state`."""
        return self.rng.bit_generator.state

    def set_state(self, state: dict) -> None:
        """Restore a state returned by :meth:`get_state`."""
        self.rng.bit_generator.state = state


default_generator = Generator()


def manual_seed(seed: int) -> Generator:
    """Seed the default generator: initialisation, dropout and shuffling become reproducible."""
    return default_generator.manual_seed(seed)


def get_rng(generator: Generator | None = None) -> np.random.Generator:
    """The NumPy generator behind ``generator`` (the default one when None)."""
    if generator is None:
        return default_generator.rng
    if not isinstance(generator, Generator):
        raise TypeError(f"generator must be a myelin.Generator, got {type(generator).__name__}")
    return generator.rng
