"""SeededDropout and VariationalDropout: train/eval, fresh seeds, reproducibility, recomputable masks."""

import pytest
import torch
from helpers import random_input
from test_seeded import kept

from dropbench.kernels import SeededDropout, VariationalDropout, seeded_dropout, variational_dropout


@pytest.mark.parametrize("module", [SeededDropout(0.5), VariationalDropout(0.5, dim=1)], ids=["seeded", "variational"])
def test_eval_is_identity(module, device, generator):
    x = random_input((4, 6, 8), torch.float32, device, generator)
    module.eval()
    assert module(x) is x


def test_train_draws_a_fresh_seed_per_call_and_keeps_it(device, generator):
    module = SeededDropout(0.5).train()
    x = random_input((16, 64), torch.float32, device, generator)
    first, first_seed = module(x), module.last_seed
    second = module(x)
    assert first_seed != module.last_seed, "each call must draw a new seed"
    assert not torch.equal(kept(first), kept(second))
    assert torch.equal(seeded_dropout(x, 0.5, module.last_seed), second), "last_seed must recompute the mask"


def test_variational_module_recomputes_from_last_seed(device, generator):
    module = VariationalDropout(0.3, dim=1).train()
    x = random_input((2, 5, 16), torch.float32, device, generator)
    y = module(x)
    assert torch.equal(variational_dropout(x, 0.3, module.last_seed, 1), y)


@pytest.mark.parametrize("make", [lambda: SeededDropout(0.5), lambda: VariationalDropout(0.5, 0)])
def test_manual_seed_makes_training_reproducible(make, device, generator):
    x = random_input((8, 32), torch.float32, device, generator)
    runs = []
    for _ in range(2):
        torch.manual_seed(1234)
        module = make().train()
        runs.append([module(x), module(x)])
    assert torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][1], runs[1][1])


def test_modules_refuse_bad_arguments():
    with pytest.raises(ValueError, match="p must be in"):
        SeededDropout(1.2)
    with pytest.raises(TypeError, match="dim must be an int"):
        VariationalDropout(0.5, dim="tokens")
    with pytest.raises(ValueError, match="dim must be in"):
        VariationalDropout(0.5, dim=3).train()(torch.ones(2, 3))


def test_repr_names_the_arguments():
    assert "p=0.25, dim=1" in repr(VariationalDropout(0.25, 1))
    assert "p=0.25" in repr(SeededDropout(0.25))
