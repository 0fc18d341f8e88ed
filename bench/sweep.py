"""`dropbench-sweep` (also `python -m bench`): the Hydra app that runs the benchmark sweep.

It settles the device first (device=auto: the GPU when torch sees one), because
on the CPU Triton must run under its interpreter and triton reads TRITON_INTERPRET
when it is imported: so bench.runner, which imports the kernels, is imported only
after that. With no GPU and no preset, the smoke sweep runs on the CPU behind a
loud banner instead of timing the interpreter as if it were a GPU. With device.gpus set,
each job first claims one of those GPUs (bench.gpu_slots), also before torch starts CUDA.
Exit status: 0, or 1 when any implementation was found incorrect.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from dropbench.bench import gpu_slots

log = logging.getLogger(__name__)

DEVICES = ("auto", "cuda", "cpu")
NO_GPU_BANNER = """
==============================================================================
 NO GPU FOUND: torch.cuda.is_available() is False.
 Running the SMOKE sweep (+preset=smoke) on the CPU instead: Triton kernels run
 under the Triton interpreter (TRITON_INTERPRET=1), tiny shapes, and every row
 is labelled device=cpu, timer=cpu. These times say nothing about GPU speed;
 they show that the whole pipeline works. Run on a CUDA machine for the sweep.
==============================================================================
"""

_outcome = {"incorrect": False}


def use_triton_interpreter() -> None:
    """Turn the Triton interpreter on, which only works before triton is imported."""
    if os.environ.get("TRITON_INTERPRET") == "1":
        return
    if "triton" in sys.modules:
        raise RuntimeError("the CPU sweep needs the Triton interpreter, but triton was imported before it "
                           "could be turned on; run with TRITON_INTERPRET=1")
    os.environ["TRITON_INTERPRET"] = "1"


def resolve_device(cfg: DictConfig, has_cuda: bool, preset_chosen: bool) -> tuple[str, bool]:
    """(device to run on, whether to fall back to the smoke preset) for cfg.device.name."""
    name = str(cfg.device.name)
    if name not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {name!r}")
    if name == "cuda" and not has_cuda:
        raise RuntimeError("device=cuda, but torch sees no CUDA device (torch.cuda.is_available() is False)")
    if name == "cpu" or (name == "auto" and not has_cuda):
        return "cpu", name == "auto" and not preset_chosen
    return "cuda", False


@hydra.main(version_base="1.3", config_path="../configs", config_name="config")
def app(cfg: DictConfig) -> None:
    hydra_cfg = HydraConfig.get()
    gpus = cfg.device.get("gpus")
    if not gpus:
        _run(cfg, hydra_cfg)
        return
    # Before torch touches CUDA: this job then sees only the GPU it claimed (bench.gpu_slots).
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    lock_dir = Path(hydra_cfg.sweep.dir if multirun else hydra_cfg.runtime.output_dir) / gpu_slots.LOCK_FOLDER
    with gpu_slots.claim_gpu(gpu_slots.check_gpus(gpus), lock_dir):
        _run(cfg, hydra_cfg)


def _run(cfg: DictConfig, hydra_cfg) -> None:
    import torch

    preset_chosen = hydra_cfg.runtime.choices.get("preset") is not None
    device, fallback = resolve_device(cfg, torch.cuda.is_available(), preset_chosen)
    if fallback:
        print(NO_GPU_BANNER, file=sys.stderr, flush=True)
        log.warning("no GPU found: running the smoke sweep on the CPU under the Triton interpreter (timer=cpu)")
        cfg = hydra.compose(config_name="config", overrides=[*hydra_cfg.overrides.task, "+preset=smoke"])
    if device == "cpu":
        use_triton_interpreter()
    if hydra_cfg.mode == RunMode.MULTIRUN and not cfg.results.get("path"):
        # One CSV per job, in the job's own folder: config.yaml names that folder after the job's
        # overrides (dtype=fp16,op=dropout), so re-running the same -m into the same
        # hydra.sweep.dir resumes each job's own file; bench.merge joins them at the end.
        cfg.results.path = str(Path(hydra_cfg.runtime.output_dir) / "results.csv")
    # What actually runs (after any fallback), beside Hydra's own .hydra/config.yaml.
    effective = OmegaConf.create(OmegaConf.to_container(cfg))
    effective.device.resolved = device
    OmegaConf.save(effective, Path(hydra_cfg.runtime.output_dir) / "effective_config.yaml")
    log.info("device: %s", device)

    from dropbench.bench import runner  # imports triton: only now that TRITON_INTERPRET is settled

    result = runner.run(cfg, device)
    _outcome["incorrect"] |= result.incorrect


def main() -> None:
    """Console entry point: run the app, exit 1 when an implementation was found incorrect."""
    app()
    sys.exit(1 if _outcome["incorrect"] else 0)


if __name__ == "__main__":
    main()
