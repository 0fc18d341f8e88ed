"""Split results into facets, draw every figure for each, and save it as PNG and SVG.

Any valid results CSV plots: a figure that needs rows the CSV lacks (speedup needs eager
rows, % of copy and µs over the copy need copy rows, memory needs measured bytes) is
skipped with one logged line per kind of figure, never drawn empty or crashed on.
Memory does not depend on the timer: it is drawn once per op, dtype, p and series.
Training-step rows (direction "step") get their own figure: ms per step per backend and mode.

A facet is one (timer, op, dtype, p) and one series of shapes that differ only in
rows: (rows, cols) for 2-D inputs, (N, C, spatial...) with the same (C, spatial...)
for channel ops. Everything on one figure shares them, so timers are never mixed, no
two points sit at the same rows, and the file name says exactly what is shown. Shapes
that are the only one of their series (a channel op's conv shapes) are not a line
against rows: they go into one `shapes` bar chart per (timer, op, dtype, p). Rows of named
real-model shapes (the `model` column, shape=models) get one `models` figure per (timer, op,
direction) instead: every backend on every model shape, a panel per dtype and p.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import logging

import matplotlib
import pandas as pd

from dropbench.bench import schema
from dropbench.plots import figures
from dropbench.plots.load import ResultsError

log = logging.getLogger(__name__)

#: Figure kind (the file-name prefix) and the function that draws it, for each rows series of one timer.
KINDS = {
    "gbps": figures.throughput,
    "pct_of_copy": figures.pct_of_copy,
    "us_over_copy": figures.over_copy,
    "speedup": figures.speedup,
}
#: Drawn once per series whatever the timer: memory does not depend on it.
MEMORY_KIND = "memory"
#: The file-name prefix of the figure of shapes not swept over rows.
SHAPES_KIND = "shapes"
#: The file-name prefix of the figures of real models' shapes.
MODELS_KIND = "models"
#: The file-name prefix of the training-step figure.
TRAIN_KIND = "train"
FORMATS = ["png", "svg"]
DPI = 150
_SERIES = ["timer", "op", "dtype", "p", "per_row"]


@dataclass(frozen=True)
class Facet:
    """What one figure holds: one timer, op, dtype and drop probability, and shapes rows x per_row.

    per_row is the shape after its first dim: '49152' for a (rows, 49152) input,
    '192x16x16' for an (N, 192, 16, 16) one; cols is its product.
    """

    timer: str
    op: str
    dtype: str
    p: float
    cols: int
    per_row: str

    def stem(self, kind: str) -> str:
        shape = f"cols{self.cols}" if "x" not in self.per_row else f"shapeNx{self.per_row}"
        timer = "" if kind == MEMORY_KIND else f"-{self.timer}"
        return f"{kind}-{self.op}-{self.dtype}-p{self.p:g}-{shape}{timer}"

    def title(self, subtitle: str) -> str:
        shape = f"cols={self.cols}" if "x" not in self.per_row else f"shape N x {self.per_row}"
        return f"{self.op}, {self.dtype}, p={self.p:g}, {shape}, timer {self.timer}\n{subtitle}"

    def select(self, results: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
        """This facet's dropout rows, and the copy rows of the same dtype, cols and timer."""
        same = ((results["timer"] == self.timer) & (results["dtype"] == self.dtype)
                & (results["cols"] == self.cols))
        rows = results[same & (results["op"] == self.op) & (results["p"] == self.p)
                       & (_per_row(results) == self.per_row)]
        copy = results[same & (results["op"] == schema.COPY)]
        # A copy does not depend on p; if it was recorded once per p, keep one per size,
        # the one with this p when there is one, an ok one before a failed one.
        copy = copy.assign(_other_p=copy["p"] != self.p, _not_ok=copy["status"] != "ok")
        copy = (copy.sort_values(["_other_p", "_not_ok"], kind="stable")
                .drop_duplicates(["run", "rows"], keep="first")
                .drop(columns=["_other_p", "_not_ok"]))
        return rows, copy


@dataclass(frozen=True)
class ShapesFacet:
    """The shapes of one timer, op, dtype and p that are the only one of their series, on one bar chart."""

    timer: str
    op: str
    dtype: str
    p: float

    def stem(self) -> str:
        return f"{SHAPES_KIND}-{self.op}-{self.dtype}-p{self.p:g}-{self.timer}"

    def title(self, subtitle: str) -> str:
        return f"{self.op}, {self.dtype}, p={self.p:g}, timer {self.timer}\n{subtitle}"

    def select(self, results: pd.DataFrame) -> pd.DataFrame:
        series = _series(results)
        return series[series["single"] & (series["timer"] == self.timer) & (series["op"] == self.op)
                      & (series["dtype"] == self.dtype) & (series["p"] == self.p)]


#: How each autograd_threads value reads in a title: where the rows' backward ran.
THREADS_TEXT = {"False": "backward on the calling thread", "True": "backward on autograd's device thread"}


def subtitle(frame: pd.DataFrame) -> str:
    """A figure's second title line: its devices, and where backward ran (bwd timings depend on it;
    on the CPU it always runs on the calling thread, so CPU-only figures leave it out)."""
    devices = " vs ".join(pd.unique(frame["device"]))
    if (frame["device"] == "cpu").all():
        return devices
    settings = sorted(set(frame["autograd_threads"].astype(str)))
    threads = THREADS_TEXT.get(settings[0], settings[0]) if len(settings) == 1 else \
        "runs differ in where backward ran (autograd_threads)"
    return f"{devices}; {threads}"


def _per_row(results: pd.DataFrame) -> pd.Series:
    """Each row's shape after its first dim."""
    return results["shape"].str.split("x", n=1).str[1]


def _named(results: pd.DataFrame) -> pd.Series:
    """Whether each row is a named real-model shape (shape=models)."""
    return results["model"].fillna("") != ""


def _series(results: pd.DataFrame) -> pd.DataFrame:
    """The dropout rows of the design grid and conv shapes (not the named model shapes), with
    `per_row` and `single`: whether their series has only one rows value."""
    dropout = results[results["op"].isin(schema.OPS) & ~_named(results)]
    dropout = dropout.assign(per_row=_per_row(dropout))
    sizes = dropout.groupby(_SERIES)["rows"].transform("nunique")
    return dropout.assign(single=sizes == 1)


def _order(facet) -> tuple:
    order = {name: rank for rank, name in enumerate(schema.TIMERS + schema.ALL_OPS + schema.DTYPES)}
    return order.get(facet.timer, -1), order[facet.op], order[facet.dtype], facet.p


def facets(results: pd.DataFrame) -> list[Facet]:
    """Every series of dropout rows over at least two rows values, in schema order of timer, op and dtype."""
    series = _series(results)
    keys = series.loc[~series["single"], _SERIES + ["cols"]].drop_duplicates()
    found = [Facet(row.timer, row.op, row.dtype, float(row.p), int(row.cols), row.per_row)
             for row in keys.itertuples(index=False)]
    return sorted(found, key=lambda facet: (*_order(facet), facet.cols, facet.per_row))


def shapes_facets(results: pd.DataFrame) -> list[ShapesFacet]:
    """Every (timer, op, dtype, p) with shapes that are alone in their series, in the same order."""
    series = _series(results)
    keys = series.loc[series["single"], ["timer", "op", "dtype", "p"]].drop_duplicates()
    found = [ShapesFacet(row.timer, row.op, row.dtype, float(row.p)) for row in keys.itertuples(index=False)]
    return sorted(found, key=_order)


def missing_rows(kind: str, facet: Facet, rows: pd.DataFrame, copy: pd.DataFrame) -> str:
    """Why a figure of `kind` cannot be drawn from these rows ('' when it can)."""
    if kind == "speedup" and not (rows["backend"] == "eager").any():
        return "no eager rows (speedup is over eager)"
    if kind in ("gbps", "pct_of_copy") and facet.timer not in schema.DEVICE_TIMERS:
        return f"timer {facet.timer} times the host, not the device"
    if kind == "us_over_copy" and facet.timer == schema.HOST_TIMER:
        return ""  # drawn as µs per call: the host timer has no copy to subtract
    if kind in ("pct_of_copy", "us_over_copy") and not rows[kind].notna().any():
        return "no copy rows of the same size and timer"
    if kind == MEMORY_KIND and not rows[["saved_bytes", "peak_bytes"]].notna().any().any():
        return "no memory measured"
    return ""


def write_all(results: pd.DataFrame, out_dir: str | Path, timer: str | None = None) -> list[Path]:
    """Draw and save every figure the rows allow; returns the files written, in a fixed order.

    Each kind of figure some facet had to skip is logged once, with why and how many.
    """
    if timer is not None:
        present = sorted(set(results["timer"]))
        results = results[results["timer"] == timer]
        if results.empty:
            raise ResultsError(f"no rows with timer {timer}; the CSVs have: {', '.join(present)}")
    if (results["op"] == schema.COPY).all():
        raise ResultsError(f"only copy rows, nothing to plot; need op {' or '.join(schema.OPS)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    style = figures.Style.from_results(results)
    written, skipped = [], {}

    def draw(kind, facet, rows, copy, stem, drawing):
        reason = missing_rows(kind, facet, rows, copy)
        if reason:
            skipped.setdefault((kind, reason), []).append(stem)
            return
        nonlocal written
        written += save(drawing(), out_dir / stem)

    memory_done = set()
    for facet in facets(results):
        rows, copy = facet.select(results)
        title = facet.title(subtitle(pd.concat([rows, copy])))
        for kind, figure in KINDS.items():
            draw(kind, facet, rows, copy, facet.stem(kind),
                 lambda figure=figure: figure(rows, copy, style, title))
        stem = facet.stem(MEMORY_KIND)
        if stem not in memory_done:  # the first timer's facet stands for all: bytes do not depend on it
            memory_done.add(stem)
            every_timer = _same_series(results, facet)
            untimed = facet.title(subtitle(every_timer)).replace(f", timer {facet.timer}", "")
            draw(MEMORY_KIND, facet, every_timer, copy, stem,
                 lambda: figures.memory(every_timer, copy, style, untimed))
    for facet in shapes_facets(results):
        rows = facet.select(results)
        written += save(figures.shapes(rows, style, facet.title(subtitle(rows))), out_dir / facet.stem())
    for (timer, op, direction), rows in _model_groups(results):
        stem = f"{MODELS_KIND}-{op}-{direction}-{timer}"
        reason = missing_model_rows(timer, rows)
        if reason:
            skipped.setdefault((MODELS_KIND, reason), []).append(stem)
            continue
        title = f"{op}, {direction}, timer {timer}\n{subtitle(rows)}"
        written += save(figures.models(rows, style, title), out_dir / stem)
    steps = results[results["direction"] == schema.STEP]
    for (op, dtype), rows in steps.groupby(["op", "dtype"], sort=False):
        title = f"{op}, {dtype}\n{subtitle(rows)}"
        written += save(figures.train_steps(rows, style, title), out_dir / f"{TRAIN_KIND}-{op}-{dtype}")
    for (kind, reason), stems in skipped.items():
        log.warning("skipped %d %s figure(s): %s (e.g. %s)", len(stems), kind, reason, stems[0])
    if not written:
        raise ResultsError("no figure could be drawn from these rows")
    return written


def _model_groups(results: pd.DataFrame):
    """((timer, op, direction), rows) of the named model shapes, in schema order."""
    named = results[_named(results) & results["op"].isin(schema.OPS)]
    order = {name: rank for rank, name in enumerate(schema.TIMERS + schema.ALL_OPS + schema.DIRECTIONS)}
    groups = named.groupby(["timer", "op", "direction"], sort=False)
    return sorted(groups, key=lambda group: tuple(order.get(name, -1) for name in group[0]))


def missing_model_rows(timer: str, rows: pd.DataFrame) -> str:
    """Why a models figure cannot be drawn from these rows ('' when it can)."""
    if timer not in schema.DEVICE_TIMERS:
        return f"timer {timer} times the host, not the device"
    if not rows["pct_of_copy"].notna().any():
        return "no copy rows of the same size and timer"
    return ""


def _same_series(results: pd.DataFrame, facet: Facet) -> pd.DataFrame:
    """The rows of facet's op, dtype, p and series of shapes under every timer."""
    series = _series(results)
    return series[(series["op"] == facet.op) & (series["dtype"] == facet.dtype) & (series["p"] == facet.p)
                  & (series["per_row"] == facet.per_row)].drop(columns=["per_row", "single"])


def save(figure, stem: Path) -> list[Path]:
    """Write stem.png and stem.svg; the SVG has no date and fixed ids, so reruns match."""
    paths = []
    with matplotlib.rc_context({"svg.hashsalt": "dropbench"}):
        for fmt in FORMATS:
            path = stem.with_name(f"{stem.name}.{fmt}")
            metadata = {"Date": None} if fmt == "svg" else None
            figure.savefig(path, format=fmt, dpi=DPI, metadata=metadata)
            paths.append(path)
            # The first save laid the figure out; keeping that layout halves the second's cost.
            figure.set_layout_engine("none")
    return paths
