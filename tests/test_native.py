"""kernels.native: the drop-in's C++ hot path builds anywhere, lays out Triton's parameters, and on a GPU
gives the Python hot path's outputs and gradients bit for bit."""

import pytest
import torch
from helpers import random_input

from dropbench.kernels import (
    Dropout2d,
    SeededDropout,
    VariationalDropout,
    dropout2d,
    native,
    seeded_dropout,
    variational_dropout,
)
from dropbench.kernels.element import _hot
from dropbench.kernels.rng import generator_advance
from dropbench.kernels.runtime import forget_kept_launches

#: A rows-kernel signature as Triton 3.6 records it (CompiledKernel.src.signature): rows == 1 and the
#: constexpr parameters are "constexpr", the key fits int32, the offset and threshold don't.
ROWS_SIGNATURE = {
    "x_ptr": "*fp16", "out_ptr": "*fp16", "seeds_ptr": "*fp16", "snapshot_ptr": "*fp16", "key": "i32",
    "offset": "i64", "advance": "i32", "threshold": "i64", "scale_bits": "i32", "rows": "constexpr",
    "cols": "i32", "x_row_stride": "i32", "out_row_stride": "i32", "stream_row_len": "i32",
    "SOURCE": "constexpr", "ALIGNED": "constexpr", "WIDE_INDEX": "constexpr", "WIDE_STREAM": "constexpr",
    "BLOCK": "constexpr",
}
ROWS_ARGS = ("x", "out", "x", "x", 5, 2**33, 0, 3006477107, 1068149419, 1, 8000, 8000, 8000, 0)


def test_the_layout_passes_per_call_pointers_and_ints_and_fixes_the_rest():
    roles, widths, values = native.parameter_layout(ROWS_SIGNATURE, ROWS_ARGS)
    per_call = [native.INPUT, native.OUTPUT, native.INPUT, native.INPUT, native.KEY, native.OFFSET]
    assert roles == per_call + [native.FIXED] * 7  # rows (constexpr) and the constexprs are no parameters
    assert widths == [8, 8, 8, 8, 4, 8, 4, 8, 4, 4, 4, 4, 4]
    assert values == [0] * 6 + [0, 3006477107, 1068149419, 8000, 8000, 8000, 0]


def test_the_layout_passes_fp32_scalars_as_their_bits():
    _, widths, values = native.parameter_layout({**ROWS_SIGNATURE, "advance": "fp32"}, (*ROWS_ARGS[:6], 1.5,
                                                                                          *ROWS_ARGS[7:]))
    assert (widths[6], values[6]) == (4, 0x3FC00000)


@pytest.mark.parametrize("name, kind", [("scale_bits", "fp16"), ("advance", "*fp32"), ("key", "i1")])
def test_the_layout_refuses_what_it_does_not_pass(name, kind):
    assert native.parameter_layout({**ROWS_SIGNATURE, name: kind}, ROWS_ARGS) is None


def test_the_extension_builds_and_refuses_a_bad_layout():
    """Builds with no GPU (the launch needs one): the C++ source compiles against this torch."""
    module = native.load_extension()
    launch = module.NativeLaunch(0, 1, 128, 0, True, [0, 1, 2, 3, 4], [8, 8, 4, 8, 4], [0, 0, 0, 0, 7])
    assert launch.fits(torch.zeros(8)) and not launch.fits(torch.zeros(8, 2).t())
    with pytest.raises(ValueError, match="role must be"):
        module.NativeLaunch(0, 1, 128, 0, True, [0, 9], [8, 8], [0, 0])
    with pytest.raises(ValueError, match="width must be 4 or 8"):
        module.NativeLaunch(0, 1, 128, 0, True, [0, 4], [8, 2], [0, 0])
    with pytest.raises(ValueError, match="one entry per kernel parameter"):
        module.NativeLaunch(0, 1, 128, 0, True, [0, 4], [8], [0, 0])
    classes = module.NativeClasses(8, 4)
    classes.keep(True, True, False, launch)
    with pytest.raises(ValueError, match="numel and advance must be >= 0"):
        module.NativeClasses(-1, 4)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_repeat_calls_launch_from_cpp_with_the_python_paths_results(dtype, generator):
    """After the general path's launch, module calls take the native launch (a NativeDropoutBackward
    node), which draws the stream from torch's generator as the Python path does; its outputs and
    gradients equal the Python hot launch's and the seeded function's."""
    assert native.extension() is not None, "the native hot path must build on a CUDA machine"
    module = SeededDropout(0.2).train()
    x = random_input((4, 3000), dtype, "cuda", generator).requires_grad_(True)
    buffer = random_input((12001,), dtype, "cuda", generator)
    gradients = [random_input((4, 3000), dtype, "cuda", generator),
                 random_input((1, 3000), dtype, "cuda", generator).expand(4, 3000), buffer[1:].view(4, 3000)]
    cuda_generator = torch.cuda.default_generators[torch.cuda.current_device()]
    for _ in range(3):  # the general path tunes, compiles, then keeps its launch (kernels.runtime)
        module(x)
    native_calls = 0
    for seed, start in [(7, 0), (2**40 + 1, 2**31 + 8), (7, 0)]:
        torch.cuda.manual_seed(seed)
        cuda_generator.set_offset(start)
        for grad in gradients:
            offset = 2 * cuda_generator.get_offset()
            key = torch.cuda.initial_seed()
            y = module(x)
            assert 2 * cuda_generator.get_offset() == offset + 2 * generator_advance(x.numel())
            expected = seeded_dropout(x.detach(), 0.2, key, offset=offset)
            assert torch.equal(y, expected)
            if y.grad_fn.name() == "NativeDropoutBackward":  # a stream class's first calls are general
                native_calls += 1
                hot_launch, _, _ = _hot.kept(x.detach(), 0.2).take(x)  # the Python launch of the same kernel
                assert torch.equal(hot_launch(x.detach(), key, offset), expected)
            x.grad = None
            y.backward(grad)
            assert torch.equal(x.grad, seeded_dropout(grad.contiguous(), 0.2, key, offset=offset))
    assert native_calls >= 7, native_calls  # all but the wide class's first two


def dropout_node(y):
    """The name of the autograd node that made y, past the views the channel ops put around it."""
    node = y.grad_fn
    while node.name() == "ViewBackward0":
        node = node.next_functions[0][0]
    return node.name()


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float16, torch.float32])
@pytest.mark.parametrize("name, shape", [("variational", (4, 64, 96)), ("variational_last", (4, 64, 50)),
                                         ("dropout2d", (4, 6, 7, 7))])
def test_shared_mask_modules_launch_from_cpp_with_the_seeded_functions_results(name, shape, dtype, generator):
    """VariationalDropout (tiles and, along the last dim, the runs kernel) and the channel modules take the
    native launch on repeat calls: outputs and gradients equal the seeded functions' for the drawn stream."""
    assert native.extension() is not None, "the native hot path must build on a CUDA machine"
    dim = {"variational": 1, "variational_last": 2}.get(name)
    if dim is None:
        module, seeded = Dropout2d(0.3), (lambda t, key, offset: dropout2d(t, 0.3, key, offset=offset))
    else:
        module = VariationalDropout(0.3, dim=dim)
        seeded = (lambda t, key, offset: variational_dropout(t, 0.3, key, dim, offset=offset))
    x = random_input(shape, dtype, "cuda", generator).requires_grad_(True)
    grad = random_input(shape, dtype, "cuda", generator)
    cuda_generator = torch.cuda.default_generators[torch.cuda.current_device()]
    for _ in range(3):  # the general path tunes, compiles, then keeps its launch
        module(x)
    native_calls = 0
    for _ in range(3):
        key, offset = torch.cuda.initial_seed(), 2 * cuda_generator.get_offset()
        y = module(x)
        native_calls += dropout_node(y) == "NativeDropoutBackward"
        assert torch.equal(y, seeded(x.detach(), key, offset))
        x.grad = None
        y.backward(grad)
        assert torch.equal(x.grad, seeded(grad, key, offset))
    assert native_calls == 3


@pytest.mark.gpu
def test_forgetting_kept_launches_sends_the_next_call_through_the_general_path(generator):
    """forget_kept_launches (the bench runner's, before each point): the next module call takes the
    launcher again, so chosen_config names the kernel that runs; the call after it is native again."""
    assert native.extension() is not None, "the native hot path must build on a CUDA machine"
    module = SeededDropout(0.3)
    x = random_input((8, 1000), torch.float16, "cuda", generator).requires_grad_(True)
    for _ in range(3):
        module(x)
    assert module(x).grad_fn.name() == "NativeDropoutBackward"
    forget_kept_launches()
    assert module(x).grad_fn.name() != "NativeDropoutBackward"
    assert module(x).grad_fn.name() == "NativeDropoutBackward"

