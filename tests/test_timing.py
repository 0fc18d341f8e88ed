"""bench.timing: every timer says how many samples it took; the host timer counts the host's time per call."""

import time

import pytest
from omegaconf import OmegaConf

from dropbench.bench import timing

QUANTILES = [0.5, 0.2, 0.8]


def test_cpu_timer_counts_its_samples():
    result = timing.cpu(lambda: None, warmup=1, reps=7, quantiles=QUANTILES)
    assert result.samples == 7, f"7 timed calls should be 7 samples, got {result.samples}"
    assert result.p20 <= result.median <= result.p80


def test_host_timer_gives_milliseconds_per_call_over_its_rounds():
    pause_s = 0.002

    def two_milliseconds():
        time.sleep(pause_s)

    result = timing.host(two_milliseconds, calls=5, rounds=4, quantiles=QUANTILES)
    assert result.samples == 4, "one sample per round"
    assert pause_s * 1e3 <= result.median < 10 * pause_s * 1e3, \
        f"{result.median} ms per call for a {pause_s * 1e3} ms call: not per call"


def test_host_timer_leaves_the_first_call_out():
    calls = []

    def slow_first():
        calls.append(None)
        if len(calls) == 1:
            time.sleep(0.2)  # a first call that compiles or autotunes

    result = timing.host(slow_first, calls=3, rounds=3, quantiles=QUANTILES)
    assert len(calls) == 1 + 3 * 3 and result.p80 < 50, f"the first call was timed: p80 {result.p80} ms"


def test_measure_dispatches_the_host_timer_by_name():
    settings = OmegaConf.create({"quantiles": QUANTILES, "host_calls": 2, "host_rounds": 3})
    assert timing.measure(lambda: (lambda: None), "host", settings).samples == 3


def test_an_unknown_timer_is_named():
    with pytest.raises(ValueError, match="unknown timer 'stopwatch'"):
        timing.measure(lambda: (lambda: None), "stopwatch", OmegaConf.create({"quantiles": QUANTILES}))
