"""One GPU per job when all the jobs of a multirun start at once on one machine.

submitit's local executor (hydra/launcher=gpus_local) starts every job of a sweep together
and gives each the same CUDA_VISIBLE_DEVICES, so on its own it cannot deal jobs out to a
machine's GPUs. With `device.gpus=[0,1,...]`, each job first claims a free GPU of that list
through an exclusive lock file in the sweep folder, waits while every one is taken, and then
sees only its own GPU. The locks are the kernel's (flock): a job that ends, however it ends
(finished, OOM, killed), frees its GPU at once. At most len(device.gpus) jobs run at a time.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)

LOCK_FOLDER = ".gpu-locks"


def check_gpus(gpus) -> list[int]:
    """device.gpus as a list of distinct GPU indices, or a ValueError naming the setting."""
    try:
        indices = [int(gpu) for gpu in gpus]
    except (TypeError, ValueError):
        raise ValueError(f"device.gpus must be a list of GPU indices such as [0,1], got {gpus!r}") from None
    if not indices or any(index < 0 for index in indices) or len(set(indices)) != len(indices):
        raise ValueError(f"device.gpus must be distinct GPU indices >= 0, such as [0,1], got {list(gpus)}")
    return indices


@contextmanager
def claim_gpu(gpus: list[int], lock_dir: Path, poll_s: float = 1.0, timeout_s: float | None = None):
    """Hold one free GPU of `gpus` (its index is yielded) with CUDA_VISIBLE_DEVICES set to it.

    Set before torch initialises CUDA (which reads CUDA_VISIBLE_DEVICES once), so call this
    before anything touches the GPU. Raises TimeoutError after timeout_s of waiting.
    """
    lock_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    waiting_said = False
    while True:
        for gpu in gpus:
            handle = open(lock_dir / f"gpu-{gpu}.lock", "w")  # noqa: SIM115 (held while the job runs)
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            waited = time.monotonic() - started
            log.info("claimed GPU %d of %s%s", gpu, gpus, f" after waiting {waited:.0f} s" if waiting_said else "")
            previous = os.environ.get("CUDA_VISIBLE_DEVICES")
            os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)
            try:
                yield gpu
            finally:
                if previous is None:
                    os.environ.pop("CUDA_VISIBLE_DEVICES", None)
                else:
                    os.environ["CUDA_VISIBLE_DEVICES"] = previous
                fcntl.flock(handle, fcntl.LOCK_UN)
                handle.close()
                log.info("released GPU %d", gpu)
            return
        if timeout_s is not None and time.monotonic() - started > timeout_s:
            raise TimeoutError(f"no GPU of {gpus} came free within {timeout_s} s (locks in {lock_dir})")
        if not waiting_said:
            log.info("every GPU of %s is taken by another job of this sweep: waiting for one", gpus)
            waiting_said = True
        time.sleep(poll_s)
