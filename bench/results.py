"""The results CSV on disk: environment columns, fault-tolerant appends, and resume.

Every row is one `write()` of a complete line followed by flush and fsync, so a
killed sweep leaves at most one partial last line; opening the file again drops
that line, reads the keys already measured (schema.KEY_COLUMNS) so the sweep can
skip them, and appends. A file written before a column existed (schema.ADDED_COLUMNS:
`shape`, `autograd_threads`) is rewritten first with it (rows x cols, the only shape
there was; schema.fill_added says what autograd_threads was), then appended to.
The csv module (not pandas) keeps this independent of the pandas version.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import re
import socket
import subprocess
import uuid
from datetime import datetime, timezone
from pathlib import Path

from dropbench.bench.schema import ADDED_COLUMNS, COLUMNS, KEY_COLUMNS, fill_added

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
HEADER = ",".join(COLUMNS) + "\n"


class ResultsError(ValueError):
    """An existing results file that this sweep must not append to; the message says why."""


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def device_slug(device_name: str) -> str:
    """'NVIDIA H100 80GB HBM3' -> 'nvidia-h100-80gb-hbm3': safe in a file name."""
    return re.sub(r"[^a-z0-9]+", "-", device_name.lower()).strip("-") or "device"


def default_path(device_name: str) -> Path:
    """results/<device_slug>-<UTC date>.csv: a re-run on the same day resumes it."""
    return Path("results") / f"{device_slug(device_name)}-{datetime.now(timezone.utc):%Y-%m-%d}.csv"


def git_commit() -> str:
    """`git rev-parse --short HEAD` of this checkout, '-dirty' if tracked files changed; '' if none.

    A copy of the tree without .git (a GPU machine, a container) can name its commit in
    DROPBENCH_COMMIT instead.
    """
    if os.environ.get("DROPBENCH_COMMIT"):
        return os.environ["DROPBENCH_COMMIT"]

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
    try:
        commit = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return ""  # not a git checkout (an installed package), no commit yet, or no git
    return commit + ("-dirty" if dirty else "")


def environment(device: str) -> dict:
    """The columns that describe where and with what a sweep ran; one run_id per invocation."""
    import torch
    import triton

    if device == "cuda":
        name = torch.cuda.get_device_name()
        sm_count = torch.cuda.get_device_properties(torch.cuda.current_device()).multi_processor_count
    else:
        name, sm_count = "cpu", None
    return {
        "device": name,
        "sm_count": sm_count,
        "torch": torch.__version__,
        "triton": triton.__version__,
        "cuda": torch.version.cuda or "",
        "commit": git_commit(),
        "host": socket.gethostname(),
        "run_id": f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}",
    }


def key_of(row: dict) -> tuple:
    """A row's key with typed numbers, so '0.5' read back equals 0.5 measured."""
    op, backend, dtype, rows, cols, shape, p, direction, timer = (row[column] for column in KEY_COLUMNS)
    if not shape:
        raise ValueError("empty shape")
    return (op, backend, dtype, int(rows), int(cols), str(shape), float(p), direction, timer)


def read_csv_text(text: str) -> list[dict] | None:
    """The rows of a results CSV's text, every cell a string; None if its header is not a known version's.

    A known version's header is COLUMNS, less some of the ADDED_COLUMNS: rows of those files
    get the missing columns filled (schema.fill_added).
    """
    if text.startswith(HEADER):
        return list(csv.DictReader(io.StringIO(text)))
    if not is_older_header(header_of(text)):
        return None
    return [fill_added(row) for row in csv.DictReader(io.StringIO(text))]


def header_of(text: str) -> list[str]:
    """The column names on a CSV text's first line."""
    return text.split("\n", 1)[0].rstrip("\r").split(",")


def is_older_header(header: list[str]) -> bool:
    """Whether `header` is COLUMNS with some of the ADDED_COLUMNS left out (a file of an older version)."""
    missing = set(COLUMNS) - set(header)
    return bool(missing) and missing <= set(ADDED_COLUMNS) and header == [c for c in COLUMNS if c in header]


def _cell(value, exact: bool = False) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and not exact:
        return f"{value:.6g}"  # measurements: 6 significant digits are more than their noise
    return str(value)  # str(float) round-trips, so a key read back equals the key written


def format_line(row: dict) -> str:
    """One complete CSV line (with its newline) holding every schema column, in order."""
    buffer = io.StringIO()
    cells = [_cell(row.get(column), exact=column in KEY_COLUMNS) for column in COLUMNS]
    csv.writer(buffer, lineterminator="\n").writerow(cells)
    return buffer.getvalue()


class ResultsFile:
    """A results CSV opened for appending, with the rows it already held."""

    def __init__(self, path: str | Path, device_name: str, autograd_threads: bool | None = None):
        """Open (and resume) path for rows measured on device_name, with autograd_threads where given:
        rows measured otherwise raise ResultsError instead of mixing into one file."""
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.rows, missing_columns = self._read_existing()
        self.resumed = len(self.rows)
        others = sorted({row["device"] for row in self.rows} - {device_name})
        if others:
            raise ResultsError(
                f"{self.path} holds rows measured on {', '.join(others)}, not {device_name}; "
                f"give this device its own file (results.path=...)"
            )
        settings = sorted({row["autograd_threads"] for row in self.rows} - {str(autograd_threads)})
        if autograd_threads is not None and settings:
            raise ResultsError(
                f"{self.path} holds rows measured with timing.autograd_threads={', '.join(settings)}, "
                f"this sweep uses {autograd_threads}; give it its own file (results.path=...)"
            )
        if missing_columns:
            self._rewrite(self.rows, missing_columns)  # only once the file is known to be this sweep's
        self.done = {key_of(row) for row in self.rows}
        self._file = open(self.path, "a", newline="", encoding="utf-8")
        if self._file.tell() == 0:
            self._append(HEADER)

    def _read_existing(self) -> tuple[list[dict], list[str]]:
        """The file's rows (older versions' filled in), and the columns its header lacks."""
        if not self.path.exists() or self.path.stat().st_size == 0:
            return [], []
        data = self.path.read_bytes()
        if not data.endswith(b"\n"):
            # A kill mid-write leaves at most one partial line (each row is one write()).
            keep = data.rfind(b"\n") + 1
            log.warning("%s: dropping a partial last line left by an interrupted run: %r",
                        self.path, data[keep:][:80])
            with open(self.path, "r+b") as file:
                file.truncate(keep)
                file.flush()
                os.fsync(file.fileno())
            data = data[:keep]
        if not data:
            return [], []
        text = data.decode("utf-8")
        rows = read_csv_text(text)
        if rows is None:
            raise ResultsError(
                f"{self.path} exists but its header is not this version's columns "
                f"(bench.schema.COLUMNS); give another results.path"
            )
        for line, row in enumerate(rows, start=2):
            try:
                key_of(row)
            except (TypeError, ValueError, KeyError):
                raise ResultsError(f"{self.path}: line {line} has a malformed key: {row}") from None
        return rows, [column for column in ADDED_COLUMNS if column not in header_of(text)]

    def _rewrite(self, rows: list[dict], missing_columns: list[str]) -> None:
        """Replace a file of an older version by the same rows in this version's columns, atomically."""
        log.warning("%s: written before the column(s) %s; rewriting it with them filled in to append to it",
                    self.path, ", ".join(missing_columns))
        temporary = self.path.with_name(self.path.name + ".upgrading")
        with open(temporary, "w", newline="", encoding="utf-8") as file:
            file.write(HEADER + "".join(format_line(row) for row in rows))
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, self.path)

    def _append(self, line: str) -> None:
        # One write() per complete line, then to disk: a crash loses at most this line.
        self._file.write(line)
        self._file.flush()
        os.fsync(self._file.fileno())

    def write(self, row: dict) -> None:
        """Append one measurement; its key must be new to this file."""
        key = key_of({column: row[column] for column in KEY_COLUMNS})
        if key in self.done:
            raise ResultsError(f"{self.path} already has a row for {key}")
        line = format_line(row)
        self._append(line)
        self.done.add(key)
        self.rows.append(dict(zip(COLUMNS, next(csv.reader([line])))))

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> ResultsFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
