"""bench.results: complete lines, resume from what is on disk, a partial last line dropped, foreign files refused."""

import csv
import re

import pytest

from dropbench.bench import results
from dropbench.bench.schema import ADDED_COLUMNS, COLUMNS

#: The columns of the first files, before any of the added ones.
FIRST_COLUMNS = [column for column in COLUMNS if column not in ADDED_COLUMNS]


def row(rows=1, direction="fwd", device="cpu", **overrides) -> dict:
    values = {"op": "dropout", "backend": "eager", "dtype": "fp32", "rows": rows, "cols": 256,
              "shape": f"{rows}x256", "numel": rows * 256, "p": 0.5, "direction": direction, "timer": "cpu", "autograd_threads": False, "ms_median": 0.0123456789,
              "ms_p20": 0.01, "ms_p80": 0.02, "status": "ok", "device": device, "sm_count": None}
    values.update(overrides)
    return values


def read(path) -> list[dict]:
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def test_rows_have_exactly_the_schema_columns_in_order(tmp_path):
    path = tmp_path / "r.csv"
    with results.ResultsFile(path, "cpu") as out:
        out.write(row())
    with open(path, newline="") as file:
        header = next(csv.reader(file))
    assert header == COLUMNS
    (written,) = read(path)
    assert written["sm_count"] == "" and written["peak_bytes"] == "", "missing values should be empty cells"
    assert written["ms_median"] == "0.0123457", "measurements keep 6 significant digits"


def test_a_key_reads_back_equal_to_the_key_written(tmp_path):
    path = tmp_path / "r.csv"
    with results.ResultsFile(path, "cpu") as out:
        out.write(row(p=1 / 3))
    assert results.ResultsFile(path, "cpu").done == {("dropout", "eager", "fp32", 1, 256, "1x256", 1 / 3, "fwd", "cpu", 0)}, \
        "p must round-trip exactly, or resume would measure the point again"


def test_values_with_commas_are_quoted(tmp_path):
    path = tmp_path / "r.csv"
    with results.ResultsFile(path, "cpu") as out:
        out.write(row(status="error", error="RuntimeError: a, b, and c"))
    assert read(path)[0]["error"] == "RuntimeError: a, b, and c"


def test_reopening_resumes_with_the_keys_on_disk(tmp_path):
    path = tmp_path / "r.csv"
    with results.ResultsFile(path, "cpu") as out:
        out.write(row(direction="fwd"))
        out.write(row(direction="bwd"))
    with results.ResultsFile(path, "cpu") as again:
        assert again.resumed == 2
        assert {key[7] for key in again.done} == {"fwd", "bwd"}
        again.write(row(direction="fwd+bwd"))
    lines = path.read_text().splitlines()
    assert lines.count(",".join(COLUMNS)) == 1, "the header must be written once"
    assert len(read(path)) == 3


def test_a_partial_last_line_is_dropped_on_resume(tmp_path):
    path = tmp_path / "r.csv"
    with results.ResultsFile(path, "cpu") as out:
        out.write(row(direction="fwd"))
        out.write(row(direction="bwd"))
    with open(path, "a") as file:
        file.write("dropout,eager,fp32,1,256,1x256,256,0.5,fwd+b")  # killed mid-write
    with results.ResultsFile(path, "cpu") as again:
        assert again.resumed == 2
        again.write(row(direction="fwd+bwd"))
    rows = read(path)
    assert [r["direction"] for r in rows] == ["fwd", "bwd", "fwd+bwd"]
    assert path.read_bytes().endswith(b"\n")


def test_a_partial_header_starts_the_file_again(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("op,backend,dty")
    with results.ResultsFile(path, "cpu") as out:
        assert out.resumed == 0
        out.write(row())
    assert len(read(path)) == 1


def test_a_file_with_other_columns_is_refused(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(results.ResultsError, match="not a results CSV"):
        results.ResultsFile(path, "cpu")


def test_a_file_from_another_device_is_refused(tmp_path):
    path = tmp_path / "r.csv"
    with results.ResultsFile(path, "NVIDIA A100-SXM4-80GB") as out:
        out.write(row(device="NVIDIA A100-SXM4-80GB"))
    with pytest.raises(results.ResultsError, match="A100"):
        results.ResultsFile(path, "NVIDIA H100 80GB HBM3")


def test_writing_a_key_twice_is_refused(tmp_path):
    with results.ResultsFile(tmp_path / "r.csv", "cpu") as out:
        out.write(row())
        with pytest.raises(results.ResultsError, match="already has"):
            out.write(row())


def test_default_path_names_the_device_and_date():
    path = results.default_path("NVIDIA H100 80GB HBM3")
    assert path.parent.name == "results"
    assert re.fullmatch(r"nvidia-h100-80gb-hbm3-\d{4}-\d{2}-\d{2}\.csv", path.name), path.name


def test_environment_on_the_cpu():
    env = results.environment("cpu")
    assert env["device"] == "cpu" and env["sm_count"] is None
    assert env["torch"] and env["triton"] and env["host"]
    assert re.fullmatch(r"(|[0-9a-f]{4,40}(-dirty)?)", env["commit"]), env["commit"]
    assert env["run_id"] != results.environment("cpu")["run_id"], "each sweep invocation needs its own run_id"
    assert set(env) | {"timestamp"} <= set(COLUMNS)


def test_timestamps_are_iso_utc():
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z", results.utc_now())



def test_commit_can_be_named_where_the_tree_has_no_git(monkeypatch):
    monkeypatch.setenv("DROPBENCH_COMMIT", "4cb8713")
    assert results.git_commit() == "4cb8713"


def test_a_file_from_before_the_shape_column_is_upgraded_and_resumed(tmp_path):
    path = tmp_path / "old.csv"
    with open(path, "w", newline="") as file:
        writer = csv.DictWriter(file, FIRST_COLUMNS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerow(row(rows=8, ms_median="0.5"))
    with results.ResultsFile(path, "cpu") as out:
        assert out.done == {("dropout", "eager", "fp32", 8, 256, "8x256", 0.5, "fwd", "cpu", 0)}
        out.write(row(rows=8, direction="bwd"))
    rows = read(path)
    assert list(rows[0]) == COLUMNS, "the file should now have this version's columns"
    assert [(r["shape"], r["direction"], r["ms_median"]) for r in rows] == [
        ("8x256", "fwd", "0.5"), ("8x256", "bwd", "0.0123457")], "old rows kept as they were, shape filled"


def test_shapes_with_the_same_rows_and_cols_are_two_keys(tmp_path):
    with results.ResultsFile(tmp_path / "r.csv", "cpu") as out:
        out.write(row(rows=2, cols=128, op="dropout2d", shape="2x8x4x4"))
        out.write(row(rows=2, cols=128, op="dropout2d", shape="2x2x8x8"))
        with pytest.raises(results.ResultsError, match="already has"):
            out.write(row(rows=2, cols=128, op="dropout2d", shape="2x2x8x8"))


def test_a_row_without_shape_is_malformed(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text(results.HEADER + results.format_line(row(shape="")))
    with pytest.raises(results.ResultsError, match="line 2: empty shape"):
        results.ResultsFile(path, "cpu")


def _without_autograd_threads(path, rows):
    with open(path, "w", newline="") as file:
        # The columns of a file written after `shape` and before `autograd_threads`.
        writer = csv.DictWriter(file, [c for c in COLUMNS if c == "shape" or c not in ADDED_COLUMNS], extrasaction="ignore",
                                lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def test_a_file_from_before_the_autograd_threads_column_is_upgraded_with_pytorchs_default(tmp_path):
    path, gpu = tmp_path / "old.csv", "NVIDIA H100 80GB HBM3"
    _without_autograd_threads(path, [row(rows=8, device=gpu, timer="do_bench")])
    with results.ResultsFile(path, gpu, autograd_threads=True) as out:
        out.write(row(rows=8, direction="bwd", device=gpu, timer="do_bench", autograd_threads=True))
    assert [(r["direction"], r["autograd_threads"]) for r in read(path)] == [("fwd", "True"), ("bwd", "True")]


def test_cpu_rows_from_before_the_column_read_as_the_calling_thread(tmp_path):
    path = tmp_path / "old.csv"
    _without_autograd_threads(path, [row(rows=8)])
    assert results.ResultsFile(path, "cpu", autograd_threads=False).rows[0]["autograd_threads"] == "False"


def test_an_old_file_of_another_setting_is_refused_before_it_is_rewritten(tmp_path):
    path, gpu = tmp_path / "old.csv", "NVIDIA H100 80GB HBM3"
    _without_autograd_threads(path, [row(rows=8, device=gpu, timer="do_bench")])
    before = path.read_bytes()
    with pytest.raises(results.ResultsError, match="autograd_threads=True, this sweep uses False"):
        results.ResultsFile(path, gpu, autograd_threads=False)
    assert path.read_bytes() == before, "a refused file must be left as it was"


def test_a_file_of_another_autograd_threads_setting_is_refused(tmp_path):
    path = tmp_path / "r.csv"
    with results.ResultsFile(path, "cpu", autograd_threads=False) as out:
        out.write(row(autograd_threads=False))
    with pytest.raises(results.ResultsError, match="timing.autograd_threads=False, this sweep uses True"):
        results.ResultsFile(path, "cpu", autograd_threads=True)
    assert results.ResultsFile(path, "cpu", autograd_threads=False).resumed == 1


def test_an_unknown_header_is_refused(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text(",".join(c for c in COLUMNS if c != "timer") + "\n")
    with pytest.raises(results.ResultsError, match="not a results CSV of this version: missing column.s. timer"):
        results.ResultsFile(path, "cpu")


def test_old_backend_names_are_rewritten_before_appending(tmp_path):
    path = tmp_path / "old.csv"
    path.write_text(results.HEADER + results.format_line(row(backend="triton_seeded", variational_dim=0)))
    with results.ResultsFile(path, "cpu") as out:
        out.write(row(backend="triton", direction="bwd"))
    assert [r["backend"] for r in read(path)] == ["triton", "triton"], "one file, one name per backend"


def test_a_key_without_variational_dim_is_found_as_dim_0(tmp_path):
    with results.ResultsFile(tmp_path / "r.csv", "cpu") as out:
        out.write(row())
        out.write(row(op="variational", variational_dim=1))
        assert ("dropout", "eager", "fp32", 1, 256, "1x256", 0.5, "fwd", "cpu") in out.done, \
            "the runner's keys (no variational_dim yet) must still find their rows"
        assert ("variational", "eager", "fp32", 1, 256, "1x256", 0.5, "fwd", "cpu") not in out.done, \
            "a row of another variational_dim is another measurement"


def test_new_rows_name_the_mask_contract(tmp_path):
    path = tmp_path / "r.csv"
    with results.ResultsFile(path, "cpu") as out:
        out.write(row())
    assert read(path)[0]["mask_contract"] == "v3"


def test_results_name_the_kernels_mask_contract():
    from dropbench.kernels import MASK_CONTRACT

    assert results.MASK_CONTRACT == MASK_CONTRACT == "v3"
