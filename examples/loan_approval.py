"""The article's loan-approval toy table, learned by one perceptron.

| Age | Salary ($k) | Owns house | Approve? |
| 25  | 45          | No         | No       |
| 40  | 80          | Yes        | Yes      |
| 30  | 60          | No         | No       |
| 50  | 120         | Yes        | Yes      |

The inputs are normalised first (the article's "No normalization" mistake), then a single
neuron, sigmoid(w . x + b), learns a weighted vote of the three features.

Run: python examples/loan_approval.py
"""

import numpy as np

import myelin
from myelin import nn
from myelin.data import Normalize

table = np.array(
    [[25, 45, 0], [40, 80, 1], [30, 60, 0], [50, 120, 1]], dtype=np.float32
)  # age, salary, owns house
approve = np.array([[0], [1], [0], [1]], dtype=np.float32)

scaler = Normalize().fit(table)
X = myelin.tensor(scaler.transform(table))
y = myelin.tensor(approve)

myelin.manual_seed(0)
neuron = nn.Linear(3, 1)
optimizer = myelin.optim.SGD(neuron.parameters(), lr=0.5)
criterion = nn.BCEWithLogitsLoss()
for _epoch in range(200):
    optimizer.zero_grad()
    loss = criterion(neuron(X), y)
    loss.backward()
    optimizer.step()

with myelin.no_grad():
    p = neuron(X).sigmoid().data.ravel()
w = neuron.weight.data.ravel()
print(f"loss={loss.item():.4f}")
bias = neuron.bias.item()
print(f"weights: age={w[0]:+.2f} salary={w[1]:+.2f} owns_house={w[2]:+.2f} bias={bias:+.2f}")
for row, prob, label in zip(table, p, approve.ravel(), strict=True):
    verdict = "approve" if prob > 0.5 else "reject"
    print(
        f"age={row[0]:.0f} salary={row[1]:.0f}k house={'yes' if row[2] else 'no '} "
        f"-> p={prob:.2f} {verdict} (label {'approve' if label else 'reject'})"
    )
applicant = scaler.transform(np.array([[35, 95, 1]], dtype=np.float32))
with myelin.no_grad():
    p_new = neuron(applicant).sigmoid().item()
print(f"new applicant age=35 salary=95k house=yes -> p={p_new:.2f}")
print(f"accuracy={float(((p > 0.5) == approve.ravel()).mean()):.0%}")
