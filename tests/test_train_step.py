"""bench.train_step: the model builds and trains with each dropout, the gate's p = 0 rule, and the
command line refuses bad input in one line. The timed run itself needs a CUDA GPU."""

import pytest
import torch

from dropbench.bench import train_step
from dropbench.bench.train_step import DROPOUTS, Dims, build_model

TINY = Dims(blocks=1, width=32, heads=2, seq=16, batch=2, vocab=64)


def _loss(model, generator):
    tokens = torch.randint(TINY.vocab, (TINY.batch, TINY.seq), generator=generator)
    targets = torch.randint(TINY.vocab, (TINY.batch, TINY.seq), generator=generator)
    return model(tokens, targets)


@pytest.mark.parametrize("dropout", list(DROPOUTS))
def test_each_dropout_trains(dropout, generator):
    model = build_model(TINY, dropout, 0.1).train()
    loss = _loss(model, generator)
    loss.backward()
    assert torch.isfinite(loss) and all(param.grad is not None for param in model.parameters() if param.requires_grad)


def test_with_p_zero_every_dropout_gives_nn_dropouts_loss_bit_for_bit():
    reference = build_model(TINY, "eager", 0.0)
    losses = []
    for dropout in DROPOUTS:
        model = build_model(TINY, dropout, 0.0)
        model.load_state_dict(reference.state_dict())
        losses.append(_loss(model, torch.Generator().manual_seed(0)).item())
    assert len(set(losses)) == 1, f"p = 0 losses differ: {losses}"


def test_seeded_models_draw_new_masks_each_pass():
    model = build_model(TINY, "triton", 0.5).train()
    first, second = (_loss(model, torch.Generator().manual_seed(0)).item() for _ in range(2))
    assert first != second, "two passes over one batch gave one mask"


@pytest.mark.parametrize("argv, words", [
    (["--out", "x.csv", "--p", "1.5"], "--p must be in [0, 1)"),
    (["--out", "x.csv", "--modes", "jit"], "invalid choice: 'jit'"),
    (["--out", "x.csv", "--steps", "1"], "--steps must be >= 3"),
    ([], "the following arguments are required: --out"),
])
def test_bad_arguments_are_one_line_errors(argv, words, capsys):
    with pytest.raises(SystemExit) as exit_info:
        train_step.parse_args(argv)
    assert exit_info.value.code == 2
    assert words in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU refusal")
def test_without_a_gpu_it_says_so(tmp_path):
    with pytest.raises(SystemExit, match="needs a CUDA GPU"):
        train_step.main(["--out", str(tmp_path / "train.csv")])


class _FakeTrainer:
    """Trainer's interface for frozen_masks: a model and a step that runs it (or, frozen, does not)."""

    def __init__(self, model, runs_the_model: bool):
        self.model, self.runs_the_model = model, runs_the_model

    def step(self):
        if self.runs_the_model:
            _loss(self.model, torch.Generator().manual_seed(0)).backward()


def test_frozen_masks_names_the_dropouts_whose_state_did_not_move():
    model = build_model(TINY, "triton", 0.1).train()
    assert train_step.frozen_masks(_FakeTrainer(model, runs_the_model=True)) == []
    frozen = train_step.frozen_masks(_FakeTrainer(model, runs_the_model=False))
    assert len(frozen) == 3 and "embedding_dropout" in frozen, frozen
    assert train_step.frozen_masks(_FakeTrainer(build_model(TINY, "eager", 0.1), runs_the_model=False)) == []
