"""variational_dropout: one mask shared along dim, equal to the element mask of the reduced shape."""

import pytest
import torch
import triton
from helpers import assert_dropout_values, keep_fraction_bound, random_input
from test_seeded import kept, saved_bytes

from kernels import reference, seeded_dropout, variational_dropout
from kernels.variational import variational_dropout_forward

SEED = 987_654_321

LAYOUTS = [
    pytest.param((6, 4, 40), 0, id="TBC-tokens"),
    pytest.param((4, 6, 40), 1, id="BTC-tokens"),
    pytest.param((4, 6, 40), -1, id="last-dim"),
    pytest.param((24, 37), 0, id="2d-rows"),
    pytest.param((24, 37), 1, id="2d-cols"),
    pytest.param((2, 3, 5, 7), 2, id="4d-middle"),
    pytest.param((9,), 0, id="1d"),
]


def expected_keep(shape, p, dim):
    return reference.variational_keep_mask(shape, p, SEED, dim).expand(shape)


@pytest.mark.parametrize("shape, dim", LAYOUTS)
def test_mask_is_bit_exact_with_reference(shape, dim, device, generator):
    x = random_input(shape, torch.float32, device, generator)
    y = variational_dropout(x, 0.5, SEED, dim)
    keep = expected_keep(shape, 0.5, dim)
    assert torch.equal(kept(y), keep), f"mask differs from the reference for {shape}, dim={dim}"
    assert_dropout_values(y, x, keep, 0.5, f"({shape}, dim={dim})")


@pytest.mark.parametrize("shape, dim", LAYOUTS[:3])
def test_mask_is_shared_along_dim_and_varies_elsewhere(shape, dim, device, generator):
    x = random_input(shape, torch.float32, device, generator)
    mask = kept(variational_dropout(x, 0.5, SEED, dim))
    first = mask.select(dim, 0).unsqueeze(dim)
    assert torch.equal(mask, first.expand(shape)), "the mask is not identical along dim"
    assert 0 < first.double().mean() < 1, "the mask does not vary across the other positions"


def test_mask_equals_seeded_dropout_mask_of_the_reduced_shape(device, generator):
    x = random_input((5, 8, 12), torch.float32, device, generator)
    reduced = seeded_dropout(torch.ones(5, 1, 12, device=device), 0.5, SEED)
    assert torch.equal(kept(variational_dropout(x, 0.5, SEED, 1)), kept(reduced).expand(5, 8, 12))


@pytest.mark.parametrize("block_d, block_m", [(1, 16), (2, 64), (8, 8), (64, 256)])
@pytest.mark.parametrize("dim", [0, 1])
def test_mask_does_not_depend_on_tile_shape(block_d, block_m, dim, device, generator):
    x = random_input((30, 70), torch.float32, device, generator)
    config = triton.Config({"BLOCK_D": block_d, "BLOCK_M": block_m}, num_warps=2)
    y = variational_dropout_forward(x, 0.5, SEED, dim, config=config)
    assert torch.equal(kept(y), expected_keep(x.shape, 0.5, dim)), f"mask changed with tile {block_d}x{block_m}"


@pytest.mark.parametrize(
    "make_view, dim",
    [
        pytest.param(lambda t: t.t(), 0, id="transpose-dim0"),
        pytest.param(lambda t: t.t(), 1, id="transpose-dim1"),
        pytest.param(lambda t: t[:, 1:30], 0, id="column-slice"),
        pytest.param(lambda t: t.reshape(4, 8, 32).permute(1, 0, 2), 1, id="permute-needs-copy"),
        pytest.param(lambda t: t.reshape(4, 8, 32).permute(2, 1, 0), 0, id="permute-3d"),
    ],
)
def test_non_contiguous_inputs_use_logical_order(make_view, dim, device, generator):
    x = make_view(random_input((32, 32), torch.float32, device, generator))
    y = variational_dropout(x, 0.5, SEED, dim)
    keep = expected_keep(x.shape, 0.5, dim)
    assert torch.equal(kept(y), keep)
    assert_dropout_values(y, x, keep, 0.5, "(strided input)")


def test_dtypes_share_the_mask(device, generator):
    x = random_input((16, 24), torch.float64, device, generator)
    dtypes = [torch.float16, torch.float32, torch.float64] + ([torch.bfloat16] if device == "cuda" else [])
    for dtype in dtypes:
        y = variational_dropout(x.to(dtype), 0.3, SEED, 0)
        assert y.dtype == dtype
        keep = expected_keep(x.shape, 0.3, 0)
        assert torch.equal(kept(y), keep), f"mask differs in {dtype}"
        assert_dropout_values(y, x.to(dtype), keep, 0.3, f"({dtype})")


@pytest.mark.parametrize("p", [0.1, 0.9])
def test_keep_fraction_of_mask_inside_binomial_bound(p, device, generator):
    x = random_input((4, 16384), torch.float32, device, generator)
    mask = kept(variational_dropout(x, p, generator.initial_seed(), 0))[0]
    fraction = mask.double().mean().item()
    assert abs(fraction - (1 - p)) < keep_fraction_bound(mask.numel(), p)


def test_gradient_uses_the_forward_mask_and_gradcheck(device, generator):
    x = random_input((6, 5, 8), torch.float64, device, generator).requires_grad_(True)
    y = variational_dropout(x, 0.4, SEED, 1)
    (grad,) = torch.autograd.grad(y, x, torch.ones_like(y))
    assert torch.equal(kept(grad), kept(y.detach())), "backward used a different mask"
    small = random_input((3, 4, 5), torch.float64, device, generator).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: variational_dropout(t, 0.4, SEED, 1), (small,))


def test_nothing_is_saved_for_backward(device, generator):
    x = random_input((8, 64), torch.float32, device, generator).requires_grad_(True)
    assert saved_bytes(lambda: variational_dropout(x, 0.5, SEED, 0)) == 0


def test_p_edge_cases(device, generator):
    x = random_input((4, 8), torch.float32, device, generator).requires_grad_(True)
    assert variational_dropout(x, 0.0, SEED, 0) is x
    assert variational_dropout(x, 0.5, SEED, 0, training=False) is x
    y = variational_dropout(x, 1.0, SEED, 0)
    (grad,) = torch.autograd.grad(y, x, torch.ones_like(y))
    assert not y.any() and not grad.any(), "p=1 must give zeros and zero gradients"


@pytest.mark.parametrize(
    "dim, error, words",
    [(2, ValueError, r"dim must be in \[-2, 1\]"), (-3, ValueError, "dim must be in"), (0.5, TypeError, "dim must be an int")],
)
def test_bad_dim_is_named(dim, error, words, device):
    with pytest.raises(error, match=words):
        variational_dropout(torch.ones(3, 4, device=device), 0.5, SEED, dim)


def test_bad_p_seed_and_dtype_are_named(device):
    x = torch.ones(3, 4, device=device)
    with pytest.raises(ValueError, match="p must be in"):
        variational_dropout(x, 2.0, SEED, 0)
    with pytest.raises(ValueError, match="seed must be in"):
        variational_dropout(x, 0.5, -5, 0)
    with pytest.raises(TypeError, match="supported dtypes"):
        variational_dropout(x.long(), 0.5, SEED, 0)
    with pytest.raises(ValueError, match="at least 1 dim"):
        variational_dropout(torch.tensor(1.0, device=device), 0.5, SEED, 0)
