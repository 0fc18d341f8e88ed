"""Timers: median, p20 and p80 of one call, in milliseconds, and how many samples they come from.

do_bench: triton.testing.do_bench (it warms up, and flushes L2 between repeats).
cudagraph: the call captured once in a CUDA graph and replayed, for small shapes
where launch overhead hides the kernel; Triton's do_bench_cudagraph does not
flush L2 between replays, so this one does, outside the graph.
cpu: wall clock around single calls; labelled as such, never passed off as a GPU time.
host: the Python (host) time per call: rounds of host_calls back-to-back calls, the clock
stopped before the one synchronize that ends each round, so only the host's side of the
call is counted (issue 15: the drop-in must cost no more host time than F.dropout). Each
round starts behind a GPU sleep twice as long as the callable's fastest round so far, so
the calls queue up behind it and never wait for the GPU, and a kernel config that is slow
on the GPU (the autotuner's choice differs between runs) can't leak into the host time
(issue 22: variational host rows moved by 18% between runs with different configs). The
fastest round, not the last: a round that did wait includes the sleep, and must not
lengthen the next hold. Given a reference (the runner gives F.dropout's step), the rounds alternate with the reference's, and each round's time over
the next reference round's is a ratio that a slower or faster host leaves alone (issue 22:
raw host times moved by -46% to +71% between two runs of unchanged code).
Every timer takes a `build` that returns the callable, so the CUDA-graph timer
can build it on its capture stream (autograd runs backward on the forward's stream).
"""

from __future__ import annotations

import inspect
import time
from dataclasses import dataclass, replace
from typing import Callable

import torch

GRAPH_WARMUP_CALLS = 3
#: Untimed (flush, replay) rounds before the timed ones: after the host-bound capture the
#: GPU has idled and its clocks are down; timing straight away mixed slow and fast replays.
GRAPH_WARMUP_REPLAYS = 20


@dataclass(frozen=True)
class Timing:
    median: float
    p20: float | None
    p80: float | None
    samples: int | None = None  # timed calls (do_bench, cudagraph, cpu) or rounds (host) behind the quantiles
    reference: Timing | None = None  # host with a reference: the reference's host time per call
    ratio: Timing | None = None      # host with a reference: the per-round ratio own / reference


def measure(build: Callable[[], Callable[[], object]], timer: str, timing,
            reference: Callable[[], Callable[[], object]] | None = None) -> Timing:
    """Time the callable that build() returns with `timer` (do_bench | cudagraph | cpu | host);
    the host timer times reference()'s callable too, in alternate rounds, where one is given."""
    quantiles = [float(q) for q in timing.quantiles]
    if timer == "do_bench":
        return do_bench(build(), int(timing.warmup_ms), int(timing.rep_ms), quantiles)
    if timer == "cudagraph":
        return cuda_graph(build, int(timing.cudagraph_reps), int(timing.l2_flush_mb) << 20, quantiles)
    if timer == "cpu":
        return cpu(build(), int(timing.cpu_warmup), int(timing.cpu_reps), quantiles)
    if timer == "host" and reference is not None:
        return host_against(build(), reference(), int(timing.host_calls), int(timing.host_rounds), quantiles)
    if timer == "host":
        return host(build(), int(timing.host_calls), int(timing.host_rounds), quantiles)
    raise ValueError(f"unknown timer {timer!r}")


def do_bench(fn, warmup_ms: int, rep_ms: int, quantiles: list[float]) -> Timing:
    """triton.testing.do_bench by keyword, across Triton versions: every sample where it returns them."""
    from triton.testing import do_bench as triton_do_bench

    parameters = inspect.signature(triton_do_bench).parameters
    if "return_mode" in parameters:
        times = triton_do_bench(fn, warmup=warmup_ms, rep=rep_ms, return_mode="all")
        if isinstance(times, (list, tuple)):
            return _summary(list(times), quantiles)
    if "quantiles" in parameters:
        result = triton_do_bench(fn, warmup=warmup_ms, rep=rep_ms, quantiles=quantiles)
    elif "percentiles" in parameters:
        result = triton_do_bench(fn, warmup=warmup_ms, rep=rep_ms, percentiles=quantiles)
    else:
        result = triton_do_bench(fn, warmup=warmup_ms, rep=rep_ms)
    if isinstance(result, (int, float)):
        return Timing(float(result), None, None)  # a Triton that returns one summary number
    median, low, high = (float(value) for value in list(result)[:3])
    return Timing(median, low, high)


def cuda_graph(build, reps: int, flush_bytes: int, quantiles: list[float]) -> Timing:
    """Capture build()'s callable in a CUDA graph; time `reps` replays, each after an L2 flush."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        # Warm up on a side stream before capture, as the torch docs ask (lazy init, autotune, compile).
        fn = build()
        for _ in range(GRAPH_WARMUP_CALLS):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, stream=side):
        fn()
    flush = torch.empty(flush_bytes, dtype=torch.int8, device="cuda")
    for _ in range(GRAPH_WARMUP_REPLAYS):
        flush.zero_()
        graph.replay()
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    for start, end in zip(starts, ends):
        flush.zero_()  # outside the graph and outside the timed span
        start.record()
        graph.replay()
        end.record()
    torch.cuda.synchronize()
    times = [start.elapsed_time(end) for start, end in zip(starts, ends)]
    del graph
    return _summary(times, quantiles)


def cpu(fn, warmup: int, reps: int, quantiles: list[float]) -> Timing:
    """Wall-clock milliseconds of single calls on the CPU."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(max(reps, 1)):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return _summary(times, quantiles)


def host(fn, calls: int, rounds: int, quantiles: list[float]) -> Timing:
    """Milliseconds of host time per call: `rounds` rounds of `calls` calls, each round's clock
    stopped before its synchronize, each round behind a GPU sleep (hold; see the module docstring)."""
    synchronize = _synchronize()
    hold = gpu_hold()
    fn()  # a first call that compiles or autotunes is no host cost of later calls
    synchronize()
    round_ms = host_round(fn, calls, time.perf_counter, synchronize) * calls  # untimed: sizes the first hold
    times = []
    for _ in range(max(rounds, 1)):
        times.append(host_round(fn, calls, time.perf_counter, synchronize, hold, 2 * round_ms))
        round_ms = min(round_ms, times[-1] * calls)
    return _summary(times, quantiles)


def host_against(fn, reference, calls: int, rounds: int, quantiles: list[float],
                 clock: Callable[[], float] = time.perf_counter, synchronize=None) -> Timing:
    """host(fn), its rounds alternating with rounds of `reference`: fn's Timing, holding the
    reference's and the per-round ratio fn / reference (each fn round over the reference round after it).

    Adjacent rounds run at the same host speed, so their ratio does not move with it.
    """
    synchronize = synchronize or _synchronize()
    hold = gpu_hold()
    for call in (fn, reference):
        call()  # first calls compile or autotune
    synchronize()
    # Untimed rounds that size the first holds (each hold: twice the callable's fastest round so far).
    own_ms, ref_ms = (host_round(call, calls, clock, synchronize) * calls for call in (fn, reference))
    own, ref = [], []
    for _ in range(max(rounds, 1)):
        own.append(host_round(fn, calls, clock, synchronize, hold, 2 * own_ms))
        ref.append(host_round(reference, calls, clock, synchronize, hold, 2 * ref_ms))
        own_ms, ref_ms = min(own_ms, own[-1] * calls), min(ref_ms, ref[-1] * calls)
    ratios = [mine / theirs for mine, theirs in zip(own, ref)]
    return replace(_summary(own, quantiles), reference=_summary(ref, quantiles), ratio=_summary(ratios, quantiles))


def host_round(fn, calls: int, clock: Callable[[], float], synchronize, hold=None, hold_ms: float = 0.0) -> float:
    """Host milliseconds per call over `calls` back-to-back calls, started behind hold(hold_ms) where
    given; the synchronize after the clock stops."""
    if hold is not None:
        hold(hold_ms)
    start = clock()
    for _ in range(calls):
        fn()
    elapsed = (clock() - start) * 1e3 / calls
    synchronize()
    return elapsed


#: GPU clock cycles per millisecond that a hold asks to sleep: 2 GHz, at or above the SM clock of
#: the GPUs this runs on, so a hold lasts at least as long as asked.
SLEEP_CYCLES_PER_MS = 2_000_000
#: A hold never sleeps longer than this (ms): a host round is a few ms.
MAX_HOLD_MS = 200.0


def gpu_hold() -> Callable[[float], None] | None:
    """hold(ms): keep the current CUDA stream busy for at least ms (torch.cuda._sleep), so launches
    queued behind it return at once; None without CUDA (nothing to wait for)."""
    if not torch.cuda.is_available():
        return None
    return lambda ms: torch.cuda._sleep(int(min(ms, MAX_HOLD_MS) * SLEEP_CYCLES_PER_MS))


def _synchronize() -> Callable[[], None]:
    return torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)


def _summary(times: list[float], quantiles: list[float]) -> Timing:
    median, low, high = (quantile(times, q) for q in quantiles[:3])
    return Timing(median, low, high, len(times))


def quantile(values: list[float], q: float) -> float:
    """The q-quantile with linear interpolation (numpy's default), without numpy."""
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    below = int(position)
    above = min(below + 1, len(ordered) - 1)
    return ordered[below] + (ordered[above] - ordered[below]) * (position - below)
