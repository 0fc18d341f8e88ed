"""variational_dropout: one mask shared along dim, equal to the element mask of the reduced shape."""

import pytest
import torch
import triton
from helpers import assert_dropout_values, keep_fraction_bound, random_input
from test_element import kept, saved_bytes

from dropbench.kernels import reference, seeded_dropout, variational, variational_dropout
from dropbench.kernels.contract import Stream
from dropbench.kernels.layout import max_runs_block, runs_counters
from dropbench.kernels.runtime import describe_config
from dropbench.kernels.stream import SCALAR
from dropbench.kernels.variational import variational_dropout_forward

SEED = 987_654_321
SEEDED = Stream(SCALAR, SEED, 0, None)

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
    y = variational_dropout_forward(x, 0.5, SEEDED, dim, config=config)
    assert torch.equal(kept(y), expected_keep(x.shape, 0.5, dim)), f"mask changed with tile {block_d}x{block_m}"


#: Run lengths around the runs kernel's limits: its minimum, the 32-run word boundary, a 7 x 7 map.
RUN_LENGTHS = [17, 31, 32, 33, 49, 64, 196, 3136]


@pytest.mark.parametrize("run_len", RUN_LENGTHS)
def test_runs_kernel_is_bit_exact_for_every_run_length(run_len, device, generator):
    runs = 3 * 1024 // run_len + 2  # several blocks, most starting inside a run
    x = random_input((runs, run_len), torch.float32, device, generator)
    y = variational_dropout(x, 0.5, SEED, 1)
    assert variational.chosen_config().startswith("BLOCK="), "a contiguous dim-last input should take the runs kernel"
    keep = expected_keep(x.shape, 0.5, 1)
    assert torch.equal(kept(y), keep), f"runs kernel mask differs from the reference for runs of {run_len}"
    assert_dropout_values(y, x, keep, 0.5, f"(runs of {run_len})")


@pytest.mark.parametrize("block", [1024, 2048, 4096])
def test_runs_kernel_mask_does_not_depend_on_block(block, device, generator):
    x = random_input((150, 70), torch.float32, device, generator)
    y = variational_dropout_forward(x, 0.5, SEEDED, 1, config=triton.Config({"BLOCK": block}, num_warps=4))
    assert torch.equal(kept(y), expected_keep(x.shape, 0.5, 1)), f"mask changed with BLOCK={block}"


def test_runs_and_tiles_agree_and_layouts_pick_the_kernel(device, generator):
    x = random_input((40, 3, 49), torch.float32, device, generator)
    tiles = variational_dropout_forward(x, 0.5, SEEDED, 2, config=triton.Config({"BLOCK_D": 64, "BLOCK_M": 16}))
    assert variational.chosen_config().startswith("BLOCK_D=")
    runs = variational_dropout(x, 0.5, SEED, 2)
    assert variational.chosen_config().startswith("BLOCK="), "contiguous runs of 49 should take the runs kernel"
    assert torch.equal(runs, tiles), "the runs kernel and the tiles disagree"
    variational_dropout(x, 0.5, SEED, 1)  # mask shared along a middle dim: tiles
    assert variational.chosen_config().startswith("BLOCK_D=")
    variational_dropout(random_input((40, 9), torch.float32, device, generator), 0.5, SEED, 1)
    assert variational.chosen_config().startswith("BLOCK_D="), "runs shorter than MIN_RUN take the tiles"


@pytest.mark.parametrize("run_len", [17, 31, 32, 33, 49, 64, 100, 196, 256, 784, 3136])
def test_runs_counters_cover_the_runs_of_every_block(run_len):
    """The [COUNTERS, 8] tile starts up to 7 runs before a block's first run (a counter boundary),
    so it must hold that shift plus every run a block can touch; and it is the fewest power of two."""
    for block in [16, 256, 1024, 2048, 4096, 8192]:
        if block > max_runs_block(run_len):
            continue
        counters = runs_counters(block, run_len)
        starts = range(0, block * run_len, block)  # every block start, relative to the runs
        touched = max((start + block - 1) // run_len - start // run_len + 1 for start in starts)
        assert touched + 7 <= 8 * counters <= 8 * 16, (block, counters, touched)
        assert 8 * (counters // 2) - 7 < -(-block // run_len) + 1, (block, counters)
    assert runs_counters(4096, 256) == 4 and runs_counters(1024, 49) == 4 and runs_counters(1024, 17) == 16


@pytest.mark.parametrize("run_len, offset", [(49, 3), (64, 7), (256, 8 * 5 + 5), (3136, 1)])
def test_runs_kernel_short_tile_is_bit_exact_at_any_offset(run_len, offset, device, generator):
    x = random_input((4096 // run_len + 8, run_len), torch.float32, device, generator)  # blocks starting mid-run
    for block in (256, 1024, 2048):
        if block > max_runs_block(run_len):
            continue
        stream = Stream(SCALAR, SEED, offset, None)
        y = variational_dropout_forward(x, 0.5, stream, 1, config=triton.Config({"BLOCK": block}, num_warps=4))
        assert variational._runs.last_config.kwargs["COUNTERS"] == runs_counters(block, run_len)
        keep = reference.variational_keep_mask(x.shape, 0.5, SEED, 1, offset).expand(x.shape)
        assert torch.equal(kept(y), keep), f"runs of {run_len}, offset {offset}, BLOCK={block}"


def test_runs_configs_are_pruned_to_64_runs_and_forced_misfits_are_refused(device):
    fitting = variational.fitting_runs_configs(variational.RUNS_CONFIGS, {"run_len": 33})
    blocks = [config.kwargs["BLOCK"] for config in fitting]
    assert max(blocks) == 2048 and all(block <= max_runs_block(33) for block in blocks)
    assert all(config.kwargs["COUNTERS"] == runs_counters(config.kwargs["BLOCK"], 33) for config in fitting)
    assert all(config.kwargs["COUNTERS"] == 16 for config in variational.RUNS_CONFIGS), "the list itself is unchanged"
    assert describe_config(fitting[0]) == "BLOCK=1024 num_warps=1", "COUNTERS follows from BLOCK: not in the CSV"
    x = torch.ones(30, 17, device=device)
    for counters in (2, 24):  # too few; not a power of two
        with pytest.raises(ValueError, match=f"COUNTERS={counters} .* must be a power of two, 16 or more"):
            config = triton.Config({"BLOCK": 1024, "COUNTERS": counters})
            variational_dropout_forward(x, 0.5, SEEDED, 1, config=config)
    with pytest.raises(ValueError, match="more than 64 runs"):
        variational_dropout_forward(x, 0.5, SEEDED, 1, config=triton.Config({"BLOCK": 2048}))
    with pytest.raises(ValueError, match="groups of 16"):
        variational_dropout_forward(x, 0.5, SEEDED, 1, config=triton.Config({"BLOCK": 8}))
    with pytest.raises(ValueError, match="does not take"):
        variational_dropout_forward(x, 0.5, SEEDED, 0, config=triton.Config({"BLOCK": 1024}))


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
