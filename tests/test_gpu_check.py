""".ci/gpu-check, the GPU check before a kernel change lands: its refusals are one line and exit 2.
Its steps need a GPU, so only the refusals, and the quoting its sweeps rely on, are tested here."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

SCRIPT = Path(__file__).resolve().parents[1] / ".ci" / "gpu-check"


def gpu_check(*args):
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("args, words", [
    (["--steps", "tests,bench"], "--steps: 'bench' is not a step; allowed: tests, ci, ab"),
    (["--steps", "ab"], "--steps ab needs --base DIR|REF"),
    (["--base"], "--base needs a directory or a git ref"),
    (["--fast"], "unknown argument '--fast'"),
    (["--steps", ","], "--steps: no step given"),
    (["--base", "."], "--base '.' is this checkout"),
    (["--out", "/tmp/a$b"], "cannot be passed to Hydra"),
    (["--out", 'out"1'], "cannot be passed to Hydra"),
    (["--out", "a\\b"], "cannot be passed to Hydra"),
])
def test_bad_arguments_get_one_line_and_exit_2(args, words):
    done = gpu_check(*args)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and words in done.stderr, done.stderr


def test_a_path_through_a_link_is_checked_as_the_sweeps_get_it(tmp_path):
    """The sweeps get --out as typed (made absolute, links kept), so a link's name is checked too."""
    (tmp_path / "clean").mkdir()
    (tmp_path / "a$b").symlink_to(tmp_path / "clean")
    done = gpu_check("--out", str(tmp_path / "a$b" / "out"))
    assert done.returncode == 2 and "cannot be passed to Hydra" in done.stderr, done.stderr


def test_a_quoted_path_reaches_the_sweep_unchanged(tmp_path):
    """gpu-check passes its paths to Hydra as "PATH": characters of Hydra's grammar come through as typed."""
    path = str(tmp_path / "a b, (c) [d] 'e'=~f" / "ci-new.csv")
    done = subprocess.run([sys.executable, "-m", "dropbench.bench.sweep", f'results.path="{path}"', "--cfg", "job"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert OmegaConf.create(done.stdout).results.path == path, done.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without a GPU")
def test_without_a_gpu_it_refuses_and_names_the_cpu_tests(tmp_path):
    done = gpu_check("--out", str(tmp_path))
    assert done.returncode == 2
    assert "no CUDA device" in done.stderr and ".ci/run" in done.stderr
