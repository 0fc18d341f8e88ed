"""The results layer end to end on the CPU: the writer's rows, merged, compared, plotted."""

import numpy as np

from dropbench.bench import compare, merge, results, table
from dropbench.plots.__main__ import main as plot

SIZES = [64, 256, 1024]


def sweep(path, rng, directions, slower=1.0):
    """Rows as the runner writes them: a copy per size, then triton and eager, fresh random times."""
    with results.ResultsFile(path, "cpu", autograd_threads=False) as out:
        for rows in SIZES:
            for direction in directions:
                copy_ms = rows * 1e-4 * rng.uniform(0.98, 1.02)
                base = {"dtype": "fp32", "rows": rows, "cols": 512, "shape": f"{rows}x512", "numel": rows * 512,
                        "timer": "cpu", "samples": 5, "status": "ok", "device": "cpu",
                        "timestamp": results.utc_now()}
                if direction == "fwd":
                    out.write({**base, "op": "copy", "backend": "copy", "p": 0.0, "direction": "fwd",
                               "ms_median": copy_ms, "ms_p20": copy_ms, "ms_p80": copy_ms})
                for backend, factor in [("triton", 1.2 * slower), ("eager", 3.0)]:
                    ms = copy_ms * factor * rng.uniform(0.99, 1.01)
                    out.write({**base, "op": "dropout", "backend": backend, "p": 0.5, "direction": direction,
                               "ms_median": ms, "ms_p20": 0.99 * ms, "ms_p80": 1.01 * ms})


def test_write_merge_compare_plot(tmp_path, capsys):
    rng = np.random.default_rng()
    fwd, bwd = tmp_path / "job-fwd.csv", tmp_path / "job-bwd.csv"
    sweep(fwd, rng, ["fwd"])
    sweep(bwd, rng, ["bwd"])
    merged = merge.write(merge.merge([fwd, bwd]), tmp_path / "merged.csv")
    frame = table.read(merged)
    assert len(frame) == len(table.read(fwd)) + len(table.read(bwd)), "merge lost or invented rows"
    assert frame.loc[frame["backend"] == "triton", "speedup_vs_eager"].gt(2).all(), \
        "derived figures should read each row against eager of the same key"

    slow = tmp_path / "slow.csv"
    sweep(slow, rng, ["fwd"], slower=2.0)
    assert compare.main([str(fwd), str(slow)]) == compare.EXIT_FAIL, "a 2x slower triton must fail"
    assert compare.main([str(fwd), str(merged)]) == compare.EXIT_PASS, "the merged run holds the same fwd rows"
    capsys.readouterr()

    assert plot([str(merged), "--out", str(tmp_path / "figs"), "--quiet"]) == 0
    names = {path.name.split("-")[0] for path in (tmp_path / "figs").glob("*.png")}
    assert {"gbps", "pct_of_copy", "us_over_copy", "speedup"} <= names, names  # no memory measured: none drawn
