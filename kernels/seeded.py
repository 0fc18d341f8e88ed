"""Seeded element dropout: y = x * keep / (1 - p), with no mask kept for backward.

keep(e) follows the contract in kernels.contract: word (e mod 4) of
Philox4x32-10(seed, e div 4) >= round(p * 2**32), e the logical row-major index.
Backward is the same kernel on the gradient with the same seed, so autograd
saves nothing of the input's size.

Bytes moved per element: one read and one write of the dtype (2 x 2 bytes in
fp16). Operations: one Philox call (10 rounds) per 4 elements, one compare, one
multiply. Each program takes BLOCK consecutive elements as a [BLOCK/4, 4] tile:
row i of the tile is the four words of counter (start/4 + i), so every random
bit is used and the mask does not depend on BLOCK.

Layouts: contiguous tensors and 2-D tensors whose rows are contiguous take the
fast kernel; any other strides (transposes, permutes, up to 4 dims after
merging) take a strided kernel that computes one Philox call per element (4x
the arithmetic, still one read and one write). Tensors with more than 4
unmergeable dims are copied to contiguous first. The output is always contiguous.
"""

import functools

import torch
import triton
import triton.language as tl

from dropbench.kernels.contract import (
    TWO_POW_32,
    as_int64_bits,
    check_input,
    check_p,
    check_row_seeds,
    check_seed,
    keep_threshold,
    scale_bits,
)
from dropbench.kernels.dispatch import launch
from dropbench.kernels.launcher import Launcher, autotune_bench

INT32_LIMIT = 2**31 - 1


@triton.jit
def _pick_word(lane, r0, r1, r2, r3):
    """Word `lane` (0..3) of one Philox call; lane has the shape of the result."""
    return tl.where(lane == 0, r0, tl.where(lane == 1, r1, tl.where(lane == 2, r2, r3)))


@triton.jit
def _element_words(seed, index):
    """R(e) for each logical index e: word e mod 4 of Philox(seed, e div 4), one call per element."""
    r0, r1, r2, r3 = tl.randint4x(seed, index // 4)
    return _pick_word(index % 4, r0, r1, r2, r3)


@triton.jit
def _rows_tile(pid, cols, BLOCK: tl.constexpr):
    """Program pid's (row, first column, [BLOCK/4, 4] tile of columns, in-bounds mask)."""
    blocks_per_row = tl.cdiv(cols, BLOCK)
    row = pid // blocks_per_row
    col_start = (pid % blocks_per_row) * BLOCK
    cols_in_tile = col_start + tl.arange(0, BLOCK // 4)[:, None] * 4 + tl.arange(0, 4)[None, :]
    return row, col_start, cols_in_tile, cols_in_tile < cols


@triton.jit
def _rows_tile_words(key, first_counter, BLOCK: tl.constexpr):
    """The [BLOCK/4, 4] tile of words whose row i is the four words of counter first_counter + i.

    One Philox call per four elements; as first_counter = (first element) div 4 with the
    first element a multiple of 4, element e gets word e mod 4 of counter e div 4 whatever BLOCK is.
    """
    r0, r1, r2, r3 = tl.randint4x(key, first_counter + tl.arange(0, BLOCK // 4))
    lanes = tl.arange(0, 4)[None, :]
    return _pick_word(lanes, r0[:, None], r1[:, None], r2[:, None], r3[:, None])


@triton.jit
def _keeps(word, threshold):
    """The contract's keep decision: the 32-bit word, read unsigned, is >= T(p)."""
    return word.to(tl.uint32, bitcast=True) >= threshold.to(tl.uint32)


@triton.jit
def _apply_keep(x, word, threshold, scale_bits):
    """x * scale where word >= threshold, else exactly 0, computed in fp32 (fp64 for fp64)."""
    return _scale_kept(x, _keeps(word, threshold), scale_bits)


@triton.jit
def _scale_kept(x, keep, scale_bits):
    """x * scale where keep, else exactly 0, computed in fp32 (fp64 for fp64)."""
    scale = scale_bits.to(tl.float64, bitcast=True)
    if x.dtype == tl.float64:
        scaled = x * scale
    else:
        scaled = x.to(tl.float32) * scale.to(tl.float32)
    return tl.where(keep, scaled, 0.0).to(x.dtype)


@triton.jit(do_not_specialize=["seed", "threshold", "scale_bits"])
def _dropout_rows_kernel(
    x_ptr, out_ptr, row_seeds_ptr, seed, threshold, scale_bits,
    rows, cols, x_row_stride, out_row_stride, stream_row_len,
    PER_ROW_SEED: tl.constexpr, WIDE_INDEX: tl.constexpr, BLOCK: tl.constexpr,
):
    """Rows of `cols` contiguous elements; stream index e = row * stream_row_len + col."""
    pid = tl.program_id(0)
    if WIDE_INDEX:
        pid = pid.to(tl.int64)
    row, col_start, cols_in_tile, in_bounds = _rows_tile(pid, cols, BLOCK)
    if PER_ROW_SEED:
        key = tl.load(row_seeds_ptr + row)
    else:
        key = seed
    # col_start and stream_row_len are multiples of 4, so the tile starts a counter.
    word = _rows_tile_words(key, (row * stream_row_len + col_start) // 4, BLOCK)

    x = tl.load(x_ptr + row * x_row_stride + cols_in_tile, mask=in_bounds)
    y = _apply_keep(x, word, threshold, scale_bits)
    tl.store(out_ptr + row * out_row_stride + cols_in_tile, y, mask=in_bounds)


@triton.jit(do_not_specialize=["seed", "threshold", "scale_bits"])
def _dropout_strided_kernel(
    x_ptr, out_ptr, seed, threshold, scale_bits, numel,
    size1, size2, size3, stride0, stride1, stride2, stride3,
    WIDE_INDEX: tl.constexpr, BLOCK: tl.constexpr,
):
    """Any 4-D strides: each element finds its own input offset and Philox word."""
    pid = tl.program_id(0)
    if WIDE_INDEX:
        pid = pid.to(tl.int64)
    index = pid * BLOCK + tl.arange(0, BLOCK)
    in_bounds = index < numel
    rest = index
    i3 = rest % size3
    rest = rest // size3
    i2 = rest % size2
    rest = rest // size2
    i1 = rest % size1
    i0 = rest // size1
    x_offsets = i0 * stride0 + i1 * stride1 + i2 * stride2 + i3 * stride3

    word = _element_words(seed, index)
    x = tl.load(x_ptr + x_offsets, mask=in_bounds)
    y = _apply_keep(x, word, threshold, scale_bits)
    tl.store(out_ptr + index, y, mask=in_bounds)


ROWS_CONFIGS = [
    triton.Config({"BLOCK": block}, num_warps=warps)
    for block in (1024, 2048, 4096, 8192)
    for warps in (4, 8)
]
_dropout_rows_autotuned = triton.autotune(
    configs=ROWS_CONFIGS, key=["rows", "cols", "x_row_stride"], do_bench=autotune_bench
)(_dropout_rows_kernel)
# In place (out is x) each benchmarking launch would drop out x again: the autotuner restores it between runs.
_dropout_rows_inplace_autotuned = triton.autotune(
    configs=ROWS_CONFIGS, key=["rows", "cols", "x_row_stride"], restore_value=["out_ptr"], do_bench=autotune_bench
)(_dropout_rows_kernel)

#: The strided kernel's launch on a GPU (it is the rare path, so not autotuned).
STRIDED_CONFIG = triton.Config({"BLOCK": 1024}, num_warps=4)
#: Under the CPU interpreter each program costs ~30 ms of Python, so few large blocks win.
CPU_CONFIG = triton.Config({"BLOCK": 16384}, num_warps=4)


def describe_config(config) -> str:
    """A triton.Config as 'BLOCK=4096 num_warps=8', for the results CSV."""
    if config is None:
        return ""
    parts = [f"{name}={value}" for name, value in sorted(config.kwargs.items())]
    return " ".join(parts + [f"num_warps={config.num_warps}"])


def chosen_config() -> str:
    """The config of the last launch of the fast kernel, the autotuner's choice on a GPU ('' before any)."""
    return describe_config(_rows.last_config)


def chosen_inplace_config() -> str:
    """The config of the last in-place launch of the fast kernel ('' before any)."""
    return describe_config(_rows_inplace.last_config)


def merge_dims(shape, strides):
    """Merge neighbouring dims that are contiguous with each other; drop size-1 dims.

    Returns (sizes, strides) of the fewest dims that address the same elements in
    the same logical order.
    """
    merged = []
    for size, stride in zip(shape, strides):
        if size == 1:
            continue
        if merged and merged[-1][1] == size * stride:
            merged[-1] = [merged[-1][0] * size, stride]
        else:
            merged.append([size, stride])
    return [m[0] for m in merged] or [1], [m[1] for m in merged] or [1]


_rows = Launcher(_dropout_rows_kernel, _dropout_rows_autotuned, cpu_config=CPU_CONFIG)
_rows_inplace = Launcher(_dropout_rows_kernel, _dropout_rows_inplace_autotuned, cpu_config=CPU_CONFIG)
_strided = Launcher(_dropout_strided_kernel, cpu_config=CPU_CONFIG, gpu_config=STRIDED_CONFIG)


@functools.lru_cache(maxsize=256)
def keep_constants(p: float) -> tuple[int, int]:
    """(T(p), bits of 1 / (1 - p)) for 0 < p < 1: computed once per p, not per launch."""
    return keep_threshold(p), scale_bits(p)


def _run_rows(x, out, seed, row_seeds, p, rows, cols, x_row_stride, out_row_stride, stream_row_len, config):
    """The fast kernel over `rows` rows of `cols` contiguous elements (x and out may be flat tensors)."""
    threshold, bits = keep_constants(p)
    per_row = row_seeds is not None
    wide = rows * cols + rows * abs(x_row_stride) > INT32_LIMIT
    args = (
        x, out, row_seeds if per_row else x, 0 if per_row else seed, threshold, bits,
        rows, cols, x_row_stride, out_row_stride, stream_row_len,
    )
    launcher = _rows_inplace if out.data_ptr() == x.data_ptr() else _rows
    launcher(lambda meta: (rows * triton.cdiv(cols, meta["BLOCK"]),), args,
             {"PER_ROW_SEED": per_row, "WIDE_INDEX": wide}, config)


def _run_strided(x, out, seed, p, config):
    sizes, strides = merge_dims(x.shape, x.stride())
    if len(sizes) > 4:
        # Rare (5+ dims that no stride merges): documented copy to contiguous.
        x = x.contiguous()
        sizes, strides = [x.numel()], [1]
    sizes = [1] * (4 - len(sizes)) + sizes
    strides = [0] * (4 - len(strides)) + strides
    numel = x.numel()
    span = sum((size - 1) * abs(stride) for size, stride in zip(sizes, strides))
    wide = max(numel, span) > INT32_LIMIT
    threshold, bits = keep_constants(p)
    _strided(lambda meta: (triton.cdiv(numel, meta["BLOCK"]),),
             (x, out, seed, threshold, bits, numel, *sizes[1:], *strides),
             {"WIDE_INDEX": wide}, config)


def _writes_through(x: torch.Tensor, out: torch.Tensor, row_seeds) -> bool:
    """Whether the fast kernel can write into `out` directly: x takes it without a copy and out
    has x's strides, so element e of x and of out sit at one offset (out may be x itself)."""
    if out.shape != x.shape or out.dtype != x.dtype or out.stride() != x.stride():
        return False
    if x.is_contiguous():
        return True
    # Rows that do not overlap each other (stride(0) >= cols also rules out expanded rows).
    rows_ok = x.dim() == 2 and x.stride(1) == 1 and x.stride(0) >= x.shape[1]
    return rows_ok and (row_seeds is not None or x.shape[1] % 4 == 0)


def seeded_dropout_forward(
    x: torch.Tensor, p: float, seed: int, row_seeds=None, config=None, out=None
) -> torch.Tensor:
    """Launch the kernel for 0 < p < 1 (arguments already checked). Returns a new contiguous tensor.

    `config` (a triton.Config with BLOCK) forces one launch configuration instead of autotuning:
    tests use it to show that the mask does not depend on it.
    `out` (optional, x's shape and dtype; x itself for in-place dropout) receives the result and
    is returned. Where x takes the fast kernel and out has x's strides the kernel writes into it
    directly; otherwise the result is computed into a new tensor and copied in (one more read
    and write), and that copy raises PyTorch's error when out has overlapping elements.
    """
    if out is not None and not _writes_through(x, out, row_seeds):
        return out.copy_(seeded_dropout_forward(x, p, seed, row_seeds, config))
    if out is None:
        out = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    numel = x.numel()
    if numel == 0:
        return out
    if row_seeds is not None:
        if x.stride(1) != 1:
            x = x.contiguous()  # per-row seeds with a non-unit column stride: documented copy
        rows, cols = x.shape
        _run_rows(x, out, 0, row_seeds, p, rows, cols, x.stride(0), out.stride(0), 0, config)
    elif x.is_contiguous():
        # One row of numel elements; x and out are passed as they are (a view would cost host time).
        _run_rows(x, out, seed, None, p, 1, numel, numel, numel, 0, config)
    elif x.dim() == 2 and x.stride(1) == 1 and x.shape[1] % 4 == 0:
        rows, cols = x.shape
        _run_rows(x, out, seed, None, p, rows, cols, x.stride(0), out.stride(0), cols, config)
    else:
        _run_strided(x, out, seed, p, config)
    return out


def drops_everything(p: float) -> bool:
    """p so close to 1 that T(p) = 2**32: no 32-bit word can be kept."""
    return keep_threshold(p) >= TWO_POW_32


@torch.library.custom_op("dropbench::seeded_dropout", mutates_args=())
def _seeded_dropout_op(x: torch.Tensor, p: float, seed: int, row_seeds: torch.Tensor | None) -> torch.Tensor:
    return seeded_dropout_forward(x, p, seed, row_seeds)


@_seeded_dropout_op.register_fake
def _(x, p, seed, row_seeds):
    return torch.empty(x.shape, dtype=x.dtype, device=x.device)


class SeededDropoutFunction(torch.autograd.Function):
    """Forward and backward are the same seeded kernel; only (p, seed) are kept."""

    @staticmethod
    def forward(ctx, x, p, seed, row_seeds):
        ctx.p, ctx.seed = p, seed
        if row_seeds is not None:
            ctx.save_for_backward(row_seeds)  # one int64 per row, not input-sized
        ctx.has_row_seeds = row_seeds is not None
        if drops_everything(p):
            return torch.zeros(x.shape, dtype=x.dtype, device=x.device)
        return launch(_seeded_dropout_op, seeded_dropout_forward, x, p, seed, row_seeds)

    @staticmethod
    def backward(ctx, grad_out):
        row_seeds = ctx.saved_tensors[0] if ctx.has_row_seeds else None
        if drops_everything(ctx.p):
            return torch.zeros_like(grad_out), None, None, None
        grad_in = launch(_seeded_dropout_op, seeded_dropout_forward, grad_out, ctx.p, ctx.seed, row_seeds)
        return grad_in, None, None, None


def seeded_dropout(x: torch.Tensor, p: float, seed, training: bool = True) -> torch.Tensor:
    """Element dropout whose mask is a pure function of (seed, element index, p).

    seed: an int in [0, 2**64 - 1], or a 1-D int64 tensor with one seed per row of a
    2-D x (row r uses seed[r]; e counts within the row). p = 0 or training=False
    returns x itself; p = 1 returns zeros with zero gradients.
    """
    check_input(x)
    p = check_p(p)
    row_seeds = None
    if isinstance(seed, torch.Tensor):
        check_row_seeds(seed, x)
        row_seeds, seed = seed, 0
    else:
        seed = as_int64_bits(check_seed(seed))
    if not training or p == 0.0:
        return x
    return SeededDropoutFunction.apply(x, p, seed, row_seeds)
