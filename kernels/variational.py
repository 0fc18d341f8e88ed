"""Variational (locked) dropout: one keep mask shared along `dim`, no mask kept for backward.

The mask has x's shape with size 1 along `dim`; its element m (row-major index in
that reduced shape) follows the same contract as element dropout
(kernels.contract), so variational_dropout(x, p, seed, dim) keeps x[..., i, ...]
iff the element mask of the reduced shape keeps position m, for every i.

View x as (A, D, B): A = the dims before `dim`, D = x.shape[dim], B = the dims
after, so m = a * B + b. Each program takes a [BLOCK_D, BLOCK_M] tile: it draws
BLOCK_M mask values (one Philox call each) and reuses them for BLOCK_D rows, so
the arithmetic per element falls as 1 / BLOCK_D while bytes stay one read and
one write per element. When `dim` is the last dim (B = 1) the mask runs along A
and the shared axis is the contiguous one; the same kernel covers both through
strides.

Short runs: when the shared axis is the contiguous one and x is contiguous (dim
last, or channel dropout's (N*C, S) feature maps), x is runs of D consecutive
elements, run r taking mask element r. A [BLOCK_D, BLOCK_M] tile fits such runs
badly when D is short (D = 49 for a 7 x 7 map: a 64-row tile wastes a quarter of
its lanes, and rows of 49 elements break vectorized loads). The runs kernel reads
x as element dropout does, BLOCK consecutive elements per program with wide
loads, draws the keep decisions of the (at most 64) runs the block touches into
two 32-bit words, and gives each element the bit of its run.
"""

import functools

import torch
import triton
import triton.language as tl

from dropbench.kernels.contract import (
    as_int64_bits,
    check_dim,
    check_input,
    check_p,
    check_seed,
)
from dropbench.kernels.dispatch import launch
from dropbench.kernels.launcher import Launcher, autotune_bench, latest_config
from dropbench.kernels.seeded import (
    INT32_LIMIT,
    _apply_keep,
    _element_words,
    _keeps,
    _scale_kept,
    describe_config,
    drops_everything,
    keep_constants,
    merge_dims,
)


@triton.jit
def _locked_tile(pid, D, M, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr):
    """Program pid's (outer index o, [BLOCK_D] shared-axis indices d, [BLOCK_M] mask-axis indices m,
    [BLOCK_D, BLOCK_M] in-bounds mask); m blocks vary fastest, then d blocks, then o."""
    m_blocks = tl.cdiv(M, BLOCK_M)
    d_blocks = tl.cdiv(D, BLOCK_D)
    o = pid // (m_blocks * d_blocks)
    d = ((pid // m_blocks) % d_blocks) * BLOCK_D + tl.arange(0, BLOCK_D)
    m = (pid % m_blocks) * BLOCK_M + tl.arange(0, BLOCK_M)
    return o, d, m, (d[:, None] < D) & (m[None, :] < M)


@triton.jit(do_not_specialize=["seed", "threshold", "scale_bits"])
def _locked_dropout_kernel(
    x_ptr, out_ptr, seed, threshold, scale_bits,
    outer, D, M,
    x_stride_outer, x_stride_d, x_stride_m,
    out_stride_outer, out_stride_d, out_stride_m,
    WIDE_INDEX: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr,
):
    """Element (o, d, m) is kept iff the mask element o * M + m is kept."""
    pid = tl.program_id(0)
    if WIDE_INDEX:
        pid = pid.to(tl.int64)
    o, d, m, in_bounds = _locked_tile(pid, D, M, BLOCK_D, BLOCK_M)
    word = _element_words(seed, o * M + m)  # BLOCK_M mask values, reused for BLOCK_D rows
    x_offsets = o * x_stride_outer + d[:, None] * x_stride_d + m[None, :] * x_stride_m
    x = tl.load(x_ptr + x_offsets, mask=in_bounds)
    y = _apply_keep(x, word[None, :], threshold, scale_bits)
    out_offsets = o * out_stride_outer + d[:, None] * out_stride_d + m[None, :] * out_stride_m
    tl.store(out_ptr + out_offsets, y, mask=in_bounds)


@triton.jit
def _runs_keep(seed, threshold, start, run_len, BLOCK: tl.constexpr):
    """Keep decisions of elements start .. start + BLOCK - 1 of runs of run_len elements (run r: mask element r).

    Needs BLOCK <= max_runs_block(run_len): the block then touches at most 64 runs.
    """
    first_run = start // run_len
    local = (start - first_run * run_len).to(tl.int32) + tl.arange(0, BLOCK)  # from the first run's start
    # local // run_len through a float reciprocal (an integer division is tens of instructions per
    # element); the estimate is within 1 of the quotient, and the two compares make it exact.
    run = ((local.to(tl.float32) + 0.5) * (1.0 / run_len.to(tl.float32))).to(tl.int32)
    run += (local >= (run + 1) * run_len).to(tl.int32) - (local < run * run_len).to(tl.int32)
    # One Philox word per run (the contract's word r mod 4 of counter r div 4), packed into two words of bits.
    runs = tl.arange(0, 64)
    kept = _keeps(_element_words(seed, first_run + runs), threshold)
    low = tl.sum(tl.where(kept & (runs < 32), 1 << (runs % 32), 0), axis=0)  # distinct bits: sum is OR
    high = tl.sum(tl.where(kept & (runs >= 32), 1 << (runs % 32), 0), axis=0)
    bits = tl.where(run < 32, low, high)
    return ((bits >> (run % 32)) & 1) != 0


@triton.jit
def _runs_tile(pid, seed, threshold, numel, run_len, BLOCK: tl.constexpr):
    """Program pid's [BLOCK] consecutive offsets, their in-bounds mask and their keep decisions."""
    start = pid * BLOCK
    offsets = start + tl.arange(0, BLOCK)
    return offsets, offsets < numel, _runs_keep(seed, threshold, start, run_len, BLOCK)


@triton.jit(do_not_specialize=["seed", "threshold", "scale_bits"])
def _runs_dropout_kernel(
    x_ptr, out_ptr, seed, threshold, scale_bits, numel, run_len,
    WIDE_INDEX: tl.constexpr, BLOCK: tl.constexpr,
):
    """x as runs of run_len contiguous elements: element e is kept iff mask element e // run_len is."""
    pid = tl.program_id(0)
    if WIDE_INDEX:
        pid = pid.to(tl.int64)
    offsets, in_bounds, keep = _runs_tile(pid, seed, threshold, numel, run_len, BLOCK)
    x = tl.load(x_ptr + offsets, mask=in_bounds)
    tl.store(out_ptr + offsets, _scale_kept(x, keep, scale_bits), mask=in_bounds)


#: Runs the runs kernel takes: from 17 elements (a 1024 block then spans at most 62 runs, 64 fit
#: the bit words) to 2**24 (its int32 index arithmetic stays exact); other layouts take the tiles.
MIN_RUN, MAX_RUN = 17, 2**24


def max_runs_block(run_len: int) -> int:
    """The largest BLOCK whose elements span at most 64 runs of run_len, wherever the block starts."""
    return 62 * run_len + 2


def fitting_runs_configs(configs, named_args, **kwargs):
    """Autotuner prune: the runs configs whose BLOCK fits 64 runs of this run_len."""
    return [config for config in configs if config.kwargs["BLOCK"] <= max_runs_block(named_args["run_len"])]


RUNS_CONFIGS = [
    triton.Config({"BLOCK": block}, num_warps=warps)
    for block, warps in [(1024, 4), (2048, 4), (2048, 8), (4096, 4), (4096, 8), (8192, 8)]
]
_runs_dropout_autotuned = triton.autotune(
    configs=RUNS_CONFIGS, key=["numel", "run_len"], do_bench=autotune_bench,
    prune_configs_by={"early_config_prune": fitting_runs_configs},
)(_runs_dropout_kernel)
#: Under the CPU interpreter: the largest block every run length from MIN_RUN fits.
RUNS_CPU_CONFIG = triton.Config({"BLOCK": 1024}, num_warps=4)


LOCKED_CONFIGS = [
    triton.Config({"BLOCK_D": block_d, "BLOCK_M": block_m}, num_warps=warps)
    for block_d, block_m, warps in [
        (1, 1024, 4), (1, 4096, 8),
        (4, 512, 4), (4, 1024, 4), (4, 2048, 8),
        (16, 256, 4), (16, 512, 8), (32, 128, 4), (64, 64, 4),
        # Long runs along D for when D is the contiguous axis (dim last, or channel dropout's (N*C, S)
        # feature maps): on an H100 they take (128, 512, 56*56) fp16 channel dropout from 87% to ~96% of copy.
        (128, 16, 4), (256, 8, 4), (512, 4, 4), (1024, 2, 4), (2048, 2, 8),
    ]
]
_locked_dropout_autotuned = triton.autotune(
    configs=LOCKED_CONFIGS, key=["outer", "D", "M", "x_stride_d", "x_stride_m"], do_bench=autotune_bench
)(_locked_dropout_kernel)

#: Under the CPU interpreter each program costs ~30 ms of Python, so few large tiles win.
CPU_CONFIG = triton.Config({"BLOCK_D": 64, "BLOCK_M": 256}, num_warps=4)


_locked = Launcher(_locked_dropout_kernel, _locked_dropout_autotuned, cpu_config=CPU_CONFIG)
_runs = Launcher(_runs_dropout_kernel, _runs_dropout_autotuned, cpu_config=RUNS_CPU_CONFIG)


def chosen_config() -> str:
    """The config of the last launch (tiles or runs kernel), the autotuner's choice on a GPU ('' before any)."""
    return describe_config(latest_config(_locked, _runs))


def _collapse(sizes, strides):
    """(size, stride) of one dim standing for `sizes`, or None when the dims don't merge."""
    merged_sizes, merged_strides = merge_dims(sizes, strides)
    if len(merged_sizes) != 1:
        return None
    return merged_sizes[0], merged_strides[0]


def _as_outer_d_m(x: torch.Tensor, dim: int):
    """(outer, D, M) sizes and x's strides for the kernel, or None when x needs a copy."""
    return _layout(tuple(x.shape), tuple(x.stride()), dim)


@functools.lru_cache(maxsize=1024)
def _layout(shape: tuple, strides: tuple, dim: int):
    """_as_outer_d_m of a shape and strides: pure, so computed once per layout instead of per launch."""
    before = _collapse(shape[:dim], strides[:dim]) if dim > 0 else (1, 0)
    after = _collapse(shape[dim + 1:], strides[dim + 1:]) if dim < len(shape) - 1 else (1, 0)
    if before is None or after is None:
        return None
    (size_a, stride_a), (size_b, stride_b) = before, after
    size_d, stride_d = shape[dim], strides[dim]
    out_strides_abd = (size_d * size_b, size_b, 1)  # contiguous output, as (A, D, B)
    if size_b == 1:
        # dim is last: the mask runs along A, so A becomes the mask axis of a single "outer".
        sizes, x_strides, out_strides = (1, size_d, size_a), (0, stride_d, stride_a), (0, out_strides_abd[1],
                                                                                       out_strides_abd[0])
    else:
        sizes, x_strides, out_strides = (size_a, size_d, size_b), (stride_a, stride_d, stride_b), out_strides_abd
    span = sum((size - 1) * abs(stride) for size, stride in zip(shape, strides)) + 1
    wide = max(span, sizes[0] * sizes[1] * sizes[2]) > INT32_LIMIT
    return sizes, x_strides, out_strides, wide


def variational_dropout_forward(x: torch.Tensor, p: float, seed: int, dim: int, config=None) -> torch.Tensor:
    """Launch the kernel for 0 < p < 1 (arguments already checked). Returns a new contiguous tensor.

    `config` (a triton.Config) forces one launch configuration and kernel: BLOCK_D and BLOCK_M
    for the tiles, BLOCK for the runs kernel (see launch_shared).
    """
    out = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    if x.numel() == 0:
        return out
    layout = _as_outer_d_m(x, dim)
    if layout is None:
        x = x.contiguous()  # dims around `dim` that no stride merges: documented copy
        layout = _as_outer_d_m(x, dim)
    threshold, bits = keep_constants(p)
    launch_shared(_locked, _runs, (x, out, seed, threshold, bits), layout, config)
    return out


def takes_runs(layout) -> bool:
    """Whether x and out are runs of D contiguous elements at the same offsets, run r sharing mask
    element r, with D in the runs kernel's range."""
    (outer, size_d, size_m), x_strides, out_strides, _ = layout

    def is_runs(strides):
        return strides[1] == 1 and (size_m == 1 or strides[2] == size_d)

    return outer == 1 and is_runs(x_strides) and is_runs(out_strides) and MIN_RUN <= size_d <= MAX_RUN


def launch_shared(tiles_launcher, runs_launcher, leading_args: tuple, layout, config) -> None:
    """Launch a shared-mask kernel: the runs kernel where takes_runs(layout), else the tiles.

    A given config picks the kernel too: BLOCK for the runs kernel (ValueError where the layout
    does not take it), BLOCK_D and BLOCK_M for the tiles. Else the launcher's default (autotuned on a GPU).
    """
    if config is None or "BLOCK" in config.kwargs:
        if takes_runs(layout):
            _launch_runs(runs_launcher, leading_args, layout, config)
            return
        if config is not None:
            raise ValueError(f"config {config} is for the runs kernel, which this layout does not take: {layout}")
    launch_locked(tiles_launcher, leading_args, layout, config)


def _launch_runs(launcher, leading_args: tuple, layout, config) -> None:
    (_, size_d, size_m), _, _, wide = layout
    numel = size_d * size_m
    if config is not None and config.kwargs["BLOCK"] > max_runs_block(size_d):
        raise ValueError(f"BLOCK={config.kwargs['BLOCK']} spans more than 64 runs of {size_d}")
    launcher(lambda meta: (triton.cdiv(numel, meta["BLOCK"]),), (*leading_args, numel, size_d),
             {"WIDE_INDEX": wide}, config)


def launch_locked(launcher, leading_args: tuple, layout, config) -> None:
    """Launch a [BLOCK_D, BLOCK_M]-tiled kernel: leading_args (x first), then the layout's sizes and strides.

    With the given config, else the launcher's default (autotuned on a GPU).
    """
    (outer, size_d, size_m), x_strides, out_strides, wide = layout
    launcher(
        lambda meta: (outer * triton.cdiv(size_d, meta["BLOCK_D"]) * triton.cdiv(size_m, meta["BLOCK_M"]),),
        (*leading_args, outer, size_d, size_m, *x_strides, *out_strides),
        {"WIDE_INDEX": wide}, config,
    )


@torch.library.custom_op("dropbench::variational_dropout", mutates_args=())
def _variational_dropout_op(x: torch.Tensor, p: float, seed: int, dim: int) -> torch.Tensor:
    return variational_dropout_forward(x, p, seed, dim)


@_variational_dropout_op.register_fake
def _(x, p, seed, dim):
    return torch.empty(x.shape, dtype=x.dtype, device=x.device)


class VariationalDropoutFunction(torch.autograd.Function):
    """Forward and backward are the same locked kernel; only (p, seed, dim) are kept."""

    @staticmethod
    def forward(ctx, x, p, seed, dim):
        ctx.p, ctx.seed, ctx.dim = p, seed, dim
        if drops_everything(p):
            return torch.zeros(x.shape, dtype=x.dtype, device=x.device)
        return launch(_variational_dropout_op, variational_dropout_forward, x, p, seed, dim)

    @staticmethod
    def backward(ctx, grad_out):
        if drops_everything(ctx.p):
            return torch.zeros_like(grad_out), None, None, None
        grad_in = launch(_variational_dropout_op, variational_dropout_forward, grad_out, ctx.p, ctx.seed, ctx.dim)
        return grad_in, None, None, None


def variational_dropout(x: torch.Tensor, p: float, seed: int, dim: int, training: bool = True) -> torch.Tensor:
    """Dropout with one mask shared along `dim` (e.g. the token dim of (T, B, C) or (B, T, C)).

    The mask equals seeded_dropout's mask for x's shape with size 1 along `dim`.
    p = 0 or training=False returns x itself; p = 1 returns zeros with zero gradients.
    """
    check_input(x)
    p = check_p(p)
    seed = as_int64_bits(check_seed(seed))
    if x.dim() == 0:
        raise ValueError("variational_dropout needs x with at least 1 dim to share the mask along")
    dim = check_dim(dim, x.dim())
    if not training or p == 0.0:
        return x
    return VariationalDropoutFunction.apply(x, p, seed, dim)

