"""bench.compare: verdicts, exit codes and reports on small synthetic results CSVs (CPU only)."""
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from dropbench.bench import compare as cmp
from dropbench.bench.schema import COLUMNS

REPO = Path(__file__).resolve().parents[1]
H100 = "NVIDIA H100 80GB HBM3"
A100 = "NVIDIA A100-SXM4-80GB"


def row(**overrides) -> dict:
    """One ok results row with every schema column; a 1.0 ms median in a tight band."""
    values = {
        "op": "dropout", "backend": "triton_seeded", "dtype": "fp16", "rows": 4096, "cols": 4096,
        "numel": 4096 * 4096, "p": 0.1, "direction": "fwd", "timer": "do_bench",
        "ms_median": 1.0, "ms_p20": 0.99, "ms_p80": 1.01, "gbps": 67.1, "pct_of_copy": 95.0,
        "speedup_vs_eager": 2.0, "saved_bytes": 0, "peak_bytes": 0, "config": "", "status": "ok",
        "error": "", "device": H100, "sm_count": 132, "torch": "2.11.0", "triton": "3.6.0",
        "cuda": "12.8", "commit": "abc1234", "host": "gpu-1", "timestamp": "2026-01-01T00:00:00Z",
        "run_id": "r1", "autograd_threads": "False",
    }
    values.update(overrides)
    values.setdefault("shape", f"{values['rows']}x{values['cols']}")
    if "ms_median" in overrides and "ms_p20" not in overrides:
        values["ms_p20"] = values["ms_median"] * 0.99
        values["ms_p80"] = values["ms_median"] * 1.01
    return values


def write(path: Path, rows: list[dict]) -> str:
    pd.DataFrame(rows, columns=COLUMNS).to_csv(path, index=False)
    return str(path)


def run(tmp_path, baseline_rows, new_rows, *flags):
    """main() on two CSVs written from rows; returns (exit code, result of compare)."""
    base = write(tmp_path / "baseline.csv", baseline_rows)
    new = write(tmp_path / "new.csv", new_rows)
    code = cmp.main([base, new, *flags])
    result = cmp.compare(cmp.load_results(base), cmp.load_results(new))
    return code, result


def verdict(result: pd.DataFrame, **key) -> str:
    match = result
    for column, value in key.items():
        match = match[match[column] == value]
    assert len(match) == 1, f"expected one row for {key}, got {len(match)}:\n{result}"
    return match["verdict"].iloc[0]


def test_improvement_is_reported_and_passes(tmp_path, capsys):
    code, result = run(tmp_path, [row()], [row(ms_median=0.8)])
    assert verdict(result, op="dropout") == "improvement"
    assert result["ratio"].iloc[0] == pytest.approx(0.8)
    assert code == 0
    assert "Improvements (1)" in capsys.readouterr().out


def test_regression_outside_noise_fails(tmp_path, capsys):
    code, result = run(tmp_path, [row()], [row(ms_median=1.2)])
    assert verdict(result, op="dropout") == "regression"
    assert code == 1
    out = capsys.readouterr().out
    assert "Regressions (1)" in out and "+20.0%" in out and out.rstrip().splitlines()[-2].startswith("FAIL")


def test_slowdown_inside_noise_band_is_not_flagged(tmp_path):
    # 10% slower median, but the new p20 (1.00) lies below the baseline p80 (1.05).
    code, result = run(tmp_path, [row(ms_median=1.0, ms_p20=0.95, ms_p80=1.05)],
                       [row(ms_median=1.10, ms_p20=1.00, ms_p80=1.20)])
    assert verdict(result, op="dropout") == "unchanged"
    assert "within noise" in result["note"].iloc[0]
    assert code == 0


def test_slowdown_below_threshold_is_not_flagged(tmp_path):
    # 3% slower with separated bands: real, but under the 5% default.
    code, result = run(tmp_path, [row(ms_median=1.0, ms_p20=1.0, ms_p80=1.0)],
                       [row(ms_median=1.03, ms_p20=1.03, ms_p80=1.03)])
    assert verdict(result, op="dropout") == "unchanged"
    assert code == 0


def test_row_missing_in_new_is_reported_and_fails_only_when_asked(tmp_path, capsys):
    baseline = [row(), row(dtype="bf16")]
    code, result = run(tmp_path, baseline, [row()])
    assert verdict(result, dtype="bf16") == "missing_in_new"
    assert code == 0
    assert "Missing in new (1)" in capsys.readouterr().out
    assert cmp.main([str(tmp_path / "baseline.csv"), str(tmp_path / "new.csv"), "--fail-on-missing"]) == 1


def test_row_only_in_new_is_reported_and_passes(tmp_path, capsys):
    code, result = run(tmp_path, [row()], [row(), row(backend="eager", ms_median=5.0)])
    assert verdict(result, backend="eager") == "new_only"
    assert code == 0
    assert "New only (1)" in capsys.readouterr().out


def test_device_mismatch_is_never_compared(tmp_path, capsys):
    # Three times slower, but on another board: not a regression, and said loudly.
    code, result = run(tmp_path, [row(device=H100)], [row(device=A100, ms_median=3.0)])
    assert verdict(result, op="dropout") == "device_mismatch"
    assert result["ratio"].isna().all()
    assert code == 0
    out = capsys.readouterr().out
    assert out.startswith("WARNING: the files were measured on different devices")
    assert H100 in out and A100 in out


def test_multi_device_files_pair_each_device_with_itself(tmp_path):
    baseline = [row(device=H100), row(device=A100, ms_median=2.0)]
    code, result = run(tmp_path, baseline, [row(device=H100), row(device=A100, ms_median=2.0)])
    assert list(result["verdict"]) == ["unchanged", "unchanged"]
    assert code == 0


def test_ok_to_incorrect_is_broken_and_fails(tmp_path, capsys):
    new = [row(status="incorrect", error="max abs err 0.5", ms_median=float("nan"))]
    code, result = run(tmp_path, [row()], new)
    assert verdict(result, op="dropout") == "broken"
    assert code == 1
    assert "ok -> incorrect: max abs err 0.5" in capsys.readouterr().out


def test_per_op_threshold_override(tmp_path, capsys):
    # Both ops 7% slower with separated bands; only variational is allowed 8%.
    baseline = [row(op="variational", backend="triton_variational"), row()]
    new = [row(op="variational", backend="triton_variational", ms_median=1.07), row(ms_median=1.07)]
    base, fresh = write(tmp_path / "b.csv", baseline), write(tmp_path / "n.csv", new)
    result = cmp.compare(cmp.load_results(base), cmp.load_results(fresh), per_op={"variational": 0.08})
    assert verdict(result, op="variational") == "unchanged"
    assert verdict(result, op="dropout") == "regression"

    assert cmp.main([base, fresh]) == 1
    assert "Regressions (2)" in capsys.readouterr().out
    assert cmp.main([base, fresh, "--threshold-for", "variational=0.08"]) == 1
    out = capsys.readouterr().out
    assert "Regressions (1)" in out and "threshold 8%" not in out and "threshold 5%" in out
    assert cmp.main([base, fresh, "--threshold-for", "variational=0.08", "--threshold", "0.10"]) == 0


def test_unknown_op_in_threshold_override_is_bad_input(tmp_path, capsys):
    base = write(tmp_path / "b.csv", [row()])
    with pytest.raises(SystemExit) as exit_info:
        cmp.main([base, base, "--threshold-for", "variatonal=0.08"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "variatonal" in err and len(err.strip().splitlines()) == 1


def test_pct_of_copy_floor(tmp_path, capsys):
    new = [row(pct_of_copy=80.0),                                 # fails the 90% floor
           row(rows=128, pct_of_copy=20.0),                       # latency bound: ignored
           row(backend="eager", pct_of_copy=40.0),                # not a Triton backend: ignored
           row(backend="triton_seeded", dtype="bf16", pct_of_copy=92.0)]
    base, fresh = write(tmp_path / "b.csv", new), write(tmp_path / "n.csv", new)
    assert cmp.main([base, fresh]) == 0
    assert cmp.main([base, fresh, "--min-pct-of-copy", "90"]) == 1
    assert "Below the pct_of_copy floor (1)" in capsys.readouterr().out
    floor = cmp.below_floor(cmp.load_results(fresh), 90.0)
    assert list(zip(floor["rows"], floor["pct_of_copy"])) == [(4096, 80.0)]
    assert cmp.main([base, fresh, "--min-pct-of-copy", "90", "--floor-min-rows", "8192"]) == 0


def test_copy_rows_are_not_flagged_but_reported_as_drift(tmp_path, capsys):
    copy = {"op": "copy", "backend": "copy", "pct_of_copy": 100.0}
    code, result = run(tmp_path, [row(**copy), row()], [row(**copy, ms_median=2.0), row()])
    assert "copy" not in set(result["op"])
    assert code == 0
    assert "median new/baseline 2.00 over 1 copy rows" in capsys.readouterr().out


def test_markdown_report(tmp_path):
    baseline = [row(), row(dtype="bf16"), row(dtype="fp32"), row(dtype="fp64")]
    new = [row(ms_median=1.25), row(dtype="bf16", ms_median=0.5), row(dtype="fp32"),
           row(dtype="fp64", status="error", error="a | b")]
    report = tmp_path / "summary.md"
    code, _ = run(tmp_path, baseline, new, "--markdown", str(report))
    assert code == 1
    text = report.read_text()
    assert text.startswith("## Performance compare: FAIL")
    assert "### Regressions (1)" in text and "### Improvements (1)" in text
    assert "### Broken (ok in baseline, not ok in new) (1)" in text
    assert "| dropout | triton_seeded | fp16 | 4096x4096 | 0.1 | fwd | do_bench |" in text
    assert "1.250 (+25.0%)" in text and "0.500 (-50.0%)" in text
    assert "ok -> error: a \\| b" in text, "a pipe inside a cell must be escaped"
    assert "<details><summary>Unchanged (1)</summary>" in text
    assert text.index("Regressions") < text.index("Improvements") < text.index("Unchanged")


def test_missing_column_is_bad_input(tmp_path, capsys):
    base = write(tmp_path / "b.csv", [row()])
    pd.DataFrame([row()]).drop(columns="ms_p80").to_csv(tmp_path / "n.csv", index=False)
    assert cmp.main([base, str(tmp_path / "n.csv")]) == 2
    err = capsys.readouterr().err
    assert "missing column(s) ms_p80" in err and "n.csv" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_empty_file_is_bad_input(tmp_path, capsys):
    base = write(tmp_path / "b.csv", [row()])
    (tmp_path / "empty.csv").write_text("")
    assert cmp.main([base, str(tmp_path / "empty.csv")]) == 2
    assert "empty.csv: empty file" in capsys.readouterr().err


def test_header_only_file_is_bad_input(tmp_path, capsys):
    base = write(tmp_path / "b.csv", [row()])
    header_only = write(tmp_path / "header.csv", [])
    assert cmp.main([base, header_only]) == 2
    assert "header.csv: no data rows" in capsys.readouterr().err


def test_missing_file_is_bad_input(tmp_path, capsys):
    base = write(tmp_path / "b.csv", [row()])
    assert cmp.main([str(tmp_path / "nowhere.csv"), base]) == 2
    assert "nowhere.csv: no such file" in capsys.readouterr().err


def test_duplicate_key_is_bad_input(tmp_path, capsys):
    base = write(tmp_path / "b.csv", [row()])
    dupes = write(tmp_path / "d.csv", [row(), row(ms_median=2.0)])
    assert cmp.main([base, dupes]) == 2
    err = capsys.readouterr().err
    assert "d.csv: 2 rows share one key" in err and "dropout triton_seeded fp16 4096x4096" in err


def test_unchanged_rows_are_listed_only_with_verbose(tmp_path, capsys):
    run(tmp_path, [row()], [row()])
    assert "1 unchanged (list them with --verbose)" in capsys.readouterr().out
    cmp.main([str(tmp_path / "baseline.csv"), str(tmp_path / "new.csv"), "--verbose"])
    out = capsys.readouterr().out
    assert "Unchanged (1)" in out and "1.000 (+0.0%)" in out


def test_module_entry_point_runs_without_torch(tmp_path):
    base = write(tmp_path / "b.csv", [row()])
    slower = write(tmp_path / "n.csv", [row(ms_median=1.5)])
    probe = ("import sys, runpy; sys.argv = ['compare', *sys.argv[1:]]\n"
             "try:\n    runpy.run_module('dropbench.bench.compare', run_name='__main__')\n"
             "except SystemExit as stop:\n"
             "    assert 'torch' not in sys.modules, 'bench.compare must not import torch'\n"
             "    raise")
    done = subprocess.run([sys.executable, "-c", probe, base, slower], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr
    assert "Regressions (1)" in done.stdout


def test_a_file_without_the_shape_column_still_pairs_with_a_new_one(tmp_path):
    old = tmp_path / "old.csv"
    pd.DataFrame([row(), row(op="copy", backend="copy")]).drop(columns="shape").to_csv(old, index=False)
    new = write(tmp_path / "new.csv", [row(ms_median=1.5), row(op="copy", backend="copy")])
    result = cmp.compare(cmp.load_results(str(old)), cmp.load_results(new))
    assert list(cmp.load_results(str(old))["shape"]) == ["4096x4096", "4096x4096"], "shape = rows x cols"
    assert verdict(result, op="dropout") == "regression"
    assert cmp.copy_drift(cmp.load_results(str(old)), cmp.load_results(new)) == (1.0, 1)


def test_shapes_with_the_same_rows_and_cols_are_different_measurements(tmp_path, capsys):
    conv = {"op": "dropout2d", "rows": 32, "cols": 802816}
    baseline = [row(**conv, shape="32x64x112x112"), row(**conv, shape="32x256x56x56")]
    new = [row(**conv, shape="32x64x112x112", ms_median=1.5), row(**conv, shape="32x256x56x56")]
    code, result = run(tmp_path, baseline, new)
    assert verdict(result, shape="32x64x112x112") == "regression"
    assert verdict(result, shape="32x256x56x56") == "unchanged"
    assert code == 1
    assert "dropout2d  triton_seeded  fp16   32x64x112x112" in capsys.readouterr().out


def test_a_new_op_can_have_its_own_threshold(tmp_path):
    base = write(tmp_path / "b.csv", [row(op="feature_alpha_dropout")])
    fresh = write(tmp_path / "n.csv", [row(op="feature_alpha_dropout", ms_median=1.07)])
    assert cmp.main([base, fresh]) == 1
    assert cmp.main([base, fresh, "--threshold-for", "feature_alpha_dropout=0.08"]) == 0


@pytest.mark.parametrize("name", ["h100-default-2026-11-23.csv", "ci-demo-h100-2026-11-23/ci-a.csv"])
def test_committed_results_from_before_the_shape_column_still_compare(name):
    path = str(REPO / "results" / name)
    frame = cmp.load_results(path)
    assert (frame["shape"] == frame["rows"].astype(str) + "x" + frame["cols"].astype(str)).all()
    assert cmp.has_failed(cmp.compare(frame, frame), frame.iloc[0:0]) is False


def test_a_pair_measured_with_different_autograd_threads_says_so(tmp_path):
    old = tmp_path / "old.csv"
    pd.DataFrame([row(direction="bwd")]).drop(columns="autograd_threads").to_csv(old, index=False)
    new = write(tmp_path / "new.csv", [row(direction="bwd", ms_median=0.5)])
    result = cmp.compare(cmp.load_results(str(old)), cmp.load_results(new))
    assert result["note"].iloc[0] == "autograd_threads True -> False", "files without the column ran with True"
    same = cmp.compare(cmp.load_results(new), cmp.load_results(new))
    assert same["note"].iloc[0] == ""
