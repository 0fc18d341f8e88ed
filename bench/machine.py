"""The GPU's state at the start and end of a sweep, in a sidecar JSON beside the CSV.

A slow row may be the kernel's or a throttled GPU's: the SM and memory clocks, power
draw, temperature and throttle reasons at both ends of the sweep tell them apart.
Read through `nvidia-smi --query-gpu` (NVML's Python binding is not installed on the
GPU machines; nvidia-smi ships with the driver). Without nvidia-smi, or on the CPU,
nothing is written.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import subprocess
from pathlib import Path

log = logging.getLogger(__name__)

#: nvidia-smi's names; clocks_event_reasons is the newer drivers' name for the throttle reasons.
FIELDS = ["index", "uuid", "name", "pstate", "clocks.sm", "clocks.max.sm", "clocks.mem", "clocks.max.mem",
          "power.draw", "power.limit", "temperature.gpu", "utilization.gpu"]
THROTTLE_FIELDS = ["clocks_event_reasons.active", "clocks_throttle_reasons.active"]


def sidecar_path(csv_path: str | Path) -> Path:
    """<csv>.machine.json: the machine state file beside a results CSV."""
    csv_path = Path(csv_path)
    return csv_path.with_name(csv_path.name + ".machine.json")


def query(run=subprocess.run) -> list[dict] | None:
    """One dict per GPU that this process may use (CUDA_VISIBLE_DEVICES), or None without nvidia-smi."""
    for throttle in THROTTLE_FIELDS:
        fields = [*FIELDS, throttle]
        try:
            done = run(["nvidia-smi", f"--query-gpu={','.join(fields)}", "--format=csv,noheader,nounits"],
                       capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.SubprocessError):
            return None
        if done.returncode == 0:
            names = [*FIELDS, "throttle_reasons"]
            gpus = [dict(zip(names, (cell.strip() for cell in row))) for row in csv.reader(io.StringIO(done.stdout))
                    if row]
            return _visible(gpus)
    log.warning("nvidia-smi --query-gpu failed: %s", done.stderr.strip()[:200])
    return None


def _visible(gpus: list[dict]) -> list[dict]:
    """The GPUs CUDA_VISIBLE_DEVICES names (by index or UUID), all of them when it is unset."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if not visible:
        return gpus
    wanted = [item.strip() for item in visible.split(",") if item.strip()]
    return [gpu for gpu in gpus if gpu["index"] in wanted or any(gpu["uuid"].startswith(w) for w in wanted)] or gpus


def record(csv_path: str | Path, run_id: str, moment: str, device: str, timestamp: str, run=subprocess.run) -> None:
    """Add the GPU state at `moment` (start | end) of run `run_id` to the CSV's sidecar; nothing on the CPU."""
    if device != "cuda":
        return
    gpus = query(run)
    if gpus is None:
        return
    path = sidecar_path(csv_path)
    try:
        runs = json.loads(path.read_text()) if path.exists() else {}
    except (OSError, ValueError):
        log.warning("%s is not readable JSON: starting it again", path)
        runs = {}
    runs.setdefault(run_id, {})[moment] = {"timestamp": timestamp, "gpus": gpus}
    path.write_text(json.dumps(runs, indent=1) + "\n")
