"""plots/budget.py: final accuracy vs budget, drawn from synthetic run folders.

Final accuracy of each run is chosen in advance: arm base + 0.4 * budget + 0.01 * (seed - 1),
so over seeds 0, 1, 2 the mean is base + 0.4 * budget and the std exactly 0.01.
"""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from plots import budget, make_plots  # noqa: E402
from plots.aggregate import load_matrix  # noqa: E402
from results_fixtures import FakeRun, write_matrix  # noqa: E402

BASE = {"unif_sgd": 0.30, "p_sgd": 0.20}
BUDGETS = [0.2, 0.5, 1.0]


def _final(arm: str, f: float, seed: int) -> float:
    return BASE[arm] + 0.4 * f + 0.01 * (seed - 1)


def _runs(datasets=("cifar10-5k", "svhn"), budgets=BUDGETS):
    for ds in datasets:
        for arm in BASE:
            for f in budgets:
                for seed in range(3):
                    final = _final(arm, f, seed)
                    yield FakeRun(arm=arm, seed=seed, dataset=ds, matrix="bud", epochs=3,
                                  acc=lambda e, final=final: final * e / 3,
                                  extra_spec={} if f == 1.0 else {"budget": f})


def test_budget_figure_lines_are_seed_means_and_points_are_seeds(tmp_path):
    root = tmp_path / "results" / "bud"
    write_matrix(root, _runs())
    res = load_matrix(root)
    table = budget.budget_table(res)
    assert len(table) == 2 * 2 * 3 and (table["seeds"] == 3).all()
    for _, row in table.iterrows():   # budget 1 runs have no key (written before it): = 1.0
        assert row["mean"] == pytest.approx(BASE[row["arm"]] + 0.4 * row["budget"])
        assert row["std"] == pytest.approx(0.01)
    fig = budget.budget_accuracy(res)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert len(axes) == 2                                     # one panel per dataset
    for ax in axes:
        lines = {line.get_label(): line for line in ax.lines}
        assert set(lines) == set(BASE)
        for arm, line in lines.items():
            assert list(line.get_xdata()) == BUDGETS
            want = [(BASE[arm] + 0.4 * f) * 100 for f in BUDGETS]
            assert np.allclose(line.get_ydata(), want)
        points = np.concatenate([c.get_offsets() for c in ax.collections])
        assert len(points) == 2 * 3 * 3                       # every seed drawn
        want = sorted(_final(a, f, s) * 100 for a in BASE for f in BUDGETS for s in range(3))
        assert np.allclose(sorted(points[:, 1]), want)


def test_make_plots_writes_budget_figure_and_report_section(tmp_path):
    root = tmp_path / "results" / "bud"
    write_matrix(root, _runs(datasets=("cifar10-5k",)))
    _, outputs = make_plots(root)
    for ext in ("png", "pdf"):
        assert (root / "figures" / f"budget_accuracy.{ext}").stat().st_size > 1000
    assert outputs.written["budget"][0].name == "budget_accuracy.png"
    report = (root / "report.md").read_text()
    assert "## Accuracy vs budget" in report and "figures/budget_accuracy.png" in report
    # unif_sgd at f = 0.5: mean 0.30 + 0.20 = 50.0 %, std 1.0
    budget_part = report[report.index("## Accuracy vs budget"):]  # after the setup table
    row = next(line for line in budget_part.splitlines() if line.startswith("| unif_sgd |"))
    assert row.split("|")[2].strip() == "38.0 ± 1.0" and "50.0 ± 1.0" in row
    assert report.startswith("# Results")                     # the main report is kept


def test_no_budget_axis_no_budget_figure(tmp_path):
    root = tmp_path / "results" / "plain"
    write_matrix(root, _runs(datasets=("cifar10-5k",), budgets=[1.0]))
    _, outputs = make_plots(root)
    assert budget.budget_accuracy(load_matrix(root)) is None
    assert "budget" not in outputs.written and not (root / "figures" / "budget_accuracy.png").exists()
    assert "Accuracy vs budget" not in (root / "report.md").read_text()
