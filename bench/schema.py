"""The results CSV: its columns and the values they may take.

The CSV is the interface between measuring (bench.runner) and showing (plots,
bench.compare); this module is the one place that defines it. No torch here.
"""

from dropbench.bench import catalogue

#: Every column, in file order. Units are in the names where they are not obvious.
COLUMNS = [
    "op",                # one of OPS | copy (the reference device-to-device copy)
    "backend",           # one of BACKENDS (bench.catalogue): triton | eager | compile | copy
    "dtype",             # fp16 | bf16 | fp32 | fp64
    "rows",              # the input's first dim (N of a channel op's (N, C, ...) input)
    "cols",              # numel // rows: the input read as (rows, cols)
    "shape",             # the whole input shape, e.g. 8192x192x16x16 for a channel op's (N, C, H, W)
    "numel",             # rows * cols
    "p",                 # drop probability
    "direction",         # fwd | bwd | fwd+bwd
    "timer",             # do_bench | cudagraph | cpu
    "autograd_threads",  # True: backward ran on autograd's device thread (PyTorch's GPU default); False: on the caller's
    "ms_median",         # median time of one call, milliseconds
    "ms_p20",            # 20th percentile, milliseconds
    "ms_p80",            # 80th percentile, milliseconds
    "gbps",              # useful bytes (one read + one write per pass) / ms_median, GB/s
    "pct_of_copy",       # 100 * copy_ms * passes / ms_median
    "speedup_vs_eager",  # eager ms_median / this ms_median, same op/dtype/shape/direction/timer
    "saved_bytes",       # bytes autograd saves for backward (saved_tensors_hooks)
    "peak_bytes",        # peak memory over a fwd+bwd step above the inputs, bytes
    "config",            # autotune choice, where there is one
    "status",            # ok | incorrect | oom | error | skipped | suspect_copy (a copy whose timers disagree)
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
#: shape is part of it: two channel-op shapes (32x64x112x112, 32x256x56x56) share rows and cols.
KEY_COLUMNS = ["op", "backend", "dtype", "rows", "cols", "shape", "p", "direction", "timer"]
#: The columns of files written before `shape` existed; readers fill it in as legacy_shape(rows, cols).
COLUMNS_WITHOUT_SHAPE = [column for column in COLUMNS if column != "shape"]
#: Columns added since the first files; older files lack some of them and readers fill them in (fill_added).
ADDED_COLUMNS = ["shape", "autograd_threads"]
#: Where backward ran in GPU runs from before the autograd_threads column: PyTorch's default, the
#: device thread. (A CPU backward always runs on the calling thread: those rows read as False.)
LEGACY_AUTOGRAD_THREADS = "True"


def legacy_autograd_threads(device: str) -> str:
    """The autograd_threads of a row written before the column, from its device."""
    return "False" if device == "cpu" else LEGACY_AUTOGRAD_THREADS

#: Dropout operators; rows with op == "copy" (backend "copy", direction "fwd") are the
#: device-to-device copy of a (rows, cols) tensor that pct_of_copy is measured against.
OPS = list(catalogue.OPS)
#: The two ops the default sweep, the CI preset and the perf suite measure.
CORE_OPS = ["dropout", "variational"]
COPY = catalogue.COPY
BACKENDS = [*catalogue.BACKENDS, COPY]
DTYPES = ["fp16", "bf16", "fp32", "fp64"]
DIRECTIONS = ["fwd", "bwd", "fwd+bwd"]
TIMERS = ["do_bench", "cudagraph", "cpu"]
STATUSES = ["ok", "incorrect", "oom", "error", "skipped", "suspect_copy"]

#: Bytes per element of each dtype name.
DTYPE_BYTES = {"fp16": 2, "bf16": 2, "fp32": 4, "fp64": 8}

#: How many read-one-write-one passes over the tensor each direction makes.
PASSES = {"fwd": 1, "bwd": 1, "fwd+bwd": 2}


def shape_text(shape) -> str:
    """The `shape` column's text: (8192, 192, 16, 16) -> '8192x192x16x16'."""
    return "x".join(str(int(size)) for size in shape)


def legacy_shape(rows, cols) -> str:
    """The shape of a row written before the column existed: every input was (rows, cols)."""
    return shape_text((rows, cols))


def fill_added(row: dict) -> dict:
    """A row of an older file with every column, the ADDED_COLUMNS it lacked filled as they were then."""
    filled = {column: row.get(column, "") for column in COLUMNS}
    if "shape" not in row:
        filled["shape"] = legacy_shape(row["rows"], row["cols"])
    if "autograd_threads" not in row:
        filled["autograd_threads"] = legacy_autograd_threads(row.get("device", ""))
    return filled
