"""Keras-style training: compile, fit, evaluate, predict, History (myelin.training).

Losses, metrics and gradient norms are checked against plain NumPy transcriptions of the
published formulas, on models whose weights a learning rate of 0 keeps fixed.
"""

import io
import json
import sys
import warnings

import numpy as np
import pytest

import myelin
from myelin import nn, optim
from myelin.callbacks import Callback, History
from myelin.data import DataLoader, TensorDataset

# ---------------------------------------------------------------- data and references


def blobs(n=200, seed=0, classes=2, dim=2):
    """``classes`` well-separated Gaussian blobs, float32 inputs and int64 labels, shuffled."""
    rng = np.random.default_rng(seed)
    angles = 2 * np.pi * np.arange(classes) / classes
    centers = np.zeros((classes, dim))
    centers[:, 0], centers[:, 1] = 4 * np.cos(angles), 4 * np.sin(angles)
    y = rng.integers(0, classes, n)
    x = centers[y] + rng.normal(0, 0.7, (n, dim))
    return x.astype(np.float32), y.astype(np.int64)


def linear_ref(model, x):
    """``x @ W.T + b`` of the first Linear of ``model``, in float64."""
    sd = model.state_dict()
    w = [v for k, v in sd.items() if k.endswith("weight")][0].astype(np.float64)
    b = [v for k, v in sd.items() if k.endswith("bias")][0].astype(np.float64)
    return x.astype(np.float64) @ w.T + b


def logsumexp(z):
    m = z.max(axis=1, keepdims=True)
    return (m + np.log(np.exp(z - m).sum(axis=1, keepdims=True)))[:, 0]


def softmax_ref(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def sparse_ce_ref(z, y):
    return np.mean(logsumexp(z) - z[np.arange(len(y)), y])


def categorical_ce_ref(z, t):
    return np.mean(-(t * (z - logsumexp(z)[:, None])).sum(axis=1))


def bce_logits_ref(z, t):
    return np.mean(np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z))))


def bce_prob_ref(p, t):
    return np.mean(-(t * np.log(p) + (1 - t) * np.log(1 - p)))


def mse_ref(o, t):
    return np.mean((o - t) ** 2)


def frozen(model, **compile_kw):
    """Compile ``model`` with an SGD of learning rate 0: fit leaves the weights as they are."""
    model.compile(optim.SGD(model.parameters(), lr=0.0), **compile_kw)
    return model


def linear_model(i=3, o=4, *tail, seed=0):
    myelin.manual_seed(seed)
    return nn.Sequential(nn.Linear(i, o), *tail)


# ---------------------------------------------------------------- learning


def test_fit_learns_separable_blobs():
    x, y = blobs(240)
    myelin.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 2), nn.Softmax(dim=1))
    model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    h = model.fit(x, y, epochs=25, batch_size=16, verbose=0)
    loss = h.history["loss"]
    assert loss[-1] < 0.5 * loss[0]
    assert h.history["accuracy"][-1] >= 0.95
    _, acc = model.evaluate(x, y)
    assert acc >= 0.95
    assert np.mean(model.predict(x).argmax(axis=1) == y) >= 0.95


def test_history_keys_lengths_and_params():
    x, y = blobs(100)
    model = linear_model(2, 2)
    model.compile("sgd", "sparse_categorical_crossentropy", ["accuracy"])
    h = model.fit(x, y, epochs=4, batch_size=10, validation_split=0.2, verbose=0)
    assert isinstance(h, History) and model.history is h
    assert set(h.history) == {"loss", "accuracy", "val_loss", "val_accuracy", "lr", "grad_norm"}
    assert all(len(v) == 4 for v in h.history.values())
    assert h.epoch == [0, 1, 2, 3]
    assert h.params["epochs"] == 4 and h.params["steps"] == 8 and h.params["samples"] == 80
    assert h.history["lr"] == [0.01] * 4
    assert all(np.isfinite(h.history["grad_norm"]))


def test_initial_epoch_resumes_at_that_index():
    x, y = blobs(40)
    model = linear_model(2, 2)
    model.compile("sgd", "sparse_categorical_crossentropy")
    h = model.fit(x, y, epochs=5, initial_epoch=3, verbose=0)
    assert h.epoch == [3, 4] and len(h.history["loss"]) == 2


# ---------------------------------------------------------------- losses against references


def test_epoch_loss_is_the_sample_weighted_mean_and_val_split_is_the_tail():
    x, y = blobs(50, classes=4, dim=3)
    model = frozen(linear_model(3, 4), loss="sparse_categorical_crossentropy", metrics=["acc"])
    # 40 training samples in batches of 16, 16, 8; the last 10 samples validate
    h = model.fit(x, y, epochs=2, batch_size=16, validation_split=0.2, verbose=0)
    z = linear_ref(model, x)
    head, tail = slice(0, 40), slice(40, 50)
    np.testing.assert_allclose(h.history["loss"], [sparse_ce_ref(z[head], y[head])] * 2, rtol=1e-5)
    np.testing.assert_allclose(
        h.history["val_loss"], [sparse_ce_ref(z[tail], y[tail])] * 2, rtol=1e-5
    )
    acc_tail = np.mean(z[tail].argmax(1) == y[tail])
    assert h.history["val_acc"] == [acc_tail, acc_tail]
    assert h.history["acc"][0] == np.mean(z[head].argmax(1) == y[head])


def test_validation_data():
    x, y = blobs(30, classes=3, dim=3, seed=1)
    xv, yv = blobs(11, classes=3, dim=3, seed=2)
    model = frozen(linear_model(3, 3), loss="sparse_categorical_crossentropy")
    h = model.fit(x, y, validation_data=(xv, yv), batch_size=4, verbose=0)
    np.testing.assert_allclose(
        h.history["val_loss"][0], sparse_ce_ref(linear_ref(model, xv), yv), rtol=1e-5
    )
    np.testing.assert_allclose(
        h.history["loss"][0], sparse_ce_ref(linear_ref(model, x), y), rtol=1e-5
    )


def _string_loss_cases():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(37, 3)).astype(np.float32)
    labels = rng.integers(0, 4, 37)
    onehot = np.eye(4, dtype=np.float32)[labels]
    soft = rng.dirichlet(np.ones(4), 37).astype(np.float32)
    bits = rng.integers(0, 2, 37)
    target = rng.normal(size=37).astype(np.float32)
    return x, [
        # (loss, output size, final activation or None, y, reference(logits64, y))
        ("sparse_categorical_crossentropy", 4, None, labels, sparse_ce_ref),
        ("sparse_categorical_crossentropy", 4, nn.Softmax(dim=1), labels, sparse_ce_ref),
        ("categorical_crossentropy", 4, None, onehot, categorical_ce_ref),
        ("categorical_crossentropy", 4, nn.Softmax(dim=-1), soft, categorical_ce_ref),
        ("binary_crossentropy", 1, None, bits, lambda z, t: bce_logits_ref(z[:, 0], t)),
        ("binary_crossentropy", 1, nn.Sigmoid(), bits, lambda z, t: bce_logits_ref(z[:, 0], t)),
        ("mse", 1, None, target, lambda z, t: mse_ref(z[:, 0], t)),
        ("mean_squared_error", 1, None, target[:, None], lambda z, t: mse_ref(z, t)),
    ]


@pytest.mark.parametrize("case", range(8))
def test_string_losses_match_numpy(case):
    x, cases = _string_loss_cases()
    name, out, act, y, ref = cases[case]
    tail = (act,) if act is not None else ()
    model = frozen(linear_model(3, out, *tail), loss=name)
    h = model.fit(x, y, batch_size=8, shuffle=False, verbose=0)
    expected = ref(linear_ref(model, x), y.astype(np.float64) if y.dtype.kind == "f" else y)
    np.testing.assert_allclose(h.history["loss"][0], expected, rtol=1e-5)
    np.testing.assert_allclose(model.evaluate(x, y, batch_size=5), expected, rtol=1e-5)


def test_grad_norm_is_the_mean_global_norm_over_the_steps():
    x, y = blobs(40, classes=3, dim=3)
    model = frozen(linear_model(3, 3), loss="sparse_categorical_crossentropy")
    h = model.fit(x, y, batch_size=16, shuffle=False, verbose=0)
    norms = []
    for s in range(0, 40, 16):
        xb, yb = x[s : s + 16].astype(np.float64), y[s : s + 16]
        dz = softmax_ref(linear_ref(model, xb))
        dz[np.arange(len(yb)), yb] -= 1
        dz /= len(yb)
        dw, db = dz.T @ xb, dz.sum(axis=0)
        norms.append(np.sqrt((dw**2).sum() + (db**2).sum()))
    np.testing.assert_allclose(h.history["grad_norm"][0], np.mean(norms), rtol=1e-5)


def test_accuracy_binary_and_categorical():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(30, 3)).astype(np.float32)
    bits = rng.integers(0, 2, 30)
    model = frozen(
        linear_model(3, 1, nn.Sigmoid()), loss="binary_crossentropy", metrics=["accuracy"]
    )
    _, acc = model.evaluate(x, bits)
    assert acc == np.mean((linear_ref(model, x)[:, 0] > 0) == bits)

    labels = rng.integers(0, 4, 30)
    onehot = np.eye(4)[labels]
    model = frozen(linear_model(3, 4), loss="categorical_crossentropy", metrics=["accuracy"])
    _, acc = model.evaluate(x, onehot)
    assert acc == np.mean(linear_ref(model, x).argmax(1) == labels)


def test_explicit_loss_module_sees_the_outputs_as_they_are():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(25, 3)).astype(np.float32)
    t = rng.integers(0, 2, (25, 1)).astype(np.float32)
    model = frozen(linear_model(3, 1, nn.Sigmoid()), loss=nn.BCELoss(), metrics=["accuracy"])
    loss, acc = model.evaluate(x, t)
    p = 1 / (1 + np.exp(-linear_ref(model, x)))
    np.testing.assert_allclose(loss, bce_prob_ref(p, t), rtol=1e-5)
    assert acc == np.mean((p > 0.5) == t)


def test_custom_callable_loss():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(20, 3)).astype(np.float32)
    t = rng.normal(size=(20, 2)).astype(np.float32)
    model = frozen(linear_model(3, 2), loss=lambda out, target: ((out - target) ** 2).sum() / 20)
    np.testing.assert_allclose(
        model.evaluate(x, t, batch_size=20), ((linear_ref(model, x) - t) ** 2).sum() / 20, rtol=1e-5
    )


# ---------------------------------------------------------------- the split of the final activation


@pytest.mark.parametrize(
    "loss, out, act, make_y",
    [
        ("sparse_categorical_crossentropy", 3, nn.Softmax(dim=1), lambda r: r.integers(0, 3, 48)),
        (
            "categorical_crossentropy",
            3,
            nn.Softmax(dim=-1),
            lambda r: np.eye(3)[r.integers(0, 3, 48)],
        ),
        ("binary_crossentropy", 1, nn.Sigmoid(), lambda r: r.integers(0, 2, 48)),
    ],
)
def test_final_activation_is_split_off_for_the_loss(loss, out, act, make_y):
    rng = np.random.default_rng(8)
    x = rng.normal(size=(48, 3)).astype(np.float32)
    y = make_y(rng)
    with_act = linear_model(3, out, act)
    without = linear_model(3, out)
    without.load_state_dict(with_act.state_dict())
    for m in (with_act, without):
        m.compile(optim.SGD(m.parameters(), lr=0.5), loss)
    assert with_act.evaluate(x, y) == without.evaluate(x, y)
    hs = []
    for m in (with_act, without):
        myelin.manual_seed(3)
        hs.append(m.fit(x, y, epochs=3, batch_size=8, verbose=0).history["loss"])
    assert hs[0] == hs[1]
    for a, b in zip(with_act.state_dict().values(), without.state_dict().values(), strict=True):
        assert a.tobytes() == b.tobytes()
    # predict returns the model's own outputs: probabilities
    probs = with_act.predict(x)
    z = without.predict(x)
    expected = softmax_ref(z) if out > 1 else 1 / (1 + np.exp(-z))
    np.testing.assert_allclose(probs, expected, rtol=1e-5, atol=1e-7)


class SoftmaxDense(nn.Module):
    """A dense layer with a softmax output that declares it, as myelin.keras' Dense does."""

    split_activation = "softmax"

    def __init__(self, i, o):
        super().__init__()
        self.inner = nn.Linear(i, o)

    def forward_logits(self, x):
        return self.inner(x)

    def forward(self, x):
        return nn.functional.softmax(self.forward_logits(x), dim=-1)


def test_split_activation_protocol():
    rng = np.random.default_rng(9)
    x = rng.normal(size=(20, 3)).astype(np.float32)
    y = rng.integers(0, 4, 20)
    myelin.manual_seed(0)
    model = frozen(
        nn.Sequential(nn.Identity(), SoftmaxDense(3, 4)), loss="sparse_categorical_crossentropy"
    )
    z = linear_ref(model, x)
    np.testing.assert_allclose(model.evaluate(x, y), sparse_ce_ref(z, y), rtol=1e-5)
    np.testing.assert_allclose(model.predict(x), softmax_ref(z), rtol=1e-5, atol=1e-7)


def test_loss_on_logits_after_a_probability_output_warns():
    model = linear_model(3, 4, nn.Softmax(dim=1))
    with pytest.warns(UserWarning, match="ends in Softmax"):
        model.compile("adam", nn.CrossEntropyLoss())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.compile("adam", "sparse_categorical_crossentropy")


# ---------------------------------------------------------------- compile


@pytest.mark.parametrize(
    "name, cls, lr",
    [
        ("adam", optim.Adam, 1e-3),
        ("AdamW", optim.AdamW, 1e-3),
        ("sgd", optim.SGD, 1e-2),
        ("rmsprop", optim.RMSprop, 1e-3),
    ],
)
def test_optimizer_names(name, cls, lr):
    model = linear_model(2, 2)
    model.compile(name, "mse", ["accuracy"])
    assert type(model.optimizer) is cls
    assert model.optimizer.param_groups[0]["lr"] == lr
    config = json.loads(json.dumps(model._compile_config))
    assert config == {
        "optimizer": {"name": name.lower(), "lr": lr},
        "loss": "mse",
        "metrics": ["accuracy"],
    }
    assert model.compiled_metrics == ["accuracy"]
    assert isinstance(model.loss_fn, nn.MSELoss)
    # the loss module is a plain attribute, not a submodule of the model
    assert len(model) == 1 and "loss_fn" not in dict(model.named_children())


def test_optimizer_instance_is_used_as_given():
    model = linear_model(2, 2)
    opt = optim.SGD(model.parameters(), lr=0.3)
    model.compile(opt, "sparse_categorical_crossentropy")
    assert model.optimizer is opt
    x, y = blobs(20)
    h = model.fit(x, y, verbose=0)
    assert h.history["lr"] == [0.3]


class LazyNet(nn.Module):
    """Creates its layer at the first forward pass (a lazily built model)."""

    def __init__(self):
        super().__init__()
        self.inner = None

    def forward(self, x):
        if self.inner is None:
            self.inner = nn.Linear(x.shape[-1], 2)
        return self.inner(x)


class SpecSGD:
    """An optimizer spec: builds an SGD over the parameters it is given."""

    def __init__(self):
        self.built_with = None

    def build(self, parameters):
        self.built_with = list(parameters)
        return optim.SGD(self.built_with, lr=0.1)


def test_optimizer_spec_is_built_at_fit_for_a_lazy_model():
    spec = SpecSGD()
    model = LazyNet()
    model.compile(spec, "sparse_categorical_crossentropy")
    assert model.optimizer is None and spec.built_with is None
    x, y = blobs(64)
    seen = []

    class Grab(Callback):
        def on_train_begin(self, logs=None):
            seen.append(self.model.optimizer)

    h = model.fit(x, y, epochs=3, verbose=0, callbacks=[Grab()])
    assert isinstance(model.optimizer, optim.SGD) and seen == [model.optimizer]
    assert [id(p) for p in spec.built_with] == [id(p) for p in model.parameters()]
    assert h.history["lr"] == [0.1] * 3
    assert h.history["loss"][-1] < h.history["loss"][0]


def test_optimizer_spec_with_parameters_is_built_at_compile():
    spec = SpecSGD()
    model = linear_model(2, 2)
    model.compile(spec, "mse")
    assert [id(p) for p in spec.built_with] == [id(p) for p in model.parameters()]
    assert model.optimizer.param_groups[0]["lr"] == 0.1


def test_keras_sequential_with_lazy_dense_layers():
    keras = pytest.importorskip("myelin.keras")
    x, y = blobs(160)
    myelin.manual_seed(0)
    model = keras.Sequential(
        [keras.layers.Dense(8, activation="relu"), keras.layers.Dense(2, activation="softmax")]
    )
    model.compile(keras.optimizers.Adam(0.02), "sparse_categorical_crossentropy", ["accuracy"])
    h = model.fit(x, y, epochs=10, batch_size=16, verbose=0)
    assert h.history["accuracy"][-1] >= 0.95
    probs = model.predict(x)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)
    json.dumps(model._compile_config)


@pytest.mark.parametrize(
    "kw, exc, match",
    [
        ({"optimizer": "adagrad"}, ValueError, "adam"),
        ({"optimizer": 3}, TypeError, "optimizer"),
        ({"loss": "hinge"}, ValueError, "sparse_categorical_crossentropy"),
        ({"loss": 3}, TypeError, "loss"),
        ({"metrics": ["f1"]}, ValueError, "accuracy"),
        ({"metrics": [len]}, TypeError, "metrics"),
    ],
)
def test_compile_rejects_bad_arguments(kw, exc, match):
    args = {"optimizer": "adam", "loss": "mse", **kw}
    with pytest.raises(exc, match=match):
        linear_model(2, 2).compile(**args)


def test_fit_and_evaluate_need_compile():
    x, y = blobs(10)
    model = linear_model(2, 2)
    with pytest.raises(RuntimeError, match=r"call model\.compile\(\.\.\.\) first"):
        model.fit(x, y)
    with pytest.raises(RuntimeError, match=r"call model\.compile\(\.\.\.\) first"):
        model.evaluate(x, y)
    assert model.predict(x).shape == (10, 2)  # predict needs no compile


# ---------------------------------------------------------------- inputs


def test_bad_fit_arguments():
    x, y = blobs(20)
    model = linear_model(2, 2)
    model.compile("sgd", "sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match="x has 20 samples but y has 19"):
        model.fit(x, y[:19], verbose=0)
    with pytest.raises(ValueError, match="validation_split"):
        model.fit(x, y, validation_split=1.0, verbose=0)
    with pytest.raises(ValueError, match="verbose"):
        model.fit(x, y, verbose=3)
    with pytest.raises(ValueError, match="batch_size"):
        model.fit(x, y, batch_size=0)
    with pytest.raises(ValueError, match="y is None"):
        model.fit(x)
    with pytest.raises(ValueError, match="integer class labels"):
        model.fit(x, y + 0.5, verbose=0)
    with pytest.raises(TypeError, match=r"callbacks\[0\]"):
        model.fit(x, y, callbacks=[History], verbose=0)
    model.compile("sgd", "categorical_crossentropy")
    with pytest.raises(ValueError, match="one-hot"):
        model.fit(x, y, verbose=0)
    model.compile("sgd", "binary_crossentropy")
    with pytest.raises(ValueError, match="one target per output"):
        model.fit(x, y, verbose=0)


def test_inputs_as_lists_tensors_and_other_dtypes():
    x, y = blobs(24)
    model = frozen(linear_model(2, 2), loss="sparse_categorical_crossentropy")
    expected = sparse_ce_ref(linear_ref(model, x), y)
    for xs, ys in [
        (x.tolist(), y.tolist()),
        (myelin.tensor(x), myelin.tensor(y)),
        (x.astype(np.float64), y.astype(np.int32)),
        (x, y.astype(np.float32)),  # integral float labels are accepted as labels
    ]:
        np.testing.assert_allclose(
            model.fit(xs, ys, verbose=0).history["loss"][0], expected, rtol=1e-5
        )


# ---------------------------------------------------------------- evaluate and predict


def test_evaluate_return_forms():
    x, y = blobs(30, classes=3)
    model = frozen(linear_model(2, 3), loss="sparse_categorical_crossentropy")
    z = linear_ref(model, x)
    loss = model.evaluate(x, y)
    assert isinstance(loss, float)
    np.testing.assert_allclose(loss, sparse_ce_ref(z, y), rtol=1e-5)
    frozen(model, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    res = model.evaluate(x, y, batch_size=7)
    assert isinstance(res, list) and len(res) == 2
    np.testing.assert_allclose(res[0], sparse_ce_ref(z, y), rtol=1e-5)
    assert res[1] == np.mean(z.argmax(1) == y)
    d = model.evaluate(x, y, return_dict=True)
    assert set(d) == {"loss", "accuracy"} and d["accuracy"] == res[1]


class ModeProbe(nn.Module):
    """Records the train mode and grad mode it runs in."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 2)
        self.seen = []

    def forward(self, x):
        self.seen.append((self.training, myelin.is_grad_enabled()))
        return self.lin(x)


def test_predict_and_evaluate_run_in_eval_mode_without_graph_and_restore_the_mode():
    x, y = blobs(40)
    probe = ModeProbe()
    probe.compile("sgd", "sparse_categorical_crossentropy")
    for before in (True, False):
        probe.train(before)
        probe.seen.clear()
        probe.predict(x, batch_size=16)
        probe.evaluate(x, y, batch_size=16)
        assert probe.seen == [(False, False)] * 6
        assert probe.training is before and probe.lin.training is before
        assert all(p.grad is None for p in probe.parameters())


def test_fit_trains_in_train_mode_validates_in_eval_mode_and_restores_the_mode():
    x, y = blobs(40)
    probe = ModeProbe()
    probe.compile("sgd", "sparse_categorical_crossentropy")
    probe.eval()
    probe.fit(x, y, batch_size=16, validation_split=0.2, verbose=0)
    # 32 training samples: 2 steps with a graph in train mode, then 1 validation batch
    assert probe.seen == [(True, True), (True, True), (False, False)]
    assert probe.training is False


def test_predict_with_dropout_is_deterministic():
    x, _ = blobs(50)
    myelin.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, 3))
    a = model.predict(x, batch_size=8)
    b = model.predict(x)
    assert a.shape == (50, 3) and np.array_equal(a, b)
    model.eval()
    with myelin.no_grad():
        np.testing.assert_array_equal(a, model(myelin.tensor(x)).numpy())
    assert model.predict(x[:1]).shape == (1, 3)


# ---------------------------------------------------------------- stopping and non-finite losses


def test_nan_inputs_stop_training_with_a_warning_naming_epoch_and_batch():
    x, y = blobs(64)
    x[40, 0] = np.nan  # in the third batch of 16
    model = linear_model(2, 2)
    model.compile(optim.SGD(model.parameters(), lr=0.1), "sparse_categorical_crossentropy")
    with pytest.warns(RuntimeWarning, match=r"epoch 1/4, batch 3/4") as rec:
        h = model.fit(x, y, epochs=4, batch_size=16, shuffle=False, verbose=0)
    msg = str(rec[0].message)
    assert "learning rate" in msg and "Normalize" in msg and "logits" in msg
    assert len(h.history["loss"]) == 1 and np.isnan(h.history["loss"][0])
    assert all(np.all(np.isfinite(v)) for v in model.state_dict().values())


def test_huge_learning_rate_stops_on_a_non_finite_loss():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype(np.float32)
    t = rng.normal(size=(64, 1)).astype(np.float32)
    model = linear_model(4, 1)
    model.compile(optim.SGD(model.parameters(), lr=1e10), "mse")
    with pytest.warns(RuntimeWarning, match=r"the loss is (nan|inf) at epoch \d+/50, batch \d+/8"):
        h = model.fit(x, t, epochs=50, batch_size=8, verbose=0)
    assert len(h.history["loss"]) < 50


def test_stop_training_is_honoured_after_a_batch():
    x, y = blobs(64)
    batches = []

    class StopAtSecond(Callback):
        def on_train_batch_end(self, batch, logs=None):
            batches.append(batch)
            if batch == 1:
                self.model.stop_training = True

    model = linear_model(2, 2)
    model.compile("sgd", "sparse_categorical_crossentropy")
    h = model.fit(
        x, y, epochs=3, batch_size=8, validation_split=0.25, callbacks=[StopAtSecond()], verbose=0
    )
    assert batches == [0, 1]
    assert len(h.history["loss"]) == 1 and len(h.history["val_loss"]) == 1


# ---------------------------------------------------------------- output


def test_verbose_zero_prints_nothing(capsys):
    x, y = blobs(40)
    model = linear_model(2, 2)
    model.compile("sgd", "sparse_categorical_crossentropy", ["accuracy"])
    model.fit(x, y, epochs=2, validation_split=0.2, verbose=0)
    model.evaluate(x, y)
    model.predict(x)
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("verbose", [1, 2])
def test_verbose_prints_one_line_per_epoch_when_not_a_terminal(capsys, verbose):
    x, y = blobs(40)
    model = linear_model(2, 2)
    model.compile("sgd", "sparse_categorical_crossentropy", ["accuracy"])
    model.fit(x, y, epochs=3, batch_size=8, validation_split=0.2, verbose=verbose)
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert len(lines) == 3 and "\r" not in out
    for i, line in enumerate(lines):
        assert line.startswith(f"Epoch {i + 1}/3")
        for key in ("loss:", "accuracy:", "val_loss:", "val_accuracy:", "samples/s"):
            assert key in line
    assert ("4/4 [" in lines[0]) is (verbose == 1)


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def test_verbose_one_redraws_in_place_on_a_terminal(monkeypatch):
    x, y = blobs(40)
    model = linear_model(2, 2)
    model.compile("sgd", "sparse_categorical_crossentropy")
    term = FakeTerminal()
    monkeypatch.setattr(sys, "stdout", term)
    model.fit(x, y, epochs=2, batch_size=8, verbose=1)
    out = term.getvalue()
    assert out.count("\n") == 2 and out.startswith("\rEpoch 1/2")
    assert "\rEpoch 2/2 - 5/5 [====================]" in out


# ---------------------------------------------------------------- data loaders and reproducibility


def test_fit_with_a_dataloader():
    x, y = blobs(160)
    xv, yv = blobs(40, seed=1)
    myelin.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 2))
    model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    loader = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True)
    val = DataLoader(TensorDataset(xv, yv), batch_size=16)
    h = model.fit(loader, epochs=12, validation_data=val, verbose=0)
    assert h.params["steps"] == 10
    assert len(h.history["val_loss"]) == 12 and h.history["val_accuracy"][-1] >= 0.95
    assert model.evaluate(val) == [h.history["val_loss"][-1], h.history["val_accuracy"][-1]]
    assert model.predict(val).shape == (40, 2)
    with pytest.raises(ValueError, match="validation_split"):
        model.fit(loader, validation_split=0.2, verbose=0)
    with pytest.raises(ValueError, match="y must be None"):
        model.fit(loader, y, verbose=0)
    with pytest.raises(ValueError, match="iterator"):
        model.fit(iter(loader), epochs=2, verbose=0)


def _seeded_run(seed):
    x, y = blobs(96)
    myelin.manual_seed(seed)
    model = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 2))
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=3, batch_size=8, shuffle=True, verbose=0)
    return model.state_dict()


def test_fit_is_reproducible_under_manual_seed():
    a, b, c = _seeded_run(0), _seeded_run(0), _seeded_run(1)
    assert all(a[k].tobytes() == b[k].tobytes() for k in a)
    assert any(a[k].tobytes() != c[k].tobytes() for k in a)


# ---------------------------------------------------------------- the compiled step


def _chain_models():
    """(name, builder, compile kwargs, float64) for fits that take the compiled step."""
    return [
        ("relu", lambda: nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 4)), {}, False),
        (
            "softmax split off, tanh, no bias",
            lambda: nn.Sequential(
                nn.Linear(6, 16, bias=False), nn.Tanh(), nn.Linear(16, 4), nn.Softmax(dim=1)
            ),
            {},
            False,
        ),
        (
            "leaky relu, float64",
            lambda: nn.Sequential(
                nn.Linear(6, 16, dtype=np.float64),
                nn.LeakyReLU(0.2),
                nn.Linear(16, 8, dtype=np.float64),
                nn.Sigmoid(),
                nn.Linear(8, 4, dtype=np.float64),
            ),
            {},
            True,
        ),
        (
            "loss module with smoothing and sum, SGD",
            lambda: nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 4)),
            {
                "loss": nn.CrossEntropyLoss(label_smoothing=0.1, reduction="sum"),
                "optimizer": "sgd",
            },
            False,
        ),
    ]


def _fit_once(build, compile_kw, f64, chain_step, monkeypatch):
    from myelin import training

    monkeypatch.setattr(training, "_CHAIN_STEP", chain_step)
    calls = []
    real = training._chain_step

    def counted(*args):
        res = real(*args)
        calls.append(res is not None)
        return res

    monkeypatch.setattr(training, "_chain_step", counted)
    x, y = blobs(90, seed=3, classes=4, dim=6)
    x = x.astype(np.float64 if f64 else np.float32)
    myelin.manual_seed(0)
    model = build()
    kw = {"optimizer": "adam", "loss": "sparse_categorical_crossentropy", **compile_kw}
    model.compile(metrics=["accuracy"], **kw)
    hist = model.fit(x, y, epochs=3, batch_size=16, validation_split=0.2, verbose=0)
    params = [p.detach().numpy().copy() for p in model.parameters()]
    state = model.optimizer.state_dict()["state"]
    return hist.history, params, state, calls


@pytest.mark.parametrize("case", range(4))
def test_compiled_step_gives_the_eager_numbers_bitwise(case, monkeypatch):
    """fit's compiled step (one kernel call each for the forward, the loss and the backward of
    a Sequential of Linear layers, no graph) gives the parameters, optimizer state and logs of
    the eager step bit for bit."""
    _, build, kw, f64 = _chain_models()[case]
    h1, p1, s1, calls = _fit_once(build, kw, f64, True, monkeypatch)
    assert calls and all(calls)  # every step took the compiled path
    h0, p0, s0, calls0 = _fit_once(build, kw, f64, False, monkeypatch)
    assert not calls0
    assert h1 == h0
    assert [a.tobytes() for a in p1] == [a.tobytes() for a in p0]
    for i in s0:
        for k in s0[i]:
            assert np.asarray(s1[i][k]).tobytes() == np.asarray(s0[i][k]).tobytes(), (i, k)


def test_compiled_step_leaves_other_models_to_the_eager_step(monkeypatch):
    """Models and targets outside its case train as before: a frozen layer, a Dropout between
    the layers, one-hot targets, a loss it does not fuse."""
    from myelin import training

    calls = []
    real = training._chain_step
    monkeypatch.setattr(training, "_chain_step", lambda *a: calls.append(real(*a)) or calls[-1])
    x, y = blobs(64, seed=1, classes=3, dim=4)

    def make(*mid):
        myelin.manual_seed(0)
        return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), *mid, nn.Linear(8, 3))

    frozen_first = make()
    frozen_first[0].weight.requires_grad_(False)
    w0 = frozen_first[0].weight.numpy().copy()
    frozen_first.compile("adam", "sparse_categorical_crossentropy")
    frozen_first.fit(x, y, epochs=1, batch_size=16, verbose=0)
    assert np.array_equal(frozen_first[0].weight.numpy(), w0)
    assert frozen_first[2].weight.grad is not None
    assert calls and all(c is None for c in calls)
    calls.clear()
    dropout = make(nn.Dropout(0.5))
    dropout.compile("adam", "sparse_categorical_crossentropy")
    dropout.fit(x, y, epochs=1, batch_size=16, verbose=0)
    assert calls and all(c is None for c in calls)
    calls.clear()
    onehot = make()
    onehot.compile("adam", "categorical_crossentropy")
    onehot.fit(x, np.eye(3, dtype=np.float32)[y], epochs=1, batch_size=16, verbose=0)
    assert calls and all(c is None for c in calls)  # probability targets
    calls.clear()
    mse = make()
    mse.compile("adam", "mse")
    mse.fit(x, np.eye(3, dtype=np.float32)[y], epochs=1, batch_size=16, verbose=0)
    assert not calls  # not a CrossEntropyLoss: never tried


def test_compiled_step_raises_the_eager_errors():
    x, y = blobs(40, seed=2, classes=3, dim=4)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    model.compile("adam", "sparse_categorical_crossentropy")
    bad = y.copy()
    bad[5] = 3
    with pytest.raises(ValueError, match="label"):
        model.fit(x, bad, epochs=1, batch_size=8, verbose=0)
    with pytest.raises(ValueError, match="expected"):
        model.fit(x[:, :3], y, epochs=1, batch_size=8, verbose=0)


# ---------------------------------------------------------------- History.plot


def _history():
    h = History()
    h.on_train_begin()
    for e, (loss, vl) in enumerate([(1.0, 1.2), (0.6, 0.8), (0.4, 0.7)]):
        h.on_epoch_end(
            e,
            {
                "loss": loss,
                "accuracy": 1 - loss / 2,
                "val_loss": vl,
                "val_accuracy": 0.5,
                "lr": 0.1,
            },
        )
    return h


def test_history_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = tmp_path / "curves.png"
    fig = _history().plot(path=path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    titles = [a.get_title() for a in fig.axes]
    assert titles == ["loss", "accuracy"]
    assert [len(line.get_xdata()) for line in fig.axes[0].lines] == [3, 3]
    plt.close(fig)
    fig, ax = plt.subplots()
    assert _history().plot(metrics="loss", ax=ax) is fig
    plt.close(fig)


def test_history_plot_without_matplotlib_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=r'pip install "myelin\[plot\]"'):
        _history().plot()
