"""Results CSVs on disk: the one reader, the line writer, and the figures derived from rows.

* `read(paths)` is how merge, compare, plots and the summary see results: one typed
  DataFrame, older files upgraded (bench.schema), derived columns recomputed (`derive`).
* `load_text(path)` is the same file as text cells, for the writer's resume
  (bench.results), which must write back exactly what it read.
* `format_line` is the one way a row becomes a line of CSV.

A file is refused with a TableError (a one-line message naming the file and the
problem) when it is missing, binary, not a results CSV, holds a value outside
bench.schema.ALLOWED, or holds a key twice. A partial last line (a run killed
mid-write) is dropped with a logged line, never read as data. No torch here.
"""

from __future__ import annotations

import csv
import io
import logging
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from dropbench.bench import schema

log = logging.getLogger(__name__)

HEADER = ",".join(schema.COLUMNS) + "\n"
#: The column read() adds: which input file each row came from (its position in `paths`).
SOURCE = "source"
#: Derived columns; only us_over_copy is not also stored in the CSV.
DERIVED = ["gbps", "pct_of_copy", "speedup_vs_eager", "us_over_copy"]


class TableError(ValueError):
    """A results file that cannot be read; the message is one line naming the file and the problem."""


# -- writing ---------------------------------------------------------------------------------

def _cell(value, exact: bool = False) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return ""
    if isinstance(value, float) and not exact:
        return f"{value:.6g}"  # measurements: 6 significant digits are more than their noise
    return str(value)  # str(float) round-trips, so a key read back equals the key written


def format_line(row: dict) -> str:
    """One complete CSV line (with its newline) holding every schema column, in order."""
    buffer = io.StringIO()
    cells = [_cell(row.get(column), exact=column in schema.KEY_COLUMNS) for column in schema.COLUMNS]
    csv.writer(buffer, lineterminator="\n").writerow(cells)
    return buffer.getvalue()


def write(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write rows (a frame from read(), or text cells) as a results CSV in this version's columns."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = frame.astype(object).where(frame.notna(), None).to_dict("records")
    path.write_text(HEADER + "".join(format_line(row) for row in rows), encoding="utf-8")
    return path


# -- reading ---------------------------------------------------------------------------------

def complete_text(path: Path) -> tuple[str, bytes]:
    """The file's text up to its last complete line, and the partial line after it (b'' if none)."""
    if not path.exists():
        raise TableError(f"{path}: no such file")
    if not path.is_file():
        raise TableError(f"{path}: not a file")
    data = path.read_bytes()
    if b"\0" in data:
        raise TableError(f"{path}: binary data, not a results CSV")
    keep = data.rfind(b"\n") + 1 if not data.endswith(b"\n") else len(data)
    try:
        return data[:keep].decode("utf-8"), data[keep:]
    except UnicodeDecodeError:
        raise TableError(f"{path}: not UTF-8 text, not a results CSV") from None


def load_text(path: str | Path) -> tuple[pd.DataFrame, bool]:
    """One file's rows as text cells in this version's columns, and whether the file needs an upgrade.

    The partial last line is dropped with a logged message (not from the disk: see
    bench.results for the writer that owns the file).
    """
    path = Path(path)
    text, partial = complete_text(path)
    if partial:
        log.warning("%s: dropping a partial last line (an interrupted run): %r", path, partial[:80])
    if not text.strip():
        raise TableError(f"{path}: empty file (no header, no rows)")
    try:
        raw = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except pd.errors.ParserError as exc:
        raise TableError(f"{path}: not a readable CSV ({str(exc).strip().splitlines()[0]})") from None
    header = list(raw.columns)
    unknown, missing = schema.unknown_columns(header), schema.missing_columns(header)
    if missing or unknown:
        problem = (f"missing column(s) {', '.join(missing)}" if missing
                   else f"unknown column(s) {', '.join(unknown)} (a newer dropbench's file?)")
        raise TableError(f"{path}: not a results CSV of this version: {problem}")
    upgrade = schema.needs_upgrade(header, set(raw["backend"]))
    rows = [schema.upgrade_row(row) for row in raw.to_dict("records")]
    return pd.DataFrame(rows, columns=schema.COLUMNS, dtype=str), upgrade


def typed(frame: pd.DataFrame, path: str | Path) -> pd.DataFrame:
    """Text cells as typed columns: values checked against schema.ALLOWED, numbers as numbers."""
    frame = frame.copy()
    for column, allowed in schema.allowed().items():
        bad = ~frame[column].isin(allowed)
        if bad.any():
            line = _line(bad)
            raise TableError(f"{path}: line {line}: {column} {frame[column][bad].iloc[0]!r} is not one of "
                             f"{', '.join(allowed)}")
    for column in schema.KEY_COLUMNS:
        empty = frame[column] == ""
        if empty.any():
            raise TableError(f"{path}: line {_line(empty)}: empty {column} (part of the row key)")
    for column in schema.INT_COLUMNS + schema.FLOAT_COLUMNS:
        numbers = pd.to_numeric(frame[column].replace("", np.nan), errors="coerce")
        bad = numbers.isna() & (frame[column] != "")
        if column in schema.INT_COLUMNS:
            bad |= numbers.notna() & (numbers != numbers.round())
        if bad.any():
            raise TableError(f"{path}: line {_line(bad)}: {column} {frame[column][bad].iloc[0]!r} "
                             f"is not {'an integer' if column in schema.INT_COLUMNS else 'a number'}")
        frame[column] = numbers.astype("Int64") if column in schema.INT_COLUMNS else numbers.astype(float)
    frame["autograd_threads"] = frame["autograd_threads"] == "True"
    mismatched = (frame["op"] == schema.COPY) != (frame["backend"] == schema.COPY)
    if mismatched.any():
        bad = frame[mismatched].iloc[0]
        raise TableError(f"{path}: line {_line(mismatched)} has op {bad['op']} with backend {bad['backend']}; "
                         f"op copy goes with backend copy only")
    sizes = frame["shape"].str.split("x")
    first = pd.to_numeric(sizes.str[0], errors="coerce")
    rest = sizes.str[1:].map(lambda dims: float(np.prod([float(d) if d.isdigit() else np.nan for d in dims]))
                             if len(dims) else np.nan)
    # A training step's shape names its model (gpt2-12x768-8x1024): rows and cols are batch and sequence.
    measured_input = ~frame["op"].isin(schema.TRAIN_OPS)
    wrong = measured_input & ~((first == frame["rows"]) & (rest == frame["cols"])).fillna(False).astype(bool)
    if wrong.any():
        bad = frame[wrong].iloc[0]
        raise TableError(f"{path}: line {_line(wrong)} has shape {bad['shape']!r}; expected {bad['rows']}x... "
                         f"with the rest multiplying to cols = {bad['cols']}")
    return frame


def check_unique(frame: pd.DataFrame, path: str | Path) -> None:
    """Refuse a file that holds one measurement (key and device) twice."""
    repeated = frame.duplicated(schema.KEY_COLUMNS + ["device"], keep="first")
    if repeated.any():
        line = _line(repeated)
        row = frame[repeated].iloc[0]
        key = " ".join(str(row[column]) for column in schema.KEY_COLUMNS)
        raise TableError(f"{path}: line {line} repeats the key of an earlier line ({key}); "
                         f"a results file holds each measurement once (dropbench-merge picks one)")


def read(paths: str | Path | Iterable[str | Path], derived: bool = True) -> pd.DataFrame:
    """Every row of the results CSVs, typed, upgraded and checked, with a `source` column (the input's index).

    With `derived` (the default) the derived columns are recomputed by `derive`, each file's
    rows against that file's copy and eager rows.
    """
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    if not paths:
        raise TableError("no results CSV given")
    frames = []
    for index, path in enumerate(paths):
        frame = typed(load_text(path)[0], path)
        check_unique(frame, path)
        frames.append(frame.assign(**{SOURCE: index}))
    results = pd.concat(frames, ignore_index=True)
    return derive(results) if derived else results


def _line(mask: pd.Series) -> int:
    """The file line of the first True in a mask over a file's rows (1 is the header)."""
    return int(np.flatnonzero(mask.to_numpy())[0]) + 2


# -- derived figures -------------------------------------------------------------------------

def derive(results: pd.DataFrame) -> pd.DataFrame:
    """The derived columns as a pure function of the measured rows (a new frame; the input is kept).

    * gbps: useful bytes (one read and one write per pass) / ms_median;
    * pct_of_copy: 100 * copy_ms * passes / ms_median, against the copy of the same
      dtype, rows, cols and timer in the same run (file and device);
    * us_over_copy: ms_median * 1000 - copy_us * passes, what small shapes are read by
      (there the copy is launch-bound too, and % of copy is no bandwidth figure);
    * speedup_vs_eager: eager's ms_median / ms_median, same key but the backend.

    Only ok rows of op directions (fwd, bwd, fwd+bwd) under device timers get gbps and the
    copy figures; host-timer and training-step rows leave them empty.
    """
    out = results.copy()
    run = [SOURCE, "device"] if SOURCE in out.columns else ["device"]
    ok = out["status"] == "ok"
    ms = out["ms_median"].where(ok)
    passes = out["direction"].map(schema.PASSES)
    bandwidth = ok & out["timer"].isin(schema.DEVICE_TIMERS) & passes.notna()
    numel = out["numel"].astype(float)
    bytes_moved = 2 * numel * out["dtype"].map(schema.DTYPE_BYTES) * passes
    out["gbps"] = (bytes_moved / (ms * 1e-3) / 1e9).where(bandwidth)

    copy_match = run + ["dtype", "rows", "cols", "timer"]
    copies = out[ok & (out["op"] == schema.COPY)]
    # A copy depends on the size only; older files recorded it once per p: any one will do.
    copy_ms = copies.groupby(copy_match, dropna=False)["ms_median"].median().rename("_copy_ms")
    copy_ms = out[copy_match].merge(copy_ms, how="left", left_on=copy_match, right_index=True)["_copy_ms"]
    copy_ms = copy_ms.set_axis(out.index).where(bandwidth)
    out["pct_of_copy"] = 100 * copy_ms * passes / ms
    out["us_over_copy"] = 1000 * (ms - copy_ms * passes)

    eager_match = run + [column for column in schema.KEY_COLUMNS if column != "backend"]
    eagers = out[ok & (out["backend"] == "eager")].set_index(eager_match)["ms_median"].rename("_eager_ms")
    eagers = eagers[~eagers.index.duplicated()]  # a frame without `source` may hold two runs of one device
    eager_ms = out[eager_match].merge(eagers, how="left", left_on=eager_match, right_index=True)["_eager_ms"]
    eager_ms = eager_ms.set_axis(out.index)
    out["speedup_vs_eager"] = (eager_ms / ms).where(out["op"] != schema.COPY)
    return out
