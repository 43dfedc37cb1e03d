"""The article's PyTorch programs, with only the imports and names changed to myelin.

1. SimpleNet: nn.Sequential(Linear, ReLU, Linear) trained with Adam and CrossEntropyLoss.
2. MLPWithDropout: data loading, validation with eval()/no_grad(), AdamW and StepLR.

Run: python examples/pytorch_style.py
"""

import myelin
import myelin.nn as nn
from myelin.utils.data import DataLoader, TensorDataset

myelin.manual_seed(0)


# --- 1. Building a simple classifier -----------------------------------------------------
class SimpleNet(nn.Module):
    def __init__(self, n_features, n_hidden, n_classes):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(n_features, n_hidden),
            nn.ReLU(),
            nn.Linear(n_hidden, n_classes)
        )

    def forward(self, x):
        return self.net(x)


X3 = myelin.randn(64, 3)                        # a toy 3-feature binary problem
y3 = (X3[:, 0] - X3[:, 2] > 0).long()
dataloader = DataLoader(TensorDataset(X3, y3), batch_size=16, shuffle=True)

model = SimpleNet(n_features=3, n_hidden=16, n_classes=2)
optimizer = myelin.optim.Adam(model.parameters(), lr=1e-3)
criterion = nn.CrossEntropyLoss()

# Training loop (one epoch sketch)
for X_batch, y_batch in dataloader:
    optimizer.zero_grad()
    logits = model(X_batch)
    loss = criterion(logits, y_batch)
    loss.backward()
    optimizer.step()
print(f"SimpleNet: one epoch done, last batch loss={loss.item():.4f}")

# --- 2. Data loading, validation and a learning-rate scheduler ---------------------------
# --- Data ---
X = myelin.randn(200, 10)               # 200 examples, 10 features
y = (X[:, 0] + X[:, 1] > 0).long()    # binary label

dataset  = TensorDataset(X, y)
train_ds, val_ds = myelin.utils.data.random_split(dataset, [160, 40])
train_dl = DataLoader(train_ds, batch_size=16, shuffle=True)
val_dl   = DataLoader(val_ds,   batch_size=16)

# --- Model with Dropout (regularization) ---
class MLPWithDropout(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(10, 64), nn.ReLU(), nn.Dropout(0.3),
            nn.Linear(64, 32), nn.ReLU(),
            nn.Linear(32, 2)
        )
    def forward(self, x): return self.net(x)

model     = MLPWithDropout()
optimizer = myelin.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
scheduler = myelin.optim.lr_scheduler.StepLR(optimizer, step_size=10, gamma=0.5)
criterion = nn.CrossEntropyLoss()

# --- Training loop with validation ---
for epoch in range(20):
    model.train()
    for X_b, y_b in train_dl:
        optimizer.zero_grad()
        loss = criterion(model(X_b), y_b)
        loss.backward()
        optimizer.step()
    scheduler.step()

    model.eval()
    with myelin.no_grad():
        val_correct = sum((model(X_b).argmax(1) == y_b).sum().item()
                          for X_b, y_b in val_dl)
    if epoch % 5 == 0:
        print(f"Epoch {epoch:3d} | val_acc={val_correct/40:.0%} | lr={scheduler.get_last_lr()[0]:.1e}")
print(f"final val_acc={val_correct/40:.0%}")
