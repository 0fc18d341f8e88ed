"""The modules: train/eval, masks from torch's generator (manual_seed, get/set_rng_state, fork_rng),
recomputable masks, activation checkpointing, in place, and every op's module."""

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
    dropout_,
    native,
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


#: Each module's torch.nn counterpart, which it subclasses (VariationalDropout has none).
TORCH_BASES = {"seeded": torch.nn.Dropout, "dropout1d": torch.nn.Dropout1d, "dropout2d": torch.nn.Dropout2d,
               "dropout3d": torch.nn.Dropout3d, "alpha": torch.nn.AlphaDropout,
               "feature_alpha": torch.nn.FeatureAlphaDropout}


@pytest.mark.parametrize("name", TORCH_BASES)
def test_modules_are_their_torch_counterparts_and_obey_model_wide_p(name, device, generator):
    """Code that finds dropouts by isinstance (to set p, or to switch them off) finds these too."""
    make, shape = MODULES[name]
    model = torch.nn.Sequential(torch.nn.Identity(), make()).train()
    assert isinstance(model[1], TORCH_BASES[name])
    assert repr(model[1]).endswith("(p=0.5, inplace=False)")
    for module in model.modules():
        if isinstance(module, torch.nn.modules.dropout._DropoutNd):
            module.p = 0.0
    x = random_input(shape, torch.float32, device, generator)
    assert model(x) is x, "p set to 0 through the torch base class must switch the dropout off"


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


def _rng_state(device):
    return torch.cuda.get_rng_state() if device == "cuda" else torch.get_rng_state()


def _set_rng_state(state, device):
    (torch.cuda.set_rng_state if device == "cuda" else torch.set_rng_state)(state)


@pytest.mark.parametrize("name", MODULES)
def test_p_one_draws_nothing_from_torchs_generator(name, device, generator):
    """As torch's dropout at p = 1: zeros (the alpha ops' too), and the generator stays where it was,
    so the next call's mask is the one it would have been without this call."""
    make, shape = MODULES[name]
    module = make().train()
    module.p = 1.0
    x = random_input(shape, torch.float32, device, generator)
    before = _rng_state(device)
    assert torch.equal(module(x), torch.zeros_like(x))
    assert torch.equal(_rng_state(device), before), f"{name} with p = 1 moved torch's generator"
    y = dropout_(x.clone(), 1.0)  # the in-place function takes the same rule
    assert torch.equal(y, torch.zeros_like(x)) and torch.equal(_rng_state(device), before)


def _drawn_stream(device):
    """(key, offset) that the next call given no seed will use, read from torch's generator."""
    if device == "cuda":
        generator = torch.cuda.default_generators[torch.cuda.current_device()]
        return generator.initial_seed(), 2 * generator.get_offset()  # a stream offset is twice torch's
    state = torch.get_rng_state()
    key = int(torch.randint(2**63 - 1, (), dtype=torch.int64))
    torch.set_rng_state(state)
    return key, 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_call_uses_torchs_stream_and_backward_replays_it(dtype, device, generator):
    module = SeededDropout(0.5).train()
    x = random_input((16, 64), dtype, device, generator).requires_grad_(True)
    module(x)  # the second call's stream starts past the first's
    key, offset = _drawn_stream(device)
    y = module(x)
    assert torch.equal(y, seeded_dropout(x.detach(), 0.5, key, offset=offset)), \
        "the mask must be seed=the generator's seed, offset=twice its Philox offset"
    if device == "cuda":
        assert _drawn_stream(device)[1] == offset + 16 * 64, "the call must move the generator on by its length"
    y.backward(torch.ones_like(y))
    assert torch.equal(kept(x.grad), reference.keep_mask(x.shape, 0.5, key, offset)), \
        "backward must replay the forward's (key, offset)"


def test_variational_module_uses_torchs_stream(device, generator):
    module = VariationalDropout(0.3, dim=1).train()
    x = random_input((2, 5, 16), torch.float32, device, generator)
    key, offset = _drawn_stream(device)
    assert torch.equal(module(x), variational_dropout(x, 0.3, key, 1, offset=offset))


@pytest.mark.parametrize("name", MODULES)
def test_manual_seed_makes_training_reproducible(name, device, generator):
    make, shape = MODULES[name]
    module = make().train()
    x = random_input(shape, torch.float32, device, generator)
    runs = []
    for _ in range(2):
        torch.manual_seed(1234)
        runs.append([module(x), module(x)])
    assert torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][1], runs[1][1]), name
    assert not torch.equal(runs[0][0], runs[0][1]), f"{name}: two calls gave one mask"


def test_get_and_set_rng_state_replay_the_masks(device, generator):
    module = SeededDropout(0.5).train()
    x = random_input((8, 32), torch.float32, device, generator)
    state = _rng_state(device)
    first = module(x)
    _set_rng_state(state, device)
    assert torch.equal(module(x), first)


def test_fork_rng_leaves_the_stream_where_it_was(device, generator):
    module = VariationalDropout(0.5, dim=0).train()
    x = random_input((8, 32), torch.float32, device, generator)
    with torch.random.fork_rng(devices=[torch.cuda.current_device()] if device == "cuda" else []):
        inside = module(x)
    assert torch.equal(module(x), inside), "after fork_rng the next call must draw what the forked one drew"


def test_the_modules_hold_no_state(device, generator):
    module = SeededDropout(0.5).to(device)
    assert module.state_dict() == {} and list(module.buffers()) == [], "state_dicts must stay nn.Dropout's"


@pytest.mark.parametrize("use_reentrant", [True, False])
@pytest.mark.parametrize("make", [lambda: SeededDropout(0.5), lambda: VariationalDropout(0.5, dim=0)],
                         ids=["seeded", "variational"])
def test_activation_checkpointing_gives_the_plain_passs_gradients(use_reentrant, make, device, generator):
    """torch.utils.checkpoint with its defaults restores the RNG state before it recomputes: the
    recomputed forward must draw the first forward's masks, as nn.Dropout's does."""
    torch.manual_seed(7)
    block = torch.nn.Sequential(torch.nn.Linear(32, 32), make(), torch.nn.Linear(32, 32), make()).to(device)
    x = random_input((8, 32), torch.float32, device, generator).requires_grad_(True)
    state = _rng_state(device)
    block(x).sum().backward()
    plain = [param.grad.clone() for param in block.parameters()] + [x.grad.clone()]
    block.zero_grad()
    x.grad = None
    _set_rng_state(state, device)
    torch.utils.checkpoint.checkpoint(block, x, use_reentrant=use_reentrant).sum().backward()
    for expected, got in zip(plain, [param.grad for param in block.parameters()] + [x.grad]):
        torch.testing.assert_close(got, expected, rtol=0, atol=0)


@pytest.mark.parametrize("name", [name for name in MODULES if name != "variational"])  # torch.nn's take inplace
def test_inplace_writes_the_out_of_place_result_into_x(name, device, generator):
    make, shape = MODULES[name]
    out_of_place, in_place = make().train(), make().train()
    in_place.inplace = True
    x = random_input(shape, torch.float32, device, generator)
    torch.manual_seed(3)
    expected = out_of_place(x)
    torch.manual_seed(3)
    target = x.clone()
    assert in_place(target) is target
    torch.testing.assert_close(target, expected, rtol=0, atol=0)


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
    assert "p=0.25, inplace=False" in repr(SeededDropout(0.25))


@pytest.mark.gpu
def test_hugging_face_gradient_checkpointing_gives_the_plain_passs_gradients(generator):
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(n_layer=2, n_embd=64, n_head=4, n_positions=32, vocab_size=128)
    config._attn_implementation = "eager"  # attention dropout through the module, not inside SDPA
    model = transformers.GPT2LMHeadModel(config).cuda().train()
    for parent in list(model.modules()):
        for name, child in parent.named_children():
            if isinstance(child, torch.nn.Dropout):
                setattr(parent, name, SeededDropout(child.p))
    tokens = torch.randint(128, (2, 32), generator=generator).cuda()

    def gradients():
        model.zero_grad()
        torch.manual_seed(0)
        model(tokens, labels=tokens).loss.backward()
        return [param.grad.clone() for param in model.parameters()]

    plain = gradients()
    model.gradient_checkpointing_enable()
    for expected, got in zip(plain, gradients()):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_a_positional_seed_of_an_older_release_is_refused():
    with pytest.raises(TypeError, match="inplace must be a bool"):
        SeededDropout(0.5, 1234)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_repeat_calls_take_the_hot_path_with_the_general_paths_masks(dtype, generator):
    """Once the general path has launched a shape, module calls launch its kept kernel (kernels.hot_path):
    the same masks and generator moves as the general path, across key widths and offsets past int32,
    and backward replays them, also on a gradient the kept launch can't take (expanded, misaligned)."""
    module = SeededDropout(0.3).train()
    x = random_input((8, 1000), dtype, "cuda", generator).requires_grad_(True)
    cuda_generator = torch.cuda.default_generators[torch.cuda.current_device()]
    buffer = random_input((8001,), dtype, "cuda", generator)
    gradients = {
        "random": random_input((8, 1000), dtype, "cuda", generator),
        "expanded": random_input((1, 1000), dtype, "cuda", generator).expand(8, 1000),
        "misaligned": buffer[1:].view(8, 1000),
    }
    hot_calls = {}
    for seed, start in [(5, 0), (2**40 + 3, 0), (5, 2**31 - 4000), (5, 2**40), (5, 0)]:
        torch.cuda.manual_seed(seed)
        cuda_generator.set_offset(start)
        for grad_name, grad in [*gradients.items(), ("random", gradients["random"])]:
            key, offset = _drawn_stream("cuda")
            y = module(x)
            hot = y.grad_fn.name() in ("HotElementDropoutBackward", "NativeDropoutBackward")
            hot_calls[seed, start] = hot_calls.get((seed, start), 0) + hot
            assert torch.equal(y, seeded_dropout(x.detach(), 0.3, key, offset=offset)), (seed, start, grad_name)
            assert _drawn_stream("cuda") == (key, offset + 8000)
            x.grad = None
            y.backward(grad)
            assert torch.equal(x.grad, seeded_dropout(grad.contiguous(), 0.3, key, offset=offset)), (seed, grad_name)
        key, offset = _drawn_stream("cuda")
        with torch.no_grad():
            y = module(x)
        assert y.grad_fn is None and torch.equal(y, seeded_dropout(x.detach(), 0.3, key, offset=offset))
    # From a stream class's second compiled launch on; back at (5, 0), from the first call.
    assert all(hot_calls.values()) and hot_calls[5, 0] >= 5, f"hot calls per (seed, start): {hot_calls}"


@pytest.mark.parametrize("name", ["seeded", "variational"])
def test_compiled_autograd_gives_the_forwards_mask_to_backward(name, device, generator):
    """Compiled autograd traces backward: repeat calls (on a GPU, the native hot path with its C++ node)
    must then give gradients with the forward's mask, as nn.Dropout does. On the CPU there is no hot
    path: there it checks the general path under compiled autograd only."""
    from torch._dynamo import compiled_autograd

    make, shape = MODULES[name]
    module = make()
    x = random_input(shape, torch.float32, device, generator).requires_grad_(True)
    weights = random_input(shape, torch.float32, device, generator)
    for _ in range(3):  # repeat calls first: the hot path keeps their launches
        (module(x) * weights).sum().backward()
    x.grad = None
    with compiled_autograd._enable(torch.compile(backend="aot_eager", fullgraph=True)):
        y = module(x)
        (y * weights).sum().backward()
    kept = y != 0
    assert 0 < kept.sum() < kept.numel()
    torch.testing.assert_close(x.grad, torch.where(kept, weights * 2, 0.0), rtol=1e-6, atol=0)


def test_compiled_autograd_on_follows_torchs_switch():
    """The hot path asks compiled_autograd_on() before a repeat call (the test above reaches that only on a
    GPU): on inside compiled_autograd._enable, off outside it and inside _disable."""
    from torch._dynamo import compiled_autograd

    from dropbench.kernels.hot_path import compiled_autograd_on

    assert not compiled_autograd_on()
    with compiled_autograd._enable(torch.compile(backend="eager")):
        assert compiled_autograd_on()
        with compiled_autograd._disable():
            assert not compiled_autograd_on()
    assert not compiled_autograd_on()


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["seeded", "variational"])
def test_repeat_calls_on_a_side_stream_launch_on_it(name, generator):
    """The kept launches (native and Python) go to the current stream: on a side stream whose input and
    gradient arrive late (a sleep queued before the copies that fill them), forward and backward still see
    them. A launch on another stream would read the buffers before the copies land."""
    make, shape = MODULES[name]
    module = make()
    p = module.p
    x = random_input(shape, torch.float32, "cuda", generator).requires_grad_(True)
    for _ in range(3):  # repeat calls first: the hot path keeps their launches
        module(x).sum().backward()
    late_x, late_grad = (random_input(shape, torch.float32, "cuda", generator) for _ in range(2))
    grad = torch.zeros_like(late_grad)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        torch.cuda._sleep(20_000_000)  # about 10 ms of GPU cycles before x is filled
        with torch.no_grad():
            x.copy_(late_x)
        x.grad = None
        y = module(x)
        torch.cuda._sleep(20_000_000)
        grad.copy_(late_grad)
        y.backward(grad)
    torch.cuda.current_stream().wait_stream(side)
    torch.cuda.synchronize()
    # The hot path's nodes (variational's is native only: without the extension it is the general path's).
    hot_nodes = ("NativeDropoutBackward",) if name == "variational" else ("HotElementDropoutBackward",
                                                                           "NativeDropoutBackward")
    assert y.grad_fn.name() in hot_nodes or (name == "variational" and native.extension() is None), y.grad_fn.name()
    kept = y != 0
    assert 0 < kept.sum() < kept.numel()
    torch.testing.assert_close(y, torch.where(kept, late_x / (1 - p), 0.0), rtol=1e-6, atol=0)
    torch.testing.assert_close(x.grad, torch.where(kept, late_grad / (1 - p), 0.0), rtol=1e-6, atol=0)
