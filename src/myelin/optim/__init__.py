"""``myelin.optim``: optimizers on the fused C updates, and ``lr_scheduler``."""
