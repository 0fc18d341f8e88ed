"""nn.Module forms of the seeded dropouts: identity in eval(), a fresh mask per call in train().

Drop-ins for torch.nn's dropout modules, with the same arguments (p, inplace): each call
draws its stream from torch's generator, as nn.Dropout does (kernels.rng), so
torch.manual_seed, get/set_rng_state, fork_rng and activation checkpointing behave as
they do with nn.Dropout, in eager mode, under torch.compile(fullgraph=True) and in CUDA
graphs (a fresh mask per replay). Each is a subclass of its torch.nn counterpart
(isinstance(SeededDropout(0.1), nn.Dropout) holds; VariationalDropout has none) and holds no
state: state_dicts stay interchangeable with nn.Dropout models. Backward recomputes the mask from the forward's
(key, offset): nothing of the input's size is saved.
"""

from __future__ import annotations

import torch
from torch import nn

from dropbench.kernels import alpha, channel
from dropbench.kernels.contract import FROM_TORCH_STREAM, check_dim, check_input, check_p
from dropbench.kernels.element import dropout_from_torch
from dropbench.kernels.inplace import dropout_
from dropbench.kernels.variational import shared_dropout


class _Seeded:
    """Mixin before a torch.nn dropout class: p and inplace checked as dropbench checks them (naming the
    argument), then kept by the torch class, so isinstance(module, nn.Dropout) and code that sets
    module.p on every nn.Dropout of a model see the seeded modules too."""

    def __init__(self, p: float = 0.5, inplace: bool = False):
        p = check_p(p)
        if not isinstance(inplace, bool):  # SeededDropout(p, seed) of an older release must not mean inplace
            raise TypeError(f"inplace must be a bool, got {type(inplace).__name__} {inplace!r}")
        super().__init__(p, inplace)


class SeededDropout(_Seeded, nn.Dropout):
    """Drop-in for nn.Dropout (a subclass of it) whose mask is recomputed in backward instead of stored."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if self.inplace:
            return dropout_(x, self.p)
        check_input(x)
        return dropout_from_torch(x, self.p)


class VariationalDropout(nn.Module):
    """Locked dropout: one mask per call, shared along `dim` (e.g. dim=1 for (B, T, C) tokens)."""

    def __init__(self, p: float = 0.5, dim: int = 1):
        super().__init__()
        self.p = check_p(p)
        if isinstance(dim, bool) or not isinstance(dim, int):
            raise TypeError(f"dim must be an int, got {type(dim).__name__}")
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        check_input(x)
        dim = check_dim(self.dim, x.dim())
        return shared_dropout(x, self.p, FROM_TORCH_STREAM, dim)

    def extra_repr(self) -> str:
        return f"p={self.p}, dim={self.dim}"


class _FunctionalDropout(_Seeded):
    """A module calling one seeded function (the channel and alpha ops); inplace writes the result into x."""

    function = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        y = type(self).function(x, self.p)
        return x.copy_(y) if self.inplace else y


class Dropout1d(_FunctionalDropout, nn.Dropout1d):
    """nn.Dropout1d (a subclass of it): one keep decision per channel of (N, C, L) or (C, L)."""

    function = staticmethod(channel.dropout1d)


class Dropout2d(_FunctionalDropout, nn.Dropout2d):
    """nn.Dropout2d (a subclass of it): one keep decision per (n, c) of (N, C, H, W)."""

    function = staticmethod(channel.dropout2d)


class Dropout3d(_FunctionalDropout, nn.Dropout3d):
    """nn.Dropout3d (a subclass of it): one keep decision per channel of (N, C, D, H, W) or (C, D, H, W)."""

    function = staticmethod(channel.dropout3d)


class AlphaDropout(_FunctionalDropout, nn.AlphaDropout):
    """nn.AlphaDropout (a subclass of it): kept x * A + B, dropped A * a' + B (for SELU networks)."""

    function = staticmethod(alpha.alpha_dropout)


class FeatureAlphaDropout(_FunctionalDropout, nn.FeatureAlphaDropout):
    """nn.FeatureAlphaDropout (a subclass of it): the alpha map with one keep decision per x[n, c]."""

    function = staticmethod(alpha.feature_alpha_dropout)
