"""Read results CSVs, check them against bench.schema, and label each run.

Every problem with the input is raised here as a ResultsError with a one-line
message naming the file and the problem, so drawing code can trust its frame
and the CLI can print the message instead of a traceback.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from dropbench.bench import schema

#: Columns the figures read. `timer`, `shape` and `run_id` may be absent (older files).
REQUIRED = [
    "op", "backend", "dtype", "rows", "cols", "p", "direction",
    "ms_median", "ms_p20", "ms_p80", "gbps", "pct_of_copy", "speedup_vs_eager",
    "saved_bytes", "peak_bytes", "status", "device",
]
TEXT = ["op", "backend", "dtype", "shape", "direction", "timer", "status", "device", "run_id", "autograd_threads"]
NUMBERS = [
    "rows", "cols", "p", "ms_median", "ms_p20", "ms_p80", "gbps", "pct_of_copy",
    "speedup_vs_eager", "saved_bytes", "peak_bytes",
]
#: Allowed values of each categorical column; NaN is never allowed in these.
ALLOWED = {
    "op": schema.OPS + [schema.COPY],
    "backend": schema.BACKENDS,
    "dtype": schema.DTYPES,
    "direction": schema.DIRECTIONS,
    "timer": schema.TIMERS,
    "status": schema.STATUSES,
}
#: Stands in for the timer of files written before the column existed.
NO_TIMER = "unknown"


class ResultsError(ValueError):
    """A results file that cannot be plotted; the message says which and why."""


def load_results(paths: list[str | Path]) -> pd.DataFrame:
    """Read and check every CSV, concatenated, with a `run` column labelling its source.

    Runs are labelled by device when that tells them apart, else by file stem,
    so two runs on one figure can always be told apart in the legend.
    """
    if not paths:
        raise ResultsError("no results CSV given")
    frames = []
    for index, path in enumerate(paths):
        frame = read_csv(Path(path))
        frame["source"] = index
        frames.append(frame)
    results = pd.concat(frames, ignore_index=True)
    results["run"] = _run_labels(results, [Path(path) for path in paths])
    return results


def read_csv(path: Path) -> pd.DataFrame:
    """One results file, checked: columns present, values allowed, keys unique."""
    if not path.exists():
        raise ResultsError(f"{path}: no such file")
    if not path.is_file():
        raise ResultsError(f"{path}: not a file")
    try:
        # Text columns stay strings so "fp16" etc. never turn into numbers or NaN-floats.
        frame = pd.read_csv(path, dtype={column: str for column in TEXT})
    except pd.errors.EmptyDataError:
        raise ResultsError(f"{path}: empty CSV (no header, no rows)") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ResultsError(f"{path}: not a readable CSV ({first_line})") from None

    missing = [column for column in REQUIRED if column not in frame.columns]
    if missing:
        raise ResultsError(f"{path}: missing column(s) {', '.join(missing)}")
    if frame.empty:
        raise ResultsError(f"{path}: empty CSV (a header but no rows)")
    if "timer" not in frame.columns:
        frame["timer"] = NO_TIMER
    if "autograd_threads" not in frame.columns:
        frame["autograd_threads"] = [schema.legacy_autograd_threads(device) for device in frame["device"]]

    for column, allowed in ALLOWED.items():
        if column == "timer" and (frame["timer"] == NO_TIMER).all():
            continue
        bad = frame.loc[~frame[column].isin(allowed), column]
        if not bad.empty:
            value = "empty" if pd.isna(bad.iloc[0]) else repr(bad.iloc[0])
            raise ResultsError(
                f"{path}: unknown {column} {value} on line {bad.index[0] + 2}; "
                f"allowed: {', '.join(allowed)}"
            )

    is_copy = frame["op"] == schema.COPY
    mismatched = is_copy != (frame["backend"] == schema.COPY)
    if mismatched.any():
        line = int(mismatched.idxmax()) + 2
        raise ResultsError(f"{path}: line {line} has op {frame.at[line - 2, 'op']} with backend "
                           f"{frame.at[line - 2, 'backend']}; op copy goes with backend copy only")

    for column in NUMBERS:
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    # The copy reference has no drop probability; every dropout row needs its shape and p.
    for column, rows_needing_it in [("rows", frame.index), ("cols", frame.index),
                                    ("p", frame.index[~is_copy])]:
        bad = frame.loc[rows_needing_it, column].isna()
        if bad.any():
            raise ResultsError(
                f"{path}: column {column} needs a number, line {bad.idxmax() + 2} has none"
            )
    frame["rows"] = frame["rows"].astype("int64")
    frame["cols"] = frame["cols"].astype("int64")
    frame["device"] = frame["device"].fillna("unknown device")
    _check_shapes(frame, path)

    key = [column for column in schema.KEY_COLUMNS if column in frame.columns]
    repeated = frame.duplicated(subset=key, keep=False)
    if repeated.any():
        line = int(repeated.idxmax()) + 2
        raise ResultsError(
            f"{path}: line {line} repeats a measurement ({', '.join(key)} must be unique)"
        )
    return frame


def _check_shapes(frame: pd.DataFrame, path: Path) -> None:
    """Fill `shape` in files from before it (rows x cols); else each must be rows x (dims of cols)."""
    if "shape" not in frame.columns:
        frame["shape"] = [schema.legacy_shape(rows, cols) for rows, cols in zip(frame["rows"], frame["cols"])]
        return
    for line, (shape, rows, cols) in enumerate(zip(frame["shape"], frame["rows"], frame["cols"]), start=2):
        try:
            sizes = [int(size) for size in str(shape).split("x")]
        except ValueError:
            sizes = []
        if pd.isna(shape) or len(sizes) < 2 or sizes[0] != rows or math.prod(sizes[1:]) != cols:
            raise ResultsError(f"{path}: line {line} has shape {'empty' if pd.isna(shape) else repr(shape)}; "
                               f"expected {rows}x... with the rest multiplying to cols = {cols}")


def _run_labels(results: pd.DataFrame, paths: list[Path]) -> pd.Series:
    """A legend label per row: the device if it tells runs apart, else the file stem."""
    pairs = results[["source", "device"]].drop_duplicates()
    if not pairs["device"].duplicated().any():
        return results["device"]
    stems = _unique_stems(paths)
    by_source = results["source"].map(dict(enumerate(stems)))
    if not pairs["source"].duplicated().any():
        return by_source
    # A file holding several devices that also repeat across files: name both.
    return by_source + " · " + results["device"]


def _unique_stems(paths: list[Path]) -> list[str]:
    """File stems, lengthened with parent folders until no two are the same."""
    for depth in range(1, max(len(path.parts) for path in paths) + 1):
        names = [Path(*path.with_suffix("").parts[-depth:]).as_posix() for path in paths]
        if len(set(names)) == len(names):
            return names
    return [f"{path.as_posix()} #{index + 1}" for index, path in enumerate(paths)]
