"""Device-side RNG state: a Philox key and a 64-bit stream offset that the kernels advance themselves.

A state is an int64 tensor [key, offset, tickets, spare] on the input's device. A call
given `state=` reads (key, offset) on the device, uses stream indices offset + e, and
its last program moves the offset on by the call's stream length (rounded up to a
multiple of 4, so every call starts a Philox counter). No host sync and no extra torch
op per call, so eager calls, torch.compile graphs and CUDA-graph replays all draw a
fresh mask each time. The call returns nothing of the state; autograd keeps a 2-int64
snapshot [key, offset] of what the forward read, and backward replays it.

Recomputing a call's mask: it is the mask of seed=key, offset=offset (kernels.contract),
with (key, offset) the call's snapshot (SeededDropout.last_state).
"""

from __future__ import annotations

import torch

from dropbench.kernels.contract import STATE_SIZE, as_int64_bits, check_offset, check_seed

#: torch.randint draws int64 below this; any 64-bit pattern is a valid key.
_KEY_DRAW_BOUND = 2**63 - 1


def advance_length(length: int) -> int:
    """How far a call over `length` stream indices moves the offset: length rounded up to 4."""
    return (length + 3) // 4 * 4


def new_state(seed: int | None = None, device=None) -> torch.Tensor:
    """A fresh RNG state at offset 0. seed=None draws the key from torch's default CPU generator
    (one draw, as building an nn.Linear draws), so torch.manual_seed before building a model
    makes its masks reproducible. Pass a seed to leave the generator untouched.
    (A call with p = 1 draws nothing and leaves the state where it was.)"""
    if seed is None:
        key = int(torch.randint(_KEY_DRAW_BOUND, (1,), dtype=torch.int64).item())
    else:
        key = as_int64_bits(check_seed(seed))
    state = torch.zeros(STATE_SIZE, dtype=torch.int64, device=device)
    state[0] = key
    return state


def reset_state(state: torch.Tensor, seed: int, offset: int = 0) -> torch.Tensor:
    """Set a state in place to (seed, offset), e.g. to replay a run's masks; returns it.

    The offset must be a multiple of 4 (every call starts a Philox counter).
    """
    seed = check_seed(seed)
    if check_offset(offset) % 4:
        raise ValueError(f"offset must be a multiple of 4 (every call starts a Philox counter), got {offset}")
    state.copy_(torch.tensor([as_int64_bits(seed), offset, 0, 0], dtype=torch.int64))
    return state
