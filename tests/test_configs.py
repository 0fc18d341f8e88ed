"""configs/: the default sweep and its overrides, composed with Hydra's compose API (no app run)."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from bench import plan

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
DEFAULT_ROWS = [2**k for k in range(14)]  # 1, 2, 4, ..., 8192
ALL_PAIRS = {
    ("dropout", "triton_seeded"), ("dropout", "eager"), ("dropout", "compile"),
    ("variational", "triton_variational"), ("variational", "eager"), ("variational", "compile"),
}


def composed(*overrides: str):
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def test_default_is_the_design_sweep():
    cfg = composed()
    assert list(cfg.shape.rows) == DEFAULT_ROWS, "default rows should be 1, 2, 4, ..., 8192"
    assert cfg.shape.cols == 49152 == 64 * 768
    assert list(cfg.dtype.names) == ["fp16", "bf16", "fp32", "fp64"]
    assert set(plan.pairs(list(cfg.op.names), list(cfg.backend.names))) == ALL_PAIRS
    assert list(cfg.direction.names) == ["fwd", "bwd", "fwd+bwd"]
    assert list(cfg.p) == [0.5]
    assert cfg.variational_dim == 0, "the variational mask should be shared along rows by default"
    assert cfg.device.name == "auto"
    assert cfg.results.path is None
    assert list(cfg.timing.quantiles) == [0.5, 0.2, 0.8]


def test_default_plan_on_a_gpu_has_every_point_in_measuring_order():
    cfg = composed()
    points = plan.expand(cfg, "cuda")
    per_shape = 1 + len(ALL_PAIRS)  # the copy, then each pair
    assert len(points) == 14 * 4 * per_shape
    first_shape = points[:per_shape]
    assert first_shape[0].is_copy, "the copy must come first: pct_of_copy divides by it"
    for op in ("dropout", "variational"):
        backends = [point.backend for point in first_shape if point.op == op]
        assert backends[0] == "eager", f"{op}: eager must be measured first for speedup_vs_eager"
    timers = {point.rows: point.timers for point in points}
    assert timers[16] == ("do_bench", "cudagraph") and timers[32] == ("do_bench",), \
        "the CUDA-graph timer should run for rows <= 16 only"
    assert all(point.timers == ("cpu",) for point in plan.expand(cfg, "cpu"))


def test_dtype_override():
    assert list(composed("dtype=fp16").dtype.names) == ["fp16"]
    assert list(composed("dtype=half").dtype.names) == ["fp16", "bf16"]


def test_rows_override():
    cfg = composed("shape.rows=[1,64]")
    assert list(cfg.shape.rows) == [1, 64] and cfg.shape.cols == 49152


def test_backend_triton_means_both_triton_kernels():
    cfg = composed("backend=triton")
    assert plan.pairs(list(cfg.op.names), list(cfg.backend.names)) == [
        ("dropout", "triton_seeded"), ("variational", "triton_variational")]


def test_op_and_backend_select_registered_pairs_only():
    cfg = composed("op=variational", "backend=baselines")
    assert plan.pairs(list(cfg.op.names), list(cfg.backend.names)) == [
        ("variational", "eager"), ("variational", "compile")]
    with pytest.raises(ValueError, match="no registered"):
        plan.expand(composed("op=dropout", "backend.names=[triton_variational]"), "cpu")


def test_smoke_preset_is_tiny():
    cfg = composed("+preset=smoke")
    assert list(cfg.shape.rows) == [1, 8] and cfg.shape.cols == 256
    assert list(cfg.dtype.names) == ["fp32"]
    assert cfg.timing.rep_ms == 20 and cfg.check.numel == 16384
    assert set(plan.pairs(list(cfg.op.names), list(cfg.backend.names))) == ALL_PAIRS, \
        "smoke must still exercise every backend"


def test_ci_preset():
    cfg = composed("+preset=ci")
    assert list(cfg.shape.rows) == [1, 64, 1024, 8192]
    assert list(cfg.dtype.names) == ["fp16", "fp32"]
    assert list(cfg.direction.names) == ["fwd", "bwd"]
    assert cfg.timing.rep_ms == 100, "CI should time with the default budgets"


def test_command_line_beats_preset():
    cfg = composed("+preset=ci", "dtype=bf16", "shape.rows=[2]")
    assert list(cfg.dtype.names) == ["bf16"] and list(cfg.shape.rows) == [2]


@pytest.mark.parametrize("group", ["shape", "dtype", "op", "backend", "direction", "timing", "device", "results"])
def test_every_option_composes(group):
    for option in sorted((CONFIGS / group).glob("*.yaml")):
        cfg = composed(f"{group}={option.stem}")
        assert cfg[group] is not None, f"{group}={option.stem} composed to nothing"
        if group not in ("device", "results"):
            plan.expand(cfg, "cpu")  # every option names known values


@pytest.mark.parametrize("override, words", [
    ("dtype.names=[fp8]", "unknown dtype"),
    ("direction.names=[sideways]", "unknown direction"),
    ("backend.names=[cuda]", "unknown backend"),
    ("p=[1.5]", "p must be in"),
    ("op.names=[alpha_dropout]", "unknown op"),  # registered, but the checks do not know its mask yet
])
def test_bad_values_are_named(override, words):
    with pytest.raises(ValueError, match=words):
        plan.expand(composed(override), "cpu")


def test_ci_preset_times_small_shapes_with_cuda_graphs_only():
    points = [point for point in plan.expand(composed("+preset=ci"), "cuda") if point.op == "dropout"]
    timers = {point.rows: point.timers for point in points}
    assert timers[1] == timers[64] == timers[1024] == ("cudagraph",), "small shapes must not gate on do_bench"
    assert timers[8192] == ("do_bench",)


def test_a_shape_without_a_timer_is_refused_by_name():
    with pytest.raises(ValueError, match="rows=64 gets no timer"):
        plan.expand(composed("timing.do_bench_min_rows=1024", "timing.cudagraph_max_rows=16", "shape.rows=[64]"), "cuda")
