#!/usr/bin/env bash
# The GPU runs issues 6 and 7 still need, one step per device call (each fits the 10-minute limit):
#   probe    runs_vs_tiles.py (tiles, runs and the unmeasured `groups` candidate), the GPU tests
#            of the kernels that changed since the last sweeps, and launch_overhead.py with backward
#            on the calling thread (~7 min)
#   ops      the other-ops sweep (op=all less dropout and variational, shape=few, fp16/fp32) with the
#            runs kernel and timing.autograd_threads=false (~6 min)
#   default  the default sweep with timing.autograd_threads=false (~6 min)
# A step cut off by the time limit resumes from its CSV when run again with the same OUT_DIR carried.
# Usage, in the repo root of the GPU machine with the hydra wheels in .whl/ (../shared/gpu/fetch-wheels):
#   bash docs/experiments/gpu_rerun.sh STEP "$OUT"
set -uo pipefail
step=${1:?STEP: probe, ops or default}
out=${2:?OUT_DIR}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD
export DROPBENCH_COMMIT=${DROPBENCH_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv > "$out/device-$step.txt"
case $step in
  probe)
    timeout 150 python3 docs/experiments/runs_vs_tiles.py > "$out/runs-vs-tiles-groups.txt" 2>&1
    timeout 300 python3 -m pytest -q -p no:cacheprovider tests/test_variational.py tests/test_ops.py \
      tests/test_check.py -k "runs or tile or channel or feature_alpha or both" > "$out/gpu-tests.txt" 2>&1
    AUTOGRAD_THREADS=0 timeout 90 python3 docs/experiments/launch_overhead.py 256 1024 2048 \
      > "$out/host-threads-off.txt" 2>&1  # variational fwd+bwd at 1024 rows read 59.5% once: again
    tail -3 "$out/gpu-tests.txt" ;;
  ops)
    timeout 580 python3 -m bench op=all \
      "op.names=[dropout_inplace,alpha_dropout,dropout1d,dropout2d,dropout3d,feature_dropout,feature_alpha_dropout]" \
      shape=few dtype=fp16_fp32 results.path="$out/h100-ops-v3.csv" hydra.run.dir=/tmp/hydra-ops \
      > "$out/ops.log" 2>&1
    tail -5 "$out/ops.log" ;;
  default)
    timeout 580 python3 -m bench results.path="$out/h100-default-v3.csv" hydra.run.dir=/tmp/hydra-default \
      > "$out/default.log" 2>&1
    tail -5 "$out/default.log" ;;
  *) echo "unknown step $step: probe, ops or default" >&2; exit 2 ;;
esac
