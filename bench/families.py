"""What kind of dropout each swept op is, which decides its input shapes and its correctness check.

Three things vary between PyTorch's dropout operators, and nothing else:
- what one keep decision covers (`mask`): one element (dropout, alpha_dropout, dropout_),
  one slice along variational_dim (variational), or one (n, c) channel of an
  (N, C, spatial...) input, shared by every spatial position (the channel ops);
- what happens to the values (`alpha`): kept x / (1 - p), dropped 0; or alpha
  dropout's kept x * A + B, dropped the constant A * a' + B;
- whether the op writes into its input (`inplace`), which a leaf that requires grad refuses.
Channel ops also have the input rank PyTorch expects of them (`rank`): dropout1d's
(N, C, L) is 3, dropout2d's (N, C, H, W) 4, dropout3d's (N, C, D, H, W) 5; the
feature ops take any rank >= 2 and are checked at 4. No torch here.
"""

from __future__ import annotations

from dataclasses import dataclass

ELEMENT, VARIATIONAL, CHANNEL = "element", "variational", "channel"


@dataclass(frozen=True)
class Family:
    mask: str              # ELEMENT | VARIATIONAL | CHANNEL: what one keep decision covers
    alpha: bool = False    # kept x * A + B, dropped A * a' + B (else kept x / (1 - p), dropped 0)
    inplace: bool = False  # writes into its input and returns it
    rank: int = 2          # the input rank it is checked at (channel ops: N, C and the spatial dims)
    fixed_rank: bool = True  # False: any rank >= 3 is the same op (feature_dropout of (N, C, ...))

    @property
    def is_channel(self) -> bool:
        return self.mask == CHANNEL


FAMILIES = {
    "dropout": Family(ELEMENT),
    "dropout_inplace": Family(ELEMENT, inplace=True),
    "alpha_dropout": Family(ELEMENT, alpha=True),
    "variational": Family(VARIATIONAL),
    "dropout1d": Family(CHANNEL, rank=3),
    "dropout2d": Family(CHANNEL, rank=4),
    "dropout3d": Family(CHANNEL, rank=5),
    "feature_dropout": Family(CHANNEL, rank=4, fixed_rank=False),
    "feature_alpha_dropout": Family(CHANNEL, alpha=True, rank=4, fixed_rank=False),
}


def of(op: str) -> Family:
    """The family of `op`, or a ValueError naming the ops that have one."""
    if op not in FAMILIES:
        raise ValueError(f"op {op!r} has no family in bench.families; known: {', '.join(FAMILIES)}")
    return FAMILIES[op]


def channel_ops() -> list[str]:
    return [op for op, family in FAMILIES.items() if family.is_channel]
