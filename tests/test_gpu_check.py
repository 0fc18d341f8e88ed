""".ci/gpu-check, the GPU check before a kernel change lands: its refusals are one line and exit 2.
Its steps need a GPU, so only the refusals are tested here."""

import subprocess
from pathlib import Path

import pytest
import torch

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
])
def test_bad_arguments_get_one_line_and_exit_2(args, words):
    done = gpu_check(*args)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and words in done.stderr, done.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without a GPU")
def test_without_a_gpu_it_refuses_and_names_the_cpu_tests(tmp_path):
    done = gpu_check("--out", str(tmp_path))
    assert done.returncode == 2
    assert "no CUDA device" in done.stderr and ".ci/run" in done.stderr
