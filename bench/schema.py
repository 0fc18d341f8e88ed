"""The results CSV: its columns, the values they may take, and how older files read today.

The CSV is the interface between measuring (bench.runner) and showing (plots,
bench.compare); this module is the one place that defines it, and every allowed
value of a categorical column lives here. docs/csv.md documents each column.
No torch here, and no pandas: the writer and the reader both use it.
"""

from dropbench.bench import catalogue

#: Every column, in file order. Units are in the names where they are not obvious.
COLUMNS = [
    "op",                # one of OPS | copy (the reference device-to-device copy)
    "backend",           # one of BACKENDS (bench.catalogue): what is timed
    "dtype",             # one of DTYPES
    "rows",              # the input's first dim (N of a channel op's (N, C, ...) input)
    "cols",              # numel // rows: the input read as (rows, cols)
    "shape",             # the whole input shape, e.g. 8192x192x16x16 for a channel op's (N, C, H, W)
    "model",             # the shape=models entry the shape is (e.g. "llama-7b mlp"); empty for the design grid
    "numel",             # rows * cols; tokens per step for training-step rows
    "p",                 # drop probability
    "variational_dim",   # the dim the variational mask is shared along (0 where the op has none)
    "direction",         # one of DIRECTIONS
    "timer",             # one of TIMERS
    "autograd_threads",  # True: backward ran on autograd's device thread (PyTorch's GPU default); False: on the caller's
    "ms_median",         # median time of one call (one step for training-step rows), milliseconds
    "ms_p20",            # 20th percentile, milliseconds
    "ms_p80",            # 80th percentile, milliseconds
    "samples",           # how many timed samples the timer took
    "host_ref_ms",       # host rows: F.dropout's median host time per call, in rounds alternating with the row's
    "host_ratio_median", # host rows: median of the per-round ratio row / F.dropout (what compare gates on)
    "host_ratio_p20",    # host rows: 20th percentile of that ratio
    "host_ratio_p80",    # host rows: 80th percentile of that ratio
    "gbps",              # derived (bench.table.derive): kept for readers of old files
    "pct_of_copy",       # derived
    "speedup_vs_eager",  # derived
    "saved_bytes",       # bytes autograd saves for backward (saved_tensors_hooks)
    "peak_bytes",        # peak memory over a fwd+bwd step (or a training step) above the inputs, bytes
    "config",            # autotune choice, where there is one
    "mask_contract",     # version of the mask stream a seed produces (MASK_CONTRACT)
    "status",            # one of STATUSES; suspect_copy: a copy whose timers disagree beyond noise
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
#: variational_dim is last, so that a key built before it existed is the prefix of today's.
KEY_COLUMNS = ["op", "backend", "dtype", "rows", "cols", "shape", "p", "direction", "timer", "variational_dim"]

#: Columns added since the first files, with what an older file's rows held, as text: a
#: callable of the row where it depends on it. The reader fills them in (upgrade_row).
ADDED_COLUMNS = {
    # Every input was 2-D before shape existed.
    "shape": lambda row: shape_text((row["rows"], row["cols"])),
    # PyTorch's default then: backward on autograd's device thread (a CPU backward always
    # runs on the calling thread).
    "autograd_threads": lambda row: "False" if row.get("device") == "cpu" else "True",
    "variational_dim": lambda row: "0",
    "samples": lambda row: "",          # not recorded then
    "mask_contract": lambda row: "v1",  # the only mask stream there was
    "model": lambda row: "",            # every shape came from the design grid
    # Host rows had no reference: compare cannot gate them (bench.compare says so).
    "host_ref_ms": lambda row: "",
    "host_ratio_median": lambda row: "",
    "host_ratio_p20": lambda row: "",
    "host_ratio_p80": lambda row: "",
}
#: Backend names of older files, and what they time: the Triton kernel of the row's op.
RENAMED_BACKENDS = {"triton_seeded": "triton", "triton_variational": "triton"}

#: The mask stream a (seed, shape, p) gives today; bumped when the stream changes. The same value as
#: dropbench.kernels.MASK_CONTRACT (a test checks), kept here so that reading results needs no torch.
#: v1 (to 2026-12-05): R(s) = word (s mod 4) of Philox(key, s div 4); v2 (to 2026-12-06): ties broken by
#: a second Philox call; v3: kernels.contract.
MASK_CONTRACT = "v3"

#: Dropout operators; rows with op == "copy" (backend "copy", direction "fwd") are the
#: device-to-device copy of a (rows, cols) tensor that pct_of_copy is measured against.
OPS = list(catalogue.OPS)
#: Training-step ops: one optimizer step of a small model with this dropout (direction "step").
TRAIN_OPS = ["train_step", "train_step_variational"]
#: The two ops the default sweep, the CI preset and the perf suite measure.
CORE_OPS = ["dropout", "variational"]
COPY = catalogue.COPY
ALL_OPS = OPS + TRAIN_OPS + [COPY]
BACKENDS = [*catalogue.BACKENDS, COPY]
DTYPES = ["fp16", "bf16", "fp32", "fp64"]
#: The directions of an op's timing; "step" is a whole training step.
OP_DIRECTIONS = ["fwd", "bwd", "fwd+bwd"]
STEP = "step"
DIRECTIONS = OP_DIRECTIONS + [STEP]
#: Timers of one op's device time; "host" is the median Python time per call (GPU idle-bound).
DEVICE_TIMERS = ["do_bench", "cudagraph", "cpu"]
HOST_TIMER = "host"
#: Timers of a training step: ms per step under eager, torch.compile or CUDA graphs.
TRAIN_TIMERS = ["train_eager", "train_compile", "train_cudagraphs"]
TIMERS = DEVICE_TIMERS + [HOST_TIMER] + TRAIN_TIMERS
STATUSES = ["ok", "incorrect", "oom", "error", "skipped", "suspect_copy"]

#: The allowed values of each categorical column.
ALLOWED = {
    "op": ALL_OPS,
    "backend": BACKENDS,
    "dtype": DTYPES,
    "direction": DIRECTIONS,
    "timer": TIMERS,
    "status": STATUSES,
    "autograd_threads": ["True", "False"],
}


def allowed() -> dict[str, list[str]]:
    """ALLOWED, with the op and backend names of the catalogue as it is now (a test may add rows)."""
    return {**ALLOWED, "op": [*catalogue.OPS, *TRAIN_OPS, COPY], "backend": [*catalogue.BACKENDS, COPY]}


#: Integer columns (empty allowed where nothing was measured).
INT_COLUMNS = ["rows", "cols", "numel", "variational_dim", "samples", "saved_bytes", "peak_bytes", "sm_count"]
#: Real-valued columns.
FLOAT_COLUMNS = ["p", "ms_median", "ms_p20", "ms_p80", "host_ref_ms", "host_ratio_median", "host_ratio_p20",
                 "host_ratio_p80", "gbps", "pct_of_copy", "speedup_vs_eager"]

#: Bytes per element of each dtype name.
DTYPE_BYTES = {"fp16": 2, "bf16": 2, "fp32": 4, "fp64": 8}

#: How many read-one-write-one passes over the tensor each op direction makes.
PASSES = {"fwd": 1, "bwd": 1, "fwd+bwd": 2}


def shape_text(shape) -> str:
    """The `shape` column's text: (8192, 192, 16, 16) -> '8192x192x16x16'."""
    return "x".join(str(int(size)) for size in shape)


def legacy_shape(rows, cols) -> str:
    """The shape of a row written before the column existed: every input was (rows, cols)."""
    return shape_text((rows, cols))


def legacy_autograd_threads(device: str) -> str:
    """The autograd_threads of a row written before the column, from its device."""
    return ADDED_COLUMNS["autograd_threads"]({"device": device})


def unknown_columns(header: list[str]) -> list[str]:
    """Columns of `header` this version does not know (a newer version's or not a results file)."""
    return [column for column in header if column not in COLUMNS]


def missing_columns(header: list[str]) -> list[str]:
    """Columns a file with `header` lacks that no upgrade can fill in."""
    return [column for column in COLUMNS if column not in header and column not in ADDED_COLUMNS]


def upgrade_row(row: dict) -> dict:
    """A row of any known version (cells as text) as this version's: every column, today's names."""
    upgraded = {column: row.get(column, "") for column in COLUMNS}
    for column, fill in ADDED_COLUMNS.items():
        if column not in row:
            upgraded[column] = fill(row)
    upgraded["backend"] = RENAMED_BACKENDS.get(upgraded["backend"], upgraded["backend"])
    return upgraded


def needs_upgrade(header: list[str], backends) -> bool:
    """Whether a file with this header and these backend names is not this version's as it stands."""
    return header != COLUMNS or any(backend in RENAMED_BACKENDS for backend in backends)
