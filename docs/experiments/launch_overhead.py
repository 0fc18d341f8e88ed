"""Where the host time of one dropout call goes, and what do_bench sees of it (issue 6).

Part A: host microseconds per call, layer by layer, at 1 x 49152 fp16 (the GPU work is ~5 us,
so calls issued back to back without synchronising measure the host's cost: the GPU keeps up).
Part B: do_bench against the CUDA-graph timer (GPU work only) at mid shapes, for the copy, the
Triton kernels and eager, every direction: where do_bench reads more than the graph, the
host is what do_bench timed.
Part C: a pure-Python loop, to compare this host's Python speed with another machine's.
With AUTOGRAD_THREADS=0 everything runs under torch.autograd.set_multithreading_enabled(False):
backward then runs on the calling thread instead of autograd's CUDA device thread.
Usage: [AUTOGRAD_THREADS=0] python docs/experiments/launch_overhead.py [rows ...]
"""

import os
import sys
import time
from types import SimpleNamespace

import torch
import torch.nn.functional as F
import triton

import kernels
from bench.steps import calls_for, make_step
from bench.timing import measure
from kernels import seeded, variational
from kernels.contract import keep_threshold, scale_bits

CALLS = 2000
TIMING = SimpleNamespace(warmup_ms=25, rep_ms=100, quantiles=[0.5, 0.2, 0.8], cudagraph_reps=100, l2_flush_mb=256)


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


def part_a() -> None:
    x = torch.randn(1, 49152, device="cuda", dtype=torch.float16)
    xg = x.clone().requires_grad_()
    grad = torch.randn_like(x)
    out = torch.empty_like(x)
    flat, flat_out = x.view(1, -1), out.view(1, -1)
    threshold, bits = keep_threshold(0.5), scale_bits(0.5)
    args = (flat, flat_out, flat, 1234, threshold, bits, 1, flat.shape[1], flat.stride(0), flat_out.stride(0), 0)
    seeded.seeded_dropout_forward(x, 0.5, 1234)  # autotune once
    best = seeded._rows.last_config
    block = best.kwargs["BLOCK"]
    grid = (triton.cdiv(flat.shape[1], block),)

    def jit_launch():
        seeded._dropout_rows_kernel[grid](*args, PER_ROW_SEED=False, WIDE_INDEX=False,
                                          num_warps=best.num_warps, BLOCK=block)

    def autotuned_launch():
        seeded._dropout_rows_autotuned[lambda meta: (triton.cdiv(flat.shape[1], meta["BLOCK"]),)](
            *args, PER_ROW_SEED=False, WIDE_INDEX=False)

    def launcher_launch():
        seeded._rows(lambda meta: (triton.cdiv(flat.shape[1], meta["BLOCK"]),), args,
                     {"PER_ROW_SEED": False, "WIDE_INDEX": False})

    y_var = kernels.variational_dropout(xg, 0.5, 1234, 0)
    y_el = kernels.seeded_dropout(xg, 0.5, 1234)
    y_eager = F.dropout(xg, 0.5)
    layers = [
        ("torch.empty_like", lambda: torch.empty_like(x)),
        ("copy_ (reference)", lambda: out.copy_(x)),
        ("eager F.dropout, no grad", lambda: F.dropout(x, 0.5)),
        ("eager F.dropout, x requires grad", lambda: F.dropout(xg, 0.5)),
        ("triton: JIT launch, config given", jit_launch),
        ("triton: autotuned launch (cached)", autotuned_launch),
        ("kernels.launcher: cached choice", launcher_launch),
        ("seeded_dropout_forward", lambda: seeded.seeded_dropout_forward(x, 0.5, 1234)),
        ("seeded_dropout, no grad", lambda: kernels.seeded_dropout(x, 0.5, 1234)),
        ("seeded_dropout, x requires grad", lambda: kernels.seeded_dropout(xg, 0.5, 1234)),
        ("variational_dropout_forward", lambda: variational.variational_dropout_forward(x, 0.5, 1234, 0)),
        ("variational_dropout, x requires grad", lambda: kernels.variational_dropout(xg, 0.5, 1234, 0)),
        ("bwd only: eager", lambda: torch.autograd.grad(y_eager, xg, grad, retain_graph=True)),
        ("bwd only: seeded", lambda: torch.autograd.grad(y_el, xg, grad, retain_graph=True)),
        ("bwd only: variational", lambda: torch.autograd.grad(y_var, xg, grad, retain_graph=True)),
        ("fwd+bwd: eager", lambda: torch.autograd.grad(F.dropout(xg, 0.5), xg, grad)),
        ("fwd+bwd: seeded", lambda: torch.autograd.grad(kernels.seeded_dropout(xg, 0.5, 1234), xg, grad)),
        ("fwd+bwd: variational",
         lambda: torch.autograd.grad(kernels.variational_dropout(xg, 0.5, 1234, 0), xg, grad)),
    ]
    print(f"\n## A. host us per call, 1 x 49152 fp16 ({torch.cuda.get_device_name()}, "
          f"torch {torch.__version__}, triton {triton.__version__})")
    for name, fn in layers:
        print(f"{name:40s} {host_us(fn):8.1f} us")


def both_timers(build) -> dict:
    """Median ms of build()'s callable with do_bench and with the CUDA-graph timer."""
    return {timer: measure(build, timer, TIMING).median for timer in ("do_bench", "cudagraph")}


def part_b(rows_list) -> None:
    print("\n## B. do_bench vs CUDA graph, fp16 x 49152, ms (median) and % of copy")
    impls = {
        "eager": lambda x: F.dropout(x, 0.5),
        "triton_seeded": lambda x: kernels.seeded_dropout(x, 0.5, 1234),
        "triton_variational": lambda x: kernels.variational_dropout(x, 0.5, 1234, 0),
    }
    print(f"{'rows':>5} {'backend':20s} {'dir':8s} {'do_bench':>9} {'graph':>9} {'%copy db':>9} {'%copy gr':>9}")
    for rows in rows_list:
        x = torch.randn(rows, 49152, device="cuda", dtype=torch.float16)
        dst = torch.empty_like(x)
        copy = both_timers(lambda: lambda: dst.copy_(x))  # noqa: B023 (used before the loop moves on)
        print(f"{rows:5d} {'copy':20s} {'fwd':8s} {copy['do_bench']:9.4f} {copy['cudagraph']:9.4f}")
        grad = torch.randn_like(x)
        for backend, impl in impls.items():
            calls = calls_for(impl, x.clone(), inplace=False)
            for direction in ("fwd", "bwd", "fwd+bwd"):
                passes = 2 if direction == "fwd+bwd" else 1
                got = both_timers(lambda: make_step(direction, calls, grad))  # noqa: B023
                print(f"{rows:5d} {backend:20s} {direction:8s} {got['do_bench']:9.4f} {got['cudagraph']:9.4f} "
                      f"{100 * copy['do_bench'] * passes / got['do_bench']:9.1f} "
                      f"{100 * copy['cudagraph'] * passes / got['cudagraph']:9.1f}")

        torch.cuda.empty_cache()


def part_c() -> None:
    start = time.perf_counter()
    total = 0
    for i in range(2_000_000):
        total += i % 7
    print(f"\n## C. pure-Python loop of 2M iterations: {(time.perf_counter() - start) * 1e3:.0f} ms")


if __name__ == "__main__":
    threads = os.environ.get("AUTOGRAD_THREADS", "1") != "0"
    print(f"autograd multithreading: {threads}")
    with torch.autograd.set_multithreading_enabled(threads):
        part_c()
        part_a()
        part_b([int(rows) for rows in sys.argv[1:]] or [256, 1024, 4096])
