"""Run-time configuration: the instruction-set path, threads, and what the build has.

Read once at import: ``MYELIN_CPU`` (``baseline``, ``avx2`` or ``avx512``) forces a path, and
``MYELIN_NUM_THREADS`` sets the thread count (``OMP_NUM_THREADS`` is honoured by the OpenMP
runtime itself).

Threads: the kernels run on at most 4 threads per CPU of the machine (``4 * os.cpu_count()``),
however many are asked for; :func:`set_num_threads` and ``MYELIN_NUM_THREADS`` refuse more with
an error, a larger ``OMP_NUM_THREADS`` or threadpoolctl limit is capped there. Where threads
cannot be created (address-space or process limits), the kernels run on as many as could be,
with a warning from :func:`set_num_threads`, instead of the OpenMP runtime ending the process.
"""

from __future__ import annotations

import os
import warnings

from myelin import _kernels

_ISA_NAMES = ("baseline", "avx2", "avx512")


def available_isas() -> list[str]:
    """The instruction-set paths this CPU can run, from the most portable to the widest."""
    return [name for i, name in enumerate(_ISA_NAMES) if _kernels.isa_supported(i)]


def current_isa() -> str:
    """The path the kernels use now."""
    return _kernels.isa_name(_kernels.current_isa())


def set_isa(name: str) -> None:
    """Switch the kernels to the path ``name`` (one of :func:`available_isas`)."""
    if not isinstance(name, str):
        raise TypeError(f"isa must be a str, got {type(name).__name__}")
    rc = _kernels.select_isa(name)
    if rc == -1:
        raise ValueError(
            f"unknown instruction-set path {name!r}; expected one of {list(_ISA_NAMES)}"
        )
    if rc == -2:
        raise ValueError(f"this CPU cannot run the {name!r} path; it supports {available_isas()}")


def has_openmp() -> bool:
    """Whether this build of myelin runs its kernels in parallel with OpenMP."""
    return _kernels.has_openmp()


def _openmp_library() -> str | None:
    """The file name of the OpenMP runtime the extension's calls resolve to, from ``dladdr``.

    Another library's OpenMP runtime may be mapped too (PyTorch ships its own libgomp): the first
    one in ``/proc/self/maps`` need not be myelin's."""
    try:
        import ctypes

        class _DlInfo(ctypes.Structure):
            _fields_ = [
                ("dli_fname", ctypes.c_char_p),
                ("dli_fbase", ctypes.c_void_p),
                ("dli_sname", ctypes.c_char_p),
                ("dli_saddr", ctypes.c_void_p),
            ]

        # dlsym through the extension's handle searches the extension, then its dependencies
        address = ctypes.cast(ctypes.CDLL(_kernels.__file__).omp_get_max_threads, ctypes.c_void_p)
        dladdr = ctypes.CDLL(None).dladdr
        dladdr.argtypes = [ctypes.c_void_p, ctypes.POINTER(_DlInfo)]
        dladdr.restype = ctypes.c_int
        info = _DlInfo()
        if dladdr(address, ctypes.byref(info)) and info.dli_fname:
            return os.path.basename(os.fsdecode(info.dli_fname))
    except (OSError, AttributeError, ValueError):
        pass
    return None


def openmp_runtime() -> str:
    """A description of the OpenMP runtime myelin is linked with."""
    if not has_openmp():
        return "none (serial build)"
    lib = _openmp_library() or "unknown library"
    if lib == "unknown library":
        try:
            with open("/proc/self/maps") as maps:
                for line in maps:
                    base = line.rsplit("/", 1)[-1].strip()
                    if base.startswith(("libgomp", "libomp", "libiomp")):
                        lib = base
                        break
        except OSError:
            pass
    return f"OpenMP {_kernels.openmp_version()} ({lib})"


# GNU OpenMP is not fork-safe: a child made by fork() after the parent ran a parallel region
# hangs in its first parallel region of more than one thread. A forked child therefore runs
# myelin's kernels on one thread (the processes of a fork pool share the cores anyway).
_forked_child = False


def python_core() -> str:
    """Whether the hot-path Python modules (autograd, Tensor, ops, nn, optim) run as compiled
    by Cython at build time, or as plain Python (a MYELIN_COMPILE_PY=OFF build)."""
    from myelin import _autograd

    if _autograd.__file__ is not None and not _autograd.__file__.endswith(".py"):
        return "compiled (Cython)"
    return "plain Python"


def _after_fork_in_child() -> None:
    global _forked_child
    _forked_child = True
    _kernels.set_num_threads(1)


def _check_thread_count(n: int, name: str) -> None:
    """ValueError naming ``name`` unless ``1 <= n <=`` the most threads the kernels may use."""
    limit = _kernels.max_threads()
    if n < 1:
        raise ValueError(f"{name} must be >= 1, got {n}")
    if n > limit:
        raise ValueError(
            f"{name} must be at most {limit} ({_kernels.threads_per_cpu()} threads per CPU, "
            f"{os.cpu_count()} CPUs), got {n}"
        )


def set_num_threads(n: int) -> None:
    """Use up to ``n`` threads in the kernels (tiny ops still run on one).

    ``n`` may be at most 4 threads per CPU of the machine (``4 * os.cpu_count()``); more raise
    ValueError. The threads are tried at once: should only some start (an address-space limit,
    a process limit), the kernels use those and a RuntimeWarning says so. In a process made by
    ``fork()`` the kernels stay on one thread (OpenMP is not fork-safe)."""
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"n must be an int, got {type(n).__name__}")
    _check_thread_count(n, "n")
    if _forked_child and n > 1:
        warnings.warn(
            f"set_num_threads({n}) in a forked child process: myelin stays on 1 thread, "
            "because OpenMP does not survive fork(); use the 'spawn' or 'forkserver' start "
            "method for multithreaded workers",
            RuntimeWarning,
            stacklevel=2,
        )
        n = 1
    _kernels.set_num_threads(n)
    if has_openmp():
        started = _kernels.check_threads(n)
        if started < n:
            warnings.warn(
                f"set_num_threads({n}): only {started} threads could be started (thread "
                f"creation failed: address-space or process limit); myelin uses {started}",
                RuntimeWarning,
                stacklevel=2,
            )


def get_num_threads() -> int:
    """The most threads a kernel uses now."""
    return _kernels.get_num_threads()


def set_flush_denormal(mode: bool) -> bool:
    """Flush denormal (subnormal) floats to zero in the kernels, as ``torch.set_flush_denormal``
    (https://pytorch.org/docs/stable/generated/torch.set_flush_denormal.html).

    With ``mode=True``, every thread that runs a kernel (the calling thread, and each OpenMP
    worker at the start of its next parallel region) sets the FTZ and DAZ bits of its x86 MXCSR:
    results below the smallest normal float become zero and subnormal inputs read as zero,
    which avoids the slow microcode path some CPUs take on them. Results on normal-range data
    are unchanged. As in PyTorch, the mode is that of the threads themselves, so NumPy
    arithmetic in a thread that has run a kernel flushes too. ``False`` restores IEEE
    gradual underflow.

    Returns True if the CPU supports the mode (x86 with SSE), else False and nothing changes.
    """
    if not isinstance(mode, (bool, int)):
        raise TypeError(f"mode must be a bool, got {type(mode).__name__}")
    return _kernels.set_flush_denormal(bool(mode))


def get_flush_denormal() -> bool:
    """Whether the kernels flush denormals to zero (see :func:`set_flush_denormal`)."""
    return _kernels.get_flush_denormal()


def _init_from_environment() -> None:
    requested = os.environ.get("MYELIN_CPU", "").strip().lower()
    rc = _kernels.select_isa(requested)
    if rc == -1:
        raise RuntimeError(
            f"MYELIN_CPU={requested!r} is not a known path; expected one of {list(_ISA_NAMES)}"
        )
    if rc == -2:
        raise RuntimeError(
            f"MYELIN_CPU={requested!r}: this CPU cannot run that path; it supports "
            f"{available_isas()}"
        )
    threads = os.environ.get("MYELIN_NUM_THREADS", "").strip()
    if threads:
        try:
            n = int(threads)
        except ValueError:
            n = 0
        if n < 1:
            raise RuntimeError(f"MYELIN_NUM_THREADS={threads!r}: expected a positive integer")
        try:
            _check_thread_count(n, "MYELIN_NUM_THREADS")
        except ValueError as exc:
            raise RuntimeError(f"MYELIN_NUM_THREADS={threads!r}: {exc}") from None
        _kernels.set_num_threads(n)


_init_from_environment()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
