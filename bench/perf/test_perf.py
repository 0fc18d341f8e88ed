"""Time every registered (op, backend) at representative shapes with pytest-benchmark.

Each round launches the op and waits for the GPU (torch.cuda.synchronize), so the
wall-clock time pytest-benchmark records is the whole GPU work of one call, launch
included. Warm-up rounds keep autotuning and torch.compile out of the numbers.
Compare with a stored run: `--benchmark-autosave` then
`--benchmark-compare --benchmark-compare-fail=median:10%`.
"""

import pytest
import torch

from dropbench.bench.registry import REGISTRY
from dropbench.bench.schema import CORE_OPS

ROWS = [1, 256, 8192]
COLS = 49152
DTYPES = {"fp16": torch.float16, "fp32": torch.float32}
P = 0.5
SEED = 1234
ROUNDS, WARMUP_ROUNDS = 30, 3


def synchronised(fn):
    """fn, then wait for the GPU: each benchmark round covers all the work it launched."""

    def run():
        fn()
        torch.cuda.synchronize()

    return run


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("rows", ROWS)
@pytest.mark.parametrize("op, backend", [key for key in REGISTRY if key[0] in CORE_OPS])
def test_forward(benchmark, op, backend, rows, dtype):
    impl = REGISTRY[(op, backend)]
    x = torch.randn(rows, COLS, device="cuda", dtype=DTYPES[dtype], requires_grad=True)
    benchmark.group = f"{op} {dtype} {rows}x{COLS} fwd"
    benchmark.extra_info.update(
        device=torch.cuda.get_device_name(), timer="wall clock, cuda-synchronised", numel=x.numel(), p=P
    )
    run = synchronised(lambda: impl(x, P, SEED, 0))
    benchmark.pedantic(run, rounds=ROUNDS, warmup_rounds=WARMUP_ROUNDS, iterations=1)
    benchmark.extra_info["config"] = impl.chosen_config()


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("rows", ROWS)
def test_copy_reference(benchmark, rows, dtype):
    """The device-to-device copy of the same tensor: the bandwidth limit the ops are read against."""
    x = torch.randn(rows, COLS, device="cuda", dtype=DTYPES[dtype])
    out = torch.empty_like(x)
    benchmark.group = f"copy {dtype} {rows}x{COLS}"
    benchmark.extra_info.update(device=torch.cuda.get_device_name(), timer="wall clock, cuda-synchronised")
    benchmark.pedantic(synchronised(lambda: out.copy_(x)), rounds=ROUNDS, warmup_rounds=WARMUP_ROUNDS, iterations=1)
