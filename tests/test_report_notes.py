"""plots/report.py's method notes: what a reader must know to read a method's row fairly.

RHO-LOSS trains its target model on half the training set and pays for an auxiliary model
before its first step; the report must say both, with the cost read from the run's files.
"""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pandas as pd  # noqa: E402

from plots import make_plots  # noqa: E402
from results_fixtures import FakeRun, write_matrix  # noqa: E402

IL_BACKPROPS = 10 * 256  # il_epochs x holdout half of n_train = 512


def _add_il_cost(folder) -> None:
    """Shift every count from epoch 1 on by the IL model's backprops, as the trainer does."""
    for name in ("epochs.csv", "iterations.csv"):
        df = pd.read_csv(folder / name)
        df.loc[df["epoch"] >= 1, "backprops"] += IL_BACKPROPS
        df.to_csv(folder / name, index=False)


def test_rho_loss_note_states_the_holdout_and_the_counted_il_cost(tmp_path):
    root = tmp_path / "results" / "notes"
    runs = [FakeRun(arm="sgd", seed=s, matrix="notes", n_train=512) for s in range(2)]
    runs += [FakeRun(arm="rho_loss", seed=s, matrix="notes", n_train=512,
                     extra_spec={"sampler": {"il_epochs": 10}}) for s in range(2)]
    runs += [FakeRun(arm="infobatch", seed=0, matrix="notes", n_train=512)]
    folders = write_matrix(root, runs)
    for folder, run in zip(folders, runs):
        if run.arm == "rho_loss":
            _add_il_cost(folder)
    res, _ = make_plots(root)
    assert res.runs["included"].all()
    report = (root / "report.md").read_text()
    section = report.split("## Method notes", 1)[1].split("\n## ", 1)[0]
    assert "256 even-index examples of 512" in section
    assert "never trained on by the target model" in section
    assert f"about {IL_BACKPROPS:,} extra backprops" in section
    assert "10 epochs" in section
    assert "infobatch" in section and "fewer steps" in section


def test_no_method_notes_without_such_methods(tmp_path):
    root = tmp_path / "results" / "plain"
    write_matrix(root, [FakeRun(arm="sgd", seed=s, matrix="plain") for s in range(2)])
    make_plots(root)
    assert "## Method notes" not in (root / "report.md").read_text()
