"""Files and configs (issue 17, findings 7, 10 and 11): save's side effects on the target, load's
hangs, and every corrupted, truncated, foreign or oversized file refused with a ValueError naming
it before anything is allocated; layer constructors that check their arguments."""

import io
import json
import math
import os
import stat
import struct
import subprocess
import sys
import time
import tracemalloc
import zipfile

import numpy as np
import pytest

import myelin
from myelin import keras, nn, serialization

# ---------------------------------------------------------------- crafting files by hand


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, arr, allow_pickle=True)
    return buf.getvalue()


def _npy_header(shape, descr: str, fortran: bool = False) -> bytes:
    """A .npy header alone, claiming ``shape`` of ``descr`` (the data is up to the caller)."""
    buf = io.BytesIO()
    header = {"shape": tuple(shape), "fortran_order": fortran, "descr": descr}
    np.lib.format.write_array_header_1_0(buf, header)
    return buf.getvalue()


def _text(doc) -> bytes:
    text = doc if isinstance(doc, str) else json.dumps(doc)
    return _npy(np.frombuffer(text.encode(), dtype=np.uint8))


def _zip(path, members: dict, method=zipfile.ZIP_STORED) -> None:
    """A zip of raw members (name -> bytes), exactly as given."""
    with zipfile.ZipFile(path, "w", compression=method) as zf:
        for name, data in members.items():
            zf.writestr(name, data)


def _craft(path, doc, method=zipfile.ZIP_STORED, **arrays) -> None:
    """A myelin-layout file: the JSON header ``doc`` (a dict, or raw JSON text) and members
    (arrays, or raw .npy bytes) under ``<name>.npy``."""
    members = {"__myelin__.npy": _text(doc)}
    for name, value in arrays.items():
        members[name + ".npy"] = value if isinstance(value, bytes) else _npy(value)
    _zip(path, members, method)


def _tree(tree) -> dict:
    return {"format": "myelin.save", "version": 1, "tree": tree}


def _model(layers, weights=(), kind="nn.Sequential") -> dict:
    return {
        "format": "myelin.Sequential",
        "version": 1,
        "class": kind,
        "layers": layers,
        "weights": [list(w) for w in weights],
    }


def _linear(name="0", **config) -> dict:
    return {"class": "Linear", "name": name, "config": config}


def _raises_naming(path, call=myelin.load, match=None) -> ValueError:
    with pytest.raises(ValueError, match=match) as info:
        call(path)
    if isinstance(path, (str, os.PathLike)):
        assert os.path.basename(path) in str(info.value)
    return info.value


def _peak_bytes(fn) -> int:
    """The peak of traced memory (NumPy's arrays included) while ``fn`` runs."""
    tracemalloc.start()
    try:
        fn()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


# ---------------------------------------------------------------- finding 7: save's side effects


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_save_keeps_an_existing_files_mode(tmp_path, mode):
    path = tmp_path / "weights.npz"
    path.write_bytes(b"old")
    os.chmod(path, mode)
    myelin.save({"w": np.ones(3)}, path)
    assert _mode(path) == mode
    serialization.save_model(nn.Sequential(nn.Linear(2, 2)), path)
    assert _mode(path) == mode
    assert list(myelin.load(path)) == ["0.weight", "0.bias"]


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o077, 0o002])
def test_a_new_file_gets_the_umasks_mode(tmp_path, umask):
    old = os.umask(umask)
    try:
        myelin.save({"w": np.ones(3)}, tmp_path / "new.npz")
        with open(tmp_path / "reference", "wb"):
            pass
    finally:
        os.umask(old)
    assert _mode(tmp_path / "new.npz") == 0o666 & ~umask == _mode(tmp_path / "reference")


def test_save_writes_through_a_symlink(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "links").mkdir()
    target = tmp_path / "real" / "weights.npz"
    myelin.save({"v": 1}, target)
    os.chmod(target, 0o640)
    link = tmp_path / "links" / "current.npz"
    os.symlink(os.path.join("..", "real", "weights.npz"), link)
    myelin.save({"v": 2}, link)
    assert os.path.islink(link) and os.readlink(link) == os.path.join("..", "real", "weights.npz")
    assert myelin.load(target) == {"v": 2} and _mode(target) == 0o640
    # a chain of links, and a dangling one (it creates the file it points to, as open does)
    os.symlink(link, tmp_path / "links" / "chain.npz")
    myelin.save({"v": 3}, tmp_path / "links" / "chain.npz")
    assert myelin.load(target) == {"v": 3} and os.path.islink(tmp_path / "links" / "chain.npz")
    os.symlink("fresh.npz", tmp_path / "dangling.npz")
    myelin.save({"v": 4}, tmp_path / "dangling.npz")
    assert os.path.islink(tmp_path / "dangling.npz")
    assert myelin.load(tmp_path / "fresh.npz") == {"v": 4}
    # the temporary files went into the real file's folder, and none is left
    assert sorted(os.listdir(tmp_path / "real")) == ["weights.npz"]
    assert sorted(os.listdir(tmp_path / "links")) == ["chain.npz", "current.npz"]


def _special(tmp_path, kind: str):
    path = tmp_path / kind
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    elif kind == "device":
        try:  # a node like /dev/null, inside the test's own folder
            os.mknod(path, 0o600 | stat.S_IFCHR, os.makedev(1, 3))
        except (PermissionError, AttributeError):
            pytest.skip("creating a device node needs root")
    return path


_KIND_WORDS = {"fifo": "FIFO", "directory": "directory", "device": "character device"}


@pytest.mark.parametrize("kind", ["fifo", "directory", "device"])
@pytest.mark.parametrize("via_link", [False, True])
def test_save_replaces_only_a_regular_file(tmp_path, kind, via_link):
    special = _special(tmp_path, kind)
    before = os.stat(special)
    path = special
    if via_link:
        path = tmp_path / "link"
        os.symlink(special, path)
    for write in (
        lambda: myelin.save({"w": np.ones(2)}, path),
        lambda: serialization.save_model(nn.Sequential(nn.Linear(2, 2)), path),
    ):
        with pytest.raises(ValueError, match=_KIND_WORDS[kind]) as info:
            write()
        assert os.path.basename(path) in str(info.value)
    after = os.stat(special)
    assert (after.st_mode, after.st_ino, after.st_rdev) == (
        before.st_mode,
        before.st_ino,
        before.st_rdev,
    )
    assert os.path.islink(path) == via_link
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]


def test_save_to_odd_names_fails_as_open_would(tmp_path):
    with pytest.raises(FileNotFoundError):
        myelin.save({"v": 1}, "")
    with pytest.raises(FileNotFoundError, match="missing"):
        myelin.save({"v": 1}, tmp_path / "missing" / "weights.npz")
    with pytest.raises(ValueError, match="names a directory"):
        myelin.save({"v": 1}, str(tmp_path / "new") + os.sep)
    assert os.listdir(tmp_path) == []


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root may write any file"
)
def test_save_refuses_a_read_only_file_as_open_would(tmp_path):
    path = tmp_path / "frozen.npz"
    myelin.save({"v": 1}, path)
    os.chmod(path, 0o444)
    with pytest.raises(PermissionError):
        myelin.save({"v": 2}, path)
    assert myelin.load(path) == {"v": 1}


# ---------------------------------------------------------------- finding 10: hangs

_LOAD_IN_CHILD = """
import sys
import myelin
try:
    getattr(myelin, sys.argv[2])(sys.argv[1])
except ValueError as exc:
    print("ValueError:", exc)
"""


@pytest.mark.parametrize("loader", ["load", "load_model"])
def test_load_of_a_fifo_does_not_block(tmp_path, loader):
    """A FIFO with no writer: refused before it is opened (open would block forever)."""
    fifo = tmp_path / "pipe.npz"
    os.mkfifo(fifo)
    try:
        done = subprocess.run(
            [sys.executable, "-c", _LOAD_IN_CHILD, str(fifo), loader],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"myelin.{loader} blocked on a FIFO with no writer")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ValueError:") and "pipe.npz" in done.stdout
    assert "FIFO" in done.stdout


@pytest.mark.parametrize("kind", ["directory", "device"])
def test_load_refuses_directories_and_devices(tmp_path, kind):
    path = _special(tmp_path, kind)
    for loader in (myelin.load, myelin.load_model):
        _raises_naming(path, loader, _KIND_WORDS[kind])


def _best_times(*fns, repeat=3) -> list:
    best = [math.inf] * len(fns)
    for _ in range(repeat):  # interleaved, so that a slow spell of the machine hits both
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - start)
    return best


def _np_load_all(path) -> dict:
    with np.load(path, allow_pickle=False) as z:
        return dict(z)


@pytest.mark.slow
def test_a_20000_array_state_dict_loads_about_as_fast_as_numpy(tmp_path):
    """Member lookup is a dict: load's time grows linearly with the number of arrays, like
    dict(np.load(path))'s (a list lookup made it 3 times slower at 20,000 arrays)."""
    rng = np.random.default_rng(0)
    sd = {f"layers.{i}.weight": rng.standard_normal(4).astype(np.float32) for i in range(20000)}
    path = tmp_path / "big.npz"
    myelin.save(sd, path)
    back = myelin.load(path)
    assert list(back) == list(sd) and all(np.array_equal(back[k], sd[k]) for k in sd)
    t_numpy, t_myelin = _best_times(lambda: _np_load_all(path), lambda: myelin.load(path))
    assert t_myelin < 2 * t_numpy, (t_myelin, t_numpy)


@pytest.mark.slow
def test_many_references_are_refused_quickly(tmp_path):
    """300,000 references to 20,000 arrays: each array entry may be referred to once (save
    writes one entry per array), so the file is refused at the first repeat, not read
    300,000 times (minutes, and 15 times the memory the file holds)."""
    n = 20000
    members = {f"a{i}": _npy(np.full(2, i, np.float32)) for i in range(n)}
    refs = [{"array": f"a{i % n}"} for i in range(300000)]
    path = tmp_path / "refs.npz"
    _craft(path, _tree(refs), **members)
    (t_numpy,) = _best_times(lambda: _np_load_all(path), repeat=1)
    start = time.perf_counter()
    _raises_naming(path, match="'a0' is referred to more than once")
    assert time.perf_counter() - start < 3 * t_numpy + 1.0
    # referred to once each, the same arrays load
    _craft(path, _tree(refs[:n]), **members)
    back = myelin.load(path)
    assert len(back) == n and back[-1].tolist() == [n - 1, n - 1]


# ---------------------------------------------------------------- finding 11: corrupt members


def _central_entry(data: bytes, name: bytes) -> int:
    """The offset of ``name``'s central directory entry in a zip's bytes."""
    at = 0
    while True:
        at = data.index(b"PK\x01\x02", at)
        (name_len,) = struct.unpack_from("<H", data, at + 28)
        if data[at + 46 : at + 46 + name_len] == name:
            return at
        at += 4


def _local_data(data: bytes, header_offset: int) -> int:
    name_len, extra_len = struct.unpack_from("<HH", data, header_offset + 26)
    return header_offset + 30 + name_len + extra_len


def _poke(data: bytearray, at: int, fmt: str, value) -> None:
    struct.pack_into(fmt, data, at, value)


def _bad_crc(data, info, cd):
    data[_local_data(data, info.header_offset) + info.file_size - 1] ^= 0x55


def _encrypted(data, info, cd):
    _poke(data, cd + 8, "<H", struct.unpack_from("<H", data, cd + 8)[0] | 1)


def _unknown_method(data, info, cd):
    _poke(data, cd + 10, "<H", 99)
    _poke(data, info.header_offset + 8, "<H", 99)


def _bzip2_method(data, info, cd):
    _poke(data, cd + 10, "<H", zipfile.ZIP_BZIP2)
    _poke(data, info.header_offset + 8, "<H", zipfile.ZIP_BZIP2)


def _not_deflate(data, info, cd):  # stored bytes announced as deflated: zlib.error
    _poke(data, cd + 10, "<H", zipfile.ZIP_DEFLATED)
    _poke(data, info.header_offset + 8, "<H", zipfile.ZIP_DEFLATED)


def _bad_local_header(data, info, cd):
    data[info.header_offset : info.header_offset + 4] = b"PK\x07\x07"


def _wrong_local_name(data, info, cd):
    data[info.header_offset + 30] ^= 0x20


def _offset_past_end(data, info, cd):  # a ZIP64 file: the offset lives in the extra field
    (name_len,) = struct.unpack_from("<H", data, cd + 28)
    _poke(data, cd + 42, "<I", len(data) + 1000)
    extra = cd + 46 + name_len
    if struct.unpack_from("<H", data, extra)[0] == 1:  # the ZIP64 extra: sizes, then offset
        _poke(data, extra + 4 + 16, "<Q", len(data) + 1000)


def _size_lie(data, info, cd):  # a stored member claiming more data than it holds
    _poke(data, cd + 24, "<I", info.file_size + 8)


_CORRUPTIONS = [
    _bad_crc,
    _encrypted,
    _unknown_method,
    _bzip2_method,
    _not_deflate,
    _bad_local_header,
    _wrong_local_name,
    _offset_past_end,
    _size_lie,
]


@pytest.mark.parametrize("corrupt", _CORRUPTIONS, ids=lambda f: f.__name__.strip("_"))
def test_corrupt_members_raise_value_error_naming_the_file(tmp_path, corrupt):
    path = tmp_path / "corrupt.npz"
    _craft(path, _tree({"array": "w"}), w=np.arange(64, dtype=np.float32))
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("w.npy")
    corrupt(data, info, _central_entry(bytes(data), b"w.npy"))
    path.write_bytes(bytes(data))
    _raises_naming(path)
    _raises_naming(io.BytesIO(bytes(data)), match="the file")


def test_a_truncated_deflate_stream_raises_value_error(tmp_path):
    path = tmp_path / "deflated.npz"
    _craft(path, _tree({"array": "w"}), zipfile.ZIP_DEFLATED, w=np.arange(4096.0))
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("w.npy")
    cd = _central_entry(bytes(data), b"w.npy")
    _poke(data, cd + 20, "<I", info.compress_size // 2)  # the stream ends early: EOFError
    path.write_bytes(bytes(data))
    exc = _raises_naming(path)
    assert exc.__cause__ is not None


def _small_file(tmp_path) -> bytes:
    path = tmp_path / "small.npz"
    myelin.save({"w": np.arange(6, dtype=np.float32).reshape(2, 3), "n": [1, 2.5]}, path)
    return path.read_bytes()


def _small_model(tmp_path) -> bytes:
    path = tmp_path / "small_model.npz"
    myelin.manual_seed(0)
    serialization.save_model(nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1)), path)
    return path.read_bytes()


@pytest.mark.slow
@pytest.mark.parametrize("make, loader", [(_small_file, "load"), (_small_model, "load_model")])
def test_every_cut_and_every_flipped_byte_gives_value_error_or_the_data(tmp_path, make, loader):
    """A file cut at any byte, or with any one byte changed, either loads (a byte that does not
    matter, like a timestamp) or raises ValueError naming the file: no other exception."""
    data = make(tmp_path)
    load = getattr(myelin, loader)
    path = tmp_path / "mutant.npz"
    outcomes = set()
    for n in range(len(data)):
        path.write_bytes(data[:n])
        _raises_naming(path, load)
    for i in range(len(data)):
        mutant = bytearray(data)
        mutant[i] ^= 0xFF
        path.write_bytes(bytes(mutant))
        try:
            load(path)
            outcomes.add("loaded")
        except ValueError as exc:
            assert "mutant.npz" in str(exc)
            outcomes.add("refused")
    assert outcomes == {"loaded", "refused"}


def test_a_member_that_is_not_an_array_is_refused(tmp_path):
    path = tmp_path / "foreign.npz"
    _zip(path, {"__myelin__.npy": _text(_tree({"array": "w"})), "w": b"not an array"})
    _raises_naming(path, match="'w' is not a .npy array")
    _zip(path, {"__myelin__.npy": _text(_tree({"array": "w"})), "w.npy": b"not an array"})
    _raises_naming(path, match="cannot read the array entry 'w'.*not a .npy array")
    weights = [("0.weight", "w"), ("0.bias", "b")]
    doc = _model([_linear(in_features=2, out_features=1)], weights)
    _zip(path, {"__myelin__.npy": _text(doc), "w": b"not an array", "b.npy": _npy(np.zeros(1))})
    _raises_naming(path, myelin.load_model, "not a .npy array")
    # the header itself is no array of the structure
    _zip(path, {"__myelin__.npy": _text(_tree({"array": "__myelin__"}))})
    _raises_naming(path, match="'__myelin__' does not exist")
    # a directory entry, a duplicated member
    _zip(path, {"__myelin__.npy": _text(_tree(1)), "sub/": b""})
    _raises_naming(path, match="'sub/' is not a .npy array")
    with zipfile.ZipFile(path, "w") as zf, pytest.warns(UserWarning, match="Duplicate"):
        zf.writestr("__myelin__.npy", _text(_tree(1)))
        zf.writestr("__myelin__.npy", _text(_tree(2)))
    _raises_naming(path, match="appears twice")


# ---------------------------------------------------------------- finding 11: oversized files


@pytest.mark.parametrize(
    "shape, descr",
    [
        ((2**31, 2), "<f4"),  # 16 GiB
        ((2**40,), "<f8"),  # 8 TiB
        ((2**62, 2**62), "<f8"),  # more bytes than an address space
        ((2**20,), "|V1048576"),  # a million elements of 1 MiB each
        ((3,), "<f8"),  # 24 bytes claimed, 8 held
        ((2**40,), "|S0"),  # no bytes claimed, but numpy would make each element 1 byte
    ],
)
def test_headers_claiming_more_than_the_member_holds_allocate_nothing(tmp_path, shape, descr):
    path = tmp_path / "claims.npz"
    member = _npy_header(shape, descr) + b"\0" * 8
    _craft(path, _tree({"array": "w"}), w=member)
    peak = _peak_bytes(lambda: _raises_naming(path, match="claims shape|has no size"))
    assert peak < 2**24


def _raw_npy(header: str, version=(1, 0), data=b"\0" * 8) -> bytes:
    size = struct.pack("<H" if version == (1, 0) else "<I", len(header))
    return b"\x93NUMPY" + bytes(version) + size + header.encode("latin1") + data


@pytest.mark.parametrize(
    "member",
    [
        _raw_npy("{'descr': '<f8', 'fortran_order': False, 'shape': (" + "1, " * 70 + ")}"),
        _raw_npy("{'descr': '<f8', 'fortran_order': False, 'shape': (1,)}", version=(9, 9)),
        _raw_npy("{'descr': '<f8', 'fortran_order': False, 'shape': (-1,)}"),
        _raw_npy("{'descr': '<f8', 'fortran_order': False, 'shape': (True,)}"),
        _raw_npy("{'descr': '<f8', 'fortran_order': 0, 'shape': (1,)}"),
        _raw_npy("{'descr': 'not a dtype', 'fortran_order': False, 'shape': (1,)}"),
        _raw_npy("{'descr': '|O', 'fortran_order': False, 'shape': (1,)}"),
        _raw_npy("{'descr': ('<f8', (2,)), 'fortran_order': False, 'shape': (1,)}"),
        _raw_npy("{'descr': '<f8', 'fortran_order': False, 'shape': (1,), 'x': 1}"),
        _raw_npy("{'descr': '<f8', 'fortran_order': False, 'shape': " + "(" * 300 + ")" * 300),
        _raw_npy("[1, 2, 3]"),
        _raw_npy("__import__('os').system('false')"),
        _raw_npy("{'descr': '<f8', 'fortran_order': False, 'shape': (1,)}")[:-1],
        _raw_npy(" " * 20000, version=(2, 0)),
        b"\x93NUMPY\x02\x00\xff\xff\xff\xff",  # a 4 GiB header, claimed
        b"\x93NUM",
        b"",
    ],
)
def test_malformed_npy_headers_are_value_errors(tmp_path, member):
    path = tmp_path / "header.npz"
    _craft(path, _tree({"array": "w"}), w=member)
    _raises_naming(path, match="cannot read the array entry 'w'")


def test_a_file_object_may_start_inside_a_stream(tmp_path):
    myelin.save({"w": np.arange(3.0)}, tmp_path / "plain.npz")
    stream = io.BytesIO(b"prefix" + (tmp_path / "plain.npz").read_bytes())
    stream.seek(6)
    assert myelin.load(stream)["w"].tolist() == [0.0, 1.0, 2.0]


def _deflated_zeros(path, nbytes: int) -> None:
    """A myelin-layout file whose one array is ``nbytes`` zeros, deflated (a zip bomb: about
    1000 times smaller than what it inflates to)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("__myelin__.npy", _text(_tree({"array": "w"})))
        with zf.open("w.npy", "w", force_zip64=True) as fp:
            fp.write(_npy_header((nbytes,), "|u1"))
            chunk = bytes(2**20)
            for _ in range(nbytes // len(chunk)):
                fp.write(chunk)


def test_a_zip_bomb_is_refused_before_inflating(tmp_path):
    path = tmp_path / "bomb.npz"
    _deflated_zeros(path, 2**28)  # 256 MiB of zeros in about 256 KiB
    assert path.stat().st_size < 2**20
    peak = _peak_bytes(lambda: _raises_naming(path, match="zip bomb"))
    assert peak < 2**24
    # compressed files within the bound load (np.savez_compressed of real weights)
    w = np.random.default_rng(0).standard_normal((64, 32)).astype(np.float32)
    header = np.frombuffer(json.dumps(_tree({"array": "w"})).encode(), np.uint8)
    with open(tmp_path / "compressed.npz", "wb") as f:
        np.savez_compressed(f, __myelin__=header, w=w)
    assert np.array_equal(myelin.load(tmp_path / "compressed.npz"), w)


_LOAD_UNDER_A_MEMORY_LIMIT = """
import resource, sys
import numpy as np
import myelin
with open("/proc/self/status") as f:
    size = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
limit = size + 2**30  # 1 GiB more than the process has mapped now
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
try:
    myelin.load_model(sys.argv[1])
    print("loaded")
except ValueError as exc:
    print("ValueError:", exc)
except MemoryError:
    print("MemoryError")
"""


def _load_under_a_memory_limit(path) -> str:
    if not os.path.exists("/proc/self/status"):
        pytest.skip("needs Linux's /proc to set an address-space limit")
    done = subprocess.run(
        [sys.executable, "-c", _LOAD_UNDER_A_MEMORY_LIMIT, str(path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_config_is_checked_against_the_weights_before_any_layer_is_built(tmp_path):
    """A config asking for Linear(50000, 50000) (10 GB) beside 3x2 weights: refused before the
    layer allocates, so under a 1 GiB address-space limit it is a ValueError, not a
    MemoryError."""
    path = tmp_path / "huge_config.npz"
    weights = [("0.weight", "w"), ("0.bias", "b")]
    doc = _model([_linear(in_features=50000, out_features=50000)], weights)
    _craft(path, doc, w=np.zeros((3, 2), np.float32), b=np.zeros(3, np.float32))
    out = _load_under_a_memory_limit(path)
    assert out.startswith("ValueError:") and "huge_config.npz" in out, out
    assert "(3, 2)" in out and "(50000, 50000)" in out
    # the Keras layer too
    doc = _model(
        [{"class": "keras.Dense", "name": "0", "config": {"units": 50000, "in_features": 50000}}],
        weights,
        kind="keras.Sequential",
    )
    _craft(path, doc, w=np.zeros((3, 2), np.float32), b=np.zeros(3, np.float32))
    out = _load_under_a_memory_limit(path)
    assert out.startswith("ValueError:") and "(50000, 50000)" in out, out


def test_a_keras_file_builds_no_layer_it_did_not_store(tmp_path):
    """keras.Sequential builds an unbuilt Dense from the model's input shape: a crafted file
    could ask for a 50000x50000 layer that way, storing no weights for it. It is rebuilt as
    stored (unbuilt, built by its first call)."""
    path = tmp_path / "lazy.npz"
    first = {"units": 50000, "in_features": 2, "input_shape": [2], "use_bias": False}
    doc = _model(
        [
            {"class": "keras.Dense", "name": "0", "config": first},
            {"class": "keras.Dense", "name": "1", "config": {"units": 50000}},
        ],
        [("0.weight", "w")],
        kind="keras.Sequential",
    )
    _craft(path, doc, w=np.zeros((50000, 2), np.float32))
    assert _load_under_a_memory_limit(path) == "loaded"
    model = myelin.load_model(path)
    assert model[0].built and not model[1].built


# ---------------------------------------------------------------- finding 11: the JSON header


@pytest.mark.parametrize("depth", [400, 100_000])
def test_deep_json_is_a_value_error(tmp_path, depth):
    path = tmp_path / "deep.npz"
    tree = "[" * depth + "]" * depth
    _craft(path, '{"format": "myelin.save", "version": 1, "tree": ' + tree + "}")
    _raises_naming(path, match="deep")
    _raises_naming(path, myelin.load_model, match="deep")


def _nested_lists(depth: int) -> list:
    deep = inner = []
    for _ in range(depth - 1):
        inner.append([])
        inner = inner[0]
    return deep


def test_save_refuses_what_load_could_not_read(tmp_path):
    myelin.save(_nested_lists(100), tmp_path / "ok.npz")  # 100 containers: the limit
    back = myelin.load(tmp_path / "ok.npz")
    for _ in range(99):
        back = back[0]
    assert back == []
    with pytest.raises(ValueError, match="100 containers deep"):
        myelin.save(_nested_lists(101), tmp_path / "too_deep.npz")
    assert not (tmp_path / "too_deep.npz").exists()
    # dicts take three JSON levels each: 100 of them still load
    deep = {}
    inner = deep
    for _ in range(99):
        inner["k"] = {}
        inner = inner["k"]
    myelin.save(deep, tmp_path / "dicts.npz")
    assert myelin.load(tmp_path / "dicts.npz") == deep
    # a registered layer's config counts too
    model = nn.Sequential(_Nested(_nested_lists(400)))
    with pytest.raises(ValueError, match="levels deep"):
        serialization.save_model(model, tmp_path / "too_deep.npz")
    assert not (tmp_path / "too_deep.npz").exists()


class _Nested(nn.Module):
    def __init__(self, value=None):
        super().__init__()
        self.value = value

    def forward(self, x):
        return x

    def get_config(self):
        return {"value": self.value}


serialization.register_layer(_Nested, "test_reliability_files._Nested")


@pytest.mark.parametrize(
    "text",
    [
        '{"format": "myelin.save", "version": 1, "tree": 1e400}',
        '{"format": "myelin.save", "version": 1, "tree": -1e400}',
        '{"format": "myelin.save", "version": 1, "tree": NaN}',
        '{"format": "myelin.save", "version": 1, "tree": Infinity}',
        '{"format": "myelin.save", "version": 1, "tree": ' + "9" * 5000 + "}",
        '{"format": "myelin.save", "version": 1e400, "tree": 1}',
        '{"format": "myelin.save", "version": 1, "tree": 1',
        '{"format": ["myelin.save"], "version": 1, "tree": 1}',
        '{"format": "myelin.save", "version": [1], "tree": 1}',
        "[]",
    ],
)
def test_malformed_headers_are_value_errors(tmp_path, text):
    path = tmp_path / "malformed.npz"
    _craft(path, text)
    _raises_naming(path)


@pytest.mark.parametrize(
    "layer",
    [
        {"class": "Flatten", "config": {"start_dim": 1e400}},  # OverflowError in int()
        {"class": "Flatten", "config": {"start_dim": 1.5}},  # silently truncated to 1
        {"class": "LeakyReLU", "config": {"negative_slope": -1}},
        {"class": "LeakyReLU", "config": {"negative_slope": "0.1"}},
        {"class": "Softmax", "config": {"dim": 0.5}},
        {"class": "Dropout", "config": {"p": True}},
        {"class": "Linear", "config": {"in_features": 2, "out_features": 1, "bias": "no"}},
        {"class": "Linear", "config": {"in_features": 2, "out_features": 1, "negative_slope": -1}},
        {"class": "Linear", "config": {"in_features": 2.0, "out_features": 1}},
        {"class": "Linear", "config": {"in_features": 2, "out_features": 1, "dtype": "float16"}},
        {"class": "Linear", "config": {"in_features": 2, "out_features": 1, "activation": []}},
        {"class": "keras.Dense", "config": {"units": 1, "in_features": 2, "use_bias": 1}},
        {"class": "keras.Dense", "config": {"units": 1, "input_shape": "2"}},
        {"class": "keras.Dense", "config": {"units": 1, "input_shape": [3], "in_features": 2}},
        {"class": "keras.Dropout", "config": {"rate": 1.5}},
        {"class": "keras.Activation", "config": {"activation": ["relu"]}},
        {"class": "Linear", "config": [1, 2]},
        {"class": ["Linear"], "config": {}},
        {"class": "Linear", "name": 7, "config": {}},
    ],
)
def test_bad_configs_are_value_errors_naming_the_file(tmp_path, layer):
    path = tmp_path / "config.npz"
    weights = []
    arrays = {}
    if layer["class"] in ("Linear", "keras.Dense") and isinstance(layer["config"], dict):
        weights = [("0.weight", "w"), ("0.bias", "b")]
        arrays = {"w": np.zeros((1, 2), np.float32), "b": np.zeros(1, np.float32)}
    kind = "keras.Sequential" if str(layer["class"]).startswith("keras") else "nn.Sequential"
    _craft(path, _model([{"name": "0", **layer}], weights, kind), **arrays)
    _raises_naming(path, myelin.load_model)


def test_bad_model_headers_are_value_errors(tmp_path):
    path = tmp_path / "header.npz"
    ok = _model([_linear(in_features=2, out_features=1)], [("0.weight", "w"), ("0.bias", "b")])
    arrays = {"w": np.zeros((1, 2), np.float32), "b": np.zeros(1, np.float32)}
    for change in (
        {"class": ["nn.Sequential"]},
        {"training": "no"},
        {"compile": [1]},
        {"layers": {"0": 1}},
        {"weights": [["0.weight", "w"], ["0.weight", "b"]]},
        {"weights": [["0.weight", "w"], ["0.bias", "w"]]},
        {"weights": [["0.weight", ["w"]], ["0.bias", "b"]]},
    ):
        _craft(path, {**ok, **change}, **arrays)
        _raises_naming(path, myelin.load_model)
    _craft(path, ok, **arrays)
    assert isinstance(myelin.load_model(path), nn.Sequential)


# ---------------------------------------------------------------- finding 11: weight dtypes


@pytest.mark.parametrize("dtype", [np.float16, np.int32, np.int64, np.complex64, np.bool_])
def test_weights_of_unsupported_dtypes_are_refused_at_load(tmp_path, dtype):
    path = tmp_path / "dtype.npz"
    weights = [("0.weight", "w"), ("0.bias", "b")]
    doc = _model([_linear(in_features=2, out_features=1)], weights)
    _craft(path, doc, w=np.ones((1, 2), dtype), b=np.zeros(1, np.float32))
    for loader in (myelin.load_model, myelin.load):
        _raises_naming(path, loader, match=f"'0.weight' has dtype {np.dtype(dtype)}")


def test_object_weights_are_refused_without_unpickling(tmp_path):
    path = tmp_path / "objects.npz"
    weights = [("0.weight", "w"), ("0.bias", "b")]
    doc = _model([_linear(in_features=2, out_features=1)], weights)
    _craft(path, doc, w=np.array([[1.0, 2.0]], dtype=object), b=np.zeros(1, np.float32))
    _raises_naming(path, myelin.load_model, match="Python objects")


@pytest.mark.parametrize("order", [">", "<"])
def test_weights_stored_in_either_byte_order_predict_the_same(tmp_path, order):
    myelin.manual_seed(1)
    model = nn.Sequential(
        nn.Linear(3, 4, dtype=np.float64), nn.Tanh(), nn.Linear(4, 2, dtype=np.float64)
    )
    path = tmp_path / "native.npz"
    serialization.save_model(model, path)
    swapped = tmp_path / "swapped.npz"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(swapped, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename != "__myelin__.npy":
                arr = np.lib.format.read_array(io.BytesIO(data))
                data = _npy(arr.astype(arr.dtype.newbyteorder(order)))
            dst.writestr(info.filename, data)
    x = np.random.default_rng(2).standard_normal((5, 3))
    with myelin.no_grad():
        want = model(x).numpy()
        back = myelin.load_model(swapped)
        assert np.array_equal(back(x).numpy(), want)
    for p, q in zip(back.parameters(), model.parameters(), strict=True):
        assert p.data.dtype == q.data.dtype and p.data.dtype.isnative
    for arr in myelin.load(swapped).values():
        assert arr.dtype.isnative


def test_arrays_come_back_native_with_their_values_and_order(tmp_path):
    rng = np.random.default_rng(3)
    arrays = {
        "be32": rng.standard_normal((3, 4)).astype(">f4"),
        "be64_f": np.asfortranarray(rng.standard_normal((4, 5)).astype(">f8")),
        "be_int": np.arange(6, dtype=">i4").reshape(2, 3),
        "le_int": np.arange(6, dtype="<i2"),
        "record": np.array([(1, 2.5)], dtype=[("a", ">i4"), ("b", "<f8")]),
        "scalar": np.array(7.5, ">f8"),
        "empty": np.zeros((0, 3), ">f4"),
    }
    path = tmp_path / "orders.npz"
    myelin.save(arrays, path)
    back = myelin.load(path)
    for k, arr in arrays.items():
        assert back[k].dtype.isnative and back[k].shape == arr.shape, k
        assert back[k].tolist() == arr.tolist(), k
    assert back["be64_f"].flags.f_contiguous


# ---------------------------------------------------------------- layer constructors


@pytest.mark.parametrize(
    "build, error, words",
    [
        (lambda: nn.Linear(2, 3, negative_slope=-1), ValueError, "negative_slope"),
        (lambda: nn.Linear(2, 3, negative_slope=math.nan), ValueError, "negative_slope"),
        (lambda: nn.Linear(2, 3, negative_slope=math.inf), ValueError, "negative_slope"),
        (lambda: nn.Linear(2, 3, negative_slope="0.1"), TypeError, "negative_slope"),
        (lambda: nn.Linear(2, 3, bias="no"), TypeError, "bias"),
        (lambda: nn.Linear(2, 3, activation=["relu"]), ValueError, "activation"),
        (lambda: nn.LeakyReLU(math.inf), ValueError, "negative_slope"),
        (lambda: nn.LeakyReLU("0.1"), TypeError, "negative_slope"),
        (lambda: nn.LeakyReLU(True), TypeError, "negative_slope"),
        (lambda: nn.Softmax(dim=1.5), TypeError, "dim"),
        (lambda: nn.LogSoftmax(dim="1"), TypeError, "dim"),
        (lambda: nn.Flatten(start_dim=1.5), TypeError, "start_dim"),
        (lambda: nn.Flatten(end_dim=math.inf), TypeError, "end_dim"),
        (lambda: nn.Dropout(True), ValueError, "p must"),
        (lambda: keras.layers.Dense(2, input_shape=3), TypeError, "input_shape"),
        (lambda: keras.layers.Dense(2, name=3), TypeError, "name"),
    ],
)
def test_layer_constructors_check_their_arguments(build, error, words):
    with pytest.raises(error, match=words):
        build()


def test_valid_layer_arguments_still_work():
    lin = nn.Linear(2, 3, activation="leaky_relu", negative_slope=np.float32(0.5), bias=np.True_)
    assert lin.negative_slope == 0.5 and lin.bias is not None
    assert nn.LeakyReLU(0).negative_slope == 0.0
    assert nn.Softmax(dim=np.int64(1)).dim == 1 and nn.Softmax(dim=None).dim == -1
    assert (nn.Flatten(np.int32(0), -2).start_dim, nn.Flatten(0, -2).end_dim) == (0, -2)
    assert nn.Dropout(np.float64(0.25)).p == 0.25 and nn.Dropout(1).p == 1.0
    shapes = nn.Linear._parameter_shapes(2, 3, bias=False)
    assert shapes == {"weight": (3, 2)}
    assert keras.layers.Dense._parameter_shapes(4, input_dim=3) == {"weight": (4, 3), "bias": (4,)}
    assert keras.layers.Dense._parameter_shapes(4) == {}
