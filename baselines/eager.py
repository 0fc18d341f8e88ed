"""Eager PyTorch dropout, every torch.nn.functional form, the way models call it (training mode).

None takes a seed: they draw from torch's generator, and autograd keeps their mask for
backward (F.dropout a 1-byte-per-element mask; the variational form the broadcast mask;
channel and alpha dropout run ATen's composite _dropout_impl: a noise tensor (N, C, 1, ...)
or x-sized, then a multiply, and an add for alpha).
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


def dropout_inplace(x: torch.Tensor, p: float) -> torch.Tensor:
    """F.dropout(inplace=True): overwrites x and returns it.

    Like any in-place op, it raises on a leaf that requires grad. Called again on the
    same buffer it keeps scaling the survivors by 1 / (1 - p) (towards inf): fine for
    timing, not for values.
    """
    return F.dropout(x, p, training=True, inplace=True)


def dropout1d(x: torch.Tensor, p: float) -> torch.Tensor:
    """F.dropout1d: one decision per channel of (N, C, L) or (C, L)."""
    return F.dropout1d(x, p, training=True)


def dropout2d(x: torch.Tensor, p: float) -> torch.Tensor:
    """F.dropout2d: one decision per (n, c) of (N, C, H, W); warns for other ranks."""
    return F.dropout2d(x, p, training=True)


def dropout3d(x: torch.Tensor, p: float) -> torch.Tensor:
    """F.dropout3d: one decision per channel of (N, C, D, H, W) or (C, D, H, W)."""
    return F.dropout3d(x, p, training=True)


def feature_dropout(x: torch.Tensor, p: float) -> torch.Tensor:
    """torch.feature_dropout: one decision per x[n, c], any rank >= 2."""
    return torch.feature_dropout(x, p, True)


def alpha_dropout(x: torch.Tensor, p: float) -> torch.Tensor:
    """F.alpha_dropout in training mode (its default is training=False)."""
    return F.alpha_dropout(x, p, training=True)


def feature_alpha_dropout(x: torch.Tensor, p: float) -> torch.Tensor:
    """F.feature_alpha_dropout in training mode (its default is training=False)."""
    return F.feature_alpha_dropout(x, p, training=True)
