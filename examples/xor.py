"""The article's XOR story: a single neuron cannot learn XOR; two layers can.

    input -> [Linear -> ReLU] -> [Linear -> Sigmoid] -> output

Run: python examples/xor.py
"""

import myelin
from myelin import nn

X = myelin.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
y = myelin.tensor([[0.0], [1.0], [1.0], [0.0]])


def train(model, epochs=2000, lr=0.05):
    optimizer = myelin.optim.Adam(model.parameters(), lr=lr)
    criterion = nn.BCEWithLogitsLoss()  # the sigmoid is folded into the loss (stable)
    for _ in range(epochs):
        optimizer.zero_grad()
        loss = criterion(model(X), y)
        loss.backward()
        optimizer.step()
    with myelin.no_grad():
        probs = model(X).sigmoid()
    accuracy = ((probs > 0.5).float() == y).float().mean().item()
    return loss.item(), probs, accuracy


myelin.manual_seed(0)
neuron = nn.Linear(2, 1)  # one neuron: w1*x1 + w2*x2 + b
loss, probs, acc = train(neuron)
print(f"single neuron: loss={loss:.3f} accuracy={acc:.0%} outputs={probs.data.ravel().round(2)}")

myelin.manual_seed(0)
mlp = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 1))  # two layers
loss, probs, acc = train(mlp)
print(f"two-layer MLP: loss={loss:.3f} accuracy={acc:.0%} outputs={probs.data.ravel().round(2)}")
