"""Save and load without pickle: nestings of arrays and plain values, and Sequential models.

Both kinds of file are one NumPy ``.npz`` archive that plain NumPy reads with
``np.load(path, allow_pickle=False)``: every array is an entry of its own (a state dict's arrays
under their own keys, ``"0.weight"``), and one more entry, ``"__myelin__"``, holds a JSON
document as a uint8 array: the structure (dicts, lists, numbers, strings) with references to
the array entries, or a model's architecture. Nothing is ever unpickled, imported or executed
on load: a model file names its layers, and ``load_model`` builds them only from a registry of
allowed classes (:func:`register_layer`).

Saving is atomic and has no side effect beyond the file it writes: a temporary file beside it,
renamed over it; through a symbolic link to the file the link points to; an existing file's
mode kept, a new file's from the umask; anything but a regular file refused. Loading reads
only regular files (a FIFO never blocks it), checks a file's whole structure before it
allocates anything (zip members, .npy headers, sizes, references, the JSON header, and for a
model the weights' dtypes and the layers' sizes against the stored weights), and raises
ValueError naming the file and what is wrong for anything corrupted, truncated, foreign or
oversized.

Mirrors ``torch.save``/``torch.load`` (https://pytorch.org/docs/stable/generated/torch.save.html)
for state dicts and ``keras.models.load_model``
(https://keras.io/api/models/model_saving_apis/model_saving_and_loading/) for models.
"""

from __future__ import annotations

import ast
import contextlib
import errno
import json
import math
import numbers
import os
import secrets
import stat
import struct
import warnings
import zipfile
import zlib
from collections import OrderedDict
from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np

from myelin import nn
from myelin.nn.module import Module, Parameter
from myelin.tensor import Tensor, mark_modified

if TYPE_CHECKING:
    from typing import Any

    from myelin._typing import FileLike

__all__ = ["load", "load_model", "register_layer", "save", "save_model"]

_HEADER = "__myelin__"
_VERSION = 1
_FORMAT_OBJECT = "myelin.save"
_FORMAT_MODEL = "myelin.Sequential"
# save refuses structures nesting more than _MAX_DEPTH containers (dicts, lists, tuples); in
# JSON a dict takes three levels ({"dict": [[key, value]]}), and load refuses deeper headers.
_MAX_DEPTH = 100
_MAX_JSON_DEPTH = 3 * _MAX_DEPTH + 2

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
    wanted = wanted.replace("\x00", "?")  # zip member names end at a NUL
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
        if len(path) >= _MAX_DEPTH:
            raise ValueError(
                f"myelin.save: {_key_path(path[:4])}... nests more than {_MAX_DEPTH} "
                f"containers deep; myelin files hold at most that"
            )
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


def _json_depth(doc, limit: int) -> int:
    """How deep ``doc``'s dicts and lists nest (scalars add nothing), counted without recursion;
    stops early, returning a depth over ``limit``, once ``limit`` is passed."""
    deepest, stack = 0, [(doc, 1)]
    while stack:
        node, depth = stack.pop()
        children: Iterable
        if isinstance(node, dict):
            children = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > limit:
            return depth
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in children)
    return deepest


def _write(path, header: dict, arrays: list) -> None:
    """One .npz at exactly ``path`` (or into an open binary file): the JSON header, then the
    arrays, uncompressed, as ``np.savez`` lays them out."""
    if _json_depth(header, _MAX_JSON_DEPTH) > _MAX_JSON_DEPTH:
        raise ValueError(
            f"myelin.save: the structure nests more than {_MAX_JSON_DEPTH} levels deep in "
            f"JSON; load refuses files that deep"
        )
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
    target, st = _save_target(path)
    folder, name = os.path.split(target)
    # atomically: a temporary file beside the target, flushed to disk, then renamed over it, so
    # that a process killed mid-save leaves the old file whole (and at worst a stray temporary)
    fd, tmp = _create_temporary(folder, name, private=st is not None)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            if st is not None:
                _copy_owner_and_mode(f.fileno(), tmp, st)
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


def _file_kind(mode: int) -> str:
    for test, kind in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return kind
    return "not a regular file"


def _save_target(path) -> tuple[str, os.stat_result | None]:
    """The file a save to ``path`` replaces, as ``open(path, "w")`` would write it: ``path``
    itself, or the file a symbolic link there leads to; and that file's stat (None if it does
    not exist yet). Refuses anything but a regular file (a FIFO, a device, a directory)."""
    given = os.fsdecode(os.fspath(path))
    if not given:
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", given)
    if given.endswith(("/", os.sep)):  # realpath would drop the separator
        raise ValueError(f"myelin.save: {given!r} names a directory, not a regular file")
    target = os.path.realpath(given)  # through symbolic links, a dangling one included
    try:
        st = os.stat(target)
    except FileNotFoundError:
        if not os.path.isdir(os.path.dirname(target)):
            raise FileNotFoundError(errno.ENOENT, "No such directory", given) from None
        return target, None
    if not stat.S_ISREG(st.st_mode):
        raise ValueError(
            f"myelin.save: {given!r} is {_file_kind(st.st_mode)}, not a regular file; "
            f"myelin.save writes only regular files and will not replace it"
        )
    if not os.access(target, os.W_OK):  # as open(path, "w") would refuse it
        raise PermissionError(errno.EACCES, "Permission denied (the file is read-only)", given)
    return target, st


def _create_temporary(folder: str, name: str, private: bool) -> tuple[int, str]:
    """A new empty file ``.<name>.<random>.tmp`` in ``folder``: (descriptor, path). Private
    (0600) when it will take an existing file's mode; otherwise created with mode 0666 less
    the umask by the system itself, as ``open`` creates a new file."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = os.path.join(folder, f".{name[:200]}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(tmp, flags, 0o600 if private else 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "No usable temporary file name", folder)


def _copy_owner_and_mode(fd: int, tmp: str, st: os.stat_result) -> None:
    """Give the temporary file the owner (where allowed) and mode of the file it replaces."""
    own = os.fstat(fd)
    if (own.st_uid, own.st_gid) != (st.st_uid, st.st_gid) and hasattr(os, "fchown"):
        with contextlib.suppress(OSError):  # only root may give a file away
            os.fchown(fd, st.st_uid, st.st_gid)
    mode = stat.S_IMODE(st.st_mode)
    if hasattr(os, "fchmod"):
        os.fchmod(fd, mode)
    else:
        os.chmod(tmp, mode)


def save(obj: Any, path: FileLike) -> None:
    """Write ``obj`` to ``path`` as one ``.npz`` (``torch.save`` without pickle).

    Parameters
    ----------
    obj : state dict, optimizer state dict, or any nesting of dict/list/tuple
        Leaves may be ndarrays, myelin Tensors (their data is stored), Python or NumPy numbers
        (nan and inf included), str, bool and None. Dict keys are str or int (an optimizer
        state dict's parameter indices come back as ints). At most 100 containers deep.
    path : str, os.PathLike or binary file
        Written exactly there: no ``.npz`` suffix is added.

    Notes
    -----
    ``np.load(path, allow_pickle=False)`` reads the result: each array is an entry named by its
    key path (``"0.weight"`` for a state dict, ``"state/0/exp_avg"`` deeper down), and the
    ``"__myelin__"`` entry holds the structure as JSON in a uint8 array. Raises TypeError naming
    the key path of anything else (objects, object arrays, other key types), ValueError for a
    structure that contains itself or nests too deeply.

    The save is atomic: the file is written beside the target under a temporary name, flushed
    to disk and renamed over the target, so a crash leaves either the old file or the new one.
    It writes where ``open(path, "w")`` would: through a symbolic link to the file it points
    to (the link stays a link); an existing file keeps its mode (and owner, where the system
    allows) and a new one gets the umask's mode. It replaces only a regular file: a directory,
    FIFO, device or socket at ``path`` raises ValueError naming it, and a read-only file
    PermissionError. A file with several hard links is replaced under this name only (the
    other names keep the old contents), as with any atomic save.
    """
    arrays: list = []
    tree = _encode(obj, (), arrays, set(), set())
    _write(path, {"format": _FORMAT_OBJECT, "version": _VERSION, "tree": tree}, arrays)


# ---------------------------------------------------------------- reading

_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")  # a local file header; an empty archive
# What a corrupt, truncated or foreign member can raise from zipfile, zlib, struct, ast or
# numpy's dtype parser; each becomes a ValueError naming the file.
_CORRUPT = (
    zipfile.BadZipFile,
    zlib.error,
    struct.error,
    EOFError,
    OSError,
    ValueError,
    TypeError,
    SyntaxError,
    OverflowError,
    NotImplementedError,
    RuntimeError,  # RecursionError, and zipfile's "is encrypted"
    KeyError,
    IndexError,
)
_MAX_NPY_HEADER = 10_000  # numpy's own limit on a .npy header's length
# Compressed members may inflate to at most this many times their compressed size (+ the
# allowance below): myelin writes uncompressed files, real weights compress ~1.1:1, and a
# member that inflates beyond that is a zip bomb or lies about its size.
_INFLATE_RATIO = 100
_INFLATE_ALLOWANCE = 64 * 2**20
_CHUNK = 16 * 2**20  # array data is read in pieces of this many bytes
_WEIGHT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _describe(path) -> str:
    return repr(os.fspath(path)) if isinstance(path, (str, bytes, os.PathLike)) else "the file"


def _open_regular(path):
    """``path`` opened for binary reading, refusing anything but a regular file before it
    could block or read a device (a FIFO with no writer would block ``open`` forever)."""
    name = os.fspath(path)
    try:
        st = os.stat(name)
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, "No such file", name) from None
    _check_regular(st, name)
    # non-blocking, in case a FIFO took the file's place since the stat: open would block
    fd = os.open(name, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    try:
        _check_regular(os.fstat(fd), name)
        if hasattr(os, "O_NONBLOCK"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _check_regular(st: os.stat_result, name) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise ValueError(
            f"{name!r} is {_file_kind(st.st_mode)}, not a myelin file; myelin reads only "
            f"regular files"
        )


class _Npy:
    """What a member's .npy header says: shape, Fortran order, dtype, and where its data
    starts in the member."""

    __slots__ = ("dtype", "fortran", "nbytes", "offset", "shape")

    def __init__(self, shape: tuple, fortran: bool, dtype: np.dtype, offset: int) -> None:
        self.shape, self.fortran, self.dtype, self.offset = shape, fortran, dtype, offset
        self.nbytes = math.prod(shape) * dtype.itemsize


def _parse_npy_header(fp) -> _Npy:
    """Read and check a .npy header (versions 1.0 to 3.0) from ``fp``, without numpy's
    private reader; raises ValueError saying what is wrong."""
    magic = fp.read(8)
    if len(magic) < 8 or magic[:6] != _NPY_MAGIC:
        raise ValueError("it is not a .npy array (no .npy magic string)")
    version = (magic[6], magic[7])
    if version == (1, 0):
        size_format, encoding = "<H", "latin1"
    elif version in ((2, 0), (3, 0)):
        size_format, encoding = "<I", "latin1" if version == (2, 0) else "utf8"
    else:
        raise ValueError(f"its .npy format version {version[0]}.{version[1]} is unknown")
    raw_size = fp.read(struct.calcsize(size_format))
    if len(raw_size) != struct.calcsize(size_format):
        raise ValueError("its .npy header is truncated")
    (size,) = struct.unpack(size_format, raw_size)
    if size > _MAX_NPY_HEADER:
        raise ValueError(f"its .npy header claims {size} bytes (at most {_MAX_NPY_HEADER})")
    text = fp.read(size)
    if len(text) != size:
        raise ValueError("its .npy header is truncated")
    header = ast.literal_eval(text.decode(encoding))
    if not isinstance(header, dict) or set(header) != {"descr", "fortran_order", "shape"}:
        raise ValueError(f"its .npy header is not a valid header: {str(header)[:200]}")
    shape, fortran = header["shape"], header["fortran_order"]
    if not (isinstance(shape, tuple) and all(type(n) is int and n >= 0 for n in shape)):
        raise ValueError(f"its .npy header has an invalid shape {str(shape)[:200]}")
    if not isinstance(fortran, bool):
        raise ValueError(f"its .npy header has an invalid fortran_order {fortran!r}")
    dtype = np.lib.format.descr_to_dtype(header["descr"])
    if dtype.hasobject:
        raise ValueError(
            f"its dtype {dtype} holds Python objects, which only pickle can read; myelin "
            f"never unpickles"
        )
    if dtype.subdtype is not None:
        raise ValueError(f"its dtype {dtype} is a sub-array dtype, which .npy files never hold")
    if dtype.itemsize == 0 and dtype.fields is None:  # numpy would make it 1 byte wide
        raise ValueError(f"its dtype {dtype} has no size, which .npy files never hold")
    return _Npy(shape, fortran, dtype, len(magic) + len(raw_size) + size)


class _Archive:
    """A myelin file opened for reading. Opening checks the zip structure (every member a
    stored or deflated, unencrypted ``.npy`` inside the file, sizes that add up); ``header``,
    ``check`` and ``read`` then read the JSON header, check a member's .npy header and read an
    array. Every failure is a ValueError naming the file, raised from the underlying error."""

    def __init__(self, path) -> None:
        self.where = _describe(path)
        self._opened = isinstance(path, (str, bytes, os.PathLike))
        self._file = _open_regular(path) if self._opened else path
        self._zip: zipfile.ZipFile | None = None
        try:
            self._members = self._index()
        except BaseException:
            self.close()
            raise
        self._npy: dict[str, _Npy] = {}
        self._claimed: set[str] = set()

    def __enter__(self) -> _Archive:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _open_zip(self) -> zipfile.ZipFile:
        if self._zip is None:
            raise ValueError(f"{self.where} is closed")
        return self._zip

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()
        if self._opened:
            self._file.close()

    def _not_myelin(self, why: str) -> ValueError:
        return ValueError(
            f"{self.where} is not a myelin file (myelin.save / model.save write .npz archives; "
            f"this is not one: {why})"
        )

    def _index(self) -> dict[str, zipfile.ZipInfo]:
        f = self._file
        try:
            start = f.tell()
            size = f.seek(0, os.SEEK_END)  # zipfile's offsets count from the file's start
            f.seek(start)
            magic = f.read(len(_NPY_MAGIC))
            f.seek(start)
        except _CORRUPT as exc:
            raise ValueError(f"{self.where} cannot be read as a file: {exc}") from exc
        if magic == _NPY_MAGIC:
            raise ValueError(
                f"{self.where} is a single NumPy array (.npy), not a myelin file; read it with "
                f"np.load"
            )
        if not magic.startswith(_ZIP_MAGICS):
            raise self._not_myelin("it does not start as a zip archive")
        try:
            zf = self._zip = zipfile.ZipFile(f)
            infos = zf.infolist()
        except _CORRUPT as exc:
            raise self._not_myelin(f"a broken zip archive: {exc}") from exc
        members: dict[str, zipfile.ZipInfo] = {}
        inflated = deflated = 0
        for info in infos:
            name = info.filename
            what = f"{self.where}: corrupt file, the member {name!r}"
            if not name.endswith(".npy"):
                raise ValueError(f"{what} is not a .npy array (myelin files hold only those)")
            if name[:-4] in members:
                raise ValueError(f"{what} appears twice")
            if info.flag_bits & 0x1:
                raise ValueError(f"{what} is encrypted")
            if info.compress_type == zipfile.ZIP_DEFLATED:
                inflated += info.file_size
                deflated += info.compress_size
            elif info.compress_type != zipfile.ZIP_STORED:
                raise ValueError(
                    f"{what} is compressed with zip method {info.compress_type}; myelin reads "
                    f"stored and deflated members only"
                )
            elif info.file_size != info.compress_size:
                raise ValueError(
                    f"{what} is stored uncompressed but claims {info.file_size} bytes in "
                    f"{info.compress_size}"
                )
            if info.header_offset + info.compress_size > size:
                raise ValueError(
                    f"{what} claims {info.compress_size} bytes at offset {info.header_offset}, "
                    f"past the end of the {size}-byte file (truncated?)"
                )
            members[name[:-4]] = info
        if inflated > _INFLATE_ALLOWANCE + _INFLATE_RATIO * deflated:
            raise ValueError(
                f"{self.where}: its compressed members claim to inflate from {deflated} to "
                f"{inflated} bytes, more than myelin accepts ({_INFLATE_RATIO} times the "
                f"compressed size + {_INFLATE_ALLOWANCE >> 20} MiB): a zip bomb or corrupt "
                f"sizes (myelin writes uncompressed files)"
            )
        return members

    def header(self) -> dict:
        """The JSON header, parsed and depth-checked, with a known format and version."""
        if _HEADER not in self._members:
            raise ValueError(
                f"{self.where} is a NumPy .npz archive that myelin did not write (it has no "
                f"{_HEADER!r} entry); read it with np.load, e.g. dict(np.load(path)) for a "
                f"state dict of arrays"
            )
        npy = self.check(_HEADER)
        if npy.dtype != np.uint8 or len(npy.shape) != 1:
            raise ValueError(f"{self.where}: the {_HEADER!r} entry is not a uint8 vector")
        raw = self.read(_HEADER)
        try:
            header = json.loads(
                raw.tobytes().decode("utf-8"),
                parse_float=_finite_float,
                parse_constant=_no_constant,
            )
        except RecursionError as exc:
            raise ValueError(
                f"{self.where}: the {_HEADER!r} entry nests too deeply to read"
            ) from exc
        except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, numbers out of range
            raise ValueError(
                f"{self.where}: the {_HEADER!r} entry is not valid JSON ({exc})"
            ) from exc
        if _json_depth(header, _MAX_JSON_DEPTH) > _MAX_JSON_DEPTH:
            raise ValueError(
                f"{self.where}: the {_HEADER!r} entry nests more than {_MAX_JSON_DEPTH} "
                f"levels deep (myelin.save writes at most that)"
            )
        if not isinstance(header, dict) or header.get("format") not in (
            _FORMAT_OBJECT,
            _FORMAT_MODEL,
        ):
            raise ValueError(
                f"{self.where}: unknown myelin file format {str(_get(header, 'format'))[:80]}"
            )
        version = header.get("version")
        if not isinstance(version, int) or isinstance(version, bool) or version > _VERSION:
            raise ValueError(
                f"{self.where}: file version {str(version)[:80]} is not supported (this "
                f"myelin reads versions up to {_VERSION}; a newer myelin wrote it?)"
            )
        return header

    def _error(self, name, why: str) -> ValueError:
        return ValueError(f"{self.where}: cannot read the array entry {name!r}: {why}")

    def check(self, name) -> _Npy:
        """The checked .npy header of the member ``name`` (read once): its data size must be
        what the member holds. Reads no array data."""
        npy = self._npy.get(name) if isinstance(name, str) else None
        if npy is not None:
            return npy
        info = self._members.get(name) if isinstance(name, str) else None
        if info is None:
            raise ValueError(f"{self.where}: corrupt file, the array entry {name!r} does not exist")
        try:
            with self._open_zip().open(info) as fp:
                npy = _parse_npy_header(fp)
        except _CORRUPT as exc:
            raise self._error(name, str(exc)) from exc
        if npy.offset + npy.nbytes != info.file_size:
            raise self._error(
                name,
                f"its .npy header claims shape {npy.shape} of {npy.dtype} ({npy.nbytes} bytes) "
                f"but the member holds {info.file_size - npy.offset} bytes of data",
            )
        self._npy[name] = npy
        return npy

    def claim(self, name) -> _Npy:
        """``check(name)`` for an array the structure refers to: each array entry may be
        referred to once (myelin.save writes one entry per array)."""
        if name == _HEADER:
            raise ValueError(f"{self.where}: corrupt file, the array entry {name!r} does not exist")
        npy = self.check(name)
        if name in self._claimed:
            raise ValueError(
                f"{self.where}: corrupt file, the array entry {name!r} is referred to more "
                f"than once"
            )
        self._claimed.add(name)
        return npy

    def read(self, name) -> np.ndarray:
        """The array of the member ``name`` (checked first), in native byte order."""
        npy = self.check(name)
        count = math.prod(npy.shape)
        try:
            out = np.empty(count, npy.dtype)
            if out.nbytes != npy.nbytes:
                raise ValueError(f"its dtype {npy.dtype} does not have a fixed size")
            with self._open_zip().open(self._members[name]) as fp:
                fp.read(npy.offset)
                if npy.nbytes:
                    view = memoryview(out.view(np.uint8))  # type: ignore[arg-type]
                    done = 0
                    while done < npy.nbytes:
                        n = fp.readinto(view[done : done + _CHUNK])  # type: ignore[attr-defined]
                        if not n:
                            raise EOFError("the member's data ends early")
                        done += n
            out = out.reshape(npy.shape[::-1]).T if npy.fortran else out.reshape(npy.shape)
        except _CORRUPT as exc:
            raise self._error(name, str(exc)) from exc
        if not out.dtype.isnative:  # big-endian data on a little-endian machine, or back
            if out.dtype.fields is None:
                out = out.byteswap(inplace=True).view(out.dtype.newbyteorder())
            else:
                out = out.astype(out.dtype.newbyteorder("="))
        return out


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:40]} is out of the range of a float")
    return value


def _no_constant(text: str):
    raise ValueError(f"{text} is not a JSON number (myelin writes non-finite floats as tags)")


def _get(header, key):
    return header.get(key) if isinstance(header, dict) else None


_FLOATS = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def _decode(node, array, where: str):
    """The structure a tree node stands for, each ``{"array": name}`` given by ``array(name)``
    (the header's depth is checked, so the recursion is bounded)."""
    if node is None or isinstance(node, (bool, int, float, str)):
        return node
    if isinstance(node, list):
        return [_decode(v, array, where) for v in node]
    if isinstance(node, dict) and len(node) == 1:
        ((tag, value),) = node.items()
        if tag == "array":
            return array(value)
        if tag == "dict" and isinstance(value, list):
            out = {}
            for item in value:
                if not (isinstance(item, list) and len(item) == 2):
                    break
                k, v = item
                if isinstance(k, bool) or not isinstance(k, (str, int)):
                    break
                out[k] = _decode(v, array, where)
            else:
                return out
        if tag == "tuple" and isinstance(value, list):
            return tuple(_decode(v, array, where) for v in value)
        if tag == "float" and value in _FLOATS:
            return _FLOATS[value]
    raise ValueError(f"{where}: corrupt file, unexpected node {str(node)[:80]}")


def _weight_entries(header, archive: _Archive) -> list:
    """A model file's ``[key, entry]`` weight list, checked: unique keys, existing entries of
    float32/float64 arrays, each referred to once. Reads no array data."""
    where = archive.where
    weights = header.get("weights")
    if not isinstance(weights, list):
        raise ValueError(f"{where}: corrupt model file, no weights list")
    keys = set()
    for item in weights:
        if not (
            isinstance(item, list)
            and len(item) == 2
            and isinstance(item[0], str)
            and item[0] not in keys
        ):
            raise ValueError(f"{where}: corrupt model file, bad weights entry {str(item)[:80]}")
        keys.add(item[0])
        npy = archive.claim(item[1])
        if npy.dtype.newbyteorder("=") not in _WEIGHT_DTYPES:
            raise ValueError(
                f"{where}: weight {item[0]!r} has dtype {npy.dtype}; model weights must be "
                f"float32 or float64 (convert them before saving)"
            )
    return weights


def load(path: FileLike):
    """Read what :func:`save` wrote (``torch.load`` without pickle).

    Returns the saved structure: ndarrays for arrays and Tensors, Python numbers, str, bool and
    None for scalars, dicts (int keys restored as ints), lists and tuples. Given a model file
    (:func:`save_model`), returns the model's state dict (an OrderedDict of ndarrays). Arrays
    come back in the machine's byte order (a file written on a big-endian machine, or with
    big-endian arrays, reads as the same numbers).

    Raises FileNotFoundError for a missing path, and ValueError naming the file and what is
    wrong, raised from the underlying error, for anything that is not a whole, well-formed
    myelin file: a directory, FIFO or device (refused before it is opened, so a FIFO never
    blocks), a foreign, truncated or corrupted file, a member that is not a ``.npy`` array,
    compressed beyond what myelin accepts, encrypted or holding Python objects, a JSON header
    that is malformed or nests too deeply. The whole structure (zip members, .npy headers,
    sizes, references) is checked before any array is allocated, so no file makes ``load``
    allocate arrays larger than what it holds. Nothing is unpickled: only ``zipfile`` and a
    .npy header parser of myelin's own touch the file.
    """
    with _Archive(path) as archive:
        header = archive.header()
        if header["format"] == _FORMAT_MODEL:
            weights = _weight_entries(header, archive)
            return OrderedDict((key, archive.read(entry)) for key, entry in weights)
        if "tree" not in header:
            raise ValueError(f"{archive.where}: corrupt file, no 'tree' in the header")
        _decode(header["tree"], archive.claim, archive.where)  # the whole structure, first
        return _decode(header["tree"], archive.read, archive.where)


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


class _LayerSpec:
    """One layer of a model file: its index, name, registered class (and the name it is
    registered under) and config, checked for types but not yet built."""

    __slots__ = ("cls", "cls_name", "config", "index", "name")

    def __init__(self, index: int, name: str, cls_name: str, cls: type, config: dict) -> None:
        self.index, self.name, self.cls_name, self.cls, self.config = (
            index,
            name,
            cls_name,
            cls,
            config,
        )

    def rebuild_error(self, where: str, exc: BaseException) -> ValueError:
        return ValueError(
            f"{where}: layer {self.index} ({self.cls_name}) cannot be rebuilt from config "
            f"{str(self.config)[:200]}: {exc}"
        )


def _model_spec(header: dict, where: str) -> tuple[type, list[_LayerSpec]]:
    """The model class and the layers a model file's header names, checked (classes
    registered, configs dicts, names unique, training flag and compile config well typed)."""
    kind = header.get("class")
    model_cls = _model_classes().get(kind) if isinstance(kind, str) else None
    if model_cls is None:
        raise ValueError(f"{where}: unknown model class {str(kind)[:80]}")
    specs = header.get("layers")
    if not isinstance(specs, list):
        raise ValueError(f"{where}: corrupt model file, no layer list")
    layers = []
    for i, spec in enumerate(specs):
        if not isinstance(spec, dict) or not isinstance(spec.get("class"), str):
            raise ValueError(f"{where}: corrupt model file, layer {i} is {str(spec)[:80]}")
        cls_name = spec["class"]
        cls = _LAYERS.get(cls_name)
        if cls is None:
            raise ValueError(
                f"{where}: layer {i} has class {cls_name[:80]!r}, which load_model does not "
                f"know (known: {', '.join(sorted(_LAYERS))}; register others with "
                f"myelin.serialization.register_layer)"
            )
        config = spec.get("config", {})
        if not isinstance(config, dict):
            raise ValueError(
                f"{where}: corrupt model file, layer {i} has config {str(config)[:80]}"
            )
        name = spec.get("name", str(i))
        if not isinstance(name, str) or not name:
            raise ValueError(f"{where}: corrupt model file, layer {i} is named {name!r}")
        layers.append(_LayerSpec(i, name, cls_name, cls, config))
    names = [layer.name for layer in layers]
    if len(set(names)) != len(names) or (
        model_cls is not nn.Sequential and names != [str(i) for i in range(len(layers))]
    ):
        raise ValueError(f"{where}: corrupt model file, layer names {str(names)[:200]}")
    if not isinstance(header.get("training", True), bool):
        raise ValueError(f"{where}: corrupt model file, training is {header['training']!r}")
    if not isinstance(header.get("compile"), (dict, type(None))):
        raise ValueError(f"{where}: corrupt model file, compile is {str(header['compile'])[:80]}")
    return model_cls, layers


def _check_sizes(layers: list[_LayerSpec], stored: dict[str, tuple], where: str) -> None:
    """Check each layer's config against the weight shapes the file stores, before any layer
    allocates its parameters: a config cannot make load_model allocate more than the file
    holds. Layers join through a classmethod ``_parameter_shapes(**config)`` giving the
    shape of each parameter that ``cls(**config)`` creates (without creating it)."""
    for layer in layers:
        shapes_of = getattr(layer.cls, "_parameter_shapes", None)
        if shapes_of is None:
            continue  # parameter-free, or a registered class that does not say
        try:
            expected = {
                f"{layer.name}.{k}": tuple(shape) for k, shape in shapes_of(**layer.config).items()
            }
        except (TypeError, ValueError, OverflowError) as exc:
            raise layer.rebuild_error(where, exc) from exc
        prefix = layer.name + "."
        own = {
            k: shape
            for k, shape in stored.items()
            if k.startswith(prefix) and "." not in k[len(prefix) :]
        }
        if set(own) != set(expected):
            raise ValueError(
                f"{where}: the weights {sorted(own)} in the file do not match the parameters "
                f"{sorted(expected)} of layer {layer.index} ({layer.cls_name}) built from its "
                f"config {str(layer.config)[:200]}"
            )
        for key, shape in expected.items():
            if own[key] != shape:
                raise ValueError(
                    f"{where}: weight {key!r} has shape {own[key]} in the file but layer "
                    f"{layer.index} ({layer.cls_name}) built from its config "
                    f"{str(layer.config)[:200]} expects {shape}"
                )


def _build_layer(layer: _LayerSpec, where: str) -> Module:
    try:
        return layer.cls(**layer.config)
    except (TypeError, ValueError, OverflowError) as exc:
        raise layer.rebuild_error(where, exc) from exc


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
            mark_modified(p)  # written in place: a graph recorded before the load must not use it
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

    Notes
    -----
    Raises FileNotFoundError for a missing path, and ValueError naming the file and what is
    wrong for a file that is not a whole, well-formed myelin model file (as :func:`load`
    does), names a class that is not registered, holds a layer config its class refuses
    (checked when the layer is built, as every layer validates its arguments),
    or weights that are not float32/float64 or do not match the layers' configs. The file's
    structure, the weights' dtypes and shapes and the built-in layers' sizes are all checked
    before any array or layer is allocated. Weights stored big-endian load as the same numbers
    in native byte order.
    """
    with _Archive(path) as archive:
        where = archive.where
        header = archive.header()
        if header["format"] != _FORMAT_MODEL:
            raise ValueError(
                f"{where} holds an object written by myelin.save (e.g. a state dict), not a "
                f"model; read it with myelin.load(path) and pass it to model.load_state_dict"
            )
        model_cls, layers = _model_spec(header, where)
        entries = _weight_entries(header, archive)
        _check_sizes(layers, {key: archive.check(entry).shape for key, entry in entries}, where)
        weights = OrderedDict((key, archive.read(entry)) for key, entry in entries)
    built = OrderedDict((layer.name, _build_layer(layer, where)) for layer in layers)
    if model_cls is nn.Sequential:
        model = nn.Sequential(built)
    else:  # appended as they were saved: nothing builds a layer the file did not build
        model = model_cls()
        for m in built.values():
            model.append(m)
    _set_weights(model, weights, where)
    model.train(header.get("training", True))
    compile_config = header.get("compile")
    if compile and compile_config is not None:
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
