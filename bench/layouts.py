"""The inputs bench.check runs an implementation on: random non-zero data in several memory layouts.

Real compiler bugs live in the non-contiguous layouts (pytorch/pytorch#174078: wrong
dropout on a transposed-contiguous input), so every check runs the same logical
shape in three:
- 2-D inputs: contiguous; transposed-contiguous (a leaf with column-major memory);
  a transposed view of a contiguous leaf;
- inputs of rank >= 3 (channel ops' (N, C, spatial...)): contiguous; channels-last
  (torch.channels_last for 4-D, channels_last_3d for 5-D, (N, L, C) memory for 3-D);
  a view of a (C, N, spatial...) leaf with N and C swapped back, which no kernel
  reads in place.
Data is random with |x| in [MIN_ABS, MAX_ABS): never zero, so a zero output is a drop.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

#: The range of |x|: far from 0 (a kept value is never 0) and from under/overflow after scaling.
MIN_ABS, MAX_ABS = 0.5, 1.5
LAYOUTS_2D = ("contiguous", "transposed-contiguous", "transposed view")
LAYOUTS_CHANNEL = ("contiguous", "channels-last", "transposed view")
#: Variational checks put this many rows along the shared dim; the rest of numel goes to the mask.
SHARED_SIZE = 16
#: Channel checks give each (n, c) these spatial dims: 25 or 27 positions, so contiguous input takes
#: the runs kernel (runs of >= 17) with blocks spanning more than 32 runs, and channels-last the tiles.
SPATIAL = {3: (25,), 4: (5, 5), 5: (3, 3, 3)}
MEMORY_FORMATS = {4: torch.channels_last, 5: torch.channels_last_3d}


def layouts_for(rank: int) -> tuple[str, ...]:
    return LAYOUTS_2D if rank == 2 else LAYOUTS_CHANNEL


def check_shape(mask: str, numel: int, dim: int = 0, rank: int = 2) -> tuple[int, ...]:
    """A shape of at least `numel` elements for a check, in whole groups of 4 where it matters.

    element: a square (rows, cols), so rows and cols both have many neighbours;
    variational: SHARED_SIZE along `dim`, the rest in the mask;
    channel: (N, C, *SPATIAL[rank]) with N = C and N * C >= numel / 16 channels, enough for the
    statistics of the (N, C) channel mask (the tensor is then a little over numel).
    """
    if mask == "variational":
        mask_size = 4 * math.ceil(numel / SHARED_SIZE / 4)
        return (SHARED_SIZE, mask_size) if dim % 2 == 0 else (mask_size, SHARED_SIZE)
    if mask == "channel":
        side = 4 * math.ceil(math.sqrt(numel / 16) / 4)
        return (side, side, *SPATIAL[rank])
    side = 4 * math.ceil(math.sqrt(numel) / 4)
    return (side, side)


def random_nonzero(shape, dtype: torch.dtype, device: str) -> torch.Tensor:
    """Random values with |x| in [MIN_ABS, MAX_ABS), either sign."""
    magnitude = torch.rand(shape, device=device) * (MAX_ABS - MIN_ABS) + MIN_ABS
    sign = torch.randint(0, 2, shape, device=device) * 2 - 1
    return (magnitude * sign).to(dtype)


def make_leaf(shape, dtype: torch.dtype, device: str, layout: str) -> tuple[torch.Tensor, Callable]:
    """(a leaf that requires grad, the view that makes it the logical `shape` in `layout`).

    The view is the identity except for "transposed view". Out-of-place ops run on
    view(leaf); in-place ops on view(leaf.clone()) (clone keeps the strides), since a
    leaf that requires grad refuses in-place writes. Either way gradients reach the leaf.
    """
    shape = tuple(shape)
    if layout == "contiguous":
        leaf, view = random_nonzero(shape, dtype, device), _same
    elif layout == "transposed-contiguous":
        leaf, view = random_nonzero(shape, dtype, device).t().contiguous().t(), _same
    elif layout == "channels-last":
        leaf, view = channels_last(random_nonzero(shape, dtype, device)), _same
    elif layout == "transposed view":
        swapped = (shape[1], shape[0], *shape[2:])
        leaf, view = random_nonzero(swapped, dtype, device), _swap_first_two
    else:
        raise ValueError(f"unknown layout {layout!r}")
    return leaf.detach().requires_grad_(), view


def channels_last(x: torch.Tensor) -> torch.Tensor:
    """x of (N, C, spatial...) with C innermost in memory, same values."""
    if x.dim() in MEMORY_FORMATS:
        return x.contiguous(memory_format=MEMORY_FORMATS[x.dim()])
    return x.movedim(1, -1).contiguous().movedim(-1, 1)


def _same(tensor: torch.Tensor) -> torch.Tensor:
    return tensor


def _swap_first_two(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.transpose(0, 1)
