"""Host-side layouts: how a tensor's shape and strides map onto the kernels' index spaces.

Pure functions of (shape, strides), cached, so a launch pays for them once per layout.
"""

import functools
import math

import torch

INT32_LIMIT = 2**31 - 1
#: Runs the runs kernel takes: from 17 elements (a 1024 block then spans at most 62 runs, 64 fit
#: its bit words; and a group of 16 elements, which finds its run once, then touches at most two
#: runs: stream.runs_keep needs runs of >= 15) to 2**24 (its int32 index arithmetic stays exact);
#: other layouts take the tiles.
MIN_RUN, MAX_RUN = 17, 2**24


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


def _collapse(sizes, strides):
    """(size, stride) of one dim standing for `sizes`, or None when the dims don't merge."""
    merged_sizes, merged_strides = merge_dims(sizes, strides)
    if len(merged_sizes) != 1:
        return None
    return merged_sizes[0], merged_strides[0]


def outer_d_m(x: torch.Tensor, dim: int):
    """x viewed as (outer, D, M) with the mask shared along D (see shared_layout), or None when x needs a copy."""
    return shared_layout(tuple(x.shape), tuple(x.stride()), dim)


@functools.lru_cache(maxsize=1024)
def shared_layout(shape: tuple, strides: tuple, dim: int):
    """((outer, D, M), x strides, contiguous-output strides, wide) for a mask shared along `dim`.

    View x as (A, D, B): A = the dims before `dim`, D = x.shape[dim], B = the dims after, so
    mask element m = a * B + b. When `dim` is last (B = 1) the mask runs along A, which becomes
    the mask axis of a single outer index. None when the dims around `dim` don't merge.
    """
    before = _collapse(shape[:dim], strides[:dim]) if dim > 0 else (1, 0)
    after = _collapse(shape[dim + 1:], strides[dim + 1:]) if dim < len(shape) - 1 else (1, 0)
    if before is None or after is None:
        return None
    (size_a, stride_a), (size_b, stride_b) = before, after
    size_d, stride_d = shape[dim], strides[dim]
    out_strides_abd = (size_d * size_b, size_b, 1)  # contiguous output, as (A, D, B)
    if size_b == 1:
        sizes, x_strides = (1, size_d, size_a), (0, stride_d, stride_a)
        out_strides = (0, out_strides_abd[1], out_strides_abd[0])
    else:
        sizes, x_strides, out_strides = (size_a, size_d, size_b), (stride_a, stride_d, stride_b), out_strides_abd
    span = sum((size - 1) * abs(stride) for size, stride in zip(shape, strides)) + 1
    wide = max(span, sizes[0] * sizes[1] * sizes[2]) > INT32_LIMIT
    return sizes, x_strides, out_strides, wide


def takes_runs(layout) -> bool:
    """Whether x and out are runs of D contiguous elements at the same offsets, run r sharing mask
    element r, with D in the runs kernel's range."""
    (outer, size_d, size_m), x_strides, out_strides, _ = layout

    def is_runs(strides):
        return strides[1] == 1 and (size_m == 1 or strides[2] == size_d)

    return outer == 1 and is_runs(x_strides) and is_runs(out_strides) and MIN_RUN <= size_d <= MAX_RUN


def max_runs_block(run_len: int) -> int:
    """The largest BLOCK whose elements span at most 64 runs of run_len, wherever the block starts."""
    return 62 * run_len + 2


def runs_counters(block: int, run_len: int) -> int:
    """Philox counters (rows of the [COUNTERS, 8] keep tile) the runs kernel needs per block: the fewest,
    as a power of two, that cover the runs a block of `block` elements can touch (ceil(block / run_len)
    + 1) after the tile's start is moved back by up to 7 runs to a counter boundary. Fewer counters is
    less work per program, the same decisions (docs/perf-notes.md)."""
    if block > max_runs_block(run_len):
        raise ValueError(f"BLOCK={block} spans more than 64 runs of {run_len}")
    touched = -(-block // run_len) + 1
    counters = 1
    while 8 * counters - 7 < touched:
        counters *= 2
    return counters


def channel_view(x: torch.Tensor):
    """x of shape (N, C, *spatial) as (view, shared_dim, restore) for a mask per (n, c).

    The view is 3-D, (N, C, S) with shared_dim 2, or (N, S, C) with shared_dim 1 when
    C is x's innermost dim in memory; either way its variational mask along
    shared_dim is the element mask of (N, C). restore(y) turns a result of the
    view's shape back into x's shape (a view, no copy).
    """
    batch, channels, spatial = x.shape[0], x.shape[1], x.shape[2:]
    positions = math.prod(spatial)
    channels_last = x.movedim(1, -1)
    if not x.is_contiguous() and channels_last.is_contiguous():
        def restore(y):
            return y.view(batch, *spatial, channels).movedim(-1, 1)

        return channels_last.view(batch, positions, channels), 1, restore
    return x.reshape(batch, channels, positions), 2, lambda y: y.view(x.shape)
