"""A plain-PyTorch CPU implementation of the mask contract, to check kernels bit-exactly.

Philox4x32-10 on int64 tensors: every 32-bit quantity lives in the low bits of an
int64, products wrap modulo 2**64 (which keeps their low 64 bits exact), and each
result is masked back to 32 bits. Slow and simple on purpose.
"""

import math

import torch

from dropbench.kernels.contract import check_dim, keep_threshold

MASK32 = 0xFFFFFFFF
ROUND_A, ROUND_B = 0xD2511F53, 0xCD9E8D57
KEY_A, KEY_B = 0x9E3779B9, 0xBB67AE85
ROUNDS = 10


def _as_int64(seed) -> torch.Tensor:
    """A seed (int up to 2**64 - 1, or int64 tensor) as int64 holding its 64-bit pattern."""
    if isinstance(seed, torch.Tensor):
        return seed.to(torch.int64).cpu()
    seed = int(seed)
    return torch.tensor(seed - 2**64 if seed >= 2**63 else seed, dtype=torch.int64)


def philox4x32(seed, counter: torch.Tensor):
    """The four 32-bit words of Philox4x32-10 for key `seed` and counter (counter low 32 bits, counter
    high 32 bits, 0, 0), counter an int64 tensor."""
    seed = _as_int64(seed)
    counter = counter.to(torch.int64)
    c0, c1 = counter & MASK32, (counter >> 32) & MASK32
    c2 = torch.zeros_like(counter)
    c3 = torch.zeros_like(counter)
    k0, k1 = seed & MASK32, (seed >> 32) & MASK32
    for _ in range(ROUNDS):
        prod_b, prod_a = c2 * ROUND_B, c0 * ROUND_A
        c0, c1, c2, c3 = (
            ((prod_b >> 32) & MASK32) ^ c1 ^ k0,
            prod_b & MASK32,
            ((prod_a >> 32) & MASK32) ^ c3 ^ k1,
            prod_a & MASK32,
        )
        k0, k1 = (k0 + KEY_A) & MASK32, (k1 + KEY_B) & MASK32
    return c0, c1, c2, c3


def stream_halves(seed, index: torch.Tensor) -> torch.Tensor:
    """H(s) for each stream index s: 16-bit half (s mod 2, half 0 the low bits) of word (s div 2) mod 4
    of Philox(seed, s div 8). seed may be a tensor that broadcasts against index (per-row keys)."""
    index = index.to(torch.int64)
    r0, r1, r2, r3 = philox4x32(seed, index // 8)
    word_index = (index % 8) // 2
    word = torch.where(word_index == 0, r0, torch.where(word_index == 1, r1, torch.where(word_index == 2, r2, r3)))
    return (word >> (16 * (index % 2))) & 0xFFFF


def stream_words(seed, index: torch.Tensor) -> torch.Tensor:
    """R(s) = H(s) * 2**16 + H(s xor 1) for each stream index s, as int64 in [0, 2**32)."""
    index = index.to(torch.int64)
    return stream_halves(seed, index) * 65536 + stream_halves(seed, index ^ 1)


def random_words(seed, numel: int, offset: int = 0) -> torch.Tensor:
    """R(offset + e) for e = 0 .. numel-1."""
    return stream_words(seed, offset + torch.arange(numel, dtype=torch.int64))


def keep_mask(shape, p: float, seed, offset: int = 0, global_cols: int | None = None) -> torch.Tensor:
    """The boolean keep mask of the contract for a tensor of `shape` (CPU).

    `seed` is an int (or a 0-d int64 tensor), or a 1-D int64 tensor with one seed per row
    of a 2-D shape, in which case row r uses seed[r] and e counts within the row.
    Element e has stream index offset + e; with global_cols, the shape is read as rows of
    shape[-1] and element (r, j) has stream index offset + r * global_cols + j.
    """
    shape = tuple(shape)
    threshold = keep_threshold(p)
    if global_cols is not None:
        cols = shape[-1]
        rows = math.prod(shape) // cols
        index = offset + torch.arange(rows, dtype=torch.int64)[:, None] * global_cols + torch.arange(cols)
        return (stream_words(seed, index) >= threshold).reshape(shape)
    if isinstance(seed, torch.Tensor) and seed.dim() == 1:
        rows, cols = shape
        seeds = _as_int64(seed).unsqueeze(-1)
        index = offset + torch.arange(cols, dtype=torch.int64)
        return stream_words(seeds, index) >= threshold
    return (random_words(seed, math.prod(shape), offset) >= threshold).reshape(shape)


def variational_keep_mask(shape, p: float, seed: int, dim: int, offset: int = 0) -> torch.Tensor:
    """The variational mask: the element mask of `shape` with size 1 along `dim`."""
    dim = check_dim(dim, len(shape))
    mask_shape = list(shape)
    mask_shape[dim] = 1
    return keep_mask(mask_shape, p, seed, offset)


def seeded_dropout(x: torch.Tensor, p: float, seed, offset: int = 0, global_cols: int | None = None) -> torch.Tensor:
    """Reference element dropout: x * keep / (1 - p), computed in float64 on the CPU."""
    keep = keep_mask(x.shape, p, seed, offset, global_cols)
    return _apply(x, keep, p)


def variational_dropout(x: torch.Tensor, p: float, seed: int, dim: int, offset: int = 0) -> torch.Tensor:
    """Reference variational dropout: one mask, broadcast along `dim`."""
    keep = variational_keep_mask(x.shape, p, seed, dim, offset)
    return _apply(x, keep, p)


def _apply(x: torch.Tensor, keep: torch.Tensor, p: float) -> torch.Tensor:
    if p == 1.0:
        return torch.zeros_like(x)
    scaled = x.detach().cpu().double() / (1.0 - p)
    return torch.where(keep, scaled, torch.zeros_like(scaled)).to(x.dtype)


def channel_keep_mask(shape, p: float, seed: int) -> torch.Tensor:
    """The channel mask (feature_dropout, dropout2d, feature_alpha_dropout): the element mask of
    shape[:2], with size-1 dims appended so it broadcasts over the spatial dims.

    Ops on inputs without a batch dim (dropout1d's (C, L), dropout3d's (C, D, H, W)) use
    the shape with a leading 1, which gives the element mask of shape[:1].
    """
    shape = tuple(shape)
    if len(shape) < 2:
        raise ValueError(f"a channel mask needs at least 2 dims (N, C, ...), got shape {shape}")
    return keep_mask(shape[:2], p, seed).reshape(shape[:2] + (1,) * (len(shape) - 2))


def feature_dropout(x: torch.Tensor, p: float, seed: int) -> torch.Tensor:
    """Reference channel dropout of x with >= 2 dims: one keep decision per x[n, c]."""
    return _apply(x, channel_keep_mask(x.shape, p, seed), p)


#: SELU's negative saturation a' = -scale * alpha, as ATen writes it.
ALPHA_PRIME = -1.7580993408473766


def alpha_affine(p: float) -> tuple[float, float]:
    """(A, B) of alpha dropout (ATen's _dropout_impl): y = A * (x * keep + a' * (1 - keep)) + B."""
    a = ((1.0 - p) * (1.0 + p * ALPHA_PRIME**2)) ** -0.5
    return a, -a * ALPHA_PRIME * p


def alpha_dropout(x: torch.Tensor, p: float, seed: int, offset: int = 0) -> torch.Tensor:
    """Reference alpha dropout: kept x * A + B, dropped A * a' + B, computed in float64 on the CPU."""
    return _apply_alpha(x, keep_mask(x.shape, p, seed, offset), p)


def feature_alpha_dropout(x: torch.Tensor, p: float, seed: int) -> torch.Tensor:
    """Reference alpha dropout with one keep decision per x[n, c] (x with >= 2 dims)."""
    return _apply_alpha(x, channel_keep_mask(x.shape, p, seed), p)


def _apply_alpha(x: torch.Tensor, keep: torch.Tensor, p: float) -> torch.Tensor:
    if p == 1.0:
        return torch.zeros_like(x)
    a, b = alpha_affine(p)
    x64 = x.detach().cpu().double()
    kept = x64 * a + b
    return torch.where(keep, kept, torch.full_like(kept, a * ALPHA_PRIME + b)).to(x.dtype)
