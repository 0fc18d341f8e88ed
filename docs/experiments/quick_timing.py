"""One-off first look (issue 2): every backend at one large shape against a device-to-device copy.

Not the benchmark: bench/ is. This prints do_bench medians (L2 flushed, warm) for the
forward of each (op, backend) and dtype, and writes them to a CSV for docs/perf-notes.md.
Usage: python docs/experiments/quick_timing.py OUT.csv [rows] [cols]
"""

import csv
import sys

import torch
import triton

from bench.registry import REGISTRY

DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32, "fp64": torch.float64}


def median_ms(fn) -> float:
    fn()
    return triton.testing.do_bench(fn, warmup=25, rep=200, return_mode="median")


def main() -> None:
    out_path = sys.argv[1]
    rows = int(sys.argv[2]) if len(sys.argv) > 2 else 8192
    cols = int(sys.argv[3]) if len(sys.argv) > 3 else 49152
    device = torch.cuda.get_device_name()
    table = []
    for dtype_name, dtype in DTYPES.items():
        x = torch.randn(rows, cols, device="cuda", dtype=dtype)
        dst = torch.empty_like(x)
        copy_ms = median_ms(lambda: dst.copy_(x))
        table.append(("copy", "copy", dtype_name, copy_ms, 100.0, ""))
        for (op, backend), impl in REGISTRY.items():
            fn = lambda: impl(x, 0.5, 1234, 0)  # noqa: E731
            ms = median_ms(fn)
            table.append((op, backend, dtype_name, ms, 100.0 * copy_ms / ms, impl.chosen_config()))
        del x, dst
        torch.cuda.empty_cache()
    with open(out_path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["op", "backend", "dtype", "rows", "cols", "ms_median", "pct_of_copy", "config", "device"])
        for op, backend, dtype_name, ms, pct, config in table:
            writer.writerow([op, backend, dtype_name, rows, cols, f"{ms:.4f}", f"{pct:.1f}", config, device])
    print(f"{device}, {rows} x {cols}, forward, p=0.5")
    for op, backend, dtype_name, ms, pct, config in table:
        print(f"{op:12s} {backend:20s} {dtype_name:5s} {ms:9.4f} ms {pct:6.1f}% of copy  {config}")


if __name__ == "__main__":
    main()
