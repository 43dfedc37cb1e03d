"""Type aliases of myelin's public signatures.

Modules import them under ``typing.TYPE_CHECKING`` only: with ``from __future__ import
annotations`` the annotations are never evaluated at run time.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import IO, TYPE_CHECKING, Any, TypeAlias, Union

from numpy.typing import ArrayLike, DTypeLike, NDArray

if TYPE_CHECKING:
    from myelin._random import Generator
    from myelin.tensor import Tensor

__all__ = [
    "ArrayLike",
    "DTypeLike",
    "FileLike",
    "GeneratorLike",
    "Logs",
    "NDArray",
    "ParamsT",
    "PathLike",
    "TensorLike",
]

#: A Tensor, an ndarray, or anything ``np.asarray`` takes (nested lists, scalars).
TensorLike: TypeAlias = Union["Tensor", ArrayLike]
#: A file name.
PathLike: TypeAlias = Union[str, "os.PathLike[str]"]
#: A file name or a binary file object.
FileLike: TypeAlias = Union[str, "os.PathLike[str]", IO[bytes]]
#: A ``myelin.Generator``, or None for the default generator.
GeneratorLike: TypeAlias = Union["Generator", None]
#: The ``logs`` dict that ``fit`` hands to callbacks (None outside of ``fit``).
Logs: TypeAlias = dict[str, Any] | None
#: What optimizers take: parameters, or parameter groups (dicts with a ``"params"`` entry).
ParamsT: TypeAlias = Iterable["Tensor"] | Iterable[dict[str, Any]]
