"""Where a call's stream comes from when no seed is given: torch's generator, or an explicit device state.

No seed, no state (the modules, and every function called without one): the stream is
drawn from torch's generator, as torch's own dropout draws. In eager mode on a GPU the key
is the CUDA generator's seed and the stream offset twice the generator's Philox offset, which
the call moves on by half its stream length (host ints: no extra kernel, no sync). torch
counts its offset in 32-bit words, 4 per Philox counter; a stream counter serves 8 stream
indices, so offset o of torch's stream is stream index 2 * o (a counter boundary, as torch's
offsets are multiples of 4). So torch.manual_seed,
get_rng_state/set_rng_state, fork_rng and activation checkpointing (which restores the RNG
state before it recomputes) give the masks they give nn.Dropout, and
seeded_dropout(x, p, seed=key, offset=2 * generator_offset) recomputes a call's mask. While torch.compile
traces or a CUDA graph captures, host ints would be baked into the graph: the key is then
a 0-d int64 tensor drawn by a torch RNG op, which the graph re-runs (graph-safe, like every
torch RNG op), so each call and each replay gets a fresh key. On the CPU (Triton's
interpreter) the key is drawn from torch's CPU generator.

An explicit state is an int64 tensor [key, offset, tickets, spare] on the input's device,
for masks reproducible by key without torch's generator. A call given `state=` reads
(key, offset) on the device, uses stream indices offset + e, and its last program moves
the offset on by the call's stream length (rounded up to a multiple of 8, so every call
starts a Philox counter). Autograd keeps a 2-int64 snapshot [key, offset] of what the
forward read, and backward replays it.
"""

from __future__ import annotations

import torch

from dropbench.kernels.contract import STATE_SIZE, Stream, as_int64_bits, check_offset, check_seed
from dropbench.kernels.stream import FROM_TORCH, KEY_TENSOR, SCALAR

#: torch.randint draws int64 below this; any 64-bit pattern is a valid key.
_KEY_DRAW_BOUND = 2**63 - 1


def advance_length(length: int) -> int:
    """How far a call over `length` stream indices moves the stream offset: length rounded up to 8
    (one Philox counter per 8 indices), so the next call starts a counter."""
    return (length + 7) // 8 * 8


def generator_advance(length: int) -> int:
    """How far a call over `length` stream indices moves torch's generator offset: its stream advance
    in torch's units (a stream offset is twice the generator's; a multiple of 4, as torch's own)."""
    return advance_length(length) // 2


def torch_stream(x: torch.Tensor, length: int) -> Stream:
    """A stream of `length` indices for a call on x, drawn from torch's generator (see the module docstring).

    Reading the offset and moving it on are two calls, not one atomic step: one thread per device.
    """
    if torch.compiler.is_compiling() or (x.is_cuda and torch.cuda.is_current_stream_capturing()):
        return Stream(KEY_TENSOR, 0, 0, torch.randint(_KEY_DRAW_BOUND, (), dtype=torch.int64, device=x.device))
    if x.is_cuda:
        generator = torch.cuda.default_generators[x.get_device()]
        offset = generator.get_offset()
        generator.set_offset(offset + generator_advance(length))
        return Stream(SCALAR, as_int64_bits(generator.initial_seed()), 2 * offset, None)
    return Stream(SCALAR, int(torch.randint(_KEY_DRAW_BOUND, (), dtype=torch.int64)), 0, None)


#: The stream of a call with p = 1 given no seed or state: it keeps nothing, so it draws nothing.
_NOTHING_DRAWN = Stream(SCALAR, 0, 0, None)


def drawn(stream: Stream, x: torch.Tensor, p: float) -> Stream:
    """The stream itself, or for a call given no seed or state, one drawn from torch's generator.

    It advances by x.numel(): no less than any op's mask over x (the shared-mask ops draw fewer).
    With p = 1 nothing is drawn, as torch's dropout draws nothing then (the generator stays put).
    """
    if stream.source == FROM_TORCH:
        return _NOTHING_DRAWN if p == 1.0 else torch_stream(x, x.numel())
    return stream


def new_state(seed: int | None = None, device=None) -> torch.Tensor:
    """A fresh explicit RNG state at offset 0 on `device`. seed=None draws the key from torch's
    default CPU generator once (so torch.manual_seed before makes it reproducible); pass a seed
    to leave the generator untouched. (A call with p = 1 leaves the state where it was.)"""
    if seed is None:
        key = int(torch.randint(_KEY_DRAW_BOUND, (1,), dtype=torch.int64).item())
    else:
        key = as_int64_bits(check_seed(seed))
    state = torch.zeros(STATE_SIZE, dtype=torch.int64, device=device)
    state[0] = key
    return state


def reset_state(state: torch.Tensor, seed: int, offset: int = 0) -> torch.Tensor:
    """Set a state in place to (seed, offset), e.g. to replay a run's masks; returns it.

    The offset must be a multiple of 8 (every call starts a Philox counter).
    """
    seed = check_seed(seed)
    if check_offset(offset) % 8:
        raise ValueError(f"offset must be a multiple of 8 (every call starts a Philox counter), got {offset}")
    state.copy_(torch.tensor([as_int64_bits(seed), offset, 0, 0], dtype=torch.int64))
    return state
