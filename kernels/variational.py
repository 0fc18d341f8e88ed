"""Variational (locked) dropout: one keep mask shared along `dim`, no mask kept for backward.

The mask has x's shape with size 1 along `dim`; its element m (row-major index in
that reduced shape) follows the same contract as element dropout
(kernels.contract), so variational_dropout(x, p, seed, dim) keeps x[..., i, ...]
iff the element mask of the reduced shape keeps position m, for every i.

View x as (A, D, B): A = the dims before `dim`, D = x.shape[dim], B = the dims
after, so m = a * B + b. Each program takes a [BLOCK_D, BLOCK_M] tile: it draws
BLOCK_M mask values (one Philox call per 8 where the tile's first mask index is a
multiple of 8, else one each) and reuses them for BLOCK_D rows, so the arithmetic per
element falls as 1 / BLOCK_D while bytes stay one read and one write per element.
When `dim` is the last dim (B = 1) the mask runs along A
and the shared axis is the contiguous one; the same kernel covers both through
strides.

Short runs: when the shared axis is the contiguous one and x is contiguous (dim
last, or channel dropout's (N*C, S) feature maps), x is runs of D consecutive
elements, run r taking mask element r. A [BLOCK_D, BLOCK_M] tile fits such runs
badly when D is short (D = 49 for a 7 x 7 map: a 64-row tile wastes a quarter of
its lanes, and rows of 49 elements break vectorized loads). The runs kernel reads
x as element dropout does, BLOCK consecutive elements per program with wide
loads, draws the keep decisions of the (at most 64) runs the block touches into
two 32-bit words, and takes the block as groups of 16 elements: each group finds
its run once (a group of 16 touches at most two runs of >= 17), and each element
picks one of its group's two bits.
"""

import copy
import functools

import torch
import triton
import triton.language as tl

from dropbench.kernels.contract import Stream, check_dim, checked
from dropbench.kernels.element import keep_constants, stream_args
from dropbench.kernels.hot_path import HotLaunches
from dropbench.kernels.layout import INT32_LIMIT, max_runs_block, outer_d_m, runs_counters, takes_runs
from dropbench.kernels.runtime import (
    RepeatLaunches,
    autotuned_launcher,
    describe_config,
    latest_config,
    seeded_ops,
)
from dropbench.kernels.stream import (
    FROM_TORCH,
    SCALAR,
    STATE,
    advance_state,
    locked_keeps,
    locked_tile,
    runs_keep,
    runs_tile,
    scale_kept,
    stream_origin,
)


@triton.jit(do_not_specialize=["key", "offset", "advance", "threshold", "scale_bits"])
def _locked_dropout_kernel(
    x_ptr, out_ptr, seeds_ptr, snapshot_ptr, key, offset, advance, threshold, scale_bits,
    outer, D, M,
    x_stride_outer, x_stride_d, x_stride_m,
    out_stride_outer, out_stride_d, out_stride_m,
    SOURCE: tl.constexpr, ALIGNED: tl.constexpr, WIDE_INDEX: tl.constexpr, WIDE_STREAM: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr,
):
    """Element (o, d, m) is kept iff the mask element o * M + m (stream index offset + o * M + m) is kept.

    ALIGNED: offset + o * M is a multiple of 8 for every o, so a tile's BLOCK_M mask values take
    one Philox call per 8 (stream.tile_keeps); they are reused for its BLOCK_D rows.
    """
    GROUP: tl.constexpr = 8 if BLOCK_M >= 8 else BLOCK_M
    pid = tl.program_id(0)
    if WIDE_INDEX:
        pid = pid.to(tl.int64)
    o, m_start, d, m, in_bounds = locked_tile(pid, D, M, BLOCK_D, BLOCK_M, GROUP)
    key, offset = stream_origin(seeds_ptr, key, offset, 0, SOURCE, WIDE_STREAM)
    keep = locked_keeps(key, offset + o * M + m_start, threshold, BLOCK_M, GROUP, ALIGNED)
    x = tl.load(x_ptr + (o * x_stride_outer + d * x_stride_d + m * x_stride_m), mask=in_bounds)
    y = scale_kept(x, keep, scale_bits)
    tl.store(out_ptr + (o * out_stride_outer + d * out_stride_d + m * out_stride_m), y, mask=in_bounds)
    advance_state(seeds_ptr, snapshot_ptr, advance, SOURCE)


@triton.jit(do_not_specialize=["key", "offset", "advance", "threshold", "scale_bits"])
def _runs_dropout_kernel(
    x_ptr, out_ptr, seeds_ptr, snapshot_ptr, key, offset, advance, threshold, scale_bits, numel, run_len,
    SOURCE: tl.constexpr, WIDE_INDEX: tl.constexpr, WIDE_STREAM: tl.constexpr, BLOCK: tl.constexpr,
    COUNTERS: tl.constexpr,
):
    """x as runs of run_len contiguous elements: element e is kept iff mask element e // run_len is."""
    pid = tl.program_id(0)
    if WIDE_INDEX:
        pid = pid.to(tl.int64)
    key, offset = stream_origin(seeds_ptr, key, offset, 0, SOURCE, WIDE_STREAM)
    start, offsets, in_bounds = runs_tile(pid, numel, BLOCK)
    x = tl.load(x_ptr + offsets, mask=in_bounds)
    keep = runs_keep(key, offset, threshold, start, run_len, BLOCK, COUNTERS)
    tl.store(out_ptr + offsets, scale_kept(x, keep, scale_bits), mask=in_bounds)
    advance_state(seeds_ptr, snapshot_ptr, advance, SOURCE)


@functools.lru_cache(maxsize=1024)
def with_runs_counters(config, run_len: int):
    """A given runs-kernel config (BLOCK, maybe COUNTERS) for runs of run_len: COUNTERS, if given, must be
    enough; if not, the fewest its block needs (layout.runs_counters). ValueError for a BLOCK the runs
    kernel cannot take. Cached: equal configs give the same object, on which the launcher keys its
    kept compiled kernels."""
    block = config.kwargs["BLOCK"]
    if block < 16:
        raise ValueError(f"BLOCK={block}: the runs kernel takes groups of 16, so BLOCK >= 16")
    needed = runs_counters(block, run_len)
    given = config.kwargs.get("COUNTERS", needed)
    if given < needed or given & (given - 1):
        raise ValueError(f"COUNTERS={given} for BLOCK={block} over runs of {run_len}: "
                         f"must be a power of two, {needed} or more")
    return _with_counters(config, given)


def _with_counters(config, counters: int):
    """A copy of config with COUNTERS set (the config itself stays as it was)."""
    fitted = copy.copy(config)
    fitted.kwargs = {**config.kwargs, "COUNTERS": counters}
    return fitted


def fitting_runs_configs(configs, named_args, **kwargs):
    """Autotuner prune: the runs configs whose BLOCK fits 64 runs of this run_len, each with the
    fewest Philox counters it needs there."""
    run_len = named_args["run_len"]
    fitting = [config for config in configs if config.kwargs["BLOCK"] <= max_runs_block(run_len)]
    return [_with_counters(config, runs_counters(config.kwargs["BLOCK"], run_len)) for config in fitting]


# Per program the runs kernel pays a fixed part (COUNTERS Philox calls and two reductions over the
# keep tile) that few warps over a long block spread thin: with fewer warps, short runs (whose
# block can't be long: 2048 for runs of 64) keep the per-element count of long ones (docs/perf-notes.md).
# COUNTERS comes from the run length (fitting_runs_configs); 16 suffices for every run length.
RUNS_CONFIGS = [
    triton.Config({"BLOCK": block, "COUNTERS": 16}, num_warps=warps)
    for block, warps in [(1024, 1), (1024, 4), (2048, 2), (2048, 4), (4096, 2), (4096, 4), (8192, 8)]
]
RUNS_TUNING = {"configs": RUNS_CONFIGS, "key": ["numel", "run_len"],
               "prune_configs_by": {"early_config_prune": fitting_runs_configs}}
#: Under the CPU interpreter: the largest block every run length from MIN_RUN fits (launch_shared
#: gives it the counters of the call's run length).
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
LOCKED_TUNING = {"configs": LOCKED_CONFIGS, "key": ["outer", "D", "M", "x_stride_d", "x_stride_m"]}

#: Under the CPU interpreter each program costs ~30 ms of Python, so few large tiles win.
CPU_CONFIG = triton.Config({"BLOCK_D": 64, "BLOCK_M": 256}, num_warps=4)


_repeats = RepeatLaunches()
_hot = HotLaunches(native_only=True)  # the modules' repeat calls, in C++ (kernels.native)
_locked = autotuned_launcher(_locked_dropout_kernel, CPU_CONFIG, **LOCKED_TUNING)
_runs = autotuned_launcher(_runs_dropout_kernel, RUNS_CPU_CONFIG, **RUNS_TUNING)
# A STATE stream's: while tuning, each benchmarking launch would advance the state; these put it back.
_locked_state = autotuned_launcher(_locked_dropout_kernel, CPU_CONFIG, restore=("seeds_ptr",), **LOCKED_TUNING)
_runs_state = autotuned_launcher(_runs_dropout_kernel, RUNS_CPU_CONFIG, restore=("seeds_ptr",), **RUNS_TUNING)


def chosen_config() -> str:
    """The config of the last launch (tiles or runs kernel), the autotuner's choice on a GPU ('' before any)."""
    return describe_config(latest_config(_locked, _runs, _locked_state, _runs_state))


def variational_dropout_forward(x: torch.Tensor, p: float, stream: Stream, dim: int, snapshot=None,
                                config=None) -> torch.Tensor:
    """Launch the kernel for 0 < p < 1 (arguments already checked). Returns a new contiguous tensor.

    snapshot: a 2-int64 tensor that a STATE stream records its (key, offset) into.
    `config` (a triton.Config) forces one launch configuration and kernel: BLOCK_D and BLOCK_M
    for the tiles, BLOCK (and optionally COUNTERS) for the runs kernel (see launch_shared).
    """
    out = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    if x.numel() == 0:
        return out
    signature = _repeats.signature(x, p, stream, dim) if config is None else None
    if signature is not None and _repeats.try_launch(signature, x, out, stream, snapshot):
        return out
    layout = outer_d_m(x, dim)
    copied = layout is None
    if copied:
        x = x.contiguous()  # dims around `dim` that no stride merges: documented copy
        layout = outer_d_m(x, dim)
    threshold, bits = keep_constants(p)
    (outer, _, size_m), *_ = layout
    leading = (x, out, *stream_args(stream, snapshot, outer * size_m, x), threshold, bits)
    launchers = (_locked_state, _runs_state) if stream.source == STATE else (_locked, _runs)
    launched = launch_shared(*launchers, leading, layout, stream, config)
    if signature is not None and not copied:  # a copied x is a new layout every call
        _repeats.remember(signature, *launched)
        if stream.source == SCALAR and snapshot is None and x.is_contiguous():
            _hot.remember(*launched, x, p, stream.key, stream.offset, extra=dim)
    return out


def _runs_config(runs_launcher, x: torch.Tensor, run_len: int, config):
    """The runs kernel's config for a call: a given one, or on the CPU the interpreter's, with the
    counters of this run length (with_runs_counters); None on a GPU: the autotuner's prune sets them."""
    if config is None and x.get_device() < 0:
        config = runs_launcher.cpu_config
    return None if config is None else with_runs_counters(config, run_len)


def launch_shared(tiles_launcher, runs_launcher, leading_args: tuple, layout, stream: Stream, config) -> tuple:
    """Launch a shared-mask kernel: the runs kernel where takes_runs(layout), else the tiles.
    Returns (what the launcher returned: the CompiledLaunch that ran or None, its arguments).

    A given config picks the kernel too: BLOCK for the runs kernel (ValueError where the layout
    does not take it; COUNTERS is filled in or checked: _runs_config), BLOCK_D and BLOCK_M for the
    tiles. Else the launcher's default (autotuned on a GPU).
    """
    (outer, size_d, size_m), x_strides, out_strides, wide = layout
    constexprs = {"SOURCE": stream.source, "WIDE_INDEX": wide,
                  "WIDE_STREAM": wide or stream.offset + outer * size_m > INT32_LIMIT}
    if config is None or "BLOCK" in config.kwargs:
        if takes_runs(layout):
            numel = size_d * size_m
            config = _runs_config(runs_launcher, leading_args[0], size_d, config)
            args = (*leading_args, numel, size_d)
            return runs_launcher(lambda meta: (triton.cdiv(numel, meta["BLOCK"]),), args, constexprs, config), args
        if config is not None:
            raise ValueError(f"config {config} is for the runs kernel, which this layout does not take: {layout}")
    args = (*leading_args, outer, size_d, size_m, *x_strides, *out_strides)
    # Every tile's first mask index a multiple of 8 (tiles with BLOCK_M < 8 take one call per value).
    aligned = stream.offset % 8 == 0 and (outer == 1 or size_m % 8 == 0)
    launched = tiles_launcher(
        lambda meta: (outer * triton.cdiv(size_d, meta["BLOCK_D"]) * triton.cdiv(size_m, meta["BLOCK_M"]),),
        args, {**constexprs, "ALIGNED": aligned}, config,
    )
    return launched, args


VariationalDropoutFunction = seeded_ops(
    "variational_dropout", "int dim",
    lambda x, p, stream, dim, snapshot, grad: variational_dropout_forward(x, p, stream, dim, snapshot))


def shared_dropout(x, p, stream: Stream, dim: int, training=True):
    """Dropout with the mask shared along `dim`, after the argument checks. A repeat call drawing from
    torch's generator (VariationalDropout's) takes the native hot path (kernels.native), where built."""
    if not training or p == 0.0:
        return x
    if stream.source == FROM_TORCH:
        kept = _hot.kept(x, p, dim)
        out = None if kept is None else kept.native.dropout(x)  # native_only: kept.native is there
        if out is not None:
            return out
    return VariationalDropoutFunction.run(x, p, stream, dim)


def variational_dropout(x: torch.Tensor, p: float, seed=None, dim: int = 0, training: bool = True, *,
                        offset: int = 0, state: torch.Tensor | None = None) -> torch.Tensor:
    """Dropout with one mask shared along `dim` (e.g. the token dim of (T, B, C) or (B, T, C)).

    The mask equals seeded_dropout's mask for x's shape with size 1 along `dim` (same seed,
    state and offset rules: see seeded_dropout; per-row seeds are not taken here).
    p = 0 or training=False returns x itself; p = 1 returns zeros with zero gradients.
    """
    p, stream = checked(x, p, seed, offset, state, row_seeds_allowed=False)
    if x.dim() == 0:
        raise ValueError("variational_dropout needs x with at least 1 dim to share the mask along")
    dim = check_dim(dim, x.dim())
    return shared_dropout(x, p, stream, dim, training)
