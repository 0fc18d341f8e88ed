"""dropbench: seeded, mask-free Triton dropout and a harness that benchmarks it.

The repository's top-level folders are this package's parts (pyproject maps them):
dropbench.kernels (the Triton dropouts), dropbench.baselines (eager and torch.compile),
dropbench.bench (check, time, record), dropbench.plots (figures from CSVs) and
dropbench.configs (the Hydra configs of the sweep).
"""

__version__ = "0.2.0"
