"""The correctness gate: is an implementation really dropout, before anything of it is timed?

Seeded backends (the Triton kernels) must match kernels.reference bit-exactly:
(y != 0) equals the reference mask. Eager and compile draw their own masks, so
their mask is checked statistically: keep fraction inside a binomial bound, no
correlation between neighbouring decisions (adjacent elements, adjacent rows,
groups of 4). Both kinds must scale kept values to x / (1 - p) and drop to
exactly 0, and backward must use the forward's mask, also when the forward is
recomputed under activation checkpointing. Variational masks must be identical
along `dim`, and their mask elements pass the same statistics.

Each check runs on several layouts of the same logical (rows, cols) input,
because real compiler bugs live in the non-contiguous ones (pytorch/pytorch#174078:
wrong dropout on a transposed-contiguous input; #198333: inductor giving groups of
4 adjacent channels one mask, and a different mask in backward under checkpointing).

Data is random and never zero (|x| in [0.5, 1.5)), so y != 0 is exactly the keep
decision. Bounds are `sigmas` wide (6 by default): a correct implementation fails
by chance with probability ~1e-9 per statistic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.utils.checkpoint import checkpoint

from kernels import reference

#: Relative tolerance of kept values against x / (1 - p): two roundings in the dtype.
VALUE_RTOL = {torch.float16: 2e-3, torch.bfloat16: 1.6e-2, torch.float32: 1e-5, torch.float64: 1e-12}
LAYOUTS = ("contiguous", "transposed-contiguous", "transposed view")
#: Variational checks put this many rows along the shared dim; the rest of numel goes to the mask.
SHARED_SIZE = 16
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


def check(impl, dtype: str, p: float, device: str, seed: int, dim: int,
          numel: int = 65536, sigmas: float = 6.0) -> Verdict:
    """Check impl(x, p, seed, dim) on every layout; ok or incorrect with the first problem found.

    Exceptions other than a failed check (a crash, an OOM) propagate to the caller.
    """
    torch_dtype = TORCH_DTYPES[dtype]
    shape = check_shape(impl.op, numel, dim)
    try:
        for layout in LAYOUTS:
            _check_layout(impl, shape, torch_dtype, p, device, seed, dim, sigmas, layout)
        _check_checkpointed(impl, shape, torch_dtype, p, device, seed, dim)
    except Incorrect as problem:
        return Verdict("incorrect", str(problem))
    return Verdict("ok")


def check_shape(op: str, numel: int, dim: int) -> tuple[int, int]:
    """A (rows, cols) with at least `numel` elements, sides multiples of 4 (whole groups of 4).

    Element dropout gets a square, so rows and cols both have many neighbours;
    variational puts SHARED_SIZE along `dim` and the rest in the mask.
    """
    if op == "variational":
        mask_size = 4 * math.ceil(numel / SHARED_SIZE / 4)
        return (SHARED_SIZE, mask_size) if dim % 2 == 0 else (mask_size, SHARED_SIZE)
    side = 4 * math.ceil(math.sqrt(numel) / 4)
    return (side, side)


def random_nonzero(shape, dtype: torch.dtype, device: str) -> torch.Tensor:
    """Random values with |x| in [0.5, 1.5): never zero, and x / (1 - p) far from under/overflow."""
    magnitude = torch.rand(shape, device=device) + 0.5
    sign = torch.randint(0, 2, shape, device=device) * 2 - 1
    return (magnitude * sign).to(dtype)


def make_input(shape, dtype: torch.dtype, device: str, layout: str) -> torch.Tensor:
    """x of logical `shape` in one layout, requiring grad (a leaf, or a view of one)."""
    rows, cols = shape
    if layout == "contiguous":
        return random_nonzero(shape, dtype, device).requires_grad_()
    if layout == "transposed-contiguous":
        # x = y.t().contiguous().t(): a leaf whose memory is column-major.
        return random_nonzero(shape, dtype, device).t().contiguous().t().detach().requires_grad_()
    if layout == "transposed view":
        # A transposed view of a contiguous leaf: gradients flow through the transpose.
        return random_nonzero((cols, rows), dtype, device).requires_grad_().t()
    raise ValueError(f"unknown layout {layout!r}")


def _check_layout(impl, shape, dtype, p, device, seed, dim, sigmas, layout) -> None:
    x = make_input(shape, dtype, device, layout)
    y = impl(x, p, seed, dim)
    if tuple(y.shape) != tuple(x.shape) or y.dtype != x.dtype:
        raise Incorrect(f"{layout} input: output is {tuple(y.shape)} {y.dtype}, expected {tuple(x.shape)} {x.dtype}")
    (grad,) = torch.autograd.grad(y, x, torch.ones_like(y))

    keep = (y != 0).cpu()
    if impl.seeded:
        _check_reference_mask(keep, impl.op, shape, p, seed, dim, layout)
    elif impl.op == "variational":
        _check_variational_mask(keep, p, dim, sigmas, layout)
    else:
        problem = mask_problem(keep, p, sigmas)
        if problem:
            raise Incorrect(f"{layout} input: {problem}")
    _check_values(x.detach().cpu(), y.detach().cpu(), keep, p, "forward", layout)
    if not torch.equal((grad != 0).cpu(), keep):
        raise Incorrect(f"{layout} input: backward does not use the forward's mask "
                        f"({int(((grad != 0).cpu() != keep).sum())} elements differ)")
    _check_values(torch.ones(shape, dtype=torch.float64), grad.detach().cpu(), keep, p, "backward", layout)


def _check_reference_mask(keep, op, shape, p, seed, dim, layout) -> None:
    if op == "variational":
        expected = reference.variational_keep_mask(shape, p, seed, dim).expand(shape)
    else:
        expected = reference.keep_mask(shape, p, seed)
    wrong = keep != expected
    if wrong.any():
        first = tuple(int(i) for i in wrong.nonzero()[0])
        raise Incorrect(f"{layout} input: keep mask differs from kernels.reference at "
                        f"{int(wrong.sum())} of {keep.numel()} elements (first at {first})")


def _check_variational_mask(keep, p, dim, sigmas, layout) -> None:
    first = keep.select(dim, 0).unsqueeze(dim)
    if not torch.equal(keep, first.expand_as(keep)):
        differing = int((keep != first).any(dim=1 - dim % 2).sum()) if keep.dim() == 2 else -1
        raise Incorrect(f"{layout} input: mask is not identical along dim {dim} "
                        f"({differing} of {keep.shape[dim]} slices differ from the first)")
    problem = mask_problem(keep.select(dim, 0), p, sigmas)
    if problem:
        raise Incorrect(f"{layout} input: mask elements: {problem}")


def _check_values(x, y, keep, p, what, layout) -> None:
    """Kept values are x / (1 - p) to the dtype's tolerance; dropped are exactly 0 (by keep's definition)."""
    if p >= 1.0:
        if keep.any():
            raise Incorrect(f"{layout} input: {what} keeps {int(keep.sum())} elements at p=1")
        return
    expected = x.double()[keep] / (1.0 - p)
    got = y.double()[keep]
    error = (got - expected).abs() / expected.abs()
    rtol = VALUE_RTOL[y.dtype]
    if error.numel() and error.max() > rtol:
        worst = int(error.argmax())
        raise Incorrect(f"{layout} input: {what} kept value {got[worst].item():.6g} is not "
                        f"x / (1 - p) = {expected[worst].item():.6g} "
                        f"(relative error {error.max().item():.2g} > {rtol:g})")


def _check_checkpointed(impl, shape, dtype, p, device, seed, dim) -> None:
    """Backward through activation checkpointing recomputes the forward: the mask must not change."""
    x = make_input(shape, dtype, device, "contiguous")
    y = checkpoint(impl, x, p, seed, dim, use_reentrant=False)
    (grad,) = torch.autograd.grad(y, x, torch.ones_like(y))
    differ = int(((grad != 0) != (y != 0)).sum())
    if differ:
        raise Incorrect(f"under activation checkpointing, backward uses a different mask than forward "
                        f"({differ} of {y.numel()} elements differ)")


def mask_problem(keep: torch.Tensor, p: float, sigmas: float = 6.0) -> str | None:
    """What is statistically wrong with a 1-D or 2-D boolean keep mask for drop probability p, or None."""
    q = 1.0 - p  # keep probability
    n = keep.numel()
    fraction = keep.double().mean().item()
    bound = sigmas * math.sqrt(q * (1 - q) / n) + 1.0 / n
    if abs(fraction - q) > bound:
        return f"keep fraction {fraction:.4f}, expected {q:.4f} +- {bound:.4f} (p={p:g}, {n} elements)"
    if not 0.0 < q < 1.0:
        return None  # all kept or all dropped: nothing to correlate
    neighbours = [("adjacent elements", keep[..., :-1], keep[..., 1:])]
    groups = [("along the last dim", keep)]
    if keep.dim() == 2:
        neighbours.append(("adjacent rows", keep[:-1], keep[1:]))
        groups.append(("along rows", keep.t()))
    for name, left, right in neighbours:
        corr = _correlation(left, right)
        limit = sigmas / math.sqrt(left.numel())
        if corr is not None and abs(corr) > limit:
            return f"decisions of {name} are correlated: {corr:.3f} (limit {limit:.3f})"
    for name, mask in groups:
        problem = _groups_of_four_problem(mask, q, sigmas)
        if problem:
            return f"groups of 4 {name}: {problem}"
    return None


def _correlation(left: torch.Tensor, right: torch.Tensor) -> float | None:
    a, b = left.double().flatten(), right.double().flatten()
    a, b = a - a.mean(), b - b.mean()
    scale = math.sqrt((a * a).mean().item() * (b * b).mean().item())
    return None if scale == 0 else (a * b).mean().item() / scale


def _groups_of_four_problem(mask: torch.Tensor, q: float, sigmas: float) -> str | None:
    """Too many groups of 4 consecutive decisions all equal: the sign of one decision shared by 4."""
    length = mask.shape[-1] - mask.shape[-1] % 4
    groups = mask[..., :length].reshape(-1, 4)
    if groups.shape[0] == 0:
        return None
    all_equal = (groups.all(dim=1) | (~groups).all(dim=1)).double().mean().item()
    expected = q**4 + (1 - q) ** 4
    limit = expected + sigmas * math.sqrt(expected * (1 - expected) / groups.shape[0]) + 1.0 / groups.shape[0]
    if all_equal > limit:
        return f"{all_equal:.3f} of them share one decision, expected {expected:.3f} (limit {limit:.3f})"
    return None
