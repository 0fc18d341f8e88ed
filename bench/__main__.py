"""`python -m bench ...`: the same as `dropbench-sweep ...`."""

from bench.sweep import main

main()
