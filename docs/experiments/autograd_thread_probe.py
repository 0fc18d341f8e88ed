"""Where does the host time of fwd+bwd through our autograd.Function go on CUDA? (issue 6 probe)

The autograd engine runs a CUDA backward on its own device thread; a Python backward there
needs the GIL. This times, per call: the forward, the hand-off from torch.autograd.grad to
the backward's first line, the backward's body, and the hand-back to the caller.
Usage: python docs/experiments/autograd_thread_probe.py
"""
import statistics
import time

import torch

import kernels
from kernels import seeded

CALLS = 1000


class Ident(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad.clone()


def instrument(function_class):
    marks = {}
    original = function_class.backward

    def backward(ctx, *grads):
        marks["enter"] = time.perf_counter()
        result = original(ctx, *grads)
        marks["exit"] = time.perf_counter()
        return result

    function_class.backward = staticmethod(backward)
    return marks


def probe(name, forward, marks, x, grad):
    parts = {"forward": [], "hand-off": [], "backward body": [], "hand-back": [], "total": []}
    for i in range(CALLS + 50):
        t0 = time.perf_counter()
        y = forward()
        t1 = time.perf_counter()
        torch.autograd.grad(y, x, grad)
        t2 = time.perf_counter()
        if i >= 50:
            parts["forward"].append(t1 - t0)
            parts["hand-off"].append(marks["enter"] - t1)
            parts["backward body"].append(marks["exit"] - marks["enter"])
            parts["hand-back"].append(t2 - marks["exit"])
            parts["total"].append(t2 - t0)
    torch.cuda.synchronize()
    cells = "  ".join(f"{key} {statistics.median(values) * 1e6:6.1f} (mean {statistics.mean(values) * 1e6:6.1f})"
                      for key, values in parts.items())
    print(f"{name:10s} us median: {cells}")


def main():
    x = torch.randn(1, 49152, device="cuda", dtype=torch.float16, requires_grad=True)
    grad = torch.randn_like(x)
    probe("Ident", lambda: Ident.apply(x), instrument(Ident), x, grad)
    probe("seeded", lambda: kernels.seeded_dropout(x, 0.5, 1), instrument(seeded.SeededDropoutFunction), x, grad)


if __name__ == "__main__":
    main()
