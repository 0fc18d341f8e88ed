"""dropbench-build-native: builds the native hot path with no GPU; a failed build shows the compiler's error."""

import pytest

from dropbench.bench import build_native
from dropbench.kernels import native


def test_it_builds_ahead_and_says_where(capsys):
    build_native.main([])
    out = capsys.readouterr().out
    assert out.startswith("built: ") and "dropbench_native_launch" in out


def test_a_failed_build_prints_the_compiler_output_and_names_its_error(tmp_path, monkeypatch, capsys):
    broken = tmp_path / "native_launch.cpp"
    broken.write_text("#include <torch/extension.h>\nint broken( { return 0; }\n")
    monkeypatch.setattr(native, "SOURCE", broken)
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "build"))
    with pytest.raises(SystemExit) as exit_info:
        build_native.main([])
    message = str(exit_info.value.code)
    assert message.startswith("dropbench-build-native: error: could not build native_launch.cpp: ")
    assert "error:" in message.split("native_launch.cpp: ", 1)[1], message  # the compiler's line, not ninja's command
    assert "native_launch.cpp" in capsys.readouterr().err  # the whole build log


def test_bad_arguments_exit_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_native.main(["--bogus"])
    assert exit_info.value.code == 2 and "unrecognized arguments: --bogus" in capsys.readouterr().err


def test_the_first_error_line_is_the_compilers():
    log = "Error building extension 'x': [1/2] c++ -c a.cpp -o a.o\na.cpp:2:12: error: expected ')'\nninja: stopped"
    assert build_native.first_error_line(log) == "a.cpp:2:12: error: expected ')'"
    assert build_native.first_error_line("ninja: build stopped\n") == "ninja: build stopped"
