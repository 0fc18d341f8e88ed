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
    assert len(calls) == 1 + 3 + 3 * 3 and result.p80 < 50, f"the first call was timed: p80 {result.p80} ms"


def test_each_host_round_starts_behind_a_gpu_hold_twice_its_fastest_round(monkeypatch):
    """The calls of a round queue up behind a GPU sleep, so a slow kernel can't stall the host clock;
    the hold is twice the callable's fastest round so far (an untimed sizing round first), so a round
    that waited out a hold does not lengthen the next one."""
    host = DriftingHost(own=0.045, ref=0.015)
    holds = []
    monkeypatch.setattr(timing, "gpu_hold", lambda: (lambda ms: holds.append((host.order[-1], ms))))
    timing.host_against(host.implementation, host.reference, calls=3, rounds=4, quantiles=QUANTILES,
                        clock=host.clock, synchronize=host.synchronize)
    assert len(holds) == 2 * 4, "one hold before each timed round, none before the first calls"
    own_round_ms, ref_round_ms = 3 * 0.045, 3 * 0.015
    # The sizing round ran at half speed, the first timed round at full speed: from then on, full speed.
    assert [ms for _, ms in holds[0::2]] == pytest.approx([2 * own_round_ms * speed for speed in (2, 1, 1, 1)])
    assert [ms for _, ms in holds[1::2]] == pytest.approx([2 * ref_round_ms * speed for speed in (2, 1, 1, 1)])


def test_measure_dispatches_the_host_timer_by_name():
    settings = OmegaConf.create({"quantiles": QUANTILES, "host_calls": 2, "host_rounds": 3})
    assert timing.measure(lambda: (lambda: None), "host", settings).samples == 3


def test_an_unknown_timer_is_named():
    with pytest.raises(ValueError, match="unknown timer 'stopwatch'"):
        timing.measure(lambda: (lambda: None), "stopwatch", OmegaConf.create({"quantiles": QUANTILES}))


class DriftingHost:
    """A fake host: the implementation costs `own` ms and the reference `ref` ms at speed 1, and the
    host's speed halves and recovers every other round pair (a 2x swing, as issue 22 saw)."""

    def __init__(self, own: float, ref: float):
        self.now_ms, self.syncs, self.order = 0.0, 0, []
        self.own, self.ref = own, ref

    def slowdown(self) -> float:
        return 2.0 if (self.syncs + 1) // 2 % 2 else 1.0  # the same for an implementation round and the next

    def clock(self) -> float:
        return self.now_ms / 1e3

    def synchronize(self) -> None:
        self.syncs += 1

    def implementation(self) -> None:
        self.order.append("own")
        self.now_ms += self.own * self.slowdown()

    def reference(self) -> None:
        self.order.append("ref")
        self.now_ms += self.ref * self.slowdown()


def test_host_against_times_alternate_rounds_and_their_ratio_keeps_out_the_hosts_speed():
    host = DriftingHost(own=0.045, ref=0.015)
    result = timing.host_against(host.implementation, host.reference, calls=3, rounds=8, quantiles=QUANTILES,
                                 clock=host.clock, synchronize=host.synchronize)
    assert host.order == ["own", "ref"] + (["own"] * 3 + ["ref"] * 3) * 9, \
        "first calls, an untimed round each (it sizes the GPU holds), then alternate rounds"
    assert result.samples == result.reference.samples == result.ratio.samples == 8
    assert result.p20 == pytest.approx(0.045) and result.p80 == pytest.approx(0.090), "the host's 2x swing"
    assert result.reference.median == pytest.approx(0.0225)
    assert result.ratio.p20 == pytest.approx(3.0) and result.ratio.p80 == pytest.approx(3.0), \
        f"each round over the reference round after it should be 3 at any host speed, got {result.ratio}"


def test_measure_times_a_reference_only_for_the_host_timer():
    settings = OmegaConf.create({"quantiles": QUANTILES, "host_calls": 2, "host_rounds": 3, "cpu_warmup": 0,
                                 "cpu_reps": 3})
    paired = timing.measure(lambda: (lambda: None), "host", settings, reference=lambda: (lambda: None))
    assert paired.reference.samples == paired.ratio.samples == 3
    assert timing.measure(lambda: (lambda: None), "host", settings).reference is None
    assert timing.measure(lambda: (lambda: None), "cpu", settings, reference=lambda: (lambda: None)).ratio is None
