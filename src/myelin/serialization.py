"""Save and load without pickle: nestings of arrays and plain values, and Sequential models.

Both kinds of file are one NumPy ``.npz`` archive that plain NumPy reads with
``np.load(path, allow_pickle=False)``: every array is an entry of its own (a state dict's arrays
under their own keys, ``"0.weight"``), and one more entry, ``"__myelin__"``, holds a JSON
document as a uint8 array: the structure (dicts, lists, numbers, strings) with references to
the array entries, or a model's architecture. Nothing is ever unpickled, imported or executed
on load: a model file names its layers, and ``load_model`` builds them only from a registry of
allowed classes (:func:`register_layer`).

Mirrors ``torch.save``/``torch.load`` (https://pytorch.org/docs/stable/generated/torch.save.html)
for state dicts and ``keras.models.load_model``
(https://keras.io/api/models/model_saving_apis/model_saving_and_loading/) for models.
"""

from __future__ import annotations

import contextlib
import json
import math
import numbers
import os
import tempfile
import warnings
import zipfile
from collections import OrderedDict
from typing import TYPE_CHECKING

import numpy as np

from myelin import nn
from myelin.nn.module import Module, Parameter
from myelin.tensor import Tensor

if TYPE_CHECKING:
    from typing import Any

    from myelin._typing import FileLike

__all__ = ["load", "load_model", "register_layer", "save", "save_model"]

_HEADER = "__myelin__"
_VERSION = 1
_FORMAT_OBJECT = "myelin.save"
_FORMAT_MODEL = "myelin.Sequential"

# ---------------------------------------------------------------- the layer registry

_LAYERS: dict[str, type] = {}
_NAMES: dict[type, str] = {}


def register_layer(cls, name: str | None = None):
    """Allow ``load_model`` to rebuild layers of class ``cls`` (returns ``cls``: usable as a
    decorator).

    Parameters
    ----------
    cls : subclass of :class:`myelin.nn.Module`
        It must define ``get_config()`` returning a JSON-able dict of keyword arguments such that
        ``cls(**config)`` rebuilds the layer (its parameters then come from the file).
    name : str, optional
        The name written in model files, ``cls.__name__`` by default. Each name and each class
        is registered once.
    """
    if not isinstance(cls, type) or not issubclass(cls, Module):
        raise TypeError(f"register_layer: cls must be a subclass of myelin.nn.Module, got {cls!r}")
    if not callable(getattr(cls, "get_config", None)):
        raise TypeError(
            f"register_layer: {cls.__name__} has no get_config() method; it must return the "
            f"keyword arguments that rebuild the layer"
        )
    name = cls.__name__ if name is None else name
    if not isinstance(name, str) or not name:
        raise TypeError(f"register_layer: name must be a non-empty str, got {name!r}")
    if _LAYERS.get(name, cls) is not cls:
        raise ValueError(
            f"register_layer: the name {name!r} is already taken by {_LAYERS[name].__module__}."
            f"{_LAYERS[name].__qualname__}; pass another name="
        )
    if _NAMES.get(cls, name) != name:
        raise ValueError(f"register_layer: {cls.__name__} is already registered as {_NAMES[cls]!r}")
    _LAYERS[name] = cls
    _NAMES[cls] = name
    return cls


for _cls in (
    nn.Linear,
    nn.ReLU,
    nn.LeakyReLU,
    nn.Sigmoid,
    nn.Tanh,
    nn.Softmax,
    nn.LogSoftmax,
    nn.Dropout,
    nn.Flatten,
    nn.Identity,
):
    register_layer(_cls)


def _model_classes() -> dict[str, type]:
    """The model classes a file may name (imported here, never from the file)."""
    from myelin import keras  # registers the Keras-style layers as a side effect

    return {"nn.Sequential": nn.Sequential, "keras.Sequential": keras.Sequential}


# ---------------------------------------------------------------- writing


def _key_path(path) -> str:
    return "obj" + "".join(f"[{k!r}]" for k in path)


def _entry_name(wanted: str, used: set) -> str:
    name = wanted if wanted and wanted != _HEADER else "array"
    base, n = name, 1
    while name in used:
        name = f"{base}~{n}"
        n += 1
    used.add(name)
    return name


def _check_array(arr: np.ndarray, path) -> np.ndarray:
    if arr.dtype.hasobject:
        raise TypeError(
            f"myelin.save: cannot store the array at {_key_path(path)}: its dtype {arr.dtype} "
            f"holds Python objects, which only pickle can store"
        )
    return arr


def _encode(obj, path, arrays: list, used: set, active: set):
    """The JSON node of ``obj``; its arrays are appended to ``arrays`` as (entry, ndarray)."""
    if isinstance(obj, (np.bool_, np.integer, np.floating)):
        obj = obj.item()
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, numbers.Integral) and not isinstance(obj, bool):
        return int(obj)
    if isinstance(obj, float):
        if math.isfinite(obj):
            return obj
        return {"float": "nan" if math.isnan(obj) else ("inf" if obj > 0 else "-inf")}
    if isinstance(obj, (Tensor, np.ndarray)):
        arr = _check_array(obj._data if isinstance(obj, Tensor) else obj, path)
        name = _entry_name("/".join(str(k) for k in path), used)
        arrays.append((name, arr))
        return {"array": name}
    if isinstance(obj, (dict, list, tuple)):
        if id(obj) in active:
            raise ValueError(f"myelin.save: {_key_path(path)} contains itself")
        active.add(id(obj))
        try:
            if isinstance(obj, dict):
                items = []
                for k, v in obj.items():
                    if isinstance(k, np.integer):
                        k = int(k)
                    if isinstance(k, bool) or not isinstance(k, (str, int)):
                        raise TypeError(
                            f"myelin.save: cannot store the key {k!r} ({type(k).__name__}) at "
                            f"{_key_path(path)}; dict keys must be str or int"
                        )
                    items.append([k, _encode(v, (*path, k), arrays, used, active)])
                return {"dict": items}
            nodes = [_encode(v, (*path, i), arrays, used, active) for i, v in enumerate(obj)]
            return {"tuple": nodes} if isinstance(obj, tuple) else nodes
        finally:
            active.discard(id(obj))
    raise TypeError(
        f"myelin.save: cannot store {type(obj).__module__}.{type(obj).__qualname__} at "
        f"{_key_path(path)}; storable are arrays, Tensors, numbers, str, bool, None and "
        f"dicts/lists/tuples of those"
    )


def _write(path, header: dict, arrays: list) -> None:
    """One .npz at exactly ``path`` (or into an open binary file): the JSON header, then the
    arrays, uncompressed, as ``np.savez`` lays them out."""
    text = json.dumps(header, allow_nan=False, separators=(",", ":"))
    entries = [(_HEADER, np.frombuffer(text.encode("utf-8"), dtype=np.uint8)), *arrays]

    def write(f):
        with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            for name, arr in entries:
                with zf.open(name + ".npy", "w", force_zip64=True) as fp:
                    np.lib.format.write_array(fp, np.asarray(arr), allow_pickle=False)

    if hasattr(path, "write"):
        write(path)
        return
    # atomically: a temporary file beside the target, flushed to disk, then renamed over it, so
    # that a process killed mid-save leaves the old file whole (and at worst a stray temporary)
    target = os.fspath(path)
    folder, name = os.path.split(os.path.abspath(target))
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # the rename itself, durable (not on every platform)
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def save(obj: Any, path: FileLike) -> None:
    """Write ``obj`` to ``path`` as one ``.npz`` (``torch.save`` without pickle).

    Parameters
    ----------
    obj : state dict, optimizer state dict, or any nesting of dict/list/tuple
        Leaves may be ndarrays, myelin Tensors (their data is stored), Python or NumPy numbers
        (nan and inf included), str, bool and None. Dict keys are str or int (an optimizer
        state dict's parameter indices come back as ints).
    path : str, os.PathLike or binary file
        Written exactly there: no ``.npz`` suffix is added.

    Notes
    -----
    ``np.load(path, allow_pickle=False)`` reads the result: each array is an entry named by its
    key path (``"0.weight"`` for a state dict, ``"state/0/exp_avg"`` deeper down), and the
    ``"__myelin__"`` entry holds the structure as JSON in a uint8 array. Raises TypeError naming
    the key path of anything else (objects, object arrays, other key types).
    """
    arrays: list = []
    tree = _encode(obj, (), arrays, set(), set())
    _write(path, {"format": _FORMAT_OBJECT, "version": _VERSION, "tree": tree}, arrays)


# ---------------------------------------------------------------- reading


def _describe(path) -> str:
    return repr(os.fspath(path)) if isinstance(path, (str, os.PathLike)) else "the file"


def _read(path):
    """(header dict, NpzFile) of a myelin file; the caller closes the NpzFile."""
    if isinstance(path, (str, os.PathLike)) and not os.path.exists(path):
        raise FileNotFoundError(f"No such file: {os.fspath(path)!r}")
    where = _describe(path)
    try:
        z = np.load(path, allow_pickle=False)
    except (ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(
            f"{where} is not a myelin file (myelin.save / model.save write .npz archives; "
            f"this is not one: {exc})"
        ) from None
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise ValueError(
            f"{where} is a single NumPy array (.npy), not a myelin file; read it with np.load"
        )
    try:
        if _HEADER not in z.files:
            raise ValueError(
                f"{where} is a NumPy .npz archive that myelin did not write (it has no "
                f"{_HEADER!r} entry); read it with np.load, e.g. dict(np.load(path)) for a "
                f"state dict of arrays"
            )
        raw = z[_HEADER]
        if raw.dtype != np.uint8 or raw.ndim != 1:
            raise ValueError(f"{where}: the {_HEADER!r} entry is not a uint8 vector")
        try:
            header = json.loads(raw.tobytes().decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{where}: the {_HEADER!r} entry is not valid JSON ({exc})") from None
        if not isinstance(header, dict) or header.get("format") not in (
            _FORMAT_OBJECT,
            _FORMAT_MODEL,
        ):
            raise ValueError(f"{where}: unknown myelin file format {_get(header, 'format')!r}")
        version = header.get("version")
        if not isinstance(version, int) or isinstance(version, bool) or version > _VERSION:
            raise ValueError(
                f"{where}: file version {version!r} is not supported (this myelin reads "
                f"versions up to {_VERSION}; a newer myelin wrote it?)"
            )
    except BaseException:
        z.close()
        raise
    return header, z


def _get(header, key):
    return header.get(key) if isinstance(header, dict) else None


def _array(z, name, where: str) -> np.ndarray:
    if not isinstance(name, str) or name == _HEADER or name not in z.files:
        raise ValueError(f"{where}: corrupt file, the array entry {name!r} does not exist")
    try:
        return z[name]
    except ValueError as exc:
        raise ValueError(f"{where}: cannot read the array entry {name!r}: {exc}") from None


_FLOATS = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def _decode(node, z, where: str):
    if node is None or isinstance(node, (bool, int, float, str)):
        return node
    if isinstance(node, list):
        return [_decode(v, z, where) for v in node]
    if isinstance(node, dict) and len(node) == 1:
        ((tag, value),) = node.items()
        if tag == "array":
            return _array(z, value, where)
        if tag == "dict" and isinstance(value, list):
            out = {}
            for item in value:
                if not (isinstance(item, list) and len(item) == 2):
                    break
                k, v = item
                if isinstance(k, bool) or not isinstance(k, (str, int)):
                    break
                out[k] = _decode(v, z, where)
            else:
                return out
        if tag == "tuple" and isinstance(value, list):
            return tuple(_decode(v, z, where) for v in value)
        if tag == "float" and value in _FLOATS:
            return _FLOATS[value]
    raise ValueError(f"{where}: corrupt file, unexpected node {str(node)[:80]}")


def _weights(header, z, where: str) -> OrderedDict:
    weights = header.get("weights")
    if not isinstance(weights, list):
        raise ValueError(f"{where}: corrupt model file, no weights list")
    out = OrderedDict()
    for item in weights:
        if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)):
            raise ValueError(f"{where}: corrupt model file, bad weights entry {item!r}")
        out[item[0]] = _array(z, item[1], where)
    return out


def load(path: FileLike):
    """Read what :func:`save` wrote (``torch.load`` without pickle).

    Returns the saved structure: ndarrays for arrays and Tensors, Python numbers, str, bool and
    None for scalars, dicts (int keys restored as ints), lists and tuples. Given a model file
    (:func:`save_model`), returns the model's state dict (an OrderedDict of ndarrays).

    Raises FileNotFoundError for a missing path and ValueError for a file that myelin did not
    write. Only ``np.load(..., allow_pickle=False)`` touches the file.
    """
    header, z = _read(path)
    where = _describe(path)
    with z:
        if header["format"] == _FORMAT_MODEL:
            return _weights(header, z, where)
        if "tree" not in header:
            raise ValueError(f"{where}: corrupt file, no 'tree' in the header")
        return _decode(header["tree"], z, where)


# ---------------------------------------------------------------- models


def _not_storable(model, why: str) -> TypeError:
    return TypeError(
        f"myelin.save_model stores nn.Sequential / keras.Sequential models made of registered "
        f"layers; {why}. Save the weights instead with myelin.save(model.state_dict(), path) "
        f"and rebuild the model in code (or register the layer class with "
        f"myelin.serialization.register_layer)"
    )


def save_model(model: Module, path: FileLike) -> None:
    """Write a Sequential model, architecture and weights, to one ``.npz`` at ``path``
    (Keras' ``model.save``; reload with :func:`load_model`).

    The ``"__myelin__"`` entry holds ``{"format": "myelin.Sequential", "version": 1, "layers":
    [{"class": "Linear", "name": "0", "config": {...}}, ...], ...}``, each config from the
    layer's ``get_config()``; the weights are entries under their ``state_dict()`` keys, in
    their own dtype. A compiled model's ``_compile_config`` is stored too.

    Raises TypeError for a model that is not an ``nn.Sequential`` / ``keras.Sequential`` or
    holds a layer whose class is not registered (see :func:`register_layer`): save its
    ``state_dict()`` with :func:`save` instead.
    """
    classes = {cls: name for name, cls in _model_classes().items()}
    kind = classes.get(type(model))
    if kind is None:
        raise _not_storable(model, f"got a {type(model).__name__}")
    layers = []
    for name, layer in model._modules.items():
        cls_name = _NAMES.get(type(layer)) if layer is not None else None
        if cls_name is None:
            raise _not_storable(
                model, f"layer {name!r} is a {type(layer).__name__}, which is not registered"
            )
        config = layer.get_config()
        try:
            json.dumps(config, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"myelin.save_model: layer {name!r} ({cls_name}) has a config that is not "
                f"JSON-able ({exc}): {config!r}"
            ) from None
        layers.append({"class": cls_name, "name": name, "config": config})
    arrays: list = []
    used: set = set()
    weights = []
    for key, arr in model.state_dict().items():
        entry = _entry_name(key, used)
        weights.append([key, entry])
        arrays.append((entry, arr))
    header = {
        "format": _FORMAT_MODEL,
        "version": _VERSION,
        "class": kind,
        "layers": layers,
        "training": bool(model.training),
        "weights": weights,
    }
    compile_config = getattr(model, "_compile_config", None)
    if compile_config is not None:
        try:
            json.dumps(compile_config, allow_nan=False)
        except (TypeError, ValueError):
            compile_config = None  # not JSON-able: the model reloads uncompiled
        else:
            header["compile"] = compile_config
    _write(path, header, arrays)


def _build_layer(i: int, spec, where: str) -> Module:
    if not isinstance(spec, dict) or not isinstance(spec.get("class"), str):
        raise ValueError(f"{where}: corrupt model file, layer {i} is {spec!r}")
    cls_name = spec["class"]
    cls = _LAYERS.get(cls_name)
    if cls is None:
        raise ValueError(
            f"{where}: layer {i} has class {cls_name!r}, which load_model does not know "
            f"(known: {', '.join(sorted(_LAYERS))}; register others with "
            f"myelin.serialization.register_layer)"
        )
    config = spec.get("config", {})
    if not isinstance(config, dict):
        raise ValueError(f"{where}: corrupt model file, layer {i} has config {config!r}")
    try:
        return cls(**config)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"{where}: layer {i} ({cls_name}) cannot be rebuilt from config {config!r}: {exc}"
        ) from None


def _set_weights(model: Module, weights: OrderedDict, where: str) -> None:
    own = OrderedDict(model.named_parameters())
    if list(own) != list(weights):
        raise ValueError(
            f"{where}: the weights {list(weights)} do not match the parameters {list(own)} of "
            f"the rebuilt model"
        )
    owners = dict(model.named_modules())
    for key, arr in weights.items():
        p = own[key]
        if arr.shape != p._data.shape:
            raise ValueError(
                f"{where}: weight {key!r} has shape {arr.shape} but the rebuilt layer expects "
                f"{p._data.shape}"
            )
        if arr.dtype == p._data.dtype:
            np.copyto(p._data, arr)
        else:  # keep the saved dtype (a layer's config need not record it)
            mod_name, _, attr = key.rpartition(".")
            new = Parameter(np.ascontiguousarray(arr), requires_grad=p.requires_grad)
            setattr(owners[mod_name], attr, new)


def load_model(path: FileLike, compile: bool = True):
    """Rebuild a model written by :func:`save_model` (``keras.models.load_model``).

    Every layer is created from the registry of allowed classes (``myelin.nn``'s layers, the
    ``myelin.keras`` layers and those given to :func:`register_layer`) with its saved config,
    then gets its saved weights, in their saved dtype: the reloaded model computes bitwise the
    same outputs. Nothing named by the file is imported or executed.

    Parameters
    ----------
    path : str, os.PathLike or binary file
    compile : bool
        If the model was compiled with a named optimizer and loss when saved, compile it again
        the same way (fresh optimizer state).

    Raises FileNotFoundError for a missing path, ValueError for a file that is not a myelin
    model file or names a class that is not registered.
    """
    header, z = _read(path)
    where = _describe(path)
    with z:
        if header["format"] != _FORMAT_MODEL:
            raise ValueError(
                f"{where} holds an object written by myelin.save (e.g. a state dict), not a "
                f"model; read it with myelin.load(path) and pass it to model.load_state_dict"
            )
        weights = _weights(header, z, where)
    model_cls = _model_classes().get(header.get("class"))
    if model_cls is None:
        raise ValueError(f"{where}: unknown model class {header.get('class')!r}")
    specs = header.get("layers")
    if not isinstance(specs, list):
        raise ValueError(f"{where}: corrupt model file, no layer list")
    layers = [_build_layer(i, spec, where) for i, spec in enumerate(specs)]
    names = [spec.get("name", str(i)) for i, spec in enumerate(specs)]
    if not all(isinstance(n, str) and n for n in names) or len(set(names)) != len(names):
        raise ValueError(f"{where}: corrupt model file, layer names {names!r}")
    if model_cls is nn.Sequential:
        model = nn.Sequential(OrderedDict(zip(names, layers, strict=True)))
    elif names == [str(i) for i in range(len(layers))]:
        model = model_cls(layers)
    else:
        raise ValueError(f"{where}: corrupt model file, layer names {names!r}")
    _set_weights(model, weights, where)
    model.train(bool(header.get("training", True)))
    compile_config = header.get("compile")
    if compile and isinstance(compile_config, dict):
        _recompile(model, compile_config)
    return model


def _recompile(model: Module, config: dict) -> None:
    """Compile again from a stored ``_compile_config`` (``{"optimizer": {"name": ..., "lr": ...}
    or a Keras optimizer's config, "loss": name, "metrics": [names]}``) when it names both the
    optimizer and the loss; a custom loss or optimizer leaves the model uncompiled."""
    from myelin.keras import optimizers

    opt, loss, metrics = config.get("optimizer"), config.get("loss"), config.get("metrics")
    if not (isinstance(opt, dict) and isinstance(loss, str)):
        return
    options = {k: v for k, v in opt.items() if k != "name"}
    name = opt.get("name")
    keras_specs: dict[str, type] = {"adam": optimizers.Adam, "adamw": optimizers.AdamW}
    keras_specs.update(sgd=optimizers.SGD, rmsprop=optimizers.RMSprop)
    if name not in keras_specs:
        return
    try:
        if "learning_rate" in options:  # a myelin.keras.optimizers spec: its own get_config
            model.compile(keras_specs[name](**options), loss, list(metrics or ()))
        elif set(options) <= {"lr"}:  # given by name, as compile(optimizer="adam")
            model.compile(name, loss, list(metrics or ()))
            lr = options.get("lr")
            if isinstance(lr, (int, float)) and getattr(model, "optimizer", None) is not None:
                for group in model.optimizer.param_groups:
                    group["lr"] = lr
    except (TypeError, ValueError) as exc:
        warnings.warn(
            f"load_model: the model was compiled when saved but cannot be compiled again from "
            f"{config!r} ({exc}); it is returned uncompiled",
            RuntimeWarning,
            stacklevel=3,
        )
