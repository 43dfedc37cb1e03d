"""Keras-style callbacks (myelin.callbacks): hook order, EarlyStopping, ModelCheckpoint,
LearningRateScheduler, TerminateOnNaN, LambdaCallback."""

import os

import numpy as np
import pytest

import myelin
from myelin import nn, optim
from myelin.callbacks import (
    Callback,
    EarlyStopping,
    LambdaCallback,
    LearningRateScheduler,
    ModelCheckpoint,
    TerminateOnNaN,
)
from myelin.optim.lr_scheduler import ReduceLROnPlateau, StepLR


def data(n=48, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = (np.where(y[:, None] == 1, 2.0, -2.0) + rng.normal(0, 1, (n, 2))).astype(np.float32)
    return x, y


def model_and_data(lr=0.1, seed=0):
    myelin.manual_seed(seed)
    model = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 2))
    model.compile(
        optim.SGD(model.parameters(), lr=lr), "sparse_categorical_crossentropy", ["accuracy"]
    )
    return model, *data()


class Inject(Callback):
    """Puts a scripted value under ``key`` into each epoch's logs (run it before the callback
    under test, which then monitors ``key``)."""

    def __init__(self, values, key="score"):
        super().__init__()
        self.values, self.key = values, key

    def on_epoch_end(self, epoch, logs=None):
        logs[self.key] = self.values[epoch]


class Weights(Callback):
    """Records the model's state_dict at each epoch end."""

    def __init__(self):
        super().__init__()
        self.states = []

    def on_epoch_end(self, epoch, logs=None):
        self.states.append(self.model.state_dict())


def same(a, b):
    return a.keys() == b.keys() and all(a[k].tobytes() == b[k].tobytes() for k in a)


# ---------------------------------------------------------------- hooks


class Recorder(Callback):
    def __init__(self):
        super().__init__()
        self.events = []

    def on_train_begin(self, logs=None):
        self.events.append(("train_begin",))

    def on_train_end(self, logs=None):
        self.events.append(("train_end",))

    def on_epoch_begin(self, epoch, logs=None):
        self.events.append(("epoch_begin", epoch))

    def on_epoch_end(self, epoch, logs=None):
        self.events.append(("epoch_end", epoch))
        self.epoch_logs = dict(logs)

    def on_train_batch_begin(self, batch, logs=None):
        self.events.append(("batch_begin", batch))

    def on_train_batch_end(self, batch, logs=None):
        self.events.append(("batch_end", batch))
        self.batch_logs = dict(logs)

    def on_test_begin(self, logs=None):
        self.events.append(("test_begin",))

    def on_test_end(self, logs=None):
        self.events.append(("test_end",))

    def on_test_batch_begin(self, batch, logs=None):
        self.events.append(("test_batch_begin", batch))

    def on_test_batch_end(self, batch, logs=None):
        self.events.append(("test_batch_end", batch))


class AliasRecorder(Callback):
    def __init__(self):
        super().__init__()
        self.events = []

    def on_batch_begin(self, batch, logs=None):
        self.events.append(("begin", batch))

    def on_batch_end(self, batch, logs=None):
        self.events.append(("end", batch))


def test_hook_order_params_and_logs():
    model, x, y = model_and_data()
    rec, alias = Recorder(), AliasRecorder()
    h = model.fit(
        x[:6],
        y[:6],
        epochs=2,
        batch_size=2,
        validation_data=(x[6:9], y[6:9]),
        shuffle=False,
        callbacks=[rec, alias],
        verbose=0,
    )
    epoch = lambda e: [
        ("epoch_begin", e),
        *[ev for j in range(3) for ev in (("batch_begin", j), ("batch_end", j))],
        ("test_begin",),
        ("test_batch_begin", 0), ("test_batch_end", 0),
        ("test_batch_begin", 1), ("test_batch_end", 1),
        ("test_end",),
        ("epoch_end", e),
    ]  # fmt: skip
    assert rec.events == [("train_begin",), *epoch(0), *epoch(1), ("train_end",)]
    assert alias.events == [(w, j) for _ in range(2) for j in range(3) for w in ("begin", "end")]
    assert rec.model is model and alias.model is model
    assert rec.params["epochs"] == 2 and rec.params["steps"] == 3 and rec.params["batch_size"] == 2
    assert set(rec.epoch_logs) == {
        "loss",
        "accuracy",
        "val_loss",
        "val_accuracy",
        "lr",
        "grad_norm",
    }
    # batch logs are the running means of the epoch so far: the last equals the epoch's
    assert rec.batch_logs == {"loss": h.history["loss"][-1], "accuracy": h.history["accuracy"][-1]}


def test_callbacks_must_be_instances():
    model, x, y = model_and_data()
    with pytest.raises(TypeError, match="instantiate"):
        model.fit(x, y, callbacks=[EarlyStopping], verbose=0)
    with pytest.raises(TypeError, match="callbacks"):
        model.fit(x, y, callbacks=3, verbose=0)


def test_lambda_callback():
    model, x, y = model_and_data()
    seen = []
    cb = LambdaCallback(
        on_epoch_end=lambda epoch, logs: seen.append(("epoch", epoch, "loss" in logs)),
        on_batch_end=lambda batch, logs: seen.append(("batch", batch)),
        on_train_end=lambda logs: seen.append(("end",)),
    )
    model.fit(x[:4], y[:4], epochs=2, batch_size=2, callbacks=[cb], verbose=0)
    assert seen == [("batch", 0), ("batch", 1), ("epoch", 0, True)] * 1 + [
        ("batch", 0), ("batch", 1), ("epoch", 1, True), ("end",)
    ]  # fmt: skip
    with pytest.raises(TypeError, match="on_epoch_ending"):
        LambdaCallback(on_epoch_ending=print)


# ---------------------------------------------------------------- EarlyStopping


def drive(cb, values, key="val_loss"):
    """Feed ``values`` as successive epochs' logs; the epoch at which it stops, or None."""
    model = nn.Linear(2, 1)
    cb.set_model(model)
    model.stop_training = False
    cb.on_train_begin({})
    for epoch, v in enumerate(values):
        cb.on_epoch_end(epoch, {key: v})
        if model.stop_training:
            return epoch
    return None


@pytest.mark.parametrize(
    "kw, values, stop, best, best_epoch",
    [
        # patience counts epochs without improvement
        ({"patience": 2}, [1.0, 0.9, 0.95, 0.96, 0.5], 3, 0.9, 1),
        ({"patience": 3}, [1.0, 0.9, 0.95, 0.96, 0.5, 0.6], None, 0.5, 4),
        ({"patience": 0}, [1.0, 0.9, 0.9], 2, 0.9, 1),
        # min_delta: a smaller improvement does not count
        ({"patience": 1, "min_delta": 0.1}, [1.0, 0.95, 0.92, 0.85], 1, 1.0, 0),
        ({"patience": 1, "min_delta": 0.01}, [1.0, 0.95, 0.92, 0.85], None, 0.85, 3),
        # mode
        ({"patience": 1, "mode": "max"}, [1.0, 0.9, 0.8], 1, 1.0, 0),
        ({"patience": 1, "mode": "min"}, [1.0, 0.9, 0.8], None, 0.8, 2),
        # baseline: stop after `patience` epochs unless one beats it
        ({"patience": 2, "baseline": 0.5}, [0.8, 0.7, 0.6, 0.55], 1, 0.7, 1),
        ({"patience": 2, "baseline": 0.5}, [0.8, 0.4, 0.45, 0.46, 0.3], 3, 0.4, 1),
        # start_from_epoch: the first epochs are not monitored
        ({"patience": 0, "start_from_epoch": 2}, [1.0, 2.0, 3.0, 4.0], 3, 3.0, 2),
    ],
)
def test_early_stopping_rules(kw, values, stop, best, best_epoch):
    cb = EarlyStopping(**kw)
    assert drive(cb, values) == stop
    assert cb.stopped_epoch == (stop or 0)
    assert cb.best == best and cb.best_epoch == best_epoch


def test_early_stopping_auto_mode_maximises_accuracies():
    assert EarlyStopping(monitor="val_accuracy").mode == "max"
    assert EarlyStopping(monitor="val_acc").mode == "max"
    assert EarlyStopping(monitor="loss").mode == "min"
    assert drive(EarlyStopping(monitor="val_accuracy"), [0.5, 0.6, 0.6], "val_accuracy") == 2
    with pytest.raises(ValueError, match="mode"):
        EarlyStopping(mode="up")
    with pytest.raises(ValueError, match="patience"):
        EarlyStopping(patience=-1)


def test_early_stopping_in_fit_and_reuse():
    model, x, y = model_and_data()
    stop = EarlyStopping(monitor="score", patience=1)
    scores = [3.0, 1.0, 2.0, 2.5, 0.1]
    h = model.fit(x, y, epochs=5, callbacks=[Inject(scores), stop], verbose=0)
    assert h.epoch == [0, 1, 2] and stop.stopped_epoch == 2 and model.stop_training
    # on_train_begin resets it: a second fit starts afresh
    h = model.fit(x, y, epochs=5, callbacks=[Inject(scores), stop], verbose=0)
    assert h.epoch == [0, 1, 2]


@pytest.mark.parametrize(
    "scores, epochs, ran, best",
    [
        ([3.0, 1.0, 2.0, 2.5, 0.1], 5, 4, 1),  # stops early at epoch 3
        ([3.0, 1.0, 2.0], 3, 3, 1),  # runs out of epochs: restores all the same
    ],
)
def test_restore_best_weights_restores_exactly_the_best_epoch(scores, epochs, ran, best):
    model, x, y = model_and_data(lr=0.5)
    rec = Weights()
    stop = EarlyStopping(monitor="score", patience=2, restore_best_weights=True)
    h = model.fit(x, y, epochs=epochs, callbacks=[Inject(scores), rec, stop], verbose=0)
    assert len(h.epoch) == ran and stop.best_epoch == best
    assert same(model.state_dict(), rec.states[best])
    assert not same(rec.states[-1], rec.states[best])


def test_early_stopping_without_the_monitored_key_warns_once_and_does_nothing():
    model, x, y = model_and_data()
    stop = EarlyStopping(monitor="val_loss", patience=0, restore_best_weights=True)
    with pytest.warns(RuntimeWarning, match="val_loss") as rec:
        h = model.fit(x, y, epochs=3, callbacks=[stop], verbose=0)
    assert len([w for w in rec if "EarlyStopping" in str(w.message)]) == 1
    assert h.epoch == [0, 1, 2] and stop.best is None


def test_early_stopping_verbose(capsys):
    model, x, y = model_and_data()
    stop = EarlyStopping(monitor="score", patience=0, restore_best_weights=True, verbose=1)
    model.fit(x, y, epochs=4, callbacks=[Inject([1.0, 2.0, 3.0, 4.0]), stop], verbose=0)
    out = capsys.readouterr().out
    assert "Epoch 2: early stopping" in out and "best epoch: 1" in out


# ---------------------------------------------------------------- ModelCheckpoint


def test_model_checkpoint_save_best_only_writes_on_improvement_and_reloads(tmp_path):
    model, x, y = model_and_data()
    rec = Weights()
    path = tmp_path / "ckpt" / "model-{epoch:02d}-{score:.1f}.npz"
    ckpt = ModelCheckpoint(path, monitor="score", save_best_only=True, mode="min")
    scores = [3.0, 1.0, 2.0, 0.5]
    model.fit(x, y, epochs=4, callbacks=[Inject(scores), rec, ckpt], verbose=0)
    assert sorted(os.listdir(tmp_path / "ckpt")) == [
        "model-01-3.0.npz", "model-02-1.0.npz", "model-04-0.5.npz"
    ]  # fmt: skip
    assert ckpt.best == 0.5 and ckpt.last_path.endswith("model-04-0.5.npz")
    for epoch, name in [(0, "model-01-3.0.npz"), (1, "model-02-1.0.npz"), (3, "model-04-0.5.npz")]:
        loaded = myelin.load_model(tmp_path / "ckpt" / name)
        assert isinstance(loaded, nn.Sequential)
        assert same(loaded.state_dict(), rec.states[epoch])


def test_model_checkpoint_weights_only_and_every_epoch(tmp_path):
    model, x, y = model_and_data()
    rec = Weights()
    ckpt = ModelCheckpoint(str(tmp_path / "w{epoch}.npz"), save_weights_only=True)
    model.fit(x, y, epochs=2, validation_split=0.25, callbacks=[rec, ckpt], verbose=0)
    for e in range(2):
        state = myelin.load(tmp_path / f"w{e + 1}.npz")
        assert same({k: np.asarray(v) for k, v in state.items()}, rec.states[e])


class TwoLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(2, 3)
        self.b = nn.Linear(3, 2)

    def forward(self, x):
        return self.b(self.a(x).relu())


def test_model_checkpoint_saves_the_state_dict_of_a_custom_module(tmp_path):
    model = TwoLayer()
    model.compile("sgd", "sparse_categorical_crossentropy")
    x, y = data()
    model.fit(x, y, callbacks=[ModelCheckpoint(tmp_path / "m.npz")], verbose=0)
    state = myelin.load(tmp_path / "m.npz")
    assert same({k: np.asarray(v) for k, v in state.items()}, model.state_dict())


def test_model_checkpoint_errors_and_missing_monitor(tmp_path):
    model, x, y = model_and_data()
    with pytest.raises(ValueError, match="val_auc"):
        model.fit(x, y, callbacks=[ModelCheckpoint(tmp_path / "{val_auc}.npz")], verbose=0)
    ckpt = ModelCheckpoint(tmp_path / "m.npz", save_best_only=True)
    with pytest.warns(RuntimeWarning, match="val_loss"):
        model.fit(x, y, epochs=2, callbacks=[ckpt], verbose=0)
    assert not (tmp_path / "m.npz").exists()


# ---------------------------------------------------------------- LearningRateScheduler


def test_learning_rate_scheduler_with_step_lr():
    model, x, y = model_and_data(lr=0.1)
    sched = StepLR(model.optimizer, step_size=2, gamma=0.5)
    h = model.fit(x, y, epochs=5, callbacks=[LearningRateScheduler(sched)], verbose=0)
    np.testing.assert_allclose(h.history["lr"], [0.1, 0.1, 0.05, 0.05, 0.025], rtol=1e-12)


def test_learning_rate_scheduler_with_a_function():
    model, x, y = model_and_data(lr=0.1)
    model.optimizer.add_param_group({"params": [nn.Parameter(np.zeros(1, np.float32))], "lr": 9.0})
    calls = []

    def schedule(epoch, lr):
        calls.append((epoch, lr))
        return lr if epoch == 0 else lr * 0.5

    h = model.fit(x, y, epochs=3, callbacks=[LearningRateScheduler(schedule)], verbose=0)
    np.testing.assert_allclose(h.history["lr"], [0.1, 0.05, 0.025], rtol=1e-12)
    np.testing.assert_allclose([lr for _, lr in calls], [0.1, 0.1, 0.05], rtol=1e-12)
    assert [g["lr"] for g in model.optimizer.param_groups] == [0.025, 0.025]
    # Keras' older one-argument form
    h = model.fit(
        x, y, epochs=2, callbacks=[LearningRateScheduler(lambda e: 0.2 / (e + 1))], verbose=0
    )
    np.testing.assert_allclose(h.history["lr"], [0.2, 0.1], rtol=1e-12)
    with pytest.raises(ValueError, match="finite"):
        model.fit(x, y, callbacks=[LearningRateScheduler(lambda e, lr: float("nan"))], verbose=0)
    with pytest.raises(TypeError, match="schedule"):
        LearningRateScheduler(0.1)


class RecordingPlateau(ReduceLROnPlateau):
    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.metrics_seen = []

    def step(self, metrics, epoch=None):
        self.metrics_seen.append(metrics)
        super().step(metrics)


@pytest.mark.parametrize("validate", [True, False])
def test_reduce_lr_on_plateau_is_stepped_with_val_loss_else_loss(validate):
    model, x, y = model_and_data(lr=0.1)
    sched = RecordingPlateau(model.optimizer, patience=0, factor=0.5)
    kw = {"validation_split": 0.25} if validate else {}
    h = model.fit(x, y, epochs=3, callbacks=[LearningRateScheduler(sched)], verbose=0, **kw)
    assert sched.metrics_seen == h.history["val_loss" if validate else "loss"]


# ---------------------------------------------------------------- TerminateOnNaN


@pytest.mark.parametrize("loss, stops", [(float("nan"), True), (float("inf"), True), (0.3, False)])
def test_terminate_on_nan_rule(loss, stops, capsys):
    model = nn.Linear(2, 2)
    model.stop_training = False
    cb = TerminateOnNaN()
    cb.set_model(model)
    cb.on_train_batch_end(4, {"loss": loss})
    assert model.stop_training is stops
    assert ("Batch 5: invalid loss" in capsys.readouterr().out) is stops


def test_terminate_on_nan_in_fit(capsys):
    model, x, y = model_and_data()
    x[20] = np.nan
    with pytest.warns(RuntimeWarning, match="epoch 1/3, batch 3/6"):
        h = model.fit(
            x, y, epochs=3, batch_size=8, shuffle=False, callbacks=[TerminateOnNaN()], verbose=0
        )
    assert len(h.epoch) == 1
    assert "Batch 3: invalid loss" in capsys.readouterr().out
