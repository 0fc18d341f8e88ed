"""configs/: the default sweep and its overrides, composed with Hydra's compose API (no app run)."""

import itertools
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig

from dropbench.bench import catalogue, plan, schema

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
DEFAULT_ROWS = [2**k for k in range(14)]  # 1, 2, 4, ..., 8192
ALL_PAIRS = {
    ("dropout", "triton"), ("dropout", "dropin"), ("dropout", "eager"), ("dropout", "compile"),
    ("dropout", "compile_fallback"),
    ("dropout", "tutorial"),
    ("variational", "triton"), ("variational", "dropin"), ("variational", "eager"), ("variational", "compile"),
    ("variational", "compile_fallback"), ("variational", "seedrepo_1d"), ("variational", "seedrepo_2d"),
}
#: What backend.names allows, as its error message lists it.
ALLOWED_BACKENDS = "triton, dropin, eager, compile, compile_fallback, tutorial, seedrepo_1d, seedrepo_2d, all"
#: The conv shapes of configs/shape/default.yaml, swept for the channel ops besides rows x 49152.
RESNET50 = [(32, 64, 112, 112), (32, 256, 56, 56), (32, 512, 28, 28), (32, 2048, 7, 7)]
CONV_SHAPES = {"dropout1d": [(32, 512, 1024)], "dropout2d": RESNET50, "dropout3d": [(8, 64, 16, 56, 56)],
               "feature_dropout": RESNET50, "feature_alpha_dropout": RESNET50}
#: (C, spatial...) of each channel op in configs/shape/default.yaml: 49152 elements per rows.
CHANNEL_DIMS = {"dropout1d": (768, 64), "dropout2d": (192, 16, 16), "dropout3d": (48, 16, 8, 8),
                "feature_dropout": (192, 16, 16), "feature_alpha_dropout": (192, 16, 16)}


def composed(*overrides: str):
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def test_default_is_the_design_sweep():
    cfg = composed()
    assert list(cfg.shape.rows) == DEFAULT_ROWS, "default rows should be 1, 2, 4, ..., 8192"
    assert cfg.shape.cols == 49152 == 64 * 768
    assert list(cfg.dtype.names) == ["fp16", "bf16", "fp32", "fp64"]
    assert set(plan.chosen_pairs(cfg)) == ALL_PAIRS
    assert list(cfg.direction.names) == ["fwd", "bwd", "fwd+bwd"]
    assert list(cfg.p) == [0.5]
    assert cfg.variational_dim == 0, "the variational mask should be shared along rows by default"
    assert cfg.device.name == "auto"
    assert list(cfg.timing.quantiles) == [0.5, 0.2, 0.8]


def test_default_results_path_is_in_hydras_run_directory(tmp_path):
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose(config_name="config", return_hydra_config=True)
    cfg.hydra.runtime.output_dir = str(tmp_path)  # what Hydra sets when a job starts
    HydraConfig.instance().set_config(cfg)
    try:
        path = cfg.results.path
    finally:
        HydraConfig.instance().cfg = None
    assert path == f"{tmp_path}/results.csv", (
        f"a default sweep should write into its own run directory (gitignored outputs/), got {path}")


def test_default_plan_on_a_gpu_has_every_point_in_measuring_order():
    cfg = composed()
    points = plan.expand(cfg, "cuda")
    per_shape = 1 + len(ALL_PAIRS)  # the copy, then each pair the backend runs
    assert len(points) == 14 * 4 * per_shape
    first_shape = points[:per_shape]
    assert first_shape[0].is_copy, "the copy must come first: pct_of_copy divides by it"
    for op in ("dropout", "variational"):
        backends = [point.backend for point in first_shape if point.op == op]
        assert backends[0] == "eager", f"{op}: eager must be measured first for speedup_vs_eager"
    timers = {point.rows: point.timers for point in points}
    assert timers[4096] == ("do_bench", "cudagraph") and timers[8192] == ("do_bench",), \
        "the CUDA-graph timer should run for rows <= 4096 only"
    assert all(point.timers == ("cpu",) for point in plan.expand(cfg, "cpu"))


def test_dtype_override():
    assert list(composed("dtype=fp16").dtype.names) == ["fp16"]
    assert list(composed("dtype=half").dtype.names) == ["fp16", "bf16"]


def test_rows_override():
    cfg = composed("shape.rows=[1,64]")
    assert list(cfg.shape.rows) == [1, 64] and cfg.shape.cols == 49152


def test_backend_triton_names_both_call_forms_of_the_kernels_for_every_op():
    cfg = composed("backend=triton")
    assert plan.chosen_pairs(cfg) == [("dropout", "triton"), ("dropout", "dropin"),
                                      ("variational", "triton"), ("variational", "dropin")]


def test_op_and_backend_names_select_pairs_eager_first():
    cfg = composed("op.names=[variational]", "backend.names=[compile,eager]")
    assert plan.chosen_pairs(cfg) == [("variational", "eager"), ("variational", "compile")]


@pytest.mark.parametrize("value", ["dropout2d", "[dropout2d]"])
def test_one_op_needs_no_config_file(value):
    assert plan.chosen_ops(composed(f"op.names={value}")) == ["dropout2d"]


@pytest.mark.parametrize("old", ["triton_seeded", "triton_variational"])
def test_old_backend_names_are_refused_with_the_new_ones(old):
    with pytest.raises(plan.ConfigError, match=f"backend.names: unknown {old}; allowed: {ALLOWED_BACKENDS}"):
        plan.expand(composed(f"backend.names=[{old}]"), "cpu")


def test_smoke_preset_is_tiny():
    cfg = composed("+preset=smoke")
    assert list(cfg.shape.rows) == [1, 8] and cfg.shape.cols == 256
    assert list(cfg.dtype.names) == ["fp32"]
    assert cfg.timing.rep_ms == 20 and cfg.check.numel == 16384
    assert set(plan.chosen_pairs(cfg)) == ALL_PAIRS, \
        "smoke must still exercise every backend"


def test_ci_preset():
    cfg = composed("+preset=ci")
    assert list(cfg.shape.rows) == [1, 64, 1024, 8192]
    assert list(cfg.dtype.names) == ["fp16", "fp32"]
    assert list(cfg.direction.names) == ["fwd", "bwd"]
    assert cfg.timing.rep_ms == 100, "CI should time with the default budgets"
    assert cfg.timing.host_max_rows == 1, "CI should track the host time per call at 1 row"


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
    ("dtype.names=[fp8]", "dtype.names: unknown fp8; allowed: fp16, bf16, fp32, fp64"),
    ("direction.names=[sideways]", "direction.names: unknown sideways; allowed: fwd, bwd, fwd\\+bwd"),
    ("backend.names=[cuda]", f"backend.names: unknown cuda; allowed: {ALLOWED_BACKENDS}"),
    ("backend.names=[]", "backend.names: nothing chosen"),
    ("p=[1.5]", r"p=\[1.5\]: allowed: a number in \[0, 1\]"),
    ("p=-0.1", r"p=-0.1: allowed: a number in \[0, 1\]"),
    ("variational_dim=5", "variational_dim=5: allowed: 0 or 1"),
    ("variational_dim=0.5", "variational_dim=0.5: allowed: 0 or 1"),
    ("timing.autograd_threads=maybe", "timing.autograd_threads=maybe: allowed: true, false"),
    ("timing.rep_ms=0", "timing.rep_ms=0: allowed: an integer >= 1"),
    ("timing.do_bench_min_rows=abc", "timing.do_bench_min_rows=abc: allowed: an integer >= 0"),
    ("timing.cudagraph_max_rows=[1]", r"timing.cudagraph_max_rows=\[1\]: allowed: an integer >= 0"),
    ("timing.host_max_rows=1.5", "timing.host_max_rows=1.5: allowed: an integer >= 0"),
    ("op.names=[dropconnect]", "op.names: unknown dropconnect; allowed: dropout, variational"),
    ("shape.channel_dims.dropout2d=[192,16,17]",
     r"shape.channel_dims.dropout2d=\[192, 16, 17\] multiplies to 52224; allowed: dims whose product is shape.cols=49152"),
    ("shape.channel_dims.dropout3d=[192,256]",
     r"shape.channel_dims.dropout3d=\[192, 256\] makes a rank-3 input 1x192x256; allowed for dropout3d: rank 5"),
    ("shape.conv_shapes.dropout1d=[[32,512]]", r"shape.conv_shapes.dropout1d\[0\]=\[32, 512\] makes a rank-2"),
    ("shape.conv_shapes.dropout2d=[[32,0,7,7]]", r"shape.conv_shapes.dropout2d\[0\]=\[32, 0, 7, 7\]: allowed: a list of sizes >= 1"),
    ("+shape.channel_dims.dropout=[192,256]", "shape.channel_dims.dropout: dropout is not a channel op; allowed: dropout1d"),
    ("~shape.channel_dims.feature_dropout", "shape.channel_dims.feature_dropout: missing"),
])
def test_bad_values_are_one_line_naming_the_key_and_what_it_allows(override, words):
    with pytest.raises(plan.ConfigError, match=words) as raised:
        plan.expand(composed("op=all", override), "cpu")
    assert "\n" not in str(raised.value), f"a config error should be one line: {raised.value}"


@pytest.mark.parametrize("value, expected", [("0.5", [0.5]), ("[0.1,0.5]", [0.1, 0.5]), ("[0.5,0.5]", [0.5])])
def test_p_is_one_number_or_a_list(value, expected):
    points = plan.expand(composed(f"p={value}"), "cpu")
    assert list(dict.fromkeys(point.p for point in points if not point.is_copy)) == expected


@pytest.mark.parametrize("value, recorded", [("1", 1), ("-1", 1), ("-2", 0)])
def test_variational_dim_is_recorded_on_variational_points_only(value, recorded):
    points = plan.expand(composed(f"variational_dim={value}"), "cpu")
    dims = {point.op: point.variational_dim for point in points}
    assert dims == {"copy": plan.NO_DIM, "dropout": plan.NO_DIM, "variational": recorded}, dims


def test_ci_preset_times_small_shapes_with_cuda_graphs_only():
    points = [point for point in plan.expand(composed("+preset=ci"), "cuda") if point.op == "dropout"]
    timers = {point.rows: point.timers for point in points}
    assert timers[1] == ("cudagraph", "host"), "1 row: GPU work by CUDA graph, host time by the host timer"
    assert timers[64] == timers[1024] == ("cudagraph",), "small shapes must not gate on do_bench"
    assert timers[8192] == ("do_bench",)


def test_a_shape_without_a_timer_is_refused_by_name():
    with pytest.raises(plan.ConfigError, match="shape.rows=64 gets no timer"):
        plan.expand(composed("timing.do_bench_min_rows=1024", "timing.cudagraph_max_rows=16", "shape.rows=[64]"), "cuda")


def pairs_of(option: str) -> set[tuple[str, str]]:
    cfg = composed(f"op={option}")
    return set(plan.chosen_pairs(cfg))


def test_op_groups():
    assert pairs_of("core") == ALL_PAIRS, "core is the design's two ops"
    assert pairs_of("all") == set(catalogue.pairs()), "op=all is every op of the catalogue"
    assert {op for op, _ in pairs_of("channel")} == {"dropout1d", "dropout2d", "dropout3d", "feature_dropout"}
    assert {op for op, _ in pairs_of("alpha")} == {"alpha_dropout", "feature_alpha_dropout"}


def test_schema_names_come_from_the_catalogue():
    assert schema.OPS == list(catalogue.OPS)
    assert schema.BACKENDS == [*catalogue.BACKENDS, schema.COPY]
    assert set(schema.CORE_OPS) <= set(schema.OPS)
    assert set(CHANNEL_DIMS) == set(catalogue.channel_ops())


def test_default_plan_shapes_of_every_op():
    points = [point for point in plan.expand(composed("op=all", "dtype=fp16"), "cuda") if not point.is_copy]
    shapes = {op: list(dict.fromkeys(point.shape for point in points if point.op == op)) for op in catalogue.OPS}
    for op, found in shapes.items():
        if op in CHANNEL_DIMS:
            expected = [(rows, *CHANNEL_DIMS[op]) for rows in DEFAULT_ROWS] + CONV_SHAPES[op]
        else:
            expected = [(rows, 49152) for rows in DEFAULT_ROWS]
        assert found == expected, f"{op}: {found}"


def test_channel_shapes_share_their_rows_x_cols_copy_which_comes_first():
    points = plan.expand(composed("op=channel", "dtype=fp16", "backend=baselines"), "cuda")
    copies = [point for point in points if point.is_copy]
    sizes = [(point.rows, point.cols) for point in copies]
    assert sizes == [(rows, 49152) for rows in DEFAULT_ROWS] + [(32, 524288), (32, 802816), (32, 401408),
                                                                 (32, 100352), (8, 3211264)], sizes
    assert all(copy.shape == (copy.rows, copy.cols) for copy in copies), "one copy per (rows, cols), as 2-D"
    keys = list(itertools.chain.from_iterable(map(plan.Point.keys, points)))
    assert len(keys) == len(set(keys)), "32x64x112x112 and 32x256x56x56 share rows and cols, not a key"
    # Measuring order: each point after its copy; per (op, shape) eager before compile.
    seen_copies, seen_eager = set(), set()
    for point in points:
        if point.is_copy:
            seen_copies.add((point.rows, point.cols))
            continue
        assert (point.rows, point.cols) in seen_copies, f"{point.label()} before its copy"
        if point.backend == "eager":
            seen_eager.add((point.op, point.shape))
        assert (point.op, point.shape) in seen_eager, f"{point.label()} before eager"


def test_tiny_shapes_stay_tiny():
    cfg = composed("+preset=smoke", "op=all")
    points = plan.expand(cfg, "cpu")
    assert max(point.numel for point in points) == 8 * 256
    assert {point.shape for point in points if point.op == "dropout3d"} == {(1, 4, 4, 4, 4), (8, 4, 4, 4, 4)}
    assert {point.shape for point in points if point.op == "dropout2d"} == {
        (1, 16, 4, 4), (8, 16, 4, 4), (2, 8, 4, 4), (2, 2, 8, 8)}
    assert sum(point.is_copy for point in points) == 3, "1x256, 8x256 and the conv shapes' 2x128"


def test_few_and_small_keep_the_channel_split_of_default():
    for option in ("few", "small"):
        cfg = composed(f"shape={option}")
        assert {op: tuple(dims) for op, dims in cfg.shape.channel_dims.items()} == CHANNEL_DIMS


# ---- shape=models and +preset=models: the shapes of real models (issue 17) --------------------------

#: What issue 17 lists: (B*T, d) and (B*T, 4d) at 8192 tokens, attention probabilities, the seed project's (64, T, 768).
MODEL_ELEMENT_SHAPES = {(8192, d) for d in (768, 4096, 8192)} | {(8192, 4 * d) for d in (768, 4096, 8192)} \
    | {(8, 12, 1024, 1024), (1, 32, 4096, 4096)}
MODEL_VARIATIONAL_SHAPES = {(64, seq, 768) for seq in (128, 512, 2048)}


def test_models_preset_measures_the_issues_shapes_dtypes_and_ps_for_every_backend():
    points = plan.expand(composed("+preset=models"), "cuda")
    ops = [point for point in points if not point.is_copy]
    assert {point.shape for point in ops if point.op == "dropout"} == MODEL_ELEMENT_SHAPES
    assert {point.shape for point in ops if point.op == "variational"} == MODEL_VARIATIONAL_SHAPES
    assert {point.dtype for point in points} == {"fp16", "bf16", "fp32"}
    assert {point.p for point in ops} == {0.1, 0.5}
    assert {(point.op, point.backend) for point in ops} == ALL_PAIRS, "every backend of both ops"
    assert {point.variational_dim for point in ops if point.op == "variational"} == {1}, \
        "the seed project's (B, T, C) share the mask along T"
    # Per (dtype, p): each element shape with dropout's 6 backends, each variational shape with its 7.
    assert len(ops) == 3 * 2 * (len(MODEL_ELEMENT_SHAPES) * 6 + len(MODEL_VARIATIONAL_SHAPES) * 7)
    assert all("cudagraph" in point.timers for point in points), \
        "every model shape should get the CUDA-graph timer (do_bench times the host at small shapes)"


def test_models_preset_names_every_op_row_and_no_copy_row():
    points = plan.expand(composed("+preset=models"), "cuda")
    names = {point.shape: point.model for point in points if not point.is_copy}
    assert names[(8192, 3072)] == "gpt2-small mlp" and names[(64, 2048, 768)] == "seedrepo T2048"
    assert all(names.values()), f"unnamed model shapes: {[shape for shape, name in names.items() if not name]}"
    assert all(point.model == "" for point in points if point.is_copy)
    assert all(point.fields("fwd", "cudagraph")["model"] == point.model for point in points)


def test_models_shapes_for_ops_without_entries_are_refused_by_name():
    with pytest.raises(plan.ConfigError, match="shape.models: no entry with mask channel, which op dropout1d takes"):
        plan.expand(composed("shape=models", "op=all"), "cpu")


@pytest.mark.parametrize("entry, words", [
    ("{name: x, mask: element, shape: [8192, 768]}", "shape.models\\[1\\]: x 8192x768 repeats a name or shape"),
    ("{name: y, mask: locked, shape: [4, 4]}", "shape.models\\[1\\].mask=locked: allowed: element, variational, channel"),
    ("{mask: element, shape: [4, 4]}", "shape.models\\[1\\].name: missing"),
    ("{name: y, mask: element, shape: [4, 0]}", "shape.models\\[1\\].shape=\\[4, 0\\]: allowed: a list of sizes >= 1"),
])
def test_bad_models_entries_are_one_line_naming_the_entry(entry, words):
    overrides = ["shape=models", f"shape.models=[{{name: x, mask: element, shape: [8192, 768]}}, {entry}]",
                 "op.names=[dropout]"]
    with pytest.raises(plan.ConfigError, match=words) as raised:
        plan.expand(composed(*overrides), "cpu")
    assert "\n" not in str(raised.value)


def test_a_backend_named_for_ops_it_does_not_run_is_refused():
    with pytest.raises(plan.ConfigError, match="backend.names: tutorial runs none of op.names=\\['variational'\\]; "
                                               "allowed with tutorial: op.names containing dropout"):
        plan.expand(composed("op.names=[variational]", "backend.names=[tutorial]"), "cpu")


def test_all_backends_run_each_op_they_can():
    assert plan.chosen_pairs(composed("op.names=[dropout2d]")) == [
        ("dropout2d", "eager"), ("dropout2d", "triton"), ("dropout2d", "dropin"), ("dropout2d", "compile"),
        ("dropout2d", "compile_fallback")]
