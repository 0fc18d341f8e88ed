"""dropbench's runner: check each implementation, time it, record one CSV row per measurement.

This package's __init__ imports nothing heavy, so that plots/ and compare can use
bench.schema without pulling in torch.
"""
