"""`dropbench-train-step`: a GPT-2-small training step with each dropout, in eager, compiled and CUDA-graph modes.

The drop-in question is not how fast one dropout runs but whether a training step gets
faster or slower, and lighter, when nn.Dropout is swapped for SeededDropout. The model is
a GPT-style stack at GPT-2-small dims (12 blocks, d=768, 12 heads, seq 1024, batch 8,
vocab 50304): attention through scaled_dot_product_attention, dropout on the embeddings,
after attention and after the MLP (p=0.1), bf16 autocast, fused AdamW.

Rows go into the results CSV schema: op train_step (train_step_variational for
VariationalDropout along tokens), backend eager (nn.Dropout) or triton, direction step,
timer train_eager | train_compile | train_cudagraphs (torch.compile's "reduce-overhead"),
ms_median per step, numel the tokens per step, peak_bytes the step's peak memory above what
was allocated before it (activations, saved masks, temporaries).

Timing is interleaved: in each mode every dropout's model is built and warmed up, then
the models take turns, a round of steps each, the order reversed every round, so that
a drift of the host or the GPU's clocks falls on all of them alike (sequential runs
showed p20-p80 bands of +-10%). The printed ratio is the median over rounds of
(this dropout's round median / nn.Dropout's round median).

The correctness gate runs first: with p = 0 a step's loss must equal nn.Dropout's bit for
bit, and with p > 0 two forward passes of the same batch must draw different masks; in
each mode, before timing, two passes must again differ (a compiled or captured graph that
baked in its masks is recorded incorrect and not timed). Needs a CUDA GPU.
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
        trainer.model.load_state_dict(reference.model.state_dict())  # the same weights
        losses[dropout] = trainer.loss().item()
    if len(set(losses.values())) != 1:
        raise AssertionError(f"with p = 0 every dropout must give nn.Dropout's loss bit for bit: {losses}")
    for dropout in ("triton", "variational"):
        trainer = Trainer(dims, dropout, 0.1, "eager")
        with torch.no_grad():
            first, second = trainer.loss().item(), trainer.loss().item()
        if first == second:
            raise AssertionError(f"{dropout}: two passes gave the same loss, so the same masks")


def time_steps(trainer: Trainer, steps: int) -> tuple[list[float], int]:
    """Per-step milliseconds (CUDA events around each step) and the peak memory of a step above
    what was allocated before it."""
    import torch

    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(steps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        trainer.step()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return times, torch.cuda.max_memory_allocated() - before


def masks_change(trainer) -> bool:
    """Whether two forward passes over the same batch with the same weights differ: False where this
    mode froze the masks (a compiled or captured graph that baked in its random stream)."""
    import torch

    losses = []
    for _ in range(2):
        torch.compiler.cudagraph_mark_step_begin()
        losses.append(trainer.loss().item())
    return losses[0] != losses[1]


def row_key(dims: Dims, dropout: str, mode: str, p: float) -> dict:
    """The key columns of one (dropout, mode) row."""
    op, backend = DROPOUTS[dropout]
    return {"op": op, "backend": backend, "dtype": "bf16", "rows": dims.batch, "cols": dims.seq,
            "shape": dims.shape, "p": p, "direction": "step", "timer": MODES[mode],
            "variational_dim": 1 if dropout == "variational" else 0}


def measure_mode(dims: Dims, dropouts: list[str], mode: str, p: float, warmup: int, rounds: int,
                 steps: int, env: dict) -> list[dict]:
    """One CSV row per dropout in this mode, timed in interleaved rounds (see the module docstring).

    A dropout whose masks froze in this mode gets status incorrect and is not timed.
    """
    import gc

    import torch

    rows = {dropout: {**env, **row_key(dims, dropout, mode, p), "numel": dims.batch * dims.seq}
            for dropout in dropouts}
    trainers = {}
    try:
        for dropout in dropouts:
            trainer = Trainer(dims, dropout, p, mode)
            for _ in range(warmup):
                trainer.step()
            if p == 0.0 or masks_change(trainer):  # p = 0 draws no mask to change
                trainers[dropout] = trainer
            else:
                rows[dropout].update(status="incorrect", error=f"two passes gave one mask in {mode}")
        times = {dropout: [] for dropout in trainers}
        peaks = dict.fromkeys(trainers, 0)
        for round_index in range(rounds):
            order = list(trainers) if round_index % 2 == 0 else list(reversed(trainers))
            for dropout in order:
                round_times, peak = time_steps(trainers[dropout], steps)
                times[dropout].append(round_times)
                peaks[dropout] = max(peaks[dropout], peak)
        for dropout, per_round in times.items():
            every = [ms for round_times in per_round for ms in round_times]
            quantiles = statistics.quantiles(every, n=10)
            rows[dropout].update(ms_median=statistics.median(every), ms_p20=quantiles[1], ms_p80=quantiles[7],
                                 peak_bytes=peaks[dropout], samples=len(every), status="ok")
        if "eager" in times:
            for dropout, per_round in times.items():
                ratios = [statistics.median(mine) / statistics.median(base)
                          for mine, base in zip(per_round, times["eager"])]
                rows[dropout]["ratio_vs_eager"] = statistics.median(ratios)
    except torch.cuda.OutOfMemoryError as error:
        for row in rows.values():
            row.setdefault("status", "oom")
            row.setdefault("error", str(error).splitlines()[0])
    finally:
        trainers = trainer = None
        gc.collect()
        torch.cuda.empty_cache()
        torch._dynamo.reset()
    return list(rows.values())


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
    parser.add_argument("--rounds", type=int, default=6, help="interleaved rounds (each dropout's model once a round)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per round")
    parser.add_argument("--blocks", type=int, default=Dims.blocks, help="transformer blocks (default 12)")
    args = parser.parse_args(argv)
    if not 0.0 <= args.p < 1.0:
        parser.error(f"--p must be in [0, 1), got {args.p}")
    if args.steps < 3 or args.warmup < 1 or args.blocks < 1 or args.rounds < 1:
        parser.error("--steps must be >= 3, --warmup >= 1, --rounds >= 1 and --blocks >= 1")
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
    # A mode is measured whole (its dropouts interleave), unless every row of it is in the file.
    todo = [mode for mode in args.modes
            if any(key_of(row_key(dims, dropout, mode, args.p)) not in out.done for dropout in args.dropouts)]
    if todo:
        check(dims)
    with out:
        for mode in todo:
            for row in measure_mode(dims, args.dropouts, mode, args.p, args.warmup, args.rounds, args.steps, env):
                ratio = row.pop("ratio_vs_eager", None)
                if key_of(row) not in out.done:
                    out.write(row)
                print(f"{mode:>10} {row['backend']:>7} {row['op']:>22}: {row.get('ms_median', float('nan')):8.3f} "
                      f"ms/step, x{ratio or float('nan'):.4f} of nn.Dropout (median of per-round ratios), "
                      f"peak {row.get('peak_bytes', 0) / 1e9:.2f} GB ({row['status']})", flush=True)
    print(f"rows in {args.out}", flush=True)


if __name__ == "__main__":
    main()
