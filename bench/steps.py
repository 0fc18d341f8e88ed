"""What one timed call does in each direction, for any (op, backend) implementation.

fwd runs the op on an x that requires grad, as in training (so autograd records
the graph and whatever the op saves for backward); bwd differentiates one y made
up front, with retain_graph so it can be repeated, and torch.autograd.grad so no
gradient accumulates into x.grad; fwd+bwd is both in one call.

In-place ops (dropout_inplace) refuse a leaf that requires grad, as PyTorch does, so
for them: fwd runs the op on a buffer that does not require grad (again and again on
the same buffer: its values drift to 0, inf and NaN, its time does not); bwd
differentiates y = op(leaf.clone()) with respect to the leaf (clone's backward hands the
gradient on without a kernel); fwd+bwd is not timed, since its forward would have to
include the clone, a copy that is not the op's cost (INPLACE_FWD_BWD says so in the CSV).
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch

INPLACE_FWD_BWD = ("not timed: an in-place op refuses a leaf that requires grad, so a fwd+bwd step would "
                   "have to clone its input first, a copy that is not the op's; fwd and bwd are timed alone")


@dataclass(frozen=True)
class Calls:
    """The calls one point times.

    forward: the timed fwd. graph_forward: an output with an autograd graph back to `leaf`,
    for bwd, fwd+bwd and the memory measurements (the same call, except for in-place ops).
    """

    forward: Callable[[], torch.Tensor]
    graph_forward: Callable[[], torch.Tensor]
    leaf: torch.Tensor
    fwd_bwd: bool  # whether a fwd+bwd step measures the op (not for in-place ops)


def calls_for(op: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, inplace: bool) -> Calls:
    """The Calls of op on x (x becomes the leaf that requires grad; in place, a buffer like it is made)."""
    x.requires_grad_()
    if not inplace:
        return Calls(lambda: op(x), lambda: op(x), x, True)
    buffer = x.detach().clone()
    return Calls(lambda: op(buffer), lambda: op(x.clone()), x, False)


def make_step(direction: str, calls: Calls, grad_out: torch.Tensor) -> Callable[[], object]:
    """The callable to time for `direction`; bwd runs graph_forward once, now, on the current stream."""
    if direction == "fwd":
        return calls.forward
    if direction == "bwd":
        y = calls.graph_forward()
        return lambda: torch.autograd.grad(y, calls.leaf, grad_out, retain_graph=True)
    if direction == "fwd+bwd":
        if not calls.fwd_bwd:
            raise ValueError(INPLACE_FWD_BWD)
        return lambda: torch.autograd.grad(calls.graph_forward(), calls.leaf, grad_out)
    raise ValueError(f"unknown direction {direction!r}")
