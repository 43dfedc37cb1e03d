"""Ctrl-C during fit: training stops at the end of the batch running, the model stays usable and
fit returns the history so far; a second Ctrl-C raises KeyboardInterrupt."""

import os
import signal
import threading

import numpy as np
import pytest

import myelin
from myelin import callbacks, nn, optim

pytestmark = pytest.mark.skipif(
    threading.current_thread() is not threading.main_thread(), reason="signals need the main thread"
)


@pytest.fixture(autouse=True)
def _ctrl_c_delivered():
    """Ctrl-C as a terminal delivers it. A process started in the background by a script (``cmd
    &`` without job control, as under nohup) inherits SIGINT ignored, and fit then rightly leaves
    it alone; these tests are about Python's default handler, so they put it in place."""
    previous = signal.getsignal(signal.SIGINT)
    if previous == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    if previous is not None:  # None: a handler installed outside Python, left as it is
        signal.signal(signal.SIGINT, previous)


def _model():
    myelin.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    model.compile(
        optimizer=optim.Adam(model.parameters(), lr=1e-2),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def _data(n=256):
    r = np.random.default_rng(0)
    x = r.standard_normal((n, 8)).astype(np.float32)
    return x, (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0)


class _Signal(callbacks.Callback):
    """Sends SIGINT to this process at the start of batch `at` (`times` of them), and records
    the batches that finished."""

    def __init__(self, at, times=1):
        super().__init__()
        self.at, self.times, self.ended = at, times, []

    def on_train_batch_begin(self, batch, logs=None):
        if batch == self.at and not self.ended[self.at :]:
            for _ in range(self.times):
                signal.raise_signal(signal.SIGINT)

    def on_train_batch_end(self, batch, logs=None):
        self.ended.append(batch)


def test_ctrl_c_stops_after_the_current_batch():
    model = _model()
    x, y = _data()
    cb = _Signal(at=3)
    with pytest.warns(RuntimeWarning, match="interrupted"):
        history = model.fit(x, y, batch_size=16, epochs=5, callbacks=[cb], verbose=0)
    assert cb.ended == [0, 1, 2, 3]  # batch 3 ran to its end, no batch after it
    assert history.epoch == [0]
    assert np.isfinite(history.history["loss"][0])
    assert model.history is history
    # the handler is put back, and the model is usable: predict, evaluate, train on
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert np.isfinite(model.predict(x, verbose=0)).all()
    assert np.isfinite(model.evaluate(x, y, verbose=0)[0])
    again = model.fit(x, y, batch_size=16, epochs=2, verbose=0)
    assert again.epoch == [0, 1]


def test_ctrl_c_from_another_thread_during_fit():
    model = _model()
    x, y = _data(4096)
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.warns(RuntimeWarning, match="interrupted"):
            history = model.fit(x, y, batch_size=8, epochs=1000, verbose=0)
    finally:
        timer.cancel()
    assert 1 <= len(history.epoch) < 1000
    assert all(np.isfinite(p.detach().numpy()).all() for p in model.parameters())


def test_second_ctrl_c_raises_keyboard_interrupt():
    model = _model()
    x, y = _data()
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, batch_size=16, epochs=5, callbacks=[_Signal(at=2, times=2)], verbose=0)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert np.isfinite(model.predict(x, verbose=0)).all()


def test_a_users_own_sigint_handler_is_left_alone():
    model = _model()
    x, y = _data()
    seen = []
    previous = signal.signal(signal.SIGINT, lambda s, f: seen.append(s))
    try:
        history = model.fit(x, y, batch_size=16, epochs=2, callbacks=[_Signal(at=1)], verbose=0)
        assert signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, previous)
    assert seen == [signal.SIGINT] and history.epoch == [0, 1]
