"""The sweep loop: for each point, check it, warm it up, measure its memory, time it, write its rows.

Correctness is checked once per (op, backend, dtype, p), on a check-sized tensor
(bench.check), and that verdict holds for every shape of the sweep; at each
shape only the output's shape and dtype are checked again. An implementation
found incorrect is never timed. Any exception at one point (an OOM included)
becomes rows with its status and message, and the sweep goes on. In-place ops
have no fwd+bwd timing (bench.steps says why): those rows are written as skipped.
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

from dropbench.baselines import compiled
from dropbench.bench import check, families, plan, registry, results, summary
from dropbench.bench.check import TORCH_DTYPES, Verdict
from dropbench.bench.memory import peak_bytes, saved_bytes
from dropbench.bench.schema import DTYPE_BYTES, PASSES
from dropbench.bench.steps import INPLACE_FWD_BWD, calls_for, make_step
from dropbench.bench.timing import measure

log = logging.getLogger(__name__)


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
        self.dim = int(cfg.variational_dim)
        self.verdicts: dict[tuple, Verdict] = {}
        # ms_median of every ok row, resumed ones too: the copy and eager times later rows divide by.
        self.ms = {results.key_of(row): float(row["ms_median"])
                   for row in out.rows if row["status"] == "ok" and row["ms_median"]}

    # -- rows ------------------------------------------------------------------------------

    def _write(self, point: plan.Point, direction: str, timer: str, status: str, error: str = "",
               timing=None, config: str = "", saved=None, peak=None) -> None:
        row = {
            "op": point.op, "backend": point.backend, "dtype": point.dtype, "rows": point.rows,
            "cols": point.cols, "shape": point.shape_text, "numel": point.numel, "p": float(point.p),
            "direction": direction, "timer": timer, "saved_bytes": saved, "peak_bytes": peak, "config": config,
            "status": status, "error": error, "timestamp": results.utc_now(), **self.env,
        }
        if timing is not None:
            row.update(self._throughput(point, direction, timer, timing))
        self.out.write(row)

    def _throughput(self, point, direction, timer, timing) -> dict:
        ms, passes = timing.median, PASSES[direction]
        self.ms[point.key(direction, timer)] = ms  # first: a copy row is its own reference
        # A copy depends only on numel: every shape of these rows and cols reads the same one.
        copy_ms = self.ms.get(plan.copy_key(point.dtype, point.rows, point.cols, timer))
        eager_ms = self.ms.get(replace(point, backend="eager").key(direction, timer))
        return {
            "ms_median": ms, "ms_p20": timing.p20, "ms_p80": timing.p80,
            "gbps": 2 * point.numel * DTYPE_BYTES[point.dtype] * passes / (ms * 1e-3) / 1e9,
            "pct_of_copy": 100 * copy_ms * passes / ms if copy_ms else None,
            "speedup_vs_eager": eager_ms / ms if eager_ms and not point.is_copy else None,
        }

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
                found = check.check(registry.get(point.op, point.backend), point.dtype, point.p, self.device,
                                    self.seed, self.dim, int(self.cfg.check.numel), float(self.cfg.check.sigmas))
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
        src, dst = self._inputs(point)
        self._time(point, todo, lambda direction: (lambda: dst.copy_(src)))

    def _measure_op(self, point, todo) -> None:
        verdict = self.verdict(point)
        if not verdict.ok:
            self._write_failed(point, todo, verdict.status, verdict.reason)
            return
        # Each point compiles from scratch, as a model of this one shape would (and the
        # check's other layouts leave nothing behind). Resets no Triton autotune cache.
        torch._dynamo.reset()
        impl = registry.get(point.op, point.backend)
        inplace = families.of(point.op).inplace
        x, grad_out = self._inputs(point)
        # The training setting: x requires grad, autograd records and the op saves what it needs
        # (in-place ops: see bench.steps).
        calls = calls_for(lambda tensor: impl(tensor, point.p, self.seed, self.dim), x, inplace)

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
        config = " ".join([impl.chosen_config(), *(f"{name}={ms:.1f}" for name, ms in first.items())]).strip()
        log.info("%s: %s", point.label(), config)

        # Memory of the training step, through the clone for in-place ops (the clone stands for the
        # output an out-of-place op allocates).
        saved = saved_bytes(calls.graph_forward)
        peak = peak_bytes(lambda: torch.autograd.grad(calls.graph_forward(), calls.leaf, grad_out), self.device)
        timed = [(direction, timer) for direction, timer in todo if calls.fwd_bwd or direction != "fwd+bwd"]
        self._time(point, timed, lambda direction: make_step(direction, calls, grad_out),
                   config=config, saved=saved, peak=peak)
        self._write_failed(point, [key for key in todo if key not in timed], "skipped", INPLACE_FWD_BWD)

    def _time(self, point, todo, step_for, **extra) -> None:
        """Time each (direction, timer) of todo; a failure fails only its own row."""
        for direction, timer in todo:
            try:
                timing = measure(lambda: step_for(direction), timer, self.cfg.timing)
            except Exception as exc:
                failed = (failure_status(exc), failure_message(exc))
            else:
                failed = None
                self._write(point, direction, timer, "ok", timing=timing, **extra)
            if failed:  # handled outside the except block, so the traceback no longer pins tensors
                log.error("%s %s timer=%s: %s: %s", point.label(), direction, timer, *failed)
                _free_memory(self.device)
                self._write(point, direction, timer, *failed)


def run(cfg, device: str, progress: bool = True) -> SweepResult:
    """Run the sweep `cfg` on `device` (cuda | cpu), appending to (and resuming) cfg.results.path."""
    if device == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
        raise RuntimeError("the CPU sweep runs Triton under its interpreter: set TRITON_INTERPRET=1 "
                           "before triton is imported (dropbench-sweep does this itself)")
    torch.manual_seed(int(cfg.seed))
    compiled.configure_dynamo()
    points = plan.expand(cfg, device)
    threads = cfg.timing.autograd_threads
    if not isinstance(threads, bool):
        raise ValueError(f"timing.autograd_threads must be true or false, got {threads!r}")
    # The column says where backward ran: a CPU backward always runs on the calling thread.
    device_thread = threads and device == "cuda"
    env = {**results.environment(device), "autograd_threads": device_thread}
    path = Path(cfg.results.path) if cfg.results.get("path") else results.default_path(env["device"])
    with results.ResultsFile(path, env["device"], autograd_threads=device_thread) as out:
        skipped = sum(key in out.done for point in points for key in point.keys())
        log.info("results: %s (%d rows there already, %d of this sweep's %d keys done; run_id %s; backward on %s)",
                 path, out.resumed, skipped, sum(len(point.keys()) for point in points), env["run_id"],
                 "autograd's device thread" if device_thread else "the calling thread")
        sweep = Sweep(cfg, device, out, env)
        # Where backward runs (configs/timing/default.yaml says why it matters for one op's timing).
        with logging_redirect_tqdm(), torch.autograd.set_multithreading_enabled(threads):
            bar = tqdm(points, desc="dropbench", unit="point", disable=not progress)
            for point in bar:
                bar.set_postfix_str(point.label(), refresh=False)
                sweep.measure_point(point)
        written = len(out.rows) - out.resumed
        all_rows = list(out.rows)
    for line in summary.report(all_rows):
        (log.error if line.startswith("!!!") else log.info)(line)
    log.info("wrote %d rows to %s", written, path)
    return SweepResult(path, all_rows, written, skipped)
