"""`dropbench-build-native` (also `python -m dropbench.bench.build_native`): build the drop-in's
native hot path (kernels/native_launch.cpp) ahead of its first call.

On a CUDA machine the drop-in builds it inside its first call (about 35 s once, then cached by
torch under ~/.cache/torch_extensions or TORCH_EXTENSIONS_DIR). An image build or a job's setup
step runs this instead, so no training step pays for it. Building needs a C++ compiler and
ninja, no GPU. A failed build prints the compiler's output and exits 1.
"""

from __future__ import annotations

import argparse
import sys


def first_error_line(message: str) -> str:
    """The first line of a build log that names an error (the compiler's), else its first line."""
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()] or ["unknown error"]
    return next((line for line in lines if "error:" in line.lower()), lines[0])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="dropbench-build-native",
        description="Build the drop-in's native hot path (kernels/native_launch.cpp) into torch's extension "
                    "cache, ahead of the first call. Needs a C++ compiler and ninja, no GPU.")
    parser.parse_args(argv)
    from dropbench.kernels import native

    try:
        module = native.load_extension()
    except Exception as error:  # torch's cpp_extension keeps the compiler's output in the error
        print(error, file=sys.stderr)
        sys.exit(f"dropbench-build-native: error: could not build {native.SOURCE.name}: "
                 f"{first_error_line(str(error))}")
    print(f"built: {module.__file__}")
    if not native.ENABLED:
        print("DROPBENCH_NATIVE=0 is set: the drop-in will not use it until that is unset")


if __name__ == "__main__":
    main()
