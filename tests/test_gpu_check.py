"""``make gpu-check`` on a machine without CUDA (one line, exit 2, nothing written) and its
report writer and estimates with injected numbers (the measuring itself needs a GPU)."""
from __future__ import annotations

import pytest
import torch

from benchmarks import gpu_check


def test_without_cuda_one_line_and_exit_2(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "results" / "gpu-check.md"
    assert gpu_check.cli(["--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "CUDA" in err and err.startswith("error: ")
    assert not (tmp_path / "results").exists()


def test_bad_jobs_is_a_user_error(capsys):
    assert gpu_check.cli(["--jobs", "1,x"]) == 2
    assert "--jobs" in capsys.readouterr().err


def test_jobs_estimates_from_slowdown():
    est = gpu_check.jobs_estimates(1000.0, 0.02, {1: 0.02, 2: 0.03, 4: 0.05})
    assert est[1]["matrix_seconds"] == pytest.approx(1000.0)
    assert est[2]["slowdown"] == pytest.approx(1.5) and est[2]["matrix_seconds"] == pytest.approx(750.0)
    assert est[4]["speedup"] == pytest.approx(4 / 2.5) and est[4]["matrix_seconds"] == pytest.approx(625.0)


def fake_results() -> dict:
    samplers = {"uniform": {"step_ms": 21.5, "ratio_to_uniform": 1.0},
                "impon": {"step_ms": 22.25, "ratio_to_uniform": 1.035}}
    return {
        "device": "NVIDIA H100 80GB HBM3",
        "versions": {"python": "3.11.9", "torch": "2.9.0", "cuda": "12.8", "cudnn": 91002,
                     "torchvision": "0.24.0"},
        "git": {"commit": "abc1234", "dirty": False}, "host": "gpu-node-7",
        "tests": {"command": "pytest -q -k cuda", "returncode": 0, "summary": "37 passed in 12.3s"},
        "perf": {"report": "device: NVIDIA H100 | table here", "samplers": samplers,
                 "loop_efficiency": {"uniform": {"efficiency": 0.971}, "impon": {"efficiency": 0.933}}},
        "knobs": {"baseline": 21.5, "amp bf16": 12.9, "compile on": 10.75, "channels_last off": 25.8},
        "epoch": {"dataset": "synthetic", "train_seconds": 8.4, "eval_seconds": 0.9, "test_acc": 0.1},
        "matrix": {"name": "paper", "runs": 63, "epochs": [30], "sequential_seconds": 36_000.0,
                   "jobs": gpu_check.jobs_estimates(36_000.0, 0.0215,
                                                    {1: 0.0215, 2: 0.0301, 4: 0.0559})},
    }


def test_report_has_device_versions_and_every_figure(tmp_path):
    md = gpu_check.render_report(fake_results())
    for text in ("NVIDIA H100 80GB HBM3", "torch 2.9.0", "cuda 12.8", "cudnn 91002", "abc1234",
                 "gpu-node-7", "37 passed in 12.3s", "device: NVIDIA H100 | table here",
                 "| impon | 22.25 | 1.035 | 0.933 |", "| uniform | 21.50 | 1.000 | 0.971 |",
                 "| amp bf16 | 12.90 | 0.600 |", "| compile on | 10.75 | 0.500 |",
                 "| channels_last off | 25.80 | 1.200 |", "training 8.4 s, evaluation 0.9 s",
                 "63 runs x 30 epochs", "1 job, sequential: 10.0 h",
                 "| 1 | 21.50 | 1.00 | 1.00 | 10.0 h |", "| 2 | 30.10 | 1.40 | 1.43 | 7.0 h |",
                 "| 4 | 55.90 | 2.60 | 1.54 | 6.5 h |"):
        assert text in md, text
    res = fake_results()
    res["tests"] = None
    assert "not run (--skip-tests)" in gpu_check.render_report(res)
