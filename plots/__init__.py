"""Figures from results CSVs: read and check (load), draw (figures), save (render).

Reads only CSVs and bench.schema, never torch, so figures can be made on any
machine from results copied off the GPU one.
"""

from dropbench.plots.load import ResultsError, load_results
from dropbench.plots.render import write_all

__all__ = ["ResultsError", "load_results", "write_all"]
