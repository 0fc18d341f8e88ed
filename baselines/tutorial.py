"""The Triton tutorial's low-memory seeded dropout, as users copy it (the `tutorial` backend).

Written from the algorithm of Triton's tutorial 04 ("Low-Memory Dropout"), the kernel that
tritonbench's `low_mem_dropout` also times:
- one `tl.rand(seed, offset)` per element, offset = the element's flat index;
- kept iff that uniform > p, kept values x / (1 - p), dropped 0;
- contiguous input only: any other layout is copied first (`.contiguous()`), and that copy
  is part of what the backend costs, so it is timed with it;
- no mask is stored: backward reruns the same kernel on the gradient with the same seed.

Its mask is not dropbench's contract (kernels.contract), so bench.check checks it
statistically, like eager's. Bytes per element: one read and one write (plus a read and a
write more for the copy of a non-contiguous input). Offsets are int32, as in the tutorial:
inputs of 2**31 elements or more are refused.
"""

import torch
import triton
import triton.language as tl

#: The tutorial's block: 1024 elements per program.
BLOCK_SIZE = 1024
INT32_LIMIT = 2**31


@triton.jit
def _tutorial_dropout_kernel(x_ptr, out_ptr, n_elements, p, seed, BLOCK_SIZE: tl.constexpr):
    offsets = tl.program_id(axis=0) * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)
    in_bounds = offsets < n_elements
    x = tl.load(x_ptr + offsets, mask=in_bounds)
    keep = tl.rand(seed, offsets) > p
    output = tl.where(keep, x / (1 - p), 0.0)
    tl.store(out_ptr + offsets, output, mask=in_bounds)


def _launch(x: torch.Tensor, p: float, seed: int) -> torch.Tensor:
    """The kernel over x's flat (row-major) elements; a contiguous copy first where x is not."""
    x = x.contiguous()
    if x.numel() >= INT32_LIMIT:
        raise ValueError(f"x has {x.numel()} elements; the tutorial kernel's int32 offsets allow < 2**31")
    output = torch.empty_like(x)
    grid = (triton.cdiv(x.numel(), BLOCK_SIZE),)
    _tutorial_dropout_kernel[grid](x, output, x.numel(), p, seed, BLOCK_SIZE=BLOCK_SIZE)
    return output


class TutorialDropoutFunction(torch.autograd.Function):
    """Forward and backward are the same kernel with the same seed: nothing is saved."""

    @staticmethod
    def forward(ctx, x, p, seed):
        ctx.p, ctx.seed = p, seed
        return _launch(x, p, seed)

    @staticmethod
    def backward(ctx, grad_out):
        # The gradient's flat index is the output's, so the same (seed, offset) redraws the same mask.
        return _launch(grad_out, ctx.p, ctx.seed), None, None


def dropout(x: torch.Tensor, p: float, seed: int) -> torch.Tensor:
    """The tutorial's seeded dropout of x (any shape, read in row-major order) with drop probability p."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p={p}: allowed: a drop probability in [0, 1]")
    return TutorialDropoutFunction.apply(x, float(p), int(seed))
