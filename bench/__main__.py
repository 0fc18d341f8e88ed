"""`python -m dropbench.bench ...`: the same as `dropbench-sweep ...`."""

from dropbench.bench.sweep import main

main()
