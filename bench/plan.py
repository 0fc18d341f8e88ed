"""Expand a composed sweep config into the ordered list of points to measure.

A point is one (op, backend, dtype, shape, p) with the directions and timers to
measure there; each (direction, timer) of a point is one CSV row. Shapes: element
dropout, alpha_dropout, dropout_inplace and variational take (rows, cols) for each
of shape.rows; channel ops take the same elements as (N, C, spatial...) with N = rows
and (C, spatial...) = shape.channel_dims[op], and also every shape.conv_shapes[op].
The order matters: within a (dtype, rows, cols) the copy comes first and, per op,
eager before the others, so pct_of_copy and speedup_vs_eager can be filled in
as each row is written. A copy depends only on numel, so one (rows, cols) copy
serves every shape with those rows and cols.
"""

import math
from dataclasses import dataclass

from dropbench.bench import families, registry, schema

#: The p recorded on copy rows. A copy drops nothing, and the key needs a number
#: (bench.compare rejects an empty key), so one copy per (dtype, rows, cols, timer) serves every p.
COPY_P = 0.0


@dataclass(frozen=True)
class Point:
    op: str
    backend: str
    dtype: str
    shape: tuple[int, ...]   # the whole input shape; rows = shape[0], cols = the rest
    p: float
    directions: tuple[str, ...]
    timers: tuple[str, ...]

    @property
    def rows(self) -> int:
        return self.shape[0]

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def cols(self) -> int:
        return math.prod(self.shape[1:])

    @property
    def is_copy(self) -> bool:
        return self.op == schema.COPY

    @property
    def shape_text(self) -> str:
        return schema.shape_text(self.shape)

    def key(self, direction: str, timer: str) -> tuple:
        """The CSV key (schema.KEY_COLUMNS order) of one of this point's rows."""
        return (self.op, self.backend, self.dtype, self.rows, self.cols, self.shape_text, float(self.p),
                direction, timer)

    def keys(self) -> list[tuple]:
        return [self.key(direction, timer) for timer in self.timers for direction in self.directions]

    def label(self) -> str:
        return f"{self.op}/{self.backend} {self.dtype} {self.shape_text} p={self.p:g}"


def copy_key(dtype: str, rows: int, cols: int, timer: str) -> tuple:
    """The key of the copy row that every point of (dtype, rows, cols) is measured against."""
    return (schema.COPY, schema.COPY, dtype, rows, cols, schema.shape_text((rows, cols)), COPY_P, "fwd", timer)


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


def rows_cols(shape: tuple[int, ...]) -> tuple[int, int]:
    """(rows, cols) of a shape: its first dim, and the product of the others."""
    return shape[0], math.prod(shape[1:])


def _sizes(name: str, value) -> tuple[int, ...]:
    sizes = tuple(int(size) for size in value)
    if not sizes or any(size < 1 for size in sizes):
        raise ValueError(f"{name} = {list(sizes)}: every size must be >= 1")
    return sizes


def _check_rank(name: str, op: str, shape: tuple[int, ...]) -> None:
    """A channel op's input has its family's rank (feature ops: any rank >= 3)."""
    family = families.of(op)
    if (len(shape) != family.rank) if family.fixed_rank else (len(shape) < 3):
        expected = f"rank {family.rank}" if family.fixed_rank else "rank >= 3 (N, C and spatial dims)"
        raise ValueError(f"{name} makes a rank-{len(shape)} input {schema.shape_text(shape)}; {op} takes {expected}")


def channel_shapes(shape_cfg, rows_list: list[int], cols: int) -> dict[str, list[tuple[int, ...]]]:
    """Every channel op's input shapes: (rows, *channel_dims[op]) for each rows, then its conv shapes.

    Errors name the config key: a channel_dims entry must multiply to cols, and both
    mappings may only name channel ops (a typo must not silently sweep nothing).
    """
    channel_dims = shape_cfg.get("channel_dims") or {}
    conv_shapes = shape_cfg.get("conv_shapes") or {}
    for group, mapping in (("channel_dims", channel_dims), ("conv_shapes", conv_shapes)):
        for op in mapping:
            if op not in families.channel_ops():
                raise ValueError(f"shape.{group}.{op}: {op} is not a channel op; "
                                 f"channel ops: {', '.join(families.channel_ops())}")
    shapes = {}
    for op in families.channel_ops():
        if op not in channel_dims:
            continue
        dims = _sizes(f"shape.channel_dims.{op}", channel_dims[op])
        if math.prod(dims) != cols:
            raise ValueError(f"shape.channel_dims.{op} = {list(dims)} multiplies to {math.prod(dims)}, "
                             f"not shape.cols = {cols}")
        _check_rank(f"shape.channel_dims.{op} = {list(dims)}", op, (rows_list[0], *dims))
        shapes[op] = [(rows, *dims) for rows in rows_list]
        for index, conv_shape in enumerate(conv_shapes.get(op) or []):
            name = f"shape.conv_shapes.{op}[{index}]"
            conv_shape = _sizes(name, conv_shape)
            _check_rank(f"{name} = {list(conv_shape)}", op, conv_shape)
            shapes[op].append(conv_shape)
    return shapes


def op_shapes(cfg, ops: list[str]) -> dict[str, list[tuple[int, ...]]]:
    """The input shapes each op of `ops` is swept at, in sweep order (see the module docstring)."""
    rows_list = [int(rows) for rows in cfg.shape.rows]
    cols = int(cfg.shape.cols)
    if not rows_list or any(rows < 1 for rows in rows_list) or cols < 1:
        raise ValueError(f"shape.rows and shape.cols must be >= 1, got rows={rows_list} cols={cols}")
    rows_list = list(dict.fromkeys(rows_list))
    channel = channel_shapes(cfg.shape, rows_list, cols)
    shapes = {}
    for op in ops:
        if not families.of(op).is_channel:
            shapes[op] = [(rows, cols) for rows in rows_list]
        elif op in channel:
            shapes[op] = list(dict.fromkeys(channel[op]))
        else:
            raise ValueError(f"shape.channel_dims has no entry for {op}: a channel op needs the (C, spatial...) "
                             f"dims that split shape.cols = {cols}")
    return shapes


def expand(cfg, device: str) -> list[Point]:
    """Every point of the sweep, in measuring order: dtype, (rows, cols), then copy and each p's pairs."""
    dtypes = _names(cfg.dtype.names, schema.DTYPES, "dtype")
    directions = _names(cfg.direction.names, schema.DIRECTIONS, "direction")
    ops = _names(cfg.op.names, registry.ops(), "op")
    chosen_pairs = pairs(ops, _names(cfg.backend.names, schema.BACKENDS, "backend"))
    ps = [float(p) for p in cfg.p]
    for p in ps:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be in [0, 1], got {p}")
    shapes = op_shapes(cfg, ops)
    # Every op's list opens with the design's rows x cols, so these are the design's (rows, cols)
    # in rows order, then the conv shapes' in config order.
    sizes = dict.fromkeys(rows_cols(shape) for op in ops for shape in shapes[op])

    points = []
    for dtype in dtypes:
        for rows, cols in sizes:
            timers = timers_for(device, rows, cfg.timing)
            points.append(Point(schema.COPY, schema.COPY, dtype, (rows, cols), COPY_P, ("fwd",), timers))
            for p in dict.fromkeys(ps):
                for op, backend in chosen_pairs:
                    for shape in shapes[op]:
                        if rows_cols(shape) == (rows, cols):
                            points.append(Point(op, backend, dtype, shape, p, tuple(directions), timers))
    return points
