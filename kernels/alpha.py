"""Seeded alpha dropout (for SELU networks): alpha_dropout and feature_alpha_dropout.

Dropped activations take SELU's negative saturation a' = -scale * alpha instead of 0,
then an affine map restores zero mean and unit variance for standard-normal input:
  y = A * (x * keep + a' * (1 - keep)) + B,
  A = ((1 - p) * (1 + p * a'**2)) ** -0.5,   B = -A * a' * p,
so kept elements become x * A + B and dropped ones the constant A * a' + B, exactly
ATen's _dropout_impl (which torch.nn.functional.alpha_dropout runs), with PyTorch's
a' = -1.7580993408473766. Backward: grad_out * A where kept, 0 where dropped.

The keep decision is the mask contract's (kernels.contract), unchanged:
alpha_dropout(x, p, seed) keeps exactly the elements seeded_dropout(x, p, seed) keeps,
and feature_alpha_dropout keeps the channels dropout2d/feature_dropout keep (the
element mask of x.shape[:2]). A, B and A * a' + B are computed in fp64 on the host
and passed as fp64 bit patterns (like scale_bits); the kernels compute
x * A + B in fp32 (fp64 for fp64) and round once to the input dtype.

Three kernels, as element and variational dropout have: a rows kernel taking BLOCK
consecutive elements as seeded's [BLOCK/8, 8] tile (one Philox call per 8
elements), and for the channel form variational's locked kernel ([BLOCK_D, BLOCK_M]
tiles, one Philox call per 8 channels, shared along the spatial positions) and its
runs kernel (contiguous channels-first x, channels as runs of S elements).
Backward is the same kernel with B = 0 and dropped value 0.

Bytes moved per element: one read and one write of the dtype. Operations: one
Philox call per 8 elements (per 8 channels for the feature form), one compare, one
multiply-add, one select.

Layouts: contiguous x, and 2-D x whose rows are contiguous with cols a multiple of 8,
are read in place; other strides are copied to contiguous first (one more read and
write). The feature form reads channels-first and channels-last x in place
(kernels.channel.channel_view). The output is contiguous (channels-last for a
channels-last input of the feature form).
"""

import functools
import math

import torch
import triton
import triton.language as tl

from dropbench.kernels import variational
from dropbench.kernels.channel import FEATURE_RANK_MESSAGE
from dropbench.kernels.contract import Stream, checked, float64_bits, keep_threshold
from dropbench.kernels.element import (
    CPU_CONFIG,
    ROWS_CONFIGS,
    stream_args,
)
from dropbench.kernels.layout import INT32_LIMIT, channel_view, outer_d_m
from dropbench.kernels.runtime import (
    autotuned_launcher,
    describe_config,
    latest_config,
    seeded_ops,
)
from dropbench.kernels.stream import (
    STATE,
    advance_state,
    locked_keeps,
    locked_tile,
    rows_tile,
    runs_keep,
    runs_tile,
    stream_origin,
    tile_keeps,
)

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946
#: a' = -SELU_SCALE * SELU_ALPHA, written as ATen writes it (the product rounds to the same double).
ALPHA_PRIME = -1.7580993408473766


def alpha_constants(p: float) -> tuple[float, float, float]:
    """(A, B, dropped) for 0 <= p < 1: kept elements become x * A + B, dropped ones `dropped`."""
    a = 1.0 / math.sqrt((ALPHA_PRIME * ALPHA_PRIME * p + 1.0) * (1.0 - p))
    b = -a * ALPHA_PRIME * p
    return a, b, a * ALPHA_PRIME + b


@triton.jit
def _alpha_kept(x, keep, a_bits, b_bits, dropped_bits):
    """x * A + B where keep, else the constant `dropped`; fp32 math (fp64 for fp64)."""
    # Widened first for the CPU interpreter, which types backward's 0 bits as int32 despite the annotation.
    a = a_bits.to(tl.int64).to(tl.float64, bitcast=True)
    b = b_bits.to(tl.int64).to(tl.float64, bitcast=True)
    dropped = dropped_bits.to(tl.int64).to(tl.float64, bitcast=True)
    if x.dtype == tl.float64:
        y = tl.where(keep, x * a + b, dropped)
    else:
        y = tl.where(keep, x.to(tl.float32) * a.to(tl.float32) + b.to(tl.float32), dropped.to(tl.float32))
    return y.to(x.dtype)


# The map's bits are typed int64: untyped, Triton would type backward's 0 bits (B = 0, dropped = 0) as
# int32 and compile backward as a second binary, which ptxas scheduled with its loads serialized
# (fp64 feature alpha backward at 69% of copy on an H100, forward at 99.5%; docs/perf-notes.md).
_NO_SPECIALIZE = ["key", "offset", "advance", "threshold", "a_bits", "b_bits", "dropped_bits"]


@triton.jit(do_not_specialize=_NO_SPECIALIZE)
def _alpha_rows_kernel(
    x_ptr, out_ptr, seeds_ptr, snapshot_ptr, key, offset, advance, threshold,
    a_bits: tl.int64, b_bits: tl.int64, dropped_bits: tl.int64,
    rows, cols, x_row_stride, out_row_stride, stream_row_len,
    SOURCE: tl.constexpr, ALIGNED: tl.constexpr, WIDE_INDEX: tl.constexpr, WIDE_STREAM: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """element's rows kernel with the alpha map: stream index s = offset + row * stream_row_len + col."""
    pid = tl.program_id(0)
    if WIDE_INDEX:
        pid = pid.to(tl.int64)
    row, col_start, cols_in_tile, in_bounds = rows_tile(pid, cols, BLOCK)
    key, offset = stream_origin(seeds_ptr, key, offset, row, SOURCE, WIDE_STREAM)
    # The same decisions seeded_dropout makes for these elements.
    keep = tile_keeps(key, offset + row * stream_row_len + col_start, threshold, BLOCK // 8, ALIGNED)
    x = tl.load(x_ptr + row * x_row_stride + cols_in_tile, mask=in_bounds)
    y = _alpha_kept(x, keep, a_bits, b_bits, dropped_bits)
    tl.store(out_ptr + row * out_row_stride + cols_in_tile, y, mask=in_bounds)
    advance_state(seeds_ptr, snapshot_ptr, advance, SOURCE)


@triton.jit(do_not_specialize=_NO_SPECIALIZE)
def _alpha_locked_kernel(
    x_ptr, out_ptr, seeds_ptr, snapshot_ptr, key, offset, advance, threshold,
    a_bits: tl.int64, b_bits: tl.int64, dropped_bits: tl.int64,
    outer, D, M,
    x_stride_outer, x_stride_d, x_stride_m,
    out_stride_outer, out_stride_d, out_stride_m,
    SOURCE: tl.constexpr, ALIGNED: tl.constexpr, WIDE_INDEX: tl.constexpr, WIDE_STREAM: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr,
):
    """variational's locked kernel with the alpha map: (o, d, m) is kept iff mask element o * M + m is."""
    GROUP: tl.constexpr = 8 if BLOCK_M >= 8 else BLOCK_M
    pid = tl.program_id(0)
    if WIDE_INDEX:
        pid = pid.to(tl.int64)
    o, m_start, d, m, in_bounds = locked_tile(pid, D, M, BLOCK_D, BLOCK_M, GROUP)
    key, offset = stream_origin(seeds_ptr, key, offset, 0, SOURCE, WIDE_STREAM)
    keep = locked_keeps(key, offset + o * M + m_start, threshold, BLOCK_M, GROUP, ALIGNED)
    x = tl.load(x_ptr + (o * x_stride_outer + d * x_stride_d + m * x_stride_m), mask=in_bounds)
    y = _alpha_kept(x, keep, a_bits, b_bits, dropped_bits)
    tl.store(out_ptr + (o * out_stride_outer + d * out_stride_d + m * out_stride_m), y, mask=in_bounds)
    advance_state(seeds_ptr, snapshot_ptr, advance, SOURCE)


@triton.jit(do_not_specialize=_NO_SPECIALIZE)
def _alpha_runs_kernel(
    x_ptr, out_ptr, seeds_ptr, snapshot_ptr, key, offset, advance, threshold,
    a_bits: tl.int64, b_bits: tl.int64, dropped_bits: tl.int64,
    numel, run_len,
    SOURCE: tl.constexpr, WIDE_INDEX: tl.constexpr, WIDE_STREAM: tl.constexpr, BLOCK: tl.constexpr,
    COUNTERS: tl.constexpr,
):
    """variational's runs kernel with the alpha map: element e is kept iff mask element e // run_len is."""
    pid = tl.program_id(0)
    if WIDE_INDEX:
        pid = pid.to(tl.int64)
    key, offset = stream_origin(seeds_ptr, key, offset, 0, SOURCE, WIDE_STREAM)
    start, offsets, in_bounds = runs_tile(pid, numel, BLOCK)
    x = tl.load(x_ptr + offsets, mask=in_bounds)
    keep = runs_keep(key, offset, threshold, start, run_len, BLOCK, COUNTERS)
    tl.store(out_ptr + offsets, _alpha_kept(x, keep, a_bits, b_bits, dropped_bits), mask=in_bounds)
    advance_state(seeds_ptr, snapshot_ptr, advance, SOURCE)


_ROWS_TUNING = {"configs": ROWS_CONFIGS, "key": ["rows", "cols", "x_row_stride"]}
_rows = autotuned_launcher(_alpha_rows_kernel, CPU_CONFIG, **_ROWS_TUNING)
_locked = autotuned_launcher(_alpha_locked_kernel, variational.CPU_CONFIG, **variational.LOCKED_TUNING)
_runs = autotuned_launcher(_alpha_runs_kernel, variational.RUNS_CPU_CONFIG, **variational.RUNS_TUNING)
# A STATE stream's: while tuning, each benchmarking launch would advance the state; these put it back.
_RESTORE_STATE = ("seeds_ptr",)
_rows_state = autotuned_launcher(_alpha_rows_kernel, CPU_CONFIG, restore=_RESTORE_STATE, **_ROWS_TUNING)
_locked_state = autotuned_launcher(_alpha_locked_kernel, variational.CPU_CONFIG, restore=_RESTORE_STATE,
                                   **variational.LOCKED_TUNING)
_runs_state = autotuned_launcher(_alpha_runs_kernel, variational.RUNS_CPU_CONFIG, restore=_RESTORE_STATE,
                                 **variational.RUNS_TUNING)


def chosen_config() -> str:
    """The config of the last launch of the element kernel, the autotuner's choice on a GPU ('' before any)."""
    return describe_config(latest_config(_rows, _rows_state))


def chosen_feature_config() -> str:
    """The config of the last launch of the feature kernel, the autotuner's choice on a GPU ('' before any)."""
    return describe_config(latest_config(_locked, _runs, _locked_state, _runs_state))


@functools.lru_cache(maxsize=512)
def _map_bits(p: float, grad: bool) -> tuple[int, int, int]:
    """Bits of (A, B, dropped): the forward map, or for the gradient (A, 0, 0)."""
    a, b, dropped = alpha_constants(p)
    return (float64_bits(a), 0, 0) if grad else (float64_bits(a), float64_bits(b), float64_bits(dropped))


def alpha_dropout_forward(x: torch.Tensor, p: float, stream: Stream, grad: bool = False, snapshot=None,
                          config=None) -> torch.Tensor:
    """Launch the element kernel for 0 < p < 1 with T(p) < 2**32 (arguments checked). New contiguous tensor.

    grad=True applies the backward map (x * A where kept, 0 where dropped) instead.
    snapshot: where a STATE stream records its (key, offset).
    `config` (a triton.Config with BLOCK) forces one launch configuration.
    """
    out = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    if x.numel() == 0:
        return out
    if x.is_contiguous():
        # One row of numel elements; x and out are passed as they are (a view would cost host time).
        rows, cols, x_row_stride, out_row_stride, stream_row_len = 1, x.numel(), x.numel(), x.numel(), 0
    elif x.dim() == 2 and x.stride(1) == 1 and x.shape[1] % 8 == 0:
        (rows, cols), x_row_stride, out_row_stride, stream_row_len = x.shape, x.stride(0), out.stride(0), x.shape[1]
    else:
        x = x.contiguous()  # documented copy
        rows, cols, x_row_stride, out_row_stride, stream_row_len = 1, x.numel(), x.numel(), x.numel(), 0
    numel = rows * cols
    wide = numel + rows * abs(x_row_stride) > INT32_LIMIT
    stream_span = stream.offset + (rows - 1) * stream_row_len + cols
    args = (
        x, out, *stream_args(stream, snapshot, numel, x), keep_threshold(p), *_map_bits(p, grad),
        rows, cols, x_row_stride, out_row_stride, stream_row_len,
    )
    constexprs = {"SOURCE": stream.source, "ALIGNED": stream.offset % 8 == 0, "WIDE_INDEX": wide,
                  "WIDE_STREAM": wide or stream_span > INT32_LIMIT}
    launcher = _rows_state if stream.source == STATE else _rows
    launcher(lambda meta: (rows * triton.cdiv(cols, meta["BLOCK"]),), args, constexprs, config)
    return out


def feature_alpha_dropout_forward(
    x: torch.Tensor, p: float, stream: Stream, dim: int, grad: bool = False, snapshot=None, config=None
) -> torch.Tensor:
    """Launch the locked kernel on a 3-D channel view, mask shared along `dim` (kernels.layout.channel_view).

    Same conditions and `grad` as alpha_dropout_forward; `config` has BLOCK_D and BLOCK_M.
    """
    out = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    if x.numel() == 0:
        return out
    layout = outer_d_m(x, dim)
    if layout is None:
        x = x.contiguous()  # dims around `dim` that no stride merges: documented copy
        layout = outer_d_m(x, dim)
    (outer, _, size_m), *_ = layout
    leading = (x, out, *stream_args(stream, snapshot, outer * size_m, x), keep_threshold(p), *_map_bits(p, grad))
    launchers = (_locked_state, _runs_state) if stream.source == STATE else (_locked, _runs)
    variational.launch_shared(*launchers, leading, layout, stream, config)
    return out


def _everything_dropped(x: torch.Tensor, p: float) -> torch.Tensor:
    """No word passes T(p) = 2**32: every element is `dropped`; 0 at p = 1, as PyTorch returns."""
    value = 0.0 if p == 1.0 else alpha_constants(p)[2]
    return torch.full(x.shape, value, dtype=x.dtype, device=x.device)


def _alpha_forward(x, p, stream, dim, snapshot, grad):
    """alpha_dropout's kernel (dim None), or feature_alpha_dropout's on a channel view shared along dim."""
    if dim is None:
        return alpha_dropout_forward(x, p, stream, grad, snapshot)
    return feature_alpha_dropout_forward(x, p, stream, dim, grad, snapshot)


#: Forward: the alpha map; backward: the same kernel with B = 0 and dropped = 0. Returns (y, snapshot).
AlphaDropoutFunction = seeded_ops("alpha_dropout", "int? dim", _alpha_forward, _everything_dropped)


def alpha_dropout(x: torch.Tensor, p: float, seed=None, training: bool = True, *, offset: int = 0,
                  state: torch.Tensor | None = None) -> torch.Tensor:
    """F.alpha_dropout with seeded_dropout's mask: kept x * A + B, dropped A * a' + B.

    seed, offset and state as seeded_dropout (no per-row seeds). Unlike F.alpha_dropout,
    training defaults to True (as in every dropbench function). p = 0 or training=False
    returns x itself; p = 1 returns zeros with zero gradients (PyTorch also returns
    zeros, but NaN where x is inf or NaN).
    """
    p, stream = checked(x, p, seed, offset, state, row_seeds_allowed=False)
    if not training or p == 0.0:
        return x
    return AlphaDropoutFunction.run(x, p, stream, None)


def feature_alpha_dropout(x: torch.Tensor, p: float, seed=None, training: bool = True, *, offset: int = 0,
                          state: torch.Tensor | None = None) -> torch.Tensor:
    """F.feature_alpha_dropout: the alpha map with one keep decision per x[n, c].

    Mask: the element mask of x.shape[:2], as feature_dropout and dropout2d. x needs at
    least 2 dims (PyTorch's RuntimeError, checked when a mask is drawn: training and
    0 < p < 1). Edge cases and the training default as alpha_dropout.
    """
    p, stream = checked(x, p, seed, offset, state, row_seeds_allowed=False)
    if not training or p == 0.0:
        return x
    if x.dim() < 2:
        if p < 1.0:
            raise RuntimeError(FEATURE_RANK_MESSAGE)
        return AlphaDropoutFunction.run(x, p, stream, None)  # p = 1: zeros; PyTorch does not check here
    if math.prod(x.shape[2:]) == 1:
        return AlphaDropoutFunction.run(x, p, stream, None)  # one element per channel: x's element mask
    view, shared_dim, restore = channel_view(x)
    return restore(AlphaDropoutFunction.run(view, p, stream, shared_dim))
