"""Mask stream v3's ties: where an element's own half equals T(p)'s high half, its partner's half decides.

Such a tie has probability 2**-16 per element, so random p rarely test it. Here p is built from one
element's own R(s): T = R(s) must keep it and T = R(s) + 1 must drop it, and only the low half of
R(s) (the half of its word partner, s xor 1) tells the two apart: a kernel that compared 16-bit
halves, or took the wrong partner, fails.
Each kernel path (rows aligned and not, strided, shared-mask tiles aligned and not, tiles of fewer
than 8 values, runs, alpha rows, feature-alpha runs and tiles), at an even and an odd index, must
then match the reference bit for bit.
"""

import pytest
import torch
import triton
from helpers import random_input
from test_element import dtypes_for

from dropbench.kernels import (
    alpha,
    alpha_dropout,
    feature_alpha_dropout,
    reference,
    seeded_dropout,
    variational,
    variational_dropout,
)
from dropbench.kernels.contract import Stream, keep_threshold
from dropbench.kernels.stream import SCALAR
from dropbench.kernels.variational import variational_dropout_forward

SEED = 0x7E57_0F_71E5


def tie_p(seed: int, index: int, keep: bool) -> float:
    """A p whose T(p) has stream index `index`'s high half and a low half that decides it: keep or drop."""
    word = int(reference.stream_words(seed, torch.tensor([index]))[0])
    assert 0 < word & 0xFFFF < 0xFFFF, "pick an index whose low half is neither 0 nor 0xFFFF"
    threshold = word if keep else word + 1
    p = threshold / 2**32
    assert keep_threshold(p) == threshold and threshold >> 16 == word >> 16 and threshold & 0xFFFF
    return p


def usable_index(seed: int, start: int, stop: int, parity: int) -> int:
    """The first stream index in [start, stop) of this parity whose low half is neither 0 nor 0xFFFF.

    Both parities matter: an even index's word is the Philox word with its halves swapped, an odd
    index's the word as drawn."""
    index = torch.arange(start, stop)
    low = reference.stream_words(seed, index) & 0xFFFF
    return start + int(torch.nonzero((low != 0) & (low != 0xFFFF) & (index % 2 == parity))[0])


def kept(y: torch.Tensor) -> torch.Tensor:
    return (y != 0).cpu()


def assert_tie_decided(keep_mask: torch.Tensor, mask_index: int, keep: bool, label: str):
    assert bool(keep_mask.flatten()[mask_index]) == keep, f"{label}: the tie at mask element {mask_index} went wrong"


keeps = pytest.mark.parametrize("keep", [True, False])
parities = pytest.mark.parametrize("parity", [0, 1], ids=["even", "odd"])


@keeps
@parities
@pytest.mark.parametrize("offset", [0, 3])  # a whole counter first (ALIGNED), or a shard mid-counter
def test_element_rows_decide_ties_by_the_partner_half(keep, parity, offset, device, generator):
    e = usable_index(SEED, offset + 9, offset + 80, parity) - offset
    p = tie_p(SEED, offset + e, keep)
    expected = reference.keep_mask((2, 40), p, SEED, offset)
    assert_tie_decided(expected, e, keep, "reference")
    for dtype in dtypes_for(device):  # each dtype compiles its own tile layout on a GPU
        x = random_input((2, 40), dtype, device, generator)
        assert torch.equal(kept(seeded_dropout(x, p, SEED, offset=offset)), expected), dtype


@keeps
@parities
def test_strided_kernel_decides_ties_by_the_partner_half(keep, parity, device, generator):
    x = random_input((24, 5), torch.float32, device, generator).t()  # (5, 24), not contiguous
    e = usable_index(SEED, 30, 120, parity)
    p = tie_p(SEED, e, keep)
    expected = reference.keep_mask(x.shape, p, SEED)
    assert_tie_decided(expected, e, keep, "reference")
    assert torch.equal(kept(seeded_dropout(x, p, SEED)), expected)


@keeps
@parities
@pytest.mark.parametrize("offset", [0, 5])
@pytest.mark.parametrize("config", [None, triton.Config({"BLOCK_D": 1024, "BLOCK_M": 2}, num_warps=4)],
                         ids=["tiles", "tiles-of-2"])
def test_shared_mask_tiles_decide_ties_by_the_partner_half(keep, parity, offset, config, device, generator):
    x = random_input((6, 3, 16), torch.float32, device, generator)  # dim 0 shared: mask (1, 3, 16)
    m = usable_index(SEED, offset + 17, offset + 48, parity) - offset
    p = tie_p(SEED, offset + m, keep)
    expected = reference.keep_mask((1, 3, 16), p, SEED, offset)
    assert_tie_decided(expected, m, keep, "reference")
    y = variational_dropout_forward(x, p, Stream(SCALAR, SEED, offset, None), 0, config=config)
    assert torch.equal(kept(y), expected.expand(x.shape))


@keeps
@parities
def test_runs_kernel_decides_ties_by_the_partner_half(keep, parity, device, generator):
    x = random_input((40, 20), torch.float32, device, generator)  # dim last: runs of 20, mask (40, 1)
    m = usable_index(SEED, 3, 40, parity)
    p = tie_p(SEED, m, keep)
    expected = reference.keep_mask((40, 1), p, SEED)
    assert_tie_decided(expected, m, keep, "reference")
    y = variational_dropout(x, p, SEED, dim=1)
    assert variational.chosen_config().startswith("BLOCK="), "runs of 20 should take the runs kernel"
    assert torch.equal(kept(y), expected.expand(x.shape))


@keeps
@parities
def test_alpha_kernels_decide_ties_by_the_partner_half(keep, parity, device, generator):
    # |x| + 1: a kept x * A + B is then far from the dropped constant A * a' + B, so values tell the mask.
    x = random_input((4, 40), torch.float32, device, generator).abs() + 1
    e = usable_index(SEED, 11, 160, parity)
    p = tie_p(SEED, e, keep)
    expected = reference.alpha_dropout(x.cpu(), p, SEED)
    assert_tie_decided(reference.keep_mask(x.shape, p, SEED), e, keep, "reference")
    torch.testing.assert_close(alpha_dropout(x, p, SEED).cpu(), expected)
    # feature_alpha_dropout: the (N, C) = (4, 40) element mask, shared over 3 x 6 maps: channels-first
    # maps are runs of 18 (the runs kernel), channels-last ones take the locked tiles.
    maps = random_input((4, 40, 3, 6), torch.float32, device, generator).abs() + 1
    for layout, kernel in ((maps, "BLOCK="), (maps.contiguous(memory_format=torch.channels_last), "BLOCK_D=")):
        torch.testing.assert_close(feature_alpha_dropout(layout, p, SEED).cpu(),
                                   reference.feature_alpha_dropout(maps.cpu(), p, SEED))
        assert alpha.chosen_feature_config().startswith(kernel), kernel
