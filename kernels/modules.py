"""nn.Module forms of the seeded kernels: identity in eval(), a fresh seed per call in train().

The seed is drawn from torch's default CPU generator, so torch.manual_seed makes a
training run reproducible, and the last seed used is kept in `last_seed` so the
same mask can be recomputed (e.g. for activation checkpointing or debugging).
"""

import torch
from torch import nn

from dropbench.kernels.contract import check_dim, check_p
from dropbench.kernels.seeded import seeded_dropout
from dropbench.kernels.variational import variational_dropout

SEED_DRAW_BOUND = 2**63 - 1  # torch.randint draws int64 below this; the kernels accept up to 2**64 - 1


def draw_seed() -> int:
    """A fresh seed from torch's default generator (reproducible under torch.manual_seed)."""
    return int(torch.randint(SEED_DRAW_BOUND, (1,), dtype=torch.int64).item())


class SeededDropout(nn.Module):
    """Drop-in for nn.Dropout whose mask is recomputed from a seed instead of stored."""

    def __init__(self, p: float = 0.5):
        super().__init__()
        self.p = check_p(p)
        self.last_seed = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        self.last_seed = draw_seed()
        return seeded_dropout(x, self.p, self.last_seed)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class VariationalDropout(nn.Module):
    """Locked dropout: one mask per call, shared along `dim` (e.g. dim=1 for (B, T, C) tokens)."""

    def __init__(self, p: float = 0.5, dim: int = 1):
        super().__init__()
        self.p = check_p(p)
        if isinstance(dim, bool) or not isinstance(dim, int):
            raise TypeError(f"dim must be an int, got {type(dim).__name__}")
        self.dim = dim
        self.last_seed = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        check_dim(self.dim, x.dim())
        self.last_seed = draw_seed()
        return variational_dropout(x, self.p, self.last_seed, self.dim)

    def extra_repr(self) -> str:
        return f"p={self.p}, dim={self.dim}"
