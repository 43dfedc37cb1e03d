"""Training curves: when the training loss keeps falling but the validation loss turns up.

The article's advice: "Monitor overfitting early: if train loss keeps dropping but validation
loss rises, add dropout or reduce model size before training longer." Here a wide MLP learns two
noisy interleaved spirals from 120 samples and is checked on 120 others each epoch.
``History.plot`` draws the loss and the accuracy per epoch, train against validation: the
training loss falls towards zero while the validation loss bottoms out and climbs (the model
learns the noise). The dashed line marks the epoch ``EarlyStopping(restore_best_weights=True)``
would keep. The picture goes to docs/images/training_curve.png (the README shows it), or to the
path given as the first argument.

Run: python examples/training_curve.py [out.png]   (needs matplotlib: pip install "myelin[plot]")
"""

import sys
from pathlib import Path

import matplotlib
import numpy as np

import myelin
from myelin import nn, optim

matplotlib.use("Agg")  # render to a file: no window


def spirals(n: int, noise: float, seed: int):
    """``n`` points on two interleaved spirals (class 0 and 1), with Gaussian noise."""
    rng = np.random.default_rng(seed)
    t = np.sqrt(rng.uniform(0.05, 1.0, n)) * 3 * np.pi
    label = rng.integers(0, 2, n)
    sign = np.where(label == 1, 1.0, -1.0)
    x = np.stack([sign * t * np.cos(t), sign * t * np.sin(t)], axis=1) / (3 * np.pi)
    x += rng.normal(0.0, noise, x.shape)
    return x.astype(np.float32), label


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("docs/images/training_curve.png")
    x, y = spirals(240, noise=0.06, seed=1)
    myelin.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(2, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 2)
    )
    model.compile(
        optim.Adam(model.parameters(), lr=3e-3), "sparse_categorical_crossentropy", ["accuracy"]
    )
    history = model.fit(x, y, epochs=120, batch_size=32, validation_split=0.5, verbose=0)

    h = history.history
    best = int(np.argmin(h["val_loss"]))
    print(f"lowest val loss {h['val_loss'][best]:.3f} at epoch {best + 1}")
    print(f"last epoch: train loss {h['loss'][-1]:.3f}, val loss {h['val_loss'][-1]:.3f}")
    print(f"val accuracy {h['val_accuracy'][best]:.0%} at epoch {best + 1}")
    fig = history.plot()  # one panel per metric: loss, accuracy
    for ax in fig.axes:
        ax.axvline(best + 1, color="gray", linestyle="--", linewidth=1)
    fig.suptitle("a wide MLP on 120 noisy spiral points: train vs validation")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    print(f"saved {out}")


if __name__ == "__main__":
    main()
