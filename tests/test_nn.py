"""myelin.nn: Module bookkeeping, layers, losses, init and gradient clipping."""

import math

import numpy as np
import pytest

import myelin
import myelin.nn.functional as F
from myelin import nn


class SimpleNet(nn.Module):
    """The article's first PyTorch model."""

    def __init__(self, n_features, n_hidden, n_classes):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(n_features, n_hidden), nn.ReLU(), nn.Linear(n_hidden, n_classes)
        )

    def forward(self, x):
        return self.net(x)


def test_registration_and_pytorch_keys():
    model = SimpleNet(3, 16, 2)
    names = [n for n, _ in model.named_parameters()]
    assert names == ["net.0.weight", "net.0.bias", "net.2.weight", "net.2.bias"]
    assert [p.shape for p in model.parameters()] == [(16, 3), (16,), (2, 16), (2,)]
    assert list(model.state_dict()) == names
    assert [type(m).__name__ for m in model.modules()] == [
        "SimpleNet",
        "Sequential",
        "Linear",
        "ReLU",
        "Linear",
    ]
    assert [type(m).__name__ for m in model.children()] == ["Sequential"]
    assert isinstance(model.net[0].weight, nn.Parameter) and model.net[0].weight.requires_grad
    assert "(0): Linear(in_features=3, out_features=16, bias=True)" in repr(model)


def test_attribute_assignment_before_init_is_explained():
    class Bad(nn.Module):
        def __init__(self):
            self.fc = nn.Linear(2, 2)

    with pytest.raises(AttributeError, match="super"):
        Bad()


def test_train_eval_propagate_and_zero_grad():
    model = SimpleNet(3, 4, 2)
    assert model.training and model.net[1].training
    assert model.eval() is model and not model.net[0].training
    model.train()
    assert all(m.training for m in model.modules())
    model(myelin.randn(5, 3)).sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())


def test_state_dict_round_trip_and_strict_errors():
    a, b = SimpleNet(3, 4, 2), SimpleNet(3, 4, 2)
    sd = a.state_dict()
    sd["net.0.bias"][0] = 123.0  # a copy: the model is untouched
    assert a.net[0].bias.data[0] != 123.0
    b.load_state_dict(a.state_dict())
    x = myelin.randn(6, 3)
    np.testing.assert_array_equal(a(x).data, b(x).data)
    with pytest.raises(KeyError, match="missing keys"):
        b.load_state_dict({"net.0.weight": np.zeros((4, 3))})
    res = b.load_state_dict({"net.0.weight": np.zeros((4, 3))}, strict=False)
    assert "net.0.bias" in res.missing_keys and (b.net[0].weight.data == 0).all()
    with pytest.raises(ValueError, match=r"\(5, 3\)"):
        b.load_state_dict({**a.state_dict(), "net.0.weight": np.zeros((5, 3))})


def test_linear_layout_init_and_forward():
    myelin.manual_seed(0)
    layer = nn.Linear(400, 300)
    w, b = layer.weight.data, layer.bias.data
    assert w.shape == (300, 400) and w.dtype == np.float32
    bound = 1 / math.sqrt(400)
    assert np.abs(w).max() <= bound and np.abs(b).max() <= bound
    assert w.std() == pytest.approx(bound / math.sqrt(3), rel=0.02)
    x = np.random.default_rng(0).standard_normal((7, 400)).astype(np.float32)
    np.testing.assert_allclose(layer(x).data, x @ w.T + b, rtol=1e-5, atol=1e-5)
    assert nn.Linear(3, 2, bias=False).bias is None
    assert nn.Linear(3, 2, dtype=np.float64).weight.dtype == np.float64


def test_linear_shape_error_names_the_layer():
    with pytest.raises(ValueError, match=r"Linear\(10, 64\).*\(8, 12\)"):
        nn.Linear(10, 64)(myelin.zeros(8, 12))
    with pytest.raises(ValueError, match="activation"):
        nn.Linear(2, 2, activation="softmax")
    with pytest.raises(ValueError, match="positive"):
        nn.Linear(0, 3)


@pytest.mark.parametrize(
    "act,layer",
    [
        ("relu", nn.ReLU()),
        ("leaky_relu", nn.LeakyReLU(0.01)),
        ("sigmoid", nn.Sigmoid()),
        ("tanh", nn.Tanh()),
    ],
)
def test_sequential_fusion_matches_separate_layers(act, layer):
    myelin.manual_seed(1)
    lin = nn.Linear(6, 5)
    fused = nn.Sequential(lin, layer)
    x = myelin.randn(4, 6)
    y_fused = fused(x)
    y_sep = layer(lin(x))
    np.testing.assert_allclose(y_fused.data, y_sep.data, rtol=1e-6, atol=1e-6)
    y_fused.sum().backward()
    g_fused = lin.weight.grad.data.copy()
    lin.zero_grad()
    y_sep.sum().backward()
    np.testing.assert_allclose(g_fused, lin.weight.grad.data, rtol=1e-5, atol=1e-6)
    fused_attr = nn.Linear(6, 5, activation=act)
    fused_attr.load_state_dict(lin.state_dict())
    np.testing.assert_allclose(fused_attr(x).data, y_sep.data, rtol=1e-6, atol=1e-6)


def test_leaky_relu_slope_is_fused_correctly():
    lin = nn.Linear(3, 4)
    x = myelin.randn(5, 3)
    np.testing.assert_allclose(
        nn.Sequential(lin, nn.LeakyReLU(0.3))(x).data,
        F.leaky_relu(lin(x), 0.3).data,
        rtol=1e-6,
    )


def test_sequential_container():
    seq = nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 1))
    assert len(seq) == 3 and isinstance(seq[0], nn.Linear) and isinstance(seq[-1], nn.Linear)
    assert [type(m).__name__ for m in seq] == ["Linear", "Tanh", "Linear"]
    head = seq[:2]
    assert isinstance(head, nn.Sequential) and head(myelin.ones(1, 2)).shape == (1, 3)
    seq.append(nn.Sigmoid())
    assert len(seq) == 4
    with pytest.raises(TypeError, match="instantiate"):
        nn.Sequential(nn.ReLU)
    with pytest.raises(IndexError):
        seq[9]


def test_dropout_train_and_eval():
    myelin.manual_seed(0)
    d = nn.Dropout(0.5)
    x = myelin.ones(1000)
    y = d(x).data
    assert set(np.unique(y)) <= {0.0, 2.0} and 0.4 < (y == 0).mean() < 0.6
    d.eval()
    np.testing.assert_array_equal(d(x).data, x.data)
    with pytest.raises(ValueError, match="probability"):
        nn.Dropout(1.5)


def test_flatten_identity_softmax_modules():
    x = myelin.randn(2, 3, 4)
    assert nn.Flatten()(x).shape == (2, 12)
    assert nn.Identity()(x) is x
    p = nn.Softmax(dim=1)(myelin.randn(3, 5)).data
    np.testing.assert_allclose(p.sum(1), 1, rtol=1e-6)
    lp = nn.LogSoftmax(dim=1)(myelin.randn(3, 5)).data
    np.testing.assert_allclose(np.exp(lp).sum(1), 1, rtol=1e-6)


def test_modules_take_arrays_and_lists():
    lin = nn.Linear(2, 1)
    a = lin([[1.0, 2.0]]).data
    b = lin(np.array([[1.0, 2.0]])).data
    c = lin(myelin.tensor([[1.0, 2.0]])).data
    assert a.dtype == np.float32 and b.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)
    loss = nn.CrossEntropyLoss()([[1.0, 2.0], [0.5, 0.1]], [1, 0])
    assert loss.shape == () and loss.item() > 0


def test_loss_modules_match_functional():
    myelin.manual_seed(2)
    logits, labels = myelin.randn(8, 4), myelin.randint(0, 4, (8,))
    assert nn.CrossEntropyLoss()(logits, labels).item() == F.cross_entropy(logits, labels).item()
    ce = nn.CrossEntropyLoss(ignore_index=1, reduction="sum", label_smoothing=0.1)
    want = F.cross_entropy(logits, labels, ignore_index=1, reduction="sum", label_smoothing=0.1)
    assert ce(logits, labels).item() == want.item()
    x, t = myelin.randn(8), (myelin.randn(8) > 0).float()
    bce = nn.BCEWithLogitsLoss()(x, t).item()
    assert bce == pytest.approx(nn.BCELoss()(x.sigmoid(), t).item(), rel=1e-5)
    assert nn.MSELoss(reduction="sum")(x, t).item() == pytest.approx(
        float(((x.data - t.data) ** 2).sum()), rel=1e-6
    )
    with pytest.raises(ValueError, match="reduction"):
        nn.MSELoss(reduction="avg")


def test_cross_entropy_label_errors():
    logits = myelin.randn(3, 4)
    with pytest.raises(ValueError, match=r"labels\[1\] = 7"):
        F.cross_entropy(logits, [0, 7, 1])
    with pytest.raises(ValueError, match="integer"):
        F.cross_entropy(logits, np.array([0.0, 1.0, 2.0]))


def test_init_functions():
    myelin.manual_seed(0)
    w = nn.Parameter(np.empty((300, 200), np.float32))
    nn.init.kaiming_uniform_(w, nonlinearity="relu")
    assert w.data.std() == pytest.approx(math.sqrt(2 / 200), rel=0.03)
    nn.init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu")
    assert w.data.std() == pytest.approx(math.sqrt(2 / 300), rel=0.03)
    nn.init.xavier_uniform_(w)
    assert np.abs(w.data).max() <= math.sqrt(6 / 500)
    assert w.data.std() == pytest.approx(math.sqrt(2 / 500), rel=0.03)
    nn.init.xavier_normal_(w, gain=2.0)
    assert w.data.std() == pytest.approx(2 * math.sqrt(2 / 500), rel=0.03)
    nn.init.normal_(w, 1.0, 0.5)
    assert w.data.mean() == pytest.approx(1.0, abs=0.01)
    nn.init.uniform_(w, -2, -1)
    assert w.data.min() >= -2 and w.data.max() <= -1
    nn.init.zeros_(w)
    assert not w.data.any()
    nn.init.ones_(w)
    assert (w.data == 1).all()
    with pytest.raises(ValueError, match="2 dimensions"):
        nn.init.xavier_uniform_(myelin.zeros(3))


def test_clip_grad_norm():
    model = SimpleNet(3, 8, 2)
    model(myelin.randn(16, 3) * 100).sum().backward()
    grads = [p.grad.data.astype(np.float64) for p in model.parameters()]
    total = math.sqrt(sum((g**2).sum() for g in grads))
    got = nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    assert got.item() == pytest.approx(total, rel=1e-5)
    after = math.sqrt(sum((p.grad.data.astype(np.float64) ** 2).sum() for p in model.parameters()))
    assert after == pytest.approx(1.0, rel=1e-4)
    before = [p.grad.data.copy() for p in model.parameters()]
    nn.utils.clip_grad_norm_(model.parameters(), 10.0)
    for b, p in zip(before, model.parameters(), strict=True):
        np.testing.assert_array_equal(b, p.grad.data)


def test_custom_module_with_parameter_and_torch_state_dict():
    class Affine(nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(np.ones(3, np.float32))
            self.inner = nn.Linear(3, 3)

        def forward(self, x):
            return self.inner(x) * self.scale

    m = Affine()
    assert [n for n, _ in m.named_parameters()] == ["scale", "inner.weight", "inner.bias"]
    torch_like = {
        "scale": np.full(3, 2.0, np.float32),
        "inner.weight": np.eye(3, dtype=np.float32),
        "inner.bias": np.zeros(3, np.float32),
    }
    m.load_state_dict(torch_like)
    np.testing.assert_allclose(m([[1.0, 2.0, 3.0]]).data, [[2.0, 4.0, 6.0]])
