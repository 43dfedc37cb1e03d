"""The progress output of ``fit(verbose=...)``: a bar redrawn in place on a terminal, one line
per epoch elsewhere (CI logs)."""

import io
import re
import sys

import numpy as np
import pytest

import myelin
from myelin import nn, training


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


class Batches:
    """An iterable of (x, y) batches without a length (the number of steps is unknown)."""

    def __init__(self, x, y, size):
        self.x, self.y, self.size = x, y, size

    def __iter__(self):
        for i in range(0, len(self.x), self.size):
            yield self.x[i : i + self.size], self.y[i : i + self.size]


def _data(n=40):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, 3)).astype(np.float32)
    return x, (x[:, 0] > 0).astype(np.int64)


def _model():
    myelin.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 2))
    model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    return model


def _fit(monkeypatch, stream, *args, every_batch=True, columns=200, **kwargs):
    monkeypatch.setattr(sys, "stdout", stream)
    monkeypatch.setenv("COLUMNS", str(columns))  # the terminal's width
    if every_batch:  # redraw at every batch, not at most every 0.1 s
        monkeypatch.setattr(training, "_PROGRESS_INTERVAL", 0.0)
    _model().fit(*args, **kwargs)
    return stream.getvalue()


SAMPLES = r"\d[\d,]* samples/s"


def test_the_status_line_format():
    p = training._Progress(1, 3, 10)
    p.epoch_begin(0)
    logs = {"loss": 0.5, "accuracy": 0.75, "lr": 0.1, "grad_norm": 2.0}
    line = p._line(5, logs, seen=160, elapsed=2.0, bar=True)
    assert line == (
        "Epoch 1/3 - 5/10 [==========>.........] - 2.0s - ETA 2s - loss: 0.5000 - "
        "accuracy: 0.7500 - 80 samples/s"
    )
    # the epoch's last line: a full bar, no ETA; samples/s over the training time only
    line = p._line(10, logs, seen=32000, elapsed=5.0, bar=True, busy=4.0)
    assert line == (
        "Epoch 1/3 - 10/10 [====================] - 5.0s - loss: 0.5000 - accuracy: 0.7500 - "
        "8,000 samples/s"
    )
    assert p._line(10, logs, 320, 4.0, bar=False).startswith("Epoch 1/3 - 4.0s - loss: 0.5000")


@pytest.mark.parametrize("verbose", [1, 2])
def test_one_line_per_epoch_when_not_a_terminal(monkeypatch, verbose):
    x, y = _data()
    out = _fit(
        monkeypatch, io.StringIO(), x, y, epochs=3, batch_size=8, validation_split=0.2,
        verbose=verbose,
    )  # fmt: skip
    assert "\r" not in out and out.endswith("\n")
    lines = out.splitlines()
    assert len(lines) == 3
    for i, line in enumerate(lines):
        assert line.startswith(f"Epoch {i + 1}/3 - ")
        assert re.search(r" - loss: \d\.\d{4} - accuracy: \d\.\d{4} - val_loss: \d\.\d{4}", line)
        assert "val_accuracy: " in line and re.search(SAMPLES + "$", line)
        assert ("4/4 [====================]" in line) is (verbose == 1)
        assert "ETA" not in line and "lr:" not in line and "grad_norm" not in line


def test_a_terminal_gets_a_bar_redrawn_in_place(monkeypatch):
    x, y = _data()
    out = _fit(monkeypatch, FakeTerminal(), x, y, epochs=2, batch_size=8, verbose=1)
    epochs = out.split("\n")
    assert len(epochs) == 3 and epochs[-1] == ""  # each epoch ends its line once
    for e, text in enumerate(epochs[:2]):
        draws = text.split("\r")
        assert draws[0] == ""  # every draw starts at the line's beginning
        draws = draws[1:]
        # one draw per batch, then the epoch's final line (same bar, final logs)
        assert len(draws) == 6
        for b, draw in enumerate(draws[:5]):
            fill = 4 * (b + 1)
            bar = "=" * fill + (">" if b < 4 else "") + "." * (20 - fill - (b < 4))
            assert draw.startswith(f"Epoch {e + 1}/2 - {b + 1}/5 [{bar}] - ")
            assert ("ETA" in draw) is (b < 4)
            assert re.search(r"loss: \d\.\d{4} - accuracy: \d\.\d{4} - " + SAMPLES, draw)
        assert draws[5].startswith(f"Epoch {e + 1}/2 - 5/5 [====================] - ")
        assert "ETA" not in draws[5]


def test_a_shorter_redraw_blanks_the_rest_of_the_longer_one(monkeypatch):
    p = training._Progress(1, 1, 2)
    p.stream = FakeTerminal()
    assert p._pad("a long line") == "a long line"
    assert p._pad("short") == "short      "  # covers what the terminal still shows
    assert p._pad("short") == "short"


def test_redraws_fit_the_terminal_width(monkeypatch):
    x, y = _data()
    out = _fit(monkeypatch, FakeTerminal(), x, y, epochs=1, batch_size=8, verbose=1, columns=50)
    *draws, last = out.rstrip("\n").split("\r")[1:]
    assert len(draws) == 5 and all(len(d) <= 49 for d in draws)  # never wraps
    assert len(last.rstrip()) > 49 and re.search(SAMPLES, last)  # the kept line is whole


def test_unknown_number_of_batches(monkeypatch):
    x, y = _data()
    out = _fit(monkeypatch, FakeTerminal(), Batches(x, y, 16), epochs=1, verbose=1)
    draws = out.rstrip("\n").split("\r")[1:]
    assert [d.split(" - ")[1] for d in draws] == ["1/?", "2/?", "3/?", "3/?"]
    assert "ETA" not in out


def test_redraws_are_throttled(monkeypatch):
    x, y = _data(400)
    out = _fit(
        monkeypatch, FakeTerminal(), x, y, epochs=1, batch_size=4, verbose=1, every_batch=False
    )
    draws = out.split("\r")[1:]
    # 100 batches in well under the 0.1 s interval on any machine we test on: the first batch
    # is drawn, then few of the others, then the final line
    assert draws[0].startswith("Epoch 1/1 - 1/100 [")
    assert draws[-1].startswith("Epoch 1/1 - 100/100 [") and len(draws) < 100


def test_verbose_zero_and_verbose_two_on_a_terminal(monkeypatch):
    x, y = _data()
    assert _fit(monkeypatch, FakeTerminal(), x, y, epochs=2, verbose=0) == ""
    out = _fit(monkeypatch, FakeTerminal(), x, y, epochs=2, verbose=2)
    assert "\r" not in out and "[" not in out and len(out.splitlines()) == 2


# ---------------------------------------------------------------- History.plot


def test_history_plot_of_a_fit_saves_a_png_outside_pyplot(tmp_path):
    plt = pytest.importorskip("matplotlib.pyplot")
    import struct

    x, y = _data(80)
    model = _model()
    h = model.fit(x, y, epochs=4, batch_size=16, validation_split=0.25, verbose=0)
    figures = plt.get_fignums()
    path = tmp_path / "curves.png"
    fig = h.plot(path=path)
    assert plt.get_fignums() == figures  # nothing left open in pyplot
    png = path.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[12:16] == b"IHDR"
    assert struct.unpack(">II", png[16:24]) == (900, 350)  # two 4.5 x 3.5 in panels at 100 dpi
    assert [a.get_title() for a in fig.axes] == ["loss", "accuracy"]
    for a in fig.axes:
        key = a.get_title()
        assert [line.get_label() for line in a.get_lines()] == ["train", "val"]
        train, val = a.get_lines()
        np.testing.assert_array_equal(train.get_xdata(), [1, 2, 3, 4])
        np.testing.assert_array_equal(train.get_ydata(), h.history[key])
        np.testing.assert_array_equal(val.get_ydata(), h.history["val_" + key])
    # without validation one line per panel; metrics picks the panels
    h = model.fit(x, y, epochs=2, verbose=0)
    fig = h.plot(metrics=["accuracy"], path=tmp_path / "acc.png")
    assert len(fig.axes) == 1 and len(fig.axes[0].get_lines()) == 1
    with pytest.raises(ValueError, match="'val_auc', which is not in the history"):
        h.plot(metrics="val_auc")
