"""``myelin.keras``: Keras' model-building API on myelin (https://keras.io/api/).

A Keras program runs with only its imports changed::

    from myelin import keras
    from myelin.keras import layers

    model = keras.Sequential([
        layers.Dense(64, activation="relu", input_shape=(10,)),
        layers.Dropout(0.3),
        layers.Dense(2, activation="softmax"),
    ])
    model.compile(optimizer=keras.optimizers.AdamW(1e-3),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, epochs=50, batch_size=16, validation_split=0.2,
                        callbacks=[keras.callbacks.EarlyStopping(monitor="val_accuracy")])

The model is an ``nn.Sequential`` and its ``Dense`` layers keep PyTorch's weight layout, so the
same object also works with ``myelin.optim`` and a hand-written training loop.
"""

from myelin.keras import callbacks, layers, models, optimizers, utils
from myelin.keras.models import Sequential

__all__ = ["Sequential", "callbacks", "layers", "models", "optimizers", "utils"]
