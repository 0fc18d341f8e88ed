"""The install: one namespace, dropbench, and no generic top-level module (kernels, bench, ...)."""

import os
import subprocess
import sys

GENERIC = ["kernels", "bench", "baselines", "plots", "configs"]


def test_only_the_dropbench_namespace_is_installed(tmp_path):
    # Run from an empty folder: the repository root on sys.path would make its folders importable.
    code = (
        "import importlib.util, dropbench.kernels, dropbench.bench.sweep, dropbench.plots, dropbench.baselines;"
        f"print([name for name in {GENERIC!r} if importlib.util.find_spec(name) is not None])"
    )
    # PYTHONPATH passes through: where dropbench is put on the path rather than pip-installed (the GPU
    # machine), it is that path's namespace that is checked, and a repository root on it still fails.
    env = {"PATH": "", "TRITON_INTERPRET": "1"}
    if "PYTHONPATH" in os.environ:
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                            env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", f"generic top-level modules importable: {result.stdout}"
