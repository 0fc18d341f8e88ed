"""bench.results: complete lines, resume from what is on disk, a partial last line dropped, foreign files refused."""

import csv
import re

import pytest

from bench import results
from bench.schema import COLUMNS


def row(rows=1, direction="fwd", device="cpu", **overrides) -> dict:
    values = {"op": "dropout", "backend": "eager", "dtype": "fp32", "rows": rows, "cols": 256,
              "numel": rows * 256, "p": 0.5, "direction": direction, "timer": "cpu", "ms_median": 0.0123456789,
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
    assert results.ResultsFile(path, "cpu").done == {("dropout", "eager", "fp32", 1, 256, 1 / 3, "fwd", "cpu")}, \
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
        assert {key[6] for key in again.done} == {"fwd", "bwd"}
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
        file.write("dropout,eager,fp32,1,256,256,0.5,fwd+b")  # killed mid-write
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
    with pytest.raises(results.ResultsError, match="header"):
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
