"""How the seeded kernels are launched: with the autotuner's kept choice, through the compiled
kernel's own launcher, and as a custom op only while torch.compile traces.

Why: a small dropout is ~5 us of GPU work, and the drop-in must cost no more host time
per call than nn.Dropout (~12-18 us with autograd). Triton's `kernel[grid](...)` binds
and specializes every argument and looks the kernel up on each call (~11 us on an H200
host); the autotuner adds ~10 us more. So:

- A KernelLauncher asks the autotuner once per autotune key and kernel variant (the
  constexprs the caller passes: a 64-bit stream index or a per-element Philox call shifts
  the best config), keeps its choice, and then launches that config itself (the mask never
  depends on the config, only the speed). A variant first seen while a CUDA graph captures
  takes the choice of the tuned variant of its shape that shares most constexprs (tuning
  synchronizes, which capture forbids); a shape never tuned raises: call it once first.
- After the first launch of a specialization it keeps the CompiledKernel and calls its
  C launcher directly (`compiled.run(...)`), as inductor does for its static launches.
  Its cache key has everything Triton specializes on: each tensor's dtype and 16-byte
  alignment, and for each int whether it is 1, a multiple of 16, and 32- or 64-bit.
  Launch hooks (profilers), the CPU interpreter, or DROPBENCH_TRITON_JIT_LAUNCH=1 take
  Triton's own path instead.
- `launch(op, impl, *args)`: torch.compile traces the torch.library custom op (no graph
  break); eager calls skip the op's dispatcher (~10 us) and run the same impl directly.
"""

from __future__ import annotations

import functools
import itertools
import operator
import os
import weakref
from collections.abc import Callable

import torch

from dropbench.kernels.contract import Stream, drops_everything
from dropbench.kernels.rng import drawn
from dropbench.kernels.stream import ROW_KEYS, SNAPSHOT, STATE

Grid = Callable[[dict], tuple]

#: Milliseconds of warm-up and of timed repeats per config when the autotuner chooses (Triton's
#: defaults are 25 and 100). The configs differ by more than the noise of 20 ms of repeats, and
#: tuning a new shape drops from ~1-2 s to a fraction: the default sweep tunes ~100 shapes.
AUTOTUNE_WARMUP_MS, AUTOTUNE_REP_MS = 5, 20
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


def autotune_bench(kernel_call, quantiles):
    """The autotuner's timer: triton.testing.do_bench (L2 flushed) on a shorter budget."""
    import triton.testing

    return triton.testing.do_bench(kernel_call, warmup=AUTOTUNE_WARMUP_MS, rep=AUTOTUNE_REP_MS, quantiles=quantiles)


_LIBRARY = torch.library.Library("dropbench", "DEF")


def define_op(schema: str, impl, fake):
    """Register torch.ops.dropbench.<name> (schema "name(args) -> returns") and return it.

    impl runs on every device; fake gives torch.compile the outputs' metadata. A plain
    Library registration: torch.library.custom_op wraps each call in checks that cost
    ~100 us of host time per call in a compiled training step (measured on an H200 host).
    """
    name = schema.split("(", 1)[0]
    _LIBRARY.define(schema)
    _LIBRARY.impl(name, impl, "CompositeExplicitAutograd")
    torch.library.register_fake(f"dropbench::{name}", fake, lib=_LIBRARY)
    return getattr(torch.ops.dropbench, name).default


def fake_output(x, *_):
    """An op's output for tracing: x's shape and dtype."""
    return torch.empty(x.shape, dtype=x.dtype, device=x.device)


def fake_output_and_snapshot(x, *_):
    """A state-advancing op's outputs for tracing: x's shape and dtype, and the [key, offset] snapshot."""
    return fake_output(x), torch.empty(2, dtype=torch.int64, device=x.device)


def zeros_like_input(x: torch.Tensor, p: float) -> torch.Tensor:
    """What dropout gives when no word can be kept (p = 1): zeros."""
    return torch.zeros(x.shape, dtype=x.dtype, device=x.device)


def seeded_ops(name: str, extra_schema: str, forward, everything_dropped=zeros_like_input, traced=None):
    """Register a seeded op's two forms around forward(x, p, stream, extra, snapshot, grad) and return
    its autograd.Function: forward and backward run the same kernel (backward with grad=True, for ops
    whose gradient map differs, like alpha dropout's), and autograd keeps a few ints and at most a key
    tensor or a 16-byte snapshot, never anything input-sized.

    The forms: `name(x, p, source, key, offset, seeds, extra, grad)` for a given seed, and
    `name_state(x, p, extra, state) -> (y, snapshot)` for an RNG state it advances. extra_schema
    declares the op's own argument (e.g. "int dim"). Eager calls run the implementations directly
    (launch). apply(x, p, source, key, offset, seeds, extra) returns (y, snapshot): the [key, offset]
    a STATE call read (None otherwise); run(x, p, stream, extra) returns y, drawing a FROM_TORCH
    stream from torch's generator first. everything_dropped(x, p) is the forward where p leaves no
    word to keep; its gradient is zero. traced(x, p, source, key, offset, seeds, extra), where given,
    is what torch.compile traces instead of the custom op when it returns a tensor (a triton_op that
    inductor launches itself); None sends the call to the custom op.
    """

    def seeded_impl(x, p, source, key, offset, seeds, extra, grad):
        return forward(x, p, Stream(source, key, offset, seeds), extra, None, grad)

    def state_impl(x, p, extra, state):
        snapshot = torch.empty(2, dtype=torch.int64, device=x.device)
        return forward(x, p, Stream(STATE, 0, 0, state), extra, snapshot, False), snapshot

    seeded_op = define_op(f"{name}(Tensor x, float p, int source, int key, int offset, Tensor? seeds, "
                          f"{extra_schema}, bool grad) -> Tensor", seeded_impl, fake_output)
    state_op = define_op(f"{name}_state(Tensor x, float p, {extra_schema}, Tensor(a!) state) -> (Tensor, Tensor)",
                         state_impl, fake_output_and_snapshot)

    def launch_seeded(x, p, source, key, offset, seeds, extra, grad):
        if torch.compiler.is_compiling():
            y = None if traced is None else traced(x, p, source, key, offset, seeds, extra)
            return seeded_op(x, p, source, key, offset, seeds, extra, grad) if y is None else y
        return seeded_impl(x, p, source, key, offset, seeds, extra, grad)

    def forward_pass(ctx, x, p, source, key, offset, seeds, extra):
        ctx.p, ctx.source, ctx.key, ctx.offset, ctx.extra = p, source, key, offset, extra
        if drops_everything(p):
            return everything_dropped(x, p), None
        if source == STATE:
            y, snapshot = launch(state_op, state_impl, x, p, extra, seeds)
            ctx.mark_non_differentiable(snapshot)
            ctx.save_for_backward(snapshot)
            return y, snapshot
        ctx.save_for_backward(seeds)  # None, a 0-d key or one key per row
        return launch_seeded(x, p, source, key, offset, seeds, extra, False), None

    def backward_pass(ctx, grad_out, _grad_snapshot):
        nones = (None,) * 6
        if drops_everything(ctx.p):  # forward saved nothing
            return (torch.zeros_like(grad_out), *nones)
        (seeds,) = ctx.saved_tensors
        source = SNAPSHOT if ctx.source == STATE else ctx.source
        grad_in = launch_seeded(grad_out, ctx.p, source, ctx.key, ctx.offset, seeds, ctx.extra, True)
        return (grad_in, *nones)

    function = type(f"{name}_function", (torch.autograd.Function,), {
        "__doc__": seeded_ops.__doc__, "forward": staticmethod(forward_pass), "backward": staticmethod(backward_pass),
    })
    eager_apply = FUNCTION_APPLY.__get__(None, function)

    def run(x, p, stream, extra):
        """The op's output (a FROM_TORCH stream drawn first). Eager calls skip Function.apply's Python
        wrapper (argument binding and functorch's unwrapping, which costs per argument): the drop-in's
        host time per call. torch.compile and functorch transforms take the wrapper."""
        args = (x, p, *drawn(stream, x, p), extra)
        if torch.compiler.is_compiling() or torch._C._are_functorch_transforms_active():
            return function.apply(*args)[0]
        return eager_apply(*args)[0]

    function.seeded_op, function.seeded_impl, function.run = seeded_op, seeded_impl, staticmethod(run)
    function.launch_seeded = staticmethod(launch_seeded)
    return function


#: The C implementation under torch.autograd.Function.apply's Python wrapper.
FUNCTION_APPLY = torch._C._FunctionBase.__dict__["apply"]


def launch(custom_op, impl, *args):
    """custom_op(*args) while torch.compile traces, impl(*args) otherwise (same result)."""
    if torch.compiler.is_compiling():
        return custom_op(*args)
    return impl(*args)


#: DROPBENCH_TRITON_JIT_LAUNCH=1 (read at import) launches every kernel through Triton's own path.
_JIT_LAUNCH_FORCED = os.environ.get("DROPBENCH_TRITON_JIT_LAUNCH", "0") == "1"


def _hooks_set() -> bool:
    """Whether a profiler asked Triton for launch hooks, which only Triton's own path calls.

    Triton keeps them in HookChains (never None): a chain with no calls is no hook.
    """
    return bool(_hook_calls(_KNOBS.launch_enter_hook) or _hook_calls(_KNOBS.launch_exit_hook))


def _hook_calls(hook):
    return getattr(hook, "calls", hook)


try:
    from triton import knobs as _triton_knobs

    _KNOBS = _triton_knobs.runtime
except ImportError:  # an older Triton without knobs: no hooks to honour
    _KNOBS = type("NoKnobs", (), {"launch_enter_hook": None, "launch_exit_hook": None})


def _specialization(args: tuple, unspecialized: frozenset) -> tuple:
    """What Triton specializes a kernel on, for the runtime args (see the module docstring)."""
    key = []
    for index, arg in enumerate(args):
        if isinstance(arg, torch.Tensor):
            key.append((arg.dtype, arg.data_ptr() % 16 == 0))
        elif isinstance(arg, bool) or not isinstance(arg, int):
            key.append(type(arg))
        elif index in unspecialized:
            key.append(INT32_MIN <= arg <= INT32_MAX)
        else:
            key.append((arg == 1, arg % 16 == 0, INT32_MIN <= arg <= INT32_MAX))
    return tuple(key)


def autotuned_launcher(kernel, cpu_config, *, restore: tuple[str, ...] = (), **autotune_kwargs) -> "KernelLauncher":
    """A KernelLauncher over triton.autotune(**autotune_kwargs)(kernel), timed by autotune_bench.

    restore: the pointer arguments that a benchmarking launch changes and the autotuner must put
    back (an RNG state it advances, an output written in place). Restoring clones them at every
    benchmarking launch, so only the launches that change them take a restoring launcher; the
    others pass x itself for unused pointers and copy nothing.
    """
    import triton

    params = getattr(kernel, "params", [])
    constexpr_names = {param.name for param in params if param.is_constexpr}
    runtime_key = [name for name in autotune_kwargs.pop("key") if name not in constexpr_names]
    tuned_names = {name for config in autotune_kwargs["configs"] for name in config.kwargs}
    variant_names = [param.name for param in params if param.is_constexpr and param.name not in tuned_names]
    autotuned = triton.autotune(do_bench=autotune_bench, restore_value=list(restore) or None,
                                key=[*runtime_key, *variant_names], **autotune_kwargs)(kernel)
    return KernelLauncher(kernel, autotuned, cpu_config=cpu_config, runtime_key=runtime_key)


class KernelLauncher:
    """Launches one @triton.jit `kernel` with a given config or, when none is given: on the CPU
    (the interpreter) with `cpu_config`; on a GPU with `gpu_config`, or else with the choice of
    `autotuned` (a triton.autotune over the same kernel), asked once per autotune key.

    `last_config` is the config of the latest launch; `last_launch` orders launches across launchers.
    The kernel's constexpr parameters must come after all its runtime parameters.
    """

    _launches = itertools.count(1)

    def __init__(self, kernel, autotuned=None, *, cpu_config=None, gpu_config=None, runtime_key=None):
        self.kernel, self.autotuned = kernel, autotuned
        self.cpu_config, self.gpu_config = cpu_config, gpu_config
        # The autotuner's key arguments (runtime_key: those of them that are not constexprs);
        # with x's dtype (args[0]) and the constexprs they make our key.
        key_names = autotuned.keys if autotuned and runtime_key is None else runtime_key
        if autotuned and not key_names:
            name = getattr(kernel, "__name__", "kernel")
            raise ValueError(f"{name}: runtime_key must name at least one runtime argument, "
                             f"one of {list(autotuned.arg_names)}")
        self.key_of = operator.itemgetter(*[autotuned.arg_names.index(name) for name in key_names]) \
            if autotuned else None
        self.last_config, self.last_launch = None, 0
        self._chosen: dict[tuple, object] = {}
        self._compiled: dict[tuple, CompiledLaunch] = {}
        params = getattr(kernel, "params", [])  # the CPU interpreter's kernels have none: it never takes the C path
        self._constexpr_names = [param.name for param in params if param.is_constexpr]
        self._runtime_count = len(params) - len(self._constexpr_names)
        if any(param.is_constexpr for param in params[: self._runtime_count]):
            raise TypeError(f"{kernel.__name__}: constexpr parameters must come after the runtime ones")
        self._unspecialized = frozenset(index for index, param in enumerate(params) if param.do_not_specialize)

    def __call__(self, grid: Grid, args: tuple, constexprs: dict, config=None):
        """kernel[grid(meta)](*args, **constexprs, **meta), meta = config or the default (see the class).

        args[0] must be a tensor: its dtype is part of the key, and its device is where the kernel runs.
        Returns the CompiledLaunch that ran, or None where Triton's own path ran (tuning, compiling,
        the CPU interpreter, profiler hooks): what a caller may keep for repeat launches.
        """
        device_index = args[0].get_device()  # -1 on the CPU
        if config is None:
            config = self.cpu_config if device_index < 0 else self.gpu_config
        if device_index >= 0 and several_gpus() and device_index != torch.cuda.current_device():
            # Triton launches on the current device; torch ops follow their tensors, and so do we.
            with torch.cuda.device(device_index):
                return self._launch(grid, args, constexprs, config, device_index)
        return self._launch(grid, args, constexprs, config, device_index)

    def _launch(self, grid, args, constexprs, config, device_index):
        self.last_launch = next(KernelLauncher._launches)
        if config is None:
            shape_key = (self.key_of(args), args[0].dtype)
            variant = tuple(sorted(constexprs.items()))  # (name, value) pairs: whatever order the caller used
            config = self._chosen.get((*shape_key, variant))
            if config is None and device_index >= 0 and torch.cuda.is_current_stream_capturing():
                config = self._sibling_choice(shape_key, variant)  # see the module docstring
            if config is None:
                self.autotuned[grid](*args, **constexprs)  # benchmarks the configs the first time
                self._chosen[(*shape_key, variant)] = self.last_config = self.autotuned.best_config
                return None
        self.last_config = config
        meta = config.kwargs
        if device_index < 0:
            self.kernel[grid(meta)](*args, **constexprs, **config.all_kwargs())
            return None
        key = self._compiled_key(device_index, config, constexprs, args)
        compiled = self._compiled.get(key)
        if compiled is not None and direct_launch_allowed():
            launch = compiled.at(grid(meta)[0])
            launch(device_index, *args)
            return launch
        kernel = self.kernel[grid(meta)](*args, **constexprs, **config.all_kwargs())
        if compiled is None and hasattr(kernel, "packed_metadata"):
            values = {**constexprs, **meta}
            constexpr_values = tuple(values[name] for name in self._constexpr_names)
            self._compiled[key] = CompiledLaunch(kernel, constexpr_values, config)
        return None

    def _compiled_key(self, device_index, config, constexprs, args) -> tuple:
        """What picks a kept compiled kernel. The cache holds `config` itself, so its id stays unique while
        the entry lives; constexprs as (name, value) pairs: equal values under other names are another kernel."""
        return device_index, id(config), tuple(constexprs.items()), _specialization(args, self._unspecialized)

    def _sibling_choice(self, shape_key: tuple, variant: tuple):
        """The choice of the tuned variant of this shape that shares most constexpr values with `variant`."""
        # Shared (name, value) pairs, not positions: variants may pass different sets of constexprs.
        siblings = [(len(set(key[2]) & set(variant)), config)
                    for key, config in self._chosen.items() if key[:2] == shape_key]
        if not siblings:
            name = getattr(self.kernel, "__name__", "kernel")
            raise RuntimeError(f"{name}: a shape first launched inside CUDA-graph capture, where "
                               "the autotuner cannot run (it synchronizes): call it once outside capture first")
        return max(siblings, key=lambda sibling: sibling[0])[1]


class CompiledLaunch:
    """One specialization's compiled kernel, launched through its C launcher (see the module docstring)."""

    __slots__ = ("kernel", "run", "function", "packed_metadata", "constexpr_values", "config", "grid0")

    def __init__(self, kernel, constexpr_values: tuple, config, grid0: int = 0):
        self.kernel, self.run, self.function = kernel, kernel.run, kernel.function
        self.packed_metadata = kernel.packed_metadata
        self.constexpr_values, self.config, self.grid0 = constexpr_values, config, grid0

    def at(self, grid0: int) -> "CompiledLaunch":
        """The same kernel over a 1-D grid of grid0 programs."""
        launch = object.__new__(CompiledLaunch)  # on every compiled launch: cheaper than copy.copy
        launch.kernel, launch.run, launch.function = self.kernel, self.run, self.function
        launch.packed_metadata = self.packed_metadata
        launch.constexpr_values, launch.config, launch.grid0 = self.constexpr_values, self.config, grid0
        return launch

    def __call__(self, device_index: int, *args) -> None:
        stream = torch._C._cuda_getCurrentRawStream(device_index)
        self.run(self.grid0, 1, 1, stream, self.function, self.packed_metadata, None, None, None,
                 *args, *self.constexpr_values)


class RepeatLaunches:
    """Launches already made, by call signature: the compiled kernel and the arguments the
    signature fixes, so that a repeated call skips every host-side decision.

    The per-call arguments are the kernels' first six, (x, out, seeds, snapshot, key, offset);
    the signature holds everything else that decides the launch, including what Triton
    specializes on: x's layout, dtype and alignment, the key's width, the seeds' alignment,
    and what the offset decides (offset_class).
    """

    PER_CALL_ARGS, MAX_ENTRIES = 6, 4096

    def __init__(self):
        self._launches: dict[tuple, tuple] = {}
        track_kept_launches(self)

    def clear(self) -> None:
        """Forget every kept launch: the next call of each signature takes the launcher again."""
        self._launches.clear()

    @staticmethod
    def signature(x: torch.Tensor, p: float, stream, *extra) -> tuple | None:
        """The call's signature, or None where repeat launches don't apply: not on a GPU, per-row
        keys, an offset whose kernel choice it can't tell (offset_class), or profiler hooks
        (Triton's own path must run)."""
        if not x.is_cuda or stream.source == ROW_KEYS or not direct_launch_allowed():
            return None
        offset_class = RepeatLaunches.offset_class(stream.offset, x.numel())
        if offset_class is None:
            return None
        seeds_alignment = None if stream.seeds is None else stream.seeds.data_ptr() % 16
        return (x.shape, x.stride(), x.dtype, x.data_ptr() % 16, x.get_device(), p, stream.source,
                INT32_MIN <= stream.key <= INT32_MAX, seeds_alignment, offset_class, *extra)

    @staticmethod
    def offset_class(offset: int, numel: int) -> tuple | None:
        """What the kernel choice takes from a stream offset (torch's generator gives every eager call
        one): whether it starts a Philox counter (ALIGNED), and whether it makes the stream indices
        wide. Offsets with offset + numel in int32 are narrow for every op, offsets past int32 wide
        (and an int64 argument); in between, the answer depends on the op's mask size: None."""
        if offset + numel <= INT32_MAX:
            return offset % 8 == 0, False
        if offset > INT32_MAX:
            return offset % 8 == 0, True
        return None

    def try_launch(self, signature: tuple, x: torch.Tensor, out: torch.Tensor, stream, snapshot) -> bool:
        """Launch the kept kernel for this signature, if there is one; unused pointers get x (see stream_args)."""
        repeat = self._launches.get(signature)
        if repeat is None:
            return False
        launch, fixed_args = repeat
        seeds = x if stream.seeds is None else stream.seeds
        args = (x, out, seeds, x if snapshot is None else snapshot, stream.key, stream.offset, *fixed_args)
        device_index = x.get_device()
        if several_gpus() and device_index != torch.cuda.current_device():
            with torch.cuda.device(device_index):  # the kernel was loaded in x's device's context
                launch(device_index, *args)
        else:
            launch(device_index, *args)
        return True

    def remember(self, signature: tuple, launched, args: tuple) -> None:
        """Keep `launched`, the CompiledLaunch a KernelLauncher returned for `args` (None: nothing to keep)."""
        if launched is None:
            return
        if len(self._launches) >= self.MAX_ENTRIES:
            self._launches.clear()
        self._launches[signature] = (launched, args[self.PER_CALL_ARGS:])


_KEPT_LAUNCHES = weakref.WeakSet()


def track_kept_launches(cache) -> None:
    """Register a cache of kept launches (a RepeatLaunches, a hot_path.HotLaunches; anything with
    clear()) for forget_kept_launches."""
    _KEPT_LAUNCHES.add(cache)


def forget_kept_launches() -> None:
    """Clear every kept launch, so each op's next call goes through its launcher (which keeps the
    autotuner's choice). The bench runner calls it before each point: that point's first call then
    reports the config its kernels run with (chosen_config), not one another row left behind."""
    for cache in list(_KEPT_LAUNCHES):
        cache.clear()


@functools.cache
def several_gpus() -> bool:
    return torch.cuda.is_available() and torch.cuda.device_count() > 1


def direct_launch_allowed() -> bool:
    """Whether launches may skip Triton's own path: no profiler hooks, not switched off."""
    return not (_JIT_LAUNCH_FORCED or _hooks_set())


def latest_config(*launchers: KernelLauncher):
    """The config of whichever of `launchers` launched last (None before any launch)."""
    return max(launchers, key=lambda launcher: launcher.last_launch).last_config


#: Meta-parameters that follow from the others and the shape, not an autotuner's choice (the runs
#: kernel's COUNTERS: layout.runs_counters). describe_config leaves them out, so the CSV's config
#: names the choice alone and reads the same across versions that derive them.
DERIVED_META = frozenset({"COUNTERS"})


def describe_config(config) -> str:
    """A triton.Config's choice as 'BLOCK=4096 num_warps=8', for the results CSV (DERIVED_META left out)."""
    if config is None:
        return ""
    parts = [f"{name}={value}" for name, value in sorted(config.kwargs.items()) if name not in DERIVED_META]
    return " ".join(parts + [f"num_warps={config.num_warps}"])
