"""Seeded Triton dropout: the mask is recomputed from (seed, element index), never stored.

Besides seeded_dropout and variational_dropout, every torch.nn.functional dropout has a
seeded form under its PyTorch name, with a `seed` argument after p: dropout (= seeded_dropout),
dropout_ (in place), dropout1d, dropout2d, dropout3d, feature_dropout, alpha_dropout and
feature_alpha_dropout.
"""

from dropbench.kernels.alpha import alpha_dropout, feature_alpha_dropout
from dropbench.kernels.channel import dropout1d, dropout2d, dropout3d, feature_dropout
from dropbench.kernels.inplace import dropout_
from dropbench.kernels.modules import SeededDropout, VariationalDropout
from dropbench.kernels.seeded import seeded_dropout
from dropbench.kernels.variational import variational_dropout

#: PyTorch's name for element dropout.
dropout = seeded_dropout

__all__ = [
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
    "seeded_dropout",
    "variational_dropout",
]
