"""nn.Module forms of the seeded dropouts: identity in eval(), a fresh mask per call in train().

Each module holds a device-side RNG state (kernels.rng) as a non-persistent buffer: a
Philox key drawn from torch's default CPU generator when the module is built (so
torch.manual_seed before building a model makes its masks reproducible) and a stream
offset that the kernel itself advances at each call. No .item(), no host sync and no
extra torch op per call: the same module draws fresh masks in eager mode, inside
torch.compile(fullgraph=True) graphs and at every CUDA-graph replay. The buffer moves
with model.to(device), and follows the input on its first call otherwise; being
non-persistent, it keeps state_dicts interchangeable with nn.Dropout models.

`last_state` is the [key, offset] tensor the last call read (on the device, 16 bytes):
seeded_dropout(x, p, seed=key, offset=offset) recomputes that call's mask.
For activation checkpointing, pass checkpoint_context(model) as torch.utils.checkpoint's
context_fn, so that the recomputed forward reads the states the first forward read.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from dropbench.kernels import alpha, channel
from dropbench.kernels.contract import check_dim, check_input, check_p
from dropbench.kernels.element import ElementDropoutFunction
from dropbench.kernels.rng import new_state
from dropbench.kernels.stream import STATE
from dropbench.kernels.variational import VariationalDropoutFunction


class StatefulDropout(nn.Module):
    """The shared part of the modules: p, the RNG state buffer and the last call's state."""

    def __init__(self, p: float = 0.5, seed: int | None = None):
        super().__init__()
        self.p = check_p(p)
        self.register_buffer("rng_state", new_state(seed), persistent=False)
        self.last_state: torch.Tensor | None = None

    def _state_for(self, x: torch.Tensor) -> torch.Tensor:
        """The RNG state on x's device (moved there once if the module was not).

        Read from _buffers, and devices compared as indices: the per-call host time of a drop-in
        counts (nn.Module.__getattr__ and torch.device objects cost microseconds).
        """
        state = self._buffers["rng_state"]
        if state.get_device() != x.get_device():
            state = self.rng_state = state.to(x.device)
        return state

    def _keep_last_state(self, snapshot) -> None:
        """last_state = snapshot, past nn.Module.__setattr__ in eager mode (~3 to 7 us a call)."""
        if torch.compiler.is_compiling():
            self.last_state = snapshot
        else:
            self.__dict__["last_state"] = snapshot

    def extra_repr(self) -> str:
        return f"p={self.p}"


class SeededDropout(StatefulDropout):
    """Drop-in for nn.Dropout whose mask is recomputed from 16 bytes of state instead of stored."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        check_input(x)
        y, snapshot = ElementDropoutFunction.apply(x, self.p, STATE, 0, 0, self._state_for(x), None)
        self._keep_last_state(snapshot)
        return y


class VariationalDropout(StatefulDropout):
    """Locked dropout: one mask per call, shared along `dim` (e.g. dim=1 for (B, T, C) tokens)."""

    def __init__(self, p: float = 0.5, dim: int = 1, seed: int | None = None):
        super().__init__(p, seed)
        if isinstance(dim, bool) or not isinstance(dim, int):
            raise TypeError(f"dim must be an int, got {type(dim).__name__}")
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        check_input(x)
        dim = check_dim(self.dim, x.dim())
        y, snapshot = VariationalDropoutFunction.apply(x, self.p, STATE, 0, 0, self._state_for(x), dim)
        self._keep_last_state(snapshot)
        return y

    def extra_repr(self) -> str:
        return f"p={self.p}, dim={self.dim}"


class _FunctionalDropout(StatefulDropout):
    """A module calling one seeded function with the module's state (the channel and alpha ops)."""

    function = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        return type(self).function(x, self.p, state=self._state_for(x))


class Dropout1d(_FunctionalDropout):
    """nn.Dropout1d: one keep decision per channel of (N, C, L) or (C, L)."""

    function = staticmethod(channel.dropout1d)


class Dropout2d(_FunctionalDropout):
    """nn.Dropout2d: one keep decision per (n, c) of (N, C, H, W)."""

    function = staticmethod(channel.dropout2d)


class Dropout3d(_FunctionalDropout):
    """nn.Dropout3d: one keep decision per channel of (N, C, D, H, W) or (C, D, H, W)."""

    function = staticmethod(channel.dropout3d)


class AlphaDropout(_FunctionalDropout):
    """nn.AlphaDropout: kept x * A + B, dropped A * a' + B (for SELU networks)."""

    function = staticmethod(alpha.alpha_dropout)


class FeatureAlphaDropout(_FunctionalDropout):
    """nn.FeatureAlphaDropout: the alpha map with one keep decision per x[n, c]."""

    function = staticmethod(alpha.feature_alpha_dropout)


def checkpoint_context(model: nn.Module):
    """A context_fn for torch.utils.checkpoint(..., use_reentrant=False) that replays dropout masks.

    The first forward advances every module's RNG state; the recomputation in backward must
    read the states the first forward read. The forward context copies the states (device
    copies, no sync); the recompute context puts them back for the recomputation and then
    restores where they had got to.
    """
    def context_fn():
        states = [module.rng_state for module in model.modules() if isinstance(module, StatefulDropout)]
        at_forward: list[torch.Tensor] = []

        @contextlib.contextmanager
        def forward_context():
            at_forward[:] = [state.clone() for state in states]
            yield

        @contextlib.contextmanager
        def recompute_context():
            now = [state.clone() for state in states]
            for state, saved in zip(states, at_forward):
                state.copy_(saved)
            try:
                yield
            finally:
                for state, current in zip(states, now):
                    state.copy_(current)

        return forward_context(), recompute_context()

    return context_fn
