"""The results CSV: its columns and the values they may take.

The CSV is the interface between measuring (bench.runner) and showing (plots,
bench.compare); this module is the one place that defines it. No torch here.
"""

#: Every column, in file order. Units are in the names where they are not obvious.
COLUMNS = [
    "op",                # dropout | variational | copy (the reference device-to-device copy)
    "backend",           # triton_seeded | triton_variational | eager | compile | copy
    "dtype",             # fp16 | bf16 | fp32 | fp64
    "rows",              # leading size of the (rows, cols) input
    "cols",              # trailing size
    "numel",             # rows * cols
    "p",                 # drop probability
    "direction",         # fwd | bwd | fwd+bwd
    "timer",             # do_bench | cudagraph | cpu
    "ms_median",         # median time of one call, milliseconds
    "ms_p20",            # 20th percentile, milliseconds
    "ms_p80",            # 80th percentile, milliseconds
    "gbps",              # useful bytes (one read + one write per pass) / ms_median, GB/s
    "pct_of_copy",       # 100 * copy_ms * passes / ms_median
    "speedup_vs_eager",  # eager ms_median / this ms_median, same op/dtype/shape/direction/timer
    "saved_bytes",       # bytes autograd saves for backward (saved_tensors_hooks)
    "peak_bytes",        # peak memory over a fwd+bwd step above the inputs, bytes
    "config",            # autotune choice, where there is one
    "status",            # ok | incorrect | oom | error | skipped
    "error",             # why, when status is not ok
    "device",            # torch.cuda.get_device_name(), or cpu
    "sm_count",
    "torch",
    "triton",
    "cuda",
    "commit",
    "host",
    "timestamp",         # ISO 8601, UTC
    "run_id",
]

#: The columns that name one measurement; a results file has each combination once.
KEY_COLUMNS = ["op", "backend", "dtype", "rows", "cols", "p", "direction", "timer"]

#: Dropout operators; rows with op == "copy" (backend "copy", direction "fwd") are the
#: device-to-device copy of the same tensor that pct_of_copy is measured against.
OPS = ["dropout", "variational"]
COPY = "copy"
BACKENDS = ["triton_seeded", "triton_variational", "eager", "compile", "copy"]
DTYPES = ["fp16", "bf16", "fp32", "fp64"]
DIRECTIONS = ["fwd", "bwd", "fwd+bwd"]
TIMERS = ["do_bench", "cudagraph", "cpu"]
STATUSES = ["ok", "incorrect", "oom", "error", "skipped"]

#: Bytes per element of each dtype name.
DTYPE_BYTES = {"fp16": 2, "bf16": 2, "fp32": 4, "fp64": 8}

#: How many read-one-write-one passes over the tensor each direction makes.
PASSES = {"fwd": 1, "bwd": 1, "fwd+bwd": 2}
