"""bench.machine: the GPU's clocks, power and throttle reasons beside the CSV, and nothing where there is no GPU."""

import json
import subprocess

from dropbench.bench import machine

CSV_LINE = "0, GPU-abc, NVIDIA H200, P0, 1980, 1980, 3201, 3201, 152.3, 700.0, 41, 0, 0x0000000000000000\n"


def fake_smi(stdout=CSV_LINE, returncode=0, calls=None):
    def run(command, **kwargs):
        if calls is not None:
            calls.append(command)
        return subprocess.CompletedProcess(command, returncode, stdout=stdout, stderr="bad field")
    return run


def test_state_at_start_and_end_goes_beside_the_csv(tmp_path):
    csv_path = tmp_path / "run.csv"
    machine.record(csv_path, "r1", "start", "cuda", "t0", run=fake_smi())
    machine.record(csv_path, "r1", "end", "cuda", "t1", run=fake_smi())
    state = json.loads((tmp_path / "run.csv.machine.json").read_text())
    assert set(state["r1"]) == {"start", "end"}
    (gpu,) = state["r1"]["start"]["gpus"]
    assert gpu["clocks.sm"] == "1980" and gpu["power.draw"] == "152.3" and gpu["throttle_reasons"] == "0x0000000000000000"


def test_nothing_is_written_on_the_cpu(tmp_path):
    calls = []
    machine.record(tmp_path / "run.csv", "r1", "start", "cpu", "t0", run=fake_smi(calls=calls))
    assert not calls and not list(tmp_path.iterdir()), "the CPU has no GPU state to record"


def test_no_nvidia_smi_is_skipped_quietly(tmp_path):
    def missing(command, **kwargs):
        raise FileNotFoundError("nvidia-smi")

    machine.record(tmp_path / "run.csv", "r1", "start", "cuda", "t0", run=missing)
    assert not list(tmp_path.iterdir())


def test_an_older_driver_gets_the_older_throttle_field(tmp_path):
    calls = []
    outputs = iter([subprocess.CompletedProcess([], 2, stdout="", stderr="unknown field"),
                    subprocess.CompletedProcess([], 0, stdout=CSV_LINE, stderr="")])

    def run(command, **kwargs):
        calls.append(command[1])
        return next(outputs)

    assert machine.query(run)[0]["name"] == "NVIDIA H200"
    assert "clocks_event_reasons.active" in calls[0] and "clocks_throttle_reasons.active" in calls[1]


def test_only_the_visible_gpus_are_kept(monkeypatch):
    two = CSV_LINE + CSV_LINE.replace("0, GPU-abc", "1, GPU-def")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    assert [gpu["index"] for gpu in machine.query(fake_smi(two))] == ["1"]
