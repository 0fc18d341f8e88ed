"""kernels.runtime: the autotuner is asked once per autotune key, then its choice is launched directly.

Stand-ins for the kernel and the autotuner record which path each launch took; the real
kernels go through the KernelLauncher in every kernel test (on the GPU with the autotuner).
"""

import pytest
import torch
import triton

from dropbench.kernels.hot_path import HotLaunches
from dropbench.kernels.runtime import KernelLauncher, RepeatLaunches, forget_kept_launches, latest_config

CHOICE = triton.Config({"BLOCK": 64}, num_warps=4)


class FakeKernel:
    """A @triton.jit stand-in for kernel(x_ptr, seed, n, FLAG: constexpr, BLOCK: constexpr)."""

    def __init__(self, launches):
        self.launches = launches

    def __getitem__(self, grid):
        return lambda *args, **kwargs: self.launches.append(("kernel", grid, args, kwargs))


class FakeAutotuned:
    """A triton.autotune stand-in keyed on n: records that it was asked, and chooses CHOICE."""

    arg_names = ("x_ptr", "seed", "n")
    keys = ("n",)

    def __init__(self, launches):
        self.launches = launches
        self.best_config = None

    def __getitem__(self, grid):
        def run(*args, **kwargs):
            self.best_config = CHOICE
            self.launches.append(("autotuner", grid(CHOICE.kwargs), args, kwargs))

        return run


@pytest.fixture
def launches():
    return []


@pytest.fixture
def launcher(launches):
    return KernelLauncher(FakeKernel(launches), FakeAutotuned(launches))


def _launch(launcher, x, seed, n, config=None, flag=True):
    launcher(lambda meta: (triton.cdiv(n, meta["BLOCK"]),), (x, seed, n), {"FLAG": flag}, config)


def test_the_autotuner_is_asked_once_per_key_then_its_choice_is_launched(launcher, launches):
    x = torch.zeros(256)
    _launch(launcher, x, 7, 256)
    _launch(launcher, x, 8, 256)  # another seed: not in the key
    assert [launch[0] for launch in launches] == ["autotuner", "kernel"]
    assert launches[1][1:] == ((4,), (x, 8, 256), {"FLAG": True, **CHOICE.all_kwargs()})
    assert launcher.last_config is CHOICE


@pytest.mark.parametrize("change", ["key value", "dtype", "kernel variant"])
def test_a_new_autotune_key_asks_the_autotuner_again(launcher, launches, change):
    """A constexpr (a kernel variant: a 64-bit stream index, say) is part of the key: its best config may differ."""
    x = torch.zeros(256)
    _launch(launcher, x, 7, 256)
    if change == "key value":
        _launch(launcher, x, 7, 128)
    elif change == "dtype":
        _launch(launcher, x.double(), 7, 256)
    else:
        _launch(launcher, x, 7, 256, flag=False)
    assert [launch[0] for launch in launches] == ["autotuner", "autotuner"]


def test_a_given_config_is_launched_without_the_autotuner(launcher, launches):
    config = triton.Config({"BLOCK": 128}, num_warps=8)
    _launch(launcher, torch.zeros(256), 7, 256, config=config)
    assert launches == [("kernel", (2,), launches[0][2], {"FLAG": True, **config.all_kwargs()})]
    assert launcher.last_config is config


def test_without_a_config_the_cpu_takes_cpu_config_and_no_autotuner(launches):
    """Under the interpreter every call is slow Python: the launcher's fixed CPU config, never a tuning run."""
    cpu_config = triton.Config({"BLOCK": 256}, num_warps=4)
    launcher = KernelLauncher(FakeKernel(launches), FakeAutotuned(launches), cpu_config=cpu_config)
    _launch(launcher, torch.zeros(256), 7, 256)
    assert [launch[0] for launch in launches] == ["kernel"]
    assert launcher.last_config is cpu_config


def test_latest_config_is_the_config_of_whichever_launcher_launched_last(launches):
    first, second = (triton.Config({"BLOCK": block}, num_warps=4) for block in (128, 256))
    tiles, runs = KernelLauncher(FakeKernel(launches)), KernelLauncher(FakeKernel(launches))
    assert latest_config(tiles, runs) is None, "no launch yet: no config"
    _launch(tiles, torch.zeros(256), 7, 256, config=first)
    _launch(runs, torch.zeros(256), 7, 256, config=second)
    assert latest_config(tiles, runs) is second
    _launch(tiles, torch.zeros(256), 7, 256, config=first)
    assert latest_config(tiles, runs) is first


def test_forget_kept_launches_empties_every_cache_of_kept_launches():
    repeats, hot = RepeatLaunches(), HotLaunches()
    repeats._launches["signature"] = ("launch", ())
    hot._launches["input class"] = "kept"
    forget_kept_launches()
    assert repeats._launches == {} and hot._launches == {}



def test_a_variant_first_met_in_capture_takes_the_closest_tuned_siblings_choice(launcher):
    """Tuning synchronizes, which CUDA-graph capture forbids: a new variant of a tuned shape launches the
    choice of the tuned variant that shares most constexprs; a shape never tuned says what to do."""
    close, far = (triton.Config({"BLOCK": block}, num_warps=4) for block in (128, 256))
    shape = ((256,), torch.float32)
    # The far sibling first, so a choice that takes the first (or last) tuned sibling fails one of the two.
    launcher._chosen[(*shape, (("A", 2), ("B", 2), ("FLAG", True)))] = far
    launcher._chosen[(*shape, (("A", 1), ("B", 1), ("FLAG", True)))] = close
    launcher._chosen[(*shape, (("A", 3), ("B", 3), ("FLAG", True)))] = far
    assert launcher._sibling_choice(shape, (("A", 1), ("B", 1), ("FLAG", False))) is close
    with pytest.raises(RuntimeError, match="call it once outside capture first"):
        launcher._sibling_choice(((512,), torch.float32), (("A", 1), ("B", 1), ("FLAG", False)))


@pytest.mark.gpu
def test_autotuned_launchers_key_the_tuner_on_the_variant_constexprs():
    """Every constexpr that no config sets is in the Triton autotuner's key, so each variant is tuned
    (a GPU test: the CPU interpreter's kernels list no parameters)."""
    from dropbench.kernels import element, variational

    assert element._rows.autotuned.keys == ["rows", "cols", "x_row_stride", "SOURCE", "ALIGNED", "WIDE_INDEX",
                                            "WIDE_STREAM"]
    assert "BLOCK_D" not in variational._locked.autotuned.keys and "SOURCE" in variational._locked.autotuned.keys


def test_the_closest_sibling_is_found_by_shared_constexprs_not_by_position(launcher):
    """Variants that pass different sets of constexprs: the sibling sharing most (name, value) pairs wins."""
    close, far = (triton.Config({"BLOCK": block}, num_warps=4) for block in (128, 256))
    shape = ((256,), torch.float32)
    launcher._chosen[(*shape, (("B", 1), ("D", 1)))] = far  # shares B=1, and B=1 sits first as in the query
    launcher._chosen[(*shape, (("A", 0), ("B", 1), ("C", 1)))] = close  # shares B=1 and C=1, at other positions
    assert launcher._sibling_choice(shape, (("B", 1), ("C", 1))) is close


def test_kept_compiled_kernels_are_told_apart_by_constexpr_names(launcher):
    """Two variants passing equal values under other names compile to different kernels."""
    x = torch.zeros(256)
    first = launcher._compiled_key(0, CHOICE, {"FLAG": True, "WIDE": False}, (x, 7, 256))
    second = launcher._compiled_key(0, CHOICE, {"WIDE": True, "FLAG": False}, (x, 7, 256))
    assert first != second
    assert first == launcher._compiled_key(0, CHOICE, {"FLAG": True, "WIDE": False}, (x, 8, 256))


def test_an_autotuned_launcher_needs_a_runtime_key(launches):
    with pytest.raises(ValueError, match="runtime_key must name at least one runtime argument"):
        KernelLauncher(FakeKernel(launches), FakeAutotuned(launches), runtime_key=[])
