"""The pytest-benchmark suite: each backend at a few representative shapes, on a GPU only.

Run it with `python -m pytest bench/perf` (it is outside tests/, so the unit-test run
does not collect it). See README "pytest-benchmark suite".
"""
