"""The drop-in's eager hot path: a repeat call draws its stream and makes one kept launch, nothing else.

Why: the drop-in should cost about F.dropout's host time per call (~12 us on an H200 host, of
which Triton's C launcher alone takes ~6 us). The general path (seeded_ops' autograd.Function,
element_forward, RepeatLaunches) spends ~15 us more in Python re-deciding what a repeat call
already decided. Here a call on a contiguous CUDA tensor whose (shape, dtype, device, p,
16-byte alignment) the general path has launched before, with a key of the same width and an
offset of the same class (RepeatLaunches.offset_class), takes the CompiledLaunch it kept: from
C++ where kernels.native is built (draw, launch and backward node in one call: 0.92x F.dropout's
host time on an H200), else from Python (HotElementDropout, element dropout only: ~1.6x). The
mask is the general path's: the same kernel with the same (key, offset) from torch's generator.
"""

from __future__ import annotations

import sys

import torch
from torch.autograd import forward_ad

from dropbench.kernels import native
from dropbench.kernels.contract import as_int64_bits
from dropbench.kernels.rng import generator_advance
from dropbench.kernels.runtime import (
    INT32_MAX,
    INT32_MIN,
    CompiledLaunch,
    RepeatLaunches,
    direct_launch_allowed,
    several_gpus,
    track_kept_launches,
)


def stream_class(key: int, offset: int, numel: int) -> tuple | None:
    """What a (key, offset) decides of the kernel over numel elements: the key's width and the
    offset's class (None: an offset whose class depends on the op, see RepeatLaunches.offset_class)."""
    offset_class = RepeatLaunches.offset_class(offset, numel)
    return None if offset_class is None else (INT32_MIN <= key <= INT32_MAX, offset_class)


class HotLaunch:
    """One element-kernel launch over a whole contiguous tensor, kept with every argument but
    (x, out, key, offset); calling it returns a new tensor."""

    __slots__ = ("run", "grid0", "function", "packed_metadata", "tail", "device_index", "aligned", "p", "native")

    def __init__(self, launched: CompiledLaunch, args: tuple, x: torch.Tensor, p: float):
        self.run, self.grid0 = launched.run, launched.grid0
        self.function, self.packed_metadata = launched.function, launched.packed_metadata
        # args: (x, out, seeds, snapshot, key, offset, *fixed); seeds and snapshot are x (unused).
        self.tail = (*args[RepeatLaunches.PER_CALL_ARGS:], *launched.constexpr_values)
        self.device_index, self.p = x.get_device(), p
        self.aligned = x.data_ptr() % 16 == 0
        # The same launch from C++ with a C++ backward node (kernels.native), where it applies.
        self.native = native.native_launch(launched.kernel, launched.grid0, args, self.aligned)

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


class KeptLaunches:
    """The launches kept for one class of input, by stream_class: in Python (HotLaunch) and, where
    built, in C++ (`native`, a kernels.native NativeClasses, which draws the stream itself)."""

    __slots__ = ("by_class", "native", "numel", "advance")

    def __init__(self, numel: int):
        self.by_class: dict[tuple, HotLaunch] = {}
        self.native = None
        self.numel, self.advance = numel, generator_advance(numel)

    def keep(self, stream: tuple, launch: HotLaunch) -> None:
        self.by_class[stream] = launch
        if launch.native is not None:
            if self.native is None:
                self.native = native.classes(self.numel, self.advance)
            narrow_key, (aligned, wide) = stream
            self.native.keep(narrow_key, aligned, wide, launch.native)

    def take(self, x: torch.Tensor) -> tuple[HotLaunch, int, int] | None:
        """(the kept launch, key, offset), the stream drawn from torch's generator for x's device as
        rng.torch_stream draws it; None, drawing nothing, for a stream class with no kept launch."""
        generator = torch.cuda.default_generators[x.get_device()]
        generator_offset = generator.get_offset()
        offset = 2 * generator_offset  # the stream offset, as rng.torch_stream maps it
        key = as_int64_bits(generator.initial_seed())
        launch = self.by_class.get(stream_class(key, offset, self.numel))
        if launch is None:
            return None
        generator.set_offset(generator_offset + self.advance)
        return launch, key, offset


def compiled_autograd_on() -> bool:
    """Whether compiled autograd (torch._dynamo.compiled_autograd) is on: it traces backward, and the hot
    path's nodes are not traceable (the C++ node has no compiled_args: NotImplementedError, measured; the
    Python one launches directly), so calls then take the general path, whose backward is a custom op."""
    module = sys.modules.get("torch._dynamo.compiled_autograd")  # not imported: not on, and no import cost
    # A private flag of torch's (2.11 to 2.13): if it goes, the hot path stays on, as before this check.
    return module is not None and bool(getattr(module, "compiled_autograd_enabled", False))


class HotLaunches:
    """The kept launches, by (shape, dtype, device, p, 16-byte alignment) of a contiguous input and
    the op's own argument (`extra`, e.g. variational dropout's dim): a KeptLaunches each.

    native_only: keep only launches the native path takes (kernels.native): the ops whose Python
    fallback, HotElementDropout, replays element dropout's mask and no other.
    """

    MAX_ENTRIES = 4096

    def __init__(self, native_only: bool = False):
        self._launches: dict[tuple, KeptLaunches] = {}
        self.native_only = native_only
        track_kept_launches(self)

    def clear(self) -> None:
        """Forget every kept launch: the next call of each input class takes the general path."""
        self._launches.clear()

    def kept(self, x: torch.Tensor, p: float, extra=None) -> KeptLaunches | None:
        """The launches kept for a call on x, or None where the hot path does not apply: none kept for
        x's class, while torch.compile traces or a CUDA graph captures, under functorch transforms,
        forward-mode AD or compiled autograd, with profiler launch hooks, not a contiguous CUDA tensor,
        or on a GPU other than the current one."""
        if torch.compiler.is_compiling() or not (x.is_cuda and x.is_contiguous()):
            return None
        if torch._C._cuda_isCurrentStreamCapturing() or torch._C._are_functorch_transforms_active():
            return None
        kept = self._launches.get((x.shape, x.dtype, x.get_device(), p, x.data_ptr() % 16 == 0, extra))
        if kept is None or forward_ad._current_level >= 0 or not direct_launch_allowed():
            return None
        if several_gpus() and x.get_device() != torch.cuda.current_device():
            return None
        if compiled_autograd_on():
            return None
        return kept

    def remember(self, launched, args: tuple, x: torch.Tensor, p: float, key: int, offset: int, extra=None) -> None:
        """Keep `launched`, the CompiledLaunch of one kernel over all of contiguous x with a SCALAR
        stream (key, offset) and no snapshot (None: nothing to keep)."""
        stream = stream_class(key, offset, x.numel())
        if launched is None or stream is None:
            return
        launch = HotLaunch(launched, args, x, p)
        if self.native_only and launch.native is None:
            return
        if len(self._launches) >= self.MAX_ENTRIES:
            self._launches.clear()
        input_class = (x.shape, x.dtype, x.get_device(), p, x.data_ptr() % 16 == 0, extra)
        kept = self._launches.get(input_class)
        if kept is None:
            kept = self._launches[input_class] = KeptLaunches(x.numel())
        kept.keep(stream, launch)
