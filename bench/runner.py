"""The sweep loop: for each point, check it, warm it up, measure its memory, time it, write its rows.

Correctness is checked once per (op, backend, dtype, p), on a check-sized tensor
(bench.check), and that verdict holds for every shape of the sweep; at each
shape only the output's shape and dtype are checked again. An implementation
found incorrect is never timed. Any exception at one point (an OOM included)
becomes rows with its status and message, and the sweep goes on. In-place ops
have no fwd+bwd timing (bench.steps says why): those rows are written as skipped.

The copy is every op's reference (pct_of_copy), so it is checked too: at a bandwidth-bound
size its device timers must agree within timing.copy_tolerance_pct, and no op may read
more than timing.max_pct_of_copy of it. Either failing re-times the copy; a copy that
stays inconsistent is written with status suspect_copy, and an op row whose figure it
would inflate says so in its error column instead of claiming more than a copy's bandwidth.
The GPU's clocks, power and throttle reasons at both ends go beside the CSV (bench.machine).

A host-timer row of an op is timed in rounds alternating with F.dropout's on the same input and
direction (bench.timing.host_against): the host's speed moves both alike, so bench.compare gates
the ratio of the two (host_ratio_*), never the raw host time. Copy rows have no such reference.
"""

from __future__ import annotations

import gc
import logging
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch._dynamo
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from dropbench.baselines import compiled, eager
from dropbench.bench import catalogue, check, machine, plan, results, summary
from dropbench.bench.check import TORCH_DTYPES, Verdict
from dropbench.bench.memory import peak_bytes, saved_bytes
from dropbench.bench.schema import DTYPE_BYTES, HOST_TIMER, PASSES
from dropbench.bench.steps import INPLACE_FWD_BWD, calls_for, make_step
from dropbench.bench.timing import measure
from dropbench.kernels.runtime import forget_kept_launches

log = logging.getLogger(__name__)

#: The status of a copy row whose timers disagree even after re-timing (and the flag in the error
#: column of an op row whose copy reference had to be re-timed): not a reference to read % of copy against.
SUSPECT_COPY = "suspect_copy"
#: The timers that measure the GPU's work, which must agree on a bandwidth-bound copy.
DEVICE_TIMERS = ("do_bench", "cudagraph")


@dataclass
class SweepResult:
    path: Path
    rows: list[dict]   # every row of the file: resumed and new
    written: int       # rows this run wrote
    skipped: int       # keys already in the file when it started

    @property
    def incorrect(self) -> bool:
        return any(row["status"] == "incorrect" for row in self.rows)


def failure_status(exc: BaseException) -> str:
    """oom for out-of-memory (torch's, or an allocator message saying so), else error."""
    oom_type = getattr(torch.cuda, "OutOfMemoryError", ())
    if isinstance(exc, oom_type) or "out of memory" in str(exc).lower():
        return "oom"
    return "error"


def failure_message(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"[:300]


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _free_memory(device: str, collect: bool = True) -> None:
    """Give cached GPU memory back; collect=True also runs the garbage collector (~0.2 s with
    torch and inductor loaded: after failures, whose tracebacks may pin tensors in cycles)."""
    if collect:
        gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()


class Sweep:
    """Measures points and writes their rows; holds the verdicts and the times rows refer to."""

    def __init__(self, cfg, device: str, out: results.ResultsFile, env: dict):
        self.cfg, self.device, self.out, self.env = cfg, device, out, env
        self.seed = int(cfg.seed)
        self.dim = plan.variational_dim(cfg.variational_dim)
        self.verdicts: dict[tuple, Verdict] = {}
        # ms_median of every ok row, resumed ones too: the copy and eager times later rows divide by.
        self.ms = {results.key_of(row): float(row["ms_median"])
                   for row in out.rows if row["status"] == "ok" and row["ms_median"]}
        # Copies re-timed because an op read more than max_pct_of_copy of them: key -> (row's ms, re-timed ms).
        self.retimed: dict[tuple, tuple[float, float]] = {}
        self.suspect_copies: set[tuple] = set()  # copy keys written as suspect_copy by this run

    # -- rows ------------------------------------------------------------------------------

    def _write(self, point: plan.Point, direction: str, timer: str, status: str, error: str = "",
               timing=None, config: str = "", saved=None, peak=None) -> None:
        row = {
            **point.fields(direction, timer), "saved_bytes": saved, "peak_bytes": peak, "config": config,
            "status": status, "error": error, "timestamp": results.utc_now(), **self.env,
        }
        if timing is not None:
            figures, note = self._throughput(point, direction, timer, timing)
            row.update(figures, samples=timing.samples)
            row["error"] = "; ".join(filter(None, [error, note]))
        self.out.write(row)

    def _throughput(self, point, direction, timer, timing) -> tuple[dict, str]:
        """The derived columns of a timed row, and a note when its copy reference is suspect."""
        ms, passes = timing.median, PASSES[direction]
        self.ms[point.key(direction, timer)] = ms  # first: a copy row is its own reference
        eager_ms = self.ms.get(replace(point, backend="eager").key(direction, timer))
        figures = {"ms_median": ms, "ms_p20": timing.p20, "ms_p80": timing.p80,
                   "speedup_vs_eager": eager_ms / ms if eager_ms and not point.is_copy else None}
        if timer == "host":  # host time per call: no bandwidth figure; its ratio to F.dropout's, if measured
            return figures | host_reference_figures(timing), ""
        figures["gbps"] = 2 * point.numel * DTYPE_BYTES[point.dtype] * passes / (ms * 1e-3) / 1e9
        pct, note = self._pct_of_copy(point, timer, ms / passes) if not point.is_copy else (100.0, "")
        figures["pct_of_copy"] = pct
        return figures, note

    def _pct_of_copy(self, point, timer, ms_per_pass: float) -> tuple[float | None, str]:
        """100 * copy ms / ms per pass; at a bandwidth-bound size, reading more than max_pct_of_copy
        re-times the copy once, and a row that still does is flagged, its pct_of_copy left empty."""
        # A copy depends only on numel: every shape of these rows and cols reads the same one.
        copy_key = plan.copy_key(point.dtype, point.rows, point.cols, timer)
        copy_ms = self.ms.get(copy_key)
        if copy_key in self.suspect_copies:
            return None, f"{SUSPECT_COPY}: the copy's timers disagree (see its row); no pct_of_copy"
        if not copy_ms:
            return None, ""
        pct = 100 * copy_ms / ms_per_pass
        limit = float(self.cfg.timing.max_pct_of_copy)
        if pct <= limit or not self._bandwidth_bound(point):
            return pct, self._retimed_note(copy_key)
        if copy_key not in self.retimed:
            timing = self._retime_copy(point, timer)
            self.retimed[copy_key] = (copy_ms, timing.median)
            self.ms[copy_key] = timing.median
            log.warning("%s timer=%s read %.0f%% of the copy (%.4g ms); the copy re-timed: %.4g ms",
                        point.label(), timer, pct, copy_ms, timing.median)
            pct = 100 * timing.median / ms_per_pass
        if pct <= limit:
            return pct, self._retimed_note(copy_key)
        row_ms, now_ms = self.retimed[copy_key]
        return None, (f"{SUSPECT_COPY}: reads {pct:.0f}% of the copy (> timing.max_pct_of_copy={limit:g}) "
                      f"at a bandwidth-bound size, also after re-timing the copy ({row_ms:.4g} ms, then {now_ms:.4g} ms)")

    def _retimed_note(self, copy_key) -> str:
        if copy_key not in self.retimed:
            return ""
        row_ms, now_ms = self.retimed[copy_key]
        return f"{SUSPECT_COPY}: pct_of_copy against the copy re-timed at {now_ms:.4g} ms (its row says {row_ms:.4g} ms)"

    def _bandwidth_bound(self, point) -> bool:
        """Whether a copy of point's size moves at least timing.bandwidth_bound_bytes (read + write)."""
        return 2 * point.numel * DTYPE_BYTES[point.dtype] >= int(self.cfg.timing.bandwidth_bound_bytes)

    def _write_failed(self, point, todo, status: str, error: str) -> None:
        """Rows without timings for every key of `todo` not yet written."""
        for direction, timer in todo:
            if point.key(direction, timer) not in self.out.done:
                self._write(point, direction, timer, status, error)

    # -- measuring -------------------------------------------------------------------------

    def verdict(self, point: plan.Point) -> Verdict:
        """The correctness verdict of (op, backend, dtype, p), checked the first time it is asked for."""
        key = (point.op, point.backend, point.dtype, float(point.p))
        if key not in self.verdicts:
            started = time.perf_counter()
            try:
                found = check.check(catalogue.implementation(point.op, point.backend), point.dtype, point.p,
                                    self.device, self.seed, self.dim, int(self.cfg.check.numel),
                                    float(self.cfg.check.sigmas))
            except Exception as exc:  # a crash in the check is that implementation's error at every shape
                found = Verdict(failure_status(exc), f"check failed: {failure_message(exc)}")
            self.verdicts[key] = found
            level = logging.INFO if found.ok else logging.ERROR
            log.log(level, "check %s/%s %s p=%g: %s%s (%.1f s; reused for every shape)", point.op, point.backend,
                    point.dtype, point.p, found.status, f": {found.reason}" if found.reason else "",
                    time.perf_counter() - started)
        return self.verdicts[key]

    def measure_point(self, point: plan.Point) -> None:
        """Measure every (direction, timer) of `point` missing from the file; failures become rows."""
        todo = [(direction, timer) for timer in point.timers for direction in point.directions
                if point.key(direction, timer) not in self.out.done]
        if not todo:
            return
        try:
            if point.is_copy:
                self._measure_copy(point, todo)
            else:
                self._measure_op(point, todo)
        except Exception as exc:  # one point's failure must not end the sweep
            status = failure_status(exc)
            log.error("%s: %s: %s", point.label(), status, failure_message(exc))
            failed = (status, failure_message(exc))
        else:
            failed = None
        # Outside the except block, so the traceback no longer pins the point's tensors.
        _free_memory(self.device, collect=failed is not None)
        if failed:
            self._write_failed(point, todo, *failed)

    def _inputs(self, point):
        x = torch.randn(point.shape, dtype=TORCH_DTYPES[point.dtype], device=self.device)
        return x, torch.randn_like(x)

    def _measure_copy(self, point, todo) -> None:
        """Time the copy with every timer; where the timers disagree at a bandwidth-bound size, re-time it,
        and write rows that still disagree as suspect_copy (a reference no op row should be read against)."""
        src, dst = self._inputs(point)
        timings = self._time(point, todo, lambda direction: (lambda: dst.copy_(src)))
        problem = self._copy_disagreement(point, timings)
        for attempt in range(int(self.cfg.timing.copy_retimes)):
            if not problem:
                break
            log.warning("%s: %s; re-timing the copy (%d of %d)", point.label(), problem, attempt + 1,
                        self.cfg.timing.copy_retimes)
            timings = self._time(point, list(timings), lambda direction: (lambda: dst.copy_(src)))
            problem = self._copy_disagreement(point, timings)
        for (direction, timer), timing in timings.items():
            if problem:
                self._write(point, direction, timer, SUSPECT_COPY, problem, timing=timing)
                self.ms.pop(point.key(direction, timer))  # no op row is read against it
                self.suspect_copies.add(point.key(direction, timer))
            else:
                self._write(point, direction, timer, "ok", timing=timing)

    def _copy_disagreement(self, point, timings: dict) -> str:
        medians = {timer: timing.median for (_, timer), timing in timings.items()}
        timing = self.cfg.timing
        return copy_disagreement(point, medians, float(timing.copy_tolerance_pct), int(timing.bandwidth_bound_bytes))

    def _retime_copy(self, point, timer: str):
        """The copy of point's (rows, cols) timed again with `timer`."""
        src = torch.randn((point.rows, point.cols), dtype=TORCH_DTYPES[point.dtype], device=self.device)
        dst = torch.empty_like(src)
        return measure(lambda: (lambda: dst.copy_(src)), timer, self.cfg.timing)

    def _measure_op(self, point, todo) -> None:
        verdict = self.verdict(point)
        if not verdict.ok:
            self._write_failed(point, todo, verdict.status, verdict.reason)
            return
        # Each point compiles from scratch, as a model of this one shape would (and the
        # check's other layouts leave nothing behind). Resets no Triton autotune cache, but
        # forgets the kept launches: the first call takes the launcher, so the config column
        # names the kernel this point runs, not a kept one that another row left behind.
        torch._dynamo.reset()
        forget_kept_launches()
        impl = catalogue.implementation(point.op, point.backend)
        inplace = catalogue.op(point.op).inplace
        x, grad_out = self._inputs(point)
        # The training setting: x requires grad, autograd records and the op saves what it needs
        # (in-place ops: see bench.steps).
        calls = calls_for(lambda tensor: impl(tensor, point.p, self.seed, point.variational_dim), x, inplace)

        # The first calls autotune (Triton) or compile (torch.compile): excluded from timing, reported in config.
        first = {}
        started = time.perf_counter()
        y = calls.forward()
        _sync(self.device)
        first["first_call_ms"] = (time.perf_counter() - started) * 1e3
        if tuple(y.shape) != point.shape or y.dtype != x.dtype:
            self._write_failed(point, todo, "incorrect",
                               f"output is {tuple(y.shape)} {y.dtype}, expected {point.shape} {x.dtype}")
            return
        if inplace:  # the timed fwd had no graph; the op with one (through a clone) is another first call
            started = time.perf_counter()
            y = calls.graph_forward()
            _sync(self.device)
            first["first_grad_call_ms"] = (time.perf_counter() - started) * 1e3
        started = time.perf_counter()
        torch.autograd.grad(y, calls.leaf, grad_out)
        _sync(self.device)
        first["first_bwd_ms"] = (time.perf_counter() - started) * 1e3
        del y
        impl_config = impl.chosen_config()
        config = " ".join([impl_config, *(f"{name}={ms:.1f}" for name, ms in first.items())]).strip()
        log.info("%s: %s", point.label(), config)

        # Memory of the training step, through the clone for in-place ops (the clone stands for the
        # output an out-of-place op allocates).
        saved = saved_bytes(calls.graph_forward)
        peak = peak_bytes(lambda: torch.autograd.grad(calls.graph_forward(), calls.leaf, grad_out), self.device)
        timed = [(direction, timer) for direction, timer in todo if calls.fwd_bwd or direction != "fwd+bwd"]
        # The host timer's reference: F.dropout on the same x, in the same direction (bench.timing).
        reference = calls_for(lambda tensor: eager.dropout(tensor, point.p), x, inplace=False)
        timings = self._time(point, timed, lambda direction: make_step(direction, calls, grad_out),
                             lambda direction: make_step(direction, reference, grad_out))
        # A later call may take another kernel variant with its own autotune choice (the drop-in's
        # stream index passes 2**31 after a few large calls): the column names it too.
        later = impl.chosen_config()
        if later and later != impl_config:
            config = f"{config} later: {later}"
        for (direction, timer), timing in timings.items():
            self._write(point, direction, timer, "ok", timing=timing, config=config, saved=saved, peak=peak)
        self._write_failed(point, [key for key in todo if key not in timed], "skipped", INPLACE_FWD_BWD)

    def _time(self, point, todo, step_for, reference_for=None) -> dict:
        """{(direction, timer): Timing} of each of todo; a failure writes its own row and fails only it.

        reference_for(direction), where given, is the step the host timer alternates its rounds with.
        """
        timings = {}
        for direction, timer in todo:
            reference = (lambda: reference_for(direction)) if reference_for and timer == HOST_TIMER else None
            try:
                timings[(direction, timer)] = measure(lambda: step_for(direction), timer, self.cfg.timing,
                                                      reference=reference)
            except Exception as exc:
                failed = (failure_status(exc), failure_message(exc))
            else:
                failed = None
            if failed:  # handled outside the except block, so the traceback no longer pins tensors
                log.error("%s %s timer=%s: %s: %s", point.label(), direction, timer, *failed)
                _free_memory(self.device)
                self._write(point, direction, timer, *failed)
        return timings


def host_reference_figures(timing) -> dict:
    """The host_ref_ms and host_ratio_* columns of a host row timed against its reference (else none)."""
    if timing.reference is None:
        return {}
    return {"host_ref_ms": timing.reference.median, "host_ratio_median": timing.ratio.median,
            "host_ratio_p20": timing.ratio.p20, "host_ratio_p80": timing.ratio.p80}


def copy_disagreement(point: plan.Point, medians: dict[str, float], tolerance_pct: float,
                      bandwidth_bound_bytes: int) -> str:
    """Why a copy's device timers (ms medians by timer) disagree beyond tolerance_pct, or '' where they
    agree or the size is not bandwidth-bound (there do_bench measures the host too)."""
    moved = 2 * point.numel * DTYPE_BYTES[point.dtype]
    device_ms = {timer: ms for timer, ms in medians.items() if timer in DEVICE_TIMERS}
    if len(device_ms) < 2 or moved < bandwidth_bound_bytes:
        return ""
    if max(device_ms.values()) <= min(device_ms.values()) * (1 + tolerance_pct / 100):
        return ""
    rates = ", ".join(f"{timer} {moved / (ms * 1e-3) / 1e9:.0f} GB/s" for timer, ms in device_ms.items())
    return f"copy timers disagree by more than timing.copy_tolerance_pct={tolerance_pct:g}: {rates}"


def results_path(cfg, device_name: str) -> Path:
    """cfg.results.path, or the default path for this device; a ConfigError when it is a directory."""
    path = Path(cfg.results.path) if cfg.results.get("path") else results.default_path(device_name)
    if path.is_dir():
        raise plan.ConfigError(f"results.path={path}: is a directory; allowed: the path of a CSV file "
                               f"(new, or one this device wrote)")
    return path


def run(cfg, device: str, progress: bool = True) -> SweepResult:
    """Run the sweep `cfg` on `device` (cuda | cpu), appending to (and resuming) cfg.results.path.

    A config that cannot run raises plan.ConfigError, and a results file of another device or
    setting results.ResultsError, both before anything is measured.
    """
    if device == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
        raise RuntimeError("the CPU sweep runs Triton under its interpreter: set TRITON_INTERPRET=1 "
                           "before triton is imported (dropbench-sweep does this itself)")
    points = plan.expand(cfg, device)
    torch.manual_seed(int(cfg.seed))
    compiled.configure_dynamo()
    threads = cfg.timing.autograd_threads
    # The column says where backward ran: a CPU backward always runs on the calling thread.
    device_thread = threads and device == "cuda"
    env = {**results.environment(device), "autograd_threads": device_thread}
    path = results_path(cfg, env["device"])
    with results.ResultsFile(path, env["device"], autograd_threads=device_thread) as out:
        skipped = sum(key in out.done for point in points for key in point.keys())
        log.info("results: %s (%d rows there already, %d of this sweep's %d keys done; run_id %s; backward on %s)",
                 path, out.resumed, skipped, sum(len(point.keys()) for point in points), env["run_id"],
                 "autograd's device thread" if device_thread else "the calling thread")
        machine.record(path, env["run_id"], "start", device, results.utc_now())
        sweep = Sweep(cfg, device, out, env)
        # Where backward runs (configs/timing/default.yaml says why it matters for one op's timing).
        with logging_redirect_tqdm(), torch.autograd.set_multithreading_enabled(threads):
            bar = tqdm(points, desc="dropbench", unit="point", disable=not progress)
            for point in bar:
                bar.set_postfix_str(point.label(), refresh=False)
                sweep.measure_point(point)
        machine.record(path, env["run_id"], "end", device, results.utc_now())
        written = len(out.rows) - out.resumed
        all_rows = list(out.rows)
    for line in summary.report(all_rows):
        (log.error if line.startswith("!!!") else log.info)(line)
    log.info("wrote %d rows to %s", written, path)
    return SweepResult(path, all_rows, written, skipped)
