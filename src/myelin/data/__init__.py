"""``myelin.data`` (also ``myelin.utils.data``): datasets and the DataLoader."""
