"""Memory of one measurement: bytes saved for backward, and peak memory over a training step."""

from typing import Callable

import torch


def saved_bytes(forward: Callable[[], torch.Tensor]) -> int:
    """Bytes autograd saves for backward during `forward`, exactly, each storage counted once.

    saved_tensors_hooks sees every tensor packed for backward (by eager ops, custom
    autograd Functions and compiled graphs alike); views of one storage count once,
    at the largest of them.
    """
    per_storage = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = (tensor.device, tensor.untyped_storage().data_ptr())
        size = tensor.numel() * tensor.element_size()
        per_storage[storage] = max(per_storage.get(storage, 0), size)
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        output = forward()
    del output
    return sum(per_storage.values())


def peak_bytes(step: Callable[[], object], device: str) -> int | None:
    """Peak memory allocated during `step` above what was allocated before it (CUDA only, else None)."""
    if device != "cuda":
        return None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    step()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - before
