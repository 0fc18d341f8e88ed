"""Triton building blocks of the mask stream that every seeded kernel shares.

The stream (kernels.contract, mask stream v3): stream index s is kept iff R(s) >= T(p), where
R(s) = word (s div 2) mod 4 of Philox4x32-10(key, counter = s div 8), its 16-bit halves
swapped for even s. An element's stream index is s = offset + e, e its logical index in the
tensor (or in the reduced mask shape for shared masks); the offset is 0 unless a caller asks
for a slice of a longer stream (shards), or torch's generator or a device RNG state supplies it.

Where (key, offset) come from is a compile-time choice, SOURCE (a call given no seed or
state first draws a SCALAR or KEY_TENSOR stream from torch's generator: kernels.rng):
- SCALAR: key and offset are kernel arguments (a Python int seed);
- KEY_TENSOR: the key is read from a 0-d int64 tensor on the device (CUDA graphs then
  see its current value at each replay), the offset is an argument;
- ROW_KEYS: row r's key is read from a 1-D int64 tensor (per-row seeds);
- SNAPSHOT: key and a base offset are read from a 2-element int64 tensor (the
  forward's recorded state, which backward replays);
- STATE: as SNAPSHOT, read from an advancing RNG state (kernels.rng): program 0
  records (key, base offset) into the snapshot, and the last program to finish moves
  the state's offset on by `advance`, so the next call, or the next CUDA-graph replay,
  draws a fresh mask with no host involvement.
"""

import triton
import triton.language as tl

# Host values of SOURCE (see the module docstring); the kernels compare against the constexprs below.
SCALAR, KEY_TENSOR, ROW_KEYS, SNAPSHOT, STATE = 0, 1, 2, 3, 4
#: Host-only: no seed or state was given, so the call draws its stream from torch's generator
#: (kernels.rng.torch_stream) before launching; never passed to a kernel.
FROM_TORCH = -1
_KEY_TENSOR = tl.constexpr(KEY_TENSOR)
_ROW_KEYS = tl.constexpr(ROW_KEYS)
_SNAPSHOT = tl.constexpr(SNAPSHOT)
_STATE = tl.constexpr(STATE)


@triton.jit
def stream_origin(seeds_ptr, key, offset, row, SOURCE: tl.constexpr, WIDE_STREAM: tl.constexpr):
    """This program's (key, offset): the arguments, or read from the device as SOURCE says.

    WIDE_STREAM: the stream indices pass int32 (torch's generator offsets do within a few training
    steps) while the element offsets need not: the offset becomes 64-bit, so the stream indices
    built on it are, and the addressing stays 32-bit unless WIDE_INDEX makes the program id 64-bit.
    """
    if SOURCE == _KEY_TENSOR:
        key = tl.load(seeds_ptr)
    elif SOURCE == _ROW_KEYS:
        key = tl.load(seeds_ptr + row)
    elif SOURCE >= _SNAPSHOT:
        key = tl.load(seeds_ptr)
        offset = offset + tl.load(seeds_ptr + 1)
    if WIDE_STREAM:
        offset = tl.cast(offset, tl.int64)
    return key, offset


@triton.jit
def advance_state(state_ptr, snapshot_ptr, advance, SOURCE: tl.constexpr):
    """With SOURCE == STATE: record the state this launch used, and move it on once every program has read it.

    Every program reads the state at its start and only then takes a ticket (the atomic
    orders that read before it), so the program holding the last ticket knows that no
    program still needs the old offset; it writes the new one and resets the ticket count.
    """
    if SOURCE == _STATE:
        pid = tl.program_id(0)
        base = tl.load(state_ptr + 1)
        if pid == 0:
            tl.store(snapshot_ptr, tl.load(state_ptr))
            tl.store(snapshot_ptr + 1, base)
        ticket = tl.atomic_add(state_ptr + 2, 1)
        if ticket == tl.num_programs(0) - 1:
            tl.store(state_ptr + 1, base + advance)
            tl.store(state_ptr + 2, 0)


@triton.jit
def philox_words(key, counter):
    """The four 32-bit words of Philox4x32-10(key, (counter low, counter high, 0, 0)).

    counter: a tensor of int32 or int64 counters.
    """
    low = counter.to(tl.uint32)
    zero = low * 0
    if tl.constexpr(counter.dtype.primitive_bitwidth) > 32:
        high = (counter >> 32).to(tl.uint32)
    else:
        high = zero
    return tl.philox(key, low, high, zero, zero)


@triton.jit
def lane_words(lane, r0, r1, r2, r3):
    """R of stream lane `lane` (0..7) of one Philox call: word lane div 2, its 16-bit halves swapped for
    an even lane, so that the lane's own half H is the high half and its partner's (lane xor 1) the low."""
    word = tl.where(lane < 4, tl.where(lane < 2, r0, r1), tl.where(lane < 6, r2, r3))
    return tl.where(lane % 2 == 0, (word << 16) | (word >> 16), word)


@triton.jit
def threshold_word(threshold):
    """T(p) as uint32. threshold: T(p), or T(p)'s int32 bit pattern (what inductor's launches pass)."""
    # tl.cast, not .to: inductor's mutation analysis of a traced launch passes scalars as Python ints.
    return tl.cast(threshold, tl.int64).to(tl.uint32)


@triton.jit
def element_keeps(key, index, threshold):
    """The contract's keep decision for each stream index of `index` (a tensor of any shape): one
    Philox call per element (shards that start mid-counter, strided inputs, tiles of fewer than 8
    mask values)."""
    r0, r1, r2, r3 = philox_words(key, index // 8)
    return lane_words(index % 8, r0, r1, r2, r3) >= threshold_word(threshold)


@triton.jit
def tile_keeps(key, first_index, threshold, COUNTERS: tl.constexpr, ALIGNED: tl.constexpr):
    """Keep decisions of the [COUNTERS, 8] tile whose element (i, j) has stream index first_index + 8i + j.

    ALIGNED (first_index a multiple of 8): row i is counter first_index / 8 + i, one Philox call per
    eight elements, and each element is one 32-bit compare. Otherwise (a shard that starts
    mid-counter) element_keeps: one call per element, same decisions.
    """
    lanes = tl.arange(0, 8)[None, :]
    if ALIGNED:
        r0, r1, r2, r3 = philox_words(key, first_index // 8 + tl.arange(0, COUNTERS))
        keep = lane_words(lanes, r0[:, None], r1[:, None], r2[:, None], r3[:, None]) >= threshold_word(threshold)
    else:
        keep = element_keeps(key, first_index + (tl.arange(0, COUNTERS)[:, None] * 8 + lanes), threshold)
    return keep


@triton.jit
def rows_tile(pid, cols, BLOCK: tl.constexpr):
    """Program pid's (row, first column, [BLOCK/8, 8] tile of columns, in-bounds mask)."""
    blocks_per_row = tl.cdiv(cols, BLOCK)
    row = pid // blocks_per_row
    col_start = (pid % blocks_per_row) * BLOCK
    cols_in_tile = col_start + tl.arange(0, BLOCK // 8)[:, None] * 8 + tl.arange(0, 8)[None, :]
    return row, col_start, cols_in_tile, cols_in_tile < cols


@triton.jit
def scale_kept(x, keep, scale_bits):
    """x * scale where keep, else exactly 0, computed in fp32 (fp64 for fp64).

    scale_bits: the scale's fp64 bits (contract.scale_bits, always past int32 for a scale >= 1),
    or, for fp16, bf16 and fp32 launches that inductor makes (it takes no int argument past int32),
    its fp32 bits (contract.float32_bits, always below 2**31): both give the same fp32 scale.
    """
    bits = tl.cast(scale_bits, tl.int64)
    if x.dtype == tl.float64:
        scaled = x * bits.to(tl.float64, bitcast=True)
    else:
        from_fp64 = bits.to(tl.float64, bitcast=True).to(tl.float32)
        from_fp32 = bits.to(tl.int32).to(tl.float32, bitcast=True)
        scaled = x.to(tl.float32) * tl.where(bits > 2147483647, from_fp64, from_fp32)
    return tl.where(keep, scaled, 0.0).to(x.dtype)


@triton.jit
def locked_tile(pid, D, M, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr, GROUP: tl.constexpr):
    """Program pid's (outer index o, first mask-axis index, [BLOCK_D, 1, 1] shared-axis indices d,
    [1, BLOCK_M / GROUP, GROUP] mask-axis indices m, in-bounds mask); m blocks vary fastest, then
    d blocks, then o. GROUP is 8 (one Philox counter), or BLOCK_M where that is smaller."""
    m_blocks = tl.cdiv(M, BLOCK_M)
    d_blocks = tl.cdiv(D, BLOCK_D)
    o = pid // (m_blocks * d_blocks)
    d = ((pid // m_blocks) % d_blocks) * BLOCK_D + tl.arange(0, BLOCK_D)[:, None, None]
    m_start = (pid % m_blocks) * BLOCK_M
    m = m_start + (tl.arange(0, BLOCK_M // GROUP)[:, None] * GROUP + tl.arange(0, GROUP)[None, :])[None, :, :]
    return o, m_start, d, m, (d < D) & (m < M)


@triton.jit
def locked_keeps(key, first_index, threshold, BLOCK_M: tl.constexpr, GROUP: tl.constexpr, ALIGNED: tl.constexpr):
    """Keep decisions of mask elements first_index .. first_index + BLOCK_M - 1 as a
    [1, BLOCK_M / GROUP, GROUP] tile (locked_tile's m), to broadcast over the shared axis."""
    if GROUP == 8:
        keep = tile_keeps(key, first_index, threshold, BLOCK_M // 8, ALIGNED)
    else:
        keep = element_keeps(key, first_index + tl.arange(0, GROUP)[None, :], threshold)
    return keep[None, :, :]


@triton.jit
def run_of(local, run_len):
    """local // run_len through a float reciprocal (an integer division is tens of instructions), for the
    runs kernel's range: 0 <= local < 2**24 + BLOCK and a quotient of at most 63. There the estimate is
    within 1 of the quotient, and the two compares make it exact."""
    run = ((local.to(tl.float32) + 0.5) * (1.0 / run_len.to(tl.float32))).to(tl.int32)
    return run + (local >= (run + 1) * run_len).to(tl.int32) - (local < run * run_len).to(tl.int32)


@triton.jit
def run_bit(low, high, run):
    """Bit `run` (0..63) of the 64 decisions packed in the words low (runs 0..31) and high (32..63)."""
    return ((tl.where(run < 32, low, high) >> (run % 32)) & 1) != 0


@triton.jit
def runs_keep(key, offset, threshold, start, run_len, BLOCK: tl.constexpr, COUNTERS: tl.constexpr):
    """Keep decisions of elements start .. start + BLOCK - 1 of runs of run_len elements (run r: mask
    element r), as a [BLOCK / 16, 16] tile of groups of 16 consecutive elements.

    Needs BLOCK <= 62 * run_len + 2 (the block then touches at most 64 runs), BLOCK >= 16, run_len >= 15
    (a group then touches at most two runs, so each group finds its run once, not each element), and
    COUNTERS = layout.runs_counters(BLOCK, run_len) or more (16 always suffices).
    """
    first_run = start // run_len
    # Mask element r has stream index offset + r. The block's runs' decisions come from the aligned
    # [COUNTERS, 8] tile that holds them (COUNTERS Philox calls, not one per run: the runs + shift
    # span at most 8 * COUNTERS indices), packed into two words of bits (at most 64 runs).
    first = offset + first_run
    shift = (first % 8).to(tl.int32)
    kept = tile_keeps(key, first - shift, threshold, COUNTERS, True)
    runs = tl.arange(0, COUNTERS)[:, None] * 8 + tl.arange(0, 8)[None, :] - shift  # tile element -> run
    low = tl.sum(tl.where(kept & (runs >= 0) & (runs < 32), 1 << (runs & 31), 0), axis=None)  # distinct bits: sum is OR
    high = tl.sum(tl.where(kept & (runs >= 32) & (runs < 64), 1 << (runs & 31), 0), axis=None)
    # Per group: its first element's run (counted from the first run's start), and how many of its
    # elements lie in that run; the rest lie in the next.
    group_start = (start - first_run * run_len).to(tl.int32) + tl.arange(0, BLOCK // 16) * 16
    run = run_of(group_start, run_len)
    in_first_run = (run + 1) * run_len - group_start
    first_kept = run_bit(low, high, run)[:, None]
    next_kept = run_bit(low, high, run + 1)[:, None]
    return tl.where(tl.arange(0, 16)[None, :] < in_first_run[:, None], first_kept, next_kept)


@triton.jit
def runs_tile(pid, numel, BLOCK: tl.constexpr):
    """Program pid's first element, its [BLOCK / 16, 16] tile of consecutive offsets (runs_keep's
    shape) and their in-bounds mask. The kernels load x before they compute the keep decisions, so
    the loads are in flight meanwhile (docs/perf-notes.md)."""
    start = pid * BLOCK
    offsets = start + tl.arange(0, BLOCK // 16)[:, None] * 16 + tl.arange(0, 16)[None, :]
    return start, offsets, offsets < numel
