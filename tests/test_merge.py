"""bench.merge: per-job results CSVs into one, and the multirun callback's report. No sweep runs here."""

import csv
from pathlib import Path

import pytest
from hydra.core.utils import JobReturn, JobStatus
from hydra.types import RunMode
from omegaconf import OmegaConf

from dropbench.bench import merge, schema, table
from dropbench.bench.table import HEADER, format_line


def row(dtype="fp32", rows=1, status="ok", timestamp="2026-01-01T00:00:00Z", ms=0.5, device="cpu", **extra):
    base = {"op": "dropout", "backend": "eager", "dtype": dtype, "rows": rows, "cols": 256,
            "shape": f"{rows}x256", "numel": rows * 256, "p": 0.5, "variational_dim": 0, "direction": "fwd",
            "timer": "cpu", "autograd_threads": False, "mask_contract": "v1",
            "ms_median": ms if status == "ok" else None, "status": status,
            "error": "" if status == "ok" else "RuntimeError: boom", "device": device,
            "timestamp": timestamp, "run_id": "r1"}
    return {**base, **extra}


def write_csv(path: Path, rows, tail: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + "".join(format_line(r) for r in rows) + tail)
    return path


def read(path) -> list[dict]:
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def key(r) -> tuple:
    return tuple(r[column] for column in schema.KEY_COLUMNS)


def test_merge_is_the_union_in_schema_order(tmp_path):
    a = write_csv(tmp_path / "a.csv", [row("fp32", 1), row("fp32", 8)])
    b = write_csv(tmp_path / "b.csv", [row("fp16", 1), row("fp16", 8)])
    frame = merge.merge([a, b])
    assert list(frame.columns) == schema.COLUMNS
    assert len(frame) == 4
    out = merge.write(frame, tmp_path / "merged.csv")
    assert out.read_text().splitlines()[0] == ",".join(schema.COLUMNS)
    assert sorted(map(key, read(out))) == sorted(map(key, read(a) + read(b))), "rows lost or invented"
    measured = [{column: value for column, value in r.items() if column not in table.DERIVED}
                for r in read(out)]
    assert measured == [{column: value for column, value in r.items() if column not in table.DERIVED}
                        for r in read(a) + read(b)], "kept rows should be written back as the jobs wrote them"


def test_a_file_from_before_the_shape_column_merges_with_shape_filled(tmp_path):
    old = tmp_path / "old.csv"
    with open(old, "w", newline="") as file:
        first = [column for column in schema.COLUMNS if column not in schema.ADDED_COLUMNS]
        writer = csv.DictWriter(file, first, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerow(row("fp32", 8))
    new = write_csv(tmp_path / "new.csv", [row("fp16", 8)])
    merged = merge.merge([old, new])
    assert list(merged.columns) == schema.COLUMNS
    assert list(merged["shape"]) == ["8x256", "8x256"]
    assert sorted(merged["dtype"]) == ["fp16", "fp32"]


def test_same_key_twice_keeps_ok_over_failed(tmp_path):
    failed_newer = write_csv(tmp_path / "a.csv", [row(status="error", timestamp="2026-02-01T00:00:00Z")])
    ok_older = write_csv(tmp_path / "b.csv", [row(status="ok", timestamp="2026-01-01T00:00:00Z")])
    merged = merge.merge([failed_newer, ok_older])
    assert len(merged) == 1, "a key must appear once"
    assert merged.iloc[0]["status"] == "ok", "an ok row beats a failed one, however new"


def test_same_key_twice_both_ok_keeps_the_newest(tmp_path):
    newer = write_csv(tmp_path / "a.csv", [row(ms=0.25, timestamp="2026-03-01T00:00:00Z")])
    older = write_csv(tmp_path / "b.csv", [row(ms=0.75, timestamp="2026-01-01T00:00:00Z")])
    merged = merge.merge([newer, older])
    assert len(merged) == 1 and merged.iloc[0]["ms_median"] == 0.25, "the newer ok row should win"


def test_partial_last_line_is_left_out(tmp_path):
    path = write_csv(tmp_path / "a.csv", [row(rows=1)], tail="dropout,eager,fp32,8,25")
    assert len(merge.merge([path])) == 1
    assert path.read_text().endswith("25"), "merging must not modify a job's CSV"


def test_rows_of_two_devices_are_refused(tmp_path):
    a = write_csv(tmp_path / "a.csv", [row(device="NVIDIA H100")])
    b = write_csv(tmp_path / "b.csv", [row(dtype="fp16", device="NVIDIA A100")])
    with pytest.raises(merge.MergeError, match="more than one device"):
        merge.merge([a, b])


def test_cli_writes_the_merged_file(tmp_path, capsys):
    a = write_csv(tmp_path / "a.csv", [row("fp32")])
    b = write_csv(tmp_path / "b.csv", [row("fp16"), row("fp32")])
    merge.main([str(tmp_path / "out.csv"), str(a), str(b)])
    assert len(read(tmp_path / "out.csv")) == 2
    assert "2 rows from 2 files" in capsys.readouterr().out


def fake_job(sweep: Path, overrides: list[str], rows=None, status=None, tail="") -> Path:
    folder = sweep / ",".join(sorted(overrides))
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text("".join(f"- {item}\n" for item in overrides))
    if rows is not None:
        write_csv(folder / "results.csv", rows, tail)
    if status is not None:
        (folder / merge.JOB_STATUS).write_text(status + "\n")
    return folder


def multirun_config(sweep: Path, task: list[str]):
    return OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}, "overrides": {"task": task},
                                       "mode": RunMode.MULTIRUN}})


def test_callback_merges_a_fake_multirun_and_names_the_broken_jobs(tmp_path, caplog):
    sweep = tmp_path / "multirun"
    task = ["+preset=smoke", "dtype=fp32,fp16,bf16,fp64"]
    fake_job(sweep, ["+preset=smoke", "dtype=fp32"], [row("fp32", 1), row("fp32", 8)], "COMPLETED")
    fake_job(sweep, ["+preset=smoke", "dtype=fp16"], [row("fp16", 1)], None, tail="dropout,eag")  # killed
    fake_job(sweep, ["+preset=smoke", "dtype=bf16"], None, "FAILED: ResultsError: wrong device")
    # dtype=fp64 never started: no folder at all.
    merge.MergeCallback().on_multirun_end(multirun_config(sweep, task))
    merged = read(sweep / "merged.csv")
    assert sorted(r["dtype"] for r in merged) == ["fp16", "fp32", "fp32"]
    log = caplog.text
    assert "dtype=fp16: partial CSV, 1 rows" in log
    assert "dtype=bf16: no CSV (FAILED: ResultsError: wrong device)" in log
    assert "dtype=fp64: never started" in log
    assert "merge: 1 of 4 jobs complete; 3 incomplete" in log


def test_callback_notes_how_each_job_ended(tmp_path):
    callback = merge.MergeCallback()
    config = OmegaConf.create({"hydra": {"mode": RunMode.MULTIRUN, "runtime": {"output_dir": str(tmp_path)}}})
    callback.on_job_end(config, JobReturn(status=JobStatus.COMPLETED, _return_value=None))
    assert (tmp_path / merge.JOB_STATUS).read_text().strip() == "COMPLETED"
    callback.on_job_end(config, JobReturn(status=JobStatus.FAILED, _return_value=MemoryError("killed")))
    assert (tmp_path / merge.JOB_STATUS).read_text().strip() == "FAILED: MemoryError: killed"


def test_rows_of_two_autograd_threads_settings_are_refused(tmp_path):
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    write_csv(first, [row(direction="bwd", autograd_threads="True")])
    write_csv(second, [row(direction="bwd", autograd_threads="False")])
    with pytest.raises(merge.MergeError, match="more than one timing.autograd_threads"):
        merge.merge([first, second])


@pytest.mark.parametrize("content, message", [(None, "no such file"), (b"\x00\x01binary", "binary data")])
def test_cli_refuses_a_missing_or_binary_input_in_one_line(tmp_path, capsys, content, message):
    good = write_csv(tmp_path / "a.csv", [row()])
    bad = tmp_path / "b.csv"
    if content is not None:
        bad.write_bytes(content)
    with pytest.raises(SystemExit) as exit_:
        merge.main([str(tmp_path / "out.csv"), str(good), str(bad)])
    error = capsys.readouterr().err
    assert exit_.value.code == 2, "bad input exits 2, as the other commands do"
    assert error.startswith("dropbench-merge: error:") and message in error and error.count("\n") == 1, \
        f"expected one line naming {message!r}, got {error!r}"
    assert not (tmp_path / "out.csv").exists(), "no merged file from a refused input"
