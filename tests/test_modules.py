"""The modules: train/eval, fresh masks from the device RNG state, reproducibility, recomputable masks,
activation checkpointing, and every op's module."""

import pytest
import torch
import torch.nn.functional as F
from helpers import random_input
from test_element import kept

from dropbench.kernels import (
    AlphaDropout,
    Dropout1d,
    Dropout2d,
    Dropout3d,
    FeatureAlphaDropout,
    SeededDropout,
    VariationalDropout,
    checkpoint_context,
    reference,
    seeded_dropout,
    variational_dropout,
)

MODULES = {
    "seeded": (lambda: SeededDropout(0.5), (16, 64)),
    "variational": (lambda: VariationalDropout(0.5, dim=1), (4, 6, 32)),
    "dropout1d": (lambda: Dropout1d(0.5), (4, 8, 20)),
    "dropout2d": (lambda: Dropout2d(0.5), (4, 8, 5, 5)),
    "dropout3d": (lambda: Dropout3d(0.5), (2, 8, 3, 3, 3)),
    "alpha": (lambda: AlphaDropout(0.5), (16, 64)),
    "feature_alpha": (lambda: FeatureAlphaDropout(0.5), (4, 8, 5, 5)),
}


@pytest.mark.parametrize("name", MODULES)
def test_eval_is_identity(name, device, generator):
    make, shape = MODULES[name]
    x = random_input(shape, torch.float32, device, generator)
    assert make().eval()(x) is x


@pytest.mark.parametrize("name", MODULES)
def test_train_draws_a_fresh_mask_per_call(name, device, generator):
    make, shape = MODULES[name]
    module = make().train()
    x = random_input(shape, torch.float32, device, generator)
    first, second = module(x), module(x)
    assert not torch.equal(first, second), f"{name}: two calls gave one mask"


def test_last_state_recomputes_the_mask_and_the_gradient(device, generator):
    module = SeededDropout(0.5).train()
    x = random_input((16, 64), torch.float32, device, generator).requires_grad_(True)
    module(x)  # the second call's stream starts past the first's
    y = module(x)
    key, offset = module.last_state.tolist()
    assert offset == 16 * 64, f"the second call should start at offset 1024, got {offset}"
    assert torch.equal(seeded_dropout(x.detach(), 0.5, key, offset=offset), y)
    y.backward(torch.ones_like(y))
    assert torch.equal(kept(x.grad), reference.keep_mask(x.shape, 0.5, key, offset)), \
        "backward must replay the forward's (key, offset), not the state's current one"


def test_variational_module_recomputes_from_last_state(device, generator):
    module = VariationalDropout(0.3, dim=1).train()
    x = random_input((2, 5, 16), torch.float32, device, generator)
    y = module(x)
    key, offset = module.last_state.tolist()
    assert torch.equal(variational_dropout(x, 0.3, key, 1, offset=offset), y)


@pytest.mark.parametrize("make", [lambda: SeededDropout(0.5), lambda: VariationalDropout(0.5, 0)])
def test_manual_seed_makes_training_reproducible(make, device, generator):
    x = random_input((8, 32), torch.float32, device, generator)
    runs = []
    for _ in range(2):
        torch.manual_seed(1234)
        module = make().train()
        runs.append([module(x), module(x)])
    assert torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][1], runs[1][1])


def test_state_follows_the_input_and_stays_out_of_the_state_dict(device, generator):
    module = SeededDropout(0.5)
    assert "rng_state" not in module.state_dict(), "state_dicts must stay interchangeable with nn.Dropout"
    module(random_input((4, 8), torch.float32, device, generator))
    assert module.rng_state.device.type == device


def test_activation_checkpointing_replays_the_first_forwards_masks(device, generator):
    torch.manual_seed(7)
    block = torch.nn.Sequential(torch.nn.Linear(32, 32), SeededDropout(0.5), torch.nn.Linear(32, 32)).to(device)
    x = random_input((8, 32), torch.float32, device, generator)
    start = block[1].rng_state.clone()
    block(x).sum().backward()
    plain = [param.grad.clone() for param in block.parameters()]
    block.zero_grad()
    block[1].rng_state.copy_(start)
    out = torch.utils.checkpoint.checkpoint(block, x, use_reentrant=False, context_fn=checkpoint_context(block))
    out.sum().backward()
    for expected, param in zip(plain, block.parameters()):
        torch.testing.assert_close(param.grad, expected, rtol=0, atol=0)
    assert torch.equal(block[1].rng_state, start + torch.tensor([0, 8 * 32, 0, 0], device=device)), \
        "after the recomputation the state must be where the forward left it"


def test_p_zero_matches_nn_dropout_exactly(device, generator):
    x = random_input((8, 32), torch.float32, device, generator)
    assert torch.equal(SeededDropout(0.0)(x), F.dropout(x, 0.0))


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
