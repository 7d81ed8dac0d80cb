"""Makefile recipes: a dry run prints the plan and never reaches the plotting step."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TARGETS = ["reproduce", "ablation-bank", "fair", "smoke", "cpu-mini"]


def _recipe(target: str, *variables: str) -> str:
    """What ``make TARGET`` would execute (``-n``), the venv install treated as done."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    r = subprocess.run(["make", "-n", "-o", ".venv/.installed", target, *variables],
                       cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r.stdout


@pytest.mark.parametrize("target", TARGETS)
def test_dry_run_does_not_plot(target):
    dry = _recipe(target, "ARGS=--dry-run")
    assert "-m benchmarks run" in dry and "--dry-run" in dry
    assert "-m plots" not in dry, dry
    # the same target without --dry-run does plot (so the check above can fail)
    assert "-m plots" in _recipe(target)


@pytest.mark.parametrize("target", TARGETS)
def test_results_root_reaches_the_run_and_the_plots(target):
    """``RESULTS=DIR`` is where the runs go and where the plots look (a results root given
    only to the runner made the plotting step fail on a folder it never looked in)."""
    lines = [ln for ln in _recipe(target, "RESULTS=/tmp/elsewhere").splitlines()
             if "-m benchmarks run" in ln or "-m plots" in ln]
    assert lines and all("--results /tmp/elsewhere" in ln for ln in lines), lines
