"""Explicit device RNG states, key tensors, offsets for shards; and the modules under torch.compile and
CUDA graphs, which draw a fresh key from torch's generator per call and per replay, and whose backward
replays the forward's mask."""

import pytest
import torch
from helpers import random_input
from test_element import kept
from torch._inductor.utils import run_and_get_code

from dropbench.kernels import (
    SeededDropout,
    VariationalDropout,
    alpha_dropout,
    dropout2d,
    feature_alpha_dropout,
    new_state,
    reference,
    reset_state,
    seeded_dropout,
    variational_dropout,
)
from dropbench.kernels.element import dropout_key_tensor

SEED = 0x5EED_0F_D20B


def test_state_calls_follow_the_reference_and_advance_by_the_stream_length(device, generator):
    state = new_state(SEED, device)
    x = random_input((6, 30), torch.float32, device, generator)  # 180 elements: advances 184, whole counters
    odd = random_input((7,), torch.float32, device, generator)  # 7 elements: advances 8, a whole counter
    first = seeded_dropout(x, 0.5, state=state)
    second = seeded_dropout(odd, 0.5, state=state)
    third = seeded_dropout(x, 0.5, state=state)
    assert torch.equal(kept(first), reference.keep_mask(x.shape, 0.5, SEED, 0))
    assert torch.equal(kept(second), reference.keep_mask(odd.shape, 0.5, SEED, 184))
    assert torch.equal(kept(third), reference.keep_mask(x.shape, 0.5, SEED, 192))
    assert state.tolist() == [SEED, 376, 0, 0], f"state after three calls: {state.tolist()}"


def test_variational_state_advances_by_the_mask_length(device, generator):
    state = new_state(SEED, device)
    x = random_input((4, 9, 10), torch.float32, device, generator)  # mask (4, 1, 10): 40 stream indices
    variational_dropout(x, 0.5, dim=1, state=state)
    y = variational_dropout(x, 0.5, dim=1, state=state)
    expected = reference.variational_keep_mask(x.shape, 0.5, SEED, 1, offset=40).expand(x.shape)
    assert torch.equal(kept(y), expected)


def test_a_key_tensor_is_read_on_the_device(device, generator):
    key = torch.tensor(SEED, dtype=torch.int64, device=device)
    x = random_input((5, 24), torch.float32, device, generator)
    assert torch.equal(kept(seeded_dropout(x, 0.3, key)), reference.keep_mask(x.shape, 0.3, SEED))
    key.add_(1)  # what a training loop would do between CUDA-graph replays
    assert torch.equal(kept(seeded_dropout(x, 0.3, key)), reference.keep_mask(x.shape, 0.3, SEED + 1))


def test_row_shards_reproduce_the_whole_tensors_mask(device, generator):
    whole = random_input((8, 36), torch.float32, device, generator)
    expected = seeded_dropout(whole, 0.5, SEED)
    for start, stop in [(0, 3), (3, 8), (5, 6)]:
        shard = seeded_dropout(whole[start:stop], 0.5, SEED, offset=start * 36)
        assert torch.equal(shard, expected[start:stop]), f"rows {start}:{stop}"


@pytest.mark.parametrize("start, stop", [(0, 12), (12, 36), (5, 23)])  # 5: not a whole counter
def test_column_shards_reproduce_the_whole_tensors_mask(start, stop, device, generator):
    whole = random_input((8, 36), torch.float32, device, generator)
    expected = seeded_dropout(whole, 0.5, SEED)
    shard = seeded_dropout(whole[:, start:stop], 0.5, SEED, offset=start, global_cols=36)
    assert torch.equal(shard, expected[:, start:stop]), f"columns {start}:{stop}"
    block = seeded_dropout(whole[2:6, start:stop], 0.5, SEED, offset=2 * 36 + start, global_cols=36)
    assert torch.equal(block, expected[2:6, start:stop]), f"block rows 2:6, columns {start}:{stop}"


def test_shard_gradients_replay_the_shards_mask(device, generator):
    whole = random_input((4, 20), torch.float32, device, generator)
    shard = whole[:, 8:20].clone().requires_grad_(True)
    seeded_dropout(shard, 0.5, SEED, offset=8, global_cols=20).sum().backward()
    assert torch.equal(kept(shard.grad), reference.keep_mask((4, 20), 0.5, SEED)[:, 8:20])


def test_other_ops_take_offset_and_state(device, generator):
    x = random_input((16, 40), torch.float64, device, generator)
    torch.testing.assert_close(alpha_dropout(x, 0.5, SEED, offset=64).cpu(), reference.alpha_dropout(x, 0.5, SEED, 64))
    state = new_state(SEED, device)
    maps = random_input((2, 3, 5, 5), torch.float32, device, generator)
    dropout2d(maps, 0.5, state=state)
    assert state[1].item() == 8, "a (2, 3) channel mask is 6 stream indices, rounded up to 8"


def test_reset_state_replays_a_run(device, generator):
    x = random_input((4, 16), torch.float32, device, generator)
    state = new_state(SEED, device)
    first = seeded_dropout(x, 0.5, state=state)
    reset_state(state, SEED)
    assert torch.equal(seeded_dropout(x, 0.5, state=state), first)
    for offset in (4, 6):  # torch's offsets are multiples of 4; a stream counter spans 8 stream indices
        with pytest.raises(ValueError, match="multiple of 8"):
            reset_state(state, SEED, offset=offset)


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        ({"seed": 1, "state": "make"}, TypeError, "either seed or state"),
        ({"state": torch.zeros(3, dtype=torch.int64)}, TypeError, "state must be an int64 tensor of shape"),
        ({"seed": 1, "offset": -1}, ValueError, "offset must be in"),
        ({"seed": 1, "offset": 1.5}, TypeError, "offset must be an int"),
        ({"state": "make", "offset": 4}, TypeError, "offset \\(shards\\) takes a seed, not state"),
        ({"state": "make", "global_cols": 8}, TypeError, "global_cols \\(shards\\) takes a seed"),
        ({"global_cols": 8}, TypeError, "global_cols \\(shards\\) takes a seed"),
        ({"offset": 4}, TypeError, "offset \\(shards\\) takes a seed"),
        ({"seed": 1, "global_cols": 3}, ValueError, "global_cols must be >="),
        ({"seed": 1, "global_cols": -3}, ValueError, "global_cols must be in"),
        ({"seed": torch.tensor(1, dtype=torch.int32)}, TypeError, "0-d tensor must be int64"),
    ],
)
def test_bad_stream_arguments_are_named(kwargs, error, words, device):
    x = torch.ones(4, 8, device=device)
    if kwargs.get("state") == "make":
        kwargs["state"] = new_state(1, device)
    with pytest.raises(error, match=words):
        seeded_dropout(x, 0.5, **kwargs)


@pytest.mark.parametrize("op", [alpha_dropout, dropout2d, variational_dropout])
def test_every_op_refuses_state_with_an_offset(op, device):
    """A state's snapshot has its own offset: with a shard offset on top, backward would replay another mask."""
    with pytest.raises(TypeError, match="offset \\(shards\\) takes a seed, not state"):
        op(torch.ones(2, 8, 3, 3, device=device), 0.5, state=new_state(1, device), offset=4)


def _explain(fn, *args):
    torch._dynamo.reset()
    return torch._dynamo.explain(fn)(*args)


def _assert_backward_replays_the_mask(out, x):
    """x.grad of out.sum() is non-zero exactly where out kept x: backward replayed the forward's mask."""
    (grad,) = torch.autograd.grad(out.sum(), x)
    assert torch.equal(grad != 0, out != 0), "backward dropped other elements than the forward"


@pytest.mark.parametrize("make", [lambda: SeededDropout(0.1), lambda: VariationalDropout(0.1, dim=1)],
                         ids=["seeded", "variational"])
def test_modules_compile_fullgraph_and_draw_fresh_masks(make, device, generator):
    model = torch.nn.Sequential(torch.nn.Linear(16, 16), make(), torch.nn.GELU()).to(device).train()
    x = random_input((4, 8, 16), torch.float32, device, generator)
    explanation = _explain(model, x)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    torch._dynamo.reset()
    dropout = torch.compile(make().to(device).train(), fullgraph=True, backend="aot_eager")
    x.requires_grad_(True)
    first, second = dropout(x), dropout(x)
    assert not torch.equal(first, second), "a compiled module must draw a fresh mask per call"
    _assert_backward_replays_the_mask(first, x)


@pytest.mark.gpu
@pytest.mark.parametrize("mode", [None, "reduce-overhead"])
def test_inductor_compiles_modules_with_fresh_masks_and_replayed_backward(mode, generator):
    torch._dynamo.reset()
    model = torch.nn.Sequential(SeededDropout(0.5), VariationalDropout(0.5, dim=1)).cuda().train()
    compiled = torch.compile(model, fullgraph=True, mode=mode)
    x = random_input((4, 8, 64), torch.float32, "cuda", generator).requires_grad_(True)
    outputs = []
    for _ in range(4):
        torch.compiler.cudagraph_mark_step_begin()  # a new training step: earlier outputs may be overwritten
        out = compiled(x)
        _assert_backward_replays_the_mask(out, x)
        outputs.append(out.detach().clone())
    assert all(not torch.equal(a, b) for a, b in zip(outputs, outputs[1:])), "steps reused a mask"


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_inductor_launches_the_kernel_itself_with_the_contracts_mask(dtype, generator):
    """Under torch.compile a module's element dropout is a triton_op: inductor's own code launches the
    rows kernel, forward and backward (no call back into Python through the custom op), with the
    contract's mask for the key tensor and offset it is given, bit for bit as an eager call."""
    torch._dynamo.reset()
    key = 2**40 + 7
    for p in (0.3, 0.7):  # T(p) below and past int32
        x = random_input((8, 1000), dtype, "cuda", generator)
        compiled = torch.compile(lambda x, key: dropout_key_tensor(x, p, key, 4), fullgraph=True)
        out, codes = run_and_get_code(compiled, x, torch.tensor(key, device="cuda"))
        assert torch.equal(out, seeded_dropout(x, p, key, offset=4)), p
        assert "_dropout_rows_kernel" in "\n".join(codes)
    codes = _compiled_training_step_code(dtype, generator)
    assert len(codes) == 2 and all("_dropout_rows_kernel" in part for part in codes), "forward and backward"
    assert "torch.ops.dropbench" not in "\n".join(codes), "a dropout went through the custom op"


@pytest.mark.gpu
def test_inductor_calls_the_custom_op_for_fp64(generator):
    """fp64 keeps the custom op under torch.compile (the triton_op passes an fp32 scale)."""
    codes = _compiled_training_step_code(torch.float64, generator)
    assert "torch.ops.dropbench.dropout.default" in "\n".join(codes)


def _compiled_training_step_code(dtype, generator) -> list[str]:
    """Inductor's code for a compiled Linear + SeededDropout forward and backward."""
    torch._dynamo.reset()
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), SeededDropout(0.5)).cuda().to(dtype).train()
    x = random_input((4, 64), dtype, "cuda", generator).requires_grad_(True)
    compiled = torch.compile(model, fullgraph=True)
    _, codes = run_and_get_code(lambda: compiled(x).sum().backward())
    return codes


@pytest.mark.gpu
def test_reduce_overhead_trains_a_model_with_linear_layers(generator):
    """Issue 15's failing case (with the old device state): Linear layers around the dropouts, backward
    of each step under CUDA graphs, a fresh mask per step."""
    torch._dynamo.reset()
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), SeededDropout(0.5), torch.nn.Linear(64, 64),
                                VariationalDropout(0.5, dim=1)).cuda().train()
    compiled = torch.compile(model, fullgraph=True, mode="reduce-overhead")
    x = random_input((4, 8, 64), torch.float32, "cuda", generator)
    outputs = []
    for _ in range(4):
        # As a training loop does: without it, backward accumulates into the previous step's .grad,
        # a CUDA-graph output the step overwrote (nn.Dropout fails the same way: issue 20's H200 run).
        model.zero_grad(set_to_none=True)
        torch.compiler.cudagraph_mark_step_begin()
        out = compiled(x)
        outputs.append(out.detach().clone())  # before backward: its graph replay may reuse the output's memory
        out.sum().backward()
    assert all(not torch.equal(a, b) for a, b in zip(outputs, outputs[1:])), "steps reused a mask"


@pytest.mark.gpu
def test_cuda_graph_replays_draw_fresh_masks_that_backward_replays(generator):
    module = SeededDropout(0.5).cuda().train()
    x = random_input((32, 1024), torch.float16, "cuda", generator).requires_grad_(True)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm up (autotuning; the captured key-tensor kernel still compiles in capture)
        for _ in range(2):
            module(x).sum().backward()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    x.grad = None
    with torch.cuda.graph(graph):
        y = module(x)
        y.backward(torch.ones_like(y))
    masks = []
    for _ in range(3):
        graph.replay()
        torch.cuda.synchronize()
        assert torch.equal(x.grad != 0, y != 0), "backward in the graph must replay its forward's mask"
        masks.append(kept(y).clone())
    assert all(not torch.equal(a, b) for a, b in zip(masks, masks[1:])), "replays reused a mask"
    torch.cuda.manual_seed(11)
    graph.replay()
    again = kept(y).clone()
    torch.cuda.manual_seed(11)
    graph.replay()
    assert torch.equal(kept(y), again), "replays must follow torch.cuda.manual_seed"


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_repeated_module_calls_follow_the_reference_from_torchs_stream(dtype, generator):
    """After the first calls, the modules launch the kept compiled kernel directly, with a new offset
    from torch's generator each call: every call's mask and gradient mask must be the reference's."""
    element, shared = SeededDropout(0.3).cuda(), VariationalDropout(0.3, dim=1).cuda()
    x = random_input((8, 3, 1000), dtype, "cuda", generator).requires_grad_(True)
    cuda_generator = torch.cuda.default_generators[torch.cuda.current_device()]
    offsets = set()
    for call in range(5):
        if call == 3:  # past int32: wide stream indices, a new kernel specialization
            cuda_generator.set_offset(2**40)
        for module in (element, shared):
            key, offset = cuda_generator.initial_seed(), 2 * cuda_generator.get_offset()  # rng.torch_stream
            y = module(x)
            offsets.add(offset)
            if module is element:
                expected = reference.keep_mask(x.shape, 0.3, key, offset)
            else:
                expected = reference.variational_keep_mask(x.shape, 0.3, key, 1, offset).expand(x.shape)
            assert torch.equal(kept(y), expected), f"{type(module).__name__} {dtype} at offset {offset}"
            (grad,) = torch.autograd.grad(y, x, torch.ones_like(y))
            assert torch.equal(kept(grad), expected), f"{type(module).__name__} {dtype}: backward mask"
    assert len(offsets) == 10, "each call must read a new offset"


@pytest.mark.parametrize("offset", [0, 4, 2**31 - 64, 2**31 + 4, 2**40 + 2])
def test_offsets_around_int32_follow_the_reference(offset, device, generator):
    """Repeated calls with offsets narrow, between and past int32 (one kernel specialization each)."""
    x = random_input((4, 4096), torch.float16, device, generator)
    for _ in range(2):
        y = seeded_dropout(x, 0.5, SEED, offset=offset)
        assert torch.equal(kept(y), reference.keep_mask(x.shape, 0.5, SEED, offset)), offset


def _channel_keep(shape, p, offset):
    return reference.keep_mask(shape[:2], p, SEED, offset).reshape(*shape[:2], *[1] * (len(shape) - 2))


#: Every kernel path but the rows kernel's (above): (the call, the reference, the input: a random
#: tensor of `shape`, permuted by `order`: the channels-last views take the locked tiles). Each mask
#: has over 64 elements, so an offset 64 below 2**31 puts stream indices on both sides of it.
OFFSET_PATHS = {
    "strided": (lambda x, o: seeded_dropout(x, 0.5, SEED, offset=o),
                lambda x, o: reference.seeded_dropout(x, 0.5, SEED, o), (40, 24), (1, 0)),
    "locked tiles": (lambda x, o: variational_dropout(x, 0.5, SEED, 0, offset=o),
                     lambda x, o: reference.variational_dropout(x, 0.5, SEED, 0, o), (4, 200), (0, 1)),
    "runs": (lambda x, o: variational_dropout(x, 0.5, SEED, 1, offset=o),
             lambda x, o: reference.variational_dropout(x, 0.5, SEED, 1, o), (200, 32), (0, 1)),
    "alpha rows": (lambda x, o: alpha_dropout(x, 0.5, SEED, offset=o),
                   lambda x, o: reference.alpha_dropout(x, 0.5, SEED, o), (24, 40), (0, 1)),
    "alpha locked tiles": (lambda x, o: feature_alpha_dropout(x, 0.5, SEED, offset=o),
                           lambda x, o: reference._apply_alpha(x, _channel_keep(x.shape, 0.5, o), 0.5),
                           (6, 2, 3, 40), (0, 3, 1, 2)),
    "alpha runs": (lambda x, o: feature_alpha_dropout(x, 0.5, SEED, offset=o),
                   lambda x, o: reference._apply_alpha(x, _channel_keep(x.shape, 0.5, o), 0.5),
                   (6, 40, 4, 6), (0, 1, 2, 3)),
    "channel locked tiles": (lambda x, o: dropout2d(x, 0.5, SEED, offset=o),
                             lambda x, o: reference._apply(x, _channel_keep(x.shape, 0.5, o), 0.5),
                             (6, 2, 3, 40), (0, 3, 1, 2)),
}


@pytest.mark.parametrize("offset", [2**31 - 64, 2**31 - 61, 2**31 + 4, 2**40 + 2])
@pytest.mark.parametrize("path", list(OFFSET_PATHS))
def test_every_kernel_path_follows_the_reference_at_offsets_past_int32(path, offset, device, generator):
    """Stream indices between and past int32 on a small tensor: 64-bit stream indices (WIDE_STREAM)
    with 32-bit addressing, in every kernel (torch's generator offsets pass 2**31 within a few steps)."""
    call, expected, shape, order = OFFSET_PATHS[path]
    x = random_input(shape, torch.float32, device, generator).permute(order)
    for _ in range(2):
        torch.testing.assert_close(call(x, offset).cpu(), expected(x.cpu(), offset).float(), msg=path)


@pytest.mark.gpu
def test_repeat_launches_tell_apart_what_triton_specializes_on(generator):
    """The host-time path keeps one compiled launch per call signature: a 64-bit key after a 32-bit
    one, per-row keys and a misaligned key tensor on the same shape must each get their own mask."""
    x = random_input((4, 4096), torch.float16, "cuda", generator)
    for seed in (5, 5, 2**40 + 5, 2**40 + 5, 7):
        assert torch.equal(kept(seeded_dropout(x, 0.5, seed)), reference.keep_mask(x.shape, 0.5, seed)), seed
    rows = torch.arange(11, 15, device="cuda")
    for _ in range(2):
        assert torch.equal(kept(seeded_dropout(x, 0.5, rows)), reference.keep_mask(x.shape, 0.5, rows.cpu()))
    keys = torch.arange(100, 104, device="cuda")
    for index in (0, 1, 1, 2):  # keys[1] is 8 bytes past a 16-byte boundary
        key = keys[index]
        expected = reference.keep_mask(x.shape, 0.5, 100 + index)
        assert torch.equal(kept(seeded_dropout(x, 0.5, key)), expected), f"key tensor {index}"
        assert torch.equal(kept(variational_dropout(x, 0.5, key, 0)),
                           reference.variational_keep_mask(x.shape, 0.5, 100 + index, 0).expand(x.shape))
