"""Calling a kernel's launcher: straight from Python in eager mode, as a custom op under torch.compile.

A torch.library custom op is what lets torch.compile trace a model through our kernels
without a graph break, but its dispatcher costs ~50 us of Python per call, far more than
a small dropout takes on the GPU. Eager calls skip it; only tracing goes through the op.
"""

import torch


def launch(custom_op, launcher, *args):
    """custom_op(*args) while torch.compile traces, launcher(*args) otherwise (same result)."""
    if torch.compiler.is_compiling():
        return custom_op(*args)
    return launcher(*args)
