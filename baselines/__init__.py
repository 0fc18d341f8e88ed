"""Dropout as users write it today: eager PyTorch and torch.compile of the same code."""
