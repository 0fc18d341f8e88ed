"""Shared test helpers: random inputs, tolerances and statistical bounds."""

import math

import torch

#: Relative tolerance for kept values x / (1 - p): the kernels multiply by a rounded
#: scale in fp32 (fp64 for fp64), the reference divides in fp64.
RTOL = {torch.float16: 2e-3, torch.bfloat16: 1.6e-2, torch.float32: 1e-6, torch.float64: 1e-14}

#: Width of the statistical bounds in standard deviations: wide enough that a correct
#: kernel fails by chance about once in 10**8 runs, narrow enough to catch a wrong p.
SIGMAS = 6.0


def random_input(shape, dtype, device, generator) -> torch.Tensor:
    """Standard-normal data drawn on the CPU (so the generator decides it), never zeros."""
    data = torch.randn(shape, generator=generator, dtype=torch.float64).to(dtype)
    # A 0 would hide a drop. Checked after the cast: |x| < 3e-8 rounds to 0 in fp16 (about one
    # element in 4e7, so one fp16 test in a few thousand saw a "dropped" kept element).
    data = torch.where(data == 0, torch.ones_like(data), data)
    return data.to(device=device)


def keep_fraction_bound(n: int, p: float) -> float:
    """Half-width of the SIGMAS bound on the kept fraction of n Bernoulli(1 - p) decisions."""
    return SIGMAS * math.sqrt(p * (1 - p) / n)


def correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    """Pearson correlation of two equally long 0/1 decision vectors."""
    a, b = a.double().flatten(), b.double().flatten()
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / (a.norm() * b.norm()))


def correlation_bound(n: int) -> float:
    """The SIGMAS bound on |correlation| of n pairs of independent decisions."""
    return SIGMAS / math.sqrt(n)


def assert_dropout_values(y, x, keep, p, message=""):
    """Kept elements equal x / (1 - p) to the dtype's rounding; dropped ones are exactly 0."""
    y64, x64 = y.detach().cpu().double(), x.detach().cpu().double()
    keep = keep.cpu()
    assert torch.all(y64[~keep] == 0), f"dropped elements are not exactly 0 {message}"
    expected = x64[keep] / (1 - p)
    # Subnormal results (random normal data yields a few in fp16) carry fewer significant bits than
    # rtol allows: one subnormal step is within rounding there.
    subnormal_step = torch.finfo(y.dtype).smallest_normal * torch.finfo(y.dtype).eps
    torch.testing.assert_close(
        y64[keep], expected, rtol=RTOL[y.dtype], atol=subnormal_step,
        msg=lambda m: f"kept values wrong {message}: {m}",
    )
