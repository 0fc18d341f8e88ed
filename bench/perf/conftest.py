"""The perf suite times GPU work only: without a CUDA device every test skips, saying why.

CPU times under the Triton interpreter would say nothing about the kernels, so they
are never reported here (the CPU smoke sweep labels its times timer=cpu instead).
"""

import pytest
import torch

NO_GPU = "no CUDA device: the perf suite times GPU kernels only and never reports CPU times"


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    for item in items:
        item.add_marker(pytest.mark.skip(reason=NO_GPU))
