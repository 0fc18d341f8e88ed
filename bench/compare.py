"""Compare two results CSVs and flag performance regressions, for CI.

Rows are paired on the measurement key (bench.schema.KEY_COLUMNS) and the device, and
the ratio new/baseline of ``ms_median`` is reported for each pair (for host-timer rows, of
``host_ratio_median``: see below).

The noise model (docs/ci.md, "The regression verdict"). A timing's median moves between
two runs of unchanged code: clocks, memory placement and launch alignment shift the whole
distribution, not just its tails. A pair is a regression only when BOTH hold:

* relative: ``new / baseline > 1 + threshold`` (5% unless overridden per op), and
* absolute: ``new - baseline > k * max(spread_baseline, spread_new) + floor[timer]``,
  where spread is a run's ``ms_p80 - ms_p20`` (k = 1 by default) and floor is 1 us for
  the CUDA-graph timer and 2 us for do_bench and the others (``--floor-us TIMER=US``).

Why these numbers: in the committed A/A pairs (two runs of unchanged code: H100 CI preset,
results/ci-demo-h100-2026-11-23-v2/ci-a vs ci-b; H200, results/multi-gpu-h200x2-2026-11-23
one GPU vs two) no median moved more than 0.17 us beyond the larger p20-p80 spread; under
CUDA graphs the largest move was 0.58 us (5.9 us rows, spread 0.42 us: +10% there is noise,
the issue-14 false alarm), under do_bench at >= 8192 rows 1.9 us. The floors are about twice
those moves. What this can still see: a planted 8% slowdown at >= 1024 rows (6 us and more
against a bound of about 2.5 us) and +2 us at one row (against about 1.5 us): the smallest
slowdown seen at a launch-bound size is spread + floor, about 1.5 us under CUDA graphs.
do_bench at launch-bound sizes times the host, whose medians move by tens of us between
runs: the CI timing (configs/timing/ci.yaml) uses CUDA graphs there.

Host-timer rows time the host itself, whose speed moved their medians by -46% to +71% between
two runs of unchanged code on an H200 (issue 22). They are judged on the ratio of their host time
to F.dropout's, measured in alternate rounds of the same run (host_ratio_median, bench.timing):
the same two conditions with that ratio for the median, its per-round p20-p80 for the spread,
a floor of 0.02 (2% of F.dropout's host time, ``--host-floor``), and a threshold of 15%
(``--host-threshold``): across five ci-preset runs of unchanged code on one H200 the ratio of
each host row stayed within 5-12% (31% for one row whose kernel the tuner changed), where the
raw host times spread over 49-80%. The `triton` backend's host rows (its functional calls, 2x
F.dropout's Python) swing more: across 22 H100 ci-preset runs from 2026-12-05 to 12-07 its
variational forward rows read x1.95 to x2.65 (up to +36%), one row of one run at a time, with
F.dropout's own time steady; 8 of the 28 pairs among eight runs of (nearly) one host code failed
(one at the drift threshold below). They are judged at 40% (``--host-threshold-for triton=0.40``,
the default): they catch a gross slowdown of the functional path (x1.5), and the `dropin`
backend's rows, which moved by 2-8% across those eight runs, gate the drop-in's at 15%. The ratio
does not cancel every change of the host's speed: in a slow phase (F.dropout itself 1.3x to 2.3x
slower than in the baseline) the ratio of unchanged code rose by up to 32% (13 of 46 such rows of
18 H200 runs past 15%), where with F.dropout within 1.3x of the baseline's it moved by at most 14%
(98 rows). A host row whose F.dropout time
(host_ref_ms) differs from the baseline's by more than x1.3 (``--host-drift``; decided row by row,
``inf`` turns the rule off) is therefore judged at the larger of its own threshold and 35%
(``--host-drift-threshold``); where that raised it, its note says so and the report warns: a
smaller slowdown on such a host needs a rerun to be seen. A host row without that
ratio on both sides (a baseline from before it) is "not_gated": listed and warned about, never
judged on its raw time, never a failure.

At launch-bound sizes (fewer than 256 rows, ``--retuned-max-rows``) the autotuner's choice is
not stable between runs: its timings of 5-20 us kernels differ by less than their noise, and on
an H200 five ci-preset runs of unchanged code chose up to five configs for one variational row,
whose times then differed by up to 3x (issue 22). A would-be regression or improvement of a
device timer whose two sides ran different configs there is "retuned": listed with both configs
and warned about, not a failure (host rows time Python, which the config does not change). The same config on both sides is judged as above, and so is every row from 256 rows up,
where the tuner's timings are long enough to be stable and a different choice is news.

An improvement is the mirror image. Rows ok in the baseline but incorrect/error/oom in the
new file are "broken"; ok -> skipped counts as missing (not measured), and a key found on
both sides under different devices is a "device_mismatch", never timed against itself. Copy
rows are the hardware reference, not a product: they are never flagged, and their median
ratio is reported as a hint of machine drift. A pair whose sides ran backward on different
threads (autograd_threads) says so in its note, whatever its verdict.

Exit codes: 0 pass; 1 regression / broken / pct_of_copy floor (/ missing rows with
--fail-on-missing); 2 bad input; 3 nothing compared (no row timed ok on both sides on
one device, e.g. baselines of two GPU models), unless --allow-empty. Files are read by
bench.table (older files upgraded, a partial last line dropped). No torch here: this
runs on CPU-only CI machines.
"""
from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Mapping

import pandas as pd

from dropbench.bench import table
from dropbench.bench.schema import ALL_OPS, BACKENDS, COPY, HOST_TIMER, KEY_COLUMNS, OP_DIRECTIONS, TIMERS

DEFAULT_THRESHOLD = 0.05
DEFAULT_FLOOR_MIN_ROWS = 256
#: k: how many p20-p80 spreads a median may move between runs of unchanged code.
DEFAULT_SPREAD_K = 1.0
#: The absolute floor on a slowdown, microseconds, per timer (see the module docstring); host rows have their own.
DEFAULT_FLOOR_US = {timer: 2.0 for timer in TIMERS if timer != HOST_TIMER} | {"cudagraph": 1.0}
#: The floor on a host row's slowdown, in its ratio to F.dropout's host time: 0.02 is 2% of F.dropout's.
DEFAULT_HOST_FLOOR = 0.02
#: The relative slowdown that counts for a host row's ratio to F.dropout (module docstring).
DEFAULT_HOST_THRESHOLD = 0.15
#: ... per backend where its host rows swing more: the `triton` backend's functional calls moved by
#: up to 36% across 22 H100 runs of unchanged Python (module docstring).
DEFAULT_HOST_THRESHOLD_FOR = {"triton": 0.40}
#: Below this many rows a change of autotuner choice excuses a timing change ("retuned", module docstring).
DEFAULT_RETUNED_MAX_ROWS = 256
#: A host row whose F.dropout host time moved by more than this factor ran on a drifted host (module docstring)...
DEFAULT_HOST_DRIFT = 1.3
#: ... and is judged at this threshold: unchanged code rose by up to 32% there on an H200.
DEFAULT_HOST_DRIFT_THRESHOLD = 0.35

EXIT_PASS, EXIT_FAIL, EXIT_BAD_INPUT, EXIT_EMPTY = 0, 1, 2, 3

#: Every verdict, in the order the report lists them.
VERDICTS = ["regression", "broken", "improvement", "retuned", "missing_in_new", "new_only",
            "device_mismatch", "not_gated", "unchanged"]
FAILING = {"regression", "broken"}

#: What each side contributes to a pair; device is a field, not part of the match.
_FIELDS = ["device", "status", "error", "ms_median", "ms_p20", "ms_p80", "autograd_threads",
           "host_ref_ms", "host_ratio_median", "host_ratio_p20", "host_ratio_p80", "config"]


class InputError(Exception):
    """A results file compare cannot use; main reports it in one line and exits 2."""


# -- reading ---------------------------------------------------------------------------

def load_results(path: str) -> pd.DataFrame:
    """One results CSV through bench.table, checked for what compare relies on."""
    try:
        frame = table.read(path)
    except table.TableError as err:
        raise InputError(str(err)) from None
    if frame.empty:
        raise InputError(f"{path}: no data rows (header only)")
    # A host ratio without its reference could not be checked for host drift (module docstring).
    bad_ref = ((frame["status"] == "ok") & (frame["timer"] == HOST_TIMER) & frame["host_ratio_median"].notna()
               & ~(frame["host_ref_ms"] > 0))
    if bad_ref.any():
        raise InputError(f"{path}: line {table._line(bad_ref)}: a host row with host_ratio_median but no "
                         f"positive host_ref_ms")
    bad_time = (frame["status"] == "ok") & ~(frame["ms_median"] > 0)
    if bad_time.any():
        raise InputError(f"{path}: line {table._line(bad_time)}: status ok but ms_median is empty "
                         f"or not positive")
    # A missing percentile collapses the spread onto the median: the row is then judged
    # by the threshold and the timer's floor alone, never silently never flagged.
    for stat in ("ms", "host_ratio"):
        frame[f"{stat}_p20"] = frame[f"{stat}_p20"].fillna(frame[f"{stat}_median"])
        frame[f"{stat}_p80"] = frame[f"{stat}_p80"].fillna(frame[f"{stat}_median"])
    return frame


# -- comparing -------------------------------------------------------------------------

def compare(baseline: pd.DataFrame, new: pd.DataFrame, threshold: float = DEFAULT_THRESHOLD,
            per_op: Mapping[str, float] | None = None, floor_us: Mapping[str, float] | None = None,
            spread_k: float = DEFAULT_SPREAD_K, host_floor: float = DEFAULT_HOST_FLOOR,
            retuned_max_rows: int = DEFAULT_RETUNED_MAX_ROWS,
            host_threshold: float = DEFAULT_HOST_THRESHOLD, host_drift: float = DEFAULT_HOST_DRIFT,
            host_drift_threshold: float = DEFAULT_HOST_DRIFT_THRESHOLD,
            host_per_backend: Mapping[str, float] | None = None) -> pd.DataFrame:
    """One row per pair of dropout measurements, with ratio, noise bound, verdict and note.

    What a pair is judged on (its gauge) is ms_median, or for host rows host_ratio_median; ratio
    is new/baseline of the gauge, change and bound are in the gauge's unit (ms, or the ratio's).

    Copy rows are left out (see copy_drift). Rows pair on the key and the device; a key
    present on both sides under different devices becomes one device_mismatch row, so
    files holding several devices still pair each device with itself.
    """
    per_op = dict(per_op or {})
    host_per_backend = {**DEFAULT_HOST_THRESHOLD_FOR, **(host_per_backend or {})}
    floor_us = {**DEFAULT_FLOOR_US, **(floor_us or {})}
    base = _side(baseline[baseline["op"] != COPY], "baseline")
    fresh = _side(new[new["op"] != COPY], "new")
    same = base.merge(fresh, how="outer", indicator=True,
                      left_on=KEY_COLUMNS + ["device_baseline"], right_on=KEY_COLUMNS + ["device_new"])
    # What found no partner on the same device gets a second chance on the key alone:
    # found there, it is a device mismatch; still alone, it is missing or new.
    left = same.loc[same["_merge"] == "left_only", list(base.columns)]
    right = same.loc[same["_merge"] == "right_only", list(fresh.columns)]
    unpaired = left.merge(right, how="outer", on=KEY_COLUMNS)
    pairs = pd.concat([same.loc[same["_merge"] == "both"].drop(columns="_merge"), unpaired],
                      ignore_index=True)

    # Timings only mean something between two ok runs on the same device.
    timed = ((pairs["status_baseline"] == "ok") & (pairs["status_new"] == "ok")
             & (pairs["device_baseline"] == pairs["device_new"]))
    host = pairs["timer"] == HOST_TIMER
    (base_gauge, base_spread), (new_gauge, new_spread) = (_gauge(pairs, side, host) for side in ("baseline", "new"))
    pairs["ratio"] = (new_gauge / base_gauge).where(timed)
    pairs["change"] = new_gauge - base_gauge
    # F.dropout's host time, new over baseline: how much the host's own speed moved (host rows only).
    pairs["host_drift"] = (pairs["host_ref_ms_new"] / pairs["host_ref_ms_baseline"]).where(host)
    moved = (pairs["host_drift"] > host_drift) | (pairs["host_drift"] < 1 / host_drift)
    own = pairs["backend"].map(host_per_backend).fillna(host_threshold)
    # A drifted host row: its host moved and the drift threshold is above its own (a backend's may not be).
    drifted = host & moved & (own < host_drift_threshold)
    host_limit = own.where(~drifted, host_drift_threshold)
    pairs["threshold"] = host_limit.where(host, pairs["op"].map(per_op).fillna(threshold))
    pairs["drifted"] = drifted & pairs["ratio"].notna()
    floor = (pairs["timer"].map(floor_us).fillna(max(floor_us.values())) / 1000).where(~host, host_floor)
    pairs["bound"] = spread_k * pd.concat([base_spread, new_spread], axis=1).max(axis=1) + floor
    judged = [_retuned(_judge(row), row, retuned_max_rows) for row in pairs.to_dict("records")]
    pairs["verdict"] = [verdict for verdict, _ in judged]
    pairs["note"] = [_with_threads_note(note, pair) for (_, note), pair in zip(judged, pairs.to_dict("records"))]

    order = pairs["verdict"].map({verdict: rank for rank, verdict in enumerate(VERDICTS)})
    pairs = pairs.assign(_order=order).sort_values(["_order"] + KEY_COLUMNS, kind="stable")
    return pairs.drop(columns="_order").reset_index(drop=True)


def _gauge(pairs: pd.DataFrame, side: str, host: pd.Series) -> tuple[pd.Series, pd.Series]:
    """One side's gauge and its p20-p80 spread: ms, or for host rows the ratio to F.dropout's host time."""
    def stat(name: str) -> pd.Series:
        return pairs[f"ms_{name}_{side}"].where(~host, pairs[f"host_ratio_{name}_{side}"])

    return stat("median"), stat("p80") - stat("p20")


def _side(frame: pd.DataFrame, suffix: str) -> pd.DataFrame:
    """The key plus one side's fields, the fields renamed with the side's suffix."""
    renamed = {field: f"{field}_{suffix}" for field in _FIELDS}
    return frame[KEY_COLUMNS + _FIELDS].rename(columns=renamed)


def _judge(pair: dict) -> tuple[str, str]:
    """The verdict of one pair and a short note saying why."""
    before, after = pair["status_baseline"], pair["status_new"]
    if pd.isna(after):
        return "missing_in_new", ""
    if pd.isna(before):
        return "new_only", ""
    if pair["device_baseline"] != pair["device_new"]:
        return "device_mismatch", ""
    if before == "ok" and after == "skipped":
        return "missing_in_new", "ok -> skipped (not measured)"
    if before == "ok" and after != "ok":
        reason = str(pair["error_new"]).strip()
        return "broken", f"ok -> {after}" + (f": {reason}" if reason else "")
    if before != "ok" and after == "ok":
        return "new_only", f"{before} -> ok (no baseline timing)"
    if before != "ok":
        return "unchanged", f"not ok on both sides ({before} -> {after})"

    if pair["timer"] == HOST_TIMER and pd.isna(pair["ratio"]):
        lacking = " and ".join(side for side in ("baseline", "new") if pd.isna(pair[f"host_ratio_median_{side}"]))
        return "not_gated", (f"no host reference (host_ratio_median) in {lacking}: host rows are gated on their "
                             f"ratio to F.dropout's host time in the same run, never on raw host time")

    ratio, limit, change, bound = pair["ratio"], pair["threshold"], pair["change"], pair["bound"]
    if pair["timer"] == HOST_TIMER:
        raw = pair["ms_median_new"] / pair["ms_median_baseline"] - 1
        beyond = (f"x F.dropout {pair['host_ratio_median_baseline']:.3f} -> {pair['host_ratio_median_new']:.3f}: "
                  f"{change:+.3f}, noise bound {bound:.3f}, threshold {limit:.0%}; raw host time {raw:+.1%}")
        if pair["drifted"]:
            beyond += f"; F.dropout itself x{pair['host_drift']:.2f}: a drifted host, judged at {limit:.0%}"
    else:
        change, bound = 1000 * change, 1000 * bound
        beyond = f"{change:+.2f} us, noise bound {bound:.2f} us, threshold {limit:.0%}"
    if ratio > 1 + limit:
        if change > bound:
            return "regression", beyond
        return "unchanged", f"slower, but within noise ({beyond})"
    if ratio < 1 - limit:
        if -change > bound:
            return "improvement", beyond
        return "unchanged", f"faster, but within noise ({beyond})"
    return "unchanged", beyond if pair["drifted"] else ""


def tuned(config) -> str:
    """The autotuner's choice that the timed calls ran, from a config cell: the part after `later:`
    where the runner wrote one (docs/csv.md), without the first-call timings (first_*_ms)."""
    if pd.isna(config):
        return ""
    timed = str(config).rpartition("later:")[2]
    return " ".join(part for part in timed.split() if not part.startswith("first_"))


def _retuned(judged: tuple[str, str], pair: dict, max_rows: int) -> tuple[str, str]:
    """A regression or improvement at a launch-bound size whose sides ran different autotuner choices
    becomes "retuned" (module docstring); anything else stays as judged. Never a host row: the tuner
    picks the GPU's config, not the Python a host row times."""
    verdict, note = judged
    before, after = tuned(pair["config_baseline"]), tuned(pair["config_new"])
    if (verdict not in ("regression", "improvement") or pair["timer"] == HOST_TIMER or pair["rows"] >= max_rows
            or not before or not after or before == after):
        return judged
    article = "an" if verdict == "improvement" else "a"
    return "retuned", f"would be {article} {verdict} ({note}); the autotuner chose {before} in baseline, {after} in new"


def _with_threads_note(note: str, pair: dict) -> str:
    """note, plus a word where the two sides ran backward on different threads (bwd timings then differ)."""
    before, after = pair.get("autograd_threads_baseline"), pair.get("autograd_threads_new")
    if pair["direction"] == "fwd" or pd.isna(before) or pd.isna(after) or before == after:
        return note
    return "; ".join(part for part in (note, f"autograd_threads {before} -> {after}") if part)


def copy_drift(baseline: pd.DataFrame, new: pd.DataFrame) -> tuple[float, int] | None:
    """Median new/baseline ms of the copy rows ok on both sides, and how many there were.

    The copy is the hardware reference: when it is slower too, the machine (clocks,
    neighbours, a different board) moved, not the kernels.
    """
    def ok_copies(frame: pd.DataFrame) -> pd.DataFrame:
        keep = (frame["op"] == COPY) & (frame["status"] == "ok")
        return frame.loc[keep, KEY_COLUMNS + ["device", "ms_median"]]

    paired = ok_copies(baseline).merge(ok_copies(new), on=KEY_COLUMNS + ["device"],
                                       suffixes=("_baseline", "_new"))
    if paired.empty:
        return None
    ratios = paired["ms_median_new"] / paired["ms_median_baseline"]
    return float(ratios.median()), len(paired)


def below_floor(new: pd.DataFrame, min_pct_of_copy: float,
                min_rows: int = DEFAULT_FLOOR_MIN_ROWS) -> pd.DataFrame:
    """Triton rows of the new file whose pct_of_copy is under an absolute floor.

    Only ok fwd/bwd/fwd+bwd rows with at least min_rows rows count: small shapes are
    bound by launch latency, not bandwidth, so no kernel reaches the copy there. A row
    without pct_of_copy (no copy measured) cannot fail the floor.
    """
    failing = ((new["backend"] == "triton") & new["direction"].isin(OP_DIRECTIONS)
               & (new["status"] == "ok") & (new["rows"] >= min_rows)
               & (new["pct_of_copy"] < min_pct_of_copy))
    return new.loc[failing].sort_values("pct_of_copy").reset_index(drop=True)


def compared(result: pd.DataFrame) -> int:
    """How many pairs were timed ok on both sides on one device."""
    return int(result["ratio"].notna().sum())


def has_failed(result: pd.DataFrame, floor: pd.DataFrame, fail_on_missing: bool = False) -> bool:
    """Whether the comparison should fail CI."""
    failing = set(FAILING) | ({"missing_in_new"} if fail_on_missing else set())
    return bool(result["verdict"].isin(failing).any() or not floor.empty)


# -- rendering -------------------------------------------------------------------------

_TIMED_HEADER = ["op", "backend", "dtype", "shape", "p", "direction", "timer",
                 "baseline ms [p20, p80]", "new ms [p20, p80]", "ratio", "note"]
_STATUS_HEADER = ["op", "backend", "dtype", "shape", "p", "direction", "timer",
                  "baseline", "new", "note"]
_FLOOR_HEADER = ["op", "backend", "dtype", "shape", "p", "direction", "timer", "pct_of_copy"]
UNCHANGED_TITLE = "Unchanged"


def _sections(result: pd.DataFrame, floor: pd.DataFrame, verbose: bool):
    """(title, header, rows of text) for each non-empty part of the report, worst first."""
    def pairs_of(verdict: str) -> list[dict]:
        return result.loc[result["verdict"] == verdict].to_dict("records")

    def timed(pairs: list[dict]) -> list[list[str]]:
        return [_key_cells(pair) + [_band(pair, "baseline"), _band(pair, "new"), _ratio_text(pair["ratio"]),
                                    pair["note"]] for pair in pairs]

    def status(pairs: list[dict], field: str) -> list[list[str]]:
        return [_key_cells(pair) + [_cell(pair[f"{field}_baseline"]), _cell(pair[f"{field}_new"]),
                                    pair["note"]] for pair in pairs]

    sections = [
        ("Regressions", _TIMED_HEADER,
         timed(sorted(pairs_of("regression"), key=lambda pair: -pair["ratio"]))),
        ("Broken (ok in baseline, not ok in new)", _STATUS_HEADER, status(pairs_of("broken"), "status")),
        ("Below the pct_of_copy floor", _FLOOR_HEADER,
         [_key_cells(row) + [f"{row['pct_of_copy']:.1f}"] for row in floor.to_dict("records")]),
        ("Improvements", _TIMED_HEADER,
         timed(sorted(pairs_of("improvement"), key=lambda pair: pair["ratio"]))),
        ("Retuned (launch-bound rows whose autotuner choice differs: not judged)", _TIMED_HEADER,
         timed(sorted(pairs_of("retuned"), key=lambda pair: -pair["ratio"]))),
        ("Missing in new", _STATUS_HEADER, status(pairs_of("missing_in_new"), "status")),
        ("New only", _STATUS_HEADER, status(pairs_of("new_only"), "status")),
        ("Device mismatch (not compared)", _STATUS_HEADER, status(pairs_of("device_mismatch"), "device")),
        ("Not gated (host rows without a host reference)", _TIMED_HEADER, timed(pairs_of("not_gated"))),
    ]
    if verbose:
        sections.append((UNCHANGED_TITLE, _TIMED_HEADER, timed(pairs_of("unchanged"))))
    return [section for section in sections if section[2]]


def _summary(result: pd.DataFrame, floor: pd.DataFrame, drift, failed: bool,
             devices: tuple[set, set]) -> tuple[list[str], list[str]]:
    """(warnings to show prominently, summary lines), shared by both renderings."""
    warnings = []
    base_devices, new_devices = devices
    if base_devices != new_devices:
        warnings.append(f"the files were measured on different devices: baseline "
                        f"{_names(base_devices)}, new {_names(new_devices)}; rows of different "
                        f"devices are not compared")
    count = compared(result)
    if count == 0:
        warnings.append("no row was timed ok on both sides: nothing was compared")
    ungated = int((result["verdict"] == "not_gated").sum())
    if ungated:
        warnings.append(f"{ungated} host-timer rows not gated: a host row is gated on host_ratio_median (its "
                        f"ratio to F.dropout's host time in the same run), which a file from before that column "
                        f"lacks; refresh the baseline (docs/ci.md, Baselines)")

    drifted = int(result["drifted"].sum())
    if drifted:
        warnings.append(f"{drifted} host rows ran on a host whose F.dropout time differs from the baseline's by "
                        f"more than the drift factor: judged at the drift threshold, so a smaller host slowdown "
                        f"is not seen there; rerun on a steady host (docs/ci.md, Host drift)")

    retuned = int((result["verdict"] == "retuned").sum())
    if retuned:
        warnings.append(f"{retuned} launch-bound rows not judged: the autotuner chose another config than the "
                        f"baseline's, and at these sizes its choice moves between runs of unchanged code "
                        f"(docs/ci.md, Retuned rows)")
    counts = result["verdict"].value_counts()
    parts = [f"{int(counts[verdict])} {verdict.replace('_', ' ')}" for verdict in VERDICTS
             if verdict in counts.index]
    if not floor.empty:
        parts.append(f"{len(floor)} below the pct_of_copy floor")
    head = f"{'FAIL' if failed else 'PASS'}: {count} timings compared"
    lines = [head + (f"; {', '.join(parts)}" if parts else "")]
    if drift is None:
        lines.append("copy (hardware reference): no copy row ok on both sides")
    else:
        ratio, count = drift
        lines.append(f"copy (hardware reference): median new/baseline {ratio:.2f} over {count} "
                     f"copy rows; far from 1.00 means the machine changed, not the kernels")
    return warnings, lines


def render_text(result, floor, drift, failed, devices, verbose=False) -> str:
    """The terminal report: aligned tables, worst first, then the summary.

    Warnings open and close the report, so that a long log still shows them.
    """
    warnings, lines = _summary(result, floor, drift, failed, devices)
    warnings = [f"WARNING: {warning}" for warning in warnings]
    out = list(warnings)
    for title, header, rows in _sections(result, floor, verbose):
        out += ["", f"{title} ({len(rows)})", _aligned([header] + rows)]
    unchanged = int((result["verdict"] == "unchanged").sum())
    if unchanged and not verbose:
        out += ["", f"{unchanged} unchanged (list them with --verbose)"]
    return "\n".join(out + [""] + lines + warnings).lstrip("\n")


def render_markdown(result, floor, drift, failed, devices) -> str:
    """The report as GitHub-flavoured Markdown, for $GITHUB_STEP_SUMMARY; unchanged rows folded."""
    warnings, lines = _summary(result, floor, drift, failed, devices)
    out = [f"## Performance compare: {'FAIL' if failed else 'PASS'}", ""]
    for warning in warnings:
        out += ["> [!WARNING]", f"> {_md(warning)}", ""]
    out += [f"- {_md(line)}" for line in lines] + [""]
    for title, header, rows in _sections(result, floor, verbose=True):
        table = [f"{title} ({len(rows)})", "", _md_table(header, rows), ""]
        if title == UNCHANGED_TITLE:
            out += [f"<details><summary>{table[0]}</summary>"] + table[1:] + ["</details>", ""]
        else:
            out += [f"### {table[0]}"] + table[1:]
    return "\n".join(out)


def _aligned(rows: list[list[str]]) -> str:
    """Rows of cells as left-aligned columns, two spaces apart."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()
                     for row in rows)


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(_md(cell) for cell in row) + " |" for row in rows])


def _md(text: str) -> str:
    """One table cell or line: pipes escaped and newlines flattened so tables hold."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def _key_cells(row: Mapping) -> list[str]:
    # variational_dim only where it is not the default, so the common case reads as before.
    shape = row["shape"] + (f" dim={row['variational_dim']}" if row["variational_dim"] else "")
    return [row["op"], row["backend"], row["dtype"], shape, f"{row['p']:g}", row["direction"], row["timer"]]


def _key_text(row: Mapping) -> str:
    return " ".join(_key_cells(row)) + f" on {row['device'] or '?'}"


def _band(pair: Mapping, side: str) -> str:
    """A side's median [p20, p80]: ms, or for a gated host row its ratio to F.dropout's host time (x2.16)."""
    if pair["timer"] == HOST_TIMER and pair[f"host_ratio_median_{side}"] > 0:
        median, low, high = (pair[f"host_ratio_{stat}_{side}"] for stat in ("median", "p20", "p80"))
        return f"x{median:.3f} [{low:.3f}, {high:.3f}]"
    median, low, high = (pair[f"{stat}_{side}"] for stat in ("ms_median", "ms_p20", "ms_p80"))
    if not median > 0:  # not timed (NaN), or a failed row's placeholder
        return "-"
    # Four significant digits of the median, the band at the same decimals: a 5 us
    # kernel keeps its precision and the three numbers line up.
    decimals = max(0, 3 - math.floor(math.log10(median)))
    return f"{median:.{decimals}f} [{low:.{decimals}f}, {high:.{decimals}f}]"


def _ratio_text(ratio: float) -> str:
    return "-" if pd.isna(ratio) else f"{ratio:.3f} ({ratio - 1:+.1%})"


def _cell(value) -> str:
    return "-" if pd.isna(value) else str(value)


def _names(devices: set) -> str:
    return ", ".join(sorted(device or "?" for device in devices)) or "none"


# -- command line ----------------------------------------------------------------------

#: The ops whose rows are judged (copy rows never are), for --threshold-for.
JUDGED_OPS = [op for op in ALL_OPS if op != COPY]


JUDGED_BACKENDS = [backend for backend in BACKENDS if backend != COPY]


def _named_threshold(text: str, kind: str, names: list[str]) -> tuple[str, float]:
    """Parse KIND=VALUE; names outside `names` (copy is never judged) are refused so that a typo cannot
    silently apply nothing."""
    name, sep, value = text.partition("=")
    if not sep or name not in names:
        raise argparse.ArgumentTypeError(f"expected {kind}=VALUE with {kind} one of {', '.join(names)}, got {text!r}")
    return name, _relative(value)


def _op_threshold(text: str) -> tuple[str, float]:
    """Parse OP=VALUE for --threshold-for."""
    return _named_threshold(text, "OP", JUDGED_OPS)


def _backend_threshold(text: str) -> tuple[str, float]:
    """Parse BACKEND=VALUE for --host-threshold-for."""
    return _named_threshold(text, "BACKEND", JUDGED_BACKENDS)


def _timer_floor(text: str) -> tuple[str, float]:
    """Parse TIMER=US; unknown timers (and host, whose floor is --host-floor) are refused, as unknown ops are."""
    timer, sep, value = text.partition("=")
    if not sep or timer not in DEFAULT_FLOOR_US:
        raise argparse.ArgumentTypeError(f"expected TIMER=US with TIMER one of {', '.join(DEFAULT_FLOOR_US)} "
                                         f"(host: --host-floor), got {text!r}")
    return timer, _fraction(value)


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be a number >= 0: {text!r}")
    return value


def _relative(text: str) -> float:
    """A relative slowdown as a fraction: 0.05 is 5%; 5 (a percentage typed by habit) is refused."""
    value = _fraction(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"a fraction in [0, 1] (0.05 is 5%), got {text!r}")
    return value


def _factor(text: str) -> float:
    """A factor > 1 (1.3: 30% either way; inf: never)."""
    value = _fraction(text)
    if not value > 1:
        raise argparse.ArgumentTypeError(f"a factor > 1 (1.3 is 30% either way, inf never), got {text!r}")
    return value


def _percent(text: str) -> float:
    value = _fraction(text)
    if value > 100:
        raise argparse.ArgumentTypeError(f"a percentage in [0, 100], got {text!r}")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0: {text!r}")
    return value


def _parse_args(argv):
    floors = ", ".join(f"{timer} {us:g}" for timer, us in DEFAULT_FLOOR_US.items())
    parser = argparse.ArgumentParser(
        prog="dropbench-compare",
        description="Compare two dropbench results CSVs; exit 1 on a regression, 3 when nothing was compared.")
    parser.add_argument("baseline", help="results CSV of the reference run")
    parser.add_argument("new", help="results CSV of the run under test")
    parser.add_argument("--threshold", type=_relative, default=DEFAULT_THRESHOLD,
                        help="relative slowdown that counts, e.g. 0.05 for 5%% (default %(default)s)")
    parser.add_argument("--threshold-for", type=_op_threshold, action="append", default=[],
                        metavar="OP=VALUE", help="per-op threshold, e.g. variational=0.08; repeatable")
    parser.add_argument("--floor-us", type=_timer_floor, action="append", default=[], metavar="TIMER=US",
                        help=f"absolute slowdown below which a timer's rows are noise, microseconds; "
                             f"repeatable (default: {floors})")
    parser.add_argument("--host-floor", type=_fraction, default=DEFAULT_HOST_FLOOR, metavar="RATIO",
                        help="absolute slowdown below which a host row is noise, in its ratio to F.dropout's "
                             "host time (default %(default)s: 2%% of F.dropout's)")
    parser.add_argument("--host-threshold", type=_relative, default=DEFAULT_HOST_THRESHOLD, metavar="VALUE",
                        help="relative rise of a host row's ratio to F.dropout that counts, for backends "
                             "without their own (--host-threshold-for) (default %(default)s)")
    per_backend = ", ".join(f"{name}={value:g}" for name, value in DEFAULT_HOST_THRESHOLD_FOR.items())
    parser.add_argument("--host-threshold-for", type=_backend_threshold, action="append", default=[],
                        metavar="BACKEND=VALUE",
                        help=f"a backend's own host threshold (instead of --host-threshold); repeatable "
                             f"(default: {per_backend})")
    parser.add_argument("--host-drift", type=_factor, default=DEFAULT_HOST_DRIFT, metavar="FACTOR",
                        help="a host row whose F.dropout host time moved by more than this factor (either way) ran "
                             "on a drifted host (default %(default)s)")
    parser.add_argument("--host-drift-threshold", type=_relative, default=DEFAULT_HOST_DRIFT_THRESHOLD,
                        metavar="VALUE", help="the host threshold for such rows (default %(default)s)")
    parser.add_argument("--spread-k", type=_fraction, default=DEFAULT_SPREAD_K, metavar="K",
                        help="p20-p80 spreads a median may move between runs of unchanged code "
                             "(default %(default)s)")
    parser.add_argument("--retuned-max-rows", type=_count, default=DEFAULT_RETUNED_MAX_ROWS, metavar="N",
                        help="below N rows, a timing change with another autotuner choice is 'retuned', not "
                             "judged (default %(default)s; 0 judges every row)")
    parser.add_argument("--min-pct-of-copy", type=_percent, metavar="PCT",
                        help="fail when a triton row of NEW reaches less than PCT%% of the copy")
    parser.add_argument("--floor-min-rows", type=_count, default=DEFAULT_FLOOR_MIN_ROWS, metavar="N",
                        help="apply the pct_of_copy floor only to shapes with at least N rows (default %(default)s)")
    parser.add_argument("--fail-on-missing", action="store_true",
                        help="fail when a baseline row is missing (or skipped) in NEW; default report only")
    parser.add_argument("--allow-empty", action="store_true",
                        help="pass (exit 0) when no row was compared, instead of exit 3")
    parser.add_argument("--markdown", metavar="PATH", help="also write the report as Markdown to PATH")
    parser.add_argument("--verbose", "-v", action="store_true", help="list unchanged rows too")
    args = parser.parse_args(argv)
    if args.host_drift_threshold < args.host_threshold:
        parser.error(f"argument --host-drift-threshold: must be >= --host-threshold ({args.host_threshold}), "
                     f"got {args.host_drift_threshold}")
    return args


def _nothing_compared(baseline: pd.DataFrame, new: pd.DataFrame) -> str:
    """The one line saying why no row was compared."""
    base_devices, new_devices = set(baseline["device"]), set(new["device"])
    if not base_devices & new_devices:
        return (f"nothing compared: device mismatch, baseline measured on {_names(base_devices)}, "
                f"new on {_names(new_devices)} (--allow-empty to pass anyway)")
    return "nothing compared: no row was timed ok on both sides (--allow-empty to pass anyway)"


def main(argv: list[str] | None = None) -> int:
    """Run the comparison; the exit code says the verdict (module docstring)."""
    args = _parse_args(argv)
    try:
        baseline, new = load_results(args.baseline), load_results(args.new)
    except InputError as err:
        print(f"dropbench-compare: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT

    result = compare(baseline, new, args.threshold, dict(args.threshold_for), dict(args.floor_us), args.spread_k,
                     args.host_floor, args.retuned_max_rows, args.host_threshold, args.host_drift,
                     args.host_drift_threshold, dict(args.host_threshold_for))
    if args.min_pct_of_copy is None:
        floor = new.iloc[0:0]
    else:
        floor = below_floor(new, args.min_pct_of_copy, args.floor_min_rows)
    failed = has_failed(result, floor, args.fail_on_missing)
    # A failure (a broken row) outranks an empty comparison; an empty one never passes silently.
    if not failed and compared(result) == 0 and not args.allow_empty:
        print(f"dropbench-compare: error: {_nothing_compared(baseline, new)}", file=sys.stderr)
        return EXIT_EMPTY
    drift = copy_drift(baseline, new)
    devices = (set(baseline["device"]), set(new["device"]))

    print(render_text(result, floor, drift, failed, devices, args.verbose))
    if args.markdown:
        try:
            with open(args.markdown, "w", encoding="utf-8") as handle:
                handle.write(render_markdown(result, floor, drift, failed, devices))
        except OSError as err:
            print(f"dropbench-compare: error: cannot write {args.markdown}: {err.strerror}", file=sys.stderr)
            return EXIT_BAD_INPUT
    return EXIT_FAIL if failed else EXIT_PASS


if __name__ == "__main__":
    sys.exit(main())
