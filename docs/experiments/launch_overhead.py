"""Host time per call (launch overhead) of each backend at 1 x 49152 fp16, forward and fwd+bwd.

The GPU work of such a call is ~5 us; what the host spends issuing it decides what
do_bench sees at small shapes. Calls are issued back to back without synchronising,
so the loop time per call is the host-side cost (the GPU keeps up).
Usage: python docs/experiments/launch_overhead.py
"""

import time

import torch

from bench.registry import REGISTRY
from bench.schema import OPS

CALLS = 2000


def host_us(fn) -> float:
    for _ in range(50):
        fn()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(CALLS):
        fn()
    elapsed = time.perf_counter() - start
    torch.cuda.synchronize()
    return elapsed / CALLS * 1e6


def main() -> None:
    x = torch.randn(1, 49152, device="cuda", dtype=torch.float16, requires_grad=True)
    grad = torch.randn_like(x)
    print(f"{torch.cuda.get_device_name()}: host microseconds per call, 1 x 49152 fp16")
    for (op, backend), impl in REGISTRY.items():
        if op not in OPS:
            continue
        fwd = host_us(lambda: impl(x, 0.5, 1234, 0))
        both = host_us(lambda: torch.autograd.grad(impl(x, 0.5, 1234, 0), x, grad))
        print(f"{op:12s} {backend:20s} fwd {fwd:7.1f} us   fwd+bwd {both:7.1f} us")


if __name__ == "__main__":
    main()
