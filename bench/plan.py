"""Expand a composed sweep config into the ordered list of points to measure.

A point is one (op, backend, dtype, rows, cols, p) with the directions and
timers to measure there; each (direction, timer) of a point is one CSV row.
The order matters: within a (dtype, shape) the copy comes first and, per op,
eager before the others, so pct_of_copy and speedup_vs_eager can be filled in
as each row is written.
"""

from dataclasses import dataclass

from bench import registry, schema

#: The p recorded on copy rows. A copy drops nothing, and the key needs a number
#: (bench.compare rejects an empty key), so one copy per (dtype, shape, timer) serves every p.
COPY_P = 0.0


@dataclass(frozen=True)
class Point:
    op: str
    backend: str
    dtype: str
    rows: int
    cols: int
    p: float
    directions: tuple[str, ...]
    timers: tuple[str, ...]

    @property
    def numel(self) -> int:
        return self.rows * self.cols

    @property
    def is_copy(self) -> bool:
        return self.op == schema.COPY

    def key(self, direction: str, timer: str) -> tuple:
        """The CSV key (schema.KEY_COLUMNS order) of one of this point's rows."""
        return (self.op, self.backend, self.dtype, self.rows, self.cols, float(self.p), direction, timer)

    def keys(self) -> list[tuple]:
        return [self.key(direction, timer) for timer in self.timers for direction in self.directions]

    def label(self) -> str:
        return f"{self.op}/{self.backend} {self.dtype} {self.rows}x{self.cols} p={self.p:g}"


def _names(cfg_names, allowed: list[str], what: str) -> list[str]:
    names = [str(name) for name in cfg_names]
    unknown = [name for name in names if name not in allowed]
    if unknown:
        raise ValueError(f"unknown {what} {', '.join(unknown)}; known: {', '.join(allowed)}")
    if not names:
        raise ValueError(f"no {what} selected")
    return list(dict.fromkeys(names))  # drop repeats, keep order


def pairs(ops: list[str], backends: list[str]) -> list[tuple[str, str]]:
    """Registered (op, backend) pairs with op in ops and backend in backends; eager first per op."""
    chosen = []
    for op in ops:
        found = [backend for backend in registry.backends(op) if backend in backends]
        chosen += [(op, backend) for backend in sorted(found, key=lambda backend: backend != "eager")]
    if not chosen:
        raise ValueError(
            f"no registered (op, backend) pair has op in {ops} and backend in {backends}; "
            f"registered: {', '.join(f'{op}/{backend}' for op, backend in registry.REGISTRY)}"
        )
    return chosen


def timers_for(device: str, rows: int, timing) -> tuple[str, ...]:
    """cpu on the CPU; on a GPU do_bench from do_bench_min_rows up, cudagraph up to cudagraph_max_rows.

    do_bench times from the host, so a small shape measures Python launch overhead as much
    as GPU work; the CUDA-graph timer measures the GPU work alone. A shape neither covers
    is a configuration error, not a silently empty row.
    """
    if device == "cpu":
        return ("cpu",)
    timers = []
    if rows >= int(timing.do_bench_min_rows):
        timers.append("do_bench")
    if rows <= int(timing.cudagraph_max_rows):
        timers.append("cudagraph")
    if not timers:
        raise ValueError(
            f"rows={rows} gets no timer: timing.do_bench_min_rows={timing.do_bench_min_rows} and "
            f"timing.cudagraph_max_rows={timing.cudagraph_max_rows}; every shape needs "
            "rows >= do_bench_min_rows or rows <= cudagraph_max_rows"
        )
    return tuple(timers)


def expand(cfg, device: str) -> list[Point]:
    """Every point of the sweep, in measuring order: dtype, rows, then copy and each p's pairs."""
    dtypes = _names(cfg.dtype.names, schema.DTYPES, "dtype")
    directions = _names(cfg.direction.names, schema.DIRECTIONS, "direction")
    # schema.OPS, not registry.ops(): the checks and the CSV know these masks; other registered
    # ops (channel, alpha, in-place dropout) need their own checks before they can be swept.
    ops = _names(cfg.op.names, schema.OPS, "op")
    chosen_pairs = pairs(ops, _names(cfg.backend.names, schema.BACKENDS, "backend"))
    ps = [float(p) for p in cfg.p]
    for p in ps:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be in [0, 1], got {p}")
    rows_list = [int(rows) for rows in cfg.shape.rows]
    cols = int(cfg.shape.cols)
    if any(rows < 1 for rows in rows_list) or cols < 1:
        raise ValueError(f"shape.rows and shape.cols must be >= 1, got rows={rows_list} cols={cols}")

    points = []
    for dtype in dtypes:
        for rows in dict.fromkeys(rows_list):
            timers = timers_for(device, rows, cfg.timing)
            points.append(Point(schema.COPY, schema.COPY, dtype, rows, cols, COPY_P, ("fwd",), timers))
            for p in dict.fromkeys(ps):
                for op, backend in chosen_pairs:
                    points.append(Point(op, backend, dtype, rows, cols, p, tuple(directions), timers))
    return points
