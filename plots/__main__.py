"""dropbench-plot: every figure from one or more results CSVs, as PNG and SVG.

    dropbench-plot results/h100.csv results/h200.csv --out figures/

Bad input ends with a one-line message and exit status 2 (as dropbench-sweep and dropbench-compare),
not a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys

from dropbench.bench import schema
from dropbench.plots.load import ResultsError, load_results
from dropbench.plots.render import write_all

#: Exit status for bad input, as the other entry points (argparse's own errors exit 2 too).
BAD_INPUT_EXIT = 2


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="dropbench-plot",
        description="Draw every dropbench figure from results CSVs (several CSVs: "
                    "their runs share each figure).",
    )
    parser.add_argument("csv", nargs="+", help="results CSV(s) written by dropbench-sweep")
    parser.add_argument("--out", required=True, help="folder for the figures (created if missing)")
    parser.add_argument("--timer", choices=schema.TIMERS,
                        help="plot only this timer (default: each timer present, separately)")
    parser.add_argument("--quiet", action="store_true", help="do not list the files written")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Notes (a skipped figure, a dropped partial line) as one line each, on stderr.
    logging.basicConfig(level=logging.WARNING, format="dropbench-plot: note: %(message)s")
    try:
        written = write_all(load_results(args.csv), args.out, timer=args.timer)
    except (ResultsError, OSError) as exc:  # OSError: the output folder cannot be written
        print(f"dropbench-plot: error: {exc}", file=sys.stderr)
        sys.exit(BAD_INPUT_EXIT)
    if not args.quiet:
        for path in written:
            print(path)
    print(f"dropbench-plot: wrote {len(written)} files to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
