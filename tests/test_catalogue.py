"""bench.catalogue: every row resolves, names are refused with what exists, and it imports no torch."""

import subprocess
import sys

import pytest

from dropbench.bench import catalogue


def test_the_design_backends_and_what_they_check():
    assert list(catalogue.BACKENDS) == ["triton", "dropin", "eager", "compile", "compile_fallback",
                                        "tutorial", "seedrepo_1d", "seedrepo_2d"]
    assert catalogue.implementation("dropout", "triton").bit_exact, "the Triton mask must match the reference"
    assert not catalogue.implementation("variational", "eager").bit_exact


def test_published_backends_run_only_the_op_they_implement():
    pairs = catalogue.pairs()
    assert [op for op, backend in pairs if backend == "tutorial"] == ["dropout"]
    assert [op for op, backend in pairs if backend.startswith("seedrepo")] == ["variational", "variational"]
    assert {backend for op, backend in pairs if op == "dropout2d"} == {"triton", "dropin", "eager", "compile",
                                                                         "compile_fallback"}
    with pytest.raises(ValueError, match="backend 'tutorial' does not run op 'variational'; it runs: dropout"):
        catalogue.implementation("variational", "tutorial")


@pytest.mark.parametrize("op, backend", catalogue.pairs())
def test_every_pair_resolves_to_a_callable(op, backend):
    impl = catalogue.implementation(op, backend)
    assert (impl.op, impl.backend) == (op, backend) and callable(impl.call)
    assert isinstance(impl.chosen_config(), str)


@pytest.mark.parametrize("op", list(catalogue.OPS))
def test_dropin_backend_draws_from_torchs_generator_and_ignores_the_seed(op, device):
    import torch

    impl, row = catalogue.implementation(op, "dropin"), catalogue.op(op)
    shape = {2: (64, 8), 3: (8, 16, 5), 4: (8, 16, 3, 2), 5: (8, 16, 2, 2, 2)}[row.rank]
    x = torch.randn(shape, device=device)

    def masks(seed):  # two calls' outputs (x is random: they tell the masks apart)
        torch.manual_seed(7)
        return [impl(x.clone(), 0.5, seed, 1) for _ in range(2)]

    first, second = masks(seed=1)
    again, _ = masks(seed=2)
    assert torch.equal(first, again), "torch.manual_seed replays the mask, whatever seed the runner passes"
    assert not torch.equal(first, second), "each call draws a fresh stream"


@pytest.mark.parametrize("op", list(catalogue.OPS))
def test_every_op_names_a_reference_function(op):
    assert callable(catalogue.resolve(catalogue.op(op).reference)), f"{op}: reference does not resolve"


@pytest.mark.parametrize("op, backend, words", [("dropout4d", "eager", "unknown op 'dropout4d'; known ops: dropout"),
                                                ("dropout", "cuda", "unknown backend 'cuda'; known backends: triton")])
def test_unknown_names_list_what_exists(op, backend, words):
    with pytest.raises(ValueError, match=words):
        catalogue.implementation(op, backend)


def test_a_path_that_does_not_resolve_names_itself():
    with pytest.raises(ImportError, match="'dropbench.kernels:no_such_dropout' does not resolve"):
        catalogue.resolve("dropbench.kernels:no_such_dropout")


def test_catalogue_schema_and_plan_import_without_torch():
    code = ("import sys; from dropbench.bench import catalogue, plan, schema; "
            "print('torch' in sys.modules, 'triton' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "False"], f"torch or triton imported: {done.stdout} {done.stderr}"
