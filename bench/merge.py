"""`dropbench-merge OUT.csv IN.csv...` (also `python -m dropbench.bench.merge`): join per-job results CSVs into one.

A sweep spread over a launcher (`-m ... hydra/launcher=slurm`) leaves one results.csv
per job; plots and compare read one file. Each input is read by bench.table (a partial
last line is left out, older files are upgraded, a missing or binary file is refused in
one line); the merged file has this version's columns and each key (schema.KEY_COLUMNS)
once:

* the same key in two files (a job re-run into another folder, overlapping splits):
  an ok row beats a row that is not ok, and between two rows equally ok the newer
  `timestamp` wins (the later input on a tie);
* rows from more than one device, or of more than one timing.autograd_threads, are
  refused: neither is in the key, so such rows would overwrite each other;
* the derived columns are recomputed over the merged rows (bench.table.derive), so a
  job's rows read against a copy another job measured.

MergeCallback runs this at the end of a Hydra multirun and reports, in the log and one
summary line, every job that left no CSV or stopped part-way (killed: OOM, time limit),
since a job that dies whole writes no error rows. Re-running the same multirun with the
same hydra.sweep.dir resumes each job's own CSV, so only what is missing runs.
No torch here.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, NoReturn

import pandas as pd

from dropbench.bench import table
from dropbench.bench.schema import COLUMNS, KEY_COLUMNS
from dropbench.bench.table import TableError

try:
    from hydra.experimental.callback import Callback
except ImportError:  # hydra is a dependency; this keeps `dropbench-merge` usable without it
    Callback = object

log = logging.getLogger(__name__)

#: Written by MergeCallback.on_job_end into each job's folder: COMPLETED, or FAILED and why.
JOB_STATUS = "job_status.txt"
RESULTS = "results.csv"


class MergeError(ValueError):
    """Inputs that cannot be merged into one results file; the message says why."""


def merge(paths: Iterable[str | Path]) -> pd.DataFrame:
    """One frame of every input's rows, every key once (see the module docstring for which row wins)."""
    paths = list(paths)
    rows = table.read(paths, derived=False)
    for column, what in [("device", "device"), ("autograd_threads", "timing.autograd_threads")]:
        first = rows.drop_duplicates(column)
        if len(first) > 1:
            raise MergeError(f"rows of more than one {what}: " + "; ".join(
                f"{value} (e.g. {paths[source]})" for value, source in zip(first[column], first[table.SOURCE])))
    # Best last: ok over not ok, then the newer timestamp (ISO 8601 UTC sorts as text), then the later input.
    ranked = rows.assign(_ok=rows["status"] == "ok", _order=range(len(rows)))
    best = ranked.sort_values(["_ok", "timestamp", "_order"], kind="stable").drop_duplicates(KEY_COLUMNS, keep="last")
    # First-measured order: each job's rows stay in the order it measured them.
    merged = best.sort_values("_order").drop(columns=["_ok", "_order", table.SOURCE])
    return table.derive(merged.reset_index(drop=True))[COLUMNS]  # the file's columns


def write(frame: pd.DataFrame, out: str | Path) -> Path:
    """Write a merged frame as a results CSV (the runner's line format)."""
    return table.write(frame, out)


# -- a multirun's jobs ---------------------------------------------------------------------


@dataclass
class Job:
    overrides: list[str]
    folder: Path | None      # None: the job never started (no folder with these overrides)
    status: str = ""         # COMPLETED, FAILED: <why>, or "" (no status: killed, or still running)
    rows: int = 0

    @property
    def csv(self) -> Path | None:
        return self.folder / RESULTS if self.folder is not None else None

    def problem(self) -> str:
        """'' for a job that finished and wrote its CSV, else what went wrong."""
        if self.folder is None:
            return "never started (no job folder)"
        if not self.csv.exists():
            return f"no CSV ({self.status or 'no job status: killed?'})"
        if self.status != "COMPLETED":
            return f"partial CSV, {self.rows} rows ({self.status or 'no job status: killed (OOM, time limit)?'})"
        return ""


def expected_overrides(task_overrides: list[str]) -> list[list[str]]:
    """The per-job overrides Hydra's basic sweeper makes of a multirun's command line."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(list(task_overrides))
    batches = BasicSweeper.split_arguments(parsed, None)
    return [list(job) for batch in batches for job in batch]


def find_jobs(sweep_dir: str | Path, task_overrides: list[str] | None = None) -> list[Job]:
    """Every job of the multirun in sweep_dir: those with a folder, plus those expected but missing.

    A job folder is recognised by Hydra's .hydra/overrides.yaml; jobs are matched to the
    expected ones by their set of overrides, so the folder naming does not matter.
    """
    import yaml

    sweep_dir = Path(sweep_dir)
    found: dict[frozenset, Job] = {}
    for overrides_file in sorted(sweep_dir.glob("**/.hydra/overrides.yaml")):
        folder = overrides_file.parent.parent
        overrides = [str(item) for item in (yaml.safe_load(overrides_file.read_text()) or [])]
        status_file = folder / JOB_STATUS
        status = status_file.read_text().strip() if status_file.exists() else ""
        job = Job(overrides, folder, status)
        if job.csv.exists():
            job.rows = len(table.read(job.csv, derived=False))
        found[frozenset(overrides)] = job
    jobs = list(found.values())
    for overrides in expected_overrides(task_overrides or []):
        if frozenset(overrides) not in found:
            jobs.append(Job(overrides, None))
    return jobs


def merge_multirun(sweep_dir: str | Path, task_overrides: list[str] | None = None,
                   filename: str = "merged.csv") -> tuple[Path | None, list[Job]]:
    """Merge the jobs' CSVs of sweep_dir into sweep_dir/filename; log every job that went wrong.

    Returns (the merged file or None when no job wrote rows, the jobs).
    """
    sweep_dir = Path(sweep_dir)
    jobs = find_jobs(sweep_dir, task_overrides)
    csvs = [job.csv for job in jobs if job.csv is not None and job.csv.exists()]
    out = None
    if csvs:
        frame = merge(csvs)
        out = write(frame, sweep_dir / filename)
        log.info("merged %d job CSVs, %d rows, into %s", len(csvs), len(frame), out)
    bad = [(job, job.problem()) for job in jobs if job.problem()]
    for job, problem in bad:
        log.error("job %s: %s", " ".join(job.overrides) or "(no overrides)", problem)
    summary = (f"merge: {len(jobs) - len(bad)} of {len(jobs)} jobs complete"
               + (f"; {len(bad)} incomplete (re-run the same -m with hydra.sweep.dir={sweep_dir} "
                  f"to resume them)" if bad else ""))
    (log.error if bad else log.info)(summary)
    return out, jobs


class MergeCallback(Callback):
    """Hydra callback (configs/hydra/callbacks/merge.yaml): each job notes how it ended, the multirun merges.

    on_job_end runs where the job runs (a Slurm node too) and writes job_status.txt into the
    job's folder; a job killed outright writes none, which is how merge_multirun tells a
    partial CSV from a complete one. on_multirun_end runs where the sweep was started.
    """

    def __init__(self, filename: str = "merged.csv") -> None:
        self.filename = filename

    def on_job_end(self, config: Any, job_return: Any, **kwargs: Any) -> None:
        from hydra.core.utils import JobStatus
        from hydra.types import RunMode

        if config.hydra.mode != RunMode.MULTIRUN:
            return
        if job_return.status == JobStatus.COMPLETED:
            status = "COMPLETED"
        else:
            error = job_return._return_value  # the exception; .return_value would re-raise it
            status = f"FAILED: {type(error).__name__}: {str(error).strip()[:300]}"
        (Path(config.hydra.runtime.output_dir) / JOB_STATUS).write_text(status + "\n")

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        try:
            merge_multirun(config.hydra.sweep.dir, list(config.hydra.overrides.task), self.filename)
        except Exception as exc:  # the jobs' CSVs are all still there: say so rather than lose the sweep's end
            log.error("merging %s failed: %s: %s (merge by hand: dropbench-merge)", config.hydra.sweep.dir,
                      type(exc).__name__, exc)


#: Exit status for bad input, as argparse and the other commands use.
BAD_INPUT_EXIT = 2


def _refuse(message: str) -> NoReturn:
    """One line on stderr and exit BAD_INPUT_EXIT."""
    print(f"dropbench-merge: error: {message}", file=sys.stderr)
    sys.exit(BAD_INPUT_EXIT)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="dropbench-merge", description=__doc__.split("\n")[0])
    parser.add_argument("out", help="the merged CSV to write")
    parser.add_argument("inputs", nargs="+", help="results CSVs (e.g. multirun/<date>/<time>/*/results.csv)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        frame = merge(args.inputs)
        write(frame, args.out)
    except (MergeError, TableError) as exc:
        _refuse(str(exc))
    except OSError as exc:  # the output cannot be written
        _refuse(f"cannot write {args.out}: {exc.strerror}")
    print(f"{len(frame)} rows from {len(args.inputs)} files -> {args.out}")


if __name__ == "__main__":
    main()
