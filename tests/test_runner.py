"""bench.runner and the dropbench-sweep app: rows, resume, faults, the correctness gate, the smoke run.

Most tests run the smoke sweep with the compile backends replaced by eager stand-ins
(monkeypatched registry entries), so they take seconds; the end-to-end test runs the
real app, every backend included, in a subprocess. They run on the GPU where there is
one (do_bench and CUDA-graph timers), else on the CPU (timer=cpu).
"""

import csv
import itertools
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir

from dropbench.bench import compare, plan, registry, runner, schema, summary, sweep
from dropbench.bench.registry import Implementation
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
    for op in registry.ops():
        eager = registry.get(op, "eager")
        monkeypatch.setitem(registry.REGISTRY, (op, "compile"), Implementation(op, "compile", eager.call, False))


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
    rows = sweep_rows(tmp_path, f"timing.autograd_threads={threads}", "op=dropout")
    assert seen and set(seen) == {threads}, "the steps did not run under the configured setting"
    assert {row["autograd_threads"] for row in rows} == {str(threads and DEVICE == "cuda")}, \
        "the column says where backward ran: on the CPU always the calling thread"


def test_a_setting_that_is_not_a_bool_is_refused(tmp_path):
    with pytest.raises(ValueError, match="timing.autograd_threads must be true or false, got 'false'"):
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
    eager = registry.get("dropout", "eager")

    def oom_at_eight_rows(x, p, seed, dim):
        if x.shape == (8, 256):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return eager(x, p, seed, dim)

    monkeypatch.setitem(registry.REGISTRY, ("dropout", "eager"),
                        Implementation("dropout", "eager", oom_at_eight_rows, False))
    rows = sweep_rows(tmp_path)
    failed = [row for row in rows if row["status"] != "ok"]
    assert {(row["backend"], row["rows"], row["direction"], row["timer"]) for row in failed} == {
        ("eager", "8", direction, timer) for direction in schema.DIRECTIONS for timer in TIMERS}
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

    def flaky(build, timer, timing):
        calls.append(timer)
        if len(calls) == 5:
            raise ValueError("timer broke")
        return original(build, timer, timing)

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

    monkeypatch.setitem(registry.REGISTRY, ("dropout", "compile"),
                        Implementation("dropout", "compile", wrong_p, False))
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
    rows = sweep_rows(tmp_path, "op=dropout_inplace", "backend=all")
    ops = [row for row in rows if row["op"] == "dropout_inplace"]
    assert {row["backend"] for row in ops} == {"triton_seeded", "eager", "compile"}
    for row in ops:
        if row["direction"] == "fwd+bwd":
            assert row["status"] == "skipped" and row["error"] == INPLACE_FWD_BWD and row["ms_median"] == ""
        else:
            assert row["status"] == "ok" and float(row["ms_median"]) > 0 and row["pct_of_copy"], row
            assert "first_grad_call_ms=" in row["config"], "the clone path's first call should be reported"
    saved = {row["backend"]: int(row["saved_bytes"]) for row in ops if row["status"] == "ok" and row["rows"] == "8"}
    assert saved["triton_seeded"] == 0, "the seeded in-place op saves nothing for backward"
    assert saved["eager"] >= 8 * 256, "eager in-place dropout saves its mask"
    assert not summary.failures(rows), "skipped is not a failure"


def test_channel_rows_carry_their_shape_and_share_their_copy(tmp_path):
    rows = sweep_rows(tmp_path, "op=dropout2d", "backend=eager")
    copies = {(row["rows"], row["cols"]): float(row["ms_median"]) for row in rows if row["op"] == "copy"}
    assert set(copies) == {("1", "256"), ("8", "256"), ("2", "128")}
    conv = [row for row in rows if row["op"] == "dropout2d" and row["rows"] == "2"]
    assert {row["shape"] for row in conv} == {"2x8x4x4", "2x2x8x8"}
    for row in rows:
        ms, passes = float(row["ms_median"]), schema.PASSES[row["direction"]]
        expected = 100 * copies[(row["rows"], row["cols"])] * passes / ms
        assert float(row["pct_of_copy"]) == pytest.approx(expected, rel=1e-4), row["shape"]
        assert row["numel"] == str(int(row["rows"]) * int(row["cols"]))


@pytest.mark.parametrize("name, has_cuda, preset, expected", [
    ("auto", True, False, ("cuda", False)),
    ("auto", False, False, ("cpu", True)),     # no GPU, no preset: fall back to smoke, loudly
    ("auto", False, True, ("cpu", False)),
    ("cpu", True, False, ("cpu", False)),
])
def test_device_resolution(name, has_cuda, preset, expected):
    cfg = smoke_cfg(Path("unused"), f"device={name}")
    assert sweep.resolve_device(cfg, has_cuda, preset) == expected


def test_device_cuda_without_a_gpu_is_an_error():
    with pytest.raises(RuntimeError, match="no CUDA device"):
        sweep.resolve_device(smoke_cfg(Path("unused"), "device=cuda"), False, False)


def _app(tmp_path, *args):
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("TRITON_INTERPRET", None)  # the app decides: the interpreter on the CPU only
    return subprocess.run(
        [sys.executable, "-m", "bench", *args, f"results.path={tmp_path / 'smoke.csv'}",
         f"hydra.run.dir={tmp_path / 'outputs'}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )


def test_smoke_preset_of_every_op_end_to_end(tmp_path):
    done = _app(tmp_path, "+preset=smoke", "op=all")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    path = tmp_path / "smoke.csv"
    rows = read(path)
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        points = plan.expand(compose(config_name="config", overrides=["+preset=smoke", "op=all"]), DEVICE)
    planned = itertools.chain.from_iterable(map(plan.Point.keys, points))
    assert keys(rows) == [tuple(map(str, key)) for key in planned], \
        "every backend, direction, shape and timer of every op, plus the copies, in plan order"
    not_ok = [(row["op"], row["backend"], row["direction"], row["error"]) for row in rows if row["status"] != "ok"]
    assert {(op, direction, error) for op, _, direction, error in not_ok} == {
        ("dropout_inplace", "fwd+bwd", INPLACE_FWD_BWD)}, not_ok
    assert all(row["status"] == "skipped" for row in rows if row["status"] != "ok")
    assert {row["op"] for row in rows} == set(schema.OPS) | {schema.COPY}
    assert {row["shape"] for row in rows if row["op"] == "dropout2d"} == {"1x16x4x4", "8x16x4x4", "2x8x4x4", "2x2x8x8"}
    assert {row["timer"] for row in rows} == set(TIMERS)
    assert (tmp_path / "outputs" / ".hydra" / "config.yaml").exists(), "Hydra should keep the composed config"
    assert (tmp_path / "outputs" / "dropbench-sweep.log").read_text().count("check ") == len(registry.REGISTRY)

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
