"""Split results into facets, draw every figure for each, and save it as PNG and SVG.

A facet is one (timer, op, dtype, p, cols): everything on one figure shares
them, so timers are never mixed and the file name says exactly what is shown.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib
import pandas as pd

from bench import schema
from plots import figures
from plots.load import ResultsError

#: Figure kind (the file-name prefix) and the function that draws it.
KINDS = {
    "gbps": figures.throughput,
    "pct_of_copy": figures.pct_of_copy,
    "speedup": figures.speedup,
    "memory": figures.memory,
}
FORMATS = ["png", "svg"]
DPI = 150


@dataclass(frozen=True)
class Facet:
    """What one figure holds: one timer, op, dtype, drop probability and cols."""

    timer: str
    op: str
    dtype: str
    p: float
    cols: int

    def stem(self, kind: str) -> str:
        return f"{kind}-{self.op}-{self.dtype}-p{self.p:g}-cols{self.cols}-{self.timer}"

    def title(self, devices: list[str]) -> str:
        return (f"{self.op}, {self.dtype}, p={self.p:g}, cols={self.cols}, "
                f"timer {self.timer}\n{' vs '.join(devices)}")

    def select(self, results: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
        """This facet's dropout rows, and the copy rows of the same dtype, cols and timer."""
        same = ((results["timer"] == self.timer) & (results["dtype"] == self.dtype)
                & (results["cols"] == self.cols))
        rows = results[same & (results["op"] == self.op) & (results["p"] == self.p)]
        copy = results[same & (results["op"] == schema.COPY)]
        # A copy does not depend on p; if it was recorded once per p, keep one per size,
        # the one with this p when there is one, an ok one before a failed one.
        copy = copy.assign(_other_p=copy["p"] != self.p, _not_ok=copy["status"] != "ok")
        copy = (copy.sort_values(["_other_p", "_not_ok"], kind="stable")
                .drop_duplicates(["run", "rows"], keep="first")
                .drop(columns=["_other_p", "_not_ok"]))
        return rows, copy


def facets(results: pd.DataFrame) -> list[Facet]:
    """Every facet with dropout rows, in schema order of timer, op and dtype."""
    dropout = results[results["op"] != schema.COPY]
    keys = dropout[["timer", "op", "dtype", "p", "cols"]].drop_duplicates()
    found = [Facet(row.timer, row.op, row.dtype, float(row.p), int(row.cols))
             for row in keys.itertuples(index=False)]
    order = {name: rank for rank, name in enumerate(schema.TIMERS + schema.OPS + schema.DTYPES)}
    return sorted(found, key=lambda facet: (order.get(facet.timer, -1), order[facet.op],
                                            order[facet.dtype], facet.p, facet.cols))


def write_all(results: pd.DataFrame, out_dir: str | Path, timer: str | None = None) -> list[Path]:
    """Draw and save every figure; returns the files written, in a fixed order."""
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
    written = []
    for facet in facets(results):
        rows, copy = facet.select(results)
        devices = list(pd.unique(pd.concat([rows["device"], copy["device"]])))
        for kind, draw in KINDS.items():
            figure = draw(rows, copy, style, facet.title(devices))
            written += save(figure, out_dir / facet.stem(kind))
    return written


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
