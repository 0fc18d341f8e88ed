"""Launching an autotuned Triton kernel without the autotuner's per-call host time.

Why: a small dropout is ~5 us of GPU work, and every microsecond of Python around the
launch is time the GPU may wait (do_bench counts it at mid shapes, docs/perf-notes.md,
"Host time"). On the H100's host, `autotuned[grid](...)` costs ~28 us where the same
kernel launched with its config, `kernel[grid](..., **config)`, costs ~17 us: the
autotuner rebuilds a dict of every argument and its key on each call. Calling the
compiled kernel directly (`CompiledKernel[grid]`) saved only ~1.5 us more and leans on
Triton internals, so we stop at the config.

How: a Launcher asks the autotuner the first time it sees a key (the values of the
autotuner's `key` arguments and x's dtype), keeps its choice, and afterwards launches the
kernel with that config: the launch the autotuner itself makes once it has chosen, so the
generated code is the same. (The mask never depends on the config, only the speed does.)
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Callable

import torch

Grid = Callable[[dict], tuple]

#: Milliseconds of warm-up and of timed repeats per config when the autotuner chooses (Triton's
#: defaults are 25 and 100). The configs differ by more than the noise of 20 ms of repeats, and
#: tuning a new shape drops from ~1-2 s to a fraction: the default sweep tunes ~100 shapes.
AUTOTUNE_WARMUP_MS, AUTOTUNE_REP_MS = 5, 20


def autotune_bench(kernel_call, quantiles):
    """The autotuner's timer: triton.testing.do_bench (L2 flushed) on a shorter budget."""
    import triton.testing

    return triton.testing.do_bench(kernel_call, warmup=AUTOTUNE_WARMUP_MS, rep=AUTOTUNE_REP_MS, quantiles=quantiles)


class Launcher:
    """Launches one @triton.jit `kernel` with a given config or, when none is given: on the CPU
    (the interpreter) with `cpu_config`; on a GPU with `gpu_config`, or else with the choice of
    `autotuned` (a triton.autotune over the same kernel), asked once per autotune key.

    `last_config` is the config of the latest launch; `last_launch` orders launches across Launchers.
    """

    _launches = itertools.count(1)

    def __init__(self, kernel, autotuned=None, *, cpu_config=None, gpu_config=None):
        self.kernel, self.autotuned = kernel, autotuned
        self.cpu_config, self.gpu_config = cpu_config, gpu_config
        # The autotuner's key arguments; with x's dtype (args[0]) they make our key. The choice
        # does not change the result (the mask does not depend on the config), only the speed.
        self.key_of = operator.itemgetter(*[autotuned.arg_names.index(name) for name in autotuned.keys]) \
            if autotuned else None
        self.last_config, self.last_launch = None, 0
        self._chosen: dict[tuple, object] = {}
        self._several_gpus = None

    def __call__(self, grid: Grid, args: tuple, constexprs: dict, config=None) -> None:
        """kernel[grid(meta)](*args, **constexprs, **meta), meta = config or the default (see the class).

        args[0] must be a tensor: its dtype is part of the key, and its device is where the kernel runs.
        """
        device_index = args[0].get_device()  # -1 on the CPU
        if config is None:
            config = self.cpu_config if device_index < 0 else self.gpu_config
        if self._several_gpus is None:
            self._several_gpus = torch.cuda.is_available() and torch.cuda.device_count() > 1
        if self._several_gpus and device_index >= 0 and device_index != torch.cuda.current_device():
            # Triton launches on the current device; torch ops follow their tensors, and so do we.
            with torch.cuda.device(device_index):
                self._launch(grid, args, constexprs, config)
        else:
            self._launch(grid, args, constexprs, config)

    def _launch(self, grid, args, constexprs, config) -> None:
        self.last_launch = next(Launcher._launches)
        if config is None:
            key = (self.key_of(args), args[0].dtype)
            config = self._chosen.get(key)
            if config is None:
                self.autotuned[grid](*args, **constexprs)  # benchmarks the configs the first time
                self._chosen[key] = self.last_config = self.autotuned.best_config
                return
        self.last_config = config
        self.kernel[grid(config.kwargs)](*args, **constexprs, **config.all_kwargs())


def latest_config(*launchers: Launcher):
    """The config of whichever of `launchers` launched last (None before any launch)."""
    return max(launchers, key=lambda launcher: launcher.last_launch).last_config
