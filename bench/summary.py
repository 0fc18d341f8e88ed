"""The end-of-sweep report: the best backend per op and dtype at the largest shape, and every failure, loudly."""

from __future__ import annotations

from collections import defaultdict

from dropbench.bench.schema import COPY, DIRECTIONS

FAILED = ("incorrect", "error", "oom")
#: The timer the best-backend table reads, in order of preference.
MAIN_TIMERS = ("do_bench", "cpu", "cudagraph")


def _number(value) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def best_table(rows: list[dict]) -> list[str]:
    """One line per (op, dtype, p, direction) at the op's largest measured shape: the fastest backend."""
    ok = [row for row in rows if row["status"] == "ok" and row["op"] != COPY and _number(row["ms_median"])]
    timers = {row["timer"] for row in ok}
    timer = next((name for name in MAIN_TIMERS if name in timers), None)
    if timer is None:
        return ["no ok measurement to summarise"]
    groups = defaultdict(list)
    for row in ok:
        if row["timer"] == timer:
            groups[(row["op"], row["dtype"], float(row["p"]), row["direction"])].append(row)
    lines = [f"best backend at the largest shape (timer={timer}):",
             f"  {'op':<22}{'dtype':<6}{'p':>5}  {'direction':<9}{'shape':>18}  {'backend':<19}"
             f"{'ms':>10}{'% of copy':>11}{'x eager':>9}"]
    order = {direction: index for index, direction in enumerate(DIRECTIONS)}
    ordered = sorted(groups.items(), key=lambda item: (*item[0][:3], order[item[0][3]]))
    for (op, dtype, p, direction), group in ordered:
        largest = max(group, key=lambda row: int(row["numel"]))["shape"]  # two shapes may share a numel
        best = min((row for row in group if row["shape"] == largest), key=lambda row: float(row["ms_median"]))
        pct, speedup = _number(best["pct_of_copy"]), _number(best["speedup_vs_eager"])
        lines.append(
            f"  {op:<22}{dtype:<6}{p:>5g}  {direction:<9}{best['shape']:>18}  "
            f"{best['backend']:<19}{float(best['ms_median']):>10.4g}"
            f"{'' if pct is None else f'{pct:.1f}':>11}{'' if speedup is None else f'{speedup:.2f}':>9}"
        )
    return lines


def failures(rows: list[dict]) -> list[str]:
    """Every incorrect / error / oom (op, backend, dtype, p, reason), with the shapes it hit."""
    grouped = defaultdict(set)
    for row in rows:
        if row["status"] in FAILED:
            grouped[(row["status"], row["op"], row["backend"], row["dtype"], row["p"], row["error"])].add(
                row["shape"])
    lines = []
    for (status, op, backend, dtype, p, error), shapes in sorted(grouped.items()):
        shown = ", ".join(sorted(shapes, key=lambda shape: int(shape.split("x")[0])))
        lines.append(f"!!! {status.upper()}: {op}/{backend} {dtype} p={p} at {shown}: {error}")
    return lines


def report(rows: list[dict]) -> list[str]:
    """The whole summary, failures first so they cannot be missed."""
    bad = failures(rows)
    lines = []
    if bad:
        banner = "!" * 78
        lines += [banner, f"!!! {len(bad)} FAILURE(S): not timed, recorded with their status and error", *bad, banner]
    return lines + best_table(rows)
