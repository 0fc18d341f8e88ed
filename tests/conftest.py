"""Test set-up: Triton runs under its CPU interpreter wherever there is no GPU.

TRITON_INTERPRET must be set before kernels/ is imported (triton.jit reads it at
decoration time). On a CUDA machine the same tests run on the GPU, compiled.
"""

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture
def device() -> str:
    """Where the kernels run: the GPU when there is one, else the CPU interpreter."""
    return "cuda" if torch.cuda.is_available() else "cpu"


@pytest.fixture
def generator() -> torch.Generator:
    """A freshly seeded CPU generator: new random data every run.

    The seed is printed, so pytest shows it with a failing test's captured output.
    """
    gen = torch.Generator()
    gen.seed()
    print(f"random data seed: {gen.initial_seed()}")
    return gen


def pytest_collection_modifyitems(config, items):
    """Skip tests marked gpu, saying why, where torch sees no CUDA device."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device; torch.cuda.is_available() is False")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
