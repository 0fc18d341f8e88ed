"""The seeded-variational-dropout project's kernels (the `seedrepo_1d` and `seedrepo_2d` backends).

Written from that project's published algorithm: x is (B, T, C) and one keep decision is
drawn per (batch, feature), shared along the sequence dim T. Mask element m = b * C + c
gets one `tl.rand(seed, m)`, kept iff the uniform > p; kept x / (1 - p), dropped 0. No
mask is stored: backward recomputes it from (seed, m) on the gradient.
- 1D: a flat launch over x's elements; each element recomputes its mask position
  (b = i // (T * C), c = i % C) and draws its own uniform, so T elements draw the same one.
- 2D: programs own (BLOCK_T, BLOCK_C) tiles of one batch's (T, C) plane: a program draws
  BLOCK_C uniforms once and applies them to BLOCK_T rows; `triton.autotune` picks the tile.

The harness shares the mask along `dim` of any input (bench.catalogue's variational op):
x is read as (B, T, C) = (dims before `dim`, x.shape[dim], dims after), which is the
project's (B, T, C) when x is (B, T, C) and dim = 1. Like the project, the kernels take
contiguous input only, so another layout is copied first and that copy is timed with them.
Their masks are not dropbench's contract: bench.check checks them statistically.
Offsets are int32, as in the project: inputs of 2**31 elements or more are refused.
"""

import math
import os

import torch
import triton
import triton.language as tl

INT32_LIMIT = 2**31
#: The 1D form's block of flat elements.
BLOCK_SIZE = 1024


@triton.jit
def _variational_1d_kernel(x_ptr, out_ptr, n_elements, T, C, p, seed, BLOCK_SIZE: tl.constexpr):
    offsets = tl.program_id(axis=0) * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)
    in_bounds = offsets < n_elements
    # Every t of one (b, c) lands on the same mask position, so it draws the same uniform.
    mask_offsets = (offsets // (T * C)) * C + offsets % C
    keep = tl.rand(seed, mask_offsets) > p
    x = tl.load(x_ptr + offsets, mask=in_bounds)
    tl.store(out_ptr + offsets, tl.where(keep, x / (1 - p), 0.0), mask=in_bounds)


@triton.jit
def _variational_2d_kernel(x_ptr, out_ptr, T, C, p, seed, BLOCK_T: tl.constexpr, BLOCK_C: tl.constexpr):
    batch = tl.program_id(axis=0)
    t_offsets = tl.program_id(axis=1) * BLOCK_T + tl.arange(0, BLOCK_T)
    c_offsets = tl.program_id(axis=2) * BLOCK_C + tl.arange(0, BLOCK_C)
    # One uniform per mask element of this tile's columns, reused by its BLOCK_T rows.
    keep = tl.rand(seed, batch * C + c_offsets) > p
    offsets = batch * T * C + t_offsets[:, None] * C + c_offsets[None, :]
    in_bounds = (t_offsets[:, None] < T) & (c_offsets[None, :] < C)
    x = tl.load(x_ptr + offsets, mask=in_bounds)
    tl.store(out_ptr + offsets, tl.where(keep[None, :], x / (1 - p), 0.0), mask=in_bounds)


#: The tiles the GPU autotuner tries (the project tunes over block sizes of T and C).
GPU_CONFIGS = [
    triton.Config({"BLOCK_T": block_t, "BLOCK_C": block_c}, num_warps=warps)
    for block_t, block_c, warps in [
        (1, 1024, 4), (4, 256, 4), (8, 128, 4), (16, 64, 4), (16, 128, 4), (32, 64, 4), (32, 128, 8), (64, 64, 8),
    ]
]
#: Under the CPU interpreter each program costs Python time, so one large tile (one config: no tuning).
CPU_CONFIGS = [triton.Config({"BLOCK_T": 16, "BLOCK_C": 256}, num_warps=4)]
#: CUDA's limit on grid axes 1 and 2 (T blocks and C blocks of the 2D form), and its narrowest tile.
GRID_AXIS_LIMIT = 65535
MIN_BLOCK_C = min(config.kwargs["BLOCK_C"] for config in GPU_CONFIGS + CPU_CONFIGS)
_variational_2d_autotuned = triton.autotune(
    configs=CPU_CONFIGS if os.environ.get("TRITON_INTERPRET") == "1" else GPU_CONFIGS, key=["T", "C"],
)(_variational_2d_kernel)


def chosen_config() -> str:
    """The 2D form's tile for its latest autotune key ('' before any launch)."""
    config = getattr(_variational_2d_autotuned, "best_config", None)
    if config is None:
        return ""
    return " ".join([*(f"{name}={value}" for name, value in config.kwargs.items()), f"num_warps={config.num_warps}"])


def as_btc(shape: torch.Size, dim: int) -> tuple[int, int, int]:
    """(B, T, C) of a contiguous tensor of `shape` whose mask is shared along `dim`."""
    return math.prod(shape[:dim]), shape[dim], math.prod(shape[dim + 1:])


def _launch_1d(x: torch.Tensor, p: float, seed: int, dim: int) -> torch.Tensor:
    _, seq, features = as_btc(x.shape, dim)
    output = torch.empty_like(x)
    grid = (triton.cdiv(x.numel(), BLOCK_SIZE),)
    _variational_1d_kernel[grid](x, output, x.numel(), seq, features, p, seed, BLOCK_SIZE=BLOCK_SIZE)
    return output


def _launch_2d(x: torch.Tensor, p: float, seed: int, dim: int) -> torch.Tensor:
    batch, seq, features = as_btc(x.shape, dim)
    if seq > GRID_AXIS_LIMIT or triton.cdiv(features, MIN_BLOCK_C) > GRID_AXIS_LIMIT:
        raise ValueError(f"x read as (B, T, C) = {(batch, seq, features)}: the 2D form's grid allows "
                         f"T <= {GRID_AXIS_LIMIT} and C <= {GRID_AXIS_LIMIT * MIN_BLOCK_C}")
    output = torch.empty_like(x)

    def grid(meta):
        return batch, triton.cdiv(seq, meta["BLOCK_T"]), triton.cdiv(features, meta["BLOCK_C"])

    _variational_2d_autotuned[grid](x, output, seq, features, p, seed)
    return output


LAUNCHERS = {"1d": _launch_1d, "2d": _launch_2d}


def _run(form: str, x: torch.Tensor, p: float, seed: int, dim: int) -> torch.Tensor:
    x = x.contiguous()  # the project's kernels read (B, T, C) in row-major order
    if x.numel() >= INT32_LIMIT:
        raise ValueError(f"x has {x.numel()} elements; the seedrepo kernels' int32 offsets allow < 2**31")
    return LAUNCHERS[form](x, p, seed, dim)


class SeedrepoDropoutFunction(torch.autograd.Function):
    """Forward and backward run the same form with the same seed: the mask is recomputed, not saved."""

    @staticmethod
    def forward(ctx, x, p, seed, dim, form):
        ctx.p, ctx.seed, ctx.dim, ctx.form = p, seed, dim, form
        return _run(form, x, p, seed, dim)

    @staticmethod
    def backward(ctx, grad_out):
        return _run(ctx.form, grad_out, ctx.p, ctx.seed, ctx.dim), None, None, None, None


def _checked(x: torch.Tensor, p: float, dim: int) -> int:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p={p}: allowed: a drop probability in [0, 1]")
    if not -x.dim() <= dim < x.dim():
        raise ValueError(f"dim={dim}: allowed: a dim of the {x.dim()}-d input, -{x.dim()} to {x.dim() - 1}")
    return dim % x.dim()


def variational_dropout_1d(x: torch.Tensor, p: float, seed: int, dim: int = 1) -> torch.Tensor:
    """The 1D form: dropout of x with one mask shared along `dim` (1: T of (B, T, C))."""
    return SeedrepoDropoutFunction.apply(x, float(p), int(seed), _checked(x, p, dim), "1d")


def variational_dropout_2d(x: torch.Tensor, p: float, seed: int, dim: int = 1) -> torch.Tensor:
    """The 2D form: dropout of x with one mask shared along `dim`, autotuned (T, C) tiles."""
    return SeedrepoDropoutFunction.apply(x, float(p), int(seed), _checked(x, p, dim), "2d")
