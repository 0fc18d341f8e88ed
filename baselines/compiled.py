"""torch.compile of the eager baselines, set up so a benchmark never times eager by mistake.

Dynamo silently falls back to eager after `recompile_limit` variants of one function
(shapes, dtypes, requires_grad). A sweep makes many variants, so the limit is raised,
fullgraph=True turns graph breaks into errors, and `fail_on_recompile_limit_hit`
(where this torch has it) turns the fallback into an error too. `compile_stats()`
reports dynamo's counters so callers can check that a call really compiled.
"""

import functools

import torch
import torch._dynamo
import torch._functorch.config

from dropbench.baselines import eager

RECOMPILE_LIMIT = 1024


def configure_dynamo() -> None:
    """Compile what a fixed model gets (one static graph per shape), never fall back to eager.

    - Recompile limits raised, and hitting one is an error, not a silent eager run.
    - Automatic dynamic shapes off (and its on-disk profile of earlier runs): fed many
      shapes, dynamo would otherwise switch to shape-generic kernels after the second,
      despite dynamic=False, and time code no one-shape model runs.
    - Buffer donation off: inductor's backward then accepts retain_graph=True, which the
      bwd timing needs; dropout's backward cannot reuse its saved mask as output anyway.
    """
    config = torch._dynamo.config
    for name in ("recompile_limit", "cache_size_limit", "accumulated_recompile_limit", "accumulated_cache_size_limit"):
        if hasattr(config, name):
            setattr(config, name, max(getattr(config, name), RECOMPILE_LIMIT))
    if hasattr(config, "fail_on_recompile_limit_hit"):
        config.fail_on_recompile_limit_hit = True
    for name in ("automatic_dynamic_shapes", "automatic_dynamic_local_pgo"):
        if hasattr(config, name):
            setattr(config, name, False)
    if hasattr(torch._functorch.config, "donated_buffer"):
        torch._functorch.config.donated_buffer = False


@functools.cache
def compiled(fn):
    """torch.compile(fn, fullgraph=True, dynamic=False) under configure_dynamo()."""
    configure_dynamo()
    return torch.compile(fn, fullgraph=True, dynamic=False)


def dropout(x: torch.Tensor, p: float) -> torch.Tensor:
    """Compiled element dropout."""
    return compiled(eager.dropout)(x, p)


def variational_dropout(x: torch.Tensor, p: float, dim: int) -> torch.Tensor:
    """Compiled variational dropout."""
    return compiled(eager.variational_dropout)(x, p, dim)


def compile_stats() -> dict:
    """Dynamo's counters so far: graphs compiled and graph breaks."""
    counters = torch._dynamo.utils.counters
    return {
        "unique_graphs": counters["stats"]["unique_graphs"],
        "graph_breaks": sum(counters["graph_break"].values()),
    }


@functools.cache
def compiled_fallback_random(fn):
    """torch.compile(fn) as compiled() does, with inductor's fallback_random: ATen's RNG ops, eager's masks.

    Users turn fallback_random on to get the same masks as eager for the same torch seed;
    this shows what that costs. The option is passed to this compilation only (torch.compile's
    `options`, applied by inductor as a config patch to the forward and backward compiles), so
    the `compile` backend's graphs keep inductor's own RNG.
    """
    configure_dynamo()
    return torch.compile(fn, fullgraph=True, dynamic=False, options={"fallback_random": True})
