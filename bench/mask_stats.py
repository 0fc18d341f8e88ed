"""Is a keep mask drawn from torch's generator statistically what dropout with drop probability p draws?

Eager and compile cannot be compared with a reference mask, so bench.check tests their
masks here: the keep fraction inside a binomial bound, no correlation between
neighbouring decisions (adjacent elements, adjacent rows), and no excess of groups of 4
consecutive decisions that all agree (inductor once gave 4 adjacent channels one mask,
pytorch/pytorch#198333). Bounds are `sigmas` wide (6 by default): a correct
implementation fails by chance with probability ~1e-9 per statistic.
"""

from __future__ import annotations

import math

import torch


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
