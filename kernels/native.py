"""The drop-in's native hot path: a kept dropout launch, its stream draw and its backward node in C++.

Why: the Python hot path (kernels.hot_path) still costs ~1.6x F.dropout's host time per call:
torch.autograd.Function's node and context, Triton's Python launcher, and a Python backward on
autograd's device thread. native_launch.cpp does a repeat call in one pybind call (draw (key,
offset) from torch's CUDA generator as kernels.rng.torch_stream does, allocate the output,
cuLaunchKernel the compiled Triton kernel with the kept arguments, attach a C++ node whose backward
launches the same kernel with the same (key, offset)). Same kernel, same arguments, so the same
mask and output as the Python path.

It is built on first use on a CUDA machine by torch.utils.cpp_extension (a C++ compiler and
ninja; tens of seconds once, then cached by torch under ~/.cache/torch_extensions). Where it
can't be built (warned once), for a kernel whose launch it does not cover, or with
DROPBENCH_NATIVE=0 (read at import), the Python hot path runs instead.
"""

from __future__ import annotations

import functools
import os
import struct
import warnings
from pathlib import Path

import torch

#: DROPBENCH_NATIVE=0 (read at import) keeps the Python hot path, e.g. to compare the two.
ENABLED = os.environ.get("DROPBENCH_NATIVE", "1") != "0"
SOURCE = Path(__file__).with_name("native_launch.cpp")

#: Byte widths of the kernel parameter types the native launch passes (Triton's signature names).
_WIDTHS = {"i32": 4, "u32": 4, "fp32": 4, "i64": 8, "u64": 8}
#: Roles (native_launch.cpp): what fills a parameter on each call.
INPUT, OUTPUT, KEY, OFFSET, FIXED = 0, 1, 2, 3, 4
#: The element kernels' per-call parameters: (x, out, seeds, snapshot, key, offset); the hot path
#: passes x for the two pointers its launches don't read (kernels.element.stream_args).
_PER_CALL_ROLES = (INPUT, OUTPUT, INPUT, INPUT, KEY, OFFSET)


def load_extension():
    """Build (once per source, cached by torch) and import native_launch.cpp. Needs no GPU to build."""
    from torch.utils.cpp_extension import load

    return load(name="dropbench_native_launch", sources=[str(SOURCE)], extra_cflags=["-O2"])


@functools.cache
def extension():
    """The built extension module, or None: switched off, no CUDA (ROCm included: it launches through
    libcuda), or the build failed (warned once)."""
    if not ENABLED or not torch.cuda.is_available() or torch.version.hip is not None:
        return None
    try:
        return load_extension()
    except Exception as error:  # no compiler or ninja, or headers that don't build: the Python path runs
        warnings.warn(f"dropbench: the native hot path could not be built, the Python one runs instead: {error}",
                      RuntimeWarning, stacklevel=2)
        return None


def parameter_layout(signature: dict, args: tuple) -> tuple[list, list, list] | None:
    """(roles, widths, values) of a compiled kernel's launch parameters for a call with runtime
    `args` (the per-call ones first, _PER_CALL_ROLES), or None for a parameter type it does not pass.

    signature: the compiled kernel's {name: type}, constexprs included ("constexpr": Triton also
    makes ints equal to 1 constexprs, and they are not launch parameters).
    """
    roles, widths, values = [], [], []
    for index, kind in enumerate(list(signature.values())[: len(args)]):
        if kind == "constexpr":
            continue
        role = _PER_CALL_ROLES[index] if index < len(_PER_CALL_ROLES) else FIXED
        if kind.startswith("*"):
            if role not in (INPUT, OUTPUT):
                return None
            widths.append(8)
        elif kind in _WIDTHS:
            widths.append(_WIDTHS[kind])
        else:
            return None
        value = args[index] if role == FIXED else 0
        if kind == "fp32":
            value = struct.unpack("<I", struct.pack("<f", value))[0]
        roles.append(role)
        values.append(int(value))
    return roles, widths, values


def native_launch(kernel, grid0: int, args: tuple, aligned: bool):
    """A NativeLaunch of compiled Triton `kernel` over grid0 programs, or None where the native path
    does not apply (not built, or a launch it does not cover: clusters, cooperative or PDL launches,
    scratch memory, other parameter types)."""
    module = extension()
    metadata = getattr(kernel, "metadata", None)
    signature = getattr(getattr(kernel, "src", None), "signature", None)
    if module is None or metadata is None or not isinstance(signature, dict):
        return None
    plain = (getattr(metadata, "num_ctas", 1) == 1 and not getattr(metadata, "launch_cooperative_grid", False)
             and not getattr(metadata, "launch_pdl", False) and not getattr(metadata, "global_scratch_size", 0)
             and not getattr(metadata, "profile_scratch_size", 0))
    layout = parameter_layout(signature, args) if plain else None
    if layout is None:
        return None
    return module.NativeLaunch(kernel.function, grid0, 32 * metadata.num_warps, metadata.shared, aligned, *layout)


def classes(numel: int, advance: int):
    """A NativeClasses: native launches over numel elements by stream class, each call drawing its
    stream from torch's generator and moving it on by `advance` (kernels.hot_path.KeptLaunches)."""
    return extension().NativeClasses(numel, advance)

