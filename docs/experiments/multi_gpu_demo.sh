#!/usr/bin/env bash
# Issue 8 on a 2-GPU machine: the same multirun (ci preset, Triton backends, 4 jobs of dtype x op)
# with device.gpus=[0] and with device.gpus=[0,1] through submitit's local executor; wall time of
# each, and whether each merged.csv is exactly the union of its jobs' CSVs.
# Usage (hydra wheels on PYTHONPATH): bash docs/experiments/multi_gpu_demo.sh OUT_DIR
set -uo pipefail
out=${1:?OUT_DIR}
for gpus in "0" "0,1"; do
  name=gpus-${gpus/,/-}
  start=$(date +%s.%N)
  python3 -m bench -m hydra/launcher=gpus_local "device.gpus=[$gpus]" +preset=ci backend=triton \
    dtype=fp16,fp32 op=dropout,variational hydra.sweep.dir="multirun/$name" > "$out/$name.log" 2>&1
  status=$?
  wall=$(python3 -c "import time; print(f'{time.time() - $start:.1f}')")
  echo "device.gpus=[$gpus]: exit $status, wall $wall s" | tee -a "$out/summary.txt"
  grep -h "claimed GPU" multirun/"$name"/*/dropbench-sweep.log | sed "s/^/  /" | tee -a "$out/summary.txt"
  cp "multirun/$name/merged.csv" "$out/$name-merged.csv"
  python3 - "multirun/$name" <<'PY' | tee -a "$out/summary.txt"
import csv, glob, sys
from bench.schema import KEY_COLUMNS
def rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))
def key(row):
    return tuple(row[c] for c in KEY_COLUMNS)
jobs = sorted(glob.glob(f"{sys.argv[1]}/*/results.csv"))
union = [row for path in jobs for row in rows(path)]
merged = rows(f"{sys.argv[1]}/merged.csv")
# Each job measures its own copy reference: the two op jobs of a dtype share those keys.
print(f"  {len(jobs)} job CSVs: {len(union)} rows, {len({key(r) for r in union})} distinct keys; "
      f"merged.csv: {len(merged)} rows, no key twice: {len(merged) == len({key(r) for r in merged})}; "
      f"keys == union of the jobs' keys: {({key(r) for r in merged}) == {key(r) for r in union}}; "
      f"every merged row is a job's row: {all(r in union for r in merged)}")
PY
done
tar czf "$out/job-csvs.tgz" multirun/*/*/results.csv
