"""In-place seeded element dropout, `dropout_`: x <- x * keep / (1 - p), written into x itself.

The mask is seeded_dropout's (kernels.contract, element e of x's logical row-major
order), so dropout_(x, p, seed) leaves in x exactly what seeded_dropout(x, p, seed)
returns. Autograd follows torch.nn.functional.dropout(..., inplace=True):

- x a leaf that requires grad, or a view of one (with grad mode on): RuntimeError with
  PyTorch's message, raised before x is touched;
- x a non-leaf: an in-place op in the graph (ctx.mark_dirty), gradient
  grad_out * keep / (1 - p), recomputed from the seed; x's version counter is bumped,
  so a backward that needs x's old value raises as it does for any in-place op;
- grad mode off or x not requiring grad: plain in-place update.

Bytes moved per element: one read and one write of x (the output is x). Contiguous x,
and 2-D x whose rows are contiguous and apart, are written in place by the fast kernel;
any other strides compute into a temporary and copy it back (two reads and two writes),
which also raises PyTorch's error where x has overlapping elements (expanded tensors).
"""

import torch

from dropbench.kernels.contract import Stream, checked, drops_everything
from dropbench.kernels.element import element_forward, replay
from dropbench.kernels.rng import drawn
from dropbench.kernels.stream import FROM_TORCH, KEY_TENSOR, SCALAR
from dropbench.kernels.runtime import define_op, launch

LEAF_MESSAGE = "a leaf Variable that requires grad is being used in an in-place operation."
VIEW_OF_LEAF_MESSAGE = "a view of a leaf Variable that requires grad is being used in an in-place operation."


def _dropout_inplace(x: torch.Tensor, p: float, source: int, key: int, offset: int,
                     seeds: torch.Tensor | None) -> None:
    if drops_everything(p):
        x.zero_()  # exact zeros even where x is inf or NaN, as seeded_dropout gives
    else:
        element_forward(x, p, Stream(source, key, offset, seeds), out=x)


_dropout_inplace_op = define_op(
    "dropout_(Tensor(a!) x, float p, int source, int key, int offset, Tensor? seeds) -> ()",
    _dropout_inplace, lambda *_: None)


class InplaceDropoutFunction(torch.autograd.Function):
    """Forward overwrites x; backward is element dropout's kernel on the gradient, same stream."""

    @staticmethod
    def forward(ctx, x, p, source, key, offset, seeds):
        ctx.p, ctx.source, ctx.key, ctx.offset = p, source, key, offset
        ctx.save_for_backward(seeds)
        launch(_dropout_inplace_op, _dropout_inplace, x, p, source, key, offset, seeds)
        ctx.mark_dirty(x)
        return x

    @staticmethod
    def backward(ctx, grad_out):
        nones = (None,) * 5
        if drops_everything(ctx.p):
            return (torch.zeros_like(grad_out), *nones)
        (seeds,) = ctx.saved_tensors
        grad_in = replay(grad_out, ctx.p, ctx.source, ctx.key, ctx.offset, seeds, None)
        return (grad_in, *nones)


def _refuse_leaf(x: torch.Tensor) -> None:
    """PyTorch's errors for in-place ops on leaves that require grad, before any write."""
    if x.is_leaf:
        raise RuntimeError(LEAF_MESSAGE)
    if x._base is not None and x._base.is_leaf:
        raise RuntimeError(VIEW_OF_LEAF_MESSAGE)


def dropout_(x: torch.Tensor, p: float, seed=None, training: bool = True, *, offset: int = 0) -> torch.Tensor:
    """In-place element dropout with seeded_dropout's mask; returns x itself.

    seed: an int in [0, 2**64 - 1] or a 0-d int64 key tensor; offset as seeded_dropout; no seed:
    the stream is drawn from torch's generator (kernels.rng). (Per-row seeds and RNG states are
    not taken in place.) p = 0 or training=False
    returns x untouched; p = 1 fills x with exact zeros (gradient zero). Autograd: as
    F.dropout(x, p, inplace=True), see the module docstring.
    """
    p, stream = checked(x, p, seed, offset, row_seeds_allowed=False)
    if stream.source not in (SCALAR, KEY_TENSOR, FROM_TORCH):
        raise TypeError("dropout_ takes an int seed or a 0-d int64 key tensor")
    if not training or p == 0.0:
        return x
    stream = drawn(stream, x, p)
    if not (torch.is_grad_enabled() and x.requires_grad):
        # Nothing for autograd to record: no autograd.Function needed.
        launch(_dropout_inplace_op, _dropout_inplace, x, p, *stream)
        return x
    _refuse_leaf(x)
    return InplaceDropoutFunction.apply(x, p, *stream)
