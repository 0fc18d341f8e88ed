"""Triton building blocks of the mask stream that every seeded kernel shares.

The stream (kernels.contract): stream index s is kept iff R(s) >= T(p), where
R(s) = 32-bit word (s mod 4) of Philox4x32-10(key, counter = s div 4). An element's
stream index is s = offset + e, e its logical index in the tensor (or in the reduced
mask shape for shared masks); the offset is 0 unless a caller asks for a slice of a
longer stream (shards), or torch's generator or a device RNG state supplies it.

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
def stream_origin(seeds_ptr, key, offset, row, SOURCE: tl.constexpr):
    """This program's (key, offset): the arguments, or read from the device as SOURCE says."""
    if SOURCE == _KEY_TENSOR:
        key = tl.load(seeds_ptr)
    elif SOURCE == _ROW_KEYS:
        key = tl.load(seeds_ptr + row)
    elif SOURCE >= _SNAPSHOT:
        key = tl.load(seeds_ptr)
        offset = offset + tl.load(seeds_ptr + 1)
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
def pick_word(lane, r0, r1, r2, r3):
    """Word `lane` (0..3) of one Philox call; lane has the shape of the result."""
    return tl.where(lane == 0, r0, tl.where(lane == 1, r1, tl.where(lane == 2, r2, r3)))


@triton.jit
def element_words(key, index):
    """R(s) for each stream index s: word s mod 4 of Philox(key, s div 4), one call per element."""
    r0, r1, r2, r3 = tl.randint4x(key, index // 4)
    return pick_word(index % 4, r0, r1, r2, r3)


@triton.jit
def tile_words(key, first_counter, BLOCK: tl.constexpr):
    """The [BLOCK/4, 4] tile of words whose row i is the four words of counter first_counter + i.

    One Philox call per four elements. With first_counter = (first stream index) div 4 and
    that index a multiple of 4, element s gets word s mod 4 of counter s div 4 whatever BLOCK is.
    """
    r0, r1, r2, r3 = tl.randint4x(key, first_counter + tl.arange(0, BLOCK // 4))
    lanes = tl.arange(0, 4)[None, :]
    return pick_word(lanes, r0[:, None], r1[:, None], r2[:, None], r3[:, None])


@triton.jit
def rows_tile(pid, cols, BLOCK: tl.constexpr):
    """Program pid's (row, first column, [BLOCK/4, 4] tile of columns, in-bounds mask)."""
    blocks_per_row = tl.cdiv(cols, BLOCK)
    row = pid // blocks_per_row
    col_start = (pid % blocks_per_row) * BLOCK
    cols_in_tile = col_start + tl.arange(0, BLOCK // 4)[:, None] * 4 + tl.arange(0, 4)[None, :]
    return row, col_start, cols_in_tile, cols_in_tile < cols


@triton.jit
def rows_tile_words(key, first_index, cols_in_tile, col_start, ALIGNED: tl.constexpr, BLOCK: tl.constexpr):
    """Words of a rows tile whose first element has stream index first_index.

    ALIGNED (first_index a multiple of 4): one Philox call per four elements. Otherwise
    (a shard starting mid-counter) one call per element, same words.
    """
    if ALIGNED:
        return tile_words(key, first_index // 4, BLOCK)
    return element_words(key, first_index + (cols_in_tile - col_start))


@triton.jit
def keeps(word, threshold):
    """The contract's keep decision: the 32-bit word, read unsigned, is >= T(p)."""
    # tl.cast, not .to: inductor's mutation analysis of a traced launch passes scalars as Python ints.
    return word.to(tl.uint32, bitcast=True) >= tl.cast(threshold, tl.uint32)


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
def apply_keep(x, word, threshold, scale_bits):
    """x * scale where word >= threshold, else exactly 0, computed in fp32 (fp64 for fp64)."""
    return scale_kept(x, keeps(word, threshold), scale_bits)


@triton.jit
def locked_tile(pid, D, M, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr):
    """Program pid's (outer index o, [BLOCK_D] shared-axis indices d, [BLOCK_M] mask-axis indices m,
    [BLOCK_D, BLOCK_M] in-bounds mask); m blocks vary fastest, then d blocks, then o."""
    m_blocks = tl.cdiv(M, BLOCK_M)
    d_blocks = tl.cdiv(D, BLOCK_D)
    o = pid // (m_blocks * d_blocks)
    d = ((pid // m_blocks) % d_blocks) * BLOCK_D + tl.arange(0, BLOCK_D)
    m = (pid % m_blocks) * BLOCK_M + tl.arange(0, BLOCK_M)
    return o, d, m, (d[:, None] < D) & (m[None, :] < M)


@triton.jit
def runs_keep(key, offset, threshold, start, run_len, BLOCK: tl.constexpr):
    """Keep decisions of elements start .. start + BLOCK - 1 of runs of run_len elements (run r: mask element r).

    Needs BLOCK <= 62 * run_len + 2: the block then touches at most 64 runs.
    """
    first_run = start // run_len
    local = (start - first_run * run_len).to(tl.int32) + tl.arange(0, BLOCK)  # from the first run's start
    # local // run_len through a float reciprocal (an integer division is tens of instructions per
    # element); the estimate is within 1 of the quotient, and the two compares make it exact.
    run = ((local.to(tl.float32) + 0.5) * (1.0 / run_len.to(tl.float32))).to(tl.int32)
    run += (local >= (run + 1) * run_len).to(tl.int32) - (local < run * run_len).to(tl.int32)
    # One stream word per run (mask element r has stream index offset + r), packed into two words of bits.
    runs = tl.arange(0, 64)
    kept = keeps(element_words(key, offset + first_run + runs), threshold)
    low = tl.sum(tl.where(kept & (runs < 32), 1 << (runs % 32), 0), axis=0)  # distinct bits: sum is OR
    high = tl.sum(tl.where(kept & (runs >= 32), 1 << (runs % 32), 0), axis=0)
    bits = tl.where(run < 32, low, high)
    return ((bits >> (run % 32)) & 1) != 0


@triton.jit
def runs_tile(pid, key, offset, threshold, numel, run_len, BLOCK: tl.constexpr):
    """Program pid's [BLOCK] consecutive offsets, their in-bounds mask and their keep decisions."""
    start = pid * BLOCK
    offsets = start + tl.arange(0, BLOCK)
    return offsets, offsets < numel, runs_keep(key, offset, threshold, start, run_len, BLOCK)
