"""The one catalogue of what dropbench measures: every op and every backend, each named once.

A new op is a kernel function, a reference function and one row of OPS (channel ops also
need their (C, spatial...) dims in configs/shape/*.yaml). A new backend is one row of
BACKENDS (naming its own functions for the ops it runs, where it brings its own kernels).
Everything else (the sweep plan, the correctness check, the runner, the config validation,
the schema's allowed values, the figures' colours) reads these rows.

No torch here: rows hold import paths ("module:function"), resolved only when an
implementation is asked for, so the schema and the plots can read op and backend names
on a machine without the GPU stack.

What varies between dropout operators, and nothing else:
- what one keep decision covers (`mask`): one element; one slice along variational_dim
  (variational); or one (n, c) channel of an (N, C, spatial...) input, shared by every
  spatial position (the channel ops);
- what happens to the values (`alpha`): kept x / (1 - p), dropped 0; or alpha dropout's
  kept x * A + B, dropped the constant A * a' + B;
- whether the op writes into its input (`inplace`), which a leaf that requires grad refuses;
- the input rank it is checked and swept at (`rank`): dropout1d's (N, C, L) is 3, dropout2d's
  (N, C, H, W) 4, dropout3d's (N, C, D, H, W) 5; the feature ops take any rank >= 3.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field

ELEMENT, VARIATIONAL, CHANNEL = "element", "variational", "channel"
MASKS = (ELEMENT, VARIATIONAL, CHANNEL)

_KERNELS, _EAGER, _REFERENCE = "dropbench.kernels", "dropbench.baselines.eager", "dropbench.kernels.reference"


@dataclass(frozen=True)
class Op:
    """One dropout operator: what kind it is, and where its three functions live."""

    kernel: str            # the seeded Triton form: f(x, p, seed) (variational: f(x, p, seed, dim))
    eager: str             # the form users write today: f(x, p) (variational: f(x, p, dim))
    reference: str         # the CPU reference of the mask contract, same call form as `kernel`
    mask: str = ELEMENT    # ELEMENT | VARIATIONAL | CHANNEL: what one keep decision covers
    alpha: bool = False    # kept x * A + B, dropped A * a' + B (else kept x / (1 - p), dropped 0)
    inplace: bool = False  # writes into its input and returns it
    rank: int = 2          # the input rank it is checked at (channel ops: N, C and the spatial dims)
    fixed_rank: bool = True  # False: any rank >= 3 is the same op (feature_dropout of (N, C, ...))
    chosen_config: str = ""  # f() -> the autotuner's choice for the kernel's last call, where there is one

    @property
    def is_channel(self) -> bool:
        return self.mask == CHANNEL

    @property
    def takes_dim(self) -> bool:
        """Whether its functions take variational_dim (and its rows record it)."""
        return self.mask == VARIATIONAL


@dataclass(frozen=True)
class Backend:
    """One way of running ops: which of the op's functions it calls, and how it wraps it.

    A backend with `functions` brings its own (a published kernel, not ours) and runs only
    the ops it names; one without runs every op through the op row's functions.
    """

    calls: str             # "kernel" (seeded: gets the seed), "dropin" (the kernel form given no seed: draws
                           # from torch's generator, as the nn.Module drop-ins do) or "eager" (the op's eager form)
    bit_exact: bool        # its masks must equal kernels.reference bit for bit (else: checked statistically)
    wrap: str = ""         # f(fn) -> fn applied to the op's function (torch.compile), or "" for none
    color: str = "tab:gray"  # its colour in the figures
    description: str = ""
    # op -> "module:function" in the op's `calls` form; empty: every op, through the op row's functions
    functions: dict[str, str] = field(default_factory=dict, hash=False)
    chosen_config: str = ""  # f() -> the autotuner's choice for its functions' last call, where there is one

    def runs(self, op_name: str) -> bool:
        return not self.functions or op_name in self.functions


OPS: dict[str, Op] = {
    "dropout": Op(f"{_KERNELS}:seeded_dropout", f"{_EAGER}:dropout", f"{_REFERENCE}:seeded_dropout",
                  chosen_config="dropbench.kernels.element:chosen_config"),
    "variational": Op(f"{_KERNELS}:variational_dropout", f"{_EAGER}:variational_dropout",
                      f"{_REFERENCE}:variational_dropout", mask=VARIATIONAL,
                      chosen_config="dropbench.kernels.variational:chosen_config"),
    "dropout_inplace": Op(f"{_KERNELS}:dropout_", f"{_EAGER}:dropout_inplace", f"{_REFERENCE}:seeded_dropout",
                          inplace=True, chosen_config="dropbench.kernels.element:chosen_inplace_config"),
    "dropout1d": Op(f"{_KERNELS}:dropout1d", f"{_EAGER}:dropout1d", f"{_REFERENCE}:feature_dropout",
                    mask=CHANNEL, rank=3, chosen_config="dropbench.kernels.variational:chosen_config"),
    "dropout2d": Op(f"{_KERNELS}:dropout2d", f"{_EAGER}:dropout2d", f"{_REFERENCE}:feature_dropout",
                    mask=CHANNEL, rank=4, chosen_config="dropbench.kernels.variational:chosen_config"),
    "dropout3d": Op(f"{_KERNELS}:dropout3d", f"{_EAGER}:dropout3d", f"{_REFERENCE}:feature_dropout",
                    mask=CHANNEL, rank=5, chosen_config="dropbench.kernels.variational:chosen_config"),
    "feature_dropout": Op(f"{_KERNELS}:feature_dropout", f"{_EAGER}:feature_dropout", f"{_REFERENCE}:feature_dropout",
                          mask=CHANNEL, rank=4, fixed_rank=False,
                          chosen_config="dropbench.kernels.variational:chosen_config"),
    "alpha_dropout": Op(f"{_KERNELS}:alpha_dropout", f"{_EAGER}:alpha_dropout", f"{_REFERENCE}:alpha_dropout",
                        alpha=True, chosen_config="dropbench.kernels.alpha:chosen_config"),
    "feature_alpha_dropout": Op(f"{_KERNELS}:feature_alpha_dropout", f"{_EAGER}:feature_alpha_dropout",
                                f"{_REFERENCE}:feature_alpha_dropout", mask=CHANNEL, alpha=True, rank=4,
                                fixed_rank=False, chosen_config="dropbench.kernels.alpha:chosen_feature_config"),
}

BACKENDS: dict[str, Backend] = {
    "triton": Backend("kernel", bit_exact=True, color="tab:blue",
                      description="the seeded Triton kernels: the mask is recomputed from (seed, index)"),
    "dropin": Backend("dropin", bit_exact=False, color="tab:cyan",
                      description="the same kernels as drop-ins call them: no seed, the stream drawn from "
                      "torch's generator per call (the host path users get)"),
    "eager": Backend("eager", bit_exact=False, color="tab:red",
                     description="eager PyTorch, as models call it today"),
    "compile": Backend("eager", bit_exact=False, wrap="dropbench.baselines.compiled:compiled", color="tab:orange",
                       description="torch.compile(fullgraph=True, dynamic=False) of the eager call"),
    "compile_fallback": Backend("eager", bit_exact=False, wrap="dropbench.baselines.compiled:compiled_fallback_random",
                                color="tab:brown", description="compile with inductor's fallback_random=True "
                                "(eager's masks): the price of that choice"),
    "tutorial": Backend("kernel", bit_exact=False, color="tab:green",
                        functions={"dropout": "dropbench.baselines.tutorial:dropout"},
                        description="the Triton tutorial's low-memory dropout (tritonbench's low_mem_dropout)"),
    "seedrepo_1d": Backend("kernel", bit_exact=False, color="tab:purple",
                           functions={"variational": "dropbench.baselines.seedrepo:variational_dropout_1d"},
                           description="seeded-variational-dropout's 1D kernel: flat launch, mask position per element"),
    "seedrepo_2d": Backend("kernel", bit_exact=False, color="tab:pink",
                           functions={"variational": "dropbench.baselines.seedrepo:variational_dropout_2d"},
                           chosen_config="dropbench.baselines.seedrepo:chosen_config",
                           description="seeded-variational-dropout's 2D kernel: autotuned (T, C) tiles"),
}

#: The reference every op is measured against: a device-to-device copy of the same tensor.
#: Its rows carry COPY as both op and backend; it is not a backend of any op.
COPY = "copy"
COPY_COLOR = "black"


def op(name: str) -> Op:
    """The row of op `name`, or a ValueError naming the ops there are."""
    if name not in OPS:
        raise ValueError(f"unknown op {name!r}; known ops: {', '.join(OPS)}")
    return OPS[name]


def backend(name: str) -> Backend:
    """The row of backend `name`, or a ValueError naming the backends there are."""
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; known backends: {', '.join(BACKENDS)}")
    return BACKENDS[name]


def channel_ops() -> list[str]:
    return [name for name, row in OPS.items() if row.is_channel]


def resolve(path: str) -> Callable:
    """The object at "package.module:name", imported now."""
    module, _, name = path.partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise ImportError(f"catalogue entry {path!r} does not resolve: {exc}") from exc


@dataclass(frozen=True)
class Implementation:
    """One (op, backend), called as impl(x, p, seed, dim) whatever the op's own call form.

    Ops without a dim ignore it; eager and dropin backends ignore the seed (they draw from
    torch's generator). `bit_exact`: the mask must equal kernels.reference bit for bit,
    which decides how bench.check checks it. `chosen_config()` names the autotuner's
    choice for the last call, where there is one.
    """

    op: str
    backend: str
    call: Callable
    bit_exact: bool
    chosen_config: Callable[[], str] = lambda: ""

    def __call__(self, x, p: float, seed: int, dim: int = 0):
        return self.call(x, p, seed, dim)


def implementation(op_name: str, backend_name: str) -> Implementation:
    """The (op, backend) implementation, its functions imported now (this imports torch)."""
    row, how = op(op_name), backend(backend_name)
    if not how.runs(op_name):
        raise ValueError(f"backend {backend_name!r} does not run op {op_name!r}; it runs: {', '.join(how.functions)}")
    if how.functions:
        fn = resolve(how.functions[op_name])
    else:
        fn = resolve(row.eager if how.calls == "eager" else row.kernel)
    if how.wrap:
        fn = resolve(how.wrap)(fn)
    if how.calls == "kernel":
        call = (lambda x, p, seed, dim: fn(x, p, seed, dim)) if row.takes_dim else (lambda x, p, seed, dim: fn(x, p, seed))
    elif how.calls == "dropin":
        call = (lambda x, p, seed, dim: fn(x, p, None, dim)) if row.takes_dim else (lambda x, p, seed, dim: fn(x, p))
    else:
        call = (lambda x, p, seed, dim: fn(x, p, dim)) if row.takes_dim else (lambda x, p, seed, dim: fn(x, p))
    chosen_path = how.chosen_config if how.functions else (row.chosen_config if how.calls != "eager" else "")
    chosen = resolve(chosen_path) if chosen_path else (lambda: "")
    return Implementation(op_name, backend_name, call, how.bit_exact, chosen)


def pairs() -> list[tuple[str, str]]:
    """Every (op, backend) the catalogue can run, in catalogue order."""
    return [(op_name, backend_name) for op_name in OPS for backend_name, row in BACKENDS.items() if row.runs(op_name)]
