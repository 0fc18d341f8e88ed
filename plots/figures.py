"""Draw one figure from the rows of one facet (one timer, op, dtype, p and series of shapes).

Figures are built on matplotlib.figure.Figure, never pyplot, so no GUI backend
is ever chosen and nothing global is left behind: saving renders with Agg.
Every figure against rows takes the same arguments, (rows, copy, style, title), so the
caller can treat them alike; `shapes` draws the shapes not swept over rows, `models` the
named shapes of real models (shape=models). Rows whose status is not "ok" are never drawn as
values: they leave a gap in the line and an "x" at the bottom of the axes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from dropbench.bench import catalogue, schema

#: Runs differ by marker and line style; "x" is kept for rows that are not ok.
MARKERS = ["o", "s", "^", "D", "v", "P", "*", "h"]
LINESTYLES = ["-", ":", "-.", (0, (5, 1, 1, 1))]
HATCHES = ["", "//", "..", "xx"]
BAND_ALPHA = 0.2
#: Where the "not ok" markers sit, as a fraction of the axes height.
NOT_OK_Y = 0.03
PANEL_SIZE = (4.2, 3.6)
MIB = 2**20
LEGEND_WIDTH = 2.6


@dataclass(frozen=True)
class Style:
    """The runs and backends across all inputs, so every figure styles them alike."""

    runs: tuple[str, ...]
    backends: tuple[str, ...]

    @classmethod
    def from_results(cls, results: pd.DataFrame) -> "Style":
        present = set(results["backend"])
        return cls(
            runs=tuple(pd.unique(results["run"])),
            backends=tuple(backend for backend in schema.BACKENDS if backend in present),
        )

    def color(self, backend: str) -> str:
        """The catalogue row's colour, so a backend looks the same in every figure."""
        if backend == schema.COPY:
            return catalogue.COPY_COLOR
        row = catalogue.BACKENDS.get(backend)
        return row.color if row else "tab:gray"

    def marker(self, run: str) -> str:
        return MARKERS[self.runs.index(run) % len(MARKERS)]

    def linestyle(self, run: str):
        return LINESTYLES[self.runs.index(run) % len(LINESTYLES)]

    def hatch(self, run: str) -> str:
        return HATCHES[self.runs.index(run) % len(HATCHES)]

    def label(self, backend: str, run: str) -> str:
        """Backend alone for one run; backend and run when runs are compared."""
        return backend if len(self.runs) == 1 else f"{backend} · {run}"


def throughput(rows: pd.DataFrame, copy: pd.DataFrame, style: Style, title: str) -> Figure:
    """GB/s against rows, one line per backend, the copy as a dashed roofline per direction."""
    figure, axes = _direction_axes(rows, title, "throughput")
    for axis, direction in axes:
        for (run, backend), line in _lines(rows[rows["direction"] == direction], style):
            _plot_line(axis, line, "gbps", style.color(backend), style, run)
        for run, line in _by_run(copy, style):
            _plot_line(axis, line, "gbps", style.color(schema.COPY), style, run,
                       linestyle="--", band=False)
        _rows_axis(axis)
        axis.set_ylim(bottom=0)
    axes[0][0].set_ylabel("throughput (GB/s)")
    _legend(figure, style, rows, with_copy=not copy.empty)
    return figure


def over_copy(rows: pd.DataFrame, copy: pd.DataFrame, style: Style, title: str) -> Figure:
    """Microseconds over the copy against rows, one line per backend (µs per call for the host timer).

    At small shapes the copy is launch-bound too and % of copy is no bandwidth figure (fwd+bwd
    reads 120-150% there); what an op costs beyond moving its bytes once per pass is the
    figure readers need there: ms_median * 1000 - copy_us * passes.
    """
    host = (rows["timer"] == schema.HOST_TIMER).all()
    column = "us_per_call" if host else "us_over_copy"
    rows = rows.assign(us_per_call=rows["ms_median"] * 1000)
    figure, axes = _direction_axes(rows, title, "microseconds per call (host)" if host else "microseconds over the copy")
    for axis, direction in axes:
        if not host:
            axis.axhline(0.0, color=style.color(schema.COPY), linestyle="--", linewidth=1)
        for (run, backend), line in _lines(rows[rows["direction"] == direction], style):
            _plot_line(axis, line, column, style.color(backend), style, run, band=False)
        _rows_axis(axis)
    axes[0][0].set_ylabel("µs of Python per call" if host else "µs over the copy (lower is better)")
    extra = [] if host else [Line2D([], [], color=style.color(schema.COPY), linestyle="--", label="copy (0 µs)")]
    _legend(figure, style, rows, with_band=False, extra=extra)
    return figure


def train_steps(rows: pd.DataFrame, style: Style, title: str) -> Figure:
    """Milliseconds per training step as bars: one group per mode (timer), one bar per backend (and run)."""
    modes = [timer for timer in schema.TRAIN_TIMERS if timer in set(rows["timer"])] or sorted(set(rows["timer"]))
    slots = [(backend, run) for backend in style.backends for run in style.runs
             if ((rows["backend"] == backend) & (rows["run"] == run)).any()]
    bar_width = 0.8 / max(len(slots), 1)
    figure = Figure(figsize=(max(PANEL_SIZE[0], 1.6 * len(modes) + 1.0) + LEGEND_WIDTH, PANEL_SIZE[1]),
                    layout="constrained")
    axis = figure.subplots()
    for slot, (backend, run) in enumerate(slots):
        for group, mode in enumerate(modes):
            point = rows[(rows["backend"] == backend) & (rows["run"] == run) & (rows["timer"] == mode)]
            if point.empty:
                continue
            position = group + (slot - (len(slots) - 1) / 2) * bar_width
            _bar(axis, position, bar_width, point.iloc[0], "ms_median", style, backend, run, "{:.3g}")
    axis.set_xticks(range(len(modes)), [mode.removeprefix("train_") for mode in modes])
    axis.set_xlabel("mode")
    axis.set_ylabel("ms per step (lower is better)")
    axis.margins(y=0.15)
    axis.set_ylim(bottom=0)
    axis.grid(True, axis="y", alpha=0.3)
    figure.suptitle(f"Training step — {title}")
    _legend(figure, style, rows, with_band=False, runs_as_hatches=True)
    return figure


def speedup(rows: pd.DataFrame, copy: pd.DataFrame, style: Style, title: str) -> Figure:
    """Speedup over eager against rows, one line per non-eager backend.

    The band is this backend's own p20-p80 spread; eager's spread is not folded in.
    """
    candidates = rows[~rows["backend"].isin(["eager", schema.COPY])]
    figure, axes = _direction_axes(rows, title, "speedup over eager")
    for axis, direction in axes:
        axis.axhline(1.0, color=style.color("eager"), linestyle=":", linewidth=1.5)
        for (run, backend), line in _lines(candidates[candidates["direction"] == direction], style):
            _plot_line(axis, line, "speedup_vs_eager", style.color(backend), style, run)
        _rows_axis(axis)
        axis.set_ylim(bottom=0)
    axes[0][0].set_ylabel("speedup over eager (×, higher is better)")
    extra = [Line2D([], [], color=style.color("eager"), linestyle=":", label="eager (1×)")]
    _legend(figure, style, candidates, extra=extra)
    return figure


def memory(rows: pd.DataFrame, copy: pd.DataFrame, style: Style, title: str) -> Figure:
    """Bytes saved for backward and peak bytes per backend, as bars at the largest size.

    Bars, not lines against rows: both grow linearly with size, and backends that
    save the same mask would hide each other's lines. Each bar is labelled with
    bytes per element, so a mask (1 byte or more) and a seed (about 0) read off
    directly. The value comes from the fwd+bwd row where there is one, since
    that is where autograd saves and the peak is taken.
    """
    candidates = rows[rows["backend"] != schema.COPY]
    size = int(candidates["rows"].max())
    at_size = candidates[candidates["rows"] == size]
    backends = [backend for backend in style.backends if backend in set(at_size["backend"])]
    bar_width = 0.8 / len(style.runs)
    panels = [("saved_bytes", "saved for backward"), ("peak_bytes", "peak above inputs")]
    width = max(PANEL_SIZE[0], 1.2 * len(backends) + 1.0)
    figure = Figure(figsize=(width * 2 + LEGEND_WIDTH, PANEL_SIZE[1]), layout="constrained")
    axes = figure.subplots(1, 2, squeeze=False)[0]
    for axis, (column, name) in zip(axes, panels):
        points = _one_per_point(at_size, column)
        for group, backend in enumerate(backends):
            for slot, run in enumerate(style.runs):
                point = points[(points["backend"] == backend) & (points["run"] == run)]
                if point.empty:
                    continue
                point = point.iloc[0]
                position = group + (slot - (len(style.runs) - 1) / 2) * bar_width
                if point["status"] != "ok":
                    axis.plot(position, NOT_OK_Y, color=style.color(backend), marker="x",
                              markersize=8, markeredgewidth=2, linestyle="none",
                              transform=axis.get_xaxis_transform(), clip_on=False)
                    continue
                if pd.isna(point[column]):  # ok, but this run did not measure memory (empty, NA or NaN)
                    continue
                value = float(point[column])
                axis.bar(position, value / MIB, width=bar_width, color=style.color(backend),
                         hatch=style.hatch(run), edgecolor="white")
                per_element = value / (point["rows"] * point["cols"])
                axis.annotate(f"{per_element:.2f}", (position, value / MIB), ha="center",
                              va="bottom", fontsize=7, xytext=(0, 2), textcoords="offset points")
        axis.set_xticks(range(len(backends)), backends)
        axis.set_xlabel("bar labels: bytes per element")
        axis.set_title(f"{name}, {_rows_text(size)} rows")
        axis.set_ylabel(f"{name} (MiB)")
        axis.margins(y=0.15)
        axis.set_ylim(bottom=0)
        axis.grid(True, axis="y", alpha=0.3)
    figure.suptitle(f"Memory — {title}")
    _legend(figure, style, at_size, with_band=False, runs_as_hatches=True)
    return figure


def pct_of_copy(rows: pd.DataFrame, copy: pd.DataFrame, style: Style, title: str) -> Figure:
    """Heat map of % of copy throughput: backend (and run) by rows, one panel per direction."""
    candidates = rows[rows["backend"] != schema.COPY]
    directions = _directions(rows)
    labels = [(backend, run) for backend in style.backends for run in style.runs
              if ((candidates["backend"] == backend) & (candidates["run"] == run)).any()]
    sizes = sorted(candidates["rows"].unique())
    longest = max((len(style.label(*label)) for label in labels), default=10)
    # Room for the tick labels on the left and the colour bar on the right.
    width = max(7.0, 0.55 * len(sizes) + 0.08 * longest + 2.0)
    height = 1.2 + len(directions) * (0.9 + 0.38 * max(len(labels), 1))
    figure = Figure(figsize=(width, height), layout="constrained")
    axes = figure.subplots(len(directions), 1, squeeze=False, sharex=True)[:, 0]
    ok = candidates["status"] == "ok"
    values = candidates.loc[ok, "pct_of_copy"]
    top = max(100.0, float(values.max())) if values.notna().any() else 100.0
    cmap = _colormap("viridis")
    image = None
    for axis, direction in zip(axes, directions):
        grid = np.full((len(labels), len(sizes)), np.nan)
        not_ok = np.zeros(grid.shape, dtype=bool)
        here = candidates[candidates["direction"] == direction]
        for _, row in here.iterrows():
            y, x = labels.index((row["backend"], row["run"])), sizes.index(row["rows"])
            if row["status"] == "ok":
                grid[y, x] = row["pct_of_copy"]
            else:
                not_ok[y, x] = True
        image = axis.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=0, vmax=top,
                            aspect="auto", interpolation="nearest")
        for (y, x), value in np.ndenumerate(grid):
            if not_ok[y, x]:
                axis.text(x, y, "x", ha="center", va="center", color="tab:red", fontsize=10)
            elif not math.isnan(value):
                shade = "white" if value < 0.6 * top else "black"
                axis.text(x, y, f"{value:.0f}", ha="center", va="center", color=shade, fontsize=7)
        axis.set_yticks(range(len(labels)), [style.label(*label) for label in labels])
        axis.set_title(direction)
    axes[-1].set_xticks(range(len(sizes)), [_rows_text(size) for size in sizes])
    axes[-1].set_xlabel("rows")
    if image is not None:
        figure.colorbar(image, ax=list(axes), label="% of copy throughput", shrink=0.8, aspect=40)
    figure.suptitle(f"% of copy throughput — {title}")
    figure.legend(
        handles=[
            Line2D([], [], color="tab:red", marker="x", linestyle="none", label="status not ok"),
            Patch(facecolor="white", edgecolor="gray", label="not measured"),
        ],
        loc="outside lower center", ncols=2, frameon=False,
    )
    return figure


def shapes(rows: pd.DataFrame, style: Style, title: str) -> Figure:
    """% of copy throughput per shape, bars per backend (and run), one panel per direction.

    For shapes that are not part of a sweep over rows (a channel op's conv shapes): one
    bar each instead of a one-point line. Each shape is read against its own copy
    (same rows and cols), so shapes of different sizes compare on one axis.
    """
    directions = _directions(rows)
    ordered = rows.assign(_numel=rows["rows"] * rows["cols"]).sort_values(["_numel", "shape"], kind="stable")
    shape_names = list(pd.unique(ordered["shape"]))
    slots = [(backend, run) for backend in style.backends for run in style.runs
             if ((rows["backend"] == backend) & (rows["run"] == run)).any()]
    width = max(8.0, 0.35 * len(slots) * len(shape_names) + 1.5)
    figure = Figure(figsize=(width + LEGEND_WIDTH, 0.6 + 2.6 * len(directions)), layout="constrained")
    axes = figure.subplots(len(directions), 1, squeeze=False, sharex=True)[:, 0]
    for axis, direction in zip(axes, directions):
        _pct_bars(axis, rows[rows["direction"] == direction], style, slots, shape_names)
        axis.set_title(direction)
    axes[-1].set_xticks(range(len(shape_names)), shape_names, rotation=15)
    axes[-1].set_xlabel("input shape (each against a copy of its own size)")
    figure.suptitle(f"% of copy per shape — {title}")
    extra = [Line2D([], [], color=style.color(schema.COPY), linestyle="--", label="copy (100%)")]
    _legend(figure, style, rows, with_band=False, extra=extra, runs_as_hatches=True)
    return figure


def models(rows: pd.DataFrame, style: Style, title: str) -> Figure:
    """% of copy throughput per model shape, bars per backend (and run); one panel per (dtype, p).

    For the rows of one timer, op and direction from shape=models: each shape is named by its
    `model` and read against the copy of its own size, so a reader sees where every backend
    stands on the activations of real models.
    """
    ordered = rows.assign(_numel=rows["rows"] * rows["cols"]).sort_values(["_numel", "shape"], kind="stable")
    shape_names = list(pd.unique(ordered["shape"]))
    labels = [f"{ordered.loc[ordered['shape'] == shape, 'model'].iloc[0]}\n{shape}" for shape in shape_names]
    slots = [(backend, run) for backend in style.backends for run in style.runs
             if ((rows["backend"] == backend) & (rows["run"] == run)).any()]
    dtypes = [dtype for dtype in schema.DTYPES if dtype in set(rows["dtype"])]
    ps = sorted(set(rows["p"]))
    width = max(8.0, 0.3 * len(slots) * len(shape_names) + 1.5)
    figure = Figure(figsize=(width * len(ps) + LEGEND_WIDTH, 0.8 + 3.0 * len(dtypes)), layout="constrained")
    axes = figure.subplots(len(dtypes), len(ps), squeeze=False, sharey=True)
    for row_index, dtype in enumerate(dtypes):
        for column_index, p in enumerate(ps):
            axis = axes[row_index, column_index]
            here = rows[(rows["dtype"] == dtype) & (rows["p"] == p)]
            _pct_bars(axis, here, style, slots, shape_names)
            axis.set_title(f"{dtype}, p={p:g}")
            axis.set_xticks(range(len(shape_names)), labels, rotation=30, ha="right", fontsize=7)
    figure.suptitle(f"% of copy on real models' shapes — {title}")
    extra = [Line2D([], [], color=style.color(schema.COPY), linestyle="--", label="copy (100%)")]
    _legend(figure, style, rows, with_band=False, extra=extra, runs_as_hatches=True)
    return figure


def _pct_bars(axis, rows: pd.DataFrame, style: Style, slots: list[tuple[str, str]], shape_names: list[str]) -> None:
    """Bars of pct_of_copy, one group per shape and one bar per (backend, run) slot; x where not ok."""
    bar_width = 0.8 / max(len(slots), 1)
    for slot, (backend, run) in enumerate(slots):
        for group, shape in enumerate(shape_names):
            point = rows[(rows["backend"] == backend) & (rows["run"] == run) & (rows["shape"] == shape)]
            if point.empty:
                continue
            position = group + (slot - (len(slots) - 1) / 2) * bar_width
            _bar(axis, position, bar_width, point.iloc[0], "pct_of_copy", style, backend, run, "{:.0f}")
    axis.axhline(100.0, color=style.color(schema.COPY), linestyle="--", linewidth=1)
    axis.set_ylabel("% of copy")
    axis.margins(y=0.15)
    axis.set_ylim(bottom=0)
    axis.grid(True, axis="y", alpha=0.3)


def _direction_axes(rows: pd.DataFrame, title: str, name: str):
    """One panel per direction present, side by side and sharing the y axis."""
    directions = _directions(rows)
    figure = Figure(
        figsize=(PANEL_SIZE[0] * len(directions) + LEGEND_WIDTH, PANEL_SIZE[1]),
        layout="constrained",
    )
    axes = figure.subplots(1, len(directions), squeeze=False, sharey=True)[0]
    for axis, direction in zip(axes, directions):
        axis.set_title(direction)
    figure.suptitle(f"{name.capitalize()} — {title}")
    return figure, list(zip(axes, directions))


def _directions(rows: pd.DataFrame) -> list[str]:
    present = set(rows["direction"])
    return [direction for direction in schema.DIRECTIONS if direction in present] or ["fwd"]


def _lines(rows: pd.DataFrame, style: Style):
    """(run, backend) and its rows sorted by size, in a fixed order for a stable legend."""
    for backend in style.backends:
        for run in style.runs:
            line = rows[(rows["backend"] == backend) & (rows["run"] == run)]
            if not line.empty:
                yield (run, backend), line.sort_values("rows")


def _by_run(rows: pd.DataFrame, style: Style):
    for run in style.runs:
        line = rows[rows["run"] == run]
        if not line.empty:
            yield run, line.sort_values("rows")


def _plot_line(axis, line: pd.DataFrame, column: str, color: str, style: Style, run: str,
               linestyle=None, band: bool = True) -> None:
    """One series: NaN where status is not ok (a gap, never a zero), a p20-p80 band, x marks."""
    ok = line["status"] == "ok"
    sizes = line["rows"].to_numpy(dtype=float)
    values = line[column].where(ok).to_numpy(dtype=float)
    axis.plot(sizes, values, color=color, marker=style.marker(run), markersize=4,
              linestyle=linestyle or style.linestyle(run), linewidth=1.6)
    if band:
        # Anything proportional to 1/ms scales with the time percentiles the other way round.
        low = (line[column] * line["ms_median"] / line["ms_p80"]).where(ok).to_numpy(dtype=float)
        high = (line[column] * line["ms_median"] / line["ms_p20"]).where(ok).to_numpy(dtype=float)
        axis.fill_between(sizes, low, high, color=color, alpha=BAND_ALPHA, linewidth=0)
    if (~ok).any():
        axis.plot(sizes[~ok.to_numpy()], [NOT_OK_Y] * int((~ok).sum()), color=color,
                  marker="x", markersize=8, markeredgewidth=2, linestyle="none",
                  transform=axis.get_xaxis_transform(), clip_on=False)


def _one_per_point(rows: pd.DataFrame, column: str) -> pd.DataFrame:
    """One row per (run, backend, rows): ok before not ok, a value before none, fwd+bwd first."""
    preference = {direction: rank for rank, direction in
                  enumerate(["fwd+bwd", "fwd", "bwd"])}
    ranked = rows.assign(
        _not_ok=rows["status"] != "ok",
        _missing=rows[column].isna(),
        _direction=rows["direction"].map(preference),
    ).sort_values(["_not_ok", "_missing", "_direction"], kind="stable")
    first = ranked.drop_duplicates(["run", "backend", "rows"], keep="first")
    return first.drop(columns=["_not_ok", "_missing", "_direction"])


def _rows_axis(axis) -> None:
    axis.set_xscale("log", base=2)
    axis.set_xlabel("rows")
    axis.grid(True, which="major", alpha=0.3)
    _mark_empty(axis)


def _mark_empty(axis) -> None:
    """Say so on a panel with nothing to show, rather than leave it blank."""
    if not any(np.isfinite(np.asarray(line.get_ydata(), dtype=float)).any()
               for line in axis.get_lines() if line.get_transform() == axis.transData):
        axis.text(0.5, 0.5, "no data", transform=axis.transAxes,
                  ha="center", va="center", color="gray")


def _rows_text(size: int) -> str:
    """2^k as mathtext for powers of two, the plain number otherwise."""
    size = int(size)
    if size > 0 and size & (size - 1) == 0:
        return f"$2^{{{size.bit_length() - 1}}}$"
    return str(size)


def _colormap(name: str):
    """A copy of a colormap with masked cells (not measured) drawn white."""
    from matplotlib import colormaps

    return colormaps[name].with_extremes(bad="white")


def _legend(figure: Figure, style: Style, rows: pd.DataFrame, with_copy: bool = False,
            with_band: bool = True, extra: list | None = None,
            runs_as_hatches: bool = False) -> None:
    """One legend for the figure, outside the axes on the right so it hides no data."""
    present = set(rows["backend"])
    handles = [Line2D([], [], color=style.color(backend), linewidth=2, label=backend)
               for backend in style.backends if backend in present and backend != schema.COPY]
    if with_copy:
        handles.append(Line2D([], [], color=style.color(schema.COPY), linestyle="--",
                              label="copy (roofline)"))
    handles += extra or []
    if len(style.runs) > 1 and runs_as_hatches:
        handles += [Patch(facecolor="gray", edgecolor="white", hatch=style.hatch(run), label=run)
                    for run in style.runs]
    elif len(style.runs) > 1:
        handles += [Line2D([], [], color="gray", marker=style.marker(run),
                           linestyle=style.linestyle(run), label=run) for run in style.runs]
    if with_band:
        handles.append(Patch(facecolor="gray", alpha=BAND_ALPHA, label="p20–p80 of time"))
    if (rows["status"] != "ok").any():
        handles.append(Line2D([], [], color="gray", marker="x", markeredgewidth=2,
                              linestyle="none", label="status not ok"))
    figure.legend(handles=handles, loc="outside right upper", fontsize="small")


def _bar(axis, position: float, width: float, point, column: str, style, backend: str, run, label: str) -> None:
    """One labelled bar of point[column]; an x at the top where the row is not ok; nothing where the
    row is ok but has no value (a % of copy with no copy of that size measured)."""
    if point["status"] != "ok":
        axis.plot(position, NOT_OK_Y, color=style.color(backend), marker="x", markersize=8, markeredgewidth=2,
                  linestyle="none", transform=axis.get_xaxis_transform(), clip_on=False)
        return
    value = float(point[column])
    if math.isnan(value):
        return
    axis.bar(position, value, width=width, color=style.color(backend), hatch=style.hatch(run), edgecolor="white")
    axis.annotate(label.format(value), (position, value), ha="center", va="bottom", fontsize=7, xytext=(0, 2),
                  textcoords="offset points")
