"""Check a composed sweep config and expand it into the ordered list of points to measure.

A point is one (op, backend, dtype, shape, p) with the directions and timers to
measure there; each (direction, timer) of a point is one CSV row. Shapes: element
ops and variational take (rows, cols) for each of shape.rows; channel ops take the
same elements as (N, C, spatial...) with N = rows and (C, spatial...) =
shape.channel_dims[op], and also every shape.conv_shapes[op]. A shape config with
`models` (shape=models) replaces that grid by the named activations of real models: each
op takes the entries of its mask kind, and their rows carry the entry's name (`model`). The order matters:
within a (dtype, rows, cols) the copy comes first and, per op, eager before the
others, so pct_of_copy and speedup_vs_eager can be filled in as each row is written.
A copy depends only on numel, so one (rows, cols) copy serves every shape with those
rows and cols.

Every mistake in the config is a ConfigError whose one-line message names the key and
the values it allows. Nothing here imports torch, so `dropbench-sweep` checks a config
in well under a second, before anything slow starts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from dropbench.bench import catalogue, results, schema

#: The p recorded on copy rows. A copy drops nothing, and the key needs a number
#: (bench.compare rejects an empty key), so one copy per (dtype, rows, cols, timer) serves every p.
COPY_P = 0.0
#: The variational_dim recorded on rows of ops without one (and on copy rows).
NO_DIM = 0
DEVICES = ("cuda", "cpu")


class ConfigError(ValueError):
    """A sweep config that cannot run; the message is one line naming the key and what it allows."""


@dataclass(frozen=True)
class Point:
    op: str
    backend: str
    dtype: str
    shape: tuple[int, ...]   # the whole input shape; rows = shape[0], cols = the rest
    p: float
    directions: tuple[str, ...]
    timers: tuple[str, ...]
    variational_dim: int = NO_DIM  # the dim variational's mask is shared along (NO_DIM for other ops)
    model: str = ""          # the shape=models entry this shape is, e.g. "llama-7b mlp"; "" for the grid

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

    def fields(self, direction: str, timer: str) -> dict:
        """The columns that say what one of this point's rows measured (its key among them)."""
        return {"op": self.op, "backend": self.backend, "dtype": self.dtype, "rows": self.rows, "cols": self.cols,
                "shape": self.shape_text, "numel": self.numel, "p": float(self.p), "direction": direction,
                "timer": timer, "variational_dim": self.variational_dim, "model": self.model}

    def key(self, direction: str, timer: str) -> tuple:
        """The CSV key of one of this point's rows, as results.key_of reads it back from the file."""
        return results.key_of(self.fields(direction, timer))

    def keys(self) -> list[tuple]:
        return [self.key(direction, timer) for timer in self.timers for direction in self.directions]

    def label(self) -> str:
        dim = f" dim={self.variational_dim}" if catalogue.OPS.get(self.op) and catalogue.op(self.op).takes_dim else ""
        model = f" ({self.model})" if self.model else ""
        return f"{self.op}/{self.backend} {self.dtype} {self.shape_text}{model} p={self.p:g}{dim}"


def copy_point(dtype: str, rows: int, cols: int, timers: tuple[str, ...]) -> Point:
    """The copy every point of (dtype, rows, cols) is measured against."""
    return Point(schema.COPY, schema.COPY, dtype, (rows, cols), COPY_P, ("fwd",), timers)


def copy_key(dtype: str, rows: int, cols: int, timer: str) -> tuple:
    return copy_point(dtype, rows, cols, (timer,)).key("fwd", timer)


def as_list(value) -> list:
    """A config value that may be one item (p=0.5) or a list of them (p=[0.1,0.5])."""
    return list(value) if isinstance(value, Sequence) and not isinstance(value, str) else [value]


def names(cfg_names, allowed: Sequence[str], key: str, all_word: bool = False) -> list[str]:
    """The names chosen under config key `key`, each one of `allowed`, repeats dropped;
    with all_word, the name `all` stands for every allowed name (op.names=all: every catalogue op)."""
    chosen = [str(name) for name in as_list(cfg_names)]
    if all_word:
        chosen = [name for item in chosen for name in (allowed if item == "all" else [item])]
    unknown = [name for name in chosen if name not in allowed]
    if unknown or not chosen:
        what = f"unknown {', '.join(unknown)}" if unknown else "nothing chosen"
        raise ConfigError(f"{key}: {what}; allowed: {', '.join([*allowed, 'all'] if all_word else allowed)}")
    return list(dict.fromkeys(chosen))


def drop_probabilities(cfg_p) -> list[float]:
    """cfg.p as a list of floats in [0, 1]: one number or a list of them."""
    try:
        ps = [float(p) for p in as_list(cfg_p)]
    except (TypeError, ValueError):
        ps = []
    if not ps or any(not 0.0 <= p <= 1.0 for p in ps):
        raise ConfigError(f"p={cfg_p}: allowed: a number in [0, 1] or a list of them, e.g. p=0.5 or p=[0.1,0.5]")
    return list(dict.fromkeys(ps))


def variational_dim(cfg_dim) -> int:
    """variational_dim as 0 (rows) or 1 (cols) of the (rows, cols) input; -2 and -1 count from the end."""
    try:
        dim = int(cfg_dim)
    except (TypeError, ValueError):
        dim = None
    if dim is None or str(cfg_dim).strip() != str(dim) or not -2 <= dim <= 1:
        raise ConfigError(f"variational_dim={cfg_dim}: allowed: 0 or 1 (or -2, -1), a dim of the (rows, cols) input")
    return dim % 2


def pairs(ops: list[str], backends: list[str]) -> list[tuple[str, str]]:
    """Every (op, backend) with op in ops and backend in backends that the backend runs (bench.catalogue);
    eager first per op (speedup_vs_eager)."""
    return [(op, backend) for op in ops for backend in sorted(backends, key=lambda backend: backend != "eager")
            if catalogue.backend(backend).runs(op)]


def chosen_ops(cfg) -> list[str]:
    return names(cfg.op.names, list(catalogue.OPS), "op.names", all_word=True)


def chosen_pairs(cfg) -> list[tuple[str, str]]:
    """The (op, backend) pairs of op.names x backend.names, in measuring order.

    `all` backends run each op they can; a backend named on its own that runs none of the chosen
    ops (backend.names=[tutorial] op.names=[variational]) is a ConfigError, not a silent no-op.
    """
    ops = chosen_ops(cfg)
    backends = names(cfg.backend.names, list(catalogue.BACKENDS), "backend.names", all_word=True)
    named = [str(name) for name in as_list(cfg.backend.names) if str(name) != "all"]
    for backend in named:
        row = catalogue.backend(backend)
        if not any(row.runs(op) for op in ops):
            raise ConfigError(f"backend.names: {backend} runs none of op.names={ops}; "
                              f"allowed with {backend}: op.names containing {' or '.join(row.functions)}")
    return pairs(ops, backends)


def timers_for(device: str, rows: int, timing) -> tuple[str, ...]:
    """cpu on the CPU; on a GPU do_bench from do_bench_min_rows up, cudagraph and host up to their max rows.

    do_bench times from the host, so a small shape measures Python launch overhead as much
    as GPU work; the CUDA-graph timer measures the GPU work alone, and the host timer the
    Python per call alone (bench.timing). A shape no timer covers is a configuration error,
    not a silently empty row.
    """
    if device == "cpu":
        return ("cpu",)
    timers = []
    if rows >= int(timing.do_bench_min_rows):
        timers.append("do_bench")
    if rows <= int(timing.cudagraph_max_rows):
        timers.append("cudagraph")
    if rows <= int(timing.get("host_max_rows", 0)):
        timers.append("host")
    if not timers:
        raise ConfigError(
            f"shape.rows={rows} gets no timer: allowed: rows >= timing.do_bench_min_rows "
            f"({timing.do_bench_min_rows}), rows <= timing.cudagraph_max_rows ({timing.cudagraph_max_rows}) "
            f"or rows <= timing.host_max_rows ({timing.get('host_max_rows', 0)})")
    return tuple(timers)


def rows_cols(shape: tuple[int, ...]) -> tuple[int, int]:
    """(rows, cols) of a shape: its first dim, and the product of the others."""
    return shape[0], math.prod(shape[1:])


def _sizes(key: str, value) -> tuple[int, ...]:
    try:
        sizes = tuple(int(size) for size in as_list(value))
    except (TypeError, ValueError):
        sizes = ()
    if not sizes or any(size < 1 for size in sizes):
        raise ConfigError(f"{key}={value}: allowed: a list of sizes >= 1")
    return sizes


def _check_rank(key: str, op: str, shape: tuple[int, ...]) -> None:
    """A channel op's input has its op's rank (feature ops: any rank >= 3)."""
    row = catalogue.op(op)
    if (len(shape) != row.rank) if row.fixed_rank else (len(shape) < 3):
        expected = f"rank {row.rank}" if row.fixed_rank else "rank >= 3 (N, C and spatial dims)"
        raise ConfigError(f"{key} makes a rank-{len(shape)} input {schema.shape_text(shape)}; allowed for {op}: {expected}")


def channel_shapes(shape_cfg, rows_list: list[int], cols: int) -> dict[str, list[tuple[int, ...]]]:
    """Every channel op's input shapes: (rows, *channel_dims[op]) for each rows, then its conv shapes.

    Errors name the config key: a channel_dims entry must multiply to cols, and both
    mappings may only name channel ops (a typo must not silently sweep nothing).
    """
    channel_dims = shape_cfg.get("channel_dims") or {}
    conv_shapes = shape_cfg.get("conv_shapes") or {}
    channel_ops = catalogue.channel_ops()
    for group, mapping in (("channel_dims", channel_dims), ("conv_shapes", conv_shapes)):
        for op in mapping:
            if op not in channel_ops:
                raise ConfigError(f"shape.{group}.{op}: {op} is not a channel op; allowed: {', '.join(channel_ops)}")
    shapes = {}
    for op in channel_ops:
        if op not in channel_dims:
            continue
        dims = _sizes(f"shape.channel_dims.{op}", channel_dims[op])
        if math.prod(dims) != cols:
            raise ConfigError(f"shape.channel_dims.{op}={list(dims)} multiplies to {math.prod(dims)}; "
                              f"allowed: dims whose product is shape.cols={cols}")
        _check_rank(f"shape.channel_dims.{op}={list(dims)}", op, (rows_list[0], *dims))
        shapes[op] = [(rows, *dims) for rows in rows_list]
        for index, conv_shape in enumerate(conv_shapes.get(op) or []):
            key = f"shape.conv_shapes.{op}[{index}]"
            conv_shape = _sizes(key, conv_shape)
            _check_rank(f"{key}={list(conv_shape)}", op, conv_shape)
            shapes[op].append(conv_shape)
    return shapes


def model_shapes(shape_cfg, ops: list[str]) -> tuple[dict[str, list[tuple[int, ...]]], dict[tuple[int, ...], str]]:
    """shape.models: the shapes each op takes (the entries of its mask kind, in config order), and each shape's name.

    Each entry is {name, mask, shape}; names and shapes are unique (a shape is one measurement,
    so it has one name). An op whose mask kind no entry has is a ConfigError, not skipped.
    """
    entries, names_of = {}, {}
    for index, entry in enumerate(shape_cfg.models):
        key = f"shape.models[{index}]"
        name, mask = str(entry.get("name") or ""), entry.get("mask")
        if not name:
            raise ConfigError(f"{key}.name: missing; allowed: a non-empty name, e.g. 'gpt2-small mlp'")
        if mask not in catalogue.MASKS:
            raise ConfigError(f"{key}.mask={mask}: allowed: {', '.join(catalogue.MASKS)}")
        shape = _sizes(f"{key}.shape", entry.get("shape"))
        if name in names_of.values() or shape in names_of:
            raise ConfigError(f"{key}: {name} {schema.shape_text(shape)} repeats a name or shape; "
                              f"allowed: each name and shape once")
        names_of[shape] = name
        entries.setdefault(mask, []).append(shape)
    shapes = {}
    for op in ops:
        row = catalogue.op(op)
        if row.mask not in entries:
            raise ConfigError(f"shape.models: no entry with mask {row.mask}, which op {op} takes; allowed with "
                              f"these models: op.names of masks {', '.join(entries)}")
        for shape in entries[row.mask]:
            if row.is_channel:
                _check_rank(f"shape.models entry {names_of[shape]}", op, shape)
        shapes[op] = entries[row.mask]
    return shapes, names_of


def op_shapes(cfg, ops: list[str]) -> dict[str, list[tuple[int, ...]]]:
    """The input shapes each op of `ops` is swept at, in sweep order (see the module docstring)."""
    if cfg.shape.get("models"):
        return model_shapes(cfg.shape, ops)[0]
    rows_list = list(dict.fromkeys(_sizes("shape.rows", cfg.shape.rows)))
    (cols,) = _sizes("shape.cols", [cfg.shape.cols])
    channel = channel_shapes(cfg.shape, rows_list, cols)
    shapes = {}
    for op in ops:
        if not catalogue.op(op).is_channel:
            shapes[op] = [(rows, cols) for rows in rows_list]
        elif op in channel:
            shapes[op] = list(dict.fromkeys(channel[op]))
        else:
            raise ConfigError(f"shape.channel_dims.{op}: missing; allowed: the (C, spatial...) dims of {op} "
                              f"whose product is shape.cols={cols}")
    return shapes


def check_timing(timing) -> None:
    """The timing keys the runner reads, typed; ConfigError names the first bad one."""
    if not isinstance(timing.get("autograd_threads"), bool):
        raise ConfigError(f"timing.autograd_threads={timing.get('autograd_threads')}: allowed: true, false")
    for key in ("warmup_ms", "rep_ms", "cudagraph_reps", "cpu_reps", "host_calls", "host_rounds"):
        value = timing.get(key, 1)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"timing.{key}={value}: allowed: an integer >= 1")
    # The GPU timers' row ranges: checked on the CPU too, so a GPU run cannot find them bad late.
    for key in ("do_bench_min_rows", "cudagraph_max_rows", "host_max_rows"):
        value = timing.get(key, 0)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ConfigError(f"timing.{key}={value}: allowed: an integer >= 0 (a number of rows)")


def expand(cfg, device: str) -> list[Point]:
    """Every point of the sweep, in measuring order: dtype, (rows, cols), then copy and each p's pairs."""
    if device not in DEVICES:
        raise ConfigError(f"device={device}: allowed: {', '.join(DEVICES)}")
    dtypes = names(cfg.dtype.names, schema.DTYPES, "dtype.names")
    directions = names(cfg.direction.names, schema.OP_DIRECTIONS, "direction.names")
    ops = chosen_ops(cfg)
    op_backends = chosen_pairs(cfg)
    ps = drop_probabilities(cfg.p)
    dim = variational_dim(cfg.variational_dim)
    check_timing(cfg.timing)
    shapes = op_shapes(cfg, ops)
    models = model_shapes(cfg.shape, ops)[1] if cfg.shape.get("models") else {}
    # Every op's list opens with the design's rows x cols, so these are the design's (rows, cols)
    # in rows order, then the conv shapes' in config order (shape=models: the entries' in config order).
    sizes = dict.fromkeys(rows_cols(shape) for op in ops for shape in shapes[op])

    points = []
    for dtype in dtypes:
        for rows, cols in sizes:
            timers = timers_for(device, rows, cfg.timing)
            points.append(copy_point(dtype, rows, cols, timers))
            for p in ps:
                for op, backend in op_backends:
                    op_dim = dim if catalogue.op(op).takes_dim else NO_DIM
                    for shape in shapes[op]:
                        if rows_cols(shape) == (rows, cols):
                            points.append(Point(op, backend, dtype, shape, p, tuple(directions), timers, op_dim,
                                                models.get(shape, "")))
    return points


def check(cfg) -> None:
    """Raise ConfigError for anything in cfg that would stop the sweep, on either device."""
    for device in DEVICES:
        expand(cfg, device)
