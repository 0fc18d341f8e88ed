"""bench.gpu_slots: a multirun's jobs on one machine claim one GPU each, and wait when all are taken."""

import os
import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from dropbench.bench.gpu_slots import check_gpus, claim_gpu

REPO = Path(__file__).resolve().parents[1]


def test_claims_take_different_gpus_and_set_cuda_visible_devices(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    with claim_gpu([2, 3], tmp_path) as first:
        assert first == 2 and os.environ["CUDA_VISIBLE_DEVICES"] == "2"
        with claim_gpu([2, 3], tmp_path) as second:
            assert second == 3 and os.environ["CUDA_VISIBLE_DEVICES"] == "3"
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "0", "the variable should be restored after the job"


def test_a_job_waits_while_every_gpu_is_taken_and_gets_one_when_freed(tmp_path):
    with claim_gpu([0], tmp_path):
        with pytest.raises(TimeoutError, match=r"no GPU of \[0\]"):
            with claim_gpu([0], tmp_path, poll_s=0.05, timeout_s=0.3):
                pass
    with claim_gpu([0], tmp_path, poll_s=0.05, timeout_s=0.3) as gpu:
        assert gpu == 0, "a released GPU should be claimable again"


@pytest.mark.parametrize("gpus", [[], [-1], [0, 0], "zero", [None]])
def test_bad_gpu_lists_are_named(gpus):
    with pytest.raises(ValueError, match="device.gpus"):
        check_gpus(gpus)


def _claims(log_text: str) -> tuple[datetime, datetime]:
    """(claimed, released) times from one job's log."""
    stamps = {}
    for line in log_text.splitlines():
        found = re.match(r"\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\].*(claimed|released) GPU 7", line)
        if found:
            stamps[found.group(2)] = datetime.strptime(found.group(1), "%Y-%m-%d %H:%M:%S,%f")
    assert set(stamps) == {"claimed", "released"}, f"the job log should say when it claimed and released GPU 7:\n{log_text}"
    return stamps["claimed"], stamps["released"]


@pytest.mark.skipif(sys.platform == "win32", reason="submitit's local executor needs POSIX signals")
def test_submitit_local_jobs_with_one_gpu_run_one_after_the_other(tmp_path):
    """Two jobs started at once by submitit's local executor, one GPU in device.gpus: never both at once."""
    sweep = tmp_path / "multirun"
    env = dict(os.environ, PYTHONPATH=str(REPO / ".pkgroot") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("TRITON_INTERPRET", None)
    done = subprocess.run(
        [sys.executable, "-m", "dropbench.bench", "-m", "+preset=smoke", "device=cpu", "device.gpus=[7]", "backend=eager",
         "op.names=dropout", "dtype=fp32,fp16", "hydra/launcher=cpu_local", f"hydra.sweep.dir={sweep}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    logs = sorted(sweep.glob("*/dropbench-sweep.log"))
    assert len(logs) == 2, f"expected one log per job, found {logs}"
    (first_in, first_out), (second_in, second_out) = sorted(_claims(log.read_text()) for log in logs)
    assert first_out <= second_in, "the second job should claim GPU 7 only after the first released it"
