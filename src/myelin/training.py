"""Keras-style training on any Module: ``compile``, ``fit``, ``evaluate``, ``predict``
(https://keras.io/api/models/model_training_apis/).

``nn.Module.compile/fit/evaluate/predict`` call these functions, so every model trains the Keras
way::

    model = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 3), nn.Softmax(dim=1))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, epochs=20, batch_size=32, validation_split=0.2)
    probs = model.predict(x_test)

The string losses are computed on logits. When a Sequential ends in the probability op that
matches its loss (``nn.Softmax`` for the cross-entropies, ``nn.Sigmoid`` for
``"binary_crossentropy"``), ``compile`` splits it off: ``fit``/``evaluate`` compute the loss on
the logits (stable, one fused kernel), while ``predict`` still returns the model's probabilities,
as Keras does for a softmax output.
"""

from __future__ import annotations

import json
import math
import operator
import shutil
import sys
import time
import warnings
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np

from myelin import _autograd, _random, _warn, nn, ops, optim
from myelin._autograd import no_grad
from myelin.callbacks import History, ModelCheckpoint, _CallbackList, _check_callbacks
from myelin.tensor import Tensor

if TYPE_CHECKING:
    from collections.abc import Sequence

    from myelin.callbacks import Callback
    from myelin.nn.module import Module

__all__ = ["compile", "evaluate", "fit", "predict"]

_LOSSES = {
    "sparse_categorical_crossentropy": "sparse",
    "categorical_crossentropy": "categorical",
    "binary_crossentropy": "binary",
    "mse": "mse",
    "mean_squared_error": "mse",
}
# name -> (class in myelin.optim, Keras' default learning rate)
_OPTIMIZERS = {
    "adam": ("Adam", 1e-3),
    "adamw": ("AdamW", 1e-3),
    "sgd": ("SGD", 1e-2),
    "rmsprop": ("RMSprop", 1e-3),
}
_METRICS = ("accuracy", "acc")
_CHAIN_STEP = True  # fit's compiled step (_chain_step) where it applies; tests turn it off
_PROGRESS_INTERVAL = 0.1  # seconds between two redraws of the progress bar on a terminal


class _Compiled:
    """What ``compile`` decided: how to get logits, the loss, the metrics, the optimizer."""

    __slots__ = (
        "builder",
        "optimizer",
        "kind",
        "loss_fn",
        "logits_fn",
        "split",
        "threshold",
        "metrics",
    )
    builder: Any
    optimizer: Any
    kind: str
    loss_fn: Any
    logits_fn: Any
    split: Any
    threshold: Any
    metrics: Any

    def __init__(self, **kw) -> None:
        for k, v in kw.items():
            setattr(self, k, v)


# ---------------------------------------------------------------- compile


def compile(model: Module, optimizer: Any = "adam", loss: Any = None, metrics: Sequence[str] = ()):
    """Configure ``model`` for :func:`fit` and :func:`evaluate` (``keras.Model.compile``,
    https://keras.io/api/models/model_training_apis/).

    Parameters
    ----------
    model : nn.Module
    optimizer : str, myelin.optim.Optimizer, or optimizer spec
        ``"adam"``, ``"adamw"``, ``"sgd"`` or ``"rmsprop"`` builds that optimizer over
        ``model.parameters()`` with Keras' default learning rate (0.001, 0.001, 0.01, 0.001).
        An Optimizer instance is used as it is. An object with a ``build(parameters)`` method
        (the Keras-style specs of ``myelin.keras.optimizers``) is built over the parameters,
        at the first ``fit`` if the model has none yet (lazily built models).
    loss : str or callable
        ``"sparse_categorical_crossentropy"`` (integer labels ``(N,)``),
        ``"categorical_crossentropy"`` (one-hot or probability targets ``(N, C)``),
        ``"binary_crossentropy"`` (0/1 targets, reshaped to the output shape, e.g. ``(N,)``
        against ``(N, 1)``), ``"mse"``/``"mean_squared_error"``; all on logits, with the final
        Softmax/Sigmoid of a Sequential split off (see the module docstring). Or a loss module or
        callable ``(outputs, targets) -> scalar Tensor`` applied to the model's outputs as they
        are (PyTorch semantics).
    metrics : list of str
        ``"accuracy"`` (or ``"acc"``, logged under that name): argmax against integer labels or
        one-hot targets; for one output per sample, output > 0 on logits (> 0.5 when the loss is
        not on logits) against 0/1 labels.

    Notes
    -----
    Sets ``model.optimizer`` (None until built for a lazy model), ``model.loss_fn``,
    ``model.compiled_metrics`` and ``model._compile_config`` (JSON-able: optimizer name and
    learning rate when given by name, loss name, metric names).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a myelin.nn.Module, got {type(model).__name__}")
    kind, loss_fn, loss_name = _resolve_loss(loss)
    names = _resolve_metrics(metrics)
    logits_fn, split = _logits_fn(model, kind)
    _warn_activation_mismatch(model, kind, loss_fn, split)
    builder, opt, opt_config = _resolve_optimizer(optimizer)
    if opt is None:
        params = list(model.parameters())
        if params:
            opt = builder(params)
    state = _Compiled(
        builder=builder,
        optimizer=opt,
        kind=kind,
        loss_fn=loss_fn,
        logits_fn=logits_fn,
        split=split,
        threshold=0.0 if _loss_on_logits(kind, loss_fn) else 0.5,
        metrics=names,
    )
    config = {"optimizer": opt_config, "loss": loss_name, "metrics": list(names)}
    for attr, value in (
        ("_compiled", state),
        ("optimizer", opt),
        ("loss_fn", loss_fn),
        ("compiled_metrics", list(names)),
        ("_compile_config", config),
        ("stop_training", False),
    ):
        # plain attributes: a loss module must not become a registered submodule
        object.__setattr__(model, attr, value)
    return None


def _resolve_loss(loss):
    if loss is None:
        return None, None, None
    if isinstance(loss, str):
        kind = _LOSSES.get(loss.lower())
        if kind is None:
            raise ValueError(f"loss must be one of {sorted(_LOSSES)} or a callable, got {loss!r}")
        fn = {
            "sparse": nn.CrossEntropyLoss,
            "categorical": nn.CrossEntropyLoss,
            "binary": nn.BCEWithLogitsLoss,
            "mse": nn.MSELoss,
        }[kind]()
        return kind, fn, loss.lower()
    if not callable(loss):
        raise TypeError(
            f"loss must be a loss name, a loss module or a callable (outputs, targets) -> Tensor, "
            f"got {type(loss).__name__}"
        )
    return "custom", loss, None


def _resolve_metrics(metrics) -> list:
    if metrics is None:
        return []
    if isinstance(metrics, str):
        metrics = [metrics]
    try:
        items = list(metrics)
    except TypeError:
        raise TypeError(
            f"metrics must be a list of metric names, got {type(metrics).__name__}"
        ) from None
    names = []
    for m in items:
        if not isinstance(m, str):
            raise TypeError(
                f"metrics holds a {type(m).__name__}; expected names, one of {_METRICS}"
            )
        if m.lower() not in _METRICS:
            raise ValueError(f"unknown metric {m!r}; valid metrics: {list(_METRICS)}")
        if m.lower() not in names:
            names.append(m.lower())
    return names


def _resolve_optimizer(optimizer):
    """``(builder(params) -> Optimizer, optimizer instance or None, JSON config or None)``."""
    if isinstance(optimizer, str):
        key = optimizer.lower()
        if key not in _OPTIMIZERS:
            raise ValueError(
                f"optimizer must be one of {sorted(_OPTIMIZERS)}, an Optimizer or an optimizer "
                f"spec, got {optimizer!r}"
            )
        cls_name, lr = _OPTIMIZERS[key]
        cls = getattr(optim, cls_name)
        return (lambda params: cls(params, lr=lr)), None, {"name": key, "lr": lr}
    if isinstance(optimizer, optim.Optimizer):
        return None, optimizer, None
    build = getattr(optimizer, "build", None)
    if callable(build):
        config = None
        get_config = getattr(optimizer, "get_config", None)
        if callable(get_config):
            config = {"name": type(optimizer).__name__.lower(), **get_config()}
            try:
                json.dumps(config)
            except (TypeError, ValueError):
                config = None
        return build, None, config
    raise TypeError(
        f"optimizer must be a name {sorted(_OPTIMIZERS)}, a myelin.optim.Optimizer or an object "
        f"with build(parameters), got {type(optimizer).__name__}"
    )


def _logits_fn(model, kind):
    """The function of the input whose output the loss sees, and whether an activation was split
    off the model's end."""
    wrapped = getattr(model, "_logits_with", None)  # a DistributedDataParallel
    if wrapped is not None:
        fn, split = _logits_fn(model.module, kind)
        return (lambda x: wrapped(fn, x)), split
    want = {"sparse": "softmax", "categorical": "softmax", "binary": "sigmoid"}.get(kind)
    if want is None or not isinstance(model, nn.Sequential) or len(model) == 0:
        return model, False
    last = model[-1]
    if want == "softmax" and isinstance(last, nn.Softmax) and not isinstance(last, nn.LogSoftmax):
        if last.dim in (-1, 1):
            return model[:-1], True
    if want == "sigmoid" and isinstance(last, nn.Sigmoid):
        return model[:-1], True
    forward_logits = getattr(last, "forward_logits", None)
    if getattr(last, "split_activation", None) == want and callable(forward_logits):
        body = model[:-1]
        return (lambda x: forward_logits(body(x))), True
    return model, False


def _loss_on_logits(kind, loss_fn) -> bool:
    if kind == "binary":
        return True
    return isinstance(loss_fn, nn.BCEWithLogitsLoss) or (
        loss_fn is nn.functional.binary_cross_entropy_with_logits
    )


def _warn_activation_mismatch(model, kind, loss_fn, split: bool) -> None:
    """Warn when a loss on logits meets a model that ends in a probability op it cannot split."""
    if split or not isinstance(model, nn.Sequential) or len(model) == 0:
        return
    last = model[-1]
    softmax = isinstance(last, nn.Softmax) and not isinstance(last, nn.LogSoftmax)
    sigmoid = isinstance(last, nn.Sigmoid)
    ce = kind in ("sparse", "categorical") or isinstance(loss_fn, nn.CrossEntropyLoss)
    bce = kind == "binary" or isinstance(loss_fn, nn.BCEWithLogitsLoss)
    if (ce and (softmax or sigmoid)) or (bce and (softmax or sigmoid)):
        name = type(last).__name__
        warnings.warn(
            f"compile: the model ends in {name} but the loss is computed on logits, so training "
            f"would apply it twice. Drop the final {name}, or compile with the matching loss "
            f"name ('sparse_categorical_crossentropy' after Softmax, 'binary_crossentropy' after "
            f"Sigmoid), which splits it off.",
            UserWarning,
            stacklevel=_warn.stacklevel(),
        )


def _compiled(model) -> _Compiled:
    state = model.__dict__.get("_compiled")
    if state is None:
        raise RuntimeError("call model.compile(...) first")
    if state.loss_fn is None:
        raise RuntimeError("the model was compiled without a loss: call model.compile(loss=...)")
    return state


def _build_optimizer(model, state: _Compiled) -> None:
    params = list(model.parameters())
    if not params:
        raise RuntimeError(
            f"{type(model).__name__} has no parameters after a forward pass; there is nothing "
            f"for the optimizer to train"
        )
    state.optimizer = state.builder(params)
    object.__setattr__(model, "optimizer", state.optimizer)


# ---------------------------------------------------------------- data


def _as_array(a, name: str) -> np.ndarray:
    if isinstance(a, Tensor):
        arr = a._data
    elif isinstance(a, np.ndarray):
        arr = a
    else:
        try:
            arr = np.asarray(a)
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"{name} could not be converted to an array ({exc}); expected an ndarray, a "
                f"myelin Tensor or nested lists of numbers"
            ) from None
    if arr.dtype.kind not in "biuf":
        raise TypeError(
            f"{name} has dtype {arr.dtype}; expected numbers (an ndarray, a myelin Tensor or "
            f"nested lists of numbers)"
        )
    if arr.ndim == 0:
        raise ValueError(f"{name} is a scalar; expected an array with one row per sample")
    return arr


def _param_dtype(model) -> np.dtype:
    for p in model.parameters():
        if p._data.dtype.kind == "f":
            return p._data.dtype
    return np.dtype(np.float32)


def _inputs(x, dtype: np.dtype, name: str) -> np.ndarray:
    arr = _as_array(x, name)
    return arr if arr.dtype == dtype else arr.astype(dtype)


def _targets(y, kind, dtype: np.dtype, name: str) -> np.ndarray:
    """Targets as the loss wants them: int64 labels for the sparse cross-entropy, floats of the
    parameters' dtype for the others; integer labels stay int64 for a custom loss."""
    arr = _as_array(y, name)
    if kind == "sparse":
        if arr.ndim == 2 and arr.shape[1] == 1:
            arr = arr.reshape(-1)
        if arr.dtype.kind == "f":
            if not (np.all(np.isfinite(arr)) and np.all(arr == np.round(arr))):
                raise ValueError(
                    f"{name} holds non-integer values; sparse_categorical_crossentropy expects "
                    f"integer class labels (use categorical_crossentropy for probabilities)"
                )
        return arr if arr.dtype == np.int64 else arr.astype(np.int64)
    if kind == "custom" and arr.dtype.kind in "biu":
        return arr if arr.dtype == np.int64 else arr.astype(np.int64)
    return arr if arr.dtype == dtype else arr.astype(dtype)


class _ArrayBatches:
    """Minibatches of in-memory arrays by fancy indexing; a new permutation per pass."""

    def __init__(self, x: np.ndarray, y, batch_size: int, shuffle: bool) -> None:
        self.x, self.y = x, y
        self.n = len(x)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.steps = -(-self.n // batch_size)

    def __iter__(self):
        bs = self.batch_size
        if self.shuffle:
            order = _random.get_rng().permutation(self.n)
            for s in range(0, self.n, bs):
                idx = order[s : s + bs]
                yield self.x[idx], None if self.y is None else self.y[idx]
        else:
            for s in range(0, self.n, bs):
                yield self.x[s : s + bs], None if self.y is None else self.y[s : s + bs]


class _LoaderBatches:
    """Batches of an iterable of ``(inputs, targets)`` pairs (e.g. a DataLoader), converted."""

    def __init__(self, loader, kind, dtype: np.dtype, name: str, targets: bool = True) -> None:
        self.loader = loader
        self.kind = kind
        self.dtype = dtype
        self.name = name
        self.targets = targets
        try:
            self.steps: int | None = len(loader)
        except TypeError:
            self.steps = None

    def __iter__(self):
        for j, batch in enumerate(self.loader):
            if isinstance(batch, (tuple, list)) and len(batch) == 2:
                xb, yb = batch
            elif not self.targets:
                xb, yb = batch, None
            else:
                raise ValueError(
                    f"batch {j} of {self.name} is a {type(batch).__name__}"
                    f"{f' of length {len(batch)}' if isinstance(batch, (tuple, list)) else ''}; "
                    f"expected a pair (inputs, targets)"
                )
            xb = _inputs(xb, self.dtype, f"{self.name} batch {j} inputs")
            if self.targets:
                yb = _targets(yb, self.kind, self.dtype, f"{self.name} batch {j} targets")
                if len(xb) != len(yb):
                    raise ValueError(
                        f"batch {j} of {self.name} has {len(xb)} inputs but {len(yb)} targets"
                    )
            yield xb, yb


def _is_batches(x) -> bool:
    """Whether ``x`` is an iterable of batches rather than array data."""
    if isinstance(x, (np.ndarray, Tensor, str, bytes)) or hasattr(x, "__array__"):
        return False
    return hasattr(x, "__iter__")


def _pair(x, y, kind, dtype, batch_size: int, shuffle: bool, what: str) -> _ArrayBatches:
    if y is None:
        raise ValueError(f"{what}: y is None; pass targets, or x as an iterable of (x, y) batches")
    xa = _inputs(x, dtype, "x")
    ya = _targets(y, kind, dtype, "y")
    if len(xa) != len(ya):
        raise ValueError(f"{what}: x has {len(xa)} samples but y has {len(ya)}; expected as many")
    if len(xa) == 0:
        raise ValueError(f"{what}: x has no samples")
    return _ArrayBatches(xa, ya, batch_size, shuffle)


def _batches_given(x, y, what: str) -> bool:
    """Whether ``x`` is an iterable of ``(x, y)`` batches (a DataLoader, a list of pairs with
    ``y`` None) rather than array data."""
    if not _is_batches(x):
        return False
    if isinstance(x, (list, tuple)):
        return y is None  # with targets, a list is nested-list data
    if y is not None:
        raise ValueError(
            f"{what}: x is a {type(x).__name__} of batches, so y must be None (the batches hold "
            f"the targets)"
        )
    return True


def _data(x, y, kind, dtype, batch_size: int, shuffle: bool, what: str):
    if _batches_given(x, y, what):
        return _LoaderBatches(x, kind, dtype, "x")
    return _pair(x, y, kind, dtype, batch_size, shuffle, what)


def _validation(data, kind, dtype, batch_size: int):
    if isinstance(data, (tuple, list)):
        if len(data) != 2:
            raise ValueError(
                f"validation_data must be a pair (x_val, y_val), got a {type(data).__name__} of "
                f"length {len(data)} (sample weights are not supported)"
            )
        xv, yv = data
        xa = _inputs(xv, dtype, "validation_data x")
        ya = _targets(yv, kind, dtype, "validation_data y")
        if len(xa) != len(ya):
            raise ValueError(
                f"validation_data: x has {len(xa)} samples but y has {len(ya)}; expected as many"
            )
        if len(xa) == 0:
            raise ValueError("validation_data: x has no samples")
        return _ArrayBatches(xa, ya, batch_size, shuffle=False)
    if _is_batches(data):
        return _LoaderBatches(data, kind, dtype, "validation_data")
    raise TypeError(
        f"validation_data must be a pair (x_val, y_val) or an iterable of batches, got "
        f"{type(data).__name__}"
    )


# ---------------------------------------------------------------- one step


def _chain_loss(state: _Compiled, sync) -> nn.CrossEntropyLoss | None:
    """The loss of fit's compiled step (:func:`_chain_step`), or None when the compiled model
    and loss are not its case: a Sequential and a mean or summed CrossEntropyLoss, trained on
    one process."""
    loss = state.loss_fn
    if (
        not _CHAIN_STEP
        or sync is not None
        or type(loss) is not nn.CrossEntropyLoss
        or loss.reduction not in ("mean", "sum")
        or not isinstance(state.logits_fn, nn.Sequential)
    ):
        return None
    return loss


def _chain_step(state: _Compiled, loss: nn.CrossEntropyLoss, xb, yb):
    """fit's step for the commonest model, without a graph: ``(loss value, logits, backward)``
    when the logits come from one run of Linear layers (activations fused, none after the last,
    every parameter trained) and the targets are int64 labels; else None, and the eager step
    (which also raises the errors) runs instead.

    The forward, the loss and the backward are one call each (ops.linear_chain_fast,
    ops.softmax_cross_entropy, ops.linear_chain_backward_fast), the kernels and arguments of
    the eager step, so the numbers are the same; what goes is the Tensors, graph nodes and
    checks around them (about a third of a 64-128-64-10 step at batch 32).
    """
    if type(yb) is not np.ndarray or yb.dtype != np.int64 or yb.ndim != 1:
        return None
    model = state.logits_fn
    chain = model._single_chain()
    if chain is None or chain.acts[-1] is not None:
        return None
    for p in chain.params:
        if p is not None and not p.requires_grad:
            return None
    weights, biases = chain.arrays()
    acts, slopes, params = chain.acts, chain.slopes, chain.params
    # the backward reads the weights after the first (the inputs need no gradient): their
    # versions now, checked before it runs, as the graph's backward does
    saved = chain.weights[1:]
    versions = [w._version for w in saved]
    workspace = model.__dict__.get("_workspace")
    outs = ops.linear_chain_fast(
        xb, weights, biases, acts, slopes, 0 if workspace is None else workspace.min_size
    )
    if outs is None:
        return None
    logits = outs[-1]
    if nn.functional._rows_like_probabilities(logits):
        nn.functional._warn_probabilities(
            "cross_entropy", logits, *nn.functional._LIKE_PROBABILITIES
        )
    value, grad = ops.softmax_cross_entropy(
        logits,
        yb,
        reduction=loss.reduction,
        ignore_index=loss.ignore_index,
        label_smoothing=loss.label_smoothing,
    )

    def backward() -> None:
        _autograd.check_saved(saved, versions, _chain_step)
        grads = ops.linear_chain_backward_fast(grad, outs, weights, acts, slopes, False)
        if grads is None:  # not expected: the forward made the same checks
            _loss(state, model(Tensor(xb)), yb).backward()
            return
        for p, g in zip(params, grads[1:], strict=True):
            if p is not None:
                if p._grad is None:
                    p._grad = g
                else:
                    np.add(p._grad, g, out=p._grad)
        if _autograd._post_backward_hooks:
            _autograd._run_post_backward_hooks()

    return float(value), logits, backward


def _loss(state: _Compiled, out, t: np.ndarray):
    """The compiled loss of outputs ``out`` (a Tensor) against targets ``t`` (ndarray)."""
    if not isinstance(out, Tensor):
        raise TypeError(f"the model returned a {type(out).__name__}; expected a myelin Tensor")
    kind = state.kind
    if kind in ("binary", "mse") and t.shape != out._data.shape:
        if t.size != out._data.size:
            raise ValueError(
                f"the model outputs shape {out._data.shape} but the targets have shape {t.shape}; "
                f"{'binary_crossentropy' if kind == 'binary' else 'mse'} expects one target per "
                f"output"
            )
        t = t.reshape(out._data.shape)
    elif kind == "categorical" and t.shape != out._data.shape:
        raise ValueError(
            f"categorical_crossentropy expects one-hot targets of the outputs' shape "
            f"{out._data.shape}, got targets of shape {t.shape} (for integer labels use "
            f"'sparse_categorical_crossentropy')"
        )
    loss = state.loss_fn(out, Tensor(t))
    if not isinstance(loss, Tensor) or loss._data.size != 1:
        what = loss._data.shape if isinstance(loss, Tensor) else type(loss).__name__
        raise ValueError(f"the loss must return a scalar Tensor, got {what}")
    return loss


def _accuracy(out: np.ndarray, t: np.ndarray, threshold: float) -> float:
    """Mean accuracy of a batch, computed on arrays (no graph)."""
    if out.ndim >= 2 and out.shape[-1] > 1:
        pred = out.argmax(axis=-1)
        if t.shape == out.shape:
            true = t.argmax(axis=-1)
        elif t.size == pred.size:
            true = t.reshape(pred.shape)
        else:
            raise ValueError(
                f"accuracy: outputs of shape {out.shape} need targets of shape {pred.shape} "
                f"(labels) or {out.shape} (one-hot), got {t.shape}"
            )
        return int(np.count_nonzero(pred == true)) / pred.size
    if t.size != out.size:
        raise ValueError(
            f"accuracy: outputs of shape {out.shape} need one 0/1 target per output, got targets "
            f"of shape {t.shape}"
        )
    pred = (out.reshape(-1) > threshold).astype(t.dtype)
    return int(np.count_nonzero(pred == t.reshape(-1))) / pred.size


class _Running:
    """Sample-weighted running means of the loss and the metrics over an epoch."""

    def __init__(self, metrics: list) -> None:
        self.metrics = metrics
        self.n = 0
        self.loss = 0.0
        self.sums = [0.0] * len(metrics)

    def add(self, state: _Compiled, loss: float, out: np.ndarray, t: np.ndarray, n: int) -> None:
        self.n += n
        self.loss += loss * n
        if self.metrics:
            acc = _accuracy(out, t, state.threshold)
            for i in range(len(self.metrics)):
                self.sums[i] += acc * n

    def logs(self) -> dict:
        n = self.n or math.nan
        logs = {"loss": self.loss / n}
        for name, s in zip(self.metrics, self.sums, strict=True):
            logs[name] = s / n
        return logs


@contextmanager
def _inference(model):
    """Eval mode and no graph; every module's previous mode is restored afterwards."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with no_grad():
            yield
    finally:
        for m, flag in modes:
            object.__setattr__(m, "training", flag)


def _run_test(model, state: _Compiled, batches, cbs=None) -> dict:
    """Loss and metrics of ``batches`` in eval mode without a graph."""
    if cbs is not None:
        cbs.call("on_test_begin", {})
    run = _Running(state.metrics)
    with _inference(model):
        for j, (xb, yb) in enumerate(batches):
            if cbs is not None and cbs.wants("test_begin"):
                cbs.call_batch("test_begin", j, {})
            out = state.logits_fn(Tensor(xb))
            loss = _loss(state, out, yb)
            run.add(state, float(loss._data), out._data, yb, len(xb))
            if cbs is not None and cbs.wants("test_end"):
                cbs.call_batch("test_end", j, run.logs())
    if run.n == 0:
        raise ValueError("the evaluation data produced no batches")
    logs = run.logs()
    if cbs is not None:
        cbs.call("on_test_end", dict(logs))
    return logs


# ---------------------------------------------------------------- progress


class _Progress:
    """Keras-like progress output: a bar redrawn in place on a terminal (verbose=1), or one
    line per epoch (verbose=2, or verbose=1 when stdout is not a terminal, as in CI logs)."""

    def __init__(self, verbose: int, epochs: int, steps) -> None:
        self.verbose = verbose
        self.stream = sys.stdout
        try:
            tty = self.stream.isatty()
        except (AttributeError, ValueError):
            tty = False
        self.live = verbose == 1 and tty
        self.epochs = epochs
        self.steps = steps
        self.width = 0
        # a redrawn line must fit the terminal: one that wraps cannot be returned to with "\r"
        self.columns = shutil.get_terminal_size().columns if self.live else 0

    def epoch_begin(self, epoch: int) -> None:
        self.epoch = epoch
        self.t0 = time.perf_counter()
        self.last = -math.inf
        self.busy: float | None = None

    def _line(self, step: int, logs: dict, seen: int, elapsed: float, bar: bool, busy=None) -> str:
        """One status line; the throughput is ``seen`` samples over ``busy`` seconds of training
        (``elapsed`` when None), validation time excluded."""
        parts = [f"Epoch {self.epoch + 1}/{self.epochs}"]
        if bar:
            if self.steps:
                done = min(step, self.steps)
                fill = 20 * done // self.steps
                arrow = ">" if done < self.steps else ""
                parts.append(
                    f"{done}/{self.steps} [{'=' * fill}{arrow}{'.' * (20 - fill - len(arrow))}]"
                )
            else:
                parts.append(f"{step}/?")
        parts.append(f"{elapsed:.1f}s")
        if bar and self.steps and 0 < step < self.steps:
            parts.append(f"ETA {elapsed / step * (self.steps - step):.0f}s")
        parts += [f"{k}: {v:.4f}" for k, v in logs.items() if k not in ("lr", "grad_norm")]
        busy = elapsed if busy is None else busy
        if busy > 0:
            parts.append(f"{seen / busy:,.0f} samples/s")
        return " - ".join(parts)

    def batch(self, step: int, run: _Running) -> None:
        if not self.live:
            return
        now = time.perf_counter()
        if now - self.last < _PROGRESS_INTERVAL:
            return
        self.last = now
        line = self._line(step, run.logs(), run.n, now - self.t0, True)
        if self.columns > 1:
            line = line[: self.columns - 1]
        self._write("\r" + self._pad(line))

    def train_end(self) -> None:
        """Mark the end of the epoch's training batches (validation comes next)."""
        self.busy = time.perf_counter() - self.t0

    def epoch_end(self, step: int, logs: dict, seen: int) -> None:
        if self.verbose == 0:
            return
        elapsed = time.perf_counter() - self.t0
        line = self._line(step, logs, seen, elapsed, self.verbose == 1, self.busy)
        if self.live:
            self._write("\r" + self._pad(line) + "\n")
            self.width = 0
        else:
            self._write(line + "\n")

    def _pad(self, line: str) -> str:
        pad = max(self.width - len(line), 0)
        self.width = len(line)
        return line + " " * pad

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()


# ---------------------------------------------------------------- fit


def _count(value, name: str, low: int) -> int:
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got bool")
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int, got {type(value).__name__}") from None
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    return value


def _verbose(verbose) -> int:
    if verbose == "auto":
        return 1
    if isinstance(verbose, bool) or verbose not in (0, 1, 2):
        raise ValueError(f"verbose must be 0, 1, 2 or 'auto', got {verbose!r}")
    return int(verbose)


def _nan_message(value: float, epoch: int, epochs: int, batch: int, steps) -> str:
    where = f"epoch {epoch + 1}/{epochs}, batch {batch + 1}" + (f"/{steps}" if steps else "")
    return (
        f"fit: the loss is {value} at {where}; training stopped "
        f"(the weights are those before this batch). Likely causes: the learning rate is too "
        f"high (lower it, e.g. 1e-3 with Adam); the inputs are not normalised (scale them, e.g. "
        f"with myelin.data.Normalize); a sigmoid/softmax output is fed to a loss that expects "
        f"logits (drop the final activation or use the matching loss name); or the data holds "
        f"NaN or inf."
    )


def fit(
    model: Module,
    x: Any = None,
    y: Any = None,
    epochs: int = 1,
    batch_size: int = 32,
    validation_split: float = 0.0,
    validation_data: Any = None,
    shuffle: bool = True,
    callbacks: Sequence[Callback] | None = (),
    verbose: int | str = 1,
    initial_epoch: int = 0,
    distributed=None,
) -> History:
    """Train ``model`` for ``epochs`` passes over the data (``keras.Model.fit``,
    https://keras.io/api/models/model_training_apis/).

    Parameters
    ----------
    x : ndarray, Tensor, nested lists, or iterable of ``(x, y)`` batches
        Inputs ``(N, ...)``, converted to the dtype of the model's parameters (float32 for a
        model that has none yet). Or an iterable of batches such as a ``myelin.data.DataLoader``
        (then ``y`` is None and ``batch_size``/``validation_split`` do not apply).
    y : ndarray, Tensor or nested lists
        Targets ``(N, ...)``: integer labels stay int64, float targets take the parameters'
        dtype.
    epochs : int
        Index of the last epoch (training runs epochs ``initial_epoch .. epochs - 1``).
    batch_size : int
    validation_split : float in [0, 1)
        Hold out the LAST fraction of the samples (before any shuffling) for validation, as
        Keras does. Ignored when ``validation_data`` is given.
    validation_data : (x_val, y_val) or iterable of batches
    shuffle : bool
        Draw a new order of the training samples each epoch from the default generator
        (``myelin.manual_seed`` makes the run reproducible).
    callbacks : list of myelin.callbacks.Callback
    verbose : 0, 1, 2 or "auto"
        0 silent; 1 a progress bar per epoch on a terminal (only the end-of-epoch line
        otherwise); 2 one line per epoch.
    initial_epoch : int
        Epoch to resume from (0-based).
    distributed : bool, optional
        Train data-parallel across the ranks of the MPI job (see :mod:`myelin.distributed`;
        call ``myelin.distributed.init()`` first). The default is True exactly when ``model`` is
        a ``DistributedDataParallel``; a plain model is wrapped for the call. Each rank then
        trains on its shard of ``x`` (``batch_size`` samples per rank and step; a DataLoader
        should use a ``DistributedSampler``), gradients are averaged over the ranks, the epoch
        logs are averaged over all samples of all ranks, and only rank 0 prints and runs
        ``ModelCheckpoint``.

    Returns
    -------
    myelin.callbacks.History
        Also set as ``model.history``. Its ``history`` holds per-epoch lists of ``"loss"``, each
        metric, ``"val_*"`` when validating, ``"lr"`` and ``"grad_norm"``.

    Each step runs ``optimizer.zero_grad()``, the forward pass (on logits), the loss,
    ``backward()``, the global gradient norm and ``optimizer.step()`` in train mode. Training
    stops early when ``model.stop_training`` is set (checked after each batch and epoch), and on
    the first batch whose loss is NaN or inf, with a RuntimeWarning naming the epoch and batch.
    The train/eval mode of every module is restored at the end.
    """
    state = _compiled(model)
    epochs = _count(epochs, "epochs", 0)
    initial_epoch = _count(initial_epoch, "initial_epoch", 0)
    batch_size = 32 if batch_size is None else _count(batch_size, "batch_size", 1)
    verbose = _verbose(verbose)
    try:
        validation_split = float(validation_split)
    except (TypeError, ValueError):
        raise TypeError(
            f"validation_split must be a float in [0, 1), got {type(validation_split).__name__}"
        ) from None
    if not 0.0 <= validation_split < 1.0:
        raise ValueError(f"validation_split must be in [0, 1), got {validation_split}")
    user_callbacks = _check_callbacks(callbacks)
    dtype = _param_dtype(model)
    dist = _distributed(model, distributed)
    if dist is not None and dist.rank() != 0:
        verbose = 0
        user_callbacks = [c for c in user_callbacks if not isinstance(c, ModelCheckpoint)]

    val = None
    sample = None
    if _batches_given(x, y, "fit"):
        if validation_split:
            raise ValueError(
                "validation_split does not apply when x is an iterable of batches; pass "
                "validation_data instead"
            )
        if iter(x) is x and epochs - initial_epoch > 1:
            raise ValueError(
                "x is an iterator, which can be gone through only once, but fit was asked for "
                f"{epochs - initial_epoch} epochs; pass a DataLoader or a list of batches"
            )
        train: Any = _LoaderBatches(x, state.kind, dtype, "x")
        samples = None
    else:
        train = _pair(x, y, state.kind, dtype, batch_size, shuffle, "fit")
        if validation_split and validation_data is None:
            n = train.n
            split_at = int(math.floor(n * (1.0 - validation_split)))
            if split_at in (0, n):
                raise ValueError(
                    f"validation_split={validation_split} of {n} samples leaves "
                    f"{split_at} for training and {n - split_at} for validation; both need "
                    f"at least one"
                )
            val = _ArrayBatches(train.x[split_at:], train.y[split_at:], batch_size, False)
            train = _ArrayBatches(train.x[:split_at], train.y[:split_at], batch_size, shuffle)
        if dist is not None:
            train = dist._ShardedArrays(train.x, train.y, batch_size, shuffle)
        samples = train.n
        sample = train.x[:1]
    if validation_data is not None:
        val = _validation(validation_data, state.kind, dtype, batch_size)

    history = History()
    params = {
        "epochs": epochs,
        "steps": train.steps,
        "batch_size": batch_size if samples is not None else None,
        "samples": samples,
        "verbose": verbose,
        "metrics": ["loss", *state.metrics],
    }
    # History last, as Keras: it records any key the other callbacks add to the epoch logs
    cbs = _CallbackList([*user_callbacks, history], model, params)
    progress = _Progress(verbose, epochs, train.steps)
    object.__setattr__(model, "stop_training", False)
    modes = [(m, m.training) for m in model.modules()]
    try:
        with _interruptible(model) as interrupted:
            if state.optimizer is None:
                _prebuild(model, state, sample)
            sync = None
            if dist is not None:
                wrapped = isinstance(model, dist.DistributedDataParallel)
                sync = model if wrapped else dist.DistributedDataParallel(model)
                if state.optimizer is not None:
                    dist.broadcast_optimizer_state(state.optimizer)
            _train(model, state, train, val, cbs, progress, initial_epoch, epochs, sync)
    finally:
        for m, flag in modes:
            object.__setattr__(m, "training", flag)
    object.__setattr__(model, "history", history)
    if interrupted:
        at = history.epoch[-1] + 1 if history.epoch else initial_epoch + 1
        warnings.warn(
            f"fit interrupted (Ctrl-C) in epoch {at}: "
            "stopped at the end of the batch running, returning the history so far",
            RuntimeWarning,
            stacklevel=_warn.stacklevel(),
        )
    return history


@contextmanager
def _interruptible(model):
    """Ctrl-C (SIGINT) during fit stops training at the end of the current batch: the first one
    sets ``model.stop_training``, so no step is left half done (parameters and optimizer state
    stay consistent) and fit returns the history so far; a second one raises KeyboardInterrupt
    at once. Yields a list that is non-empty after an interruption. Only in the main thread,
    and only when SIGINT has Python's default handler (a user's own handler is left alone)."""
    import signal
    import threading

    hits: list = []
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield hits
        return

    def handler(signum, frame):
        hits.append(signum)
        object.__setattr__(model, "stop_training", True)
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C raises

    signal.signal(signal.SIGINT, handler)
    try:
        yield hits
    finally:
        if signal.getsignal(signal.SIGINT) is handler:
            signal.signal(signal.SIGINT, signal.default_int_handler)


def _prebuild(model, state: _Compiled, sample) -> None:
    """Build a pending optimizer before training starts, so that callbacks see it: a lazily
    built model gets its parameters from one forward pass on one sample (eval mode, no graph).
    Without array data, the optimizer is built at the first batch."""
    if not any(True for _ in model.parameters()):
        if sample is None:
            return
        with _inference(model):
            model(Tensor(sample))
    _build_optimizer(model, state)


def _distributed(model, distributed):
    """myelin.distributed when fit trains data-parallel, else None."""
    from myelin import distributed as dist  # imports no MPI by itself

    wrapped = isinstance(model, dist.DistributedDataParallel)
    if distributed is None:
        distributed = wrapped
    if not isinstance(distributed, (bool, np.bool_)):
        raise TypeError(f"distributed must be True, False or None, got {distributed!r}")
    if not distributed:
        if wrapped:
            raise ValueError(
                "distributed=False, but the model is a DistributedDataParallel, whose backward "
                "passes average over the ranks; pass its .module to train one process alone"
            )
        return None
    if not dist.is_initialized():
        raise RuntimeError("fit(distributed=True) needs myelin.distributed.init() first")
    return dist


def _set_epoch(train, epoch: int) -> None:
    """Tell the epoch to whatever shards the data (a DistributedSampler), so that it reshuffles."""
    loader = getattr(train, "loader", None)
    for obj in (train, loader, getattr(loader, "sampler", None)):
        set_epoch = getattr(obj, "set_epoch", None)
        if callable(set_epoch):
            set_epoch(epoch)


def _train(
    model, state, train, val, cbs, progress, initial_epoch: int, epochs: int, sync=None
) -> None:
    params = list(model.parameters()) if state.optimizer is not None else None
    want_begin = cbs.wants("train_begin")
    want_end = cbs.wants("train_end")
    chain_loss = _chain_loss(state, sync)
    logs: dict = {}
    cbs.call("on_train_begin", {})
    for epoch in range(initial_epoch, epochs):
        cbs.call("on_epoch_begin", epoch, {})
        _set_epoch(train, epoch)
        model.train()
        progress.epoch_begin(epoch)
        run = _Running(state.metrics)
        norm_sum, steps, lr, bad = 0.0, 0, None, None
        j = -1
        for j, (xb, yb) in enumerate(train):
            if want_begin:
                cbs.call_batch("train_begin", j, {})
            if want_begin or want_end or not model.training:
                model.train()  # a callback may have changed the mode
            opt = state.optimizer
            if opt is not None:
                opt.zero_grad()
            else:
                model.zero_grad()
            step = None if chain_loss is None else _chain_step(state, chain_loss, xb, yb)
            if step is None:
                out = state.logits_fn(Tensor(xb))
                loss = _loss(state, out, yb)
                value, logits, backward = float(loss._data), out._data, loss.backward
            else:
                value, logits, backward = step
            run.add(state, value, logits, yb, len(xb))
            if math.isfinite(value) if sync is None else sync._all_finite(value):
                if state.optimizer is None:
                    _build_optimizer(model, state)
                if params is None:
                    params = list(model.parameters())
                if sync is not None:
                    sync._prepare_for_backward()
                backward()
                norm_sum += ops.global_norm([p._grad for p in params if p._grad is not None])
                steps += 1
                if lr is None:
                    lr = float(state.optimizer.param_groups[0]["lr"])
                state.optimizer.step()
            else:
                bad = (j, value)
            if want_end:
                cbs.call_batch("train_end", j, run.logs())
            progress.batch(j + 1, run)
            if bad is not None or model.stop_training:
                break
        if run.n == 0:
            raise ValueError(f"x produced no batches in epoch {epoch + 1}")
        progress.train_end()
        if sync is not None:
            sync._average_logs(run)
        logs = run.logs()
        if val is not None:
            for k, v in _run_test(model, state, val, cbs).items():
                logs["val_" + k] = v
            model.train()
        if lr is None:
            opt = state.optimizer
            lr = float(opt.param_groups[0]["lr"]) if opt is not None else math.nan
        logs["lr"] = lr
        logs["grad_norm"] = norm_sum / steps if steps else math.nan
        progress.epoch_end(j + 1, logs, run.n)
        cbs.call("on_epoch_end", epoch, logs)
        if bad is not None:
            warnings.warn(
                _nan_message(bad[1], epoch, epochs, bad[0], train.steps),
                RuntimeWarning,
                stacklevel=_warn.stacklevel(),
            )
            break
        if model.stop_training:
            break
    cbs.call("on_train_end", logs)


# ---------------------------------------------------------------- evaluate and predict


def evaluate(
    model: Module,
    x: Any = None,
    y: Any = None,
    batch_size: int = 32,
    verbose: int | str = 0,
    return_dict: bool = False,
    callbacks: Sequence[Callback] | None = None,
):
    """Loss and metrics of ``model`` on ``(x, y)`` in eval mode without a graph
    (``keras.Model.evaluate``, https://keras.io/api/models/model_training_apis/).

    ``x``/``y`` are as in :func:`fit` (arrays, or ``x`` an iterable of batches). The loss and
    metrics are sample-weighted means over the batches.

    Returns
    -------
    float, list or dict
        The loss if no metric was compiled, else ``[loss, *metrics]``; with ``return_dict`` a
        dict ``{"loss": ..., "accuracy": ...}``.
    """
    state = _compiled(model)
    batch_size = 32 if batch_size is None else _count(batch_size, "batch_size", 1)
    verbose = _verbose(verbose)
    cbs = None
    user_callbacks = _check_callbacks(callbacks)
    data = _data(x, y, state.kind, _param_dtype(model), batch_size, False, "evaluate")
    if user_callbacks:
        params = {"steps": data.steps, "verbose": verbose, "metrics": ["loss", *state.metrics]}
        cbs = _CallbackList(user_callbacks, model, params)
    logs = _run_test(model, state, data, cbs)
    if verbose:
        print("evaluate - " + " - ".join(f"{k}: {v:.4f}" for k, v in logs.items()))
    if return_dict:
        return logs
    if not state.metrics:
        return logs["loss"]
    return [logs["loss"], *(logs[m] for m in state.metrics)]


def predict(model: Module, x: Any, batch_size: int = 32, verbose: int | str = 0) -> np.ndarray:
    """The model's outputs for ``x``, batch by batch, concatenated (``keras.Model.predict``,
    https://keras.io/api/models/model_training_apis/).

    Runs in eval mode (dropout off) without a graph and restores the previous train/eval mode.
    The outputs are the model's own: probabilities for a model that ends in Softmax, even when
    ``compile`` split it off for the loss. Needs no ``compile``.

    Parameters
    ----------
    x : ndarray, Tensor, nested lists, or iterable of batches
        Inputs ``(N, ...)`` (converted to the parameters' dtype), or an iterable of input
        batches or ``(x, y)`` batches (the targets are ignored).
    batch_size : int
    verbose : 0, 1, 2 or "auto"
        Non-zero prints one summary line.

    Returns
    -------
    ndarray of shape ``(N, ...)``
    """
    batch_size = 32 if batch_size is None else _count(batch_size, "batch_size", 1)
    verbose = _verbose(verbose)
    dtype = _param_dtype(model)
    if isinstance(x, (list, tuple)) or not _is_batches(x):
        xa = _inputs(x, dtype, "x")
        batches: Any = _ArrayBatches(xa, None, batch_size, shuffle=False)
    else:
        batches = _LoaderBatches(x, None, dtype, "x", targets=False)
    t0 = time.perf_counter()
    outs = []
    with _inference(model):
        for xb, _ in batches:
            out = model(Tensor(xb))
            outs.append(out._data if isinstance(out, Tensor) else np.asarray(out))
    if not outs:
        raise ValueError("predict: x has no samples")
    result = np.concatenate(outs, axis=0)
    if verbose:
        print(f"predict - {len(result)} samples - {time.perf_counter() - t0:.2f}s")
    return result
