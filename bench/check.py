"""The correctness gate: is an implementation really the dropout it claims to be, before anything of it is timed?

What is checked follows the op's catalogue row (bench.catalogue):
- The keep mask. Bit-exact backends (the Triton kernels) must match kernels.reference
  bit for bit. Eager and compile draw their own masks, so theirs is checked
  statistically (bench.mask_stats). Element ops: one decision per element.
  Variational: the mask is identical along `dim`, and its elements pass the statistics.
  Channel ops: the mask is identical across the spatial positions of each (n, c), and
  the (N, C) channel mask is the reference's or passes the statistics.
- The values. Kept x / (1 - p), dropped exactly 0; alpha ops: kept x * A + B, dropped
  the constant A * a' + B ((A, B) = kernels.reference.alpha_affine(p)).
- Backward uses the forward's mask: the gradient is 1 / (1 - p) (alpha: A) where kept
  and 0 where dropped, also when the forward is recomputed under activation
  checkpointing (not for in-place ops, which checkpointing cannot replay).
- In-place ops (dropout_inplace) return their input, written in place: on a non-leaf
  (a clone of a leaf, backward reaching the leaf through the clone), without grad, and
  a leaf that requires grad must be refused as PyTorch refuses it.

Each check runs on several layouts of the same logical input (bench.layouts). Data is
random and never zero (|x| in [0.5, 1.5)), so for ordinary dropout y != 0 is exactly the
keep decision; for alpha dropout a kept value x * A + B is at least A * (|a'| - 1.5)
away from the dropped constant, so keep is "y differs from the dropped constant by more
than half that". A failed check is an Incorrect whose message goes to the CSV's error column.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.checkpoint import checkpoint

from dropbench.bench import catalogue
from dropbench.bench.catalogue import CHANNEL, VARIATIONAL
from dropbench.bench.layouts import MAX_ABS, check_shape, layouts_for, make_leaf, random_nonzero
from dropbench.bench.mask_stats import mask_problem
from dropbench.kernels import reference

#: Tolerance of values against their expected value: relative above 1, absolute below
#: (alpha's x * A + B crosses 0). Two roundings in the dtype.
VALUE_RTOL = {torch.float16: 2e-3, torch.bfloat16: 1.6e-2, torch.float32: 1e-5, torch.float64: 1e-12}
TORCH_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32, "fp64": torch.float64}


@dataclass(frozen=True)
class Verdict:
    """The outcome of checking one (op, backend, dtype, p): status ok | incorrect | error | oom."""

    status: str
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class Incorrect(Exception):
    """One failed check; its message becomes the `error` column."""


@dataclass(frozen=True)
class ValueMap:
    """What dropout does to values: kept v -> v * scale + shift, dropped -> the constant `dropped`.

    `margin`: outputs farther than this from `dropped` are kept. 0 where dropped is 0
    and kept values cannot be (ordinary dropout, every gradient): keep is then y != 0.
    """

    scale: float
    shift: float
    dropped: float
    margin: float
    kept_text: str
    dropped_text: str

    def keep(self, y: torch.Tensor) -> torch.Tensor:
        return (y.double() - self.dropped).abs() > self.margin


def forward_map(kind: catalogue.Op, p: float) -> ValueMap:
    if kind.alpha and p < 1.0:
        a, b = reference.alpha_affine(p)
        # The nearest a kept x * A + B comes to the dropped A * a' + B is A * (|a'| - MAX_ABS).
        margin = a * (abs(reference.ALPHA_PRIME) - MAX_ABS) / 2
        return ValueMap(a, b, a * reference.ALPHA_PRIME + b, margin, "x * A + B", "A * a' + B")
    return ValueMap(1.0 / (1.0 - p) if p < 1.0 else 0.0, 0.0, 0.0, 0.0, "x / (1 - p)", "0")


def backward_map(kind: catalogue.Op, p: float) -> ValueMap:
    """The gradient for grad_out = 1: the forward's scale where kept, 0 where dropped."""
    scale = forward_map(kind, p).scale
    return ValueMap(scale, 0.0, 0.0, 0.0, "A" if kind.alpha else "1 / (1 - p)", "0")


def check(impl, dtype: str, p: float, device: str, seed: int, dim: int,
          numel: int = 65536, sigmas: float = 6.0) -> Verdict:
    """Check impl(x, p, seed, dim) on every layout; ok or incorrect with the first problem found.

    Exceptions other than a failed check (a crash, an OOM) propagate to the caller.
    """
    kind = catalogue.op(impl.op)
    torch_dtype = TORCH_DTYPES[dtype]
    shape = check_shape(kind.mask, numel, dim, kind.rank)
    args = (impl, kind, shape, torch_dtype, p, device, seed, dim, sigmas)
    try:
        for layout in layouts_for(len(shape)):
            _check_layout(*args, layout)
        if kind.inplace:
            _check_in_place_without_grad(*args)
            if p > 0.0:  # at p = 0 nothing is written, and PyTorch returns x untouched without an error
                _check_refuses_a_leaf(impl, shape, torch_dtype, p, device, seed, dim)
        else:
            _check_checkpointed(impl, kind, shape, torch_dtype, p, device, seed, dim)
    except Incorrect as problem:
        return Verdict("incorrect", str(problem))
    return Verdict("ok")


def _check_layout(impl, kind, shape, dtype, p, device, seed, dim, sigmas, layout) -> None:
    leaf, view = make_leaf(shape, dtype, device, layout)
    x = view(leaf.clone()) if kind.inplace else view(leaf)
    x_values = x.detach().to("cpu", copy=True)  # an in-place op overwrites x
    y = impl(x, p, seed, dim)
    if tuple(y.shape) != tuple(x.shape) or y.dtype != x.dtype:
        raise Incorrect(f"{layout} input: output is {tuple(y.shape)} {y.dtype}, expected {tuple(x.shape)} {x.dtype}")
    if kind.inplace:
        _check_wrote_into_input(x, y, layout)
    (grad,) = torch.autograd.grad(y, leaf, torch.ones_like(y))
    grad = view(grad).detach().cpu()
    y = y.detach().cpu()

    forward = forward_map(kind, p)
    keep = forward.keep(y)
    if forward.margin:
        # Alpha: keep is read off the values, so a wrong A or B shows as wrong values first.
        _check_values(x_values, y, keep, forward, p, "forward", layout)
        _check_mask(keep, impl, kind, shape, p, seed, dim, sigmas, layout)
    else:
        _check_mask(keep, impl, kind, shape, p, seed, dim, sigmas, layout)
        _check_values(x_values, y, keep, forward, p, "forward", layout)
    differ = int((backward_map(kind, p).keep(grad) != keep).sum())
    if differ:
        raise Incorrect(f"{layout} input: backward does not use the forward's mask ({differ} elements differ)")
    _check_values(torch.ones(shape, dtype=torch.float64), grad, keep, backward_map(kind, p), p, "backward", layout)


def _check_mask(keep, impl, kind, shape, p, seed, dim, sigmas, layout) -> None:
    if kind.mask == CHANNEL:
        keep = _channel_mask(keep, layout)
    if impl.bit_exact:
        _check_reference_mask(keep, kind, shape, p, seed, dim, layout)
    elif kind.mask == VARIATIONAL:
        _check_variational_mask(keep, p, dim, sigmas, layout)
    else:
        problem = mask_problem(keep, p, sigmas)
        if problem:
            what = "channel mask" if kind.mask == CHANNEL else "mask"
            raise Incorrect(f"{layout} input: {what}: {problem}")


def _channel_mask(keep: torch.Tensor, layout: str) -> torch.Tensor:
    """The (N, C) mask of an (N, C, spatial...) keep mask, which must not vary across spatial positions."""
    per_channel = keep.flatten(2)
    first = per_channel[..., :1]
    varying = int((per_channel != first).any(dim=-1).sum())
    if varying:
        raise Incorrect(f"{layout} input: mask varies across the spatial positions of {varying} of "
                        f"{first.numel()} (n, c) channels (a channel op keeps or drops a channel whole)")
    return first.squeeze(-1)


def _check_reference_mask(keep, kind, shape, p, seed, dim, layout) -> None:
    """keep (the (N, C) channel mask for channel ops) against kernels.reference, bit for bit."""
    if kind.mask == VARIATIONAL:
        expected = reference.variational_keep_mask(shape, p, seed, dim).expand(shape)
    elif kind.mask == CHANNEL:
        expected = reference.channel_keep_mask(shape, p, seed).reshape(keep.shape)
    else:
        expected = reference.keep_mask(shape, p, seed)
    wrong = keep != expected
    if wrong.any():
        first = tuple(int(i) for i in wrong.nonzero()[0])
        raise Incorrect(f"{layout} input: keep mask differs from kernels.reference at "
                        f"{int(wrong.sum())} of {keep.numel()} decisions (first at {first})")


def _check_variational_mask(keep, p, dim, sigmas, layout) -> None:
    first = keep.select(dim, 0).unsqueeze(dim)
    if not torch.equal(keep, first.expand_as(keep)):
        differing = int((keep != first).any(dim=1 - dim % 2).sum()) if keep.dim() == 2 else -1
        raise Incorrect(f"{layout} input: mask is not identical along dim {dim} "
                        f"({differing} of {keep.shape[dim]} slices differ from the first)")
    problem = mask_problem(keep.select(dim, 0), p, sigmas)
    if problem:
        raise Incorrect(f"{layout} input: mask elements: {problem}")


def _check_values(x, y, keep, values: ValueMap, p, what, layout) -> None:
    """Kept values are x * scale + shift, dropped ones `dropped`, to the dtype's tolerance."""
    if p >= 1.0:
        if keep.any():
            raise Incorrect(f"{layout} input: {what} keeps {int(keep.sum())} elements at p=1")
        return
    x, got = x.double(), y.double()
    expected = torch.where(keep, x * values.scale + values.shift, torch.full_like(x, values.dropped))
    error = (got - expected).abs() / expected.abs().clamp(min=1.0)
    rtol = VALUE_RTOL[y.dtype]
    if error.numel() and error.max() > rtol:
        worst = int(error.argmax())
        kept = bool(keep.flatten()[worst])
        text = values.kept_text if kept else values.dropped_text
        raise Incorrect(f"{layout} input: {what} {'kept' if kept else 'dropped'} value "
                        f"{got.flatten()[worst].item():.6g} is not {text} = {expected.flatten()[worst].item():.6g} "
                        f"(error {error.max().item():.2g} > {rtol:g})")


def _check_wrote_into_input(x: torch.Tensor, y: torch.Tensor, layout: str) -> None:
    if y.data_ptr() != x.data_ptr() or not torch.equal(x.detach(), y.detach()):
        raise Incorrect(f"{layout} input: an in-place op returned a new tensor instead of writing into its input")


def _check_in_place_without_grad(impl, kind, shape, dtype, p, device, seed, dim, sigmas) -> None:
    """With grad mode off (inference, or the timed fwd), the op still writes into its input."""
    with torch.no_grad():
        x = random_nonzero(shape, dtype, device)
        x_values = x.to("cpu", copy=True)
        y = impl(x, p, seed, dim)
    _check_wrote_into_input(x, y, "no-grad")
    y, forward = y.cpu(), forward_map(kind, p)
    keep = forward.keep(y)
    _check_mask(keep, impl, kind, shape, p, seed, dim, sigmas, "no-grad")
    _check_values(x_values, y, keep, forward, p, "forward", "no-grad")


def _check_refuses_a_leaf(impl, shape, dtype, p, device, seed, dim) -> None:
    """In place on a leaf that requires grad must raise, as PyTorch does, and leave the leaf alone."""
    leaf = random_nonzero(shape, dtype, device).requires_grad_()
    before = leaf.detach().clone()
    try:
        impl(leaf, p, seed, dim)
    except RuntimeError:
        if not torch.equal(leaf.detach(), before):
            raise Incorrect("in place on a leaf that requires grad: raised, but after writing into it") from None
        return
    raise Incorrect("in place on a leaf that requires grad: no error; PyTorch raises, since autograd "
                    "cannot differentiate a leaf that was overwritten")


def _check_checkpointed(impl, kind, shape, dtype, p, device, seed, dim) -> None:
    """Backward through activation checkpointing recomputes the forward: the mask must not change."""
    x = random_nonzero(shape, dtype, device).requires_grad_()
    y = checkpoint(impl, x, p, seed, dim, use_reentrant=False)
    (grad,) = torch.autograd.grad(y, x, torch.ones_like(y))
    differ = int((backward_map(kind, p).keep(grad) != forward_map(kind, p).keep(y.detach())).sum())
    if differ:
        raise Incorrect(f"under activation checkpointing, backward uses a different mask than forward "
                        f"({differ} of {y.numel()} elements differ)")
