"""plots: every figure is written as PNG and SVG from synthetic CSVs; bad input is named."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dropbench.bench import schema
from dropbench.plots import figures, render
from dropbench.plots.__main__ import main
from dropbench.plots.load import load_results
from dropbench.plots.render import KINDS, MEMORY_KIND, facets, save, shapes_facets, subtitle

REPO = Path(__file__).resolve().parents[1]
SIZES = [2**10, 2**12, 2**14, 2**16]
COLS = 1024
P = 0.1
#: The one row that failed its correctness check; it must show as a gap.
BAD = {"op": "dropout", "backend": "triton", "dtype": "fp16", "direction": "fwd",
       "rows": 2**14}
#: Fraction of copy throughput each backend reaches, roughly as on a GPU.
FRACTION = {"triton": 0.9, "eager": 0.45, "compile": 0.7}
BACKENDS_OF = {"dropout": ["triton", "eager", "compile"],
               "variational": ["triton", "eager", "compile"],
               "dropout2d": ["triton", "eager", "compile"]}
#: What each op's rows x COLS input looks like: channel ops split COLS into (C, H, W).
PER_ROW = {"dropout": (COLS,), "variational": (COLS,), "dropout2d": (16, 8, 8)}
#: Conv shapes: one rows value each, so a bar chart rather than lines against rows.
CONV_SHAPES = [(32, 64, 56, 56), (32, 256, 14, 14), (32, 512, 7, 7)]
PNG_MAGIC = b"\x89PNG"


def make_results(device="NVIDIA H100 80GB HBM3", ops=("dropout", "variational"),
                 dtypes=("fp16", "fp32"), timers=("do_bench",), seed=0, conv_shapes=(),
                 backends=None) -> pd.DataFrame:
    """A results table with every schema column: copy rows, backends, directions, one failure.

    conv_shapes: shapes measured for dropout2d (and their copies) besides the rows sweep.
    """
    rng = np.random.default_rng(seed)
    records = []

    def record(op, backend, dtype, rows, direction, timer, fraction, shape=None):
        shape = shape or (rows, *PER_ROW.get(op, (COLS,)))
        cols = int(np.prod(shape[1:]))
        numel = rows * cols
        passes = schema.PASSES[direction]
        useful_bytes = 2 * numel * schema.DTYPE_BYTES[dtype] * passes
        copy_gbps = 3000 * rows / (rows + 2**12)
        gbps = copy_gbps * fraction * rng.uniform(0.95, 1.05)
        ms = useful_bytes / (gbps * 1e6)
        failed = all(dict(op=op, backend=backend, dtype=dtype, rows=rows,
                          direction=direction).get(key) == value for key, value in BAD.items())
        records.append({
            "op": op, "backend": backend, "dtype": dtype, "rows": rows, "cols": cols,
            "shape": schema.shape_text(shape), "numel": numel, "p": P, "variational_dim": 0,
            "direction": direction, "timer": timer, "autograd_threads": device != "cpu", "mask_contract": "v1",
            "ms_median": ms, "ms_p20": ms * 0.97, "ms_p80": ms * 1.05,
            # A failed row keeps a zero throughput, the trap a plot must not fall into.
            "gbps": 0.0 if failed else gbps,
            "pct_of_copy": 100 * fraction, "speedup_vs_eager": fraction / FRACTION["eager"],
            "saved_bytes": 0 if backend.startswith("triton") or backend == "copy" else numel,
            "peak_bytes": 3 * numel * schema.DTYPE_BYTES[dtype],
            "config": "BLOCK=1024" if backend.startswith("triton") else "",
            "status": "incorrect" if failed else "ok",
            "error": "max abs diff 0.5" if failed else "",
            "device": device, "sm_count": 132, "torch": "2.11.0", "triton": "3.6.0",
            "cuda": "12.8", "commit": "abc1234", "host": "gpu-1",
            "timestamp": "2025-01-01T00:00:00Z", "run_id": f"run-{seed}",
        })

    for timer in timers:
        for dtype in dtypes:
            for rows in SIZES:
                record("copy", "copy", dtype, rows, "fwd", timer, 1.0)
                for op in ops:
                    for backend in backends or BACKENDS_OF[op]:
                        for direction in schema.OP_DIRECTIONS:
                            record(op, backend, dtype, rows, direction, timer, FRACTION[backend])
            for shape in conv_shapes:
                record("copy", "copy", dtype, shape[0], "fwd", timer, 1.0,
                       shape=(shape[0], int(np.prod(shape[1:]))))
                for backend in backends or BACKENDS_OF["dropout2d"]:
                    for direction in schema.OP_DIRECTIONS:
                        record("dropout2d", backend, dtype, shape[0], direction, timer, FRACTION[backend], shape)
    return pd.DataFrame.from_records(records, columns=schema.COLUMNS)


def write_csv(path: Path, **kwargs) -> Path:
    make_results(**kwargs).to_csv(path, index=False)
    return path


def expected_files(ops, dtypes, timers, kinds=tuple(KINDS)) -> set[str]:
    """Every figure of each timer, and one memory figure whatever the timers."""
    per_timer = {f"{kind}-{op}-{dtype}-p{P:g}-cols{COLS}-{timer}.{fmt}"
                 for kind in kinds for op in ops for dtype in dtypes for timer in timers
                 for fmt in ("png", "svg")}
    return per_timer | {f"{MEMORY_KIND}-{op}-{dtype}-p{P:g}-cols{COLS}.{fmt}"
                        for op in ops for dtype in dtypes for fmt in ("png", "svg")}


def assert_figures(out: Path, expected: set[str]) -> None:
    written = {path.name for path in out.iterdir()}
    assert written == expected, (f"missing {sorted(expected - written)}, "
                                 f"unexpected {sorted(written - expected)}")
    for name in expected:
        data = (out / name).read_bytes()
        assert len(data) > 1000, f"{name} is only {len(data)} bytes"
        if name.endswith(".png"):
            assert data.startswith(PNG_MAGIC), f"{name} is not a PNG"
        else:
            assert b"<svg" in data[:2000], f"{name} is not an SVG"


def throughput_figure(csvs: list[Path]):
    """The fp16 dropout throughput figure, drawn in memory, for looking at its parts."""
    results = load_results(csvs)
    facet = next(f for f in facets(results) if (f.op, f.dtype) == ("dropout", "fp16"))
    rows, copy = facet.select(results)
    return figures.throughput(rows, copy, figures.Style.from_results(results), facet.title("d"))


def test_cli_writes_png_and_svg_of_every_figure(tmp_path, capsys):
    csv = write_csv(tmp_path / "h100.csv")
    assert main([str(csv), "--out", str(tmp_path / "figs")]) == 0
    assert_figures(tmp_path / "figs",
                   expected_files(["dropout", "variational"], ["fp16", "fp32"], ["do_bench"]))
    listed = capsys.readouterr().out.split()
    expected = expected_files(["dropout", "variational"], ["fp16", "fp32"], ["do_bench"])
    assert len(listed) == len(expected), f"the CLI should list the {len(expected)} files it wrote, listed {len(listed)}"


def test_two_csvs_share_each_figure_labelled_by_device(tmp_path):
    h100 = write_csv(tmp_path / "a.csv", device="NVIDIA H100", ops=("dropout",), dtypes=("fp16",))
    h200 = write_csv(tmp_path / "b.csv", device="NVIDIA H200", ops=("dropout",), dtypes=("fp16",),
                     seed=1)
    assert main([str(h100), str(h200), "--out", str(tmp_path / "figs"), "--quiet"]) == 0
    assert_figures(tmp_path / "figs", expected_files(["dropout"], ["fp16"], ["do_bench"]))

    legend = [text.get_text() for text in throughput_figure([h100, h200]).legends[0].get_texts()]
    assert {"NVIDIA H100", "NVIDIA H200", "triton", "copy (roofline)"} <= set(legend), legend


def test_runs_on_one_device_are_labelled_by_file_stem(tmp_path):
    before = write_csv(tmp_path / "before.csv", ops=("dropout",), dtypes=("fp16",))
    after = write_csv(tmp_path / "after.csv", ops=("dropout",), dtypes=("fp16",), seed=1)
    runs = list(pd.unique(load_results([before, after])["run"]))
    assert runs == ["before", "after"], f"runs on one device should be named by file, got {runs}"


def test_row_that_is_not_ok_is_a_gap_and_a_marker_not_a_zero(tmp_path):
    csv = write_csv(tmp_path / "h100.csv", ops=("dropout",), dtypes=("fp16",))
    fwd_axis = throughput_figure([csv]).axes[0]
    assert fwd_axis.get_title() == "fwd"
    seeded = [line for line in fwd_axis.get_lines()
              if line.get_color() == figures.Style(runs=(), backends=()).color("triton")]
    data_line = next(line for line in seeded if line.get_transform() == fwd_axis.transData)
    x, y = np.asarray(data_line.get_xdata()), np.asarray(data_line.get_ydata())
    assert np.isnan(y[x == BAD["rows"]]).all(), f"status incorrect plotted at {y[x == BAD['rows']]}"
    assert np.isfinite(y[x != BAD["rows"]]).all(), "ok rows should all be drawn"
    markers = [line for line in seeded if line.get_marker() == "x"]
    assert markers and list(markers[0].get_xdata()) == [BAD["rows"]], "no 'x' at the failed size"


def test_each_timer_gets_its_own_figures(tmp_path):
    csv = write_csv(tmp_path / "h100.csv", ops=("dropout",), dtypes=("fp16",),
                    timers=("do_bench", "cudagraph"))
    results = load_results([csv])
    stems = {facet.stem(kind) + ".png" for facet in facets(results) for kind in KINDS}
    assert stems == {name for name in expected_files(["dropout"], ["fp16"], ["do_bench", "cudagraph"])
                     if name.endswith(".png") and not name.startswith(MEMORY_KIND)}
    for facet in facets(results):
        rows, copy = facet.select(results)
        timers = set(rows["timer"]) | set(copy["timer"])
        assert timers == {facet.timer}, f"{facet} mixes timers {timers}"


def test_timer_option_plots_only_that_timer(tmp_path):
    csv = write_csv(tmp_path / "h100.csv", ops=("dropout",), dtypes=("fp16",),
                    timers=("do_bench", "cudagraph"))
    assert main([str(csv), "--out", str(tmp_path / "figs"), "--timer", "cudagraph", "--quiet"]) == 0
    assert_figures(tmp_path / "figs", expected_files(["dropout"], ["fp16"], ["cudagraph"]))


def test_saving_twice_writes_identical_files(tmp_path):
    csv = write_csv(tmp_path / "h100.csv", ops=("dropout",), dtypes=("fp16",))
    first, second = (save(throughput_figure([csv]), tmp_path / name) for name in ("a", "b"))
    for one, other in zip(first, second):
        assert one.read_bytes() == other.read_bytes(), f"{one.name} and {other.name} differ"


def csv_missing_gbps(path: Path) -> None:
    make_results(ops=("dropout",), dtypes=("fp16",)).drop(columns="gbps").to_csv(path, index=False)


def csv_with_unknown_op(path: Path) -> None:
    results = make_results(ops=("dropout",), dtypes=("fp16",))
    results.loc[3, "op"] = "dropconnect"
    results.to_csv(path, index=False)


def csv_with_copy_backend_for_dropout(path: Path) -> None:
    results = make_results(ops=("dropout",), dtypes=("fp16",))
    results.loc[1, "backend"] = "copy"
    results.to_csv(path, index=False)


def csv_header_only(path: Path) -> None:
    make_results().iloc[:0].to_csv(path, index=False)


@pytest.mark.parametrize(("make", "message"), [
    (None, "no such file"),
    (lambda path: path.write_text(""), "empty file (no header, no rows)"),
    (csv_header_only, "no rows to plot (a header only)"),
    (csv_missing_gbps, "not a results CSV of this version: missing column(s) gbps"),
    (csv_with_unknown_op, f"line 5: op 'dropconnect' is not one of {', '.join(schema.ALL_OPS)}"),
    (csv_with_copy_backend_for_dropout,
     "line 3 has op dropout with backend copy; op copy goes with backend copy only"),
], ids=["missing-file", "empty", "header-only", "missing-column", "unknown-op", "copy-backend"])
def test_bad_input_is_one_line_naming_the_problem(tmp_path, capsys, make, message):
    csv = tmp_path / "results.csv"
    if make is not None:
        make(csv)
    with pytest.raises(ValueError) as raised:
        load_results([csv])
    assert str(raised.value) == f"{csv}: {message}"

    with pytest.raises(SystemExit) as exited:
        main([str(csv), "--out", str(tmp_path / "figs")])
    assert exited.value.code == 2
    assert capsys.readouterr().err.strip() == f"dropbench-plot: error: {csv}: {message}"
    assert not (tmp_path / "figs").exists(), "nothing should be written from bad input"


def test_file_without_timer_column_is_refused_naming_it(tmp_path):
    csv = tmp_path / "old.csv"
    make_results(ops=("dropout",), dtypes=("fp16",)).drop(columns="timer").to_csv(csv, index=False)
    with pytest.raises(ValueError, match="missing column.s. timer"):
        load_results([csv])


def test_file_without_shape_column_loads_with_rows_x_cols(tmp_path):
    old = tmp_path / "old.csv"
    make_results(ops=("dropout",), dtypes=("fp16",)).drop(columns="shape").to_csv(old, index=False)
    results = load_results([old])
    assert (results["shape"] == results["rows"].astype(str) + "x" + str(COLS)).all()
    assert [facet.stem("gbps") for facet in facets(results)] == ["gbps-dropout-fp16-p0.1-cols1024-do_bench"]
    assert not shapes_facets(results)


def test_a_shape_that_is_not_rows_by_cols_is_named(tmp_path):
    csv = tmp_path / "bad.csv"
    results = make_results(ops=("dropout",), dtypes=("fp16",))
    results.loc[2, "shape"] = "4x4"
    results.to_csv(csv, index=False)
    with pytest.raises(ValueError, match=f"line 4 has shape '4x4'; expected {2**10}x... with the rest"):
        load_results([csv])


def test_channel_ops_plot_against_rows_and_conv_shapes_as_bars(tmp_path):
    csv = write_csv(tmp_path / "h100.csv", ops=("dropout2d",), dtypes=("fp16",), conv_shapes=CONV_SHAPES)
    results = load_results([csv])
    assert [facet.stem("gbps") for facet in facets(results)] == ["gbps-dropout2d-fp16-p0.1-shapeNx16x8x8-do_bench"]
    (shapes_facet,) = shapes_facets(results)
    assert shapes_facet.stem() == "shapes-dropout2d-fp16-p0.1-do_bench"
    bars = shapes_facet.select(results)
    assert set(bars["shape"]) == {schema.shape_text(shape) for shape in CONV_SHAPES}

    figure = figures.shapes(bars, figures.Style.from_results(results), shapes_facet.title("d"))
    fwd_axis, bottom_axis = figure.axes[0], figure.axes[len(schema.OP_DIRECTIONS) - 1]
    assert [tick.get_text() for tick in bottom_axis.get_xticklabels()] == [
        "32x512x7x7", "32x256x14x14", "32x64x56x56"], "shapes by size, labelled once, under the last panel"
    heights = sorted(patch.get_height() for patch in fwd_axis.patches)
    # Derived against the copy's own jittered time (make_results draws both within 5%).
    assert np.allclose(heights, sorted([45, 70, 90] * 3), rtol=0.11), \
        f"one bar per backend and shape, at its pct_of_copy; got {heights}"

    assert main([str(csv), "--out", str(tmp_path / "figs"), "--quiet"]) == 0
    written = {path.name for path in (tmp_path / "figs").iterdir()}
    assert written == ({name.replace("cols1024", "shapeNx16x8x8")
                        for name in expected_files(["dropout2d"], ["fp16"], ["do_bench"])}
                       | {"shapes-dropout2d-fp16-p0.1-do_bench.png", "shapes-dropout2d-fp16-p0.1-do_bench.svg"})


def test_timer_absent_from_the_csvs_is_named(tmp_path, capsys):
    csv = write_csv(tmp_path / "h100.csv", ops=("dropout",), dtypes=("fp16",))
    with pytest.raises(SystemExit) as exited:
        main([str(csv), "--out", str(tmp_path / "figs"), "--timer", "cpu"])
    assert exited.value.code == 2
    assert capsys.readouterr().err.strip() == "dropbench-plot: error: no rows with timer cpu; the CSVs have: do_bench"


def test_plots_never_import_torch():
    code = "import sys, dropbench.plots.__main__; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=Path(__file__).resolve().parents[1], check=True)
    assert result.stdout.strip() == "False", "plots must run on machines without torch"


def test_committed_results_from_before_the_shape_column_still_load():
    results = load_results([REPO / "results" / "h100-default-2026-11-23.csv"])
    assert (results["shape"] == results["rows"].astype(str) + "x49152").all()
    assert {facet.stem("gbps") for facet in facets(results) if facet.timer == "do_bench"} == {
        f"gbps-{op}-{dtype}-p0.5-cols49152-do_bench" for op in schema.CORE_OPS for dtype in schema.DTYPES}
    assert not shapes_facets(results)


@pytest.mark.parametrize("settings, words", [
    (["False"], "backward on the calling thread"),
    (["True"], "backward on autograd's device thread"),
    (["False", "True"], "runs differ in where backward ran (autograd_threads)"),
])
def test_titles_say_where_backward_ran(settings, words):
    frame = pd.DataFrame({"device": ["H100"] * len(settings), "autograd_threads": settings})
    assert subtitle(frame) == f"H100; {words}"


# -- any valid CSV plots ------------------------------------------------------------------------

@pytest.mark.parametrize("backends, device, skipped", [
    (("triton",), "NVIDIA H100 80GB HBM3", "speedup"),
    (("compile",), "NVIDIA H100 80GB HBM3", "speedup"),
    (("triton", "eager"), "cpu", None),
], ids=["triton-only", "compile-only", "cpu"])
def test_a_csv_of_any_backends_plots(tmp_path, caplog, backends, device, skipped):
    csv = write_csv(tmp_path / "r.csv", ops=("dropout",), dtypes=("fp16",), backends=backends, device=device,
                    timers=("cpu",) if device == "cpu" else ("do_bench",))
    assert main([str(csv), "--out", str(tmp_path / "figs"), "--quiet"]) == 0
    written = {path.name.split("-")[0] for path in (tmp_path / "figs").iterdir()}
    if skipped:
        assert skipped not in written and f"{skipped} figure(s): no eager rows" in caplog.text, \
            "a figure that needs eager rows is skipped, and the skip is said"
    assert {"gbps", "pct_of_copy", "us_over_copy", "memory"} <= written, written


def test_memory_is_drawn_once_whatever_the_timers(tmp_path):
    csv = write_csv(tmp_path / "r.csv", ops=("dropout",), dtypes=("fp16",), timers=("do_bench", "cudagraph"))
    assert main([str(csv), "--out", str(tmp_path / "figs"), "--quiet"]) == 0
    memory = sorted(path.name for path in (tmp_path / "figs").glob("memory-*.png"))
    assert memory == ["memory-dropout-fp16-p0.1-cols1024.png"], memory


def test_ok_rows_without_memory_figures_plot(tmp_path):
    """Host-timer and CPU rows are ok but measure no memory: the memory figure skips them."""
    results = make_results(ops=("dropout",), dtypes=("fp16",), timers=("do_bench",))
    results["peak_bytes"] = pd.NA
    path = tmp_path / "r.csv"
    results.to_csv(path, index=False)
    assert main([str(path), "--out", str(tmp_path / "figs"), "--quiet"]) == 0
    assert list((tmp_path / "figs").glob("memory-*.png")), "the memory figure is still drawn (saved bytes)"


def test_training_step_rows_get_their_own_figure(tmp_path):
    rng = np.random.default_rng()
    results = make_results(ops=("dropout",), dtypes=("fp16",))
    steps = [{**results.iloc[0].to_dict(), "op": "train_step", "backend": backend, "direction": "step",
              "timer": timer, "ms_median": rng.uniform(5, 50), "rows": 8, "cols": 512, "shape": "8x512",
              "numel": 4096, "status": "ok"}
             for backend in ("triton", "eager") for timer in schema.TRAIN_TIMERS]
    path = tmp_path / "r.csv"
    pd.concat([results, pd.DataFrame(steps)]).to_csv(path, index=False)
    assert main([str(path), "--out", str(tmp_path / "figs"), "--quiet"]) == 0
    assert (tmp_path / "figs" / "train-train_step-fp16.png").exists(), "no training-step figure"


def committed_csvs() -> list[str]:
    listed = subprocess.run(["git", "ls-files", "results/*.csv", "results/**/*.csv"], cwd=REPO,
                            capture_output=True, text=True).stdout.split()
    return sorted(set(listed))


#: Committed CSVs that are not the harness's results files, and what they are instead.
NOT_RESULTS = {"results/first-look-h100-2026-11-23.csv":
               "a 9-column probe CSV of docs/experiments/quick_timing.py, from before the harness"}


@pytest.mark.parametrize("name", committed_csvs())
def test_every_committed_csv_plots(tmp_path, monkeypatch, capsys, name):
    # Drawing is what can fail on a CSV; rendering to files takes most of the time and is tested above.
    monkeypatch.setattr(render, "save", lambda figure, stem: [stem])
    if name in NOT_RESULTS:
        with pytest.raises(SystemExit):
            main([str(REPO / name), "--out", str(tmp_path), "--quiet"])
        assert "not a results CSV" in capsys.readouterr().err
        return
    assert main([str(REPO / name), "--out", str(tmp_path), "--quiet"]) == 0


# ---- shape=models: one figure per (timer, op, direction), every backend on each named shape --------

#: Named shapes and what each backend reaches of the copy there (fresh per test, below).
MODEL_SHAPES = {"dropout": [("gpt2-small hidden", (8192, 768)), ("llama-7b attn", (1, 32, 4096, 4096))],
                "variational": [("seedrepo T128", (64, 128, 768))]}
MODEL_BACKENDS = {"dropout": ["eager", "triton", "tutorial", "compile_fallback"],
                  "variational": ["eager", "triton", "seedrepo_1d", "seedrepo_2d"]}


def make_model_results(fractions: dict[str, float], dtypes=("fp16", "fp32"), ps=(0.1, 0.5)) -> pd.DataFrame:
    """Rows as +preset=models writes them: copies unnamed, op rows named in `model`; ms from fractions of the copy."""
    records = []
    base = make_results(ops=("dropout",), dtypes=("fp16",)).iloc[0].to_dict()  # every other column filled in

    def record(op, backend, dtype, shape, p, direction, model, fraction):
        numel, passes = int(np.prod(shape)), schema.PASSES[direction]
        copy_ms = 2 * numel * schema.DTYPE_BYTES[dtype] / 3e9
        ms = copy_ms * passes / fraction
        records.append({**base, "op": op, "backend": backend, "dtype": dtype, "rows": shape[0],
                        "cols": numel // shape[0], "shape": schema.shape_text(shape), "model": model,
                        "numel": numel, "p": p, "direction": direction, "variational_dim": 1 if op == "variational" else 0,
                        "ms_median": ms, "ms_p20": ms, "ms_p80": ms, "status": "ok", "error": "", "config": ""})

    for dtype in dtypes:
        for op, named in MODEL_SHAPES.items():
            for model, shape in named:
                record("copy", "copy", dtype, (shape[0], int(np.prod(shape[1:]))), 0.0, "fwd", "", 1.0)
                for p in ps:
                    for backend in MODEL_BACKENDS[op]:
                        for direction in schema.OP_DIRECTIONS:
                            record(op, backend, dtype, shape, p, direction, model, fractions[backend])
    return pd.DataFrame.from_records(records, columns=schema.COLUMNS)


def test_model_shapes_get_one_figure_per_op_and_direction_with_every_backend(tmp_path):
    rng = np.random.default_rng()
    fractions = {backend: float(rng.uniform(0.2, 1.0)) for backends in MODEL_BACKENDS.values() for backend in backends}
    csv = tmp_path / "h200-models.csv"
    make_model_results(fractions).to_csv(csv, index=False)
    results = load_results([csv])

    assert main([str(csv), "--out", str(tmp_path / "figs"), "--quiet"]) == 0
    written = {path.name for path in (tmp_path / "figs").iterdir()}
    assert written == {f"models-{op}-{direction}-do_bench.{fmt}" for op in MODEL_SHAPES
                       for direction in schema.OP_DIRECTIONS for fmt in ("png", "svg")}, \
        f"named model shapes should get models figures only (no shapes or rows figures): {sorted(written)}"

    rows = results[(results["op"] == "dropout") & (results["direction"] == "fwd")]
    style = figures.Style.from_results(results)
    figure = figures.models(rows, style, "d")
    panels = [axis for axis in figure.axes if axis.get_title()]
    assert [axis.get_title() for axis in panels] == ["fp16, p=0.1", "fp16, p=0.5", "fp32, p=0.1", "fp32, p=0.5"]
    assert [tick.get_text() for tick in panels[0].get_xticklabels()] == [
        "gpt2-small hidden\n8192x768", "llama-7b attn\n1x32x4096x4096"], "named shapes by size"
    expected = sorted(100 * fractions[backend] for backend in MODEL_BACKENDS["dropout"] for _ in range(2))
    heights = sorted(patch.get_height() for patch in panels[0].patches)
    assert np.allclose(heights, expected, rtol=1e-6), f"one bar per backend and shape at its % of copy: {heights}"
    colors = {patch.get_facecolor()[:3] for patch in panels[0].patches}
    assert len(colors) == len(MODEL_BACKENDS["dropout"]), "every backend should have its own colour"


def test_every_backend_has_its_catalogue_colour():
    from dropbench.bench import catalogue

    style = figures.Style(runs=("a",), backends=tuple(catalogue.BACKENDS))
    colours = [style.color(backend) for backend in catalogue.BACKENDS]
    assert colours == [row.color for row in catalogue.BACKENDS.values()]
    assert len(set(colours)) == len(colours), f"two backends share a colour: {colours}"
