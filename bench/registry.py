"""The one registry of (op, backend) -> implementation, used by the tests and the runner.

Every implementation is called as impl(x, p, seed, dim): element, channel and alpha
dropout ignore dim, eager and compile ignore seed (they draw from torch's generator). `seeded`
says whether the mask is a pure function of the seed, which decides how the
runner checks it: bit-exactly against kernels.reference, or statistically.
`chosen_config()` names the autotuner's choice for the last call, where there is one.
"""

from dataclasses import dataclass
from typing import Callable

import torch

from dropbench import kernels
from dropbench.baselines import compiled, eager
from dropbench.baselines import ops as eager_ops
from dropbench.kernels import alpha, variational
from dropbench.kernels import element as seeded


@dataclass(frozen=True)
class Implementation:
    op: str
    backend: str
    call: Callable[[torch.Tensor, float, int, int], torch.Tensor]
    seeded: bool
    chosen_config: Callable[[], str] = lambda: ""

    def __call__(self, x: torch.Tensor, p: float, seed: int, dim: int = 0) -> torch.Tensor:
        return self.call(x, p, seed, dim)


def _op_family(op: str, triton_call, eager_call, config) -> list[Implementation]:
    """(op, triton_seeded | eager | compile): the seeded kernel, the eager call, torch.compile of it."""
    return [
        Implementation(op, "triton_seeded", lambda x, p, seed, dim: triton_call(x, p, seed), True, config),
        Implementation(op, "eager", lambda x, p, seed, dim: eager_call(x, p), False),
        Implementation(op, "compile", lambda x, p, seed, dim: compiled.compiled(eager_call)(x, p), False),
    ]


#: The other torch.nn.functional dropouts (issue 7): (op, seeded kernel, eager call, its chosen_config).
#: What kind of dropout each is (its mask, values, in place or not, input rank) is in bench.families;
#: channel ops get (N, C, spatial...) inputs from the sweep (bench.plan), never a 2-D one.
#: dropout_inplace overwrites x: repeated calls on one buffer keep scaling the kept values by
#: 1 / (1 - p) (towards inf, which leaves the timing unchanged), and a leaf that requires grad raises.
_FAMILIES = [
    ("dropout_inplace", kernels.dropout_, eager_ops.dropout_inplace, seeded.chosen_inplace_config),
    ("dropout1d", kernels.dropout1d, eager_ops.dropout1d, variational.chosen_config),
    ("dropout2d", kernels.dropout2d, eager_ops.dropout2d, variational.chosen_config),
    ("dropout3d", kernels.dropout3d, eager_ops.dropout3d, variational.chosen_config),
    ("feature_dropout", kernels.feature_dropout, eager_ops.feature_dropout, variational.chosen_config),
    ("alpha_dropout", kernels.alpha_dropout, eager_ops.alpha_dropout, alpha.chosen_config),
    ("feature_alpha_dropout", kernels.feature_alpha_dropout, eager_ops.feature_alpha_dropout,
     alpha.chosen_feature_config),
]

REGISTRY = {
    (impl.op, impl.backend): impl
    for impl in [
        Implementation(
            "dropout", "triton_seeded", lambda x, p, seed, dim: kernels.seeded_dropout(x, p, seed), True,
            seeded.chosen_config,
        ),
        Implementation("dropout", "eager", lambda x, p, seed, dim: eager.dropout(x, p), False),
        Implementation("dropout", "compile", lambda x, p, seed, dim: compiled.dropout(x, p), False),
        Implementation(
            "variational", "triton_variational",
            lambda x, p, seed, dim: kernels.variational_dropout(x, p, seed, dim), True,
            variational.chosen_config,
        ),
        Implementation("variational", "eager", lambda x, p, seed, dim: eager.variational_dropout(x, p, dim), False),
        Implementation(
            "variational", "compile", lambda x, p, seed, dim: compiled.variational_dropout(x, p, dim), False,
        ),
    ]
    + [impl for family in _FAMILIES for impl in _op_family(*family)]
}


def ops() -> list[str]:
    return sorted({op for op, _ in REGISTRY})


def backends(op: str) -> list[str]:
    """The backends registered for `op`, in registry order."""
    return [backend for known_op, backend in REGISTRY if known_op == op]


def get(op: str, backend: str) -> Implementation:
    """The implementation of (op, backend), or a ValueError listing what exists."""
    if op not in ops():
        raise ValueError(f"unknown op {op!r}; known ops: {', '.join(ops())}")
    if (op, backend) not in REGISTRY:
        raise ValueError(f"unknown backend {backend!r} for op {op!r}; known: {', '.join(backends(op))}")
    return REGISTRY[(op, backend)]
