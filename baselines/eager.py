"""Eager PyTorch dropout, the way it is written in models today.

Neither takes a seed: they draw from torch's generator, and autograd keeps their
mask (eager F.dropout saves a 1-byte-per-element mask; the variational form saves
the broadcast mask) for backward.
"""

import torch
import torch.nn.functional as F


def dropout(x: torch.Tensor, p: float) -> torch.Tensor:
    """Element dropout: torch.nn.functional.dropout in training mode."""
    return F.dropout(x, p, training=True)


def variational_dropout(x: torch.Tensor, p: float, dim: int) -> torch.Tensor:
    """Locked dropout: a dropout mask on ones with size 1 along `dim`, multiplied in."""
    mask_shape = list(x.shape)
    mask_shape[dim] = 1
    mask = F.dropout(x.new_ones(mask_shape), p, training=True)
    return x * mask
