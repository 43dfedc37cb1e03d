"""Keras-style callbacks for ``fit`` (https://keras.io/api/callbacks/).

A callback is an object whose hooks ``fit`` calls at fixed points of training: ``on_train_begin``,
``on_epoch_begin``, ``on_train_batch_begin``, ``on_train_batch_end``, ``on_epoch_end``,
``on_train_end``, and ``on_test_begin``/``on_test_end`` around validation and ``evaluate``.
Each hook receives a ``logs`` dict: epoch logs hold ``"loss"``, the compiled metrics,
``"val_*"``, ``"lr"`` and ``"grad_norm"``; batch logs hold the running means of ``"loss"`` and the
metrics over the epoch so far (as Keras 3). A callback stops training by setting
``self.model.stop_training = True``.

>>> stop = myelin.callbacks.EarlyStopping(patience=3, restore_best_weights=True)
>>> model.fit(x, y, validation_split=0.2, epochs=100, callbacks=[stop])
"""

from __future__ import annotations

import math
import os
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from myelin._typing import Logs, PathLike
    from myelin.nn.module import Module

__all__ = [
    "Callback",
    "EarlyStopping",
    "History",
    "LambdaCallback",
    "LearningRateScheduler",
    "ModelCheckpoint",
    "TerminateOnNaN",
]


class Callback:
    """Base class of callbacks (``keras.callbacks.Callback``,
    https://keras.io/api/callbacks/base_callback/); every hook is a no-op.

    Attributes
    ----------
    model : Module or None
        The model being trained, set by ``fit`` through :meth:`set_model`.
    params : dict
        Training parameters set by ``fit``: ``epochs``, ``steps`` (batches per epoch, None when
        unknown), ``batch_size``, ``samples``, ``verbose``, ``metrics``.

    ``on_batch_begin``/``on_batch_end`` are aliases of ``on_train_batch_begin``/
    ``on_train_batch_end``: override either.
    """

    def __init__(self) -> None:
        self.model: Any = None
        self.params: dict = {}

    def set_model(self, model: Module) -> None:
        """Attach the model being trained (``fit`` calls this)."""
        self.model = model

    def set_params(self, params: dict) -> None:
        """Record the training parameters (``epochs``, ``steps``, ``verbose``)."""
        self.params = params

    def on_train_begin(self, logs: Logs = None) -> None:
        """Called once when ``fit`` starts."""

    def on_train_end(self, logs: Logs = None) -> None:
        """Called once when ``fit`` ends (also after an early stop); ``logs`` are the last
        epoch's."""

    def on_epoch_begin(self, epoch: int, logs: Logs = None) -> None:
        """Called at the start of epoch ``epoch`` (0-based)."""

    def on_epoch_end(self, epoch: int, logs: Logs = None) -> None:
        """Called at the end of epoch ``epoch`` with its training and validation logs."""

    def on_batch_begin(self, batch: int, logs: Logs = None) -> None:
        """Alias of :meth:`on_train_batch_begin` (Keras' backward-compatible name)."""

    def on_batch_end(self, batch: int, logs: Logs = None) -> None:
        """Alias of :meth:`on_train_batch_end` (Keras' backward-compatible name)."""

    def on_train_batch_begin(self, batch: int, logs: Logs = None) -> None:
        """Called before training batch ``batch`` (0-based within the epoch)."""
        self.on_batch_begin(batch, logs=logs)

    def on_train_batch_end(self, batch: int, logs: Logs = None) -> None:
        """Called after training batch ``batch`` with the running means of the epoch so far."""
        self.on_batch_end(batch, logs=logs)

    def on_test_begin(self, logs: Logs = None) -> None:
        """Called before a validation pass in ``fit`` and at the start of ``evaluate``."""

    def on_test_end(self, logs: Logs = None) -> None:
        """Called after a validation pass or ``evaluate`` with its (unprefixed) logs."""

    def on_test_batch_begin(self, batch: int, logs: Logs = None) -> None:
        """Called before each batch of a validation pass or ``evaluate``."""

    def on_test_batch_end(self, batch: int, logs: Logs = None) -> None:
        """Called after each batch of a validation pass or ``evaluate``."""

    def on_predict_begin(self, logs: Logs = None) -> None:
        """Called at the start of ``predict``."""

    def on_predict_end(self, logs: Logs = None) -> None:
        """Called at the end of ``predict``."""


_BATCH_HOOKS = {
    "train_begin": ("on_train_batch_begin", "on_batch_begin"),
    "train_end": ("on_train_batch_end", "on_batch_end"),
    "test_begin": ("on_test_batch_begin",),
    "test_end": ("on_test_batch_end",),
}


def _overrides(cb: Callback, names: tuple) -> bool:
    """Whether ``cb`` defines any of the hooks ``names`` (in its class or on the instance)."""
    for name in names:
        if name in vars(cb) or getattr(type(cb), name, None) is not getattr(Callback, name):
            return True
    return False


class _CallbackList:
    """Calls a hook on every callback in order; batch hooks only on the callbacks that define
    them, so that a fit without batch callbacks pays nothing per batch."""

    def __init__(self, callbacks, model, params: dict) -> None:
        self.callbacks = list(callbacks)
        for cb in self.callbacks:
            cb.set_model(model)
            cb.set_params(params)
        self.batch = {
            key: [cb for cb in self.callbacks if _overrides(cb, names)]
            for key, names in _BATCH_HOOKS.items()
        }

    def wants(self, key: str) -> bool:
        return bool(self.batch[key])

    def call(self, hook: str, *args) -> None:
        for cb in self.callbacks:
            getattr(cb, hook)(*args)

    def call_batch(self, key: str, batch: int, logs: dict) -> None:
        hook = _BATCH_HOOKS[key][0]
        for cb in self.batch[key]:
            getattr(cb, hook)(batch, logs)


def _check_callbacks(callbacks, name: str = "callbacks") -> list:
    if callbacks is None:
        return []
    if isinstance(callbacks, Callback):
        return [callbacks]
    try:
        items = list(callbacks)
    except TypeError:
        raise TypeError(
            f"{name} must be a list of myelin.callbacks.Callback, got {type(callbacks).__name__}"
        ) from None
    for i, cb in enumerate(items):
        if not isinstance(cb, Callback):
            raise TypeError(
                f"{name}[{i}] is a {type(cb).__name__}, not a myelin.callbacks.Callback "
                f"(did you forget to instantiate it?)"
            )
    return items


# ---------------------------------------------------------------- History


class History(Callback):
    """Records the epoch logs of a ``fit`` (``keras.callbacks.History``); ``fit`` returns it and
    sets it as ``model.history`` (https://keras.io/api/callbacks/history/).

    Attributes
    ----------
    history : dict of str -> list of float
        One value per epoch for each log key: ``"loss"``, each metric (``"accuracy"``),
        ``"val_loss"``/``"val_accuracy"`` when validating, ``"lr"`` (learning rate of parameter
        group 0 during the epoch) and ``"grad_norm"`` (mean global L2 norm of the gradients over
        the epoch's steps).
    epoch : list of int
        The 0-based indices of the recorded epochs.
    params : dict
        The parameters of the ``fit`` call (``epochs``, ``steps``, ``batch_size``, ...).
    """

    def __init__(self) -> None:
        super().__init__()
        self.history: dict[str, list] = {}
        self.epoch: list[int] = []

    def on_train_begin(self, logs: Logs = None) -> None:
        self.history = {}
        self.epoch = []

    def on_epoch_end(self, epoch: int, logs: Logs = None) -> None:
        self.epoch.append(epoch)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(value)

    def _curves(self, metrics) -> list:
        keys = [
            k for k in self.history if not k.startswith("val_") and k not in ("lr", "grad_norm")
        ]
        if metrics is None:
            return keys
        if isinstance(metrics, str):
            metrics = [metrics]
        metrics = list(metrics)
        for m in metrics:
            if m not in self.history:
                raise ValueError(
                    f"History.plot: metrics has {m!r}, which is not in the history; "
                    f"expected some of {sorted(self.history)}"
                )
        return metrics

    def plot(
        self,
        metrics: str | Sequence[str] | None = None,
        ax: Any = None,
        path: PathLike | None = None,
    ):
        """Draw the per-epoch curves of the loss and the metrics, train and validation.

        Parameters
        ----------
        metrics : str or list of str, optional
            Keys of :attr:`history` to draw, one panel each (default: ``"loss"`` and every
            metric; the ``val_`` curve of each key is drawn in the same panel when present).
        ax : matplotlib Axes or sequence of Axes, optional
            Where to draw: one Axes per panel. Default: a new figure with one row of panels.
        path : str or os.PathLike, optional
            Also save the figure there (PNG unless the suffix says otherwise). Without ``ax`` the
            figure is then made outside pyplot: no window opens, Agg renders it whatever the
            backend, and it is freed once dropped (no ``plt.close`` needed in a loop).

        Returns
        -------
        matplotlib.figure.Figure

        Needs matplotlib (``pip install "myelin[plot]"``).
        """
        try:
            import matplotlib.pyplot as plt
        except ImportError as exc:
            raise ImportError(
                'History.plot needs matplotlib; install it with: pip install "myelin[plot]"'
            ) from exc
        keys = self._curves(metrics)
        if not keys:
            raise ValueError("History.plot: the history is empty (was fit run for any epoch?)")
        axes: Any
        if ax is None:
            size = (4.5 * len(keys), 3.5)
            if path is None:
                fig, axes = plt.subplots(1, len(keys), figsize=size, squeeze=False)
            else:
                # a figure outside pyplot: drawn by Agg whatever the backend, and freed with it
                from matplotlib.figure import Figure

                fig = Figure(figsize=size)
                axes = fig.subplots(1, len(keys), squeeze=False)
            axes = list(axes[0])
        else:
            axes = [ax] if hasattr(ax, "plot") else list(ax)
            if len(axes) != len(keys):
                raise ValueError(
                    f"History.plot: got {len(axes)} Axes for {len(keys)} panels {keys}; "
                    f"pass one Axes per panel"
                )
            fig = axes[0].figure
        epochs = [e + 1 for e in self.epoch]
        for a, key in zip(axes, keys, strict=True):
            a.plot(epochs, self.history[key], marker="o", markersize=3, label="train")
            if "val_" + key in self.history:
                a.plot(epochs, self.history["val_" + key], marker="o", markersize=3, label="val")
            a.set_xlabel("epoch")
            a.set_title(key)
            a.grid(True, alpha=0.3)
            a.legend()
        fig.tight_layout()
        if path is not None:
            fig.savefig(os.fspath(path), dpi=100)
        return fig


# ---------------------------------------------------------------- helpers


def _resolve_mode(mode: str, monitor: str, owner: str):
    """``mode`` resolved to "min" or "max" ("auto" is "max" for names containing "acc")."""
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"{owner}: mode must be 'auto', 'min' or 'max', got {mode!r}")
    if mode == "auto":
        mode = "max" if "acc" in monitor else "min"
    return mode


def _scalar(value) -> float:
    return float(np.asarray(value).reshape(()))


# ---------------------------------------------------------------- EarlyStopping


class EarlyStopping(Callback):
    """Stop training when a monitored quantity has stopped improving
    (``keras.callbacks.EarlyStopping``, https://keras.io/api/callbacks/early_stopping/).

    Parameters
    ----------
    monitor : str
        Epoch-log key to watch (default ``"val_loss"``). If it is missing from the logs, a
        warning is issued once and the callback does nothing.
    min_delta : float
        A change smaller than this (in the improving direction) is not an improvement.
    patience : int
        Epochs without improvement after which training stops.
    mode : "auto", "min" or "max"
        Whether smaller or larger is better; "auto" is "max" when ``monitor`` contains "acc".
    baseline : float, optional
        Training stops if no epoch beats it within ``patience`` epochs (the weights restored are
        then the best of those epochs), as the Keras documentation describes.
    restore_best_weights : bool
        Keep a copy of the weights (``state_dict()``) of the best epoch and load it back when
        training ends, whether it stopped early or ran out of epochs.
    start_from_epoch : int
        Epochs to wait before monitoring starts (warm-up).
    verbose : int
        1 prints when it stops and when it restores weights.

    Attributes
    ----------
    stopped_epoch : int
        0-based epoch at which training was stopped (0 if it was not).
    best : float or None
        Best monitored value seen.
    best_epoch : int
        0-based epoch of ``best``.
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        min_delta: float = 0.0,
        patience: int = 0,
        mode: str = "auto",
        baseline: float | None = None,
        restore_best_weights: bool = False,
        start_from_epoch: int = 0,
        verbose: int = 0,
    ) -> None:
        super().__init__()
        if not isinstance(monitor, str):
            raise TypeError(f"EarlyStopping: monitor must be a str, got {type(monitor).__name__}")
        self.monitor = monitor
        self.min_delta = abs(float(min_delta))
        self.patience = _nonneg_int(patience, "patience", "EarlyStopping")
        self.mode = _resolve_mode(mode, monitor, "EarlyStopping")
        self.baseline = None if baseline is None else float(baseline)
        self.restore_best_weights = bool(restore_best_weights)
        self.start_from_epoch = _nonneg_int(start_from_epoch, "start_from_epoch", "EarlyStopping")
        self.verbose = int(verbose)
        self._warned = False
        self._reset()

    def _reset(self) -> None:
        self.wait = 0
        self.stopped_epoch = 0
        self.best: float | None = None
        self.best_epoch = 0
        self.best_weights: dict | None = None

    def _is_improvement(self, value: float, reference) -> bool:
        if reference is None:
            return True
        if self.mode == "min":
            return value + self.min_delta < reference
        return value - self.min_delta > reference

    def on_train_begin(self, logs: Logs = None) -> None:
        self._reset()

    def on_epoch_end(self, epoch: int, logs: Logs = None) -> None:
        logs = logs or {}
        if self.monitor not in logs:
            if not self._warned:
                self._warned = True
                warnings.warn(
                    f"EarlyStopping: monitor {self.monitor!r} is not in the epoch logs (available: "
                    f"{sorted(logs)}); early stopping does nothing. Pass validation data for "
                    f"'val_*' keys, or monitor one of the available keys.",
                    RuntimeWarning,
                    stacklevel=2,
                )
            return
        if epoch < self.start_from_epoch:
            return
        current = _scalar(logs[self.monitor])
        if self.restore_best_weights and self.best_weights is None:
            # nothing better seen yet: the current weights are the best so far
            self.best_weights = self.model.state_dict()
            self.best_epoch = epoch
        self.wait += 1
        if self._is_improvement(current, self.best):
            self.best = current
            self.best_epoch = epoch
            if self.restore_best_weights:
                self.best_weights = self.model.state_dict()
            # the patience counter restarts only on an epoch that beats the baseline too; until
            # one does, training runs `patience` epochs (Keras' documented behaviour)
            if self.baseline is None or self._is_improvement(current, self.baseline):
                self.wait = 0
                return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs: Logs = None) -> None:
        if self.stopped_epoch > 0 and self.verbose > 0:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose > 0:
                print(
                    f"Restoring model weights from the end of the best epoch: "
                    f"{self.best_epoch + 1}."
                )
            self.model.load_state_dict(self.best_weights)


def _nonneg_int(value, name: str, owner: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{owner}: {name} must be an int, got {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{owner}: {name} must be >= 0, got {value}")
    return int(value)


# ---------------------------------------------------------------- ModelCheckpoint


class ModelCheckpoint(Callback):
    """Save the model (or its weights) at the end of each epoch
    (``keras.callbacks.ModelCheckpoint`` with ``save_freq="epoch"``,
    https://keras.io/api/callbacks/model_checkpoint/).

    Parameters
    ----------
    filepath : str or os.PathLike
        Where to save; may hold format fields filled from the epoch (1-based) and the epoch
        logs, e.g. ``"ckpt-{epoch:02d}-{val_loss:.3f}.npz"``. Missing directories are created.
    monitor : str
        Epoch-log key compared with ``save_best_only`` (default ``"val_loss"``).
    save_best_only : bool
        Save only when ``monitor`` improves on the best value so far.
    save_weights_only : bool
        Save ``myelin.save(model.state_dict(), path)`` rather than the whole model. Models that
        are not an ``nn.Sequential`` are always saved this way (their architecture is code).
        A Sequential is otherwise saved with ``model.save(path)`` (architecture and weights,
        reloadable with ``myelin.load_model``).
    mode : "auto", "min" or "max"
        Direction of improvement; "auto" is "max" when ``monitor`` contains "acc".
    verbose : int
        1 prints a line for each save (and each non-improving epoch with ``save_best_only``).

    Attributes
    ----------
    best : float
        Best monitored value seen (starts at +inf for "min", -inf for "max").
    last_path : str or None
        The path of the last file written.
    """

    def __init__(
        self,
        filepath: PathLike,
        monitor: str = "val_loss",
        save_best_only: bool = False,
        save_weights_only: bool = False,
        mode: str = "auto",
        verbose: int = 0,
    ) -> None:
        super().__init__()
        try:
            self.filepath = os.fspath(filepath)
        except TypeError:
            raise TypeError(
                f"ModelCheckpoint: filepath must be a str or os.PathLike, got "
                f"{type(filepath).__name__}"
            ) from None
        if not isinstance(monitor, str):
            raise TypeError(f"ModelCheckpoint: monitor must be a str, got {type(monitor).__name__}")
        self.monitor = monitor
        self.save_best_only = bool(save_best_only)
        self.save_weights_only = bool(save_weights_only)
        self.mode = _resolve_mode(mode, monitor, "ModelCheckpoint")
        self.verbose = int(verbose)
        self.best = math.inf if self.mode == "min" else -math.inf
        self.last_path: str | None = None
        self._warned = False

    def _path(self, epoch: int, logs: dict) -> str:
        try:
            return self.filepath.format(epoch=epoch + 1, **logs)
        except KeyError as exc:
            raise ValueError(
                f"ModelCheckpoint: filepath {self.filepath!r} has the field {exc.args[0]!r}, "
                f"which is not in the epoch logs; available: ['epoch', "
                f"{', '.join(repr(k) for k in logs)}]"
            ) from None

    def _save(self, path: str) -> None:
        from myelin import serialization
        from myelin.nn import Sequential

        folder = os.path.dirname(path)
        if folder:
            os.makedirs(folder, exist_ok=True)
        if self.save_weights_only or not isinstance(self.model, Sequential):
            serialization.save(self.model.state_dict(), path)
        else:
            self.model.save(path)
        self.last_path = path

    def on_epoch_end(self, epoch: int, logs: Logs = None) -> None:
        logs = dict(logs or {})
        path = self._path(epoch, logs)
        if not self.save_best_only:
            if self.verbose > 0:
                print(f"Epoch {epoch + 1}: saving model to {path}")
            self._save(path)
            return
        if self.monitor not in logs:
            if not self._warned:
                self._warned = True
                warnings.warn(
                    f"ModelCheckpoint: save_best_only needs {self.monitor!r} in the epoch logs "
                    f"(available: {sorted(logs)}); nothing is saved.",
                    RuntimeWarning,
                    stacklevel=2,
                )
            return
        current = _scalar(logs[self.monitor])
        better = current < self.best if self.mode == "min" else current > self.best
        if better:
            if self.verbose > 0:
                print(
                    f"Epoch {epoch + 1}: {self.monitor} improved from {self.best:.5f} to "
                    f"{current:.5f}, saving model to {path}"
                )
            self.best = current
            self._save(path)
        elif self.verbose > 0:
            print(f"Epoch {epoch + 1}: {self.monitor} did not improve from {self.best:.5f}")


# ---------------------------------------------------------------- LearningRateScheduler


class LearningRateScheduler(Callback):
    """Change the learning rate once per epoch (``keras.callbacks.LearningRateScheduler``,
    https://keras.io/api/callbacks/learning_rate_scheduler/).

    Parameters
    ----------
    schedule : myelin.optim.lr_scheduler scheduler, or callable
        A scheduler instance (``StepLR``, ``CosineAnnealingLR``, ...) built on the model's
        optimizer is stepped at the end of each epoch; ``ReduceLROnPlateau`` is stepped with
        ``logs["val_loss"]`` when validating, else ``logs["loss"]``. A Keras-style function
        ``schedule(epoch, lr) -> new_lr`` (``epoch`` 0-based, ``lr`` the current rate of group 0)
        is called at the start of each epoch and its result set on every parameter group.
    verbose : int
        1 prints the new learning rate.
    """

    def __init__(self, schedule: Any, verbose: int = 0) -> None:
        super().__init__()
        self._is_scheduler = hasattr(schedule, "step") and not _is_plain_function(schedule)
        if not self._is_scheduler and not callable(schedule):
            raise TypeError(
                f"LearningRateScheduler: schedule must be a myelin.optim.lr_scheduler scheduler "
                f"or a function (epoch, lr) -> lr, got {type(schedule).__name__}"
            )
        self.schedule = schedule
        self.verbose = int(verbose)
        self._pending: int | None = None

    def _optimizer(self):
        return getattr(self.model, "optimizer", None)

    def _apply(self, epoch: int, optimizer) -> None:
        lr = float(optimizer.param_groups[0]["lr"])
        try:
            new = self.schedule(epoch, lr)
        except TypeError:
            # Keras accepts the older one-argument form schedule(epoch)
            new = self.schedule(epoch)
        try:
            new = float(new)
        except (TypeError, ValueError):
            raise TypeError(
                f"LearningRateScheduler: schedule(epoch={epoch}, lr={lr}) returned "
                f"{type(new).__name__}; expected a float"
            ) from None
        if not math.isfinite(new) or new < 0:
            raise ValueError(
                f"LearningRateScheduler: schedule(epoch={epoch}, lr={lr}) returned {new}; "
                f"expected a finite learning rate >= 0"
            )
        for group in optimizer.param_groups:
            group["lr"] = new
        if self.verbose > 0:
            print(f"Epoch {epoch + 1}: LearningRateScheduler setting learning rate to {new}.")

    def on_epoch_begin(self, epoch: int, logs: Logs = None) -> None:
        if self._is_scheduler:
            return
        opt = self._optimizer()
        if opt is None:
            # the optimizer of a lazily built model appears at the first batch
            self._pending = epoch
            return
        self._apply(epoch, opt)

    def on_train_batch_begin(self, batch: int, logs: Logs = None) -> None:
        if self._pending is not None:
            opt = self._optimizer()
            if opt is not None:
                epoch, self._pending = self._pending, None
                self._apply(epoch, opt)

    def on_epoch_end(self, epoch: int, logs: Logs = None) -> None:
        if not self._is_scheduler:
            return
        logs = logs or {}
        if _is_plateau(self.schedule):
            key = "val_loss" if "val_loss" in logs else "loss"
            self.schedule.step(_scalar(logs[key]))
        else:
            self.schedule.step()
        if self.verbose > 0:
            opt = self._optimizer()
            if opt is not None:
                lr = opt.param_groups[0]["lr"]
                print(f"Epoch {epoch + 1}: LearningRateScheduler setting learning rate to {lr}.")


def _is_plain_function(obj) -> bool:
    import types

    return isinstance(obj, (types.FunctionType, types.BuiltinFunctionType, types.MethodType))


def _is_plateau(scheduler) -> bool:
    try:
        from myelin.optim.lr_scheduler import ReduceLROnPlateau
    except ImportError:
        return type(scheduler).__name__ == "ReduceLROnPlateau"
    return isinstance(scheduler, ReduceLROnPlateau)


# ---------------------------------------------------------------- TerminateOnNaN


class TerminateOnNaN(Callback):
    """Stop training at the first batch whose loss is NaN or infinite
    (``keras.callbacks.TerminateOnNaN``, https://keras.io/api/callbacks/terminate_on_nan/).

    ``fit`` already stops (with a warning) on a non-finite loss; this callback also makes it
    explicit and prints the batch (counted from 1, as the progress bar does).
    """

    def on_train_batch_end(self, batch: int, logs: Logs = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(_scalar(loss)):
            print(f"Batch {batch + 1}: invalid loss, terminating training")
            self.model.stop_training = True


# ---------------------------------------------------------------- LambdaCallback

_LAMBDA_HOOKS = (
    "on_train_begin",
    "on_train_end",
    "on_epoch_begin",
    "on_epoch_end",
    "on_train_batch_begin",
    "on_train_batch_end",
    "on_batch_begin",
    "on_batch_end",
    "on_test_begin",
    "on_test_end",
)


class LambdaCallback(Callback):
    """A callback made of plain functions (``keras.callbacks.LambdaCallback``,
    https://keras.io/api/callbacks/lambda_callback/).

    Pass any of ``on_train_begin(logs)``, ``on_train_end(logs)``, ``on_epoch_begin(epoch, logs)``,
    ``on_epoch_end(epoch, logs)``, ``on_train_batch_begin(batch, logs)``,
    ``on_train_batch_end(batch, logs)`` (or their aliases ``on_batch_begin``/``on_batch_end``),
    ``on_test_begin(logs)``, ``on_test_end(logs)``.

    >>> LambdaCallback(on_epoch_end=lambda epoch, logs: print(epoch, logs["loss"]))
    """

    def __init__(self, **hooks: Callable[..., Any]) -> None:
        super().__init__()
        for name, fn in hooks.items():
            if name not in _LAMBDA_HOOKS:
                raise TypeError(
                    f"LambdaCallback: unknown hook {name!r}; expected some of {list(_LAMBDA_HOOKS)}"
                )
            if fn is None:
                continue
            if not callable(fn):
                raise TypeError(f"LambdaCallback: {name} must be callable, got {type(fn).__name__}")
            if name == "on_batch_begin":
                name = "on_train_batch_begin"
            elif name == "on_batch_end":
                name = "on_train_batch_end"
            setattr(self, name, _lambda_hook(fn, name))


def _lambda_hook(fn, name: str):
    if name in ("on_train_begin", "on_train_end", "on_test_begin", "on_test_end"):
        return lambda logs=None: fn(logs)
    return lambda index, logs=None: fn(index, logs)
