"""myelin.keras: Dense (building, init, fused activations, logits), the thin layers, Sequential's
eager build, optimizer specs, re-exports, and the article's Keras program."""

import math

import numpy as np
import pytest
from helpers import assert_close

import myelin
from myelin import callbacks, keras, nn, optim, serialization
from myelin.keras import layers
from myelin.nn import functional as F

EPS64 = np.finfo(np.float64).eps


def _np(t):
    return t.detach().numpy()


def _dense_with(units, w, b, activation=None):
    """A built Dense holding copies of ``w`` (units, in) and ``b``."""
    d = layers.Dense(units, activation, dtype=w.dtype, in_features=w.shape[1])
    d.weight.data[...] = w
    d.bias.data[...] = b
    return d


# ---------------------------------------------------------------- building


def test_dense_builds_from_input_shape_or_input_dim():
    for d in (layers.Dense(4, input_shape=(3,)), layers.Dense(4, input_dim=3)):
        assert d.built and d.in_features == 3
        assert d.weight.shape == (4, 3) and d.bias.shape == (4,)
        assert d.weight.dtype == np.float32 and d.bias.dtype == np.float32
        assert list(d.state_dict()) == ["weight", "bias"]
    d = layers.Dense(4, input_shape=(5, 3), use_bias=False)
    assert d.weight.shape == (4, 3) and d.bias is None and list(d.state_dict()) == ["weight"]
    assert layers.Dense(2, input_dim=3, dtype="float64").weight.dtype == np.float64


def test_dense_builds_lazily_on_first_call():
    d = layers.Dense(5, activation="relu")
    assert not d.built and list(d.parameters()) == [] and d.state_dict() == {}
    y = d(np.ones((2, 4, 7)))
    assert d.built and d.in_features == 7 and d.weight.shape == (5, 7)
    assert y.shape == (2, 4, 5) and y.dtype == np.float32
    assert [p.shape for p in d.parameters()] == [(5, 7), (5,)]
    with pytest.raises(ValueError, match=r"Dense\(5\).*\(3, 6\).*\(\.\.\., 7\)"):
        d(np.ones((3, 6)))


def test_sequential_builds_eagerly_from_the_first_layer():
    model = keras.Sequential(
        [
            layers.Dense(64, activation="relu", input_shape=(10,)),
            layers.Dropout(0.3),
            layers.Dense(32, activation="relu"),
            layers.Activation("tanh"),
            layers.Dense(2, activation="softmax"),
        ]
    )
    assert isinstance(model, nn.Sequential) and len(model.layers) == 5
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    assert shapes == {
        "0.weight": (64, 10),
        "0.bias": (64,),
        "2.weight": (32, 64),
        "2.bias": (32,),
        "4.weight": (2, 32),
        "4.bias": (2,),
    }
    assert model(np.zeros((3, 10), np.float32)).shape == (3, 2)


def test_sequential_add_and_flatten_propagate_shapes():
    model = keras.Sequential()
    model.add(layers.Flatten())
    model.add(layers.Dense(4))
    assert not model[1].built  # no input shape known: builds on the first call
    model(np.ones((2, 3, 5)))
    assert model[1].in_features == 15

    model = keras.Sequential([layers.Dense(6, input_shape=(2, 3)), layers.Flatten()])
    model.add(layers.ReLU())
    model.add(layers.Dense(4))
    assert model[3].in_features == 12
    assert model(np.ones((7, 2, 3))).shape == (7, 4)


def test_sequential_stops_at_layers_of_unknown_shape():
    class Double(nn.Module):
        def forward(self, x):
            return myelin.cat([x, x], dim=-1)

    model = keras.Sequential([layers.Dense(3, input_dim=2), Double(), layers.Dense(4)])
    assert not model[2].built
    assert model(np.ones((1, 2))).shape == (1, 4) and model[2].in_features == 6


def test_sequential_rejects_mismatched_layers():
    model = keras.Sequential([layers.Dense(64, input_shape=(10,))])
    with pytest.raises(ValueError, match=r"Dense\(3\).*\.\.\., 7\).*\(None, 64\)"):
        model.add(layers.Dense(3, in_features=7))
    with pytest.raises(ValueError, match=r"Linear\(5, 2\).*\(None, 64\)"):
        model.add(nn.Linear(5, 2))
    assert len(model) == 1  # nothing was added
    with pytest.raises(TypeError, match="list of layers"):
        keras.Sequential(layers.Dense(2))
    with pytest.raises(TypeError, match="must be a Module"):
        keras.Sequential([layers.Dense])


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"units": 0}, ValueError),
        ({"units": 2.5}, TypeError),
        ({"units": 2, "activation": "gelu"}, ValueError),
        ({"units": 2, "kernel_initializer": "orthogonal"}, ValueError),
        ({"units": 2, "input_shape": 10}, TypeError),
        ({"units": 2, "input_shape": (0,)}, ValueError),
        ({"units": 2, "input_shape": (3,), "input_dim": 4}, ValueError),
        ({"units": 2, "input_shape": (3,), "in_features": 4}, ValueError),
        ({"units": 2, "dtype": "int32"}, TypeError),
    ],
)
def test_dense_rejects_bad_arguments(kwargs, error):
    with pytest.raises(error):
        layers.Dense(**kwargs)


# ---------------------------------------------------------------- initialisation


def test_glorot_uniform_statistics():
    myelin.manual_seed(0)
    fan_in, fan_out = 400, 300
    d = layers.Dense(fan_out, input_dim=fan_in, dtype="float64")
    w = d.weight.data
    n = w.size
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    assert np.abs(w).max() <= limit
    # U(-a, a): mean 0 (sd a/sqrt(3n)); E[w^2] = a^2/3 (sd of w^2 is a^2 sqrt(4/45)); 5 sigma
    assert abs(w.mean()) <= 5 * limit / math.sqrt(3 * n)
    assert abs((w**2).mean() - limit**2 / 3) <= 5 * limit**2 * math.sqrt(4 / 45) / math.sqrt(n)
    assert np.abs(w).max() > 0.99 * limit  # spans the whole range
    assert np.all(d.bias.data == 0)


def test_he_normal_is_truncated_with_keras_variance():
    myelin.manual_seed(1)
    fan_in = 250
    d = layers.Dense(400, input_dim=fan_in, kernel_initializer="he_normal", dtype="float64")
    w2 = d.weight.data.ravel() ** 2
    std = math.sqrt(2.0 / fan_in) / 0.87962566103423978  # before truncation at 2 std
    assert w2.max() <= (2 * std) ** 2
    # the truncation's correction gives variance 2 / fan_in; 5 standard errors of the mean
    assert abs(w2.mean() - 2.0 / fan_in) <= 5 * w2.std() / math.sqrt(w2.size)


def test_initializers_are_seeded_by_set_random_seed():
    keras.utils.set_random_seed(5)
    a = layers.Dense(3, input_dim=4).weight.data.copy()
    keras.utils.set_random_seed(5)
    b = layers.Dense(3, input_dim=4).weight.data
    assert np.array_equal(a, b)
    d = layers.Dense(3, input_dim=4, kernel_initializer="zeros", bias_initializer="ones")
    assert np.all(d.weight.data == 0) and np.all(d.bias.data == 1)


# ---------------------------------------------------------------- forward


def _reference(x, w, b, activation):
    """Float64 NumPy transcription: activation(x @ w.T + b)."""
    z = x @ w.T + b
    if activation in (None, "linear"):
        return z
    if activation == "relu":
        return np.maximum(z, 0)
    if activation == "leaky_relu":
        return np.where(z > 0, z, 0.2 * z)  # Keras' default slope
    if activation == "sigmoid":
        return 1 / (1 + np.exp(-z))
    if activation == "tanh":
        return np.tanh(z)
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


ACTIVATIONS = [None, "linear", "relu", "leaky_relu", "sigmoid", "tanh", "softmax"]


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_dense_matches_linear_and_reference(activation):
    rng = np.random.default_rng(7)
    k, units = 13, 6
    w, b = rng.standard_normal((units, k)), rng.standard_normal(units)
    x = rng.standard_normal((9, k))
    dense = _dense_with(units, w, b, activation)

    # the same numbers as nn.Linear plus the activation, forward and backward
    fused = {None: None, "linear": None, "softmax": None}.get(activation, activation)
    linear = nn.Linear(k, units, activation=fused, negative_slope=0.2, dtype=np.float64)
    linear.load_state_dict({"weight": w, "bias": b})
    xt, xl = myelin.tensor(x, requires_grad=True), myelin.tensor(x, requires_grad=True)
    got = dense(xt)
    want = linear(xl)
    if activation == "softmax":
        want = F.softmax(want, dim=-1)
    assert np.array_equal(_np(got), _np(want))
    g = rng.standard_normal(got.shape)
    (got * myelin.tensor(g)).sum().backward()
    (want * myelin.tensor(g)).sum().backward()
    assert np.array_equal(xt.grad.numpy(), xl.grad.numpy())
    assert np.array_equal(dense.weight.grad.numpy(), linear.weight.grad.numpy())
    assert np.array_equal(dense.bias.grad.numpy(), linear.bias.grad.numpy())

    # and the published formula, in float64: k + 1 roundings of the absolute-value products
    # (the activations are 1-Lipschitz), plus a few ulps of a vectorised exp/tanh
    ref = _reference(x, w, b, activation)
    scale = np.abs(x) @ np.abs(w).T + np.abs(b)
    if activation == "softmax":
        scale = scale.max(-1, keepdims=True) * 2 * ref  # d softmax_i <= 2 p_i max|dz|
    assert_close(_np(got), ref, (k + 1) * EPS64 * scale + 8 * EPS64 * np.abs(ref), activation)


def test_split_activation_and_forward_logits():
    rng = np.random.default_rng(8)
    w, b = rng.standard_normal((3, 4)).astype(np.float32), rng.standard_normal(3)
    x = rng.standard_normal((5, 4)).astype(np.float32)
    plain = _np(_dense_with(3, w, b.astype(np.float32))(x))
    for activation, split in [
        ("softmax", "softmax"),
        ("sigmoid", "sigmoid"),
        ("relu", None),
        ("tanh", None),
        (None, None),
    ]:
        d = _dense_with(3, w, b.astype(np.float32), activation)
        assert d.split_activation == split
        logits = d.forward_logits(x)
        assert np.array_equal(_np(logits), plain)
        if split == "softmax":
            assert np.array_equal(_np(F.softmax(logits, dim=-1)), _np(d(x)))
        if split == "sigmoid":
            assert np.array_equal(_np(F.sigmoid(logits)), _np(d(x)))
    lazy = layers.Dense(2, activation="softmax")
    assert lazy.forward_logits(x).shape == (5, 2) and lazy.built


# ---------------------------------------------------------------- the other layers


def test_dropout_activation_flatten_relu():
    x = np.random.default_rng(9).standard_normal((200, 50)).astype(np.float32)
    drop = layers.Dropout(0.3)
    assert isinstance(drop, nn.Dropout) and drop.rate == 0.3
    assert drop.get_config() == {"rate": 0.3}
    myelin.manual_seed(0)
    y = _np(drop(x))
    kept = y != 0
    assert abs(kept.mean() - 0.7) <= 5 * math.sqrt(0.3 * 0.7 / x.size)
    assert np.array_equal(y[kept], (x * np.float32(1 / 0.7))[kept])
    assert np.array_equal(_np(drop.eval()(x)), x)
    for bad in (1.0, -0.1, "0.3"):
        with pytest.raises(ValueError, match="rate"):
            layers.Dropout(bad)

    for name, fn in [
        ("relu", F.relu),
        ("sigmoid", F.sigmoid),
        ("tanh", F.tanh),
        ("softmax", lambda t: F.softmax(t, dim=-1)),
        ("leaky_relu", lambda t: F.leaky_relu(t, 0.2)),
        ("linear", lambda t: t),
    ]:
        a = layers.Activation(name)
        assert np.array_equal(_np(a(x)), _np(fn(myelin.tensor(x)))), name
        assert a.get_config() == {"activation": name}
    with pytest.raises(ValueError, match="activation must be one of"):
        layers.Activation("swish")

    assert layers.Flatten is nn.Flatten and layers.ReLU is nn.ReLU
    assert layers.Flatten()(np.ones((2, 3, 4))).shape == (2, 12)


# ---------------------------------------------------------------- configs and saving


def test_get_config_rebuilds_and_is_registered(tmp_path):
    d = layers.Dense(4, activation="tanh", input_dim=3, dtype="float64", name="hidden")
    config = d.get_config()
    assert config["in_features"] == 3 and config["dtype"] == "float64"
    again = layers.Dense(**config)
    assert again.get_config() == config and again.weight.dtype == np.float64
    assert layers.Dense(2).get_config()["in_features"] is None
    assert serialization._LAYERS["keras.Dense"] is layers.Dense

    model = keras.Sequential(
        [
            layers.Dense(8, activation="relu", input_shape=(3,)),
            layers.Dropout(0.5),
            layers.Activation("sigmoid"),
            layers.Dense(2, activation="softmax", dtype="float64"),
        ]
    ).eval()
    x = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)
    model(x)
    model.save(tmp_path / "keras.npz")
    back = keras.models.load_model(tmp_path / "keras.npz")
    assert type(back) is keras.Sequential
    assert [type(m) for m in back] == [type(m) for m in model]
    with myelin.no_grad():
        assert np.array_equal(back(x).numpy(), model(x).numpy())
    assert back[3].weight.dtype == np.float64

    lazy = keras.Sequential([layers.Dense(3), layers.Dense(2)])
    serialization.save_model(lazy, tmp_path / "lazy.npz")
    back = myelin.load_model(tmp_path / "lazy.npz")
    assert not back[0].built and back(np.ones((1, 5))).shape == (1, 2)


# ---------------------------------------------------------------- optimizers


def _params():
    return [nn.Parameter(np.ones((2, 3), np.float32)), nn.Parameter(np.zeros(3, np.float32))]


@pytest.mark.parametrize(
    "spec, cls, options",
    [
        (
            keras.optimizers.Adam(),
            optim.Adam,
            {"lr": 0.001, "betas": (0.9, 0.999), "eps": 1e-7, "weight_decay": 0.0},
        ),
        (
            keras.optimizers.Adam(0.01, beta_1=0.8, amsgrad=True, weight_decay=0.1),
            optim.AdamW,
            {"lr": 0.01, "betas": (0.8, 0.999), "eps": 1e-7, "weight_decay": 0.1, "amsgrad": True},
        ),
        (
            keras.optimizers.AdamW(1e-3),
            optim.AdamW,
            {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-7, "weight_decay": 0.004},
        ),
        (
            keras.optimizers.SGD(),
            optim.SGD,
            {"lr": 0.01, "momentum": 0.0, "nesterov": False, "weight_decay": 0.0},
        ),
        (
            keras.optimizers.SGD(0.1, momentum=0.9, nesterov=True),
            optim.SGD,
            {"lr": 0.1, "momentum": 0.9, "nesterov": True, "dampening": 0.0},
        ),
        (
            keras.optimizers.RMSprop(),
            optim.RMSprop,
            {"lr": 0.001, "alpha": 0.9, "eps": 1e-7, "momentum": 0.0, "centered": False},
        ),
        (
            keras.optimizers.RMSprop(0.01, rho=0.8, momentum=0.5, epsilon=1e-6, centered=True),
            optim.RMSprop,
            {"lr": 0.01, "alpha": 0.8, "eps": 1e-6, "momentum": 0.5, "centered": True},
        ),
    ],
)
def test_optimizer_build_maps_arguments(spec, cls, options):
    params = _params()
    opt = spec.build(iter(params))
    assert type(opt) is cls
    group = opt.param_groups[0]
    assert [id(p) for p in group["params"]] == [id(p) for p in params]
    for k, v in options.items():
        assert group[k] == v, k


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_momentum_follows_keras_update_rule(nesterov):
    """Keras: v = m v - lr g; w += v (nesterov: w += m v - lr g), as a trajectory."""
    lr, m = 0.05, 0.9
    target = np.array([1.0, -2.0, 0.5])
    p = nn.Parameter(np.zeros(3))
    opt = keras.optimizers.SGD(lr, momentum=m, nesterov=nesterov).build([p])
    w, v = np.zeros(3), np.zeros(3)
    for _ in range(8):
        g = 2 * (w - target) + w**3  # changes with the iterate
        v = m * v - lr * g
        w = w + (m * v - lr * g if nesterov else v)
        p.grad = myelin.tensor(2 * (p.data - target) + p.data**3)
        opt.step()
        assert_close(p.data, w, 1e-12 * (1 + np.abs(w)), "sgd trajectory")


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: keras.optimizers.Adam(-1.0), "learning_rate"),
        (lambda: keras.optimizers.Adam(beta_1=1.0), "beta_1"),
        (lambda: keras.optimizers.Adam(epsilon=-1e-7), "epsilon"),
        (lambda: keras.optimizers.SGD(nesterov=True), "nesterov"),
        (lambda: keras.optimizers.SGD(momentum=0.9, weight_decay=0.1), "weight_decay"),
        (lambda: keras.optimizers.RMSprop(rho=1.5), "rho"),
    ],
)
def test_optimizer_rejects_bad_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()
    with pytest.raises(TypeError, match="learning_rate"):
        keras.optimizers.SGD("0.1")


# ---------------------------------------------------------------- re-exports


def test_reexports():
    for name in (
        "EarlyStopping",
        "ModelCheckpoint",
        "LearningRateScheduler",
        "TerminateOnNaN",
        "Callback",
        "History",
    ):
        assert getattr(keras.callbacks, name) is getattr(callbacks, name)
    assert keras.models.load_model is myelin.load_model
    assert keras.models.Sequential is keras.Sequential
    assert keras.utils.set_random_seed is myelin.manual_seed


def test_to_categorical():
    y = keras.utils.to_categorical([0, 2, 1, 2])
    assert y.dtype == np.float32
    assert np.array_equal(y, np.eye(3, dtype=np.float32)[[0, 2, 1, 2]])
    assert keras.utils.to_categorical(np.array([[1], [0]]), 4).shape == (2, 4)
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        keras.utils.to_categorical([0, 2], num_classes=2)


# ---------------------------------------------------------------- the article's program


def test_article_program():
    X_np = np.random.default_rng(0).standard_normal((200, 10)).astype(np.float32)
    y_np = (X_np[:, 0] + X_np[:, 1] > 0).astype(int)
    keras.utils.set_random_seed(0)

    model = keras.Sequential(
        [
            layers.Dense(64, activation="relu", input_shape=(10,)),
            layers.Dropout(0.3),
            layers.Dense(32, activation="relu"),
            layers.Dense(2, activation="softmax"),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.AdamW(1e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    early_stop = keras.callbacks.EarlyStopping(
        monitor="val_accuracy", patience=5, restore_best_weights=True
    )
    history = model.fit(
        X_np,
        y_np,
        epochs=50,
        batch_size=16,
        validation_split=0.2,
        callbacks=[early_stop],
        verbose=0,
    )
    assert max(history.history["val_accuracy"]) >= 0.9
    probs = model.predict(X_np)
    assert probs.shape == (200, 2)
    assert_close(probs.sum(1), np.ones(200), 4 * np.finfo(np.float32).eps, "softmax rows")


def test_compiled_model_reloads_compiled(tmp_path):
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [layers.Dense(8, activation="relu", input_dim=3), layers.Dense(2, activation="softmax")]
    )
    model.compile(
        optimizer=keras.optimizers.AdamW(2e-3, weight_decay=0.01),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    model.save(tmp_path / "compiled.npz")
    back = keras.models.load_model(tmp_path / "compiled.npz")
    assert back._compile_config == model._compile_config
    assert type(back.optimizer) is optim.AdamW
    group = back.optimizer.param_groups[0]
    assert group["lr"] == 2e-3 and group["weight_decay"] == 0.01 and group["eps"] == 1e-7
    assert [id(p) for p in group["params"]] == [id(p) for p in back.parameters()]
    x = np.random.default_rng(0).standard_normal((32, 3)).astype(np.float32)
    history = back.fit(x, (x[:, 0] > 0).astype(int), epochs=2, verbose=0)
    assert len(history.history["accuracy"]) == 2

    plain = keras.models.load_model(tmp_path / "compiled.npz", compile=False)
    assert getattr(plain, "_compile_config", None) is None
