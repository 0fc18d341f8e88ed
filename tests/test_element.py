"""seeded_dropout: the mask contract bit-exactly, values, statistics, layouts, autograd, errors."""

import math

import pytest
import torch
import triton
from helpers import (
    assert_dropout_values,
    correlation,
    correlation_bound,
    keep_fraction_bound,
    random_input,
)

from dropbench.kernels import element, layout, reference, seeded_dropout, variational, variational_dropout
from dropbench.kernels.contract import Stream
from dropbench.kernels.element import element_forward
from dropbench.kernels.stream import SCALAR

FLOAT_DTYPES = [torch.float16, torch.float32, torch.float64]
SEED = 0x1234_5678_9ABC


def dtypes_for(device):
    # bf16 comes out as garbage under TRITON_INTERPRET: it is checked on the GPU only.
    return FLOAT_DTYPES + ([torch.bfloat16] if device == "cuda" else [])


def kept(y: torch.Tensor) -> torch.Tensor:
    return (y != 0).cpu()


@pytest.mark.parametrize("shape", [(1,), (7,), (3, 50), (5, 4, 13), (2, 3, 4, 5)])
@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_mask_is_bit_exact_with_reference(shape, p, device, generator):
    x = random_input(shape, torch.float32, device, generator)
    y = seeded_dropout(x, p, SEED)
    expected = reference.keep_mask(shape, p, SEED)
    assert torch.equal(kept(y), expected), f"mask differs from the reference for shape {shape}, p={p}"
    assert_dropout_values(y, x, expected, p, f"(shape {shape}, p={p})")


@pytest.mark.parametrize("seed", [0, 1, 2**31, 2**63 - 1, 2**63 + 5, 2**64 - 1])
def test_every_seed_in_range_follows_the_reference(seed, device, generator):
    x = random_input((4, 33), torch.float32, device, generator)
    assert torch.equal(kept(seeded_dropout(x, 0.5, seed)), reference.keep_mask((4, 33), 0.5, seed))


def test_values_per_dtype(device, generator):
    for dtype in dtypes_for(device):
        x = random_input((64, 64), dtype, device, generator)
        y = seeded_dropout(x, 0.3, SEED)
        assert y.dtype == dtype and y.shape == x.shape
        keep = reference.keep_mask(x.shape, 0.3, SEED)
        assert torch.equal(kept(y), keep), f"mask differs from the reference in {dtype}"
        assert_dropout_values(y, x, keep, 0.3, f"({dtype})")


def test_same_seed_same_output_and_different_seeds_differ(device, generator):
    x = random_input((32, 64), torch.float32, device, generator)
    assert torch.equal(seeded_dropout(x, 0.5, 42), seeded_dropout(x, 0.5, 42))
    assert not torch.equal(kept(seeded_dropout(x, 0.5, 42)), kept(seeded_dropout(x, 0.5, 43)))


@pytest.mark.parametrize("block, warps", [(16, 1), (64, 2), (1024, 4), (4096, 8)])
def test_mask_does_not_depend_on_block_size(block, warps, device, generator):
    x = random_input((3, 1000), torch.float32, device, generator)
    config = triton.Config({"BLOCK": block}, num_warps=warps)
    y = element_forward(x, 0.5, Stream(SCALAR, SEED, 0, None), config=config)
    assert torch.equal(kept(y), reference.keep_mask(x.shape, 0.5, SEED)), f"mask changed with BLOCK={block}"


def test_mask_does_not_depend_on_dtype(device, generator):
    x = random_input((16, 48), torch.float64, device, generator)
    masks = [kept(seeded_dropout(x.to(dtype), 0.5, SEED)) for dtype in dtypes_for(device)]
    for mask in masks[1:]:
        assert torch.equal(mask, masks[0]), "the mask depends on the dtype"


@pytest.mark.parametrize(
    "make_view",
    [
        pytest.param(lambda t: t.t(), id="transpose"),
        pytest.param(lambda t: t[:, ::2], id="column-step"),
        pytest.param(lambda t: t[:, :24], id="row-slice-cols-multiple-of-4"),
        pytest.param(lambda t: t[:, :23], id="row-slice-cols-odd"),
        pytest.param(lambda t: t.reshape(6, 8, 64).permute(2, 0, 1), id="permute-3d"),
        pytest.param(lambda t: t.reshape(2, 3, 2, 4, 64).permute(4, 3, 2, 1, 0), id="permute-5d"),
        pytest.param(lambda t: t[:1, :5].expand(7, 5), id="expanded"),
    ],
)
def test_non_contiguous_inputs_use_logical_order(make_view, device, generator):
    base = random_input((48, 64), torch.float32, device, generator)
    x = make_view(base)
    y = seeded_dropout(x, 0.5, SEED)
    keep = reference.keep_mask(x.shape, 0.5, SEED)
    assert torch.equal(kept(y), keep), "a strided input must get the mask of its logical indices"
    assert_dropout_values(y, x, keep, 0.5, "(strided input)")


def test_int64_index_path_gives_the_same_mask(monkeypatch, device, generator):
    # Tensors over 2**31 elements switch to 64-bit offsets and counters; force that path on a
    # small tensor (the >2**31 tensor itself is exercised on the GPU in test_huge_tensor_tail).
    x = random_input((5, 40), torch.float32, device, generator)
    expected = reference.keep_mask(x.shape, 0.5, SEED)
    monkeypatch.setattr(element, "INT32_LIMIT", 0)
    monkeypatch.setattr(variational, "INT32_LIMIT", 0)
    monkeypatch.setattr(layout, "INT32_LIMIT", 0)
    layout.shared_layout.cache_clear()  # layouts cached before the patch say "not wide"
    assert torch.equal(kept(seeded_dropout(x, 0.5, SEED)), expected)
    assert torch.equal(kept(seeded_dropout(x.t(), 0.5, SEED)), reference.keep_mask((40, 5), 0.5, SEED))
    assert torch.equal(
        kept(variational.variational_dropout(x, 0.5, SEED, 0)),
        reference.variational_keep_mask(x.shape, 0.5, SEED, 0).expand(x.shape),
    )
    assert torch.equal(  # dim last: the runs kernel
        kept(variational.variational_dropout(x, 0.5, SEED, 1)),
        reference.variational_keep_mask(x.shape, 0.5, SEED, 1).expand(x.shape),
    )
    layout.shared_layout.cache_clear()  # nor may the patched layouts outlive the test


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU: 2**31 + 4096 elements")
def test_huge_tensor_tail(generator):
    numel = 2**31 + 4096
    x = torch.ones(numel, dtype=torch.float16, device="cuda")
    y = seeded_dropout(x, 0.5, SEED)
    tail = torch.arange(numel - 8192, numel)
    expected = reference.stream_words(SEED, tail) >= 2**31
    assert torch.equal(kept(y[-8192:]), expected), "wrong mask past 2**31 elements (counter high word?)"


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_keep_fraction_inside_binomial_bound(p, device, generator):
    x = random_input((256, 256), torch.float32, device, generator)
    fraction = kept(seeded_dropout(x, p, generator.initial_seed())).double().mean().item()
    bound = keep_fraction_bound(x.numel(), p)
    assert abs(fraction - (1 - p)) < bound, f"kept {fraction:.4f}, expected {1 - p} +- {bound:.4f}"


def test_neighbouring_seeds_rows_and_elements_are_uncorrelated(device, generator):
    x = random_input((256, 256), torch.float32, device, generator)
    seed = generator.initial_seed() % 2**62
    mask_a, mask_b = kept(seeded_dropout(x, 0.5, seed)), kept(seeded_dropout(x, 0.5, seed + 1))
    n = x.numel()
    assert abs(correlation(mask_a, mask_b)) < correlation_bound(n), "masks of seeds s and s+1 correlate"
    assert abs(correlation(mask_a[1:], mask_a[:-1])) < correlation_bound(n - 256), "neighbouring rows correlate"
    flat = mask_a.flatten()
    assert abs(correlation(flat[1:], flat[:-1])) < correlation_bound(n - 1), "adjacent elements correlate"
    groups = flat.reshape(-1, 4).double()
    all_same = ((groups.sum(1) == 0) | (groups.sum(1) == 4)).double().mean().item()
    assert abs(all_same - 2 / 16) < keep_fraction_bound(n // 4, 2 / 16), "groups of 4 share decisions"


def test_per_row_seeds_follow_the_reference(device, generator):
    x = random_input((6, 37), torch.float32, device, generator)
    seeds = torch.tensor([5, 2**40, -3, 5, 0, 2**62], device=device)
    y = seeded_dropout(x, 0.5, seeds)
    keep = reference.keep_mask(x.shape, 0.5, seeds.cpu())
    assert torch.equal(kept(y), keep)
    assert torch.equal(kept(y[0]), kept(y[3])), "rows with the same seed must share a mask"
    assert_dropout_values(y, x, keep, 0.5, "(per-row seeds)")


def test_per_row_seeds_on_strided_rows(device, generator):
    base = random_input((6, 80), torch.float32, device, generator)
    seeds = torch.arange(6, device=device) * 7919
    for x in (base[:, 3:43], base.t().contiguous().t()[:, :40]):
        assert torch.equal(kept(seeded_dropout(x, 0.5, seeds)), reference.keep_mask(x.shape, 0.5, seeds.cpu()))


def test_p_zero_and_eval_return_the_input(device, generator):
    x = random_input((4, 8), torch.float32, device, generator)
    assert seeded_dropout(x, 0.0, SEED) is x
    assert seeded_dropout(x, 0.7, SEED, training=False) is x


def test_p_one_gives_zeros_and_zero_gradients_even_for_inf(device, generator):
    x = random_input((4, 8), torch.float32, device, generator)
    x[0, 0] = math.inf
    x.requires_grad_(True)
    y = seeded_dropout(x, 1.0, SEED)
    assert torch.equal(y.detach().cpu(), torch.zeros(4, 8))
    (grad,) = torch.autograd.grad(y, x, torch.ones_like(y))
    assert torch.equal(grad.cpu(), torch.zeros(4, 8))


def test_gradient_is_grad_out_times_keep_over_keep_probability(device, generator):
    x = random_input((16, 40), torch.float64, device, generator).requires_grad_(True)
    grad_out = random_input((16, 40), torch.float64, device, generator)
    y = seeded_dropout(x, 0.25, SEED)
    (grad,) = torch.autograd.grad(y, x, grad_out)
    keep = reference.keep_mask(x.shape, 0.25, SEED).to(device)
    torch.testing.assert_close(grad, torch.where(keep, grad_out / 0.75, 0.0), rtol=1e-14, atol=0)


def test_gradcheck_fp64(device, generator):
    x = random_input((3, 17), torch.float64, device, generator).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: seeded_dropout(t, 0.4, SEED), (x,))


def saved_bytes(fn) -> int:
    """Bytes autograd saves for backward while running fn()."""
    total = 0

    def pack(tensor):
        nonlocal total
        total += tensor.numel() * tensor.element_size()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        fn()
    return total


def test_nothing_of_the_input_size_is_saved_for_backward(device, generator):
    x = random_input((64, 64), torch.float32, device, generator).requires_grad_(True)
    assert saved_bytes(lambda: seeded_dropout(x, 0.5, SEED)) == 0
    seeds = torch.arange(64, device=device)
    assert saved_bytes(lambda: seeded_dropout(x, 0.5, seeds)) == 64 * 8, "only the per-row seeds may be saved"


def test_traces_without_graph_break(device, generator):
    torch._dynamo.reset()
    x = random_input((8, 40), torch.float32, device, generator)
    compiled = torch.compile(lambda t: seeded_dropout(t, 0.5, SEED) * 2, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(x), seeded_dropout(x, 0.5, SEED) * 2, rtol=0, atol=0)


@pytest.mark.parametrize(
    "p, error, words",
    [
        (-0.1, ValueError, "p must be in [0, 1]"),
        (1.5, ValueError, "p must be in [0, 1]"),
        (float("nan"), ValueError, "p must be in [0, 1]"),
        ("0.5", TypeError, "p must be a real number"),
        (True, TypeError, "p must be a real number"),
    ],
)
def test_bad_p_is_named(p, error, words, device):
    with pytest.raises(error, match=words.replace("[", r"\[").replace("]", r"\]")):
        seeded_dropout(torch.ones(4, device=device), p, SEED)


@pytest.mark.parametrize(
    "seed, error, words",
    [(-1, ValueError, "seed must be in"), (2**64, ValueError, "seed must be in"),
     (1.5, TypeError, "seed must be an int"), ("7", TypeError, "seed must be an int"),
     (False, TypeError, "seed must be an int")],
)
def test_bad_seed_is_named(seed, error, words, device):
    with pytest.raises(error, match=words):
        seeded_dropout(torch.ones(4, device=device), 0.5, seed)


@pytest.mark.parametrize("dtype", [torch.int32, torch.int64, torch.bool, torch.complex64])
def test_non_float_input_is_refused_with_the_allowed_dtypes(dtype, device):
    with pytest.raises(TypeError, match="supported dtypes are torch.float16"):
        seeded_dropout(torch.zeros(4, dtype=dtype, device=device), 0.5, SEED)


def test_non_tensor_input_is_refused():
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        seeded_dropout([1.0, 2.0], 0.5, SEED)


@pytest.mark.parametrize(
    "x_shape, seeds, error, words",
    [
        ((4, 8), torch.arange(3), ValueError, "give one seed per row"),
        ((4, 8), torch.arange(4, dtype=torch.int32), TypeError, "1-D int64"),
        ((4, 8), torch.arange(4).reshape(2, 2), TypeError, "1-D int64"),
        ((2, 4, 8), torch.arange(2), ValueError, "per-row seeds need a 2-D x"),
    ],
)
def test_bad_per_row_seeds_are_named(x_shape, seeds, error, words, device):
    with pytest.raises(error, match=words):
        seeded_dropout(torch.ones(x_shape, device=device), 0.5, seeds.to(device))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="inductor with a Triton kernel needs a GPU")
def test_inductor_compiles_a_model_using_the_kernels(generator):
    torch._dynamo.reset()
    x = random_input((64, 256), torch.float16, "cuda", generator)

    def block(t):
        return variational_dropout(seeded_dropout(t, 0.5, SEED).relu(), 0.25, SEED + 1, 0) * 3

    compiled = torch.compile(block, fullgraph=True)
    torch.testing.assert_close(compiled(x), block(x), rtol=1e-3, atol=1e-3)


@pytest.mark.gpu
def test_launches_with_the_kept_autotune_choice_keep_the_contract(generator):
    """After the first call of a shape, kernels.runtime launches the autotuner's kept choice
    directly: new seeds, new p and unaligned views must still follow the reference bit-exactly."""
    base = random_input((4 * 1024 + 8,), torch.float16, "cuda", generator)
    for offset in (0, 0, 1, 1, 8, 8):  # 1: a view that is not 16-byte aligned
        x = base[offset:offset + 4096]
        for p, seed in [(0.5, SEED), (0.5, SEED + 1), (0.3, 2**40), (0.3, 5)]:
            expected = reference.keep_mask(x.shape, p, seed)
            assert torch.equal(kept(seeded_dropout(x, p, seed)), expected), f"offset {offset} p {p} seed {seed}"
    assert any(key[0][1] == 4096 for key in element._rows._chosen), "no autotune choice was kept for 4096 elements"


@pytest.mark.gpu
def test_each_kernel_variant_keeps_its_own_autotune_choice(generator):
    """A 64-bit stream index (torch's generator passes 2**31 within a few training steps) is a kernel
    variant whose best config may differ: it is tuned on its own, not handed the 32-bit one's."""
    x = random_input((3, 8200), torch.float16, "cuda", generator)  # a shape no other test tunes
    seeded_dropout(x, 0.5, SEED)
    seeded_dropout(x, 0.5, SEED, offset=2**31)
    numel = x.numel()  # a contiguous x is one row of numel elements
    wide_stream = {dict(key[2])["WIDE_STREAM"] for key in element._rows._chosen
                   if key[:2] == ((1, numel, numel), torch.float16)}
    assert wide_stream == {False, True}, wide_stream


@pytest.mark.gpu
def test_a_variant_first_seen_in_cuda_graph_capture_takes_a_tuned_sibling(generator):
    """Tuning synchronizes, which capture forbids: the captured key-tensor variant of a shape tuned
    only in eager launches the eager variant's choice, and replays follow the reference."""
    x = random_input((5, 8200), torch.float16, "cuda", generator)
    seeded_dropout(x, 0.5, SEED)  # eager: tunes the scalar-key variant
    key = torch.tensor(SEED, device="cuda")
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        y = seeded_dropout(x, 0.5, key)
    graph.replay()
    assert torch.equal(kept(y), reference.keep_mask(x.shape, 0.5, SEED))


@pytest.mark.gpu
def test_tensor_on_another_gpu_than_the_current_one(generator):
    """Triton launches on the current device; the KernelLauncher switches to the tensor's, as torch ops do."""
    if torch.cuda.device_count() < 2:
        pytest.skip("needs 2 GPUs")
    x = random_input((3, 4096), torch.float32, "cuda:1", generator)
    with torch.cuda.device(0):
        y = seeded_dropout(x, 0.5, SEED)
        v = variational_dropout(x, 0.5, SEED, 0)
    assert torch.equal(kept(y), reference.keep_mask(x.shape, 0.5, SEED))
    assert torch.equal(kept(v), reference.variational_keep_mask(x.shape, 0.5, SEED, 0).expand(x.shape))
