"""Seeded Triton dropout: the mask is recomputed from (key, offset, element index), never stored.

Every torch.nn.functional dropout has a seeded form under its PyTorch name, taking `seed`
(an int or an int64 key tensor), `state` (a device RNG state that each call advances) or
neither (the stream is drawn from torch's generator, as torch's dropout draws), and
`offset` for shards: dropout (= seeded_dropout), dropout_ (in place), dropout1d,
dropout2d, dropout3d, feature_dropout, alpha_dropout, feature_alpha_dropout, plus
variational_dropout (one mask shared along a dim). The modules (SeededDropout for
nn.Dropout, VariationalDropout, Dropout1d/2d/3d, AlphaDropout, FeatureAlphaDropout)
draw from torch's generator like torch.nn's: a fresh mask per call, also under
torch.compile and CUDA graphs, and the masks torch.manual_seed and checkpointing expect.
"""

from dropbench.kernels.alpha import alpha_dropout, feature_alpha_dropout
from dropbench.kernels.channel import dropout1d, dropout2d, dropout3d, feature_dropout
from dropbench.kernels.contract import MASK_CONTRACT
from dropbench.kernels.element import seeded_dropout
from dropbench.kernels.inplace import dropout_
from dropbench.kernels.modules import (
    AlphaDropout,
    Dropout1d,
    Dropout2d,
    Dropout3d,
    FeatureAlphaDropout,
    SeededDropout,
    VariationalDropout,
)
from dropbench.kernels.rng import new_state, reset_state
from dropbench.kernels.variational import variational_dropout

#: PyTorch's name for element dropout.
dropout = seeded_dropout

__all__ = [
    "MASK_CONTRACT",
    "AlphaDropout",
    "Dropout1d",
    "Dropout2d",
    "Dropout3d",
    "FeatureAlphaDropout",
    "SeededDropout",
    "VariationalDropout",
    "alpha_dropout",
    "dropout",
    "dropout1d",
    "dropout2d",
    "dropout3d",
    "dropout_",
    "feature_alpha_dropout",
    "feature_dropout",
    "new_state",
    "reset_state",
    "seeded_dropout",
    "variational_dropout",
]
