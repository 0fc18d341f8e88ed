"""Channel dropout of contiguous feature maps: the locked tiles, the runs kernel, and a candidate (issue 7 probe).

All three compute the same mask (one keep decision per (n, c), shared by the S spatial
positions); this times each, forward, with the CUDA-graph timer (GPU work, L2 flushed),
against a device-to-device copy of the same tensor, beside eager F.dropout2d. Outputs are
checked equal before timing.
- tiles: variational's [BLOCK_D, BLOCK_M] kernel, autotuned over LOCKED_CONFIGS.
- runs: variational's runs kernel (the channel ops' kernel since this probe's first run): BLOCK
  consecutive elements, the <= 64 runs' keep bits packed into two words by a block reduction.
- groups (candidate, defined here, not yet measured): the block as [BLOCK / GROUP, GROUP] with
  GROUP = min(16, S); a group touches at most two runs, so two Philox calls per group decide
  it, with no reduction across the block and no lower limit of 17 on S.
Usage: python docs/experiments/runs_vs_tiles.py [fp16|fp32 ...]
"""

import sys
from types import SimpleNamespace

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from bench.timing import measure
from kernels import variational
from kernels.channel import channel_view
from kernels.launcher import autotune_bench
from kernels.seeded import _element_words, _keeps, _scale_kept, describe_config, keep_constants

TIMING = SimpleNamespace(quantiles=[0.5, 0.2, 0.8], cudagraph_reps=100, l2_flush_mb=256)
#: (N, C, H, W): the conv shapes of configs/shape/default.yaml, the channel dims' 8192 x 192 x 16 x 16,
#: and short maps (5 x 5; 3 x 3 and 2 x 2, which only tiles and groups take).
SHAPES = [(32, 64, 112, 112), (32, 256, 56, 56), (32, 512, 28, 28), (32, 2048, 7, 7),
          (8192, 192, 16, 16), (256, 2048, 5, 5), (256, 2048, 3, 3), (256, 2048, 2, 2)]
DTYPES = {"fp16": torch.float16, "fp32": torch.float32}
SEED, P = 1234, 0.5


@triton.jit
def _groups_keep(seed, threshold, group_starts, run_len, GROUP: tl.constexpr):
    """[len(group_starts), GROUP] keep decisions; run_len >= GROUP, so a group touches at most two runs."""
    first_run = group_starts // run_len
    in_next_run = (group_starts - first_run * run_len)[:, None] + tl.arange(0, GROUP)[None, :] >= run_len
    keep_first = _keeps(_element_words(seed, first_run), threshold)
    keep_next = _keeps(_element_words(seed, first_run + 1), threshold)
    return tl.where(in_next_run, keep_next[:, None], keep_first[:, None])


@triton.jit(do_not_specialize=["seed", "threshold", "scale_bits"])
def _groups_kernel(x_ptr, out_ptr, seed, threshold, scale_bits, numel, run_len,
                   BLOCK: tl.constexpr, GROUP: tl.constexpr):
    group_starts = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK // GROUP) * GROUP
    offsets = group_starts[:, None] + tl.arange(0, GROUP)[None, :]
    in_bounds = offsets < numel
    x = tl.load(x_ptr + offsets, mask=in_bounds)
    keep = _groups_keep(seed, threshold, group_starts, run_len, GROUP)
    tl.store(out_ptr + offsets, _scale_kept(x, keep, scale_bits), mask=in_bounds)


_groups_autotuned = triton.autotune(configs=variational.RUNS_CONFIGS, key=["numel", "run_len"],
                                    do_bench=autotune_bench)(_groups_kernel)


def graph_ms(fn) -> float:
    return measure(lambda: fn, "cudagraph", TIMING).median


def main(dtype_names) -> None:
    print(f"{torch.cuda.get_device_name()}, forward, CUDA-graph median ms; % of copy in brackets")
    print(f"{'dtype':5s} {'shape':18s} {'copy':>8s} {'tiles':>16s} {'runs':>16s} {'groups':>16s} {'eager':>16s}")
    for name in dtype_names:
        for shape in SHAPES:
            x = torch.randn(shape, device="cuda", dtype=DTYPES[name])
            view, dim, _ = channel_view(x)
            layout = variational._as_outer_d_m(view, dim)
            size_d, numel = layout[0][1], x.numel()
            outs = {kernel: torch.empty_like(view) for kernel in ("tiles", "runs", "groups")}
            constants = (SEED, *keep_constants(P))

            def tiles(out=outs["tiles"], view=view, layout=layout, constants=constants):
                variational.launch_locked(variational._locked, (view, out, *constants), layout, None)

            def runs(out=outs["runs"], view=view, layout=layout, constants=constants):
                variational._launch_runs(variational._runs, (view, out, *constants), layout, None)

            def groups(out=outs["groups"], view=view, numel=numel, size_d=size_d, constants=constants):
                _groups_autotuned[lambda meta: (triton.cdiv(numel, meta["BLOCK"]),)](
                    view, out, *constants, numel, size_d, GROUP=min(16, 1 << (size_d.bit_length() - 1)))

            kernels = {"tiles": tiles, "runs": runs if variational.takes_runs(layout) else None, "groups": groups}
            for kernel, launch in kernels.items():
                if launch is not None:
                    launch()
                    torch.cuda.synchronize()
                    assert torch.equal(outs[kernel], outs["tiles"]), f"{kernel} differs from tiles at {shape} {name}"
            dst = torch.empty_like(x)
            copy = graph_ms(lambda dst=dst, x=x: dst.copy_(x))
            cells = [graph_ms(launch) if launch else None for launch in kernels.values()]
            cells.append(graph_ms(lambda x=x: F.dropout2d(x, P)))
            text = " ".join(f"{ms:8.4f} ({100 * copy / ms:5.1f})" if ms else f"{'-':>16s}" for ms in cells)
            configs = " | ".join(describe_config(config) for config in (
                variational._locked.last_config, variational._runs.last_config, _groups_autotuned.best_config))
            print(f"{name:5s} {'x'.join(map(str, shape)):18s} {copy:8.4f} {text}  {configs}", flush=True)
            del x, view, outs, dst
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main(sys.argv[1:] or list(DTYPES))
