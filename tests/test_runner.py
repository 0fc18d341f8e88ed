"""bench.runner and the dropbench-sweep app: rows, resume, faults, the correctness gate, the smoke run.

Most tests run the smoke sweep with the compile backend replaced by an eager stand-in
(a monkeypatched catalogue row), so they take seconds; the end-to-end test runs the
real app, every backend included, in a subprocess, on the CPU (device=cpu) on any machine.
The others run on the GPU where there is one (do_bench and CUDA-graph timers), else on the
CPU (timer=cpu).
"""

import csv
import itertools
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir

from dropbench.bench import catalogue, compare, plan, runner, schema, summary, sweep
from dropbench.bench.catalogue import Implementation
from dropbench.bench.timing import Timing
from dropbench.bench.steps import INPLACE_FWD_BWD
from dropbench.plots import figures, load, render

REPO = Path(__file__).resolve().parents[1]
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
SMOKE_SHAPES = [(1, 256), (8, 256)]
TIMERS = ["do_bench", "cudagraph"] if DEVICE == "cuda" else ["cpu"]  # smoke rows are all <= 16


def expected_rows(pairs: int) -> int:
    """Rows of a smoke sweep of `pairs` (op, backend) pairs: per shape and timer, a copy and 3 directions a pair."""
    return len(SMOKE_SHAPES) * len(TIMERS) * (1 + 3 * pairs)



def smoke_cfg(tmp_path, *overrides):
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        return compose(config_name="config", overrides=[
            "+preset=smoke", "backend=baselines", f"results.path={tmp_path / 'results.csv'}", *overrides])


@pytest.fixture
def fast_compile(monkeypatch):
    """Stand in eager for torch.compile: the runner's logic, without seconds of compiling per shape."""
    monkeypatch.setitem(catalogue.BACKENDS, "compile", replace(catalogue.BACKENDS["compile"], wrap=""))


def patch_implementation(monkeypatch, op, backend, call, bit_exact=False, chosen=lambda: ""):
    """The runner gets `call` for (op, backend), the catalogue's implementation for every other pair."""
    real = catalogue.implementation

    def implementation(op_name, backend_name):
        if (op_name, backend_name) == (op, backend):
            return Implementation(op, backend, call, bit_exact, chosen)
        return real(op_name, backend_name)

    monkeypatch.setattr(catalogue, "implementation", implementation)


def read(path) -> list[dict]:
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def keys(rows) -> list[tuple]:
    return [tuple(row[column] for column in schema.KEY_COLUMNS) for row in rows]


def sweep_rows(tmp_path, *overrides) -> list[dict]:
    runner.run(smoke_cfg(tmp_path, *overrides), DEVICE, progress=False)
    return read(tmp_path / "results.csv")


def test_smoke_rows_follow_the_schema(tmp_path, fast_compile):
    rows = sweep_rows(tmp_path)
    assert list(rows[0]) == schema.COLUMNS
    assert len(rows) == expected_rows(4)
    assert len(set(keys(rows))) == len(rows), "a key appears twice"
    for column, allowed in [("op", schema.OPS + [schema.COPY]), ("backend", schema.BACKENDS),
                            ("dtype", schema.DTYPES), ("direction", schema.DIRECTIONS),
                            ("timer", TIMERS), ("status", ["ok"])]:
        assert {row[column] for row in rows} <= set(allowed), f"bad {column}: {({row[column] for row in rows})}"
    assert len({row["run_id"] for row in rows}) == 1
    assert {row["device"] for row in rows} == {"cpu" if DEVICE == "cpu" else torch.cuda.get_device_name()}
    assert all(row["numel"] == str(int(row["rows"]) * int(row["cols"])) for row in rows)


@pytest.mark.parametrize("threads", [False, True])
def test_backward_runs_where_timing_autograd_threads_says_and_the_rows_say_so(tmp_path, fast_compile, monkeypatch,
                                                                              threads):
    seen = []
    real = runner.make_step

    def recording_step(direction, calls, grad_out):
        seen.append(torch._C._is_multithreading_enabled())  # what set_multithreading_enabled sets
        return real(direction, calls, grad_out)

    monkeypatch.setattr(runner, "make_step", recording_step)
    rows = sweep_rows(tmp_path, f"timing.autograd_threads={threads}", "op.names=dropout")
    assert seen and set(seen) == {threads}, "the steps did not run under the configured setting"
    assert {row["autograd_threads"] for row in rows} == {str(threads and DEVICE == "cuda")}, \
        "the column says where backward ran: on the CPU always the calling thread"


def test_a_setting_that_is_not_a_bool_is_refused(tmp_path):
    with pytest.raises(plan.ConfigError, match="timing.autograd_threads=false: allowed: true, false"):
        runner.run(smoke_cfg(tmp_path, "timing.autograd_threads='false'"), DEVICE, progress=False)


def test_derived_columns_follow_their_formulas(tmp_path, fast_compile):
    rows = sweep_rows(tmp_path)
    copy_ms = {(r["rows"], r["timer"]): float(r["ms_median"]) for r in rows if r["op"] == "copy"}
    eager_ms = {(r["op"], r["rows"], r["direction"], r["timer"]): float(r["ms_median"])
                for r in rows if r["backend"] == "eager"}
    for row in rows:
        ms, numel, passes = float(row["ms_median"]), int(row["numel"]), schema.PASSES[row["direction"]]
        assert float(row["ms_p20"]) <= ms <= float(row["ms_p80"])
        assert float(row["gbps"]) == pytest.approx(2 * numel * 4 * passes / (ms * 1e-3) / 1e9, rel=1e-4)
        assert float(row["pct_of_copy"]) == pytest.approx(100 * copy_ms[(row["rows"], row["timer"])] * passes / ms,
                                                          rel=1e-4)
        if row["op"] == "copy":
            assert row["speedup_vs_eager"] == "" and row["p"] == "0.0"
        else:
            expected = eager_ms[(row["op"], row["rows"], row["direction"], row["timer"])] / ms
            assert float(row["speedup_vs_eager"]) == pytest.approx(expected, rel=1e-4)
            assert int(row["saved_bytes"]) > 0, "eager dropout saves its mask"
            assert "first_call_ms=" in row["config"]
            if DEVICE == "cpu":
                assert row["peak_bytes"] == "", "no peak memory on the CPU"
            else:
                assert int(row["peak_bytes"]) > 0


def test_an_interrupted_sweep_resumes_without_duplicates(tmp_path, fast_compile, monkeypatch):
    stop_after = 7
    original_write = runner.results.ResultsFile.write
    written = []

    def write_then_die(self, row):
        if len(written) == stop_after:
            raise KeyboardInterrupt  # the kill: after 7 complete rows
        original_write(self, row)
        written.append(row)

    monkeypatch.setattr(runner.results.ResultsFile, "write", write_then_die)
    with pytest.raises(KeyboardInterrupt):
        runner.run(smoke_cfg(tmp_path), DEVICE, progress=False)
    first = read(tmp_path / "results.csv")
    assert len(first) == stop_after

    monkeypatch.setattr(runner.results.ResultsFile, "write", original_write)
    result = runner.run(smoke_cfg(tmp_path), DEVICE, progress=False)
    rows = read(tmp_path / "results.csv")
    assert len(rows) == expected_rows(4) and len(set(keys(rows))) == len(rows)
    assert rows[:stop_after] == first, "rows from before the interruption must be kept as they were"
    assert result.skipped == stop_after and result.written == len(rows) - stop_after
    assert len({row["run_id"] for row in rows}) == 2


def test_a_partial_last_line_is_measured_again(tmp_path, fast_compile):
    rows = sweep_rows(tmp_path)
    path = tmp_path / "results.csv"
    data = path.read_bytes()
    path.write_bytes(data[:-25])  # killed in the middle of writing the last row
    runner.run(smoke_cfg(tmp_path), DEVICE, progress=False)
    again = read(path)
    assert keys(again) == keys(rows), "the cut row should be measured again, once"


def test_resume_keeps_the_copy_rows_as_keys(tmp_path, fast_compile):
    sweep_rows(tmp_path)
    result = runner.run(smoke_cfg(tmp_path, "p=[0.5,0.1]"), DEVICE, progress=False)
    rows = read(tmp_path / "results.csv")
    assert sum(row["op"] == "copy" for row in rows) == len(SMOKE_SHAPES) * len(TIMERS), "copies measured again"
    assert result.written == expected_rows(4) - expected_rows(0), "only the new p should have been measured"
    new = [row for row in rows if row["p"] == "0.1"]
    assert all(row["pct_of_copy"] for row in new), "pct_of_copy should use the copy rows already on disk"


def test_an_oom_at_one_point_becomes_rows_and_the_sweep_goes_on(tmp_path, fast_compile, monkeypatch):
    eager = catalogue.implementation("dropout", "eager")

    def oom_at_eight_rows(x, p, seed, dim):
        if x.shape == (8, 256):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return eager(x, p, seed, dim)

    patch_implementation(monkeypatch, "dropout", "eager", oom_at_eight_rows)
    rows = sweep_rows(tmp_path)
    failed = [row for row in rows if row["status"] != "ok"]
    assert {(row["backend"], row["rows"], row["direction"], row["timer"]) for row in failed} == {
        ("eager", "8", direction, timer) for direction in schema.OP_DIRECTIONS for timer in TIMERS}
    assert all(row["status"] == "oom" and "out of memory" in row["error"] and row["ms_median"] == ""
               for row in failed)
    assert len(rows) == expected_rows(4), "the sweep should have measured everything else"
    later = [row for row in rows if row["op"] == "variational" and row["rows"] == "8"]
    assert later and all(row["status"] == "ok" for row in later)
    compile_rows = [row for row in rows
                    if row["op"] == "dropout" and row["backend"] == "compile" and row["rows"] == "8"]
    assert all(row["status"] == "ok" and row["speedup_vs_eager"] == "" for row in compile_rows), \
        "without an eager time there is no speedup"


def test_an_exception_in_timing_fails_only_its_row(tmp_path, fast_compile, monkeypatch):
    original = runner.measure
    calls = []

    def flaky(build, timer, timing, reference=None):
        calls.append(timer)
        if len(calls) == 5:
            raise ValueError("timer broke")
        return original(build, timer, timing, reference)

    monkeypatch.setattr(runner, "measure", flaky)
    rows = sweep_rows(tmp_path)
    failed = [row for row in rows if row["status"] != "ok"]
    assert len(failed) == 1, "only the failing measurement's row should fail"
    assert failed[0]["status"] == "error" and failed[0]["error"] == "ValueError: timer broke"
    assert failed[0]["ms_median"] == "" and failed[0]["config"] == ""
    assert len(rows) == expected_rows(4)


def test_a_wrong_implementation_is_incorrect_and_not_timed(tmp_path, fast_compile, monkeypatch):
    sweep_shapes = []

    def wrong_p(x, p, seed, dim):
        if tuple(x.shape) in SMOKE_SHAPES:
            sweep_shapes.append(tuple(x.shape))
        return F.dropout(x, 0.3, training=True)  # drops with the wrong p

    patch_implementation(monkeypatch, "dropout", "compile", wrong_p)
    result = runner.run(smoke_cfg(tmp_path), DEVICE, progress=False)
    rows = read(tmp_path / "results.csv")
    bad = [row for row in rows if row["backend"] == "compile" and row["op"] == "dropout"]
    assert len(bad) == len(SMOKE_SHAPES) * len(TIMERS) * 3
    assert all(row["status"] == "incorrect" and "keep fraction" in row["error"] for row in bad)
    assert all(row["ms_median"] == "" and row["gbps"] == "" for row in bad)
    assert not sweep_shapes, "an incorrect implementation must not be run at the sweep's shapes"
    assert result.incorrect
    assert any(line.startswith("!!! INCORRECT: dropout/compile") for line in summary.report(result.rows))
    others = [row for row in rows if row not in bad]
    assert all(row["status"] == "ok" for row in others)


def test_summary_names_the_best_backend_at_the_largest_shape(tmp_path, fast_compile):
    rows = sweep_rows(tmp_path)
    lines = summary.report(rows)
    assert f"timer={TIMERS[0]}" in lines[0]
    body = [line for line in lines[2:]]
    assert len(body) == 2 * 3, "one line per op and direction"
    assert all("8x256" in line for line in body)


def test_in_place_rows_time_fwd_and_bwd_and_skip_fwd_bwd(tmp_path, fast_compile):
    rows = sweep_rows(tmp_path, "op.names=dropout_inplace", "backend=all")
    ops = [row for row in rows if row["op"] == "dropout_inplace"]
    assert {row["backend"] for row in ops} == {"triton", "dropin", "eager", "compile", "compile_fallback"}
    for row in ops:
        if row["direction"] == "fwd+bwd":
            assert row["status"] == "skipped" and row["error"] == INPLACE_FWD_BWD and row["ms_median"] == ""
        else:
            assert row["status"] == "ok" and float(row["ms_median"]) > 0 and row["pct_of_copy"], row
            assert "first_grad_call_ms=" in row["config"], "the clone path's first call should be reported"
    saved = {row["backend"]: int(row["saved_bytes"]) for row in ops if row["status"] == "ok" and row["rows"] == "8"}
    assert saved["triton"] == 0, "the seeded in-place op saves nothing for backward"
    assert saved["eager"] >= 8 * 256, "eager in-place dropout saves its mask"
    assert not summary.failures(pd.DataFrame(rows)), "skipped is not a failure"


def test_channel_rows_carry_their_shape_and_share_their_copy(tmp_path):
    rows = sweep_rows(tmp_path, "op.names=dropout2d", "backend=eager")
    copies = {(row["rows"], row["cols"], row["timer"]): float(row["ms_median"]) for row in rows if row["op"] == "copy"}
    assert set(copies) == {(*size, timer) for size in [("1", "256"), ("8", "256"), ("2", "128")] for timer in TIMERS}
    conv = [row for row in rows if row["op"] == "dropout2d" and row["rows"] == "2"]
    assert {row["shape"] for row in conv} == {"2x8x4x4", "2x2x8x8"}
    for row in rows:
        ms, passes = float(row["ms_median"]), schema.PASSES[row["direction"]]
        expected = 100 * copies[(row["rows"], row["cols"], row["timer"])] * passes / ms
        assert float(row["pct_of_copy"]) == pytest.approx(expected, rel=1e-4), row["shape"]
        assert row["numel"] == str(int(row["rows"]) * int(row["cols"]))


@pytest.mark.parametrize("name, has_cuda, preset, expected", [
    ("auto", True, None, "cuda"),
    ("auto", False, "smoke", "cpu"),    # no GPU: main() chose +preset=smoke before Hydra composed
    ("cpu", True, None, "cpu"),
    ("cpu", False, "ci", "cpu"),        # asked for: the CI preset under the interpreter
    ("cuda", True, "ci", "cuda"),
])
def test_device_resolution(name, has_cuda, preset, expected):
    assert sweep.resolve_device(name, has_cuda, preset) == expected


@pytest.mark.parametrize("name, preset, words", [
    ("cuda", None, "device=cuda: torch sees no CUDA device"),
    ("auto", None, "device=auto: the CUDA driver shows a GPU but torch sees none"),
    ("auto", "ci", r"\+preset=ci: times GPU kernels, and torch sees no CUDA device; allowed here: \+preset=smoke, "
                   "or device=cpu"),
    ("tpu", None, "device=tpu: allowed: auto, cuda, cpu"),
])
def test_a_device_that_cannot_run_is_a_config_error(name, preset, words):
    with pytest.raises(plan.ConfigError, match=words):
        sweep.resolve_device(name, False, preset)


@pytest.mark.parametrize("argv, has_gpu, fallback", [
    ([], False, True),                                  # no GPU, nothing chosen: the smoke sweep
    (["--cfg", "job", "dtype=fp16"], False, True),      # --cfg job shows what would run
    (["dtype=fp16", "--cfg", "job"], False, True),      # overrides before the option
    (["-cn", "config", "dtype=fp16"], False, True),     # an option's value is not an override
    (["-m", "dtype=fp16,fp32"], False, True),
    (["--cfg", "job"], False, True),
    ([], True, False),
    (["+preset=ci"], False, False),                     # a preset is the user's choice
    (["device=cpu"], False, False),                     # so is a device
    (["device=auto"], False, True),
    (["--help"], False, False),
])
def test_smoke_fallback_is_chosen_before_hydra_composes(argv, has_gpu, fallback, monkeypatch):
    monkeypatch.setenv(sweep.SMOKE_FALLBACK_ENV, "")  # restored (unset) after the test: main() sets it
    got = sweep.with_smoke_fallback(argv, has_gpu=lambda: has_gpu)
    if not fallback:
        assert got == argv
        return
    from hydra._internal.utils import get_args_parser
    parsed = get_args_parser().parse_args(got)  # Hydra's own parser takes it: the preset joins the overrides
    user = get_args_parser().parse_args(argv)
    assert sorted(parsed.overrides) == sorted([*user.overrides, "+preset=smoke"]), got
    assert parsed.cfg == user.cfg


def _app(tmp_path, *args, results_path=None):
    env = dict(os.environ, PYTHONPATH=str(REPO / ".pkgroot") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("TRITON_INTERPRET", None)  # the app decides: the interpreter on the CPU only
    return subprocess.run(
        [sys.executable, "-m", "dropbench.bench", *args, f"results.path={results_path or tmp_path / 'smoke.csv'}",
         f"hydra.run.dir={tmp_path / 'outputs'}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )


def test_smoke_preset_of_every_op_end_to_end(tmp_path):
    # device=cpu: the smoke preset's CPU path (the interpreter, timer=cpu) on any machine; on a GPU
    # device=auto would compile every kernel of every op, and the in-process tests cover the GPU timers.
    done = _app(tmp_path, "+preset=smoke", "op=all", "device=cpu")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    path = tmp_path / "smoke.csv"
    rows = read(path)
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        points = plan.expand(compose(config_name="config", overrides=["+preset=smoke", "op=all"]), "cpu")
    planned = itertools.chain.from_iterable(map(plan.Point.keys, points))
    assert keys(rows) == [tuple(map(str, key)) for key in planned], \
        "every backend, direction, shape and timer of every op, plus the copies, in plan order"
    not_ok = [(row["op"], row["backend"], row["direction"], row["error"]) for row in rows if row["status"] != "ok"]
    assert {(op, direction, error) for op, _, direction, error in not_ok} == {
        ("dropout_inplace", "fwd+bwd", INPLACE_FWD_BWD)}, not_ok
    assert all(row["status"] == "skipped" for row in rows if row["status"] != "ok")
    assert {row["op"] for row in rows} == set(schema.OPS) | {schema.COPY}
    assert {row["shape"] for row in rows if row["op"] == "dropout2d"} == {"1x16x4x4", "8x16x4x4", "2x8x4x4", "2x2x8x8"}
    assert {row["timer"] for row in rows} == {"cpu"}
    assert (tmp_path / "outputs" / ".hydra" / "config.yaml").exists(), "Hydra should keep the composed config"
    assert (tmp_path / "outputs" / "dropbench-sweep.log").read_text().count("check ") == len(catalogue.pairs())

    # The CSV is what plots and compare read.
    results = load.load_results([path])
    assert {facet.op for facet in render.facets(results)} == set(schema.OPS)
    (conv,) = render.shapes_facets(results)
    figures.shapes(conv.select(results), figures.Style.from_results(results), "smoke")
    assert compare.main([str(path), str(path)]) == 0

    if torch.cuda.is_available():
        return
    # No GPU and no preset: a loud banner, the same smoke sweep (so here: all resumed), exit 0.
    again = _app(tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "NO GPU FOUND" in again.stderr and "timer=cpu" in again.stderr
    assert read(tmp_path / "smoke.csv") == rows, "the fallback is the smoke sweep: nothing new to measure"
    assert again.stdout.strip().splitlines()[-1] == f"dropbench-sweep: 0 new rows; results in {path}", \
        "the sweep should end by saying where the CSV went"


# ---- one catalogue: a new op and a new backend are one row each ------------------------------------

CALLED = []


def twin_kernel(x, p, seed):
    """A 'new' seeded kernel: the element kernel under another name, so it still matches the reference."""
    from dropbench import kernels

    CALLED.append("twin_kernel")
    return kernels.seeded_dropout(x, p, seed)


def traced(fn):
    """A 'new' backend's wrapper: calls the op's eager function, and says it did."""
    def call(*args):
        CALLED.append("traced")
        return fn(*args)
    return call


def test_a_new_op_and_backend_are_checked_and_timed_from_catalogue_rows_alone(tmp_path, monkeypatch):
    CALLED.clear()
    monkeypatch.setitem(catalogue.OPS, "dropout_twin", catalogue.Op(
        kernel="test_runner:twin_kernel", eager="dropbench.baselines.eager:dropout",
        reference="dropbench.kernels.reference:seeded_dropout"))
    monkeypatch.setitem(catalogue.BACKENDS, "traced_eager", catalogue.Backend("eager", bit_exact=False,
                                                                              wrap="test_runner:traced"))
    rows = sweep_rows(tmp_path, "op.names=[dropout_twin]", "backend.names=[triton,traced_eager]")
    twin = [row for row in rows if row["op"] == "dropout_twin"]
    assert {row["backend"] for row in twin} == {"triton", "traced_eager"}
    assert len(twin) == len(SMOKE_SHAPES) * len(TIMERS) * 3 * 2, "every shape, timer and direction of both"
    assert all(row["status"] == "ok" and float(row["ms_median"]) > 0 for row in twin), twin
    assert {"twin_kernel", "traced"} <= set(CALLED), "the rows' functions were not the ones run"


# ---- what changes a measurement is recorded: variational_dim, samples -----------------------------

def test_the_configured_variational_dim_reaches_the_implementation(tmp_path, fast_compile, monkeypatch):
    dims = []
    eager = catalogue.implementation("variational", "eager")

    def recording(x, p, seed, dim):
        dims.append(dim)
        return eager(x, p, seed, dim)

    patch_implementation(monkeypatch, "variational", "eager", recording)
    sweep_rows(tmp_path, "op.names=variational", "backend=eager", "variational_dim=-1")
    assert dims and set(dims) == {1}, f"variational_dim=-1 of a (rows, cols) input is dim 1, got {set(dims)}"


def test_each_point_forgets_the_kept_launches_before_its_first_call(tmp_path, fast_compile, monkeypatch):
    """A point's first call must take the launcher (its config column names the kernel that runs),
    not a launch an earlier point kept (kernels.runtime.forget_kept_launches)."""
    events = []
    eager = catalogue.implementation("dropout", "eager")

    def recording(x, p, seed, dim):
        events.append("call")
        return eager(x, p, seed, dim)

    monkeypatch.setattr(runner, "forget_kept_launches", lambda: events.append("forget"))
    patch_implementation(monkeypatch, "dropout", "eager", recording)
    rows = sweep_rows(tmp_path, "op.names=dropout", "backend=eager")
    points = {(row["shape"], row["dtype"], row["p"]) for row in rows if row["op"] == "dropout"}
    assert events.count("forget") == len(points) > 0
    assert all(after == "call" for before, after in zip(events, events[1:]) if before == "forget")


def test_the_config_column_names_a_later_variants_choice_too(tmp_path, fast_compile, monkeypatch):
    """The drop-in's stream index passes 2**31 after a few large calls: the timed calls then run
    another kernel variant with its own autotune choice, which the config column must name
    (bench.compare tells retuned rows by it)."""
    asked = []

    def chosen():  # asked after a point's first calls, then after its timed calls: another variant
        asked.append(1)
        return "BLOCK=1024 num_warps=4" if len(asked) % 2 else "BLOCK=2048 num_warps=8"

    patch_implementation(monkeypatch, "dropout", "eager", catalogue.implementation("dropout", "eager"), chosen=chosen)
    rows = [row for row in sweep_rows(tmp_path, "op.names=dropout", "backend=eager") if row["op"] == "dropout"]
    assert rows and all(row["config"].startswith("BLOCK=1024 num_warps=4 first_call_ms=") for row in rows), rows
    assert all(row["config"].endswith(" later: BLOCK=2048 num_warps=8") for row in rows), rows


@pytest.mark.skipif("variational_dim" not in schema.KEY_COLUMNS,
                    reason="the schema's row key has no variational_dim yet (the results branch adds it)")
def test_another_variational_dim_is_measured_not_skipped(tmp_path, fast_compile):
    first = sweep_rows(tmp_path, "op.names=variational", "backend=eager")
    rows = sweep_rows(tmp_path, "op.names=variational", "backend=eager", "variational_dim=1")
    measured = [row for row in rows if row["op"] == "variational"]
    assert {row["variational_dim"] for row in measured} == {"0", "1"}
    assert len(rows) == 2 * len(first) - sum(row["op"] == "copy" for row in first), \
        "the variational rows of dim 1 should be new rows, the copies reused"


@pytest.mark.skipif("samples" not in schema.COLUMNS, reason="the schema has no samples column yet (results branch)")
def test_rows_record_how_many_samples_they_timed(tmp_path, fast_compile):
    cfg = smoke_cfg(tmp_path)
    rows = sweep_rows(tmp_path)
    expected = cfg.timing.cpu_reps if DEVICE == "cpu" else None
    assert all(int(row["samples"]) >= 1 for row in rows), "every timed row has a sample count"
    if expected:
        assert {row["samples"] for row in rows} == {str(expected)}


# ---- sane references: the copy is checked before anything is read against it --------------------

#: For tests of op rows against their copy at bandwidth_bound_bytes=1: on a GPU, do_bench and the CUDA
#: graph time a tiny copy far apart (do_bench times the launch), which would mark it suspect first.
COPY_TIMERS_AGREE = "timing.copy_tolerance_pct=1e9"


def test_copy_timers_that_agree_or_are_not_bandwidth_bound_are_no_problem():
    point = plan.copy_point("fp64", 4096, 49152, ("do_bench", "cudagraph"))
    assert runner.copy_disagreement(point, {"do_bench": 0.760, "cudagraph": 0.775}, 5, 1 << 28) == ""
    small = plan.copy_point("fp16", 1, 49152, ("do_bench", "cudagraph"))
    assert runner.copy_disagreement(small, {"do_bench": 0.02, "cudagraph": 0.004}, 5, 1 << 28) == ""


def test_copy_timers_that_disagree_say_by_how_much():
    # The H200 case of issue 14: 4096 x 49152 fp64, CUDA graph 2762 GB/s against do_bench's 4245.
    point = plan.copy_point("fp64", 4096, 49152, ("do_bench", "cudagraph"))
    moved = 2 * point.numel * 8
    problem = runner.copy_disagreement(
        point, {"do_bench": moved / 4245e9 * 1e3, "cudagraph": moved / 2762e9 * 1e3}, 5, 1 << 28)
    assert problem == ("copy timers disagree by more than timing.copy_tolerance_pct=5: "
                       "do_bench 4245 GB/s, cudagraph 2762 GB/s"), problem


def test_a_copy_whose_timers_keep_disagreeing_is_retimed_then_marked(tmp_path, fast_compile, monkeypatch):
    # Two timers on the CPU stand in for a GPU's two: host made 3x slower than cpu, every time.
    monkeypatch.setattr(plan, "timers_for", lambda device, rows, timing: ("cpu", "host"))
    monkeypatch.setattr(runner, "DEVICE_TIMERS", ("cpu", "host"))
    real = runner.measure

    def slow_host(build, timer, timing, reference=None):
        result = real(build, timer, timing, reference)
        return replace(result, median=result.median * 3) if timer == "host" else result

    monkeypatch.setattr(runner, "measure", slow_host)
    rows = sweep_rows(tmp_path, "op.names=dropout", "backend=eager", "timing.bandwidth_bound_bytes=1",
                      "timing.copy_retimes=2", "timing.host_calls=2", "timing.host_rounds=2")
    copies = [row for row in rows if row["op"] == "copy"]
    assert copies and all(row["status"] == runner.SUSPECT_COPY for row in copies), copies
    assert all("copy timers disagree" in row["error"] for row in copies)
    ops = [row for row in rows if row["op"] == "dropout"]
    assert ops and all(row["status"] == "ok" and row["pct_of_copy"] == "" for row in ops), \
        "no op row should be read against a suspect copy"
    assert all("suspect_copy: the copy's timers disagree" in row["error"] for row in ops if row["timer"] == "cpu")


def test_an_op_reading_more_than_its_copy_retimes_it_once_then_flags_the_row(tmp_path, fast_compile, monkeypatch):
    retimes = []
    real = runner.Sweep._retime_copy

    def counting(self, point, timer):
        retimes.append((point.rows, point.cols, timer))
        return real(self, point, timer)

    monkeypatch.setattr(runner.Sweep, "_retime_copy", counting)
    rows = sweep_rows(tmp_path, "op.names=dropout", "backend=eager", "timing.bandwidth_bound_bytes=1",
                      "timing.max_pct_of_copy=0.001", COPY_TIMERS_AGREE)
    ops = [row for row in rows if row["op"] == "dropout"]
    assert ops and all(row["status"] == "ok" and row["pct_of_copy"] == "" for row in ops)
    assert all(row["error"].startswith("suspect_copy: reads") for row in ops), ops[0]["error"]
    assert sorted(retimes) == sorted(set(retimes)) and len(retimes) == len(SMOKE_SHAPES) * len(TIMERS), \
        "each copy should be re-timed once, not once per row"


def test_a_retimed_copy_that_settles_it_is_used_and_said(tmp_path, fast_compile, monkeypatch):
    monkeypatch.setattr(runner.Sweep, "_retime_copy", lambda self, point, timer: Timing(1e-9, 1e-9, 1e-9, 3))
    rows = sweep_rows(tmp_path, "op.names=dropout", "backend=eager", "timing.bandwidth_bound_bytes=1",
                      "timing.max_pct_of_copy=0.001", COPY_TIMERS_AGREE)
    ops = [row for row in rows if row["op"] == "dropout"]
    assert all(float(row["pct_of_copy"]) < 0.001 for row in ops), "pct_of_copy should use the re-timed copy"
    assert all("pct_of_copy against the copy re-timed at 1e-09 ms" in row["error"] for row in ops)


# ---- host rows: timed in rounds alternating with F.dropout's -----------------------------------------

def test_host_rows_of_the_triton_backend_alone_carry_f_dropouts_host_time(tmp_path, monkeypatch):
    # The host timer exists on a GPU only (plan.timers_for); here it is chosen on any device.
    monkeypatch.setattr(plan, "timers_for", lambda device, rows, timing: ("host",))
    references = []
    real = runner.eager.dropout

    def recording(x, p):
        references.append((tuple(x.shape), p, x.requires_grad))
        return real(x, p)

    monkeypatch.setattr(runner.eager, "dropout", recording)
    rows = sweep_rows(tmp_path, "op.names=dropout", "backend.names=[triton]", "shape.rows=[8]", "timing.host_calls=2",
                      "timing.host_rounds=3")
    ops = [row for row in rows if row["op"] == "dropout"]
    assert {row["direction"] for row in ops} == set(schema.OP_DIRECTIONS) and all(row["status"] == "ok" for row in ops)
    for row in ops:
        ratio = [float(row[f"host_ratio_{stat}"]) for stat in ("p20", "median", "p80")]
        assert float(row["host_ref_ms"]) > 0 and 0 < ratio[0] <= ratio[1] <= ratio[2], row
    assert set(references) == {((8, 256), 0.5, True)}, "the reference is F.dropout on the row's own input, in training"
    # fwd and fwd+bwd: a first call, an untimed round that sizes the GPU holds, then a round of 2 calls
    # per host round; bwd: its one forward up front
    assert len(references) == 2 * (1 + 2 + 2 * 3) + 1, f"F.dropout ran {len(references)} times"
    (copy,) = [row for row in rows if row["op"] == "copy"]
    assert copy["host_ref_ms"] == copy["host_ratio_median"] == "", "a copy row has no reference"
    assert compare.main([str(tmp_path / "results.csv")] * 2) == 0


# ---- a command line that explains itself -------------------------------------------------------------

def _other_devices_file(tmp_path) -> Path:
    path = tmp_path / "h100.csv"
    row = {"op": "copy", "backend": "copy", "dtype": "fp32", "rows": 1, "cols": 256, "shape": "1x256", "numel": 256,
           "p": 0.0, "direction": "fwd", "timer": "do_bench", "variational_dim": 0, "autograd_threads": "False",
           "status": "ok", "ms_median": 0.001, "device": "NVIDIA H100 80GB HBM3"}
    with open(path, "w", newline="") as file:
        writer = csv.DictWriter(file, schema.COLUMNS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerow(row)
    return path


@pytest.mark.parametrize("args, words", [
    (["p=[1.5]"], "p=[1.5]: allowed: a number in [0, 1]"),
    (["dtype.names=[fp8]"], "dtype.names: unknown fp8; allowed: fp16, bf16, fp32, fp64"),
    (["variational_dim=5"], "variational_dim=5: allowed: 0 or 1"),
    (["backend.names=[triton_seeded]"], "backend.names: unknown triton_seeded; allowed: triton, dropin, eager, compile, compile_fallback, tutorial, seedrepo_1d, seedrepo_2d, all"),
    (["RESULTS_DIR"], "is a directory; allowed: the path of a CSV file"),
    (["seed=${oops}"], "InterpolationKeyError: Interpolation key 'oops' not found; full_key: seed"),
    (["OTHER_DEVICE", "+preset=smoke", "device=cpu"], "holds rows measured on NVIDIA H100 80GB HBM3, not cpu"),
    pytest.param(["device=cuda"], "device=cuda: torch sees no CUDA device",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")),
])
def test_a_bad_config_is_one_line_and_exit_2(tmp_path, args, words):
    results_path = None
    if "RESULTS_DIR" in args:
        args, results_path = [arg for arg in args if arg != "RESULTS_DIR"], tmp_path
    if "OTHER_DEVICE" in args:
        args, results_path = [arg for arg in args if arg != "OTHER_DEVICE"], _other_devices_file(tmp_path)
    done = _app(tmp_path, *args, results_path=results_path)
    assert done.returncode == 2, f"exit {done.returncode}: {done.stderr[-2000:]}"
    errors = [line for line in done.stderr.splitlines() if line.startswith("dropbench-sweep: error: ")]
    assert len(errors) == 1 and words in errors[0], f"expected one line with {words!r}, got: {done.stderr[-2000:]}"
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("args, words", [
    (["dtype=fp8"], "dtype=fp8: no such option; allowed: all, bf16, fp16, fp16_fp32, fp32, fp64, half, models"),
    (["hydra/launcher=nope"], "hydra/launcher=nope: no such option; allowed: basic, cpu_local"),
    (["results.timer=bogus"], "results.timer: not a key of the config; allowed: the keys that --cfg job lists"),
    (["dtype=[fp16"], "Hydra refuses the command line: no viable alternative at input '[fp16'"),
    (["preset=ci"], "preset: a config group that is not in the defaults list; allowed: +preset=ci adds it"),
    (["+device.name=cpu"], "Hydra refuses the command line: Could not append to config"),
])
def test_a_command_line_hydra_refuses_is_one_line_and_exit_2(tmp_path, args, words):
    """Hydra's own refusal (unknown option or key, bad syntax: several lines of its own) is one line
    naming the argument and what it allows, and exit 2 like every bad input, not 1 (an incorrect kernel)."""
    done = _app(tmp_path, *args)
    assert done.returncode == 2, f"exit {done.returncode}: {done.stderr[-2000:]}"
    assert done.stderr.strip().splitlines() == [done.stderr.strip()], f"not one line: {done.stderr[-2000:]}"
    assert done.stderr.startswith("dropbench-sweep: error: ") and words in done.stderr, done.stderr[-2000:]


@pytest.mark.parametrize("callbacks", [[], ["~hydra/callbacks"]])
def test_a_log_handler_on_stderr_still_logs_once_the_run_starts(tmp_path, callbacks):
    """stderr is held while Hydra composes (to replace its refusal by one line); a handler made then must
    still reach the real stderr, with the callback that releases it and without (the app releases it)."""
    done = _app(tmp_path, "+preset=smoke", "device=cpu", "op.names=[dropout]", "backend.names=[eager]",
                "dtype=fp32", "hydra.job_logging.handlers.console.stream=ext://sys.stderr", *callbacks)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stderr.count("[dropbench.bench.runner][INFO] - wrote ") == 1, done.stderr[-2000:]


@pytest.mark.skipif(torch.cuda.is_available(), reason="shows the CPU fallback: needs a machine without a GPU")
def test_cfg_job_on_a_cpu_shows_the_smoke_config_that_runs(tmp_path):
    done = _app(tmp_path, "--cfg", "job")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "cols: 256" in done.stdout and "cols: 49152" not in done.stdout, "not the smoke sweep's shapes"


def test_help_describes_the_app_and_its_common_commands(tmp_path):
    done = _app(tmp_path, "--help")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("dropbench-sweep: time dropout")
    for command in ("+preset=smoke", "+preset=ci", "--cfg job", "dropbench-compare", "op: all, alpha, channel, core"):
        assert command in done.stdout, f"--help does not mention {command}"


# ---- shape=models: named shapes of real models ----------------------------------------------------

def test_model_shapes_are_measured_and_named_in_the_csv(tmp_path, fast_compile):
    models = ("[{name: tiny attn, mask: element, shape: [2, 2, 8, 8]}, "
              "{name: tiny seq, mask: variational, shape: [2, 8, 16]}]")
    rows = sweep_rows(tmp_path, "shape=models", f"shape.models={models}", "variational_dim=1")
    named = {(row["op"], row["shape"], row["model"]) for row in rows if row["op"] != schema.COPY}
    assert named == {("dropout", "2x2x8x8", "tiny attn"), ("variational", "2x8x16", "tiny seq")}, named
    assert all(row["status"] == "ok" for row in rows), [row["error"] for row in rows if row["status"] != "ok"]
    assert {(row["shape"], row["model"]) for row in rows if row["op"] == schema.COPY} == {("2x128", "")}, "both shapes share one copy of 2 x 128"
    assert {row["variational_dim"] for row in rows if row["op"] == "variational"} == {"1"}
