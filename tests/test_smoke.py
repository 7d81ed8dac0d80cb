"""CI smoke run: smoke.yaml end to end, offline, then its figures and report drawn from the
CSVs it wrote.

The smoke datasets are the suite's own synthetic ones (benchmarks/synthetic.py): the data
root starts empty and ``--no-download`` is passed, so this is exactly what `make smoke`
does on a machine without internet.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd

import samplers
from benchmarks.cli import main
from benchmarks.synthetic import SMOKE_DATASETS
from plots import make_plots
from plots.figures import figure_legend
from plots.outputs import stems


def test_smoke_matrix_end_to_end(tmp_path, capsys):
    root = tmp_path / "data"          # does not exist: the run writes the smoke data itself
    results = tmp_path / "results"
    rc = main(["run", "smoke", "--data-root", str(root), "--results", str(results),
               "--no-download", "--device", "cpu"])
    out = capsys.readouterr()
    assert rc == 0, out.out + out.err
    assert sorted(p.name for p in root.iterdir()) == sorted(SMOKE_DATASETS)
    runs = [p for p in (results / "smoke").iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert len(runs) == 39
    names = {json.loads((r / "run.json").read_text())["spec"]["sampler"]["name"] for r in runs}
    assert names == set(samplers.available())        # make smoke covers every method
    for run in runs:
        info = json.loads((run / "run.json").read_text())
        assert info["status"] == "done", (run.name, info["error"])
        assert info["dataset"]["n_train"] == 512 and info["dataset"]["n_test"] == 256
        ep = pd.read_csv(run / "epochs.csv")
        assert list(ep.epoch) == [0, 1, 2] and ep.test_acc.between(0, 1).all()
        it = pd.read_csv(run / "iterations.csv")
        assert len(it) == 2 * (512 // 32)
        arm = info["spec"]["arm"]
        last = ep.iloc[-1]
        if arm in ("sgd", "adam", "p_sgd", "c_sgd", "impon_low"):
            assert last.forwards == last.backprops
        if arm == "selective_backprop":
            assert last.forwards > 2 * last.backprops
        if arm == "loss_oracle":
            assert last.forwards == last.backprops + 64 * len(it)
        if arm == "impon":  # diagnose_every 4: the bank scored every 4th step, a measurement
            assert last.forwards == last.backprops          # not the method's cost...
            assert last.diag_forwards == 64 * (len(it) // 4)  # ...but its own column
            assert {"impon_spearman", "impon_precision_at_b"} <= set(ep.columns)

    # ---- the figures of that matrix, from its CSVs alone
    res, outputs = make_plots(results / "smoke")
    assert res.runs["included"].all() and len(res.runs) == 39
    arms = ["sgd", "adam", "selective_backprop", "p_sgd", "c_sgd", "impon", "impon_low",
            "loss_oracle", "unif_sgd", "infobatch", "rho_loss", "upper_bound_is",
            "online_batch_selection"]
    fig2 = outputs.figures["fig2"]
    assert sorted(figure_legend(fig2)) == sorted(arms)
    axes = {ax.get_title().split()[0]: ax for ax in fig2.axes if ax.get_visible()
            and ax.get_title()}
    assert set(axes) == set(SMOKE_DATASETS)
    for name, ax in axes.items():
        assert "[subset]" in ax.get_title() and "512" in ax.get_title(), ax.get_title()
        lines = {ln.get_label(): ln for ln in ax.lines if not ln.get_label().startswith("_")}
        assert set(lines) == set(arms)
        for run in runs:  # one seed: each plotted line is that run's epochs.csv, in percent
            info = json.loads((run / "run.json").read_text())
            if info["spec"]["dataset"] != name:
                continue
            ep = pd.read_csv(run / "epochs.csv")
            line = lines[info["spec"]["arm"]]
            np.testing.assert_allclose(line.get_xdata(), ep.epoch)
            np.testing.assert_allclose(line.get_ydata(), 100 * ep.test_acc, atol=1e-6)
    # the backprops figure plots each run's cumulative `backprops` column against accuracy:
    # Selective Backprop's line must end at its (smaller) backprop count, not its forwards
    cost = outputs.figures["backprops"]
    cost_axes = {ax.get_title().split()[0]: ax for ax in cost.axes if ax.get_visible()
                 and ax.get_title()}
    for run in runs:
        info = json.loads((run / "run.json").read_text())
        ax = cost_axes[info["spec"]["dataset"]]
        line = {ln.get_label(): ln for ln in ax.lines}[info["spec"]["arm"]]
        ep = pd.read_csv(run / "epochs.csv")
        np.testing.assert_allclose(line.get_xdata(), ep.backprops)
        np.testing.assert_allclose(line.get_ydata(), 100 * ep.test_acc, atol=1e-6)
    for name in ("fig2", "fig3", "seconds", "forwards", "backprops", "paired", "diag_impon",
                 "diag_selective_backprop", "diag_psgd"):
        for fmt in ("png", "pdf"):
            assert (results / "smoke" / "figures" / f"{stems(res)[name]}.{fmt}").stat().st_size > 0
    assert "fig4" in outputs.skipped  # one bank size per arm: no bank-size ablation to draw
    summary = pd.read_csv(results / "smoke" / "summary.csv")
    assert len(summary) == 39 * 3 and set(summary.arm) == set(arms)
    report = (results / "smoke" / "report.md").read_text()
    assert all(d in report for d in SMOKE_DATASETS)   # the report says what it ran on
