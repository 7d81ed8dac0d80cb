"""``python -m benchmarks list``: every matrix, its description, run count and runs done."""
from __future__ import annotations

import json

from benchmarks import matrix
from benchmarks.cli import main


def _block(out: str, name: str) -> str:
    """The header line of matrix ``name`` and its indented description lines."""
    lines = out.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith(f"{name}: "))
    end = start + 1
    while end < len(lines) and lines[end].startswith("    "):
        end += 1
    return "\n".join(lines[start:end])


def test_list_counts_done_runs_under_results(tmp_path, capsys):
    mini = matrix.load("cpu_mini")
    results = tmp_path / "results"
    for spec, status in zip(mini.runs, ["done", "done", "done", "failed", "running"]):
        run = results / "cpu_mini" / spec.run_id
        run.mkdir(parents=True)
        (run / "run.json").write_text(json.dumps({"status": status}))
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert main(["list", "--results", str(results)]) == 0
    out = capsys.readouterr().out
    names = sorted(p.stem for p in matrix.MATRIX_DIR.glob("*.yaml"))
    assert [ln.split(":")[0] for ln in out.splitlines() if ln and not ln.startswith(("    ", "run one"))] == names
    block = _block(out, "cpu_mini")
    assert block.startswith(f"cpu_mini: {len(mini.runs)} runs, 3 done, 1 failed, 1 running in ")
    assert "cifar10-5k" in block and "NOT the full dataset" in block   # the description
    assert _block(out, "smoke").startswith(f"smoke: {len(matrix.load('smoke').runs)} runs, 0 done in ")
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # read-only


def test_list_without_results_folder_says_zero_done(tmp_path, capsys):
    assert main(["list", "--results", str(tmp_path / "nowhere")]) == 0
    out = capsys.readouterr().out
    assert f"paper: {len(matrix.load('paper').runs)} runs, 0 done in " in out
    assert not (tmp_path / "nowhere").exists()
