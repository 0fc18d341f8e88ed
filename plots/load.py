"""Results CSVs for figures: bench.table's one reader, plus a legend label for each run.

Every problem with the input is a ResultsError (bench.table.TableError) with a one-line
message naming the file and the problem, so drawing code can trust its frame and the
CLI can print the message instead of a traceback.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from dropbench.bench import table

ResultsError = table.TableError


def load_results(paths: list[str | Path]) -> pd.DataFrame:
    """Every CSV through bench.table.read, with a `run` column labelling its source.

    Runs are labelled by device when that tells them apart, else by file stem,
    so two runs on one figure can always be told apart in the legend.
    """
    results = table.read(paths)
    if results.empty:
        raise ResultsError(f"{', '.join(map(str, paths))}: no rows to plot (a header only)")
    results["run"] = _run_labels(results, [Path(path) for path in paths])
    return results


def _run_labels(results: pd.DataFrame, paths: list[Path]) -> pd.Series:
    """A legend label per row: the device if it tells runs apart, else the file stem."""
    pairs = results[[table.SOURCE, "device"]].drop_duplicates()
    if not pairs["device"].duplicated().any():
        return results["device"]
    stems = _unique_stems(paths)
    by_source = results[table.SOURCE].map(dict(enumerate(stems)))
    if not pairs[table.SOURCE].duplicated().any():
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
