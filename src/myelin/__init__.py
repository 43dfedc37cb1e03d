"""myelin: a NumPy-compatible neural-network core on hand-written C kernels.

``myelin.ops`` runs the kernels (NumPy in, NumPy out); ``myelin.reference`` is the same API in
plain NumPy, the oracle of the tests and the baseline of the benchmarks.
"""

from __future__ import annotations

__version__ = "0.1.0"

from myelin import _config, callbacks, data, keras, nn, ops, optim, reference, utils  # noqa: E402
from myelin._autograd import enable_grad, is_grad_enabled, no_grad  # noqa: E402
from myelin._config import (  # noqa: E402
    get_flush_denormal,
    get_num_threads,
    set_flush_denormal,
    set_num_threads,
)
from myelin._random import Generator, manual_seed  # noqa: E402
from myelin.serialization import load, load_model, save  # noqa: E402
from myelin.tensor import (  # noqa: E402
    Tensor,
    arange,
    as_tensor,
    bool_,
    cat,
    float32,
    float64,
    from_numpy,
    full,
    int32,
    int64,
    long,
    matmul,
    ones,
    ones_like,
    rand,
    randint,
    randn,
    randperm,
    stack,
    tensor,
    where,
    zeros,
    zeros_like,
)


def show_config() -> None:
    """Print the version, the instruction-set path in use and those available, the OpenMP runtime,
    the thread count, and whether the hot-path Python modules run compiled."""
    print(f"myelin {__version__}")
    print(
        f"  cpu path:      {_config.current_isa()} "
        f"(available: {', '.join(_config.available_isas())})"
    )
    print(f"  openmp:        {_config.openmp_runtime()}")
    print(f"  threads:       {get_num_threads()}")
    print(f"  python core:   {_config.python_core()}")


__all__ = [
    "Generator",
    "Tensor",
    "__version__",
    "arange",
    "callbacks",
    "data",
    "load",
    "load_model",
    "optim",
    "save",
    "utils",
    "as_tensor",
    "bool_",
    "cat",
    "enable_grad",
    "float32",
    "float64",
    "keras",
    "from_numpy",
    "full",
    "get_flush_denormal",
    "get_num_threads",
    "int32",
    "int64",
    "is_grad_enabled",
    "long",
    "manual_seed",
    "matmul",
    "nn",
    "no_grad",
    "ones",
    "ones_like",
    "ops",
    "rand",
    "randint",
    "randn",
    "randperm",
    "reference",
    "set_flush_denormal",
    "set_num_threads",
    "show_config",
    "stack",
    "tensor",
    "where",
    "zeros",
    "zeros_like",
]
