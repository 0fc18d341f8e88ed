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

from dropbench.kernels.contract import as_int64_bits, check_input, check_p, check_seed
from dropbench.kernels.dispatch import launch
from dropbench.kernels.seeded import _seeded_dropout_op, drops_everything, seeded_dropout_forward

LEAF_MESSAGE = "a leaf Variable that requires grad is being used in an in-place operation."
VIEW_OF_LEAF_MESSAGE = "a view of a leaf Variable that requires grad is being used in an in-place operation."


def _seeded_dropout_inplace(x: torch.Tensor, p: float, seed: int) -> None:
    if drops_everything(p):
        x.zero_()  # exact zeros even where x is inf or NaN, as seeded_dropout gives
    else:
        seeded_dropout_forward(x, p, seed, out=x)


_seeded_dropout_inplace_op = torch.library.custom_op("dropbench::seeded_dropout_", mutates_args=("x",))(
    _seeded_dropout_inplace
)


@_seeded_dropout_inplace_op.register_fake
def _(x, p, seed):
    return None


class SeededDropoutInplaceFunction(torch.autograd.Function):
    """Forward overwrites x; backward is seeded_dropout's kernel on the gradient, same seed."""

    @staticmethod
    def forward(ctx, x, p, seed):
        ctx.p, ctx.seed = p, seed
        launch(_seeded_dropout_inplace_op, _seeded_dropout_inplace, x, p, seed)
        ctx.mark_dirty(x)
        return x

    @staticmethod
    def backward(ctx, grad_out):
        if drops_everything(ctx.p):
            return torch.zeros_like(grad_out), None, None
        return launch(_seeded_dropout_op, seeded_dropout_forward, grad_out, ctx.p, ctx.seed, None), None, None


def _refuse_leaf(x: torch.Tensor) -> None:
    """PyTorch's errors for in-place ops on leaves that require grad, before any write."""
    if x.is_leaf:
        raise RuntimeError(LEAF_MESSAGE)
    if x._base is not None and x._base.is_leaf:
        raise RuntimeError(VIEW_OF_LEAF_MESSAGE)


def dropout_(x: torch.Tensor, p: float, seed: int, training: bool = True) -> torch.Tensor:
    """In-place element dropout with seeded_dropout's mask; returns x itself.

    seed: an int in [0, 2**64 - 1] (per-row seed tensors are not supported in place).
    p = 0 or training=False returns x untouched; p = 1 fills x with exact zeros
    (gradient zero). Autograd: as F.dropout(x, p, inplace=True), see the module docstring.
    """
    check_input(x)
    p = check_p(p)
    seed = as_int64_bits(check_seed(seed))
    if not training or p == 0.0:
        return x
    if not (torch.is_grad_enabled() and x.requires_grad):
        # Nothing for autograd to record: no autograd.Function needed.
        launch(_seeded_dropout_inplace_op, _seeded_dropout_inplace, x, p, seed)
        return x
    _refuse_leaf(x)
    return SeededDropoutInplaceFunction.apply(x, p, seed)
