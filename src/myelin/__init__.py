"""myelin: a NumPy-compatible neural-network core on hand-written C kernels.

``myelin.ops`` runs the kernels (NumPy in, NumPy out); ``myelin.reference`` is the same API in
plain NumPy, the oracle of the tests and the baseline of the benchmarks.
"""

from __future__ import annotations

__version__ = "0.1.0"

from myelin import _config, ops, reference  # noqa: E402
from myelin._config import get_num_threads, set_num_threads  # noqa: E402


def show_config() -> None:
    """Print the version, the instruction-set path in use and those available, the OpenMP runtime
    and the thread count."""
    print(f"myelin {__version__}")
    print(
        f"  cpu path:      {_config.current_isa()} "
        f"(available: {', '.join(_config.available_isas())})"
    )
    print(f"  openmp:        {_config.openmp_runtime()}")
    print(f"  threads:       {get_num_threads()}")


__all__ = ["__version__", "get_num_threads", "ops", "reference", "set_num_threads", "show_config"]
