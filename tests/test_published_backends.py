"""The backends written from published algorithms (tutorial, seedrepo_1d/2d) and compile_fallback.

Each must pass the runner's correctness gate (bench.check: statistics of the mask, kept values,
backward's mask, activation checkpointing, every layout) on tiny shapes, here under the Triton
interpreter; and each must really be the algorithm it is named after.
"""

import pytest
import torch
from helpers import random_input

from dropbench.baselines import compiled, eager, seedrepo, tutorial
from dropbench.bench import catalogue, check

#: Small enough for the interpreter, large enough for the statistics of the mask.
CHECK_NUMEL = 4096
NEW_PAIRS = [("dropout", "tutorial"), ("variational", "seedrepo_1d"), ("variational", "seedrepo_2d"),
             ("dropout", "compile_fallback"), ("variational", "compile_fallback")]


@pytest.mark.parametrize("op, backend", NEW_PAIRS)
@pytest.mark.parametrize("dtype", ["fp32", "fp16"])
def test_passes_the_runners_check(op, backend, dtype, device):
    torch._dynamo.reset()
    verdict = check.check(catalogue.implementation(op, backend), dtype, 0.3, device, seed=1234, dim=0,
                          numel=CHECK_NUMEL)
    assert verdict.ok, f"{op}/{backend} {dtype}: {verdict.status}: {verdict.reason}"


@pytest.mark.parametrize("backend", ["seedrepo_1d", "seedrepo_2d"])
def test_seedrepo_passes_the_check_with_the_mask_shared_along_cols(backend, device):
    # dim=1 reads (rows, cols) as (B, T, C) = (rows, cols, 1): one interpreted program per row, so fewer rows.
    verdict = check.check(catalogue.implementation("variational", backend), "fp32", 0.5, device, seed=7, dim=1,
                          numel=CHECK_NUMEL // 4)
    assert verdict.ok, f"variational/{backend} dim=1: {verdict.reason}"


def test_tutorial_keeps_where_the_uniform_of_the_flat_index_exceeds_p(device, generator):
    """Same seed, same flat index, same decision: a (4, 96) input and its flat (384,) view agree."""
    x = random_input((4, 96), torch.float32, device, generator)
    seed = int(torch.randint(0, 2**31 - 1, (), generator=generator))
    square = tutorial.dropout(x, 0.4, seed) != 0
    flat = tutorial.dropout(x.flatten(), 0.4, seed) != 0
    assert torch.equal(square.flatten(), flat), "the mask should depend only on the flat index and the seed"
    assert not torch.equal(square, tutorial.dropout(x, 0.4, seed + 1) != 0), "another seed gave the same mask"


def test_tutorial_copies_a_strided_input_and_keeps_its_logical_mask(device, generator):
    x = random_input((64, 32), torch.float32, device, generator)
    seed = int(torch.randint(0, 2**31 - 1, (), generator=generator))
    transposed = tutorial.dropout(x.t(), 0.5, seed)
    assert torch.equal(transposed != 0, tutorial.dropout(x.t().contiguous(), 0.5, seed) != 0), \
        "a non-contiguous input should be dropped as its contiguous copy"


def test_tutorial_refuses_a_drop_probability_outside_0_1(device):
    with pytest.raises(ValueError, match=r"p=1.5: allowed: a drop probability in \[0, 1\]"):
        tutorial.dropout(torch.ones(8, device=device), 1.5, 0)


def test_the_1d_and_2d_forms_draw_the_same_mask(device, generator):
    """One tl.rand(seed, b * C + c) per mask element in both forms: the same (seed, shape) is the same mask."""
    x = random_input((3, 40, 48), torch.float32, device, generator)
    seed = int(torch.randint(0, 2**31 - 1, (), generator=generator))
    one_d = seedrepo.variational_dropout_1d(x, 0.5, seed, dim=1)
    two_d = seedrepo.variational_dropout_2d(x, 0.5, seed, dim=1)
    assert torch.equal(one_d, two_d), "the 1D and 2D forms should keep the same (b, c)"
    keep = one_d != 0
    assert torch.equal(keep, keep[:, :1].expand_as(keep)), "the mask should be shared along T"


@pytest.mark.parametrize("dim", [3, -4])
def test_seedrepo_refuses_a_dim_outside_the_input(dim, device):
    with pytest.raises(ValueError, match=f"dim={dim}: allowed: a dim of the 3-d input, -3 to 2"):
        seedrepo.variational_dropout_1d(torch.ones(2, 3, 4, device=device), 0.5, 0, dim)


def test_seedrepo_2d_reports_its_tile(device):
    seedrepo.variational_dropout_2d(torch.ones(2, 8, 16, device=device), 0.5, 0, dim=1)
    assert seedrepo.chosen_config().startswith("BLOCK_T="), seedrepo.chosen_config()
    assert catalogue.implementation("variational", "seedrepo_2d").chosen_config() == seedrepo.chosen_config()


def test_compile_fallback_gives_eagers_mask_and_compile_does_not(device, generator):
    """fallback_random is on for compile_fallback's graphs only: it must not leak into compile's."""
    torch._dynamo.reset()
    x = random_input((64, 64), torch.float32, device, generator)
    seed = int(torch.randint(0, 2**31 - 1, (), generator=generator))
    outputs = {}
    for name, fn in [("eager", eager.dropout), ("fallback", compiled.compiled_fallback_random(eager.dropout)),
                     ("compile", compiled.compiled(eager.dropout))]:
        torch.manual_seed(seed)
        outputs[name] = fn(x, 0.5)
    assert torch.equal(outputs["fallback"], outputs["eager"]), "compile_fallback should draw eager's mask"
    assert not torch.equal(outputs["compile"], outputs["eager"]), \
        "compile drew eager's mask: fallback_random leaked into the compile backend"
    assert not torch._inductor.config.fallback_random, "fallback_random leaked into the global config"
