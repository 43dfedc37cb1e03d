"""myelin against PyTorch itself, when torch is installed: the same weights give the same outputs,
gradients and optimizer trajectories, and state dicts move both ways."""

import numpy as np
import pytest

import myelin
from myelin import nn

torch = pytest.importorskip("torch")


def _pair(sizes, act="relu"):
    torch.manual_seed(0)
    tl, ml = [], []
    for i in range(len(sizes) - 1):
        tl.append(torch.nn.Linear(sizes[i], sizes[i + 1]))
        ml.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            tl.append({"relu": torch.nn.ReLU, "tanh": torch.nn.Tanh}[act]())
            ml.append({"relu": nn.ReLU, "tanh": nn.Tanh}[act]())
    tmodel, mmodel = torch.nn.Sequential(*tl), nn.Sequential(*ml)
    mmodel.load_state_dict({k: v.detach().numpy() for k, v in tmodel.state_dict().items()})
    return tmodel, mmodel


@pytest.mark.parametrize("act", ["relu", "tanh"])
def test_forward_loss_and_gradients_match_torch(act):
    tmodel, mmodel = _pair([10, 64, 32, 3], act)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 10)).astype(np.float32)
    y = rng.integers(0, 3, 16)
    tloss = torch.nn.CrossEntropyLoss(label_smoothing=0.1)(
        tmodel(torch.from_numpy(x)), torch.from_numpy(y)
    )
    tloss.backward()
    mloss = nn.CrossEntropyLoss(label_smoothing=0.1)(mmodel(x), y)
    mloss.backward()
    assert mloss.item() == pytest.approx(tloss.item(), rel=1e-5)
    tgrads = {k: p.grad.numpy() for k, p in tmodel.named_parameters()}
    for k, p in mmodel.named_parameters():
        np.testing.assert_allclose(p.grad.data, tgrads[k], rtol=1e-4, atol=1e-6, err_msg=k)


def test_keys_and_layouts_match_torch_both_ways():
    tmodel, mmodel = _pair([4, 5, 2])
    assert list(mmodel.state_dict()) == list(tmodel.state_dict())
    for v in mmodel.state_dict().values():
        v += 1.0
    mmodel.load_state_dict({k: v + 1.0 for k, v in mmodel.state_dict().items()})
    tmodel.load_state_dict({k: torch.from_numpy(v) for k, v in mmodel.state_dict().items()})
    x = np.random.default_rng(1).standard_normal((3, 4)).astype(np.float32)
    with torch.no_grad():
        want = tmodel(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(mmodel(x).data, want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    "name,kwargs",
    [
        ("SGD", {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-3}),
        ("Adam", {"lr": 1e-2, "weight_decay": 1e-3, "amsgrad": True}),
        ("AdamW", {"lr": 1e-2, "weight_decay": 1e-2}),
        ("RMSprop", {"lr": 1e-3, "momentum": 0.5, "centered": True}),
    ],
)
def test_training_trajectory_matches_torch(name, kwargs):
    tmodel, mmodel = _pair([6, 16, 3])
    topt = getattr(torch.optim, name)(tmodel.parameters(), **kwargs)
    mopt = getattr(myelin.optim, name)(mmodel.parameters(), **kwargs)
    rng = np.random.default_rng(2)
    for _ in range(10):
        x = rng.standard_normal((8, 6)).astype(np.float32)
        y = rng.integers(0, 3, 8)
        topt.zero_grad()
        torch.nn.functional.cross_entropy(
            tmodel(torch.from_numpy(x)), torch.from_numpy(y)
        ).backward()
        topt.step()
        mopt.zero_grad()
        nn.functional.cross_entropy(mmodel(x), y).backward()
        mopt.step()
    for k, v in tmodel.state_dict().items():
        np.testing.assert_allclose(
            mmodel.state_dict()[k], v.numpy(), rtol=1e-4, atol=1e-5, err_msg=k
        )
