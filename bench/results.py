"""The results CSV as the runner writes it: environment columns, fault-tolerant appends, and resume.

Every row is one `write()` of a complete line followed by flush and fsync, so a
killed sweep leaves at most one partial last line; opening the file again drops
that line from the disk, reads the keys already measured (schema.KEY_COLUMNS) so
the sweep can skip them, and appends. A file of an older version (fewer columns,
old backend names: bench.schema.upgrade_row) is rewritten first in this version's
columns, then appended to. Reading goes through bench.table, the one reader.
"""

from __future__ import annotations

import csv
import logging
import os
import re
import socket
import subprocess
import uuid
from datetime import datetime, timezone
from pathlib import Path

from dropbench.bench import table
from dropbench.bench.schema import COLUMNS, KEY_COLUMNS, MASK_CONTRACT, legacy_autograd_threads
from dropbench.bench.table import HEADER, TableError, format_line  # noqa: F401 (HEADER: re-exported)

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]


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
        "mask_contract": MASK_CONTRACT,
        "run_id": f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}",
    }


def key_of(row: dict) -> tuple:
    """A row's key (schema.KEY_COLUMNS order) with typed numbers, so '0.5' read back equals 0.5 measured.

    A row without variational_dim (a caller from before the column) has 0 there, as old files do.
    """
    op, backend, dtype, rows, cols, shape, p, direction, timer = (row[column] for column in KEY_COLUMNS[:-1])
    if not shape:
        raise ValueError("empty shape")
    return (op, backend, dtype, int(rows), int(cols), str(shape), float(p), direction, timer,
            int(row.get("variational_dim") or 0))


class Keys(set):
    """The keys a file holds. Compatibility: a key without its last field (variational_dim, the
    runner's until it writes that column) is looked up with the value old files have, 0."""

    def __contains__(self, key) -> bool:
        if len(key) == len(KEY_COLUMNS) - 1:
            key = (*key, 0)
        return super().__contains__(key)


class ResultsFile:
    """A results CSV opened for appending, with the rows it already held (cells as text)."""

    def __init__(self, path: str | Path, device_name: str, autograd_threads: bool | None = None):
        """Open (and resume) path for rows measured on device_name, with autograd_threads where given:
        rows measured otherwise raise ResultsError instead of mixing into one file."""
        self.path = Path(path)
        self.autograd_threads = autograd_threads
        if self.path.is_dir():
            raise ResultsError(f"{self.path} is a directory; results.path names a CSV file")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.rows, needs_upgrade = self._read_existing()
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
        if needs_upgrade:
            self._rewrite(self.rows)  # only once the file is known to be this sweep's
        self.done = Keys(key_of(row) for row in self.rows)
        self._file = open(self.path, "a", newline="", encoding="utf-8")
        if self._file.tell() == 0:
            self._append(HEADER)

    def _read_existing(self) -> tuple[list[dict], bool]:
        """The file's rows in this version's columns, and whether the file must be rewritten so."""
        if not self.path.exists():
            return [], False
        try:
            text, partial = table.complete_text(self.path)
            if partial:  # a kill mid-write leaves at most one partial line (each row is one write())
                log.warning("%s: dropping a partial last line left by an interrupted run: %r",
                            self.path, partial[:80])
                with open(self.path, "r+b") as file:
                    file.truncate(len(text.encode("utf-8")))
                    file.flush()
                    os.fsync(file.fileno())
            if not text:
                return [], False
            frame, needs_upgrade = table.load_text(self.path)
            table.typed(frame, self.path)  # every cell as this version reads it
            table.check_unique(frame, self.path)
        except TableError as exc:
            raise ResultsError(f"{exc}; give another results.path") from None
        return frame.to_dict("records"), needs_upgrade

    def _rewrite(self, rows: list[dict]) -> None:
        """Replace a file of an older version by the same rows in this version's columns, atomically."""
        log.warning("%s: written by an older version; rewriting it in this version's columns to append to it",
                    self.path)
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
        """Append one measurement; its key must be new to this file.

        Columns the caller leaves out get what a row of the first files meant (variational_dim 0),
        this version's mask contract, and the file's autograd_threads setting where it was given.
        """
        threads = self.autograd_threads if self.autograd_threads is not None else \
            legacy_autograd_threads(row.get("device", ""))
        row = {"variational_dim": 0, "mask_contract": MASK_CONTRACT, "autograd_threads": threads, **row}
        key = key_of(row)
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
