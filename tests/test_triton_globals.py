"""Triton kernels may read a module global only as a constexpr (tl.constexpr(v), or annotated
`: tl.constexpr`), a tl.dtype, a jit function or a module.

Triton's CPU interpreter runs a kernel that reads a plain int global; the GPU compiler refuses it
("Cannot access global variable ... from within @jit'ed function"). So a kernel that passes every
CPU test can still fail to compile on a GPU: this check finds such globals without one.
"""

import importlib
import pkgutil
import types

import dropbench.kernels
import triton
import triton.language as tl

try:  # what triton.jit returns under TRITON_INTERPRET=1
    from triton.runtime.interpreter import InterpretedFunction
except ImportError:  # a Triton without the interpreter module: only JITFunction exists
    InterpretedFunction = triton.runtime.JITFunction

_JIT = (triton.runtime.JITFunction, InterpretedFunction)
_ALLOWED = (tl.constexpr, tl.dtype, types.ModuleType, *_JIT)

_PLAIN_INT = 1  # read by _reads_a_plain_global below, as a kernel must not


@triton.jit
def _reads_a_plain_global(x):
    return x + _PLAIN_INT


def plain_globals(function) -> list[str]:
    """The module globals that a jit function reads and the GPU compiler would refuse."""
    python_function = function.fn
    module_globals = python_function.__globals__
    annotated = module_globals.get("__annotations__", {})
    return [name for name in python_function.__code__.co_names
            if name in module_globals and not isinstance(module_globals[name], _ALLOWED)
            and annotated.get(name) is not tl.constexpr]


def kernel_functions():
    """Every jit function defined in a dropbench.kernels module, as (qualified name, function)."""
    for info in pkgutil.iter_modules(dropbench.kernels.__path__):
        module = importlib.import_module(f"dropbench.kernels.{info.name}")
        for name, value in vars(module).items():
            if isinstance(value, _JIT) and value.fn.__module__ == module.__name__:
                yield f"{module.__name__}.{name}", value


def test_the_check_finds_a_plain_global():
    assert plain_globals(_reads_a_plain_global) == ["_PLAIN_INT"]


def test_kernels_read_no_plain_globals():
    functions = dict(kernel_functions())
    assert len(functions) >= 20, sorted(functions)  # the kernels and their helpers were found
    offenders = {name: found for name, function in functions.items() if (found := plain_globals(function))}
    assert not offenders, f"make these tl.constexpr: {offenders}"
