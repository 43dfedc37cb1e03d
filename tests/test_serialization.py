"""myelin.save / myelin.load / save_model / load_model: pickle-free .npz files that plain NumPy
reads, exact round trips, and refusals."""

import io
import json
import math
import pickle
from collections import OrderedDict

import numpy as np
import pytest

import myelin
from myelin import nn, serialization


def _header(path) -> dict:
    with np.load(path, allow_pickle=False) as z:
        raw = z["__myelin__"]
        assert raw.dtype == np.uint8 and raw.ndim == 1
        return json.loads(raw.tobytes().decode("utf-8"))


def _craft(path, header: dict, **arrays) -> None:
    """A file written by plain NumPy in the documented layout (not by myelin)."""
    text = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    with open(path, "wb") as f:
        np.savez(f, __myelin__=text, **arrays)


def _outputs(model, x):
    with myelin.no_grad():
        return model(x).numpy()


# ---------------------------------------------------------------- save / load


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_state_dict_round_trip(tmp_path, dtype):
    model = nn.Sequential(nn.Linear(4, 3, dtype=dtype), nn.ReLU(), nn.Linear(3, 2, dtype=dtype))
    sd = model.state_dict()
    path = tmp_path / "weights.npz"
    myelin.save(sd, path)
    back = myelin.load(path)
    assert list(back) == list(sd)
    for k in sd:
        assert back[k].dtype == dtype and back[k].shape == sd[k].shape
        assert np.array_equal(back[k], sd[k])
    # plain NumPy reads the file, without pickle, arrays under the state-dict keys
    with np.load(path, allow_pickle=False) as z:
        assert set(z.files) == {"__myelin__", *sd}
        for k in sd:
            assert np.array_equal(z[k], sd[k]) and z[k].dtype == dtype
    assert _header(path)["format"] == "myelin.save"


def test_nested_optimizer_state_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    state = {
        "state": {
            0: {"step": 7, "exp_avg": rng.standard_normal((3, 2)), "exp_avg_sq": rng.random(2)},
            1: {"step": 7.0, "momentum_buffer": rng.standard_normal(5).astype(np.float32)},
        },
        "param_groups": [
            {
                "lr": 1e-3,
                "betas": (0.9, 0.999),
                "eps": 1e-8,
                "weight_decay": 0,
                "amsgrad": False,
                "name": None,
                "params": [0, 1],
            }
        ],
        "extras": [
            float("nan"),
            math.inf,
            -math.inf,
            "text",
            True,
            np.float32(0.5),
            np.int64(3),
            np.bool_(True),
            np.arange(4, dtype=np.int32),
            np.array(2.5),
            np.array([True, False]),
            myelin.tensor([1.0, 2.0]),
            [],
            {},
        ],
    }
    path = tmp_path / "optim.npz"
    myelin.save(state, path)
    back = myelin.load(path)

    assert set(back["state"]) == {0, 1}
    assert all(type(k) is int for k in back["state"])
    s0, s1 = back["state"][0], back["state"][1]
    assert s0["step"] == 7 and type(s0["step"]) is int
    assert s1["step"] == 7.0 and type(s1["step"]) is float
    assert np.array_equal(s0["exp_avg"], state["state"][0]["exp_avg"])
    assert np.array_equal(s0["exp_avg_sq"], state["state"][0]["exp_avg_sq"])
    mb = s1["momentum_buffer"]
    assert mb.dtype == np.float32 and np.array_equal(mb, state["state"][1]["momentum_buffer"])

    group = back["param_groups"][0]
    assert group["lr"] == 1e-3 and group["eps"] == 1e-8 and group["weight_decay"] == 0
    assert list(group["betas"]) == [0.9, 0.999]
    assert group["amsgrad"] is False and group["name"] is None and group["params"] == [0, 1]

    e = back["extras"]
    assert math.isnan(e[0]) and e[1] == math.inf and e[2] == -math.inf
    assert e[3] == "text" and e[4] is True
    assert e[5] == 0.5 and type(e[5]) is float
    assert e[6] == 3 and type(e[6]) is int
    assert e[7] is True
    assert e[8].dtype == np.int32 and np.array_equal(e[8], np.arange(4))
    assert e[9].shape == () and e[9] == 2.5
    assert e[10].dtype == np.bool_ and e[10].tolist() == [True, False]
    assert isinstance(e[11], np.ndarray) and e[11].dtype == np.float32
    assert e[11].tolist() == [1.0, 2.0]
    assert e[12] == [] and e[13] == {}

    with np.load(path, allow_pickle=False) as z:
        assert "state/0/exp_avg" in z.files
        assert np.array_equal(z["state/1/momentum_buffer"], mb)


def test_writes_exactly_the_given_path(tmp_path):
    sd = {"w": np.ones(3, np.float32)}
    for name in ("checkpoint", "weights.bin", "model.ckpt"):
        myelin.save(sd, tmp_path / name)
        myelin.save(sd, str(tmp_path / ("str_" + name)))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["checkpoint", "weights.bin", "model.ckpt"]
        + ["str_checkpoint", "str_weights.bin", "str_model.ckpt"]
    )
    assert np.array_equal(myelin.load(tmp_path / "checkpoint")["w"], sd["w"])


def test_open_binary_files(tmp_path):
    buf = io.BytesIO()
    myelin.save({"a": np.arange(3.0), "b": [1, "x"]}, buf)
    buf.seek(0)
    back = myelin.load(buf)
    assert np.array_equal(back["a"], np.arange(3.0)) and back["b"] == [1, "x"]


def test_entry_names_stay_unique(tmp_path):
    obj = {"a/b": np.zeros(1), "a": {"b": np.ones(1)}, "__myelin__": np.full(1, 2.0)}
    myelin.save(obj, tmp_path / "f")
    back = myelin.load(tmp_path / "f")
    assert back["a/b"][0] == 0 and back["a"]["b"][0] == 1 and back["__myelin__"][0] == 2


class _Thing:
    pass


@pytest.mark.parametrize(
    "obj, where, what",
    [
        ({"a": [1, _Thing()]}, "obj['a'][1]", "_Thing"),
        ({"s": {1, 2}}, "obj['s']", "set"),
        ({"f": lambda x: x}, "obj['f']", "function"),
        ({"b": b"bytes"}, "obj['b']", "bytes"),
        ({"z": 1j}, "obj['z']", "complex"),
        (
            {"state": {0: {"o": np.array([None, 1], dtype=object)}}},
            "obj['state'][0]['o']",
            "object",
        ),
        ({(1, 2): np.zeros(1)}, "obj", "tuple"),
        ({True: 1}, "obj", "bool"),
    ],
)
def test_refuses_unstorable_objects(tmp_path, obj, where, what):
    path = tmp_path / "bad.npz"
    with pytest.raises(TypeError) as info:
        myelin.save(obj, path)
    assert where in str(info.value) and what in str(info.value)
    assert not path.exists()


def test_refuses_a_structure_that_contains_itself(tmp_path):
    loop = {"a": []}
    loop["a"].append(loop)
    with pytest.raises(ValueError, match="contains itself"):
        myelin.save(loop, tmp_path / "loop.npz")


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        myelin.load(tmp_path / "nope.npz")
    with pytest.raises(FileNotFoundError):
        myelin.load_model(tmp_path / "nope.npz")


_UNPICKLED = []


def _record_unpickling():
    _UNPICKLED.append(True)
    return {}


class _Trap:
    def __reduce__(self):
        return (_record_unpickling, ())


def test_never_unpickles(tmp_path):
    pickled = tmp_path / "pickled.pt"
    pickled.write_bytes(pickle.dumps({"w": _Trap()}))
    with pytest.raises(ValueError, match="not a myelin file"):
        myelin.load(pickled)
    with pytest.raises(ValueError, match="not a myelin file"):
        myelin.load_model(pickled)
    # an object array hidden in an otherwise valid myelin file
    crafted = tmp_path / "crafted.npz"
    trap = np.empty(1, dtype=object)
    trap[0] = _Trap()
    header = {"format": "myelin.save", "version": 1, "tree": {"array": "w"}}
    text = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    with open(crafted, "wb") as f:
        np.savez(f, __myelin__=text, w=trap)
    with pytest.raises(ValueError, match="cannot read the array entry 'w'"):
        myelin.load(crafted)
    assert _UNPICKLED == []


@pytest.mark.parametrize(
    "writer, message",
    [
        (lambda p: p.write_text("hello, world\n"), "not a myelin file"),
        (lambda p: p.write_bytes(b""), "not a myelin file"),
        (lambda p: np.save(open(p, "wb"), np.ones(3)), "single NumPy array"),
        (lambda p: np.savez(open(p, "wb"), w=np.ones(3)), "myelin did not write"),
    ],
)
def test_refuses_files_myelin_did_not_write(tmp_path, writer, message):
    path = tmp_path / "foreign"
    writer(path)
    with pytest.raises(ValueError, match=message):
        myelin.load(path)
    with pytest.raises(ValueError, match=message):
        myelin.load_model(path)


@pytest.mark.parametrize(
    "header",
    [
        {"format": "something.else", "version": 1},
        {"format": "myelin.save", "version": 99, "tree": None},
        {"format": "myelin.save", "version": 1, "tree": {"array": "missing"}},
        {"format": "myelin.save", "version": 1, "tree": {"eval": "1 + 1"}},
        {"format": "myelin.save", "version": 1},
    ],
)
def test_refuses_corrupt_headers(tmp_path, header):
    path = tmp_path / "corrupt.npz"
    _craft(path, header)
    with pytest.raises(ValueError):
        myelin.load(path)


# ---------------------------------------------------------------- models


def _every_layer(dtype):
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(6, 8, activation="tanh", dtype=dtype),
        nn.Linear(8, 8, dtype=dtype),
        nn.LeakyReLU(0.1),
        nn.Dropout(0.25),
        nn.Linear(8, 7, bias=False, dtype=dtype),
        nn.Sigmoid(),
        nn.Identity(),
        nn.Linear(7, 5, dtype=dtype),
        nn.ReLU(),
        nn.Linear(5, 4, dtype=dtype),
        nn.Tanh(),
        nn.Linear(4, 3, dtype=dtype),
        nn.LogSoftmax(dim=-1),
        nn.Softmax(dim=1),
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_model_round_trip_is_bitwise(tmp_path, dtype):
    myelin.manual_seed(0)
    model = _every_layer(dtype).eval()
    x = np.random.default_rng(1).standard_normal((5, 2, 3)).astype(dtype)
    path = tmp_path / "model.npz"
    serialization.save_model(model, path)
    back = myelin.load_model(path)

    assert type(back) is nn.Sequential and not back.training
    assert [type(m) for m in back] == [type(m) for m in model]
    assert [m.get_config() for m in back] == [m.get_config() for m in model]
    sd, sd2 = model.state_dict(), back.state_dict()
    assert list(sd2) == list(sd)
    for k in sd:
        assert sd2[k].dtype == dtype and np.array_equal(sd2[k], sd[k])
    assert np.array_equal(_outputs(back, x), _outputs(model, x))

    header = _header(path)
    assert header["format"] == "myelin.Sequential" and header["version"] == 1
    assert header["layers"][1] == {
        "class": "Linear",
        "name": "1",
        "config": model[1].get_config(),
    }
    with np.load(path, allow_pickle=False) as z:
        assert np.array_equal(z["1.weight"], sd["1.weight"])


def test_named_sequential_and_module_save(tmp_path):
    model = nn.Sequential(
        OrderedDict(fc1=nn.Linear(3, 4), act=nn.ReLU(), fc2=nn.Linear(4, 2, activation="sigmoid"))
    )
    path = tmp_path / "named.npz"
    model.save(path)  # Module.save delegates to save_model
    back = myelin.load_model(path)
    assert list(back.state_dict()) == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
    assert back.training
    x = np.random.default_rng(2).standard_normal((4, 3)).astype(np.float32)
    assert np.array_equal(_outputs(back, x), _outputs(model, x))
    # the weights of a model file read back as a state dict
    sd = myelin.load(path)
    assert list(sd) == list(model.state_dict())


def test_loaded_model_keeps_training(tmp_path):
    model = nn.Sequential(nn.Linear(3, 2))
    serialization.save_model(model, tmp_path / "m.npz")
    back = myelin.load_model(tmp_path / "m.npz")
    out = back(np.ones((1, 3), np.float32)).sum()
    out.backward()
    assert all(p.grad is not None for p in back.parameters())


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(4, 8, dtype=np.float64), nn.ReLU(), nn.Linear(8, 3, dtype=np.float64)
        )

    def forward(self, x):
        return self.net(x)


def test_pytorch_layout_state_dict_into_a_custom_module(tmp_path):
    rng = np.random.default_rng(3)
    sd = {
        "net.0.weight": rng.standard_normal((8, 4)),
        "net.0.bias": rng.standard_normal(8),
        "net.2.weight": rng.standard_normal((3, 8)),
        "net.2.bias": rng.standard_normal(3),
    }
    path = tmp_path / "torch_layout.npz"
    myelin.save(sd, path)
    model = _Net()
    model.load_state_dict(myelin.load(path))
    x = rng.standard_normal((6, 4))
    h = np.maximum(x @ sd["net.0.weight"].T + sd["net.0.bias"], 0.0)
    want = h @ sd["net.2.weight"].T + sd["net.2.bias"]
    # float64 dot products (+ bias) of length <= 9: at most 9 roundings of the absolute-value
    # products, the first layer's carried through |W2| (relu is 1-Lipschitz)
    w0, b0, w2, b2 = (np.abs(sd[k]) for k in sd)
    scale = (np.abs(x) @ w0.T + b0) @ w2.T + np.abs(h) @ w2.T + b2
    np.testing.assert_array_less(np.abs(_outputs(model, x) - want), 10 * 2.0**-52 * scale)


def test_refuses_models_it_cannot_rebuild(tmp_path):
    path = tmp_path / "m.npz"
    with pytest.raises(TypeError, match=r"myelin\.save\(model\.state_dict\(\), path\)"):
        serialization.save_model(_Net(), path)

    class Custom(nn.Module):
        def forward(self, x):
            return x

        def get_config(self):
            return {}

    with pytest.raises(TypeError, match=r"'1' is a Custom.*myelin\.save\(model\.state_dict"):
        serialization.save_model(nn.Sequential(nn.Linear(2, 2), Custom()), path)

    class MySequential(nn.Sequential):
        pass

    with pytest.raises(TypeError, match="MySequential"):
        serialization.save_model(MySequential(nn.Linear(2, 2)), path)
    assert not path.exists()


class _Scale(nn.Module):
    def __init__(self, factor=2.0):
        super().__init__()
        self.factor = factor

    def forward(self, x):
        return x * self.factor

    def get_config(self):
        return {"factor": self.factor}


def test_register_layer(tmp_path):
    assert serialization.register_layer(_Scale, "test._Scale") is _Scale
    serialization.register_layer(_Scale, "test._Scale")  # again: a no-op
    model = nn.Sequential(nn.Linear(2, 3), _Scale(0.5))
    serialization.save_model(model, tmp_path / "m.npz")
    back = myelin.load_model(tmp_path / "m.npz")
    assert type(back[1]) is _Scale and back[1].factor == 0.5
    x = np.ones((2, 2), np.float32)
    assert np.array_equal(_outputs(back, x), _outputs(model, x))

    with pytest.raises(ValueError, match="already registered"):
        serialization.register_layer(_Scale, "test.other_name")

    class Other(_Scale):
        pass

    with pytest.raises(ValueError, match="already taken"):
        serialization.register_layer(Other, "Linear")
    with pytest.raises(TypeError, match="get_config"):
        serialization.register_layer(_Net)
    with pytest.raises(TypeError, match="subclass of myelin.nn.Module"):
        serialization.register_layer(dict)


def _model_header(layers, weights=()):
    return {
        "format": "myelin.Sequential",
        "version": 1,
        "class": "nn.Sequential",
        "layers": layers,
        "weights": [list(w) for w in weights],
    }


@pytest.mark.parametrize("cls", ["Conv2d", "os.system", "builtins.eval", "__import__"])
def test_unknown_layer_class(tmp_path, cls):
    path = tmp_path / "crafted.npz"
    _craft(path, _model_header([{"class": cls, "name": "0", "config": {}}]))
    with pytest.raises(ValueError, match=f"class '{cls}'.*not know"):
        myelin.load_model(path)


def test_corrupt_model_files(tmp_path):
    path = tmp_path / "crafted.npz"
    linear = {"class": "Linear", "name": "0", "config": {"in_features": 2, "out_features": 3}}
    _craft(path, _model_header([linear]))  # weights missing
    with pytest.raises(ValueError, match="do not match"):
        myelin.load_model(path)
    w = [("0.weight", "w"), ("0.bias", "b")]
    _craft(path, _model_header([linear], w), w=np.zeros((3, 3), np.float32), b=np.zeros(3))
    with pytest.raises(ValueError, match=r"shape \(3, 3\)"):
        myelin.load_model(path)
    bad = dict(linear, config={"in_features": 2, "out_features": 3, "evil": 1})
    _craft(path, _model_header([bad]))
    with pytest.raises(ValueError, match="cannot be rebuilt"):
        myelin.load_model(path)
    _craft(path, dict(_model_header([]), **{"class": "os.Sequential"}))
    with pytest.raises(ValueError, match="unknown model class"):
        myelin.load_model(path)


def test_load_model_of_a_state_dict_file(tmp_path):
    myelin.save({"w": np.ones(2)}, tmp_path / "sd.npz")
    with pytest.raises(ValueError, match="not a model.*load_state_dict"):
        myelin.load_model(tmp_path / "sd.npz")


def test_compile_config_is_stored(tmp_path):
    model = nn.Sequential(nn.Linear(2, 2))
    model._compile_config = {"optimizer": {"name": "sgd"}, "loss": None, "metrics": ["accuracy"]}
    serialization.save_model(model, tmp_path / "m.npz")
    assert _header(tmp_path / "m.npz")["compile"] == model._compile_config
    back = myelin.load_model(tmp_path / "m.npz")  # no loss name: reloaded uncompiled
    assert np.array_equal(back[0].weight.data, model[0].weight.data)


def test_compiled_by_name_reloads_compiled(tmp_path):
    model = nn.Sequential(nn.Linear(2, 1))
    model.compile(optimizer="sgd", loss="mse")
    serialization.save_model(model, tmp_path / "m.npz")
    back = myelin.load_model(tmp_path / "m.npz")
    assert back._compile_config == model._compile_config
    assert type(back.optimizer) is type(model.optimizer)
    assert back.optimizer.param_groups[0]["lr"] == model.optimizer.param_groups[0]["lr"]


def test_uncompilable_config_warns(tmp_path):
    model = nn.Sequential(nn.Linear(2, 1))
    model._compile_config = {
        "optimizer": {"name": "adam", "learning_rate": -1.0},
        "loss": "mse",
        "metrics": [],
    }
    serialization.save_model(model, tmp_path / "m.npz")
    with pytest.warns(RuntimeWarning, match="returned uncompiled"):
        back = myelin.load_model(tmp_path / "m.npz")
    assert np.array_equal(back[0].weight.data, model[0].weight.data)


_SAVER = """
import sys
import numpy as np
import myelin
path = sys.argv[1]
i = 0
while True:
    i += 1
    myelin.save({"version": i, "w": np.full((256, 256), float(i), np.float32)}, path)
    print(i, flush=True)
"""


def test_a_save_killed_at_any_point_leaves_the_old_file_whole(tmp_path):
    """Saves are atomic: a process killed (SIGKILL) at random points while it saves over the
    same file again and again always leaves a whole file, of the last version it finished."""
    import random
    import subprocess
    import sys
    import time

    path = tmp_path / "ckpt.npz"
    myelin.save({"version": 0, "w": np.zeros((256, 256), np.float32)}, path)
    rng = random.Random(0)
    kills = 0
    for _ in range(12):
        proc = subprocess.Popen(
            [sys.executable, "-c", _SAVER, str(path)], stdout=subprocess.PIPE, text=True
        )
        first = proc.stdout.readline()  # it is saving now
        assert first.strip().isdigit()
        time.sleep(rng.uniform(0.0, 0.05))
        proc.kill()
        out, _ = proc.communicate()
        kills += 1
        done = [int(v) for v in (first + out).split()]
        state = myelin.load(path)
        version = state["version"]
        # the file is a version the process completed: the last one it reported, or the next
        # one if it was killed between the rename and its print
        assert done[-1] <= version <= done[-1] + 1
        np.testing.assert_array_equal(state["w"], np.full((256, 256), float(version), np.float32))
    assert kills == 12
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "ckpt.npz"]
    assert all(n.startswith(".ckpt.npz.") and n.endswith(".tmp") for n in leftovers)


def test_a_failed_save_keeps_the_old_file(tmp_path):
    path = tmp_path / "weights.npz"
    myelin.save({"w": np.ones(3, np.float32)}, path)
    with pytest.raises(TypeError):
        myelin.save({"w": object()}, path)
    np.testing.assert_array_equal(myelin.load(path)["w"], np.ones(3, np.float32))
    assert [p.name for p in tmp_path.iterdir()] == ["weights.npz"]


@pytest.mark.parametrize("keep", [0.0, 0.1, 0.5, 0.9, 0.99])
def test_truncated_files_raise_naming_the_file(tmp_path, keep):
    path = tmp_path / "model.npz"
    myelin.save({"w": np.arange(4096, dtype=np.float32)}, path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(ValueError, match="model.npz"):
        myelin.load(path)
