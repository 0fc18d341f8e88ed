"""bench.table: the one reader (partial lines, old headers, types, unique keys, bad files) and derive()."""

import csv
import logging

import numpy as np
import pandas as pd
import pytest

from dropbench.bench import schema, table

GPU = "NVIDIA H100 80GB HBM3"


def row(rng, **overrides) -> dict:
    """One ok measurement with fresh random times."""
    ms = float(rng.uniform(0.01, 1.0))
    values = {"op": "dropout", "backend": "triton", "dtype": "fp16", "rows": 1024, "cols": 4096,
              "shape": "1024x4096", "numel": 1024 * 4096, "p": 0.5, "variational_dim": 0, "direction": "fwd",
              "timer": "cudagraph", "autograd_threads": False, "ms_median": ms, "ms_p20": 0.98 * ms,
              "ms_p80": 1.02 * ms, "samples": 200, "mask_contract": "v1", "status": "ok", "device": GPU,
              "timestamp": "2026-11-23T10:00:00Z"}
    values.update(overrides)
    return values


def write(path, rows, columns=schema.COLUMNS):
    with open(path, "w", newline="") as file:
        writer = csv.DictWriter(file, columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture
def rng():
    return np.random.default_rng()


def test_a_partial_last_line_is_dropped_with_a_message(tmp_path, rng, caplog):
    path = write(tmp_path / "r.csv", [row(rng), row(rng, direction="bwd")])
    text = path.read_text()
    path.write_text(text[:-25])  # cut mid-row, as a killed run leaves it
    with caplog.at_level(logging.WARNING):
        frame = table.read(path)
    assert list(frame["direction"]) == ["fwd"], "a cut-off row must never be read as data"
    assert "partial last line" in caplog.text, "dropping a line must be said"
    assert path.read_text() == text[:-25], "a reader must not change the file"


def test_a_file_without_shape_and_autograd_threads_is_upgraded(tmp_path, rng):
    first = [column for column in schema.COLUMNS if column not in schema.ADDED_COLUMNS]
    path = write(tmp_path / "old.csv", [row(rng, rows=8, cols=256)], columns=first)
    (old,) = table.read(path).to_dict("records")
    assert (old["shape"], old["autograd_threads"], old["variational_dim"], old["mask_contract"]) == \
        ("8x256", True, 0, "v1"), "an old GPU file reads as (rows, cols), device thread, dim 0, contract v1"
    assert pd.isna(old["samples"]), "old files did not record samples: empty, not invented"


def test_old_backend_names_read_as_triton(tmp_path, rng):
    path = write(tmp_path / "old.csv", [row(rng, backend="triton_seeded"),
                                        row(rng, op="variational", backend="triton_variational")])
    assert set(table.read(path)["backend"]) == {"triton"}, "old names must pair with new files"


def test_a_duplicate_key_is_refused_in_one_line(tmp_path, rng):
    path = write(tmp_path / "r.csv", [row(rng), row(rng, direction="bwd"), row(rng)])
    with pytest.raises(table.TableError, match=r"line 4 repeats the key") as error:
        table.read(path)
    assert "\n" not in str(error.value)


def test_rows_that_differ_only_in_variational_dim_are_two_measurements(tmp_path, rng):
    path = write(tmp_path / "r.csv", [row(rng, op="variational", variational_dim=0),
                                      row(rng, op="variational", variational_dim=1)])
    assert len(table.read(path)) == 2


@pytest.mark.parametrize("content, message", [
    (None, "no such file"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00", "binary data"),
    (b"a,b,c\n1,2,3\n", "not a results CSV of this version: missing column"),
    (b"\xff\xfe\xfd\n", "not UTF-8"),
])
def test_a_file_that_is_not_a_results_csv_is_refused_in_one_line(tmp_path, content, message):
    path = tmp_path / "in.csv"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(table.TableError, match=message) as error:
        table.read(path)
    assert "\n" not in str(error.value) and str(path) in str(error.value)


def test_a_value_outside_the_schema_is_named_with_the_allowed_ones(tmp_path, rng):
    path = write(tmp_path / "r.csv", [row(rng, timer="stopwatch")])
    with pytest.raises(table.TableError, match="line 2: timer 'stopwatch' is not one of do_bench"):
        table.read(path)


def test_training_step_and_host_rows_are_valid(tmp_path, rng):
    path = write(tmp_path / "r.csv", [row(rng, op="train_step", direction="step", timer="train_compile"),
                                      row(rng, timer="host")])
    frame = table.read(path)
    assert frame["gbps"].isna().all() and frame["pct_of_copy"].isna().all(), \
        "host and training-step rows have no bandwidth figures"


def test_derive_reads_each_row_against_its_copy_and_eager(rng):
    copy_ms, eager_ms, triton_ms = sorted(rng.uniform(0.05, 1.0, size=3))
    frame = pd.DataFrame([
        row(rng, op="copy", backend="copy", p=0.0, ms_median=copy_ms),
        row(rng, backend="eager", direction="fwd+bwd", ms_median=eager_ms),
        row(rng, backend="triton", direction="fwd+bwd", ms_median=triton_ms),
    ])
    frame["numel"] = frame["numel"].astype("Int64")
    triton = table.derive(frame).iloc[2]
    assert triton["pct_of_copy"] == pytest.approx(100 * copy_ms * 2 / triton_ms)
    assert triton["us_over_copy"] == pytest.approx(1000 * (triton_ms - 2 * copy_ms))
    assert triton["speedup_vs_eager"] == pytest.approx(eager_ms / triton_ms)
    assert triton["gbps"] == pytest.approx(2 * 1024 * 4096 * 2 * 2 / (triton_ms * 1e-3) / 1e9)


def test_derived_columns_come_from_the_rows_not_the_file(tmp_path, rng):
    rows = [row(rng, op="copy", backend="copy", p=0.0), row(rng, pct_of_copy=999.0, gbps=1.0)]
    frame = table.read(write(tmp_path / "r.csv", rows))
    assert frame.loc[1, "pct_of_copy"] == pytest.approx(100 * rows[0]["ms_median"] / rows[1]["ms_median"]), \
        "a stale stored pct_of_copy must not reach readers"
