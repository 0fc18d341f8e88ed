"""What one timed call does in each direction, for any (op, backend) implementation.

fwd runs the op on an x that requires grad, as in training (so autograd records
the graph and whatever the op saves for backward); bwd differentiates one y made
up front, with retain_graph so it can be repeated, and torch.autograd.grad so no
gradient accumulates into x.grad; fwd+bwd is both in one call.
"""

from typing import Callable

import torch


def make_step(direction: str, forward: Callable[[], torch.Tensor], x: torch.Tensor,
              grad_out: torch.Tensor) -> Callable[[], object]:
    """The callable to time for `direction`; bwd runs `forward` once, now, on the current stream."""
    if direction == "fwd":
        return forward
    if direction == "bwd":
        y = forward()
        return lambda: torch.autograd.grad(y, x, grad_out, retain_graph=True)
    if direction == "fwd+bwd":
        return lambda: torch.autograd.grad(forward(), x, grad_out)
    raise ValueError(f"unknown direction {direction!r}")
