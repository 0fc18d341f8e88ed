"""`dropbench-sweep` (also `python -m dropbench.bench`): the Hydra app that runs the benchmark sweep.

Before Hydra composes the config, main() settles what device=auto means: with no GPU and
no preset it adds +preset=smoke, so the config Hydra shows (--cfg job), records
(.hydra/config.yaml) and runs is the smoke sweep on the CPU, said loudly, never the GPU
sweep timed under the Triton interpreter. The GPU probe runs in a child process, so this
process initialises CUDA only after a job has claimed its GPU (bench.gpu_slots, device.gpus).

The config is then checked before anything slow starts (bench.plan, no torch): a mistake
is one line naming the key and the values it allows, and exit status 2. On the CPU
Triton must run under its interpreter, which triton reads when it is imported, so
bench.runner, which imports the kernels, is imported only after the device is settled.
Exit status: 0; 1 when any implementation was found incorrect; 2 for a config that cannot run.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import NoReturn

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from dropbench.bench import gpu_slots, plan
from dropbench.bench.results import ResultsError

log = logging.getLogger(__name__)

DEVICES = ("auto", "cuda", "cpu")
#: Set by main() when it chose the smoke sweep for device=auto on a machine without a GPU.
SMOKE_FALLBACK_ENV = "DROPBENCH_SMOKE_FALLBACK"
CONFIG_ERROR_EXIT = 2
#: The one preset made for the CPU (the Triton interpreter): what main() adds with no GPU.
SMOKE_PRESET = "smoke"
NO_GPU_BANNER = """
==============================================================================
 NO GPU FOUND: no CUDA device is visible.
 Running the SMOKE sweep (+preset=smoke) on the CPU instead: Triton kernels run
 under the Triton interpreter (TRITON_INTERPRET=1), tiny shapes, and every row
 is labelled device=cpu, timer=cpu. These times say nothing about GPU speed;
 they show that the whole pipeline works. Run on a CUDA machine for the sweep.
==============================================================================
"""
#: Asks the CUDA driver for a device in a child process: no CUDA context in this one, and
#: CUDA_VISIBLE_DEVICES applies as it will for torch. Prints 1 or 0.
_GPU_PROBE = """
import ctypes
try:
    cuda = ctypes.CDLL("libcuda.so.1")
    count = ctypes.c_int(0)
    found = cuda.cuInit(0) == 0 and cuda.cuDeviceGetCount(ctypes.byref(count)) == 0 and count.value > 0
except OSError:
    found = False
print(int(found))
"""

#: incorrect: an implementation failed its check.
_outcome = {"incorrect": False}


def gpu_visible() -> bool:
    """Whether the CUDA driver shows this process a GPU (asked in a child process, ~0.1 s)."""
    try:
        done = subprocess.run([sys.executable, "-c", _GPU_PROBE], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.stdout.strip() == "1"


def with_smoke_fallback(argv: list[str], has_gpu=gpu_visible) -> list[str]:
    """argv plus +preset=smoke when it leaves device at auto, chooses no preset, and no GPU is visible."""
    from hydra._internal.utils import get_args_parser
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        args = get_args_parser().parse_args(argv)
        overrides = OverridesParser.create().parse_overrides(args.overrides)
    except (SystemExit, Exception):  # let Hydra report a malformed command line its own way
        return argv
    if args.help or args.hydra_help or args.shell_completion or args.info:
        return argv
    keys = {override.key_or_group: override for override in overrides}
    if "preset" in keys:
        return argv
    device = keys.get("device") or keys.get("device.name")
    if device is not None and (device.is_sweep_override() or device.value() != "auto"):
        return argv
    if has_gpu():
        return argv
    os.environ[SMOKE_FALLBACK_ENV] = "1"
    return with_override(argv, args, f"+preset={SMOKE_PRESET}")


def with_override(argv: list[str], args, override: str) -> list[str]:
    """argv with one more override where Hydra's parser takes it as one (argparse reads the overrides as
    one run of words, so appending fails after `dtype=fp16 --cfg job`): the first place that parses to
    args' options and overrides plus this one."""
    from hydra._internal.utils import get_args_parser

    options = {key: value for key, value in vars(args).items() if key != "overrides"}
    for at in range(len(argv) + 1):
        candidate = [*argv[:at], override, *argv[at:]]
        try:
            with contextlib.redirect_stderr(io.StringIO()):  # argparse prints its usage on a failed try
                parsed = get_args_parser().parse_args(candidate)
        except SystemExit:
            continue
        rest = {key: value for key, value in vars(parsed).items() if key != "overrides"}
        if rest == options and sorted(parsed.overrides) == sorted([*args.overrides, override]):
            return candidate
    return [*argv, override]  # not reached for a command line the parser took; Hydra then reports it


def use_triton_interpreter() -> None:
    """Turn the Triton interpreter on, which only works before triton is imported."""
    if os.environ.get("TRITON_INTERPRET") == "1":
        return
    if "triton" in sys.modules:
        raise RuntimeError("the CPU sweep needs the Triton interpreter, but triton was imported before it "
                           "could be turned on; run with TRITON_INTERPRET=1")
    os.environ["TRITON_INTERPRET"] = "1"


def resolve_device(name: str, has_cuda: bool, preset: str | None) -> str:
    """The device to run on (cuda | cpu) for device.name and the chosen preset; a ConfigError where it cannot run."""
    if name not in DEVICES:
        raise plan.ConfigError(f"device={name}: allowed: {', '.join(DEVICES)}")
    if name == "cuda" and not has_cuda:
        raise plan.ConfigError("device=cuda: torch sees no CUDA device (torch.cuda.is_available() is False); "
                               "allowed here: device=cpu, or device=auto (the smoke sweep on the CPU)")
    if name == "auto" and not has_cuda and preset is None:
        # main() saw a GPU, torch does not: a CPU build of torch on a GPU machine.
        raise plan.ConfigError("device=auto: the CUDA driver shows a GPU but torch sees none (a CPU build of "
                               "torch?); allowed here: device=cpu with +preset=smoke, or a CUDA build of torch")
    if name == "auto" and not has_cuda and preset != SMOKE_PRESET:
        # A GPU preset under the interpreter takes tens of minutes and times nothing of a GPU: asked, not assumed.
        raise plan.ConfigError(f"+preset={preset}: times GPU kernels, and torch sees no CUDA device; allowed here: "
                               f"+preset={SMOKE_PRESET}, or device=cpu to run it under Triton's interpreter anyway "
                               "(slow, and its times say nothing about a GPU)")
    return "cuda" if has_cuda and name != "cpu" else "cpu"


def check_results_path(cfg: DictConfig) -> None:
    """results.path must name a file, not a directory (checked again by the runner)."""
    path = cfg.results.get("path")
    if path and Path(str(path)).is_dir():
        raise plan.ConfigError(f"results.path={path}: is a directory; allowed: the path of a CSV file "
                               "(new, or one this device wrote)")


class HeldStderr(io.StringIO):
    """stderr until Hydra has composed the config: its refusal of a command line (several lines) is kept
    here so that main() can say it in one. Released, it writes what it held to the real stderr and
    passes every later write on (log handlers made meanwhile keep a reference to it)."""

    def __init__(self, real):
        super().__init__()
        self.real, self.released = real, False

    def write(self, text: str) -> int:
        return self.real.write(text) if self.released else super().write(text)

    def flush(self) -> None:
        (self.real if self.released else super()).flush()

    def release(self, keep: bool = True) -> None:
        """Give stderr back, writing what was held unless keep=False (it was a refusal, said in one line)."""
        if not self.released:
            self.released = True
            if keep:
                self.real.write(self.getvalue())
                self.real.flush()
        if sys.stderr is self:
            sys.stderr = self.real


def composed() -> None:
    """Hydra composed the config and runs it (the app, or a multirun's launcher): from here on a failure
    is the run's, not the command line's, and stderr is the run's own."""
    release = getattr(sys.stderr, "release", None)  # by name: `python -m dropbench.bench.sweep` has two copies
    if release is not None:
        release()


class ComposedCallback(Callback):
    """Hydra callback (configs/hydra/callbacks/merge.yaml): calls composed() as a run or multirun starts, so a
    multirun's launcher process (which never runs the app itself, e.g. submitit's) has its stderr back."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        composed()

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        composed()


def one_line_refusal(hydra_text: str) -> str:
    """Hydra's refusal of a command line, as one line naming the argument and what it allows."""
    lines = [line.strip() for line in hydra_text.splitlines()]
    if "Config search path:" in lines:
        lines = lines[: lines.index("Config search path:")]
    lines = [line for line in lines if line and not line.startswith("Set the environment variable HYDRA_FULL_ERROR")]
    text = "\n".join(lines)
    missing = re.search(r"Could not find '(.+)/([^'/]+)'", text)
    options = re.search(r"Available options in '[^']+':\n(.*)", text, re.S)
    if missing and options:
        return f"{missing[1]}={missing[2]}: no such option; allowed: {', '.join(options[1].split())}"
    key = re.search(r"Could not override '([^']+)'", text)
    if key and "No match in the defaults list" in text:
        advice = re.search(r"To append to your default list use (\S+)", text)
        return (f"{key[1]}: a config group that is not in the defaults list; allowed: "
                f"{advice[1] if advice else '+' + key[1] + '=OPTION'} adds it (--help lists the groups and options)")
    if key:
        return (f"{key[1]}: not a key of the config; allowed: the keys that --cfg job lists "
                f"(+{key[1]}=VALUE adds a new one)")
    if lines:
        return f"Hydra refuses the command line: {'; '.join(lines)}"
    return "Hydra refuses the command line; allowed: the groups, options and keys that --help lists"


@hydra.main(version_base="1.3", config_path="../configs", config_name="config")
def app(cfg: DictConfig) -> None:
    composed()  # also without the callback (~hydra/callbacks)
    try:
        _claim_and_run(cfg)
    except (plan.ConfigError, ResultsError) as exc:
        print(f"dropbench-sweep: error: {exc}", file=sys.stderr, flush=True)
        sys.exit(CONFIG_ERROR_EXIT)
    except OmegaConfBaseException as exc:  # an interpolation or key the command line broke: seed=${oops}
        print(f"dropbench-sweep: error: {one_line(exc)}; allowed: the keys and values that --cfg job lists",
              file=sys.stderr, flush=True)
        sys.exit(CONFIG_ERROR_EXIT)


def _claim_and_run(cfg: DictConfig) -> None:
    hydra_cfg = HydraConfig.get()
    # The cheap checks first: names, p, variational_dim, shapes, timing keys, results.path (no torch yet).
    plan.expand(cfg, "cpu")
    check_results_path(cfg)
    gpus = cfg.device.get("gpus")
    if not gpus:
        _run(cfg, hydra_cfg)
        return
    try:
        gpus = gpu_slots.check_gpus(gpus)
    except ValueError as exc:
        raise plan.ConfigError(str(exc)) from None
    # Before torch touches CUDA: this job then sees only the GPU it claimed (bench.gpu_slots).
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    lock_dir = Path(hydra_cfg.sweep.dir if multirun else hydra_cfg.runtime.output_dir) / gpu_slots.LOCK_FOLDER
    with gpu_slots.claim_gpu(gpus, lock_dir):
        _run(cfg, hydra_cfg)


def _run(cfg: DictConfig, hydra_cfg) -> None:
    import torch

    preset = hydra_cfg.runtime.choices.get("preset")
    device = resolve_device(str(cfg.device.name), torch.cuda.is_available(), preset)
    if os.environ.get(SMOKE_FALLBACK_ENV) == "1" and device == "cpu":
        print(NO_GPU_BANNER, file=sys.stderr, flush=True)
        log.warning("no GPU found: running the smoke sweep on the CPU under the Triton interpreter (timer=cpu)")
    if device == "cpu":
        use_triton_interpreter()
    if hydra_cfg.mode == RunMode.MULTIRUN and not cfg.results.get("path"):
        # One CSV per job, in the job's own folder: config.yaml names that folder after the job's
        # overrides (dtype=fp16,op.names=dropout), so re-running the same -m into the same
        # hydra.sweep.dir resumes each job's own file; bench.merge joins them at the end.
        cfg.results.path = str(Path(hydra_cfg.runtime.output_dir) / "results.csv")
    # What actually runs, beside Hydra's own .hydra/config.yaml: with the device it resolved to.
    effective = OmegaConf.create(OmegaConf.to_container(cfg))
    effective.device.resolved = device
    OmegaConf.save(effective, Path(hydra_cfg.runtime.output_dir) / "effective_config.yaml")
    log.info("device: %s", device)

    from dropbench.bench import runner  # imports triton: only now that TRITON_INTERPRET is settled

    result = runner.run(cfg, device)
    _outcome["incorrect"] |= result.incorrect
    print(f"dropbench-sweep: {result.written} new rows; results in {result.path}", flush=True)


def one_line(exc: BaseException) -> str:
    """An exception as one line: its type and the lines of its message joined."""
    return f"{type(exc).__name__}: {'; '.join(line.strip() for line in str(exc).splitlines() if line.strip())}"


def refuse(held: HeldStderr, message: str) -> NoReturn:
    """Bad input before the run started: the one line instead of what was held, and exit 2."""
    held.release(keep=False)
    print(f"dropbench-sweep: error: {message}", file=sys.stderr, flush=True)
    sys.exit(CONFIG_ERROR_EXIT)


def main() -> None:
    """Console entry point: run the app, exit 1 when an implementation was found incorrect, 2 on bad input.

    Hydra refuses a command line that names an unknown option or key (dtype=fp8) with its own
    message of several lines and exit 1, before the app runs; that is bad input, so it becomes one
    line (one_line_refusal) and exit 2, not the exit that means an incorrect kernel. stderr is
    held until Hydra has composed the config (composed()), so that its refusal can be replaced.
    """
    sys.argv[1:] = with_smoke_fallback(sys.argv[1:])
    held = sys.stderr = HeldStderr(sys.stderr)
    try:
        app()
    except SystemExit as exc:
        if exc.code == 1 and not held.released:
            refuse(held, one_line_refusal(held.getvalue()))
        raise
    except Exception as exc:  # Hydra failing on what it was given (hydra.run.dir=${oops})
        config_error = isinstance(exc, OmegaConfBaseException) or not held.released
        if not config_error or os.environ.get("HYDRA_FULL_ERROR") == "1":  # HYDRA_FULL_ERROR asks for the traceback
            raise
        refuse(held, f"Hydra refuses the command line: {one_line(exc)}")
    finally:
        held.release()
    sys.exit(1 if _outcome["incorrect"] else 0)


if __name__ == "__main__":
    main()
