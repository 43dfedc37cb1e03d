"""``Optimizer``: parameter groups, per-parameter state, ``step``/``zero_grad`` and state dicts.

Mirrors https://pytorch.org/docs/stable/optim.html. Subclasses validate their options in
``_check_group`` and update one parameter in ``_update`` by calling a fused kernel of
:mod:`myelin.ops` on the parameter's ndarray, in place.
"""

from __future__ import annotations

import copy
import math
import numbers
import operator
from collections import defaultdict
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from myelin._autograd import enable_grad
from myelin.tensor import Tensor, clear_grad

if TYPE_CHECKING:
    from collections.abc import Callable

    from myelin._typing import ParamsT

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


# ---------------------------------------------------------------- option checks


def _check_real(value, name: str, low=None, high=None, high_open: bool = False):
    """``value`` if it is a real number with ``low <= value`` and ``value <= high`` (``<`` when
    ``high_open``); TypeError or ValueError naming ``name`` otherwise."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    v = float(value)
    if math.isnan(v):
        raise ValueError(f"{name} must be a number, got nan")
    if low is not None and v < low:
        raise ValueError(f"invalid {name}: {value} (expected {name} >= {low})")
    if high is not None and (v >= high if high_open else v > high):
        op = "<" if high_open else "<="
        raise ValueError(f"invalid {name}: {value} (expected {name} {op} {high})")
    return value


def _check_bool(value, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {type(value).__name__} {value!r}")
    return bool(value)


def _check_betas(betas) -> tuple[float, float]:
    try:
        b = tuple(betas)
    except TypeError:
        raise TypeError(f"betas must be a pair of numbers, got {betas!r}") from None
    if len(b) != 2:
        raise ValueError(f"betas must be a pair of numbers, got {len(b)} values: {betas!r}")
    _check_real(b[0], "betas[0]", 0.0, 1.0, high_open=True)
    _check_real(b[1], "betas[1]", 0.0, 1.0, high_open=True)
    return float(b[0]), float(b[1])


# ---------------------------------------------------------------- the base class


class Optimizer:
    """Base class of the optimizers (``torch.optim.Optimizer``,
    https://pytorch.org/docs/stable/optim.html#torch.optim.Optimizer).

    Parameters
    ----------
    params : iterable of Tensor, or iterable of dict
        The tensors to optimize (e.g. ``model.parameters()``, a generator is fine), or parameter
        groups: dicts with a ``"params"`` entry and any options that override ``defaults`` for
        that group. Each tensor is a floating-point (float32 or float64) leaf tensor and
        appears once across all groups.
    defaults : dict
        The options of a group that does not set them (``lr``, ...).

    Attributes
    ----------
    param_groups : list of dict
        One dict per group, with ``"params"`` (a list of tensors) and every option. Changing an
        option (e.g. ``group["lr"]``, as the schedulers do) takes effect at the next ``step``.
    state : dict
        Per-parameter state keyed by the tensor (buffers are ndarrays of the parameter's shape
        and dtype, created on the parameter's first update).
    defaults : dict
    """

    # State entries that are Python numbers (step counts), not arrays of the parameter's shape.
    _scalar_state: frozenset = frozenset({"step"})

    def __init__(self, params: ParamsT, defaults: dict) -> None:
        if not isinstance(defaults, Mapping):
            raise TypeError(f"defaults must be a dict, got {type(defaults).__name__}")
        self.defaults = dict(defaults)
        self._check_group(self.defaults)
        self.state: defaultdict = defaultdict(dict)
        self._plans: dict = {}  # per-group lists of arrays kept by multi-tensor subclasses
        self.param_groups: list[dict] = []
        if isinstance(params, (Tensor, Mapping, set, frozenset)):
            raise TypeError(
                "params argument given to the optimizer should be an iterable of Tensors or "
                f"dicts (an ordered one, such as a list), but got {type(params).__name__}"
            )
        try:
            groups: list[Any] = list(params)
        except TypeError:
            raise TypeError(
                "params argument given to the optimizer should be an iterable of Tensors or "
                f"dicts, but got {type(params).__name__}"
            ) from None
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], Mapping):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    # ------------------------------------------------------------ groups

    def _check_group(self, group: dict) -> None:
        """Validate (and normalise, in place) the options of one group; subclasses override."""

    def add_param_group(self, param_group: dict) -> None:
        """Add a group of parameters with its own options (``Optimizer.add_param_group``).

        Options the group does not set are taken from ``defaults``. Useful to train layers
        unfrozen during training.
        """
        if not isinstance(param_group, Mapping):
            raise TypeError(
                f"param_group must be a dict, got {type(param_group).__name__}; when params is a "
                "list of groups, every element must be a dict"
            )
        if "params" not in param_group:
            raise ValueError("param_group has no 'params' entry")
        params = param_group["params"]
        if isinstance(params, Tensor):
            params = [params]
        elif isinstance(params, (set, frozenset)):
            raise TypeError(
                "optimizer parameters need to be organized in ordered collections, but the "
                "ordering of tensors in sets changes between runs: use a list instead"
            )
        else:
            try:
                params = list(params)
            except TypeError:
                raise TypeError(
                    f"param_group['params'] must be a Tensor or an iterable of Tensors, got "
                    f"{type(params).__name__}"
                ) from None
        n_groups = len(self.param_groups)
        seen = set()
        for i, p in enumerate(params):
            where = f"param_groups[{n_groups}]['params'][{i}]"
            if not isinstance(p, Tensor):
                raise TypeError(
                    f"optimizer can only optimize Tensors, but {where} is a {type(p).__name__}"
                )
            if p._data.dtype not in _FLOATS:
                raise TypeError(
                    f"optimizer can only optimize float32 or float64 tensors, but {where} has "
                    f"dtype {p._data.dtype}"
                )
            if not p.is_leaf:
                raise ValueError(f"can't optimize a non-leaf Tensor ({where})")
            if id(p) in seen:
                raise ValueError(f"optimizer got a parameter twice in one group ({where})")
            seen.add(id(p))
        for g in self.param_groups:
            if any(id(p) in seen for p in g["params"]):
                raise ValueError("some parameters appear in more than one parameter group")
        group = {k: v for k, v in param_group.items() if k != "params"}
        for k, v in self.defaults.items():
            group.setdefault(k, v)
        self._check_group(group)
        group["params"] = params
        self.param_groups.append(group)

    # ------------------------------------------------------------ gradients and updates

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clear the gradients of all optimized tensors (``Optimizer.zero_grad``).

        Parameters
        ----------
        set_to_none : bool
            Set ``.grad`` to None (the default, as PyTorch) instead of filling it with zeros.
        """
        for group in self.param_groups:
            for p in group["params"]:
                clear_grad(p, set_to_none)

    def step(self, closure: Callable[[], Any] | None = None):
        """One update of every parameter that has a gradient (``Optimizer.step``); parameters
        whose ``.grad`` is None are skipped.

        Parameters
        ----------
        closure : callable, optional
            Re-evaluates the model and returns the loss; called (with grad mode on) before the
            update.

        Returns
        -------
        The closure's return value, or None.
        """
        loss = None
        if closure is not None:
            if not callable(closure):
                raise TypeError(f"closure must be callable, got {type(closure).__name__}")
            with enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p._grad is not None]
            if params:
                try:
                    self._update_group(params, group)
                finally:
                    # the parameters changed in place, whichever path updated them: a graph
                    # recorded before the step refuses to backward through the new values
                    for p in params:
                        p._version_counter[0] += 1  # mark_modified(p), inline: every step
        return loss

    def _update_group(self, params: list, group: dict) -> None:
        """Update ``params`` (the group's parameters that have a gradient). Subclasses with a
        multi-tensor kernel update them all in one call and fall back to this on a parameter or
        gradient the kernel cannot take as it is (non-contiguous, another dtype)."""
        gi = next(i for i, g in enumerate(self.param_groups) if g is group)
        index = {id(p): i for i, p in enumerate(group["params"])}
        for p in params:
            self._apply(p, group, f"param_groups[{gi}]['params'][{index[id(p)]}]")

    def _apply(self, p: Tensor, group: dict, where: str) -> None:
        """Update ``p`` in place from its gradient: the kernels need C-contiguous, writable
        arrays of one dtype, so the gradient (and, rarely, the parameter) is copied if not."""
        data = p._data
        if not data.flags.writeable:
            raise ValueError(f"{where} is read-only and cannot be updated in place")
        grad: Any = p._grad
        if grad.shape != data.shape:
            raise ValueError(f"{where} has shape {data.shape} but its grad has {grad.shape}")
        if grad.dtype != data.dtype or not grad.flags.c_contiguous:
            grad = np.ascontiguousarray(grad, dtype=data.dtype)
        state = self.state.get(p, {})
        if data.flags.c_contiguous:
            self._update(data, grad, state, group)
        else:
            work = np.ascontiguousarray(data)
            self._update(work, grad, state, group)
            data[...] = work
        if state:  # no entry for a parameter without state (SGD without momentum)
            self.state[p] = state

    def _update(self, param: np.ndarray, grad: np.ndarray, state: dict, group: dict) -> None:
        """Update ``param`` in place given ``grad`` (both C-contiguous, one dtype)."""
        raise NotImplementedError(f"{type(self).__name__} does not define _update()")

    @staticmethod
    def _buffer(state: dict, name: str, param: np.ndarray) -> np.ndarray:
        """``state[name]``, created as zeros of ``param``'s shape and dtype if missing."""
        buf = state.get(name)
        if buf is None:
            buf = state[name] = np.zeros(param.shape, param.dtype)
        return buf

    # ------------------------------------------------------------ state dicts

    def state_dict(self) -> dict:
        """The optimizer's state as ``{"state": {index: {name: ndarray or number}},
        "param_groups": [{option: value, ..., "params": [index, ...]}]}``
        (``Optimizer.state_dict``): parameters are numbered across groups in order; arrays are
        copies."""
        index: dict[int, int] = {}
        groups = []
        for g in self.param_groups:
            packed = {k: copy.deepcopy(v) for k, v in g.items() if k != "params"}
            packed["params"] = [index.setdefault(id(p), len(index)) for p in g["params"]]
            groups.append(packed)
        state = {}
        for p, s in self.state.items():
            if id(p) in index:
                state[index[id(p)]] = {
                    k: (v.copy() if isinstance(v, np.ndarray) else copy.deepcopy(v))
                    for k, v in s.items()
                }
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore the state saved by :meth:`state_dict` (``Optimizer.load_state_dict``).

        The groups must match this optimizer's in number and size, and state arrays the shapes
        of their parameters (ValueError otherwise). Arrays are copied, in the parameter's dtype;
        the options of each group are replaced by the saved ones.
        """
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"state_dict must be a dict, got {type(state_dict).__name__}")
        for key in ("state", "param_groups"):
            if key not in state_dict:
                raise ValueError(
                    f"state_dict has no {key!r} entry; expected 'state' and 'param_groups'"
                )
        saved_groups = list(state_dict["param_groups"])
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(
                f"loaded state dict has {len(saved_groups)} parameter groups; this optimizer "
                f"has {len(self.param_groups)}"
            )
        by_index: dict[int, Tensor] = {}
        new_groups = []
        for gi, (group, saved) in enumerate(zip(self.param_groups, saved_groups, strict=True)):
            if not isinstance(saved, Mapping) or "params" not in saved:
                raise ValueError(f"param_groups[{gi}] of the state dict is not a group dict")
            indices = list(saved["params"])
            if len(indices) != len(group["params"]):
                raise ValueError(
                    f"param_groups[{gi}] of the loaded state dict has {len(indices)} parameters; "
                    f"this optimizer's group has {len(group['params'])}"
                )
            for idx, p in zip(indices, group["params"], strict=True):
                by_index[self._index(idx)] = p
            new = {k: copy.deepcopy(v) for k, v in saved.items() if k != "params"}
            self._check_group(new)
            new["params"] = group["params"]
            new_groups.append(new)
        state = state_dict["state"]
        if not isinstance(state, Mapping):
            raise TypeError(f"state_dict['state'] must be a dict, got {type(state).__name__}")
        new_state: defaultdict = defaultdict(dict)
        for key, entries in state.items():
            idx = self._index(key)
            if idx not in by_index:
                raise ValueError(
                    f"state_dict['state'] has an entry for parameter {key!r}, "
                    "which no parameter group lists"
                )
            if not isinstance(entries, Mapping):
                raise TypeError(
                    f"state_dict['state'][{key!r}] must be a dict, got {type(entries).__name__}"
                )
            p = by_index[idx]
            new_state[p] = {
                name: self._load_value(name, value, p, idx) for name, value in entries.items()
            }
        self.param_groups = new_groups
        self.state = new_state

    @staticmethod
    def _index(key) -> int:
        """A parameter index of a state dict (an int, or its string after a JSON round trip)."""
        if isinstance(key, str) and key.lstrip("-").isdigit():
            return int(key)
        try:
            return operator.index(key)
        except TypeError:
            raise TypeError(f"state dict parameter indices must be ints, got {key!r}") from None

    def _load_value(self, name: str, value, p: Tensor, idx: int):
        if name in self._scalar_state:
            arr = np.asarray(value)
            if arr.size != 1 or arr.dtype.kind not in "iuf":
                raise ValueError(
                    f"state of parameter {idx}: {name!r} must be a number, got {value!r}"
                )
            v = arr.reshape(()).item()
            return int(v) if float(v).is_integer() else v
        if not isinstance(value, np.ndarray):
            return copy.deepcopy(value)
        if value.shape != p._data.shape:
            raise ValueError(
                f"state of parameter {idx}: {name!r} has shape {value.shape}; expected "
                f"{p._data.shape}, the parameter's shape"
            )
        if value.dtype.kind not in "iuf":
            raise TypeError(f"state of parameter {idx}: {name!r} has dtype {value.dtype}")
        return np.array(value, dtype=p._data.dtype, order="C", copy=True)

    # ------------------------------------------------------------ display

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, g in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for k in sorted(g):
                if k != "params":
                    lines.append(f"    {k}: {g[k]}")
        lines.append(")")
        return "\n".join(lines)
