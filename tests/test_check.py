"""bench.check: real implementations pass; planted bugs of the kinds compilers have shipped are caught."""

import itertools

import pytest
import torch
import torch.nn.functional as F

from dropbench.bench import catalogue, check
from dropbench.bench.catalogue import Implementation
from dropbench.kernels import alpha, reference, variational
from dropbench.kernels.runtime import RepeatLaunches

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
P = 0.5
SEED = 1234
NUMEL = 16384  # small for the CPU; the 6-sigma bounds still separate bugs from chance


def run_check(impl, dtype="fp32", p=P, dim=0):
    torch.manual_seed(0)
    return check.check(impl, dtype, p, DEVICE, SEED, dim, numel=NUMEL)


def element_impl(mask_fn, backend="eager", seeded=False, op="dropout"):
    """An element dropout whose keep mask comes from mask_fn(x); backward reuses it (saved)."""
    class Dropout(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, p):
            keep = mask_fn(x, p)
            ctx.save_for_backward(keep)
            ctx.p = p
            return x * keep / (1 - p)

        @staticmethod
        def backward(ctx, grad):
            (keep,) = ctx.saved_tensors
            return grad * keep / (1 - ctx.p), None

    return Implementation(op, backend, lambda x, p, seed, dim: Dropout.apply(x, p), seeded)


def channel_impl(channel_keep, op="dropout2d"):
    """A channel dropout whose (N, C) keep mask comes from channel_keep(x, p), broadcast over the spatial dims."""
    def keep(x, p):
        return channel_keep(x, p).reshape(*x.shape[:2], *[1] * (x.dim() - 2)).expand(x.shape)

    return element_impl(keep, op=op)


def bernoulli_keep(x, p):
    return torch.rand(x.shape, device=x.device) >= p


@pytest.mark.parametrize("op", list(catalogue.OPS))
@pytest.mark.parametrize("backend", ["triton", "eager"])
def test_every_op_passes(op, backend):
    verdict = run_check(catalogue.implementation(op, backend))
    assert verdict.ok, f"{op}/{backend} failed its check: {verdict.reason}"


@pytest.mark.parametrize("op, kernels_module", [("dropout2d", variational), ("feature_alpha_dropout", alpha)])
def test_the_channel_check_runs_both_the_runs_kernel_and_the_tiles(op, kernels_module, monkeypatch):
    """Contiguous maps of >= 17 positions take the runs kernel, channels-last the tiles: the check must cover both."""
    # A repeat launch (on a GPU, of a call signature an earlier test launched) skips the launchers.
    monkeypatch.setattr(variational, "_repeats", RepeatLaunches())
    launchers = (kernels_module._runs, kernels_module._locked)
    before = [launcher.last_launch for launcher in launchers]
    assert run_check(catalogue.implementation(op, "triton")).ok
    assert [launcher.last_launch > old for launcher, old in zip(launchers, before)] == [True, True], \
        "the check did not launch both kernels"


@pytest.mark.parametrize("op", ["dropout_inplace", "feature_alpha_dropout"])
def test_compiled_in_place_and_channel_alpha_dropout_pass(op):
    # The other compile backends pass in the op=all smoke sweep (test_runner); these two are the
    # new check branches torch.compile is likeliest to get wrong: an input mutation, and channels-last.
    verdict = run_check(catalogue.implementation(op, "compile"))
    assert verdict.ok, f"{op}/compile failed its check: {verdict.reason}"


def test_variational_shared_along_the_other_dim_passes():
    verdict = run_check(catalogue.implementation("variational", "eager"), dim=1)
    assert verdict.ok, verdict.reason


@pytest.mark.parametrize("p", [0.1, 0.9])
def test_eager_passes_at_other_p(p):
    verdict = run_check(catalogue.implementation("dropout", "eager"), p=p)
    assert verdict.ok, verdict.reason


def test_wrong_p_is_incorrect():
    impl = Implementation("dropout", "eager", lambda x, p, seed, dim: F.dropout(x, 0.3, training=True), False)
    verdict = run_check(impl)
    assert verdict.status == "incorrect" and "keep fraction" in verdict.reason, verdict


def test_unscaled_values_are_incorrect():
    impl = element_impl(bernoulli_keep)
    wrong_scale = Implementation("dropout", "eager", lambda x, p, seed, dim: impl(x, p, seed, dim) * (1 - p), False)
    verdict = run_check(wrong_scale)
    assert verdict.status == "incorrect" and "x / (1 - p)" in verdict.reason, verdict


def test_groups_of_four_sharing_one_decision_are_incorrect():
    def grouped_keep(x, p):  # the inductor bug: one decision for 4 adjacent elements
        rows, cols = x.shape
        return (torch.rand(rows, cols // 4, device=x.device) >= p).repeat_interleave(4, dim=1)

    verdict = run_check(element_impl(grouped_keep))
    assert verdict.status == "incorrect", "groups of 4 sharing a mask were not caught"
    assert "correlated" in verdict.reason or "groups of 4" in verdict.reason, verdict.reason


def test_a_bug_on_transposed_contiguous_input_only_is_caught_and_named():
    def keep(x, p):  # correct on contiguous input, one mask for every row otherwise
        if x.is_contiguous():
            return bernoulli_keep(x, p)
        return (torch.rand(1, x.shape[1], device=x.device) >= p).expand(x.shape)

    verdict = run_check(element_impl(keep))
    assert verdict.status == "incorrect" and "transposed-contiguous" in verdict.reason, verdict


def test_backward_with_another_mask_is_incorrect():
    def forward_only(x, p, seed, dim):
        class Dropout(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                return x * bernoulli_keep(x, p) / (1 - p)

            @staticmethod
            def backward(ctx, grad):  # draws a fresh mask: the bug
                return grad * bernoulli_keep(grad, p) / (1 - p)

        return Dropout.apply(x)

    verdict = run_check(Implementation("dropout", "eager", forward_only, False))
    assert verdict.status == "incorrect" and "backward" in verdict.reason, verdict


def test_a_different_mask_under_checkpointing_is_incorrect():
    calls = itertools.count()

    def keep(x, p):  # not driven by torch's RNG state, so the recompute draws another mask
        generator = torch.Generator().manual_seed(next(calls))
        return (torch.rand(x.shape, generator=generator) >= p).to(x.device)

    verdict = run_check(element_impl(keep))
    assert verdict.status == "incorrect" and "checkpointing" in verdict.reason, verdict


@pytest.mark.parametrize("op", ["dropout", "dropout3d"])
def test_seeded_backend_off_the_reference_is_incorrect(op):
    triton = catalogue.implementation(op, "triton")
    off_by_one = Implementation(op, "triton",
                                lambda x, p, seed, dim: triton(x, p, seed + 1, dim), True)
    verdict = run_check(off_by_one)
    assert verdict.status == "incorrect" and "kernels.reference" in verdict.reason, verdict


def test_variational_mask_that_varies_along_dim_is_incorrect():
    eager_dropout = catalogue.implementation("dropout", "eager")
    unshared = Implementation("variational", "eager", lambda x, p, seed, dim: eager_dropout(x, p, seed, dim), False)
    verdict = run_check(unshared)
    assert verdict.status == "incorrect" and "not identical along dim" in verdict.reason, verdict


def test_wrong_output_shape_is_incorrect():
    impl = Implementation("dropout", "eager", lambda x, p, seed, dim: F.dropout(x, p).flatten(), False)
    verdict = run_check(impl)
    assert verdict.status == "incorrect" and "output is" in verdict.reason, verdict


def test_a_crash_propagates_to_the_caller():
    def crash(x, p, seed, dim):
        raise RuntimeError("kernel exploded")

    with pytest.raises(RuntimeError, match="kernel exploded"):
        run_check(Implementation("dropout", "eager", crash, False))


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_mask_statistics_accept_independent_decisions(p):
    generator = torch.Generator().manual_seed(7)
    keep = torch.rand(256, 256, generator=generator) >= p
    assert check.mask_problem(keep, p) is None


def test_mask_statistics_reject_rows_sharing_a_mask():
    generator = torch.Generator().manual_seed(7)
    keep = (torch.rand(128, 256, generator=generator) >= 0.5).repeat_interleave(2, dim=0)  # rows in pairs
    assert "adjacent rows" in check.mask_problem(keep, 0.5)


def test_mask_statistics_accept_p_zero_and_one():
    assert check.mask_problem(torch.ones(64, 64, dtype=torch.bool), 0.0) is None
    assert check.mask_problem(torch.zeros(64, 64, dtype=torch.bool), 1.0) is None


@pytest.mark.parametrize("op, dim", [("dropout", 0), ("variational", 0), ("variational", 1)])
def test_check_shape_is_big_enough_and_in_whole_groups_of_four(op, dim):
    rows, cols = check.check_shape(catalogue.op(op).mask, 65536, dim)
    assert rows * cols >= 65536 and rows % 4 == 0 and cols % 4 == 0
    if op == "variational":
        assert (rows, cols)[1 - dim] >= 4096, "the mask itself needs enough elements for the statistics"


@pytest.mark.parametrize("op", catalogue.channel_ops())
def test_channel_check_shape_has_the_ops_rank_and_enough_channels(op):
    family = catalogue.op(op)
    shape = check.check_shape(family.mask, 65536, 0, family.rank)
    assert len(shape) == family.rank and all(size > 1 for size in shape), shape
    n, c, *spatial = shape
    assert n * c >= 4096 and n % 4 == 0 and c % 4 == 0, "the (N, C) mask needs enough channels"
    assert n * c * torch.tensor(spatial).prod() >= 65536


# ---- alpha dropout --------------------------------------------------------------------------------


def test_alpha_dropout_with_a_wrong_shift_is_incorrect():
    impl = Implementation("alpha_dropout", "eager",
                          lambda x, p, seed, dim: F.alpha_dropout(x, p, training=True) + 0.05, False)
    verdict = run_check(impl)
    assert verdict.status == "incorrect", "B off by 0.05 was not caught"
    assert "forward" in verdict.reason and ("x * A + B" in verdict.reason or "A * a' + B" in verdict.reason), verdict


def test_plain_dropout_passed_off_as_alpha_dropout_is_incorrect():
    impl = Implementation("alpha_dropout", "eager", lambda x, p, seed, dim: F.dropout(x, p, training=True), False)
    verdict = run_check(impl)
    assert verdict.status == "incorrect" and "is not x * A + B" in verdict.reason, verdict


def test_alpha_backward_without_its_scale_is_incorrect():
    class AlphaDropout(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, p):
            keep = bernoulli_keep(x, p)
            a, b = reference.alpha_affine(p)
            ctx.save_for_backward(keep)
            return torch.where(keep, x * a + b, torch.full_like(x, a * reference.ALPHA_PRIME + b))

        @staticmethod
        def backward(ctx, grad):
            (keep,) = ctx.saved_tensors
            return grad * keep, None  # the bug: forgets A

    impl = Implementation("alpha_dropout", "eager", lambda x, p, seed, dim: AlphaDropout.apply(x, p), False)
    verdict = run_check(impl)
    assert verdict.status == "incorrect" and "backward kept value 1 is not A" in verdict.reason, verdict


# ---- channel dropout ------------------------------------------------------------------------------


def test_channel_dropout_whose_mask_varies_along_spatial_positions_is_incorrect():
    element = Implementation("dropout2d", "eager", lambda x, p, seed, dim: F.dropout(x, p, training=True), False)
    verdict = run_check(element)
    assert verdict.status == "incorrect" and "varies across the spatial positions" in verdict.reason, verdict


def test_groups_of_four_channels_sharing_one_decision_are_incorrect():
    def grouped(x, p):  # the inductor bug, on channels: one decision for 4 adjacent channels
        n, c = x.shape[:2]
        return (torch.rand(n, c // 4, device=x.device) >= p).repeat_interleave(4, dim=1)

    verdict = run_check(channel_impl(grouped))
    assert verdict.status == "incorrect" and "channel mask" in verdict.reason, verdict
    assert "correlated" in verdict.reason or "groups of 4" in verdict.reason, verdict.reason


def test_a_channel_bug_on_channels_last_input_only_is_caught_and_named():
    def dropout2d(x, p, seed, dim):  # right on contiguous input, element dropout on channels-last
        if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
            return F.dropout(x, p, training=True)
        return F.dropout2d(x, p, training=True)

    verdict = run_check(Implementation("dropout2d", "eager", dropout2d, False))
    assert verdict.status == "incorrect" and verdict.reason.startswith("channels-last input"), verdict


def test_channel_mask_is_checked_as_an_n_by_c_mask():
    # A correct channel dropout: its (N, C) mask passes the statistics, although per element
    # (16 equal decisions in a row) it would look hopelessly correlated.
    verdict = run_check(channel_impl(lambda x, p: torch.rand(x.shape[:2], device=x.device) >= p))
    assert verdict.ok, verdict.reason


# ---- in-place dropout -----------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["triton", "eager"])
@pytest.mark.parametrize("p", [0.0, 1.0])
def test_in_place_passes_at_p_zero_and_one(backend, p):
    verdict = run_check(catalogue.implementation("dropout_inplace", backend), p=p)
    assert verdict.ok, verdict.reason


def test_in_place_op_returning_a_new_tensor_is_incorrect():
    out_of_place = Implementation("dropout_inplace", "eager",
                                  lambda x, p, seed, dim: F.dropout(x, p, training=True), False)
    verdict = run_check(out_of_place)
    assert verdict.status == "incorrect" and "returned a new tensor" in verdict.reason, verdict


def test_in_place_op_that_overwrites_a_leaf_requiring_grad_is_incorrect():
    def dropout_(x, p, seed, dim):
        if x.is_leaf and x.requires_grad:
            with torch.no_grad():  # the bug: autograd would differentiate values that are gone
                return F.dropout(x, p, training=True, inplace=True)
        return F.dropout(x, p, training=True, inplace=True)

    verdict = run_check(Implementation("dropout_inplace", "eager", dropout_, False))
    assert verdict.status == "incorrect" and "leaf that requires grad: no error" in verdict.reason, verdict


def test_in_place_op_that_hides_its_write_from_autograd_is_incorrect():
    def dropout_(x, p, seed, dim):
        with torch.no_grad():  # the bug: backward sees an identity, not the mask
            F.dropout(x, p, training=True, inplace=True)
        return x

    verdict = run_check(Implementation("dropout_inplace", "eager", dropout_, False))
    assert verdict.status == "incorrect" and "backward does not use the forward's mask" in verdict.reason, verdict


def test_random_inputs_are_never_zero():
    x = check.random_nonzero((256, 256), torch.float16, "cpu")
    assert (x != 0).all() and x.abs().min() >= 0.5
