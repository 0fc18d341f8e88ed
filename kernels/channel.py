"""Channel dropout: dropout1d, dropout2d, dropout3d and feature_dropout, with no mask kept for backward.

One keep decision per (sample n, channel c), shared by every spatial position:
y[n, c, ...] = x[n, c, ...] * keep(n, c) / (1 - p). The contract: the channel mask
is the element mask (kernels.contract) of the shape x.shape[:2], index m = n * C + c;
for inputs without a batch dim (dropout1d's (C, L), dropout3d's (C, D, H, W)) it is
the element mask of x.shape[:1], m = c, exactly as PyTorch treats them: as a batch of
one. Nothing new runs on the GPU: this is variational dropout of x viewed as
(N, C, S), S = the spatial dims flattened, with the mask shared along S, and the
variational mask there is by its own contract the element mask of (N, C, 1).

Layouts: channels-first x (contiguous) is viewed as (N, C, S) and shares the mask
along dim 2; channels-last x (C innermost, torch.channels_last and friends) is
viewed as (N, S, C) and shares it along dim 1, so the kernel reads x in place and
the output keeps x's memory format. Any other strides are copied first (reshape).
When there are no spatial positions to share over (S = 1, e.g. feature_dropout of
(N, C)) the channel mask is the element mask of x itself, and seeded_dropout's
faster kernel runs instead.

Bytes moved per element: one read and one write of the dtype, like element
dropout; one Philox call per 8 channels (n, c) instead of per 8 elements. Contiguous x with
17 or more positions per channel takes variational's runs kernel (x read flat,
channels as runs of S elements), channels-last x and shorter maps its tiles.

Which input ranks each op accepts, its warnings and errors follow
torch.nn.functional (torch 2.11 to 2.13): see each function.
"""

import math
import warnings

import torch

from dropbench.kernels.contract import Stream, checked
from dropbench.kernels.element import element_dropout
from dropbench.kernels.layout import channel_view
from dropbench.kernels.variational import shared_dropout

FEATURE_RANK_MESSAGE = "Feature dropout requires at least 2 dimensions in the input"


def _feature_dropout(x: torch.Tensor, p: float, stream: Stream, training: bool) -> torch.Tensor:
    """feature_dropout after the argument checks."""
    if not training or p == 0.0:
        return x
    if x.dim() < 2:
        if p < 1.0:
            raise RuntimeError(FEATURE_RANK_MESSAGE)
        return element_dropout(x, p, stream)  # p = 1: zeros; PyTorch does not check here
    if math.prod(x.shape[2:]) == 1:
        return element_dropout(x, p, stream)  # one element per channel: x's element mask
    view, shared_dim, restore = channel_view(x)
    return restore(shared_dropout(view, p, stream, shared_dim))


def _unbatched(x: torch.Tensor, p: float, stream: Stream, training: bool) -> torch.Tensor:
    """PyTorch's unbatched path: a batch of one, so the mask is the element mask of x.shape[:1]."""
    if not training or p == 0.0:
        return x
    return _feature_dropout(x.unsqueeze(0), p, stream, training).squeeze(0)


def feature_dropout(x: torch.Tensor, p: float, seed=None, training: bool = True, *, offset: int = 0,
                    state: torch.Tensor | None = None) -> torch.Tensor:
    """torch.feature_dropout: one keep decision per x[n, c], mask = element mask of x.shape[:2].

    x needs at least 2 dims (RuntimeError otherwise, with PyTorch's message; like
    PyTorch, only checked when a mask is drawn: training and 0 < p < 1). 2-D x is
    element dropout. p = 0 or training=False returns x itself; p = 1 returns zeros
    with zero gradients.
    """
    p, stream = checked(x, p, seed, offset, state, row_seeds_allowed=False)
    return _feature_dropout(x, p, stream, training)


def dropout1d(x: torch.Tensor, p: float, seed=None, training: bool = True, *, offset: int = 0,
              state: torch.Tensor | None = None) -> torch.Tensor:
    """F.dropout1d: x of (N, C, L) or (C, L); one keep decision per channel, shared along L.

    Mask: the element mask of (N, C), or of (C,) for 2-D x. Other ranks raise
    PyTorch's RuntimeError (also in eval, as PyTorch does).
    """
    p, stream = checked(x, p, seed, offset, state, row_seeds_allowed=False)
    if x.dim() not in (2, 3):
        raise RuntimeError(
            f"dropout1d: Expected 2D or 3D input, but received a {x.dim()}D input. "
            "Note that dropout1d exists to provide channel-wise dropout on inputs with 1 "
            "spatial dimension, a channel dimension, and an optional batch dimension "
            "(i.e. 2D or 3D inputs)."
        )
    if x.dim() == 2:
        return _unbatched(x, p, stream, training)
    return _feature_dropout(x, p, stream, training)


def dropout2d(x: torch.Tensor, p: float, seed=None, training: bool = True, *, offset: int = 0,
              state: torch.Tensor | None = None) -> torch.Tensor:
    """F.dropout2d: x of (N, C, H, W); one keep decision per (n, c), mask = element mask of (N, C).

    As PyTorch (see pytorch/pytorch#77081): a 3-D input is read as (N, C, L), not as
    an unbatched (C, H, W), with PyTorch's UserWarning saying so; inputs of other
    ranks warn that this is deprecated and get feature_dropout (2-D: element
    dropout; 1-D or 0-D: RuntimeError). The warnings come in eval too.
    """
    p, stream = checked(x, p, seed, offset, state, row_seeds_allowed=False)
    if x.dim() not in (3, 4):
        warnings.warn(
            f"dropout2d: Received a {x.dim()}-D input to dropout2d, which is deprecated "
            "and will result in an error in a future release. To retain the behavior "
            "and silence this warning, please use dropout instead. Note that dropout2d "
            "exists to provide channel-wise dropout on inputs with 2 spatial dimensions, "
            "a channel dimension, and an optional batch dimension (i.e. 3D or 4D inputs).",
            stacklevel=2,
        )
    if x.dim() == 3:
        warnings.warn(
            "dropout2d: Received a 3D input to dropout2d and assuming that channel-wise "
            "1D dropout behavior is desired - input is interpreted as shape (N, C, L), where C "
            "is the channel dim. This behavior will change in a future release to interpret the "
            "input as one without a batch dimension, i.e. shape (C, H, W). To maintain the 1D "
            "channel-wise dropout behavior, please switch to using dropout1d instead.",
            stacklevel=2,
        )
    return _feature_dropout(x, p, stream, training)


def dropout3d(x: torch.Tensor, p: float, seed=None, training: bool = True, *, offset: int = 0,
              state: torch.Tensor | None = None) -> torch.Tensor:
    """F.dropout3d: x of (N, C, D, H, W) or (C, D, H, W); one keep decision per channel.

    Mask: the element mask of (N, C), or of (C,) for 4-D x. As PyTorch, other ranks
    warn that this is deprecated and are treated as unbatched (a batch of one is
    added, so the mask runs over x's first dim; 0-D raises RuntimeError).
    """
    p, stream = checked(x, p, seed, offset, state, row_seeds_allowed=False)
    if x.dim() not in (4, 5):
        warnings.warn(
            f"dropout3d: Received a {x.dim()}-D input to dropout3d, which is deprecated "
            "and will result in an error in a future release. To retain the behavior "
            "and silence this warning, please use dropout instead. Note that dropout3d "
            "exists to provide channel-wise dropout on inputs with 3 spatial dimensions, "
            "a channel dimension, and an optional batch dimension (i.e. 4D or 5D inputs).",
            stacklevel=2,
        )
    if x.dim() == 5:
        return _feature_dropout(x, p, stream, training)
    return _unbatched(x, p, stream, training)
