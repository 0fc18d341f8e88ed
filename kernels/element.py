"""Seeded element dropout: y = x * keep / (1 - p), with no mask kept for backward.

keep(e) follows kernels.contract (mask stream v3): R(s) >= round(p * 2**32), s = offset + e, e the
logical row-major index. Backward is the same kernel on the gradient with the same (key, offset),
so autograd saves nothing of the input's size.

Bytes moved per element: one read and one write of the dtype (2 x 2 bytes in fp16).
Operations: one Philox call (10 rounds) per 8 elements, each element's R(s) one of its words
(halves swapped for even s), and one 32-bit compare per element. Each program takes BLOCK
consecutive elements as a [BLOCK/8, 8] tile: row i is one counter's eight elements, so the mask
does not depend on BLOCK.

Layouts: contiguous tensors and 2-D tensors whose rows are contiguous take the rows kernel;
any other strides (transposes, permutes, up to 4 dims after merging) take a strided kernel
that computes one Philox call per element (8x the arithmetic, still one read and one write).
Tensors with more than 4 unmergeable dims are copied to contiguous first. A shard whose
stream indices don't start a counter (offset or global_cols not a multiple of 8) also pays
one Philox call per element. The output is always contiguous.
"""

import functools

import torch
import triton
import triton.language as tl

from dropbench.kernels.contract import (
    FROM_TORCH_STREAM,
    Stream,
    check_offset,
    checked,
    drops_everything,
    float32_bits,
    keep_threshold,
    scale_bits,
)
from dropbench.kernels.hot_path import HotLaunches
from dropbench.kernels.layout import INT32_LIMIT, merge_dims
from dropbench.kernels.rng import advance_length
from dropbench.kernels.runtime import (
    FUNCTION_APPLY,
    KernelLauncher,
    RepeatLaunches,
    autotuned_launcher,
    describe_config,
    seeded_ops,
)
from dropbench.kernels.stream import (
    FROM_TORCH,
    KEY_TENSOR,
    ROW_KEYS,
    SCALAR,
    SNAPSHOT,
    STATE,
    advance_state,
    element_keeps,
    rows_tile,
    scale_kept,
    stream_origin,
    tile_keeps,
)


@triton.jit(do_not_specialize=["key", "offset", "advance", "threshold", "scale_bits"])
def _dropout_rows_kernel(
    x_ptr, out_ptr, seeds_ptr, snapshot_ptr, key, offset, advance, threshold, scale_bits,
    rows, cols, x_row_stride, out_row_stride, stream_row_len,
    SOURCE: tl.constexpr, ALIGNED: tl.constexpr, WIDE_INDEX: tl.constexpr, WIDE_STREAM: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """Rows of `cols` contiguous elements; stream index s = offset + row * stream_row_len + col.

    WIDE_INDEX: element offsets past int32 (64-bit addressing). WIDE_STREAM: stream indices past
    int32 (torch's generator offsets pass 2**31 within a few training steps): only the stream
    index is 64-bit, one scalar per program and one vector of counters per eight elements.
    """
    pid = tl.program_id(0)
    if WIDE_INDEX:
        pid = pid.to(tl.int64)
    row, col_start, cols_in_tile, in_bounds = rows_tile(pid, cols, BLOCK)
    key, offset = stream_origin(seeds_ptr, key, offset, row, SOURCE, WIDE_STREAM)
    if WIDE_STREAM:
        first = offset + row.to(tl.int64) * stream_row_len + col_start
    else:
        first = offset + row * stream_row_len + col_start
    keep = tile_keeps(key, first, threshold, BLOCK // 8, ALIGNED)
    x = tl.load(x_ptr + row * x_row_stride + cols_in_tile, mask=in_bounds)
    tl.store(out_ptr + row * out_row_stride + cols_in_tile, scale_kept(x, keep, scale_bits), mask=in_bounds)
    advance_state(seeds_ptr, snapshot_ptr, advance, SOURCE)


@triton.jit(do_not_specialize=["key", "offset", "advance", "threshold", "scale_bits"])
def _dropout_strided_kernel(
    x_ptr, out_ptr, seeds_ptr, snapshot_ptr, key, offset, advance, threshold, scale_bits, numel,
    size1, size2, size3, stride0, stride1, stride2, stride3,
    SOURCE: tl.constexpr, WIDE_INDEX: tl.constexpr, WIDE_STREAM: tl.constexpr, BLOCK: tl.constexpr,
):
    """Any 4-D strides: each element finds its own input offset and Philox words."""
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

    key, offset = stream_origin(seeds_ptr, key, offset, 0, SOURCE, WIDE_STREAM)
    keep = element_keeps(key, offset + index, threshold)
    x = tl.load(x_ptr + x_offsets, mask=in_bounds)
    tl.store(out_ptr + index, scale_kept(x, keep, scale_bits), mask=in_bounds)
    advance_state(seeds_ptr, snapshot_ptr, advance, SOURCE)


ROWS_CONFIGS = [
    triton.Config({"BLOCK": block}, num_warps=warps)
    for block in (1024, 2048, 4096, 8192)
    for warps in (4, 8)
]
_ROWS_KEY = ["rows", "cols", "x_row_stride"]

#: The strided kernel's launch on a GPU (it is the rare path, so not autotuned).
STRIDED_CONFIG = triton.Config({"BLOCK": 1024}, num_warps=4)
#: Under the CPU interpreter each program costs ~30 ms of Python, so few large blocks win.
CPU_CONFIG = triton.Config({"BLOCK": 16384}, num_warps=4)

_rows = autotuned_launcher(_dropout_rows_kernel, CPU_CONFIG, configs=ROWS_CONFIGS, key=_ROWS_KEY)
# While tuning, every benchmarking launch would drop out x again (in place) or advance a state:
# these autotuners put them back between runs. (dropout_, the one in-place call, takes no state.)
_rows_inplace = autotuned_launcher(_dropout_rows_kernel, CPU_CONFIG, restore=("out_ptr",), configs=ROWS_CONFIGS,
                                   key=_ROWS_KEY)
_rows_state = autotuned_launcher(_dropout_rows_kernel, CPU_CONFIG, restore=("seeds_ptr",), configs=ROWS_CONFIGS,
                                 key=_ROWS_KEY)
_strided = KernelLauncher(_dropout_strided_kernel, cpu_config=CPU_CONFIG, gpu_config=STRIDED_CONFIG)


def chosen_config() -> str:
    """The config of the last launch of the rows kernel, the autotuner's choice on a GPU ('' before any)."""
    return describe_config(_rows.last_config)


def chosen_inplace_config() -> str:
    """The config of the last in-place launch of the rows kernel ('' before any)."""
    return describe_config(_rows_inplace.last_config)


@functools.lru_cache(maxsize=256)
def keep_constants(p: float) -> tuple[int, int]:
    """(T(p), bits of 1 / (1 - p)) for 0 < p < 1: computed once per p, not per launch."""
    return keep_threshold(p), scale_bits(p)


def stream_args(stream: Stream, snapshot, numel: int, x: torch.Tensor) -> tuple:
    """(seeds, snapshot, key, offset, advance) kernel arguments of a Stream over `numel` stream
    indices of a call on x.

    Unused pointers get x itself: the kernels never touch them (a None would make them
    constexprs), and no tensor is kept for them, which one made during a CUDA-graph tree's
    warm-up would hold in the graph's pool. A STATE stream's launches use both, and their
    autotuner restores the state.
    """
    seeds = stream.seeds if stream.seeds is not None else x
    advance = advance_length(numel) if stream.source == STATE else 0
    return seeds, x if snapshot is None else snapshot, stream.key, stream.offset, advance


def _run_rows(x, out, stream, snapshot, p, rows, cols, x_row_stride, out_row_stride, stream_row_len, config):
    """The rows kernel over `rows` rows of `cols` contiguous elements (x and out may be flat tensors)."""
    threshold, bits = keep_constants(p)
    numel = rows * cols
    stream_span = stream.offset + (rows - 1) * stream_row_len + cols
    wide_index = numel + rows * abs(x_row_stride) > INT32_LIMIT
    # Every tile's first stream index a multiple of 8 (per-row keys: stream_row_len is 0).
    aligned = stream.offset % 8 == 0 and (rows == 1 or stream_row_len % 8 == 0)
    args = (x, out, *stream_args(stream, snapshot, numel, x), threshold, bits,
            rows, cols, x_row_stride, out_row_stride, stream_row_len)
    launcher = _rows_state if stream.source == STATE else _rows_inplace if out.data_ptr() == x.data_ptr() else _rows
    launched = launcher(lambda meta: (rows * triton.cdiv(cols, meta["BLOCK"]),), args,
                        {"SOURCE": stream.source, "ALIGNED": aligned, "WIDE_INDEX": wide_index,
                         "WIDE_STREAM": wide_index or stream_span > INT32_LIMIT}, config)
    return launched, args


def _run_strided(x, out, stream, snapshot, p, config):
    sizes, strides = merge_dims(x.shape, x.stride())
    if len(sizes) > 4:
        x = x.contiguous()  # rare (5+ dims that no stride merges): documented copy
        sizes, strides = [x.numel()], [1]
    sizes = [1] * (4 - len(sizes)) + sizes
    strides = [0] * (4 - len(strides)) + strides
    numel = x.numel()
    span = sum((size - 1) * abs(stride) for size, stride in zip(sizes, strides))
    wide = max(numel, span) > INT32_LIMIT
    threshold, bits = keep_constants(p)
    _strided(lambda meta: (triton.cdiv(numel, meta["BLOCK"]),),
             (x, out, *stream_args(stream, snapshot, numel, x), threshold, bits, numel, *sizes[1:], *strides),
             {"SOURCE": stream.source, "WIDE_INDEX": wide, "WIDE_STREAM": wide or stream.offset + numel > INT32_LIMIT},
             config)


def _writes_through(x: torch.Tensor, out: torch.Tensor, stream: Stream) -> bool:
    """Whether the rows kernel can write into `out` directly: x takes it without a copy and out
    has x's strides, so element e of x and of out sit at one offset (out may be x itself)."""
    if out.shape != x.shape or out.dtype != x.dtype or out.stride() != x.stride():
        return False
    if x.is_contiguous():
        return True
    # Rows that do not overlap each other (stride(0) >= cols also rules out expanded rows).
    rows_ok = x.dim() == 2 and x.stride(1) == 1 and x.stride(0) >= x.shape[1]
    return rows_ok and (stream.source == ROW_KEYS or x.shape[1] % 8 == 0)


_repeats = RepeatLaunches()
_hot = HotLaunches()


def element_forward(x: torch.Tensor, p: float, stream: Stream, global_cols=None, snapshot=None,
                    config=None, out=None) -> torch.Tensor:
    """element_forward_checked, or for a plain call (contiguous x on the GPU, a new output) seen before,
    the kernel it launched then, straight through its C launcher: the host-time path of the modules."""
    plain = out is None and global_cols is None and config is None and x.is_contiguous()
    signature = _repeats.signature(x, p, stream) if plain else None
    if signature is not None:
        out = torch.empty_like(x)  # x is contiguous, so out is too (and cheaper than torch.empty)
        if _repeats.try_launch(signature, x, out, stream, snapshot):
            return out
        if x.numel() and not drops_everything(p):
            numel = x.numel()
            launched, args = _run_rows(x, out, stream, snapshot, p, 1, numel, numel, numel, 0, None)
            _repeats.remember(signature, launched, args)
            if stream.source == SCALAR and snapshot is None:
                _hot.remember(launched, args, x, p, stream.key, stream.offset)
            return out
    return element_forward_checked(x, p, stream, global_cols, snapshot, config, out)


def element_forward_checked(x: torch.Tensor, p: float, stream: Stream, global_cols=None, snapshot=None,
                            config=None, out=None) -> torch.Tensor:
    """Launch the kernel for 0 < p < 1 (arguments already checked). Returns a new contiguous tensor.

    global_cols: x is a block of a row-major (R, global_cols) tensor whose element (r, j)
    has stream index offset + r * global_cols + j (column shards); x is read as
    (numel / x.shape[-1], x.shape[-1]). snapshot: a 2-int64 tensor that a STATE stream
    records its (key, offset) into. config (a triton.Config with BLOCK) forces one
    launch configuration instead of autotuning. out (optional, x's shape and dtype; x
    itself for in-place dropout) receives the result and is returned.
    """
    if out is not None and (global_cols is not None or not _writes_through(x, out, stream)):
        return out.copy_(element_forward_checked(x, p, stream, global_cols, snapshot, config))
    if out is None:
        out = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    if x.numel() == 0:
        return out
    if stream.source == ROW_KEYS:
        if x.stride(1) != 1:
            x = x.contiguous()  # per-row seeds with a non-unit column stride: documented copy
        rows, cols = x.shape
        _run_rows(x, out, stream, snapshot, p, rows, cols, x.stride(0), out.stride(0), 0, config)
    elif global_cols is not None:
        cols = x.shape[-1]
        rows = x.numel() // cols
        x = x.reshape(rows, cols)
        if x.stride(-1) != 1:
            x = x.contiguous()  # a shard must be read row by row: documented copy
        _run_rows(x, out, stream, snapshot, p, rows, cols, x.stride(0), cols, global_cols, config)
    elif x.is_contiguous():
        numel = x.numel()  # one row of numel elements; x and out as they are (a view would cost host time)
        _run_rows(x, out, stream, snapshot, p, 1, numel, numel, numel, 0, config)
    elif x.dim() == 2 and x.stride(1) == 1 and x.shape[1] % 8 == 0:
        rows, cols = x.shape
        _run_rows(x, out, stream, snapshot, p, rows, cols, x.stride(0), out.stride(0), cols, config)
    else:
        _run_strided(x, out, stream, snapshot, p, config)
    return out


@torch.library.triton_op("dropbench::dropout_key_tensor", mutates_args=())
def dropout_key_tensor(x: torch.Tensor, p: float, key: torch.Tensor, offset: int) -> torch.Tensor:
    """Element dropout of fp16, bf16 or fp32 x (0 < p < 1) keyed by a 0-d key tensor: what
    torch.compile traces for the modules' calls. A triton_op: inductor sees the Triton kernel and
    launches it from its own generated code, as it launches its own kernels, instead of calling back
    into Python through a custom op (~40 us of host time per call in a compiled training step).

    Inductor takes no int arguments past int32, so T(p) goes as its int32 bit pattern and the scale
    as its fp32 bits (stream.threshold_word, stream.scale_kept): the same mask and products as eager calls.
    """
    x = x.contiguous()  # free on a contiguous x; an eager call on another layout gets the contract's order
    out = torch.empty_like(x)
    numel = x.numel()
    threshold = keep_threshold(p)
    threshold = threshold - 2**32 if threshold > INT32_LIMIT else threshold
    wide_index = 2 * numel > INT32_LIMIT  # as _run_rows decides for one row of numel elements
    torch.library.wrap_triton(_rows.autotuned)[lambda meta: (triton.cdiv(numel, meta["BLOCK"]),)](
        x, out, key, key, 0, offset, 0, threshold, float32_bits(1.0 / (1.0 - p)), 1, numel, numel, numel, 0,
        SOURCE=KEY_TENSOR, ALIGNED=offset % 8 == 0, WIDE_INDEX=wide_index,
        WIDE_STREAM=wide_index or offset + numel > INT32_LIMIT)
    return out


def traced_dropout(x, p, source, key, offset, seeds, global_cols):
    """The triton_op for what torch.compile traces most (a key tensor, no shards, not fp64, on a GPU:
    inductor compiles no user Triton kernel for the CPU interpreter), else None.

    Checks nothing of x's layout: while dynamo speculates a backward it can't tell a gradient's
    (the op takes x.contiguous(), free on a contiguous tensor)."""
    if source == KEY_TENSOR and global_cols is None and x.is_cuda and x.dtype != torch.float64:
        return dropout_key_tensor(x, p, seeds, offset)
    return None


ElementDropoutFunction = seeded_ops(
    "dropout", "int? global_cols",
    lambda x, p, stream, global_cols, snapshot, grad: element_forward(x, p, stream, global_cols, snapshot),
    traced=traced_dropout)


def replay(grad: torch.Tensor, p: float, source: int, key: int, offset: int, seeds, global_cols) -> torch.Tensor:
    """The forward's mask on `grad`. After a STATE forward, `seeds` is its snapshot [key, offset]."""
    if source == STATE:
        source = SNAPSHOT
    return ElementDropoutFunction.launch_seeded(grad, p, source, key, offset, seeds, global_cols, True)


class HotElementDropout(torch.autograd.Function):
    """The hot path's autograd node (kernels.hot_path): forward and backward are one kept launch each."""

    @staticmethod
    def forward(ctx, x, hot_launch, key, offset):
        ctx.hot_launch, ctx.key, ctx.offset = hot_launch, key, offset
        return hot_launch(x, key, offset)

    @staticmethod
    def backward(ctx, grad_out):
        hot_launch = ctx.hot_launch
        if hot_launch.fits(grad_out):
            return hot_launch(grad_out, ctx.key, ctx.offset), None, None, None
        return replay(grad_out, hot_launch.p, SCALAR, ctx.key, ctx.offset, None, None), None, None, None


_hot_apply = FUNCTION_APPLY.__get__(None, HotElementDropout)


def dropout_from_torch(x: torch.Tensor, p: float) -> torch.Tensor:
    """Element dropout of x (checked, 0 < p) with the stream drawn from torch's generator: the call of
    SeededDropout and of dropout(x, p). A repeat call takes the hot path (kernels.hot_path)."""
    kept = _hot.kept(x, p)
    if kept is not None and kept.native is not None:
        out = kept.native.dropout(x)  # draws the stream and launches in C++ (kernels.native)
        if out is not None:
            return out
    taken = None if kept is None else kept.take(x)
    if taken is None:
        return ElementDropoutFunction.run(x, p, FROM_TORCH_STREAM, None)
    hot_launch, key, offset = taken
    if torch.is_grad_enabled() and x.requires_grad:
        return _hot_apply(x, hot_launch, key, offset)
    return hot_launch(x, key, offset)


def element_dropout(x, p, stream: Stream, global_cols=None, training=True):
    """Element dropout after the argument checks."""
    if not training or p == 0.0:
        return x
    if stream.source == FROM_TORCH and global_cols is None:
        return dropout_from_torch(x, p)
    return ElementDropoutFunction.run(x, p, stream, global_cols)


def check_global_cols(global_cols, x: torch.Tensor):
    """None, or the row length of the whole tensor that x is a column block of."""
    if global_cols is None:
        return None
    global_cols = check_offset(global_cols, "global_cols")
    if x.dim() == 0 or global_cols < x.shape[-1]:
        raise ValueError(f"global_cols must be >= x.shape[-1] ({x.shape[-1] if x.dim() else 'no dims'}), "
                         f"got {global_cols}")
    return global_cols


def seeded_dropout(x: torch.Tensor, p: float, seed=None, training: bool = True, *, offset: int = 0,
                   global_cols: int | None = None, state: torch.Tensor | None = None) -> torch.Tensor:
    """Element dropout whose mask is a pure function of (key, offset, element index, p).

    seed: an int in [0, 2**64 - 1]; a 0-d int64 tensor on x's device (the key, read when the
    kernel runs: a CUDA graph sees its value at each replay); or a 1-D int64 tensor with one
    key per row of a 2-D x (row r uses seed[r]; e counts within the row).
    state: instead of seed, an RNG state (dropbench.kernels.new_state) that the call reads
    and advances on the device: a fresh mask per call, also under CUDA graphs.
    Neither: the stream is drawn from torch's generator, as F.dropout draws (kernels.rng):
    torch.manual_seed and the RNG-state APIs replay it.
    offset: the stream index of x's first element, for a shard of a larger tensor: a row
    shard holding elements [k, k + n) of the whole passes offset=k and gets exactly that
    slice of the whole tensor's mask. global_cols: for a column (or block) shard of a 2-D
    (R, C) tensor, C; then offset = r0 * C + c0 for the block starting at (r0, c0).
    p = 0 or training=False returns x itself; p = 1 returns zeros with zero gradients.
    """
    p, stream = checked(x, p, seed, offset, state)
    global_cols = check_global_cols(global_cols, x)
    if stream.source == ROW_KEYS and global_cols is not None:
        raise TypeError("per-row seeds and global_cols don't combine: e already counts within each row")
    if stream.source in (STATE, FROM_TORCH) and global_cols is not None:
        raise TypeError("global_cols (shards) takes a seed: every shard of one call must read the same "
                        "stream, and a state or torch's generator gives each call its own")
    return element_dropout(x, p, stream, global_cols, training)
