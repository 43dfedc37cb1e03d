"""The article's Keras program, with only the imports changed to myelin.

Keras' `fit` runs the loop; EarlyStopping(restore_best_weights=True) keeps the best epoch.
The last layer's softmax is kept for predict(); like Keras, the loss is computed on the logits
before it.

Run: python examples/keras_style.py
"""

import myelin
from myelin import keras
from myelin.keras import layers

myelin.manual_seed(0)

# Same architecture as the PyTorch example — directly comparable
model = keras.Sequential([
    layers.Dense(64, activation="relu", input_shape=(10,)),
    layers.Dropout(0.3),
    layers.Dense(32, activation="relu"),
    layers.Dense(2, activation="softmax")
])

model.compile(optimizer=keras.optimizers.AdamW(1e-3),
              loss="sparse_categorical_crossentropy",
              metrics=["accuracy"])

# EarlyStopping callback — equivalent to monitoring val_acc in PyTorch loop
early_stop = keras.callbacks.EarlyStopping(monitor="val_accuracy",
                                            patience=5, restore_best_weights=True)

import numpy as np  # noqa: E402
X_np = myelin.randn(200, 10).numpy()
y_np = (X_np[:, 0] + X_np[:, 1] > 0).astype(int)

history = model.fit(X_np, y_np, epochs=50, batch_size=16,
                    validation_split=0.2, callbacks=[early_stop], verbose=0)
print(f"Best val accuracy: {max(history.history['val_accuracy']):.0%}")
print(f"epochs run: {len(history.history['loss'])}, "
      f"final train loss={history.history['loss'][-1]:.4f}")
probs = model.predict(X_np[:3])
print(f"predict() gives probabilities: rows sum to {np.round(probs.sum(axis=1), 4).tolist()}")
