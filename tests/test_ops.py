"""The other torch.nn.functional dropouts, seeded: dropout_, dropout1d/2d/3d, feature_dropout,
alpha_dropout and feature_alpha_dropout, against PyTorch's semantics and kernels.reference."""

import inspect
import math
import warnings

import pytest
import torch
import torch.nn.functional as F
import triton.language as tl
from helpers import SIGMAS, assert_dropout_values, keep_fraction_bound, random_input
from test_element import dtypes_for, kept, saved_bytes

from dropbench import kernels
from dropbench.baselines import eager as eager_ops
from dropbench.bench import catalogue
from dropbench.kernels import alpha, reference, variational

SEED = 0x5EED_0F_C4A77E1

#: (tolerance relative to the value, absolute floor) of alpha dropout's values against the fp64
#: reference: the kernel computes x * A + B in fp32 (fp64 for fp64), values are O(1).
ALPHA_TOL = {
    torch.float16: (2e-3, 2e-3), torch.bfloat16: (1.6e-2, 1.6e-2),
    torch.float32: (1e-6, 1e-6), torch.float64: (1e-14, 1e-14),
}
#: Our alpha constants against the ones PyTorch's output shows (fp64): a few roundings apart.
CONSTANT_RTOL = 1e-14

CHANNEL_OPS = {
    "dropout1d": (kernels.dropout1d, F.dropout1d),
    "dropout2d": (kernels.dropout2d, F.dropout2d),
    "dropout3d": (kernels.dropout3d, F.dropout3d),
    "feature_dropout": (kernels.feature_dropout, lambda x, p, training: torch.feature_dropout(x, p, training)),
}

#: (op, input shape, whether PyTorch treats it as unbatched: a batch of one is added).
CHANNEL_CASES = [
    pytest.param("dropout1d", (5, 24, 7), False, id="dropout1d-NCL"),
    pytest.param("dropout1d", (48, 7), True, id="dropout1d-CL"),
    pytest.param("dropout2d", (5, 12, 3, 4), False, id="dropout2d-NCHW"),
    pytest.param("dropout2d", (3, 40, 7, 7), False, id="dropout2d-7x7-runs"),
    pytest.param("dropout3d", (3, 8, 2, 3, 4), False, id="dropout3d-NCDHW"),
    pytest.param("dropout3d", (24, 2, 3, 4), True, id="dropout3d-CDHW"),
    pytest.param("feature_dropout", (5, 12, 7), False, id="feature-3d"),
    pytest.param("feature_dropout", (3, 8, 2, 3, 2, 2), False, id="feature-6d"),
]


def channel_keep(shape, p, unbatched):
    """The expected keep mask, expanded to `shape`: the element mask of (N, C), or of (C,)."""
    if unbatched:
        return reference.channel_keep_mask((1,) + tuple(shape), p, SEED).squeeze(0).expand(shape)
    return reference.channel_keep_mask(shape, p, SEED).expand(shape)


def quietly(fn, *args, **kwargs):
    """fn(*args) with the deprecation warnings dropout2d/3d give for some ranks silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def alpha_cpu(y: torch.Tensor) -> torch.Tensor:
    return y.detach().cpu()


def constant_along(mask: torch.Tensor) -> list[bool]:
    """For each dim, whether the mask is the same at every position along it."""
    return [bool(torch.equal(mask, mask.narrow(d, 0, 1).expand_as(mask))) for d in range(mask.dim())]


# ---- channel dropout ----------------------------------------------------------------------------


@pytest.mark.parametrize("op, shape, unbatched", CHANNEL_CASES)
@pytest.mark.parametrize("p", [0.2, 0.7])
def test_channel_mask_is_bit_exact_with_reference(op, shape, unbatched, p, device, generator):
    x = random_input(shape, torch.float32, device, generator)
    y = CHANNEL_OPS[op][0](x, p, SEED)
    keep = channel_keep(shape, p, unbatched)
    assert torch.equal(kept(y), keep), f"{op} mask differs from the element mask of the leading dims for {shape}"
    assert_dropout_values(y, x, keep, p, f"({op} {shape}, p={p})")


@pytest.mark.parametrize(
    "op, shape",
    [
        ("dropout1d", (6, 40, 5)), ("dropout1d", (40, 5)), ("dropout2d", (6, 20, 3, 4)),
        ("dropout2d", (6, 40, 5)), ("dropout2d", (24, 40)), ("dropout2d", (4, 20, 2, 3, 2)),
        ("dropout3d", (4, 20, 2, 3, 2)), ("dropout3d", (20, 2, 3, 2)), ("dropout3d", (40, 5, 6)),
        ("dropout3d", (40, 6)), ("dropout3d", (40,)), ("feature_dropout", (24, 40)),
    ],
)
def test_mask_is_shared_along_the_same_dims_as_pytorch(op, shape, device):
    # Includes the ranks PyTorch only warns about: whatever PyTorch does there, the seeded op does too.
    ours, theirs = CHANNEL_OPS[op]
    x = torch.ones(shape, device=device)
    mask = kept(quietly(ours, x, 0.5, SEED))
    torch_mask = kept(quietly(theirs, x, 0.5, training=True))
    assert constant_along(mask) == constant_along(torch_mask), (
        f"{op} on {shape}: shared dims {constant_along(mask)}, PyTorch shares {constant_along(torch_mask)}"
    )


def test_channel_mask_equals_the_element_mask_of_n_c(device, generator):
    x = random_input((6, 10, 3, 5), torch.float32, device, generator)
    element = kept(kernels.seeded_dropout(torch.ones(6, 10, device=device), 0.5, SEED))
    assert torch.equal(kept(kernels.dropout2d(x, 0.5, SEED)), element[:, :, None, None].expand(x.shape))


def test_dropout2d_reads_3d_input_as_batched_and_warns_like_pytorch(device, generator):
    x = random_input((6, 10, 7), torch.float32, device, generator)
    with warnings.catch_warnings(record=True) as ours:
        warnings.simplefilter("always")
        y = kernels.dropout2d(x, 0.5, SEED)
    with warnings.catch_warnings(record=True) as theirs:
        warnings.simplefilter("always")
        F.dropout2d(x, 0.5, training=True)
    assert [str(w.message) for w in ours] == [str(w.message) for w in theirs], "warnings differ from PyTorch's"
    assert all(w.filename == __file__ for w in ours), "the warning must point at the caller"
    assert torch.equal(kept(y), channel_keep(x.shape, 0.5, unbatched=False)), "3-D input must be (N, C, L)"


@pytest.mark.parametrize("op, shape", [("dropout2d", (4, 6)), ("dropout2d", (2, 3, 2, 2, 2)), ("dropout3d", (3, 4, 5))])
@pytest.mark.parametrize("training", [True, False])
def test_deprecated_ranks_warn_like_pytorch(op, shape, training, device):
    ours, theirs = CHANNEL_OPS[op]
    x = torch.ones(shape, device=device)
    with warnings.catch_warnings(record=True) as our_warnings:
        warnings.simplefilter("always")
        ours(x, 0.5, SEED, training=training)
    with warnings.catch_warnings(record=True) as torch_warnings:
        warnings.simplefilter("always")
        theirs(x, 0.5, training=training)
    assert [str(w.message) for w in our_warnings] == [str(w.message) for w in torch_warnings]


@pytest.mark.parametrize(
    "op, shape, training",
    [("dropout1d", (8,), True), ("dropout1d", (2, 3, 4, 5), True), ("dropout1d", (2, 3, 4, 5), False),
     ("dropout2d", (8,), True), ("dropout3d", (), True), ("feature_dropout", (8,), True)],
)
def test_wrong_rank_raises_like_pytorch(op, shape, training, device):
    ours, theirs = CHANNEL_OPS[op]
    x = torch.ones(shape, device=device)
    with pytest.raises(Exception) as torch_error:
        quietly(theirs, x, 0.5, training=training)
    with pytest.raises(torch_error.type) as our_error:
        quietly(ours, x, 0.5, SEED, training=training)
    assert str(our_error.value) == str(torch_error.value), "the message differs from PyTorch's"


def test_feature_dropout_rank_is_checked_only_when_a_mask_is_drawn(device):
    # As PyTorch: eval, p = 0 and p = 1 never look at the rank.
    x = torch.ones(8, device=device)
    assert kernels.feature_dropout(x, 0.5, SEED, training=False) is x
    assert kernels.feature_dropout(x, 0.0, SEED) is x
    assert not kernels.feature_dropout(x, 1.0, SEED).any()


ALPHA_KERNELS = (alpha._alpha_rows_kernel, alpha._alpha_locked_kernel, alpha._alpha_runs_kernel)
MAP_BITS = ("a_bits", "b_bits", "dropped_bits")


@pytest.mark.parametrize("kernel", ALPHA_KERNELS, ids=lambda kernel: kernel.__name__)
def test_alpha_map_bits_are_typed_int64(kernel):
    """Typed by value, backward's 0 bits would be int32 (see the GPU test below)."""
    parameters = inspect.signature(kernel.fn).parameters
    assert [parameters[name].annotation for name in MAP_BITS] == [tl.int64] * 3


def compiled_binaries(kernel) -> list:
    """Every binary Triton compiled for a @triton.jit kernel, on every device."""
    return [compiled for kernel_cache, *_ in kernel.device_caches.values() for compiled in kernel_cache.values()]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="reads the compiled GPU binaries: needs a GPU")
@pytest.mark.parametrize(
    ("op", "shape", "kernel"),
    [
        ("alpha_dropout", (64, 256), alpha._alpha_rows_kernel),
        ("feature_alpha_dropout", (4, 8, 32, 32), alpha._alpha_runs_kernel),
        ("feature_alpha_dropout", (4, 8, 3, 3), alpha._alpha_locked_kernel),
    ],
)
def test_alpha_backward_runs_the_forward_binary(op, shape, kernel, generator):
    """Backward compiles no binary of its own, and every binary types the map's bits int64: typed
    int32 (backward's 0 bits), backward compiled a second binary, which ran fp64 feature alpha
    backward at 69% of copy."""
    x = random_input(shape, torch.float64, "cuda", generator).requires_grad_(True)
    y = getattr(kernels, op)(x, 0.3, SEED)
    compiled = len(compiled_binaries(kernel))
    assert compiled, f"{op} {shape} did not launch {kernel.__name__}"
    y.backward(random_input(shape, torch.float64, "cuda", generator))
    binaries = compiled_binaries(kernel)
    assert len(binaries) == compiled, "backward compiled a binary of its own"
    for binary in binaries:
        assert [binary.src.signature[name] for name in MAP_BITS] == ["i64"] * 3, binary.src.signature


@pytest.mark.parametrize(
    "make_view",
    [
        pytest.param(lambda t: t.to(memory_format=torch.channels_last), id="channels-last"),
        pytest.param(lambda t: t.to(memory_format=torch.channels_last)[1:3], id="channels-last-batch-slice"),
        pytest.param(lambda t: t[:, :, 1:, :], id="spatial-slice"),
        pytest.param(lambda t: t.transpose(2, 3), id="spatial-transpose"),
    ],
)
def test_channel_layouts_give_the_same_output(make_view, device, generator):
    base = random_input((4, 12, 5, 6), torch.float32, device, generator)
    x = make_view(base)
    y = kernels.dropout2d(x, 0.5, SEED)
    expected = kernels.dropout2d(x.contiguous(), 0.5, SEED)
    assert torch.equal(y, expected), "the output depends on x's strides"


def test_channels_last_output_stays_channels_last(device, generator):
    x = random_input((4, 12, 5, 6), torch.float32, device, generator).to(memory_format=torch.channels_last)
    y = kernels.dropout2d(x, 0.5, SEED)
    assert y.is_contiguous(memory_format=torch.channels_last), "channels-last input should not come out transposed"


def test_channel_values_per_dtype(device, generator):
    for dtype in dtypes_for(device):
        x = random_input((4, 16, 3, 5), dtype, device, generator)
        y = kernels.dropout2d(x, 0.3, SEED)
        assert y.dtype == dtype and y.shape == x.shape
        keep = channel_keep(x.shape, 0.3, unbatched=False)
        assert torch.equal(kept(y), keep), f"mask differs in {dtype}"
        assert_dropout_values(y, x, keep, 0.3, f"({dtype})")


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_channel_keep_fraction_inside_binomial_bound(p, device, generator):
    x = random_input((64, 256, 2), torch.float32, device, generator)
    channels = kept(kernels.dropout1d(x, p, generator.initial_seed()))[..., 0]
    fraction = channels.double().mean().item()
    bound = keep_fraction_bound(channels.numel(), p)
    assert abs(fraction - (1 - p)) < bound, f"kept {fraction:.4f} of channels, expected {1 - p} +- {bound:.4f}"


def test_channel_gradient_is_grad_out_times_keep_times_scale(device, generator):
    x = random_input((3, 8, 4, 5), torch.float64, device, generator).requires_grad_(True)
    grad_out = random_input(x.shape, torch.float64, device, generator)
    (grad,) = torch.autograd.grad(kernels.dropout2d(x, 0.25, SEED), x, grad_out)
    keep = channel_keep(x.shape, 0.25, unbatched=False).to(device)
    torch.testing.assert_close(grad, torch.where(keep, grad_out / 0.75, 0.0), rtol=1e-14, atol=0)


def test_channel_gradcheck_fp64_channels_last(device, generator):
    x = random_input((2, 3, 2, 3), torch.float64, device, generator).to(memory_format=torch.channels_last)
    assert torch.autograd.gradcheck(lambda t: kernels.dropout2d(t, 0.4, SEED), (x.requires_grad_(True),))


@pytest.mark.parametrize("op", list(CHANNEL_OPS))
def test_channel_ops_save_nothing_for_backward(op, device, generator):
    x = random_input((4, 8, 3, 5, 2) if op == "dropout3d" else (4, 8, 15), torch.float32, device, generator)
    x.requires_grad_(True)
    assert saved_bytes(lambda: quietly(CHANNEL_OPS[op][0], x, 0.5, SEED)) == 0


@pytest.mark.parametrize("op", list(CHANNEL_OPS))
def test_channel_eval_p_zero_and_p_one(op, device, generator):
    shape = {"dropout2d": (3, 4, 2, 3), "dropout3d": (3, 4, 2, 3, 2)}.get(op, (3, 4, 6))
    x = random_input(shape, torch.float32, device, generator)
    fn = CHANNEL_OPS[op][0]
    assert fn(x, 0.5, SEED, training=False) is x
    assert fn(x, 0.0, SEED) is x
    x[0, 0, 0] = math.inf
    x.requires_grad_(True)
    y = fn(x, 1.0, SEED)
    (grad,) = torch.autograd.grad(y, x, torch.ones_like(y))
    assert not y.any() and not grad.any(), "p = 1 must give exact zeros and zero gradients, also for inf"


# ---- alpha dropout ------------------------------------------------------------------------------


def test_alpha_prime_is_selu_negative_saturation():
    assert alpha.ALPHA_PRIME == -alpha.SELU_SCALE * alpha.SELU_ALPHA == reference.ALPHA_PRIME
    saturation = F.selu(torch.tensor(-1e3, dtype=torch.float64)).item()
    assert math.isclose(saturation, alpha.ALPHA_PRIME, rel_tol=CONSTANT_RTOL), "a' is not SELU's saturation"


@pytest.mark.parametrize("p", [0.05, 0.3, 0.5, 0.9])
def test_alpha_constants_equal_pytorchs(p):
    # F.alpha_dropout of a constant x takes exactly two values: x * A + B (kept) and A * a' + B (dropped).
    x = torch.full((4096,), 0.75, dtype=torch.float64)
    dropped_torch, kept_torch = torch.unique(F.alpha_dropout(x, p, training=True)).tolist()
    a, b, dropped = alpha.alpha_constants(p)
    ref_a, ref_b = reference.alpha_affine(p)
    assert math.isclose(0.75 * a + b, kept_torch, rel_tol=CONSTANT_RTOL), "kept value differs from PyTorch's"
    assert math.isclose(dropped, dropped_torch, rel_tol=CONSTANT_RTOL), "dropped value differs from PyTorch's"
    assert math.isclose(a, ref_a, rel_tol=CONSTANT_RTOL) and math.isclose(b, ref_b, rel_tol=CONSTANT_RTOL)


@pytest.mark.parametrize("shape", [(7,), (3, 50), (5, 4, 13), (2, 3, 4, 5)])
@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_alpha_values_follow_the_reference(shape, p, device, generator):
    x = random_input(shape, torch.float32, device, generator)
    rtol, atol = ALPHA_TOL[torch.float32]
    torch.testing.assert_close(alpha_cpu(kernels.alpha_dropout(x, p, SEED)), reference.alpha_dropout(x, p, SEED),
                               rtol=rtol, atol=atol)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_alpha_mask_is_seeded_dropouts_mask(p, device, generator):
    # The gradient is exactly A where kept and 0 where dropped, so grad != 0 is the mask bit for bit.
    x = random_input((6, 70), torch.float32, device, generator).requires_grad_(True)
    y = kernels.alpha_dropout(x, p, SEED)
    (grad,) = torch.autograd.grad(y, x, torch.ones_like(y))
    assert torch.equal(kept(grad), reference.keep_mask(x.shape, p, SEED)), "mask differs from the contract"
    assert torch.equal(kept(grad), kept(kernels.seeded_dropout(x.detach(), p, SEED))), "mask differs from dropout's"


def test_alpha_values_per_dtype(device, generator):
    for dtype in dtypes_for(device):
        x = random_input((32, 48), dtype, device, generator)
        y = kernels.alpha_dropout(x, 0.3, SEED)
        assert y.dtype == dtype and y.shape == x.shape
        rtol, atol = ALPHA_TOL[dtype]
        torch.testing.assert_close(alpha_cpu(y), reference.alpha_dropout(x, 0.3, SEED), rtol=rtol, atol=atol,
                                   msg=lambda m: f"alpha dropout values wrong in {dtype}: {m}")


def test_alpha_dropped_value_is_exact_even_for_inf_and_nan(device, generator):
    x = random_input((8, 64), torch.float64, device, generator)
    keep = reference.keep_mask(x.shape, 0.5, SEED).to(device)
    x = torch.where(keep, x, torch.where(torch.rand(x.shape, generator=generator).to(device) < 0.5, math.inf, math.nan))
    y = kernels.alpha_dropout(x, 0.5, SEED)
    dropped = alpha.alpha_constants(0.5)[2]
    assert torch.all(y[~keep] == dropped), "dropped elements must be A * a' + B whatever x holds"
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("p", [0.1, 0.5])
@pytest.mark.parametrize("op", ["alpha_dropout", "feature_alpha_dropout"])
def test_alpha_keeps_mean_zero_and_variance_one_for_standard_normal_input(op, p, device, generator):
    # Exactly: E[y] = A * p * a' + B = 0, Var[y] = A**2 * (1 - p) * (1 + p * a'**2) = 1. The bounds are
    # SIGMAS standard errors of the sample mean and variance, from the sample's own moments.
    x = random_input((256, 256), torch.float32, device, generator)
    if op == "alpha_dropout":
        outputs = {"seeded": kernels.alpha_dropout(x, p, generator.initial_seed()),
                   "torch": F.alpha_dropout(x, p, training=True)}
    else:  # many channels of 4 positions: the statistics count 16384 channel decisions
        x = x.reshape(128, 128, 4)
        outputs = {"seeded": kernels.feature_alpha_dropout(x, p, generator.initial_seed()),
                   "torch": F.feature_alpha_dropout(x, p, training=True)}
    for name, y in outputs.items():
        y = y.double().cpu().flatten()
        n = y.numel() if op == "alpha_dropout" else y.numel() // 4
        mean, var = y.mean().item(), y.var().item()
        fourth = ((y - mean) ** 4).mean().item()
        mean_bound = SIGMAS * math.sqrt(var / n)
        var_bound = SIGMAS * math.sqrt((fourth - var**2) / n)
        assert abs(mean) < mean_bound, f"{name} {op} p={p}: mean {mean:.4f}, expected 0 +- {mean_bound:.4f}"
        assert abs(var - 1) < var_bound, f"{name} {op} p={p}: variance {var:.4f}, expected 1 +- {var_bound:.4f}"


def test_alpha_gradient_is_grad_out_times_a_where_kept(device, generator):
    x = random_input((16, 40), torch.float64, device, generator).requires_grad_(True)
    grad_out = random_input(x.shape, torch.float64, device, generator)
    (grad,) = torch.autograd.grad(kernels.alpha_dropout(x, 0.25, SEED), x, grad_out)
    keep = reference.keep_mask(x.shape, 0.25, SEED).to(device)
    a = alpha.alpha_constants(0.25)[0]
    torch.testing.assert_close(grad, torch.where(keep, grad_out * a, 0.0), rtol=1e-15, atol=0)


@pytest.mark.parametrize("op", ["alpha_dropout", "feature_alpha_dropout"])
def test_alpha_gradcheck_fp64_and_nothing_saved(op, device, generator):
    fn = getattr(kernels, op)
    x = random_input((3, 4, 5), torch.float64, device, generator).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: fn(t, 0.4, SEED), (x,))
    assert saved_bytes(lambda: fn(x, 0.4, SEED)) == 0


@pytest.mark.parametrize(
    "make_view",
    [
        pytest.param(lambda t: t.t(), id="transpose"),
        pytest.param(lambda t: t[:, :24], id="row-slice-cols-multiple-of-4"),
        pytest.param(lambda t: t[:, 1:24], id="row-slice-odd"),
        pytest.param(lambda t: t.reshape(6, 8, 64).permute(2, 0, 1), id="permute-3d"),
    ],
)
def test_alpha_strided_inputs_use_logical_order(make_view, device, generator):
    x = make_view(random_input((48, 64), torch.float32, device, generator))
    rtol, atol = ALPHA_TOL[torch.float32]
    torch.testing.assert_close(alpha_cpu(kernels.alpha_dropout(x, 0.5, SEED)), reference.alpha_dropout(x, 0.5, SEED),
                               rtol=rtol, atol=atol)


@pytest.mark.parametrize(
    "shape, make_view",
    [
        pytest.param((5, 12, 7), lambda t: t, id="NCL"),
        pytest.param((5, 12, 7, 7), lambda t: t, id="7x7-maps-runs-kernel"),
        pytest.param((4, 12, 3, 5), lambda t: t.to(memory_format=torch.channels_last), id="channels-last"),
        pytest.param((4, 12, 3, 5), lambda t: t[:, :, 1:], id="spatial-slice"),
        pytest.param((24, 40), lambda t: t, id="2d-is-element"),
        pytest.param((3, 8, 2, 1, 1), lambda t: t, id="one-position-per-channel"),
    ],
)
def test_feature_alpha_follows_the_reference(shape, make_view, device, generator):
    x = make_view(random_input(shape, torch.float32, device, generator))
    y = kernels.feature_alpha_dropout(x, 0.5, SEED)
    rtol, atol = ALPHA_TOL[torch.float32]
    torch.testing.assert_close(alpha_cpu(y), reference.feature_alpha_dropout(x, 0.5, SEED), rtol=rtol, atol=atol)


@pytest.mark.parametrize("shape, kernel", [((6, 40, 7, 7), "BLOCK="), ((6, 40, 3, 3), "BLOCK_D=")])
def test_channel_ops_take_the_runs_kernel_for_contiguous_maps_of_17_or_more(shape, kernel, device, generator):
    x = random_input(shape, torch.float32, device, generator)
    kernels.dropout2d(x, 0.5, SEED)
    assert variational.chosen_config().startswith(kernel), f"dropout2d of {shape}: {variational.chosen_config()}"
    kernels.feature_alpha_dropout(x, 0.5, SEED)
    assert alpha.chosen_feature_config().startswith(kernel), f"feature_alpha of {shape}"


def test_feature_alpha_mask_is_dropout2ds_mask_and_gradient_is_a_where_kept(device, generator):
    x = random_input((4, 10, 3, 5), torch.float64, device, generator).requires_grad_(True)
    grad_out = random_input(x.shape, torch.float64, device, generator)
    (grad,) = torch.autograd.grad(kernels.feature_alpha_dropout(x, 0.3, SEED), x, grad_out)
    keep = kept(kernels.dropout2d(x.detach(), 0.3, SEED)).to(device)
    torch.testing.assert_close(grad, torch.where(keep, grad_out * alpha.alpha_constants(0.3)[0], 0.0),
                               rtol=1e-15, atol=0)


@pytest.mark.parametrize("op", ["alpha_dropout", "feature_alpha_dropout"])
def test_alpha_eval_p_zero_and_p_one(op, device, generator):
    fn = getattr(kernels, op)
    x = random_input((3, 4, 6), torch.float32, device, generator)
    assert fn(x, 0.5, SEED, training=False) is x
    assert fn(x, 0.0, SEED) is x
    x[0, 0, 0] = math.inf
    x.requires_grad_(True)
    y = fn(x, 1.0, SEED)
    (grad,) = torch.autograd.grad(y, x, torch.ones_like(y))
    assert not y.any() and not grad.any(), "p = 1 must give zeros (as PyTorch) and zero gradients"


def test_feature_alpha_needs_two_dims_like_pytorch(device):
    x = torch.ones(8, device=device)
    with pytest.raises(RuntimeError) as torch_error:
        F.feature_alpha_dropout(x, 0.5, training=True)
    with pytest.raises(RuntimeError) as our_error:
        kernels.feature_alpha_dropout(x, 0.5, SEED)
    assert str(our_error.value) == str(torch_error.value)


@pytest.mark.parametrize("op", ["alpha_dropout", "feature_alpha_dropout", "dropout2d"])
def test_bad_arguments_are_named(op, device):
    fn = getattr(kernels, op)
    x = torch.ones(2, 3, 4, device=device)
    with pytest.raises(ValueError, match="p must be in"):
        fn(x, 1.5, SEED)
    with pytest.raises(ValueError, match="seed must be in"):
        fn(x, 0.5, -1)
    with pytest.raises(TypeError, match="supported dtypes"):
        fn(x.long(), 0.5, SEED)


def test_alpha_and_channel_ops_trace_without_graph_break(device, generator):
    torch._dynamo.reset()
    x = random_input((4, 8, 6), torch.float32, device, generator)

    def block(t):
        return kernels.feature_alpha_dropout(kernels.alpha_dropout(kernels.dropout1d(t, 0.5, SEED), 0.2, SEED), 0.3, 7)

    compiled = torch.compile(block, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(x), block(x), rtol=0, atol=0)


@pytest.mark.parametrize("seed", [0, 2**63 - 1, 2**63 + 5, 2**64 - 1])
def test_every_seed_in_range_follows_the_reference(seed, device, generator):
    # Seeds >= 2**63 travel as negative int64 patterns: every path must pass the pattern, not re-check it.
    x = random_input((6, 8, 3), torch.float64, device, generator)
    batched = reference.channel_keep_mask(x.shape, 0.5, seed).expand(x.shape)
    assert torch.equal(kept(kernels.dropout1d(x, 0.5, seed)), batched)
    unbatched = kernels.dropout1d(x[0], 0.5, seed)
    assert torch.equal(kept(unbatched), reference.keep_mask((8,), 0.5, seed)[:, None].expand(8, 3))
    assert torch.equal(kept(kernels.feature_dropout(x[..., :1], 0.5, seed)), reference.keep_mask((6, 8, 1), 0.5, seed))
    rtol, atol = ALPHA_TOL[torch.float64]
    for fn, ref in [(kernels.alpha_dropout, reference.alpha_dropout),
                    (kernels.feature_alpha_dropout, reference.feature_alpha_dropout)]:
        torch.testing.assert_close(alpha_cpu(fn(x, 0.5, seed)), ref(x, 0.5, seed), rtol=rtol, atol=atol)
    y = x.clone()
    assert torch.equal(kernels.dropout_(y, 0.5, seed), kernels.seeded_dropout(x, 0.5, seed))


# ---- in-place dropout_ --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make_view",
    [
        pytest.param(lambda t: t, id="contiguous"),
        pytest.param(lambda t: t[:, :24], id="row-slice"),
        pytest.param(lambda t: t.t(), id="transpose"),
        pytest.param(lambda t: t[::2, 1:30], id="step-and-odd-slice"),
    ],
)
def test_dropout_inplace_overwrites_x_with_seeded_dropouts_output(make_view, device, generator):
    base = random_input((48, 64), torch.float32, device, generator)
    x = make_view(base)
    expected = kernels.seeded_dropout(x.clone(), 0.5, SEED)
    pointer, untouched = x.data_ptr(), base.clone()
    result = kernels.dropout_(x, 0.5, SEED)
    assert result is x and x.data_ptr() == pointer, "dropout_ must return x and write into its storage"
    assert torch.equal(x, expected), "in-place values differ from seeded_dropout's"
    outside = torch.ones_like(base, dtype=torch.bool)
    make_view(outside).fill_(False)
    assert torch.equal(base[outside], untouched[outside]), "dropout_ wrote outside the view"


def test_dropout_inplace_on_overlapping_x_raises_like_pytorch(device):
    x = torch.ones(1, 8, device=device).expand(3, 8)
    with pytest.raises(RuntimeError) as torch_error:
        F.dropout(x, 0.5, training=True, inplace=True)
    with pytest.raises(RuntimeError) as our_error:
        kernels.dropout_(x, 0.5, SEED)
    assert str(our_error.value) == str(torch_error.value)


@pytest.mark.parametrize("view", [False, True], ids=["leaf", "view-of-leaf"])
def test_dropout_inplace_on_a_leaf_requiring_grad_raises_like_pytorch_before_writing(view, device, generator):
    leaf = random_input((4, 8), torch.float32, device, generator).requires_grad_(True)
    x = leaf[:2] if view else leaf
    before = leaf.detach().clone()
    with pytest.raises(RuntimeError) as torch_error:
        F.dropout(x, 0.5, training=True, inplace=True)
    with pytest.raises(RuntimeError) as our_error:
        kernels.dropout_(x, 0.5, SEED)
    assert str(our_error.value) == str(torch_error.value)
    assert torch.equal(leaf.detach(), before), "x was modified before the error"


def test_dropout_inplace_on_a_leaf_without_grad_mode_just_writes(device, generator):
    x = random_input((4, 8), torch.float32, device, generator).requires_grad_(True)
    expected = kernels.seeded_dropout(x.detach(), 0.5, SEED)
    with torch.no_grad():
        kernels.dropout_(x, 0.5, SEED)
    assert torch.equal(x.detach(), expected)


def test_dropout_inplace_on_a_non_leaf_is_an_in_place_op_with_autograd(device, generator):
    leaf = random_input((16, 40), torch.float64, device, generator).requires_grad_(True)
    grad_out = random_input(leaf.shape, torch.float64, device, generator)
    x = leaf * 3
    version = x._version
    y = kernels.dropout_(x, 0.25, SEED)
    assert y is x and x._version > version, "the in-place write must bump x's version counter"
    (grad,) = torch.autograd.grad(y, leaf, grad_out)
    keep = reference.keep_mask(leaf.shape, 0.25, SEED).to(device)
    torch.testing.assert_close(grad, torch.where(keep, grad_out * 3 / 0.75, 0.0), rtol=1e-14, atol=0)


def test_dropout_inplace_on_a_view_of_a_non_leaf_flows_into_the_base(device, generator):
    leaf = random_input((4, 16), torch.float64, device, generator).requires_grad_(True)
    base = leaf * 1
    kernels.dropout_(base[:, :8], 0.5, SEED)
    (grad,) = torch.autograd.grad(base, leaf, torch.ones_like(base))
    keep = reference.keep_mask((4, 8), 0.5, SEED).to(device)
    assert torch.equal(grad[:, :8], torch.where(keep, 2.0, 0.0)), "the view's part must get grad * keep / (1 - p)"
    assert torch.equal(grad[:, 8:], torch.ones(4, 8, dtype=torch.float64, device=device))


def test_dropout_inplace_of_a_tensor_saved_for_backward_fails_at_backward_like_pytorch(device, generator):
    leaf = random_input((4, 8), torch.float32, device, generator).requires_grad_(True)
    x = leaf * 1
    y = x.sin()  # sin saves x
    kernels.dropout_(x, 0.5, SEED)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()


def test_dropout_inplace_eval_p_zero_and_p_one(device, generator):
    leaf = random_input((4, 8), torch.float32, device, generator).requires_grad_(True)
    before = leaf.detach().clone()
    assert kernels.dropout_(leaf, 0.5, SEED, training=False) is leaf  # no write, so no error (as PyTorch)
    assert kernels.dropout_(leaf, 0.0, SEED) is leaf
    assert torch.equal(leaf.detach(), before)
    x = leaf * 1
    x.detach()[0, 0] = math.inf
    kernels.dropout_(x, 1.0, SEED)
    (grad,) = torch.autograd.grad(x, leaf, torch.ones_like(x))
    assert not x.any() and not grad.any(), "p = 1 must give exact zeros and zero gradients"


def test_dropout_inplace_traces_without_graph_break(device, generator):
    torch._dynamo.reset()

    def step(t):
        kernels.dropout_(t, 0.5, SEED)
        return t

    x = random_input((8, 40), torch.float32, device, generator)
    compiled_x, eager_x = x.clone(), x.clone()
    torch.compile(step, fullgraph=True, backend="aot_eager")(compiled_x)
    step(eager_x)
    assert torch.equal(compiled_x, eager_x), "the compiled in-place op did not write x as eager does"


# ---- baselines and catalogue --------------------------------------------------------------------

NEW_OPS = ["dropout_inplace", "dropout1d", "dropout2d", "dropout3d", "feature_dropout", "alpha_dropout",
           "feature_alpha_dropout"]


def test_catalogue_runs_every_new_op_on_every_backend_without_its_own_functions():
    for op in NEW_OPS:
        assert [backend for name, backend in catalogue.pairs() if name == op] == [
            "triton", "dropin", "eager", "compile", "compile_fallback"], op
        assert catalogue.implementation(op, "triton").bit_exact and not catalogue.implementation(op, "eager").bit_exact


@pytest.mark.parametrize("op", NEW_OPS)
def test_catalogue_triton_and_eager_share_the_mask_structure(op, device, generator):
    shape = {"dropout1d": (4, 24, 15), "dropout3d": (4, 24, 3, 5, 2)}.get(op, (4, 24, 3, 5))
    # Positive x: kept values are positive for every op (x * A + B > 0 too), dropped ones 0 or A * a' + B < 0.
    x = random_input(shape, torch.float32, device, generator).abs() + 0.5
    masks = {
        backend: (catalogue.implementation(op, backend)(x.clone(), 0.5, SEED, 0) > 0).cpu()
        for backend in ("triton", "eager")
    }
    assert constant_along(masks["triton"]) == constant_along(masks["eager"]), f"{op}: mask structure differs"


def test_eager_inplace_baseline_writes_into_x(device, generator):
    x = random_input((8, 16), torch.float32, device, generator)
    assert eager_ops.dropout_inplace(x, 0.5) is x
    assert 0 < kept(x).double().mean() < 1
