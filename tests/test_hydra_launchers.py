"""Spreading a sweep with Hydra's submitit launcher: the presets in configs/hydra/launcher/,
each job's own CSV, the merged CSV, and resuming a job that was killed.

The presets are checked by composition (no cluster here). The end-to-end test runs a real
`python -m bench -m ... hydra/launcher=cpu_local`: submitit's local executor, two jobs as
subprocesses on the CPU (Triton under its interpreter), eager only, about 10 s a run.
"""

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from dropbench.bench import schema

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
SUBMITIT_LOCAL = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher"
SUBMITIT_SLURM = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"


def launcher(*overrides: str):
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides), return_hydra_config=True).hydra.launcher


def test_gpus_local_extends_submitit_local():
    cfg = launcher("hydra/launcher=gpus_local")
    assert cfg._target_ == SUBMITIT_LOCAL, "the preset should build on the plugin's submitit_local"
    assert (cfg.gpus_per_node, cfg.tasks_per_node, cfg.timeout_min) == (1, 1, 480)
    assert OmegaConf.to_container(cfg)["submitit_folder"] == "${hydra.sweep.dir}/.submitit/%j", \
        "the plugin's own fields should stay"


def test_slurm_preset_fields_are_overridable():
    cfg = launcher("hydra/launcher=slurm")
    assert cfg._target_ == SUBMITIT_SLURM
    assert (cfg.gpus_per_task, cfg.tasks_per_node, cfg.array_parallelism) == (1, 1, 8)
    cfg = launcher("hydra/launcher=slurm", "hydra.launcher.partition=gpu", "hydra.launcher.timeout_min=60",
                   "hydra.launcher.array_parallelism=2", "hydra.launcher.constraint=h100")
    assert (cfg.partition, cfg.timeout_min, cfg.array_parallelism, cfg.constraint) == ("gpu", 60, 2, "h100")


def test_cpu_local_asks_for_no_gpu():
    cfg = launcher("hydra/launcher=cpu_local")
    assert cfg._target_ == SUBMITIT_LOCAL and cfg.gpus_per_node == 0


def test_multirun_jobs_are_named_by_their_overrides_and_merged():
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        hydra_cfg = compose(config_name="config", return_hydra_config=True).hydra
    assert OmegaConf.to_container(hydra_cfg.sweep)["subdir"] == "${hydra.job.override_dirname}", \
        "job folders must not depend on job numbers, or a re-run would not find its CSV"
    assert hydra_cfg.callbacks.merge._target_ == "dropbench.bench.merge.MergeCallback"


# -- a real multirun with the submitit local launcher --------------------------------------


def read(path) -> list[dict]:
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def key(row) -> tuple:
    return tuple(row[column] for column in schema.KEY_COLUMNS)


def multirun(sweep: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO / ".pkgroot") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("TRITON_INTERPRET", None)  # the app turns it on in each job: the CPU was asked for
    return subprocess.run(
        [sys.executable, "-m", "dropbench.bench", "-m", "+preset=smoke", "device=cpu", "backend=eager", "op.names=dropout",
         "dtype=fp32,fp16", "hydra/launcher=cpu_local", f"hydra.sweep.dir={sweep}"],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=180,
    )


@pytest.mark.skipif(sys.platform == "win32", reason="submitit's local executor needs POSIX signals")
def test_submitit_local_multirun_writes_job_csvs_merges_and_resumes(tmp_path):
    sweep = tmp_path / "multirun"
    done = multirun(sweep, tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    jobs = {dtype: sweep / f"+preset=smoke,backend=eager,device=cpu,dtype={dtype},op.names=dropout" for dtype in
            ("fp32", "fp16")}
    csvs = {dtype: read(folder / "results.csv") for dtype, folder in jobs.items()}
    for dtype, rows in csvs.items():
        assert rows and {row["dtype"] for row in rows} == {dtype}, f"job {dtype} should hold its own rows only"
        assert all(row["status"] == "ok" for row in rows), [row["error"] for row in rows if row["error"]]
    merged = read(sweep / "merged.csv")
    assert list(merged[0]) == schema.COLUMNS
    assert sorted(map(key, merged)) == sorted(map(key, csvs["fp32"] + csvs["fp16"])), \
        "the merged CSV should be the union of the jobs' CSVs"
    assert "merge: 2 of 2 jobs complete" in done.stderr + done.stdout

    # Kill the fp16 job mid-sweep after the fact: its last rows gone, a partial line, no status.
    killed = jobs["fp16"] / "results.csv"
    lines = killed.read_text().splitlines(keepends=True)
    killed.write_text("".join(lines[:3]) + lines[3][:20])
    (jobs["fp16"] / "job_status.txt").unlink()
    fp32_before = (jobs["fp32"] / "results.csv").read_text()

    again = multirun(sweep, tmp_path)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert (jobs["fp32"] / "results.csv").read_text() == fp32_before, "a complete job must measure nothing new"
    resumed = read(killed)
    assert sorted(map(key, resumed)) == sorted(map(key, csvs["fp16"])), "the killed job should be completed"
    assert len(set(map(key, resumed))) == len(resumed), "resuming must not duplicate a row"
    assert [row["run_id"] for row in resumed[:2]] == [row["run_id"] for row in csvs["fp16"][:2]], \
        "rows measured before the kill should be kept, not re-measured"
    merged = read(sweep / "merged.csv")
    assert len(merged) == len(set(map(key, merged))) == len(csvs["fp32"]) + len(csvs["fp16"])
