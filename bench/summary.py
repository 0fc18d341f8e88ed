"""The end-of-sweep report: the best backend per op and dtype at the largest shape, and every failure, loudly.

It reads the rows the way every other reader does (bench.table: typed, derived
figures from bench.table.derive), not the cells the runner happened to write.
"""

from __future__ import annotations

import pandas as pd

from dropbench.bench import table
from dropbench.bench.schema import COLUMNS, COPY, DIRECTIONS

FAILED = ("incorrect", "error", "oom")
#: The timer the best-backend table reads, in order of preference.
MAIN_TIMERS = ("do_bench", "cpu", "cudagraph")


def frame_of(rows: list[dict]) -> pd.DataFrame:
    """The runner's rows (cells as text, as written) as table.read gives a file: typed, figures derived."""
    text = pd.DataFrame(rows, columns=COLUMNS, dtype=str).fillna("")
    return table.derive(table.typed(text, "this sweep's rows"))


def best_table(results: pd.DataFrame) -> list[str]:
    """One line per (op, dtype, p, direction) at the op's largest measured shape: the fastest backend."""
    ok = results[(results["status"] == "ok") & (results["op"] != COPY) & (results["ms_median"] > 0)]
    timer = next((name for name in MAIN_TIMERS if name in set(ok["timer"])), None)
    if timer is None:
        return ["no ok measurement to summarise"]
    lines = [f"best backend at the largest shape (timer={timer}):",
             f"  {'op':<22}{'dtype':<6}{'p':>5}  {'direction':<9}{'shape':>18}  {'backend':<10}"
             f"{'ms':>10}{'% of copy':>11}{'x eager':>9}"]
    order = {direction: index for index, direction in enumerate(DIRECTIONS)}
    groups = ok[ok["timer"] == timer].groupby(["op", "dtype", "p", "direction"], sort=False)
    for (op, dtype, p, direction), group in sorted(groups, key=lambda item: (*item[0][:3], order[item[0][3]])):
        largest = group.loc[group["numel"].idxmax(), "shape"]  # two shapes may share a numel
        best = group[group["shape"] == largest].sort_values("ms_median").iloc[0]
        pct, speedup = best["pct_of_copy"], best["speedup_vs_eager"]
        lines.append(
            f"  {op:<22}{dtype:<6}{p:>5g}  {direction:<9}{best['shape']:>18}  "
            f"{best['backend']:<10}{best['ms_median']:>10.4g}"
            f"{'' if pd.isna(pct) else f'{pct:.1f}':>11}{'' if pd.isna(speedup) else f'{speedup:.2f}':>9}"
        )
    return lines


def failures(results: pd.DataFrame) -> list[str]:
    """Every incorrect / error / oom (op, backend, dtype, p, reason), with the shapes it hit."""
    failed = results[results["status"].isin(FAILED)]
    lines = []
    for (status, op, backend, dtype, p, error), group in failed.groupby(
            ["status", "op", "backend", "dtype", "p", "error"]):
        shapes = sorted(set(group["shape"]), key=lambda shape: int(shape.split("x")[0]))
        lines.append(f"!!! {status.upper()}: {op}/{backend} {dtype} p={p:g} at {', '.join(shapes)}: {error}")
    return lines


def report(rows: list[dict]) -> list[str]:
    """The whole summary of the runner's rows, failures first so they cannot be missed."""
    results = frame_of(rows)
    bad = failures(results)
    lines = []
    if bad:
        banner = "!" * 78
        lines += [banner, f"!!! {len(bad)} FAILURE(S): not timed, recorded with their status and error", *bad, banner]
    return lines + best_table(results)
