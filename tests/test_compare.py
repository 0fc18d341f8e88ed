"""bench.compare: verdicts, exit codes and reports on small synthetic results CSVs (CPU only)."""
import subprocess
import sys
from pathlib import Path

import numpy as np
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
        "op": "dropout", "backend": "triton", "dtype": "fp16", "rows": 4096, "cols": 4096,
        "numel": 4096 * 4096, "p": 0.1, "variational_dim": 0, "direction": "fwd", "timer": "do_bench",
        "samples": 100, "mask_contract": "v1",
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
    # Three times slower, but on another board: not a regression, and nothing was compared.
    code, result = run(tmp_path, [row(device=H100)], [row(device=A100, ms_median=3.0)])
    assert verdict(result, op="dropout") == "device_mismatch"
    assert result["ratio"].isna().all()
    assert code == cmp.EXIT_EMPTY, "comparing nothing must not pass"
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "device mismatch" in err and H100 in err and A100 in err, err


def test_nothing_compared_passes_only_when_allowed(tmp_path, capsys):
    code, _ = run(tmp_path, [row(device=H100)], [row(device=A100)], "--allow-empty")
    assert code == 0
    assert capsys.readouterr().out.startswith("WARNING: the files were measured on different devices")


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
    baseline = [row(op="variational"), row()]
    new = [row(op="variational", ms_median=1.07), row(ms_median=1.07)]
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
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("usage:") and "variatonal" in err[-1], "argparse's usage, then the bad value"


def test_pct_of_copy_floor(tmp_path, capsys):
    copy = {"op": "copy", "backend": "copy", "p": 0.0}
    new = [row(**copy, ms_median=1.0), row(**copy, rows=128, shape="128x4096", ms_median=0.05),
           row(**copy, dtype="bf16", ms_median=1.0),
           row(ms_median=1.25),                                          # 80% of copy: fails a 90% floor
           row(rows=128, shape="128x4096", ms_median=0.25),              # 20%, but latency bound: ignored
           row(backend="eager", ms_median=2.5),                          # 40%, not Triton: ignored
           row(dtype="bf16", ms_median=1 / 0.92)]                        # 92%
    base, fresh = write(tmp_path / "b.csv", new), write(tmp_path / "n.csv", new)
    assert cmp.main([base, fresh]) == 0
    assert cmp.main([base, fresh, "--min-pct-of-copy", "90"]) == 1
    assert "Below the pct_of_copy floor (1)" in capsys.readouterr().out
    floor = cmp.below_floor(cmp.load_results(fresh), 90.0)
    assert [(rows, round(pct, 3)) for rows, pct in zip(floor["rows"], floor["pct_of_copy"])] == [(4096, 80.0)]
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
    assert "| dropout | triton | fp16 | 4096x4096 | 0.1 | fwd | do_bench |" in text
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
    assert "d.csv: line 3 repeats the key" in err and "dropout triton fp16 4096 4096 4096x4096" in err


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
    assert "dropout2d  triton   fp16   32x64x112x112" in capsys.readouterr().out


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
    assert result["note"].iloc[0].endswith("; autograd_threads True -> False"), \
        "files without the column ran with True, and an improvement must say so too"
    same = cmp.compare(cmp.load_results(new), cmp.load_results(new))
    assert same["note"].iloc[0] == ""


# -- the noise model: A/A passes, planted slowdowns are caught ----------------------------------

#: Shape classes of the CI preset as measured on an H100 (results/ci-demo-h100-2026-11-23-v2):
#: rows, timer, median ms, p20-p80 spread ms.
CI_CLASSES = [(1, "cudagraph", 0.0058, 0.00045), (64, "cudagraph", 0.0104, 0.00040),
              (1024, "cudagraph", 0.073, 0.0014), (8192, "do_bench", 0.535, 0.0018)]
#: The largest move of a median beyond its spread in the committed A/A pairs: 0.17 us.
AA_EXCESS_MS = 0.00017


def ci_run(rng, medians=None, shift_ms=lambda rows, ms: 0.0, jitter_ms=None):
    """One synthetic CI run: every class x dtype x op x direction, fresh spreads and medians."""
    rows_out, medians = [], dict(medians or {})
    for rows, timer, median, spread in CI_CLASSES:
        for dtype in ("fp16", "fp32"):
            for op in ("dropout", "variational"):
                for direction in ("fwd", "bwd"):
                    key = (rows, dtype, op, direction)
                    base = medians.setdefault(key, median * rng.uniform(0.9, 1.1))
                    # A/A jitter: each run half of what two runs differed by in the committed pairs
                    # (the smallest spread this row can have, plus the excess seen).
                    limit = (0.8 * spread + AA_EXCESS_MS) / 2 if jitter_ms is None else jitter_ms
                    ms = base + rng.uniform(-limit, limit) + shift_ms(rows, base)
                    width = spread * rng.uniform(0.8, 1.2)
                    rows_out.append(row(op=op, dtype=dtype, rows=rows, cols=49152, shape=f"{rows}x49152",
                                        direction=direction, timer=timer, ms_median=ms,
                                        ms_p20=ms - width / 2, ms_p80=ms + width / 2))
    return rows_out, medians


@pytest.fixture
def rng():
    return np.random.default_rng()


def test_an_aa_pair_with_realistic_jitter_passes(tmp_path, rng):
    first, medians = ci_run(rng)
    second, _ = ci_run(rng, medians)
    code, result = run(tmp_path, first, second)
    flagged = result[result["verdict"] != "unchanged"]
    assert code == 0 and flagged.empty, f"unchanged code flagged:\n{flagged[['rows', 'timer', 'ratio', 'note']]}"


def test_a_planted_8_percent_slowdown_at_1024_rows_and_more_is_caught(tmp_path, rng):
    first, medians = ci_run(rng)
    slow, _ = ci_run(rng, medians, shift_ms=lambda rows, ms: 0.08 * ms if rows >= 1024 else 0.0)
    code, result = run(tmp_path, first, slow)
    caught = result.loc[result["verdict"] == "regression", "rows"]
    assert code == 1
    assert sorted(set(caught)) == [1024, 8192] and len(caught) == 16, \
        f"every row at >= 1024 rows (16) and no other should be flagged, got {sorted(caught)}"


def test_a_planted_2_us_at_one_row_is_caught(tmp_path, rng):
    # +2 us at one row, the runs differing by at most the median A/A difference there (0.2 us): the
    # model sees spread + 1 us, about 1.5 us, so a +2 us slowdown stands 0.3 us clear of the noise.
    first, medians = ci_run(rng, jitter_ms=0.0001)
    slow, _ = ci_run(rng, medians, shift_ms=lambda rows, ms: 0.002 if rows == 1 else 0.0, jitter_ms=0.0001)
    code, result = run(tmp_path, first, slow)
    caught = result.loc[result["verdict"] == "regression", "rows"]
    assert code == 1 and list(set(caught)) == [1] and len(caught) == 8, \
        f"the 8 one-row rows should be flagged, got {sorted(caught)}"


def test_the_issue_14_false_alarm_is_noise(tmp_path):
    # H200, CI preset twice on unchanged code: 0.004992 -> 0.005504 ms (+10%) at 1x49152 fp16 cudagraph.
    baseline = [row(rows=1, cols=49152, timer="cudagraph", ms_median=0.004992, ms_p20=0.004768, ms_p80=0.005216)]
    new = [row(rows=1, cols=49152, timer="cudagraph", ms_median=0.005504, ms_p20=0.005280, ms_p80=0.005728)]
    code, result = run(tmp_path, baseline, new)
    assert code == 0 and "within noise" in result["note"].iloc[0], result["note"].iloc[0]


def test_a_floor_can_be_set_per_timer(tmp_path):
    baseline = [row(rows=1, timer="cudagraph", ms_median=0.005, ms_p20=0.005, ms_p80=0.005)]
    new = [row(rows=1, timer="cudagraph", ms_median=0.0065, ms_p20=0.0065, ms_p80=0.0065)]
    assert run(tmp_path, baseline, new)[0] == 1, "+1.5 us over a zero spread passes the 1 us floor"
    assert run(tmp_path, baseline, new, "--floor-us", "cudagraph=2")[0] == 0


#: Runs of (nearly) one host code on an H100 (docs/ci.md, "The functional backend's host rows").
H100_SAME_HOST_CODE = [
    "baseline/nvidia-h100-80gb-hbm3.csv",
    "tiles-row-loop-h100-2026-12-07/ci-6683fee.csv",
    *[f"tiles-row-loop-h100-2026-12-07/gpu-check-{call}/ci-{tree}.csv"
      for call in ("110b6a3", "87bc415-ab", "fe905fd-ab") for tree in ("base", "new")],
]


@pytest.mark.parametrize("baseline, new, code", [
    ("ci-demo-h100-2026-11-23-v2/ci-a.csv", "ci-demo-h100-2026-11-23-v2/ci-b.csv", 0),
    ("multi-gpu-h200x2-2026-11-23/gpus-0-merged.csv", "multi-gpu-h200x2-2026-11-23/gpus-0-1-merged.csv", 0),
    ("ci-demo-h100-2026-11-23-v2/ci-a.csv", "ci-demo-h100-2026-11-23-v2/ci-slow.csv", 1),
    ("baseline/nvidia-h100-80gb-hbm3.csv", "multi-gpu-h200x2-2026-11-23/gpus-0-merged.csv", 3),
    # Issue 22's A/A runs on the H200: every pair of five ci-preset runs of one commit passes ...
    *[(f"ci-h200-2026-12-04/run{i}.csv", f"ci-h200-2026-12-04/run{j}.csv", 0)
      for i in range(1, 6) for j in range(i + 1, 6)],
    # ... and of five runs before the GPU hold, whose host slowed in phases (3 failed before the drift rule).
    *[(f"ci-h200-2026-12-04-unheld/run{i}.csv", f"ci-h200-2026-12-04-unheld/run{j}.csv", 0)
      for i in range(1, 6) for j in range(i + 1, 6)],
    # A first run after the machine started, its host slow (F.dropout up to x2.1): 4 host rows were judged
    # at 35% under the rule of the time (they are `triton` rows, at 40% now).
    # (ci-h200-2026-12-04-held/run4.csv was the H200 baseline before mask stream v2.)
    ("ci-h200-2026-12-04-held/run4.csv", "ci-h200-2026-12-05/ci-a.csv", 0),
    ("ci-h200-2026-12-04-held/run4.csv", "ci-h200-2026-12-05/ci-b.csv", 0),
    # Mask stream v2 against the v1 baseline: improvements only; then the v2 baseline (run b) and run a.
    ("ci-h200-2026-12-04-held/run4.csv", "ci-h200-2026-12-05-v2/ci-a.csv", 0),
    ("ci-h200-2026-12-05-v2/ci-b.csv", "ci-h200-2026-12-05-v2/ci-a.csv", 0),
    # Mask stream v3 with the short runs tile on the H200 (5cc6f54) against the v2 baseline (run b):
    # host improvements only. It is the H200 baseline now (results/baseline/nvidia-h200.csv).
    ("ci-h200-2026-12-05-v2/ci-b.csv", "h200-2026-12-07/ci-5cc6f54.csv", 0),
    # Mask stream v3 on an H100: against v2 in the same call, and the H100 baseline it replaced.
    ("mask-v3-h100-2026-12-06/ci-ff1bfb7.csv", "mask-v3-h100-2026-12-06/ci-3419a0a.csv", 0),
    ("ci-demo-h100-2026-11-23-v2/ci-a.csv", "mask-v3-h100-2026-12-06/ci-3419a0a.csv", 0),
    # Eight H100 ci-preset runs of one host code (the H100 baseline, 3419a0a; the tiles-row-loop branch's
    # four runs; main's three, each in one call with a branch run): every pair passes, where 8 of the 28
    # failed with the `triton` backend's host rows judged at 15% (x1.95 to x2.65 for one row).
    *[(first, second, 0) for index, first in enumerate(H100_SAME_HOST_CODE)
      for second in H100_SAME_HOST_CODE[index + 1:]],
    # ... and every pair of six fresh runs whose host rounds start behind a GPU hold (bench.timing).
    *[(f"ci-h200-2026-12-04-held/run{i}.csv", f"ci-h200-2026-12-04-held/run{j}.csv", 0)
      for i in range(1, 7) for j in range(i + 1, 7)],
])
def test_committed_runs_replay_to_their_verdict(baseline, new, code):
    paths = [REPO / "results" / name for name in (baseline, new)]
    if not all(path.exists() for path in paths):
        pytest.skip(f"{baseline} or {new} is no longer committed")
    assert cmp.main([str(path) for path in paths]) == code


@pytest.mark.parametrize("folder, baseline, min_host_caught", [
    ("ci-h200-2026-12-04", "run1.csv", 7),
    ("ci-h200-2026-12-04-held", "run4.csv", 8),  # run4: the H200 baseline before mask stream v2
])
def test_the_h200_runs_with_planted_slowdowns_fail(tmp_path, folder, baseline, min_host_caught):
    """Run 2 of the H200 A/A runs with x1.08 at >= 1024 rows, +2 us at 1 row and x1.5 on host ratios
    (these runs' host rows are the `triton` backend's, judged at 40%): every bandwidth-bound row is
    flagged (docs/ci.md, "What the H200 runs show")."""
    folder = REPO / "results" / folder
    if not folder.exists():
        pytest.skip("the H200 A/A runs are no longer committed")
    slow = cmp.load_results(str(folder / "run2.csv"))
    ok = (slow["status"] == "ok") & (slow["op"] != "copy")
    host = ok & (slow["timer"] == "host")
    for column in ("ms_median", "ms_p20", "ms_p80"):
        slow.loc[ok & ~host & (slow["rows"] >= 1024), column] *= 1.08
        slow.loc[ok & ~host & (slow["rows"] == 1), column] += 0.002
    for column in ("host_ratio_median", "host_ratio_p20", "host_ratio_p80"):
        slow.loc[host, column] *= 1.5
    result = cmp.compare(cmp.load_results(str(folder / baseline)), slow)
    large = result[result["rows"] >= 1024]
    assert len(large) == 16 and set(large["verdict"]) == {"regression"}, large[["verdict", "note"]]
    host = result[result["timer"] == "host"]
    assert "retuned" not in set(host["verdict"]), "a host row times Python: another config excuses nothing"
    assert (host["verdict"] == "regression").sum() >= min_host_caught, host[["verdict", "note"]]
    assert cmp.has_failed(result, slow.iloc[0:0])


def test_a_planted_25_percent_slowdown_of_the_drop_ins_host_rows_fails_on_h100_runs():
    """The drop-in's host rows keep the 15% threshold: x1.25 on them in a committed H100 run is flagged
    against the H100 baseline in 5 of 8 rows (3 within their runs' spread or judged on a drifted host)."""
    paths = [REPO / "results" / name for name in H100_SAME_HOST_CODE[:2]]
    if not all(path.exists() for path in paths):
        pytest.skip("the H100 runs are no longer committed")
    slow = cmp.load_results(str(paths[1]))
    drop_in = (slow["status"] == "ok") & (slow["timer"] == "host") & (slow["backend"] == "dropin")
    for column in ("host_ratio_median", "host_ratio_p20", "host_ratio_p80"):
        slow.loc[drop_in, column] *= 1.25
    result = cmp.compare(cmp.load_results(str(paths[0])), slow)
    host = result[result["timer"] == "host"]
    flagged = host[host["verdict"] == "regression"]
    assert len(flagged) >= 5 and set(flagged["backend"]) == {"dropin"}, host[["backend", "verdict", "note"]]


@pytest.mark.parametrize("option", [
    ["--threshold", "5"], ["--threshold-for", "copy=0.1"], ["--min-pct-of-copy", "nan"],
    ["--min-pct-of-copy", "-5"], ["--floor-min-rows", "-1"], ["--threshold", "nan"],
    ["--floor-us", "host=2"], ["--host-floor", "-0.1"], ["--host-threshold", "15"], ["--retuned-max-rows", "-1"],
    ["--host-drift", "0.8"], ["--host-drift", "1"], ["--host-drift-threshold", "35"],
    ["--host-drift-threshold", "0.1"],  # under the 15% host threshold: stricter on a drifted host
    ["--host-threshold-for", "tritn=0.4"], ["--host-threshold-for", "copy=0.4"], ["--host-threshold-for", "triton"],
    ["--host-threshold-for", "triton=40"],
])
def test_options_that_would_silently_judge_nothing_are_refused(option, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cmp._parse_args(["a.csv", "b.csv", *option])
    assert exit_info.value.code == 2, option
    assert "dropbench-compare: error:" in capsys.readouterr().err


# -- host-timer rows: gated on their ratio to F.dropout's host time in the same run ------------------

#: Host ms per call of F.dropout at 1 x 49152 fp16 on an H200 (results/drop-in-h200-2026-12-01,
#: host-time-4-final.txt), by direction, and the implementation's ratio to it there.
HOST_REF_MS = {"fwd": 0.015, "bwd": 0.060}
HOST_RATIO = {"fwd": 2.8, "bwd": 2.2}
#: A run's per-round ratio spread (p20-p80) and how far its median moves run to run, as fractions of it.
HOST_RATIO_SPREAD, HOST_RATIO_JITTER = 0.02, 0.01


def host_run(rng, host_speed: float, ratio_factor: float = 1.0, backend: str = "dropin") -> list[dict]:
    """One run's host rows (1 row, both dtypes, ops and directions) on a host `host_speed` times slower:
    the drop-in's (`dropin` backend), judged at the 15% host threshold."""
    rows_out = []
    for dtype in ("fp16", "fp32"):
        for op in ("dropout", "variational"):
            for direction in ("fwd", "bwd"):
                ratio = HOST_RATIO[direction] * ratio_factor * (1 + rng.uniform(-HOST_RATIO_JITTER, HOST_RATIO_JITTER))
                width = HOST_RATIO_SPREAD * ratio * rng.uniform(0.8, 1.2)
                ref_ms = HOST_REF_MS[direction] * host_speed
                ms = ratio * ref_ms
                rows_out.append(row(op=op, backend=backend, dtype=dtype, rows=1, cols=49152, shape="1x49152",
                                    direction=direction,
                                    timer="host", ms_median=ms, ms_p20=ms * 0.97, ms_p80=ms * 1.03,
                                    host_ref_ms=ref_ms, host_ratio_median=ratio, host_ratio_p20=ratio - width / 2,
                                    host_ratio_p80=ratio + width / 2))
    return rows_out


@pytest.mark.parametrize("host_speed", [0.54, 1.71])  # the raw host times of issue 22's A/A pair: -46%, +71%
def test_an_aa_pair_of_host_rows_on_a_host_of_another_speed_passes(tmp_path, rng, host_speed):
    code, result = run(tmp_path, host_run(rng, 1.0), host_run(rng, host_speed))
    flagged = result[result["verdict"] != "unchanged"]
    assert code == 0 and flagged.empty, f"unchanged code flagged:\n{flagged[['direction', 'ratio', 'note']]}"
    assert cmp.compared(result) == 8, "every host row should have been judged"


@pytest.mark.parametrize("host_speed", [0.8, 1.0, 1.25])
def test_a_planted_25_percent_host_slowdown_is_caught_on_a_steady_host(tmp_path, rng, host_speed):
    """+25% of the ratio: about 10 us more Python per call of a drop-in (host rows' threshold is 15%),
    with F.dropout's host time within the drift factor (1.3) of the baseline's."""
    code, result = run(tmp_path, host_run(rng, 1.0), host_run(rng, host_speed, ratio_factor=1.25))
    caught = result[result["verdict"] == "regression"]
    assert code == 1 and len(caught) == 8, f"all 8 host rows should be flagged:\n{result[['ratio', 'note']]}"
    assert "x F.dropout" in caught["note"].iloc[0] and "raw host time" in caught["note"].iloc[0]


@pytest.mark.parametrize("host_speed", [0.54, 1.71])  # issue 22's raw host speeds: F.dropout itself moved
def test_on_a_drifted_host_only_a_slowdown_past_the_drift_threshold_is_caught(tmp_path, rng, host_speed, capsys):
    """The ratio of unchanged code rose by up to 32% on H200 hosts whose F.dropout ran 1.3x-2.3x slower:
    such rows are judged at 35%, with a warning that smaller slowdowns go unseen there."""
    code, result = run(tmp_path, host_run(rng, 1.0), host_run(rng, host_speed, ratio_factor=1.25))
    assert code == 0 and set(result["verdict"]) == {"unchanged"}, result[["verdict", "note"]]
    assert "a drifted host, judged at 35%" in result["note"].iloc[0]
    assert "8 host rows ran on a host whose F.dropout time differs" in capsys.readouterr().out
    code, result = run(tmp_path, host_run(rng, 1.0), host_run(rng, host_speed, ratio_factor=1.5))
    assert code == 1 and (result["verdict"] == "regression").sum() == 8, result[["verdict", "note"]]


def test_the_drift_options_move_the_rule(tmp_path, rng):
    baseline, drifted = host_run(rng, 1.0), host_run(rng, 1.71, ratio_factor=1.25)
    assert run(tmp_path, baseline, drifted)[0] == 0, "x1.25 on a drifted host: under the 35% threshold"
    assert run(tmp_path, baseline, drifted, "--host-drift", "inf")[0] == 1, "no drift rule: judged at 15%"
    assert run(tmp_path, baseline, drifted, "--host-drift", "2")[0] == 1, "x1.71 is inside a drift factor of 2"
    assert run(tmp_path, baseline, drifted, "--host-drift-threshold", "0.2")[0] == 1


def test_the_functional_backends_host_rows_are_judged_at_40_percent(tmp_path, rng):
    """The `triton` backend's host rows swing by up to 36% between runs of unchanged Python (22 H100
    runs): x1.3 passes, x1.5 fails, and --host-threshold-for sets a backend's threshold."""
    baseline = host_run(rng, 1.0, backend="triton")
    code, result = run(tmp_path, baseline, host_run(rng, 1.0, ratio_factor=1.3, backend="triton"))
    assert code == 0 and set(result["threshold"]) == {0.4}, result[["verdict", "threshold"]]
    code, result = run(tmp_path, baseline, host_run(rng, 1.0, ratio_factor=1.5, backend="triton"))
    assert code == 1 and (result["verdict"] == "regression").sum() == 8, result[["verdict", "note"]]
    slower = host_run(rng, 1.0, ratio_factor=1.25, backend="triton")
    assert run(tmp_path, baseline, slower)[0] == 0
    assert run(tmp_path, baseline, slower, "--host-threshold-for", "triton=0.15")[0] == 1
    assert run(tmp_path, host_run(rng, 1.0), host_run(rng, 1.0, ratio_factor=1.25),
               "--host-threshold-for", "dropin=0.4")[0] == 0, "the option sets the backend it names"


def test_a_drifted_host_keeps_a_backends_higher_threshold(tmp_path, rng, capsys):
    """On a drifted host the threshold is the larger of the backend's and the drift threshold; only rows
    whose threshold the drift raised are counted and noted as judged on a drifted host."""
    code, result = run(tmp_path, host_run(rng, 1.0, backend="triton"),
                       host_run(rng, 1.71, ratio_factor=1.3, backend="triton"))
    assert code == 0 and set(result["threshold"]) == {0.4}, result[["verdict", "threshold"]]
    assert not result["drifted"].any() and "drift" not in capsys.readouterr().out
    code, result = run(tmp_path, host_run(rng, 1.0), host_run(rng, 1.71, ratio_factor=1.3))
    assert set(result["threshold"]) == {0.35}, "the drop-in's rows: the drift threshold, over their 15%"
    assert result["drifted"].all() and "8 host rows ran on a host whose F.dropout" in capsys.readouterr().out


@pytest.mark.parametrize("ref", [0.0, float("nan")])
def test_a_host_ratio_without_its_reference_is_bad_input(tmp_path, capsys, ref):
    host = {"rows": 1, "cols": 49152, "shape": "1x49152", "timer": "host"}
    good = write(tmp_path / "good.csv", [row(**host, ms_median=2.0, host_ref_ms=1.0, host_ratio_median=2.0)])
    bad = write(tmp_path / "bad.csv", [row(**host, ms_median=2.0, host_ref_ms=ref, host_ratio_median=2.0)])
    assert cmp.main([good, bad]) == 2
    assert "no positive host_ref_ms" in capsys.readouterr().err


def test_a_host_slowdown_within_the_ratios_spread_is_noise(tmp_path):
    baseline = [row(backend="dropin", rows=1, timer="host", ms_median=0.03, host_ref_ms=0.015, host_ratio_median=2.0,
                    host_ratio_p20=1.9, host_ratio_p80=2.1)]
    new = [row(backend="dropin", rows=1, timer="host", ms_median=0.03, host_ref_ms=0.015, host_ratio_median=2.4,
               host_ratio_p20=2.1, host_ratio_p80=2.7)]  # +20%: over the 15% host threshold, within the spread of 0.6
    code, result = run(tmp_path, baseline, new)
    assert code == 0 and "slower, but within noise" in result["note"].iloc[0], result["note"].iloc[0]
    assert run(tmp_path, baseline, new, "--spread-k", "0")[0] == 1, "+0.4 is over the 0.02 floor alone"
    assert run(tmp_path, baseline, new, "--spread-k", "0", "--host-floor", "0.5")[0] == 0


def test_host_rows_of_a_baseline_without_the_reference_are_not_gated_and_say_so(tmp_path, capsys):
    old = tmp_path / "old.csv"
    host = {"rows": 1, "cols": 49152, "shape": "1x49152", "timer": "host"}
    pd.DataFrame([row(**host), row()]).to_csv(old, index=False)  # the columns of a file from before host_ratio_*
    new = write(tmp_path / "new.csv", [row(**host, ms_median=2.0, host_ref_ms=1.0, host_ratio_median=2.0), row()])
    assert cmp.main([str(old), new]) == 0, "an ungated host row is no failure"
    out = capsys.readouterr().out
    assert "Not gated (host rows without a host reference) (1)" in out
    assert "no host reference (host_ratio_median) in baseline" in out
    assert out.startswith("WARNING: 1 host-timer rows not gated") and out.rstrip().endswith("(docs/ci.md, Baselines)")
    result = cmp.compare(cmp.load_results(str(old)), cmp.load_results(new))
    assert verdict(result, timer="host") == "not_gated" and cmp.compared(result) == 1, \
        "the host row is not judged, on its raw time (2x slower here) or otherwise"



def test_a_host_rise_under_the_host_threshold_is_not_a_regression(tmp_path, rng):
    """Five H200 runs of unchanged code moved host ratios by up to 12%: under 15% is not judged slower."""
    code, result = run(tmp_path, host_run(rng, 1.0), host_run(rng, 1.0, ratio_factor=1.12))
    assert code == 0 and set(result["verdict"]) == {"unchanged"}, result[["verdict", "note"]]


# -- launch-bound rows whose autotuner choice moved between runs ("retuned") ------------------------

LAUNCH_BOUND = {"rows": 64, "cols": 49152, "shape": "64x49152", "timer": "cudagraph", "op": "variational"}


@pytest.mark.parametrize("slower", [True, False])
def test_a_launch_bound_change_with_another_config_is_retuned_not_judged(tmp_path, capsys, slower):
    """Seen on an H200 (issue 22): one variational row at 64 rows took 11.7 to 18.5 us across five runs of
    unchanged code, each with another autotuner choice."""
    baseline = [row(**LAUNCH_BOUND, ms_median=0.0117, config="BLOCK_D=16 BLOCK_M=512 num_warps=8 first_call_ms=402.5")]
    new = [row(**LAUNCH_BOUND, ms_median=0.0185 if slower else 0.0075,
               config="BLOCK_D=1 BLOCK_M=4096 num_warps=8 first_call_ms=406.2")]
    code, result = run(tmp_path, baseline, new)
    assert code == 0 and verdict(result, rows=64) == "retuned", result[["verdict", "note"]]
    out = capsys.readouterr().out
    assert "Retuned (launch-bound rows whose autotuner choice differs: not judged) (1)" in out
    assert "BLOCK_D=16 BLOCK_M=512 num_warps=8 in baseline, BLOCK_D=1 BLOCK_M=4096 num_warps=8 in new" in out
    assert out.startswith("WARNING: 1 launch-bound rows not judged")


def test_a_launch_bound_slowdown_with_the_same_config_is_a_regression(tmp_path):
    config = "BLOCK_D=16 BLOCK_M=512 num_warps=8"
    baseline = [row(**LAUNCH_BOUND, ms_median=0.0117, config=f"{config} first_call_ms=402.5")]
    new = [row(**LAUNCH_BOUND, ms_median=0.0185, config=f"{config} first_call_ms=380.0")]  # first-call times differ
    code, result = run(tmp_path, baseline, new)
    assert code == 1 and verdict(result, rows=64) == "regression"


def test_the_config_the_timed_calls_ran_decides_retuned(tmp_path):
    """The runner writes `later: <config>` where the timed calls took another kernel variant (the
    drop-in's stream past 2**31): only that config is compared, not the first calls' choice."""
    config = "BLOCK_D=16 BLOCK_M=512 num_warps=8"
    baseline = [row(**LAUNCH_BOUND, ms_median=0.0117, config=f"{config} first_call_ms=402.5")]
    new = [row(**LAUNCH_BOUND, ms_median=0.0185,
               config=f"BLOCK_D=1 BLOCK_M=4096 num_warps=8 first_call_ms=380.0 later: {config}")]
    code, result = run(tmp_path, baseline, new)
    assert code == 1 and verdict(result, rows=64) == "regression"


def test_from_256_rows_another_config_is_judged(tmp_path):
    large = {**LAUNCH_BOUND, "rows": 256, "shape": "256x49152"}
    baseline = [row(**large, ms_median=0.05, config="BLOCK_D=16 BLOCK_M=512 num_warps=8")]
    new = [row(**large, ms_median=0.06, config="BLOCK_D=4 BLOCK_M=2048 num_warps=8")]
    assert run(tmp_path, baseline, new)[0] == 1, "a bandwidth-bound row is judged whatever the tuner chose"


def test_retuned_max_rows_zero_judges_every_row(tmp_path):
    baseline = [row(**LAUNCH_BOUND, ms_median=0.0117, config="BLOCK_D=16 BLOCK_M=512 num_warps=8")]
    new = [row(**LAUNCH_BOUND, ms_median=0.0185, config="BLOCK_D=1 BLOCK_M=4096 num_warps=8")]
    assert run(tmp_path, baseline, new, "--retuned-max-rows", "0")[0] == 1
