"""The committed CPU examples: their run data ships with the repository, checkpoints do not.

Why: the README says the committed figures were redrawn from the CSVs alone
(`make plots MATRIX=cpu_mini`); that has to work on a fresh clone, so the CSVs, run.json and
config.yaml of those runs are tracked, while checkpoints (large, binary), lock files and
temp files must never be committed by accident.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from plots.__main__ import main as plots_main

REPO = Path(__file__).resolve().parent.parent


def _ignored(rel: str) -> bool:
    """True if .gitignore's patterns ignore ``rel`` (``--no-index``: tracked files too)."""
    r = subprocess.run(["git", "check-ignore", "-q", "--no-index", rel], cwd=REPO,
                       capture_output=True, text=True)
    if r.returncode not in (0, 1):
        pytest.skip(f"git check-ignore unusable here: {r.stderr.strip()}")
    return r.returncode == 0


@pytest.fixture(scope="module")
def in_git() -> None:
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")


@pytest.mark.parametrize("matrix", ["cpu_mini", "cpu_methods", "cpu_budget", "cpu_lr_sweep"])
def test_gitignore_tracks_run_data_of_cpu_examples_but_not_checkpoints(in_git, matrix):
    run = f"results/{matrix}/cifar10-5k-sgd-seed0-0123abcd"
    for name in ("iterations.csv", "epochs.csv", "run.json", "config.yaml"):
        assert not _ignored(f"{run}/{name}"), f"{run}/{name} would not be committed"
    for rel in (f"{matrix}/report.md", f"{matrix}/summary.csv", f"{matrix}/figures/fig2.png",
                f"{matrix}/figures/fig2.pdf"):
        assert not _ignored(f"results/{rel}"), rel
    for rel in (f"{run}/checkpoint.pt", f"{run}/.run.json.x1y2.tmp", f"{run}/.epochs.csv.ab.tmp",
                f"results/{matrix}/.locks/cifar10-5k-sgd-seed0-0123abcd.lock",
                f"results/{matrix}/.locks/run.json", f"results/{matrix}/.submitit/1/run.json",
                f"results/{matrix}/figures/.fig2.png.ab.tmp"):
        assert _ignored(rel), f"{rel} is not git-ignored"


def test_gitignore_still_ignores_other_matrices_and_data(in_git):
    for rel in ("results/paper/cifar10-sgd-seed0-0123abcd/epochs.csv", "results/smoke/report.md",
                "data/cifar10/train.npz"):
        assert _ignored(rel), rel
    assert not _ignored("results/README.md")


def _committed_runs() -> list[Path]:
    root = REPO / "results" / "cpu_mini"
    if not root.is_dir():
        return []
    return [p for p in sorted(root.iterdir()) if (p / "run.json").is_file()]


def test_plots_of_committed_cpu_mini_runs_work_from_the_csvs(tmp_path, capsys):
    runs = _committed_runs()
    if not runs:
        pytest.skip("no cpu_mini run folders are committed yet")
    copy = tmp_path / "results" / "cpu_mini"   # never rewrite the committed figures in a test
    for run in runs:
        shutil.copytree(run, copy / run.name,
                        ignore=lambda d, names: [n for n in names if n == "checkpoint.pt"])
    rc = plots_main(["cpu_mini", "--results", str(tmp_path / "results")])
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert f"of {len(runs)} runs used" in out.out
    assert (copy / "report.md").stat().st_size > 0
    assert (copy / "figures" / "fig2_test_accuracy_vs_epoch.png").stat().st_size > 0
