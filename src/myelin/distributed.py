"""Data-parallel training over MPI (after ``torch.distributed`` and
``torch.nn.parallel.DistributedDataParallel``, https://pytorch.org/docs/stable/notes/ddp.html).

Every process (rank) holds a full copy of the model, reads its own shard of the data and
computes gradients on it; :class:`DistributedDataParallel` averages the gradients across the
ranks before ``loss.backward()`` returns, so every rank takes the same optimizer step and the
copies stay identical. The messages go through MPI (mpi4py), as Horovod's do::

    mpiexec -n 4 python train.py

    import myelin.distributed as dist
    dist.init(seed=0)                      # rank and world size from MPI; per-rank seeds
    model = dist.DistributedDataParallel(make_model())  # rank 0's weights everywhere
    sampler = myelin.data.DistributedSampler(train_ds, seed=0)
    loader = myelin.data.DataLoader(train_ds, batch_size=64, sampler=sampler)
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        for x, y in loader:
            opt.zero_grad()
            loss_fn(model(x), y).backward()   # gradients averaged over the ranks here
            opt.step()

Importing this module does not need MPI: mpi4py is imported by :func:`init`.
"""

from __future__ import annotations

import contextlib
import math
import operator
import sys
import time
import weakref
from typing import Any

import numpy as np

from myelin import _autograd, _random
from myelin.data.distributed import DistributedSampler, shard_indices
from myelin.nn.module import Module
from myelin.tensor import mark_modified

__all__ = [
    "DistributedDataParallel",
    "DistributedSampler",
    "all_reduce",
    "barrier",
    "broadcast",
    "broadcast_optimizer_state",
    "broadcast_parameters",
    "init",
    "is_available",
    "is_initialized",
    "manual_seed",
    "rank",
    "world_size",
]

_MPI: Any = None  # the mpi4py.MPI module once init() ran (mpi4py is optional)
_comm: Any = None
_previous_excepthook = None


def _import_mpi():
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise ImportError(
            "myelin.distributed needs mpi4py and an MPI library; install them with "
            "pip install 'myelin[mpi]' (mpi4py and the mpich wheel)"
        ) from exc
    return MPI


def is_available() -> bool:
    """Whether mpi4py can be imported (``torch.distributed.is_available``)."""
    try:
        _import_mpi()
    except ImportError:
        return False
    return True


def init(seed: int | None = None, abort_on_error: bool = True) -> None:
    """Join the MPI job this process was started in (``torch.distributed.init_process_group``).

    The rank and world size come from MPI's ``COMM_WORLD`` (``mpiexec -n N`` sets them; a
    process started without mpiexec is rank 0 of 1). Calling it again does nothing.

    Parameters
    ----------
    seed : int, optional
        Seed the default generator with :func:`manual_seed`: a seed derived from ``(seed,
        rank)``, so dropout masks differ between ranks and a rerun repeats them.
    abort_on_error : bool
        With more than one rank, an exception that reaches the top level of a rank prints its
        traceback and then aborts the whole job (``MPI_Abort``), instead of leaving the other
        ranks waiting forever in a collective.
    """
    global _MPI, _comm, _previous_excepthook
    if _comm is None:
        _MPI = _import_mpi()
        _comm = _MPI.COMM_WORLD
        if abort_on_error and _comm.Get_size() > 1:
            _previous_excepthook = sys.excepthook
            sys.excepthook = _abort_on_uncaught
    if seed is not None:
        manual_seed(seed)


def _abort_on_uncaught(exc_type, exc, tb) -> None:
    """sys.excepthook under MPI: show the error, then bring every rank down."""
    (_previous_excepthook or sys.__excepthook__)(exc_type, exc, tb)
    sys.stderr.write(
        f"myelin.distributed: rank {_comm.Get_rank()} of {_comm.Get_size()} raised "
        f"{exc_type.__name__}; aborting the MPI job\n"
    )
    with contextlib.suppress(Exception):
        sys.stdout.flush()
    sys.stderr.flush()
    # mpiexec forwards each rank's output through a pipe and drops what it has not read yet when
    # the job aborts (the traceback came out cut in the middle of its last line): let it drain
    time.sleep(0.5)
    _comm.Abort(1)


def is_initialized() -> bool:
    """Whether :func:`init` has run in this process."""
    return _comm is not None


def _world():
    if _comm is None:
        raise RuntimeError(
            "myelin.distributed is not initialized: call myelin.distributed.init() first"
        )
    return _comm


def rank() -> int:
    """This process's rank, 0 .. world_size() - 1 (``torch.distributed.get_rank``)."""
    return _world().Get_rank()


def world_size() -> int:
    """The number of processes in the job (``torch.distributed.get_world_size``)."""
    return _world().Get_size()


def barrier() -> None:
    """Wait until every rank has called it."""
    _world().Barrier()


def manual_seed(seed: int) -> int:
    """Seed myelin's default generator (initialisation, dropout, shuffling in ``fit``) with a
    seed derived from ``(seed, rank)``: distinct across ranks, the same from run to run.
    Returns the derived seed."""
    if isinstance(seed, (bool, np.bool_)):
        raise TypeError(f"seed must be an int, got {seed!r}")
    try:
        seed = operator.index(seed)
    except TypeError:
        raise TypeError(f"seed must be an int, got {type(seed).__name__} {seed!r}") from None
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    derived = int(np.random.SeedSequence([seed, rank()]).generate_state(1, np.uint32)[0])
    _random.manual_seed(derived)
    return derived


def _check_array(array, name: str) -> np.ndarray:
    if not isinstance(array, np.ndarray):
        raise TypeError(f"{name} must be a NumPy array, got {type(array).__name__}")
    if not array.flags.c_contiguous or not array.flags.writeable:
        raise ValueError(f"{name} must be a C-contiguous, writeable array")
    return array


_OPS = ("sum", "max", "min")


def all_reduce(array: np.ndarray, op: str = "sum") -> np.ndarray:
    """Reduce ``array`` over the ranks in place (``torch.distributed.all_reduce``): every rank
    ends with the element-wise sum (or max, min). Returns ``array``."""
    comm = _world()
    _check_array(array, "array")
    if op not in _OPS:
        raise ValueError(f"op must be one of {_OPS}, got {op!r}")
    comm.Allreduce(_MPI.IN_PLACE, array, op={"sum": _MPI.SUM, "max": _MPI.MAX, "min": _MPI.MIN}[op])
    return array


def broadcast(array: np.ndarray, src: int = 0) -> np.ndarray:
    """Overwrite ``array`` on every rank with rank ``src``'s (``torch.distributed.broadcast``)."""
    comm = _world()
    _check_array(array, "array")
    comm.Bcast(array, root=src)
    return array


def _flat_groups(tensors: list) -> dict:
    """The tensors grouped by dtype, in order: ``{dtype: [tensor, ...]}``."""
    groups: dict = {}
    for t in tensors:
        groups.setdefault(t._data.dtype, []).append(t)
    return groups


def broadcast_parameters(params, src: int = 0) -> None:
    """Copy rank ``src``'s values of ``params`` (an iterable of Tensors, the same on every
    rank) into every rank's, in place: one message per dtype."""
    comm = _world()
    for tensors in _flat_groups(list(params)).values():
        buf = np.concatenate([t._data.reshape(-1) for t in tensors])
        comm.Bcast(buf, root=src)
        if comm.Get_rank() != src:
            off = 0
            for t in tensors:
                n = t._data.size
                np.copyto(t._data, buf[off : off + n].reshape(t._data.shape))
                mark_modified(t)  # new values: a graph recorded before refuses them
                off += n


def broadcast_optimizer_state(optimizer, src: int = 0) -> None:
    """Give every rank rank ``src``'s optimizer state and options (``state_dict()``) — for a
    run resumed from a checkpoint that only rank 0 loaded; a fresh optimizer has none."""
    comm = _world()
    state = comm.bcast(optimizer.state_dict() if comm.Get_rank() == src else None, root=src)
    if comm.Get_rank() != src:
        optimizer.load_state_dict(state)


def _signature(module: Module) -> list:
    return [
        (name, tuple(p._data.shape), str(p._data.dtype)) for name, p in module.named_parameters()
    ]


def _describe(sig: list) -> str:
    return f"{len(sig)} parameters, {sum(math.prod(s) for _, s, _ in sig)} values"


def _check_same_architecture(sig: list, comm) -> None:
    """Raise the same ValueError on every rank when the parameter lists differ."""
    sigs = comm.allgather(sig)
    ref = sigs[0]
    for r, other in enumerate(sigs[1:], start=1):
        if other == ref:
            continue
        for i in range(max(len(ref), len(other))):
            a = ref[i] if i < len(ref) else None
            b = other[i] if i < len(other) else None
            if a != b:
                break

        def fmt(entry):
            return "nothing" if entry is None else f"{entry[0]!r} of shape {entry[1]} {entry[2]}"

        raise ValueError(
            f"DistributedDataParallel: the model differs between ranks: parameter {i} is "
            f"{fmt(a)} on rank 0 but {fmt(b)} on rank {r} (rank 0 has {_describe(ref)}, rank "
            f"{r} has {_describe(other)}); every rank must build the same architecture"
        )


class _Bucket:
    """Parameters of one dtype whose gradients travel in one message: the flattened gradients
    followed by one count per parameter (how many ranks had a gradient for it)."""

    def __init__(self, params: list) -> None:
        self.params = params
        self.sizes = [p._data.size for p in params]
        self.offsets = np.cumsum([0, *self.sizes]).tolist()
        self.n = self.offsets[-1]
        self.buf = np.empty(self.n + len(params), params[0]._data.dtype)


def _make_buckets(params: list, cap_bytes: float) -> list:
    buckets = []
    for tensors in _flat_groups(params).values():
        group: list = []
        size = 0
        for p in tensors:
            nbytes = p._data.nbytes
            if group and size + nbytes > cap_bytes:
                buckets.append(_Bucket(group))
                group, size = [], 0
            group.append(p)
            size += nbytes
        buckets.append(_Bucket(group))
    return buckets


class DistributedDataParallel(Module):
    """Data-parallel training of ``module`` across the ranks of the MPI job
    (``torch.nn.parallel.DistributedDataParallel``,
    https://pytorch.org/docs/stable/generated/torch.nn.parallel.DistributedDataParallel.html).

    At construction: checks that every rank built the same parameters (names, shapes,
    dtypes; a ValueError on every rank otherwise) and copies rank 0's parameter values to all
    ranks. Calling the wrapper calls ``module``; when the output is backpropagated, the
    gradients of the parameters are averaged over the ranks (summed, then divided by the world
    size) before ``backward()`` returns, so each rank's optimizer takes the same step. Each
    rank feeds its own batch: N ranks with batch B train like one process with batch N*B.

    The averaging flattens the gradients into one buffer per dtype and reduces it with one
    ``MPI_Allreduce`` (split into buckets of at most ``bucket_cap_mb`` so that huge models send a
    few large messages, never one per parameter). A parameter that got no gradient on any rank
    keeps ``grad = None``; one that got it on some ranks only is averaged with zeros.

    Parameters
    ----------
    module : nn.Module
        Its parameters must exist (build lazy layers with one forward pass first).
    bucket_cap_mb : float
        Largest message in MiB (PyTorch's default, 25).
    init_sync : bool
        Copy rank 0's parameter values to every rank at construction (True, as PyTorch).

    Attributes
    ----------
    module : nn.Module
    comm_seconds : float
        Wall time spent in the allreduce of the gradients since construction.
    comm_steps : int
        Number of gradient averagings since construction.
    """

    def __init__(self, module: Module, bucket_cap_mb: float = 25.0, init_sync: bool = True) -> None:
        super().__init__()
        if not isinstance(module, Module):
            raise TypeError(
                f"DistributedDataParallel: module must be a myelin.nn.Module, got "
                f"{type(module).__name__}"
            )
        if isinstance(bucket_cap_mb, bool) or not isinstance(bucket_cap_mb, (int, float)):
            raise TypeError(f"bucket_cap_mb must be a number, got {bucket_cap_mb!r}")
        if not bucket_cap_mb > 0:
            raise ValueError(f"bucket_cap_mb must be > 0, got {bucket_cap_mb}")
        comm = _world()
        self.module = module
        params = list(module.parameters())
        if not params:
            raise ValueError(
                f"DistributedDataParallel: {type(module).__name__} has no parameters yet; run one "
                f"forward pass (or give the layers their input sizes) before wrapping it"
            )
        _check_same_architecture(_signature(module), comm)
        if init_sync:
            broadcast_parameters(params)
        # plain attributes, set without Module.__setattr__ (whose bookkeeping would make
        # Sequential rebuild its fused plan at every step)
        put = object.__setattr__
        put(self, "_comm", comm)
        put(self, "_buckets", _make_buckets(params, bucket_cap_mb * 2**20))
        put(self, "_pending", False)
        put(self, "_sync_enabled", True)
        put(self, "comm_seconds", 0.0)
        put(self, "comm_steps", 0)
        ref = weakref.ref(self)

        def hook():
            ddp = ref()
            if ddp is None:
                handle.remove()
            elif ddp._pending:
                object.__setattr__(ddp, "_pending", False)
                ddp.sync_gradients()

        handle = _autograd.register_post_backward_hook(hook)
        put(self, "_hook", handle)

    def __del__(self) -> None:
        handle = self.__dict__.get("_hook")
        if handle is not None:
            handle.remove()

    def forward(self, *args, **kwargs):
        self._prepare_for_backward()
        return self.module(*args, **kwargs)

    def _prepare_for_backward(self) -> None:
        """Average the gradients after the next backward pass (when grad mode records)."""
        if self._sync_enabled and _autograd.is_grad_enabled():
            object.__setattr__(self, "_pending", True)

    def _logits_with(self, fn, x):
        """``fn(x)`` (the module's forward, maybe without its final activation) as a forward
        of this wrapper: the next backward averages the gradients."""
        self._prepare_for_backward()
        return fn(x)

    @contextlib.contextmanager
    def no_sync(self):
        """Backward passes of forwards run inside accumulate gradients locally, without
        communication (``DistributedDataParallel.no_sync``); the first backward after it
        averages the sum."""
        prev = self._sync_enabled
        object.__setattr__(self, "_sync_enabled", False)
        try:
            yield
        finally:
            object.__setattr__(self, "_sync_enabled", prev)

    def sync_gradients(self) -> None:
        """Average the parameters' ``.grad`` over the ranks now (backward does it by itself)."""
        world = self._comm.Get_size()
        t0 = time.perf_counter()
        for b in self._buckets:
            buf, n = b.buf, b.n
            for i, p in enumerate(b.params):
                seg = buf[b.offsets[i] : b.offsets[i + 1]]
                g = p._grad
                if g is None:
                    seg[...] = 0
                    buf[n + i] = 0
                else:
                    seg[...] = g.reshape(-1)
                    buf[n + i] = 1
            self._comm.Allreduce(_MPI.IN_PLACE, buf, op=_MPI.SUM)
            np.divide(buf[:n], world, out=buf[:n])
            for i, p in enumerate(b.params):
                if buf[n + i] == 0:
                    continue
                seg = buf[b.offsets[i] : b.offsets[i + 1]].reshape(p._data.shape)
                if p._grad is None or p._grad.shape != seg.shape:
                    p._grad = seg.copy()
                else:
                    np.copyto(p._grad, seg)
        object.__setattr__(self, "comm_seconds", self.comm_seconds + time.perf_counter() - t0)
        object.__setattr__(self, "comm_steps", self.comm_steps + 1)

    # fit's per-step and per-epoch agreements between the ranks
    def _all_finite(self, value: float) -> bool:
        return _all_finite(value)

    def _average_logs(self, run) -> None:
        _average_logs(run)

    def extra_repr(self) -> str:
        return f"world_size={self._comm.Get_size()}, buckets={len(self._buckets)}"


# ---------------------------------------------------------------- fit's helpers


def _shared_seed() -> int:
    """A seed drawn from rank 0's default generator, the same on every rank."""
    comm = _world()
    seed = int(_random.get_rng().integers(2**31)) if comm.Get_rank() == 0 else None
    return comm.bcast(seed, root=0)


class _ShardedArrays:
    """fit's minibatches of in-memory arrays under MPI: each epoch, this rank's shard of one
    permutation shared by all ranks (as :class:`DistributedSampler`), in batches of
    ``batch_size``; every rank runs the same number of steps."""

    def __init__(self, x, y, batch_size: int, shuffle: bool) -> None:
        self.x, self.y = x, y
        self.n = len(x)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = _shared_seed()
        self.epoch = 0
        self.world, self.rank = world_size(), rank()
        per_rank = -(-self.n // self.world)
        self.steps = -(-per_rank // batch_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        idx = shard_indices(
            self.n, self.world, self.rank, self.shuffle, self.seed, self.epoch, drop_last=False
        )
        bs = self.batch_size
        for s in range(0, len(idx), bs):
            take = idx[s : s + bs]
            yield self.x[take], None if self.y is None else self.y[take]


def _average_logs(run) -> None:
    """Replace a ``_Running``'s sums by their totals over the ranks (sample-weighted means)."""
    comm = _world()
    totals = np.array([run.n, run.loss, *run.sums], dtype=np.float64)
    comm.Allreduce(_MPI.IN_PLACE, totals, op=_MPI.SUM)
    run.n = int(totals[0])
    run.loss = float(totals[1])
    run.sums = [float(v) for v in totals[2:]]


def _all_finite(value: float) -> bool:
    """Whether ``value`` is finite on every rank (so that all ranks skip a step together)."""
    flag = np.array([1.0 if math.isfinite(value) else 0.0])
    _world().Allreduce(_MPI.IN_PLACE, flag, op=_MPI.MIN)
    return bool(flag[0])
