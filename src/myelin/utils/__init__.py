"""``myelin.utils``: ``myelin.utils.data`` is :mod:`myelin.data` (PyTorch's import path)."""

import sys

from myelin import data

sys.modules[__name__ + ".data"] = data

__all__ = ["data"]
