"""Where myelin's warnings point: at the user's line that led to them.

This module stays plain Python (it is not among the modules CMakeLists.txt compiles): it reads
the Python frames of the stack, and functions compiled by Cython have none, so the frames it
sees are exactly those ``warnings.warn`` counts its ``stacklevel`` in.
"""

from __future__ import annotations

import os
import sys
from typing import Any

_HERE = os.path.dirname(os.path.abspath(__file__))


def stacklevel() -> int:
    """The ``stacklevel`` for a ``warnings.warn`` made by the caller of this function that
    points the warning at the first frame outside myelin."""
    frame: Any = sys._getframe(1)
    level = 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_HERE):
        frame = frame.f_back
        level += 1
    return level
