"""The article's lesson "Debug on a single batch first": before a full run, check that the model
can memorise 8 examples. If the loss does not go to ~0, something is broken in the model, the loss
or the data pipeline.

Run: python examples/overfit_one_batch.py
"""

import myelin
from myelin import nn

myelin.manual_seed(0)
X = myelin.randn(8, 10)
y = myelin.randint(0, 3, (8,))  # random labels: only memorisation can fit them

model = nn.Sequential(nn.Linear(10, 64), nn.ReLU(), nn.Linear(64, 3))
optimizer = myelin.optim.Adam(model.parameters(), lr=1e-2)
criterion = nn.CrossEntropyLoss()

for step in range(301):
    optimizer.zero_grad()
    loss = criterion(model(X), y)
    loss.backward()
    grad_norm = nn.utils.clip_grad_norm_(model.parameters(), max_norm=1e9)  # just measure
    optimizer.step()
    if step % 50 == 0:
        print(f"step {step:3d}  loss={loss.item():.6f}  grad_norm={grad_norm.item():.4f}")

accuracy = (model(X).argmax(1) == y).float().mean().item()
print(f"final loss={loss.item():.6f} accuracy on the batch={accuracy:.0%}")
print("OK: the model can memorise one batch" if loss.item() < 1e-2 else "FAIL: look for a bug")
