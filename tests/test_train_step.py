"""bench.train_step: the model builds and trains with each dropout, the gate's p = 0 rule, and the
command line refuses bad input in one line. The timed run itself needs a CUDA GPU."""

import pytest
import torch

from dropbench.bench import train_step
from dropbench.bench.train_step import DROPOUTS, Dims, build_model

TINY = Dims(blocks=1, width=32, heads=2, seq=16, batch=2, vocab=64)


def _loss(model, generator):
    device = next(model.parameters()).device
    tokens = torch.randint(TINY.vocab, (TINY.batch, TINY.seq), generator=generator).to(device)
    targets = torch.randint(TINY.vocab, (TINY.batch, TINY.seq), generator=generator).to(device)
    return model(tokens, targets)


@pytest.mark.parametrize("dropout", list(DROPOUTS))
def test_each_dropout_trains(dropout, device, generator):
    model = build_model(TINY, dropout, 0.1).to(device).train()
    loss = _loss(model, generator)
    loss.backward()
    assert torch.isfinite(loss) and all(param.grad is not None for param in model.parameters() if param.requires_grad)


def test_with_p_zero_every_dropout_gives_nn_dropouts_loss_bit_for_bit(device):
    reference = build_model(TINY, "eager", 0.0)
    losses = []
    for dropout in DROPOUTS:
        model = build_model(TINY, dropout, 0.0).to(device)
        model.load_state_dict(reference.state_dict())
        losses.append(_loss(model, torch.Generator().manual_seed(0)).item())
    assert len(set(losses)) == 1, f"p = 0 losses differ: {losses}"


def test_seeded_models_draw_new_masks_each_pass(device):
    model = build_model(TINY, "triton", 0.5).to(device).train()
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
    """Trainer's interface for masks_change: loss() over one fixed batch."""

    def __init__(self, model):
        self.model = model

    def loss(self):
        return _loss(self.model, torch.Generator().manual_seed(0))


@pytest.mark.parametrize("dropout", list(DROPOUTS))
def test_masks_change_tells_fresh_masks_from_frozen_ones(dropout, device):
    fresh = build_model(TINY, dropout, 0.5).to(device).train()
    assert train_step.masks_change(_FakeTrainer(fresh)), f"{dropout}: two passes should differ"
    frozen = build_model(TINY, dropout, 0.5).to(device).eval()  # eval: no dropout, as if the masks were baked in
    assert not train_step.masks_change(_FakeTrainer(frozen)), f"{dropout}: eval passes must be equal"
