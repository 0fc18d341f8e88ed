"""`dropbench-train-step`: a GPT-2-small training step with each dropout, in eager, compiled and CUDA-graph modes.

The drop-in question is not how fast one dropout runs but whether a training step gets
faster or slower, and lighter, when nn.Dropout is swapped for SeededDropout. The model is
a GPT-style stack at GPT-2-small dims (12 blocks, d=768, 12 heads, seq 1024, batch 8,
vocab 50304): attention through scaled_dot_product_attention, dropout on the embeddings,
after attention and after the MLP (p=0.1), bf16 autocast, fused AdamW.

Rows go into the results CSV schema: op train_step (train_step_variational for
VariationalDropout along tokens), backend eager (nn.Dropout) or triton, direction step,
timer train_eager | train_compile | train_cudagraphs (torch.compile's "reduce-overhead"),
ms_median per step, numel the tokens per step, peak_bytes the peak memory of a step.

The correctness gate runs first: with p = 0 a step's loss must equal nn.Dropout's bit for
bit, and with p > 0 two forward passes of the same batch must draw different masks.
Needs a CUDA GPU.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

DROPOUTS = {"eager": ("train_step", "eager"), "triton": ("train_step", "triton"),
            "variational": ("train_step_variational", "triton")}
MODES = {"eager": "train_eager", "compile": "train_compile", "cudagraphs": "train_cudagraphs"}


@dataclass(frozen=True)
class Dims:
    blocks: int = 12
    width: int = 768
    heads: int = 12
    seq: int = 1024
    batch: int = 8
    vocab: int = 50304

    @property
    def shape(self) -> str:
        return f"gpt2-{self.blocks}x{self.width}-{self.batch}x{self.seq}"


def build_model(dims: Dims, dropout: str, p: float):
    """The GPT stack with `dropout` ('eager' nn.Dropout, 'triton' SeededDropout, 'variational')."""
    import torch.nn.functional as F
    from torch import nn

    from dropbench.kernels import SeededDropout, VariationalDropout

    def make_dropout() -> nn.Module:
        if dropout == "eager":
            return nn.Dropout(p)
        if dropout == "triton":
            return SeededDropout(p)
        return VariationalDropout(p, dim=1)  # one mask per (sequence, channel), shared over tokens

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1, self.ln2 = nn.LayerNorm(dims.width), nn.LayerNorm(dims.width)
            self.qkv, self.proj = nn.Linear(dims.width, 3 * dims.width), nn.Linear(dims.width, dims.width)
            self.fc, self.out = nn.Linear(dims.width, 4 * dims.width), nn.Linear(4 * dims.width, dims.width)
            self.attn_dropout, self.mlp_dropout = make_dropout(), make_dropout()

        def forward(self, x):
            batch, seq, width = x.shape
            q, k, v = self.qkv(self.ln1(x)).view(batch, seq, 3, dims.heads, width // dims.heads).unbind(2)
            attn = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                                  is_causal=True)
            x = x + self.attn_dropout(self.proj(attn.transpose(1, 2).reshape(batch, seq, width)))
            return x + self.mlp_dropout(self.out(F.gelu(self.fc(self.ln2(x)))))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.tokens, self.positions = nn.Embedding(dims.vocab, dims.width), nn.Embedding(dims.seq, dims.width)
            self.embedding_dropout = make_dropout()
            self.blocks = nn.ModuleList(Block() for _ in range(dims.blocks))
            self.ln = nn.LayerNorm(dims.width)

        def forward(self, tokens, targets):
            x = self.embedding_dropout(self.tokens(tokens) + self.positions.weight[: tokens.shape[1]])
            for block in self.blocks:
                x = block(x)
            logits = self.ln(x) @ self.tokens.weight.t()  # tied head
            return F.cross_entropy(logits.float().flatten(0, 1), targets.flatten())

    return GPT()


class Trainer:
    """One model, its fused AdamW and a fixed random batch; step() is one training step."""

    def __init__(self, dims: Dims, dropout: str, p: float, mode: str, seed: int = 0):
        import torch

        torch.manual_seed(seed)
        self.model = build_model(dims, dropout, p).cuda().train()
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-4, fused=True)
        generator = torch.Generator(device="cuda").manual_seed(seed)
        self.tokens = torch.randint(dims.vocab, (dims.batch, dims.seq), device="cuda", generator=generator)
        self.targets = torch.randint(dims.vocab, (dims.batch, dims.seq), device="cuda", generator=generator)
        self.forward = self.model
        if mode == "compile":
            self.forward = torch.compile(self.model, fullgraph=True)
        elif mode == "cudagraphs":
            self.forward = torch.compile(self.model, fullgraph=True, mode="reduce-overhead")

    def loss(self):
        import torch

        with torch.autocast("cuda", dtype=torch.bfloat16):
            return self.forward(self.tokens, self.targets)

    def step(self):
        """One training step; returns the loss tensor (no host sync)."""
        import torch

        torch.compiler.cudagraph_mark_step_begin()
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss()
        loss.backward()
        self.optimizer.step()
        return loss


def check(dims: Dims) -> None:
    """The gate: p = 0 matches nn.Dropout bit for bit; p > 0 draws a new mask each pass."""
    import torch

    reference = Trainer(dims, "eager", 0.0, "eager")
    losses = {}
    for dropout in DROPOUTS:
        trainer = Trainer(dims, dropout, 0.0, "eager")
        trainer.model.load_state_dict(reference.model.state_dict())  # the same weights (the key is not saved)
        losses[dropout] = trainer.loss().item()
    if len(set(losses.values())) != 1:
        raise AssertionError(f"with p = 0 every dropout must give nn.Dropout's loss bit for bit: {losses}")
    for dropout in ("triton", "variational"):
        trainer = Trainer(dims, dropout, 0.1, "eager")
        with torch.no_grad():
            first, second = trainer.loss().item(), trainer.loss().item()
        if first == second:
            raise AssertionError(f"{dropout}: two passes gave the same loss, so the same masks")


def time_steps(trainer: Trainer, warmup: int, steps: int) -> tuple[list[float], int]:
    """Per-step milliseconds (CUDA events around each step) and the peak memory of a step."""
    import torch

    for _ in range(warmup):
        trainer.step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(steps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        trainer.step()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return times, torch.cuda.max_memory_allocated()


def frozen_masks(trainer: Trainer) -> list[str]:
    """The seeded dropouts whose RNG state did not move over one step (masks frozen, e.g. by a
    compiled or captured graph that baked in a stream position). Empty for nn.Dropout."""
    from dropbench.kernels.modules import StatefulDropout

    modules = {name: module for name, module in trainer.model.named_modules() if isinstance(module, StatefulDropout)}
    before = {name: module.rng_state[1].item() for name, module in modules.items()}
    trainer.step()
    return [name for name, module in modules.items() if module.rng_state[1].item() == before[name]]


def row_key(dims: Dims, dropout: str, mode: str, p: float) -> dict:
    """The key columns of one (dropout, mode) row."""
    op, backend = DROPOUTS[dropout]
    return {"op": op, "backend": backend, "dtype": "bf16", "rows": dims.batch, "cols": dims.seq,
            "shape": dims.shape, "p": p, "direction": "step", "timer": MODES[mode],
            "variational_dim": 1 if dropout == "variational" else 0}


def measure(dims: Dims, dropout: str, mode: str, p: float, warmup: int, steps: int, env: dict) -> dict:
    """One CSV row: this dropout in this mode (status incorrect, untimed, if its masks froze)."""
    import gc

    import torch

    row = {**env, **row_key(dims, dropout, mode, p), "numel": dims.batch * dims.seq}
    trainer = None
    try:
        trainer = Trainer(dims, dropout, p, mode)
        for _ in range(warmup):
            trainer.step()
        frozen = frozen_masks(trainer)
        if frozen:
            return {**row, "status": "incorrect", "error": f"masks did not change over a step in {mode}: {frozen[:3]}"}
        times, peak = time_steps(trainer, 1, steps)
        quantiles = statistics.quantiles(times, n=10)
        row.update(ms_median=statistics.median(times), ms_p20=quantiles[1], ms_p80=quantiles[7],
                   peak_bytes=peak, samples=len(times), status="ok")
    except torch.cuda.OutOfMemoryError as error:
        row.update(status="oom", error=str(error).splitlines()[0])
    finally:
        trainer = None
        gc.collect()
        torch.cuda.empty_cache()
        torch._dynamo.reset()
    return row


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="dropbench-train-step",
        description="Time a GPT-2-small training step with nn.Dropout, SeededDropout and VariationalDropout "
                    "(CUDA GPU only); append one results-CSV row per (dropout, mode).",
    )
    parser.add_argument("--out", required=True, type=Path, help="results CSV to append to (created with a header)")
    parser.add_argument("--dropouts", nargs="+", choices=list(DROPOUTS), default=list(DROPOUTS))
    parser.add_argument("--modes", nargs="+", choices=list(MODES), default=list(MODES))
    parser.add_argument("--p", type=float, default=0.1, help="drop probability (default 0.1)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first (compilation happens there)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps")
    parser.add_argument("--blocks", type=int, default=Dims.blocks, help="transformer blocks (default 12)")
    args = parser.parse_args(argv)
    if not 0.0 <= args.p < 1.0:
        parser.error(f"--p must be in [0, 1), got {args.p}")
    if args.steps < 3 or args.warmup < 1 or args.blocks < 1:
        parser.error("--steps must be >= 3, --warmup >= 1 and --blocks >= 1")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        sys.exit("dropbench-train-step: needs a CUDA GPU (torch.cuda.is_available() is False)")
    from dropbench.bench.results import ResultsError, ResultsFile, environment, key_of

    dims = Dims(blocks=args.blocks)
    env = environment("cuda")
    try:  # backward runs on autograd's device thread, PyTorch's default in training
        out = ResultsFile(args.out, env["device"], autograd_threads=True)
    except ResultsError as error:
        sys.exit(f"dropbench-train-step: {error}")
    todo = [(mode, dropout) for mode in args.modes for dropout in args.dropouts
             if key_of(row_key(dims, dropout, mode, args.p)) not in out.done]
    if todo:
        check(dims)
    with out:
        for mode, dropout in todo:
            row = measure(dims, dropout, mode, args.p, args.warmup, args.steps, env)
            out.write(row)
            print(f"{mode:>10} {dropout:>11}: {row.get('ms_median', float('nan')):8.3f} ms/step, "
                  f"peak {row.get('peak_bytes', 0) / 1e9:.2f} GB ({row['status']})", flush=True)
    print(f"rows in {args.out}", flush=True)


if __name__ == "__main__":
    main()
