"""The mask contract shared by every seeded kernel, and the checks on its arguments.

A call with key k and offset o keeps element e (its logical row-major index) iff
R(k, o + e) >= T(p), T(p) = round(p * 2**32), where (mask stream v3)
  R(k, s) = H(s) * 2**16 + H(s xor 1),
  H(s) = 16-bit half (s mod 2; half 0 is the low bits) of word (s div 2) mod 4 of
         Philox4x32-10(key = k, counter = (s div 8 low 32 bits, s div 8 high 32 bits, 0, 0)).
So R(s) is one 32-bit Philox word, its halves swapped for even s: one Philox call decides eight
elements, each with one 32-bit compare. An element's own half H(s) decides it unless H(s) ties
T(p)'s high half (probability 2**-16); then its partner's half (that of s xor 1, the other half
of the same word) does. The keep probability is exactly (2**32 - T) / 2**32; the two elements of
one word depend on each other only through such ties (correlation about 1e-5 at p = 0.1, 0 at
p = 0.5: docs/kernels.md). Kept elements become x / (1 - p), dropped ones 0.
The offset is 0 for a plain seeded call; a shard passes the index of its first
element in the whole tensor; a device RNG state (kernels.rng) supplies its own.
Nothing here depends on block size, dtype, strides or device, which is what
makes masks reproducible across releases.
"""

import math
import numbers
import struct
from typing import NamedTuple

import torch

from dropbench.kernels.stream import FROM_TORCH, KEY_TENSOR, ROW_KEYS, SCALAR, STATE

SUPPORTED_DTYPES = {
    torch.float16: "fp16",
    torch.bfloat16: "bf16",
    torch.float32: "fp32",
    torch.float64: "fp64",
}
SEED_MIN, SEED_MAX = 0, 2**64 - 1
TWO_POW_32 = 2**32
OFFSET_MAX = 2**62  # stream indices stay far from int64 overflow
#: Version of the mask stream (recorded in the results CSV's mask_contract column).
MASK_CONTRACT = "v3"
#: An RNG state is int64 [key, offset, tickets, spare] (kernels.rng).
STATE_SIZE = 4


class Stream(NamedTuple):
    """Where a call's (key, offset) come from: kernels.stream's SOURCE and what it reads.

    seeds is None (SCALAR), a 0-d key tensor (KEY_TENSOR), per-row keys (ROW_KEYS) or an
    RNG state (STATE); key is the int key's int64 bit pattern (0 when read on the device).
    """

    source: int
    key: int
    offset: int
    seeds: torch.Tensor | None


def keep_threshold(p: float) -> int:
    """T(p) = round(p * 2**32): an element is kept iff its 32-bit random word >= T(p).

    An integer threshold wastes no random bits and cannot bias p through a float
    conversion; the keep probability is exactly (2**32 - T) / 2**32.
    """
    return round(p * TWO_POW_32)


def float64_bits(value: float) -> int:
    """A float64's bits as a signed 64-bit int.

    Triton passes Python floats as fp32, which would round the fp64 kernels' constants;
    the bits travel as an int64 and are bitcast back inside the kernel.
    """
    return struct.unpack("<q", struct.pack("<d", value))[0]


def float32_bits(value: float) -> int:
    """A float rounded to fp32 (to nearest even, as Triton's fp64-to-fp32 conversion), its bits as a
    signed 32-bit int."""
    return struct.unpack("<i", struct.pack("<f", value))[0]


def scale_bits(p: float) -> int:
    """float64_bits of the kept elements' scale 1 / (1 - p)."""
    return float64_bits(1.0 / (1.0 - p))


def drops_everything(p: float) -> bool:
    """p so close to 1 that T(p) = 2**32: no 32-bit word can be kept."""
    return keep_threshold(p) >= TWO_POW_32


def check_p(p) -> float:
    """Return p as a float, or raise naming the argument and the allowed values."""
    if type(p) is float and 0.0 <= p <= 1.0:  # the common call, without the ABC checks (host time)
        return p
    if isinstance(p, bool) or not isinstance(p, numbers.Real):
        raise TypeError(f"p must be a real number in [0, 1], got {type(p).__name__} {p!r}")
    p = float(p)
    if not (0.0 <= p <= 1.0) or math.isnan(p):
        raise ValueError(f"p must be in [0, 1], got {p}")
    return p


def check_input(x, name: str = "x") -> None:
    """Raise unless x is a floating tensor of a dtype the kernels support."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype not in SUPPORTED_DTYPES:
        allowed = ", ".join(str(d) for d in SUPPORTED_DTYPES)
        raise TypeError(f"{name} has dtype {x.dtype}; supported dtypes are {allowed}")


def check_seed(seed) -> int:
    """Return an int seed in [0, 2**64 - 1], or raise naming the argument and the range."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(
            f"seed must be an int in [{SEED_MIN}, 2**64 - 1] or an int64 tensor (0-d key or per-row keys), "
            f"got {type(seed).__name__}"
        )
    seed = int(seed)
    if not SEED_MIN <= seed <= SEED_MAX:
        raise ValueError(f"seed must be in [{SEED_MIN}, 2**64 - 1], got {seed}")
    return seed


def as_int64_bits(seed: int) -> int:
    """The seed's 64-bit pattern as a signed int64 (what torch ops and Triton's i64 carry)."""
    return seed - 2**64 if seed >= 2**63 else seed


def check_row_seeds(seeds: torch.Tensor, x: torch.Tensor) -> None:
    """Per-row seeds: a 1-D int64 tensor with one seed per row of a 2-D x, on x's device.

    Each int64 is read as its 64-bit two's-complement pattern, so every value is a valid key.
    """
    if seeds.dtype != torch.int64 or seeds.dim() != 1:
        raise TypeError(f"seed as a tensor must be 1-D int64 (one per row), got {seeds.dim()}-D {seeds.dtype}")
    if x.dim() != 2:
        raise ValueError(f"per-row seeds need a 2-D x, got x with shape {tuple(x.shape)}")
    if seeds.numel() != x.shape[0]:
        raise ValueError(f"seed has {seeds.numel()} entries but x has {x.shape[0]} rows; give one seed per row")
    if seeds.device != x.device:
        raise ValueError(f"seed is on {seeds.device} but x is on {x.device}; put them on the same device")


def check_offset(offset, name: str = "offset") -> int:
    """Return a stream position (an offset, or a row length of the stream) as an int in [0, 2**62],
    or raise naming the argument."""
    if type(offset) is int and 0 <= offset <= OFFSET_MAX:  # the common call, without the ABC checks
        return offset
    if isinstance(offset, bool) or not isinstance(offset, numbers.Integral):
        raise TypeError(f"{name} must be an int in [0, 2**62], got {type(offset).__name__}")
    if not 0 <= offset <= OFFSET_MAX:
        raise ValueError(f"{name} must be in [0, 2**62], got {offset}")
    return int(offset)


def check_state(state, x: torch.Tensor) -> None:
    """An RNG state: an int64 tensor of STATE_SIZE elements on x's device (kernels.rng.new_state)."""
    if not isinstance(state, torch.Tensor) or state.dtype != torch.int64 or state.shape != (STATE_SIZE,):
        got = f"{tuple(state.shape)} {state.dtype}" if isinstance(state, torch.Tensor) else type(state).__name__
        raise TypeError(f"state must be an int64 tensor of shape ({STATE_SIZE},) from dropbench.kernels.new_state, "
                        f"got {got}")
    if state.device != x.device:
        raise ValueError(f"state is on {state.device} but x is on {x.device}; put them on the same device")


#: The stream of every call given no seed or state (drawn from torch's generator when it runs).
FROM_TORCH_STREAM = Stream(FROM_TORCH, 0, 0, None)


def checked(x, p, seed, offset=0, state=None, row_seeds_allowed: bool = True) -> tuple[float, Stream]:
    """The checked p and the call's Stream, from the public arguments of every dropout function.

    seed: an int in [0, 2**64 - 1]; a 0-d int64 tensor (the key, read on x's device); or, for
    2-D x where row_seeds_allowed, a 1-D int64 tensor of per-row keys. state: an RNG state
    (kernels.rng) instead of seed, which the call reads and advances on the device. Neither:
    a FROM_TORCH stream, drawn from torch's generator when the call runs (kernels.rng.drawn).
    """
    check_input(x)
    p = check_p(p)
    offset = check_offset(offset)
    if state is not None:
        if seed is not None:
            raise TypeError("give either seed or state, not both")
        if offset:
            raise TypeError("offset (shards) takes a seed, not state: every shard of one call must read "
                            "the same stream, and a state advances per call")
        check_state(state, x)
        return p, Stream(STATE, 0, offset, state)
    if isinstance(seed, torch.Tensor):
        if seed.dim() == 0:
            if seed.dtype != torch.int64:
                raise TypeError(f"seed as a 0-d tensor must be int64, got {seed.dtype}")
            if seed.device != x.device:
                raise ValueError(f"seed is on {seed.device} but x is on {x.device}; put them on the same device")
            return p, Stream(KEY_TENSOR, 0, offset, seed)
        if not row_seeds_allowed:
            raise TypeError("seed must be an int or a 0-d int64 tensor here (per-row seeds are for seeded_dropout)")
        check_row_seeds(seed, x)
        return p, Stream(ROW_KEYS, 0, offset, seed)
    if seed is None:
        if offset:
            raise TypeError("offset (shards) takes a seed: every shard of one call must read the same stream, "
                            "and with no seed each call draws its own from torch's generator")
        return p, FROM_TORCH_STREAM
    return p, Stream(SCALAR, as_int64_bits(check_seed(seed)), offset, None)


def check_dim(dim, ndim: int) -> int:
    """Return dim normalised to [0, ndim), or raise naming the allowed range."""
    if isinstance(dim, bool) or not isinstance(dim, numbers.Integral):
        raise TypeError(f"dim must be an int, got {type(dim).__name__}")
    if not -ndim <= dim < ndim:
        raise ValueError(f"dim must be in [{-ndim}, {ndim - 1}] for a {ndim}-D input, got {dim}")
    return int(dim) % ndim
