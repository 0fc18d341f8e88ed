"""The eager and torch.compile baselines."""

import torch
from helpers import keep_fraction_bound, random_input

from dropbench.baselines import compiled, eager


def test_eager_dropout_keeps_the_right_fraction_and_scales(device, generator):
    x = random_input((128, 256), torch.float32, device, generator)
    y = eager.dropout(x, 0.3)
    keep = y != 0
    assert abs(keep.double().mean().item() - 0.7) < keep_fraction_bound(x.numel(), 0.3)
    torch.testing.assert_close(y[keep], x[keep] / 0.7)


def test_eager_variational_shares_the_mask_along_dim(device, generator):
    x = random_input((6, 4, 32), torch.float32, device, generator)
    keep = eager.variational_dropout(x, 0.5, dim=0) != 0
    assert torch.equal(keep, keep[:1].expand_as(keep)), "eager variational mask not shared along dim"
    assert 0 < keep[0].double().mean() < 1


def test_compiled_baseline_really_compiles_without_graph_breaks(device, generator):
    torch._dynamo.reset()
    x = random_input((16, 64), torch.float32, device, generator)
    before = compiled.compile_stats()
    y = compiled.dropout(x, 0.5)
    after = compiled.compile_stats()
    assert after["unique_graphs"] == before["unique_graphs"] + 1, "torch.compile did not compile a graph"
    assert after["graph_breaks"] == before["graph_breaks"]
    keep = y != 0
    torch.testing.assert_close(y[keep], x[keep] * 2)


def test_compiled_baselines_raise_dynamo_limits_for_sweeps():
    compiled.compiled(eager.dropout)
    assert torch._dynamo.config.recompile_limit >= compiled.RECOMPILE_LIMIT
