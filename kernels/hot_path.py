"""The drop-in's eager hot path: a repeat call draws its stream and makes one kept launch, nothing else.

Why: the drop-in should cost about F.dropout's host time per call (~12 us on an H200 host, of
which Triton's C launcher alone takes ~6 us). The general path (seeded_ops' autograd.Function,
element_forward, RepeatLaunches) spends ~15 us more in Python re-deciding what a repeat call
already decided. Here a call on a contiguous CUDA tensor whose (shape, dtype, device, p,
16-byte alignment) the general path has launched before, with a key of the same width and an
offset of the same class (RepeatLaunches.offset_class), takes the CompiledLaunch it kept. The
mask is the general path's: the same kernel with the same (key, offset) from torch's generator.
"""

from __future__ import annotations

import torch
from torch.autograd import forward_ad

from dropbench.kernels.contract import as_int64_bits
from dropbench.kernels.rng import generator_advance
from dropbench.kernels.runtime import (
    INT32_MAX,
    INT32_MIN,
    CompiledLaunch,
    RepeatLaunches,
    direct_launch_allowed,
    several_gpus,
)


def stream_class(key: int, offset: int, numel: int) -> tuple | None:
    """What a (key, offset) decides of the kernel over numel elements: the key's width and the
    offset's class (None: an offset whose class depends on the op, see RepeatLaunches.offset_class)."""
    offset_class = RepeatLaunches.offset_class(offset, numel)
    return None if offset_class is None else (INT32_MIN <= key <= INT32_MAX, offset_class)


class HotLaunch:
    """One element-kernel launch over a whole contiguous tensor, kept with every argument but
    (x, out, key, offset); calling it returns a new tensor."""

    __slots__ = ("run", "grid0", "function", "packed_metadata", "tail", "device_index", "aligned", "advance", "p")

    def __init__(self, launched: CompiledLaunch, args: tuple, x: torch.Tensor, p: float):
        self.run, self.grid0 = launched.run, launched.grid0
        self.function, self.packed_metadata = launched.function, launched.packed_metadata
        # args: (x, out, seeds, snapshot, key, offset, *fixed); seeds and snapshot are x (unused).
        self.tail = (*args[RepeatLaunches.PER_CALL_ARGS:], *launched.constexpr_values)
        self.device_index, self.p = x.get_device(), p
        self.aligned = x.data_ptr() % 16 == 0
        self.advance = generator_advance(x.numel())  # in the generator's units (rng.torch_stream)

    def fits(self, tensor: torch.Tensor) -> bool:
        """Whether the launch takes `tensor` (a gradient of the output) as it took x."""
        return tensor.is_contiguous() and (not self.aligned or tensor.data_ptr() % 16 == 0)

    def __call__(self, x: torch.Tensor, key: int, offset: int) -> torch.Tensor:
        out = torch.empty_like(x)
        # Pointers as ints: Triton's launcher then skips its per-pointer driver query (x is on the GPU).
        # x also fills the two pointers the launch does not use, as in the general path (stream_args).
        x_ptr = x.data_ptr()
        self.run(self.grid0, 1, 1, torch._C._cuda_getCurrentRawStream(self.device_index), self.function,
                 self.packed_metadata, None, None, None, x_ptr, out.data_ptr(), x_ptr, x_ptr, key, offset, *self.tail)
        return out


class HotLaunches:
    """The kept HotLaunches, by (shape, dtype, device, p, 16-byte alignment) of a contiguous input,
    then by stream_class."""

    MAX_ENTRIES = 4096

    def __init__(self):
        self._launches: dict[tuple, dict[tuple, HotLaunch]] = {}

    def take(self, x: torch.Tensor, p: float) -> tuple[HotLaunch, int, int] | None:
        """(the kept launch, key, offset) for a call on x, the stream drawn from torch's CUDA generator as
        rng.torch_stream draws it; or None, drawing nothing, where the hot path does not apply: no kept
        launch for x's shape and stream class, while torch.compile traces or a CUDA graph captures,
        under functorch transforms or forward-mode AD, with profiler launch hooks, not a contiguous
        CUDA tensor, or on a GPU other than the current one."""
        if torch.compiler.is_compiling() or not (x.is_cuda and x.is_contiguous()):
            return None
        if torch._C._cuda_isCurrentStreamCapturing() or torch._C._are_functorch_transforms_active():
            return None
        by_class = self._launches.get((x.shape, x.dtype, x.get_device(), p, x.data_ptr() % 16 == 0))
        if by_class is None or forward_ad._current_level >= 0 or not direct_launch_allowed():
            return None
        device_index = x.get_device()
        if several_gpus() and device_index != torch.cuda.current_device():
            return None
        generator = torch.cuda.default_generators[device_index]
        generator_offset = generator.get_offset()
        offset = 2 * generator_offset  # the stream offset, as rng.torch_stream maps it
        key = as_int64_bits(generator.initial_seed())
        launch = by_class.get(stream_class(key, offset, x.numel()))
        if launch is None:
            return None
        generator.set_offset(generator_offset + launch.advance)
        return launch, key, offset

    def remember(self, launched, args: tuple, x: torch.Tensor, p: float, key: int, offset: int) -> None:
        """Keep `launched`, the CompiledLaunch of the rows kernel over all of contiguous x with a SCALAR
        stream (key, offset) and no snapshot (None: nothing to keep)."""
        stream = stream_class(key, offset, x.numel())
        if launched is None or stream is None:
            return
        if len(self._launches) >= self.MAX_ENTRIES:
            self._launches.clear()
        by_class = self._launches.setdefault((x.shape, x.dtype, x.get_device(), p, x.data_ptr() % 16 == 0), {})
        by_class[stream] = HotLaunch(launched, args, x, p)
