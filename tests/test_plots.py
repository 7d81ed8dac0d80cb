"""Tests of plots/: build result folders with known curves, check what is drawn and written.

Curves (test accuracy as a fraction, epochs 0..6):
- sgd:   0.1 + 0.10*epoch, seed 0 +0.01, seed 1 -0.01  -> seed mean 0.1 + 0.10*epoch
- impon: 0.1 + 0.05*epoch, same seed offsets            -> seed mean 0.1 + 0.05*epoch
so every mean and std over the two seeds is known exactly (std = 0.02/sqrt(2) = 0.01414).
Runs that are not `done` get curves that would visibly move the means if mixed in.
"""
from __future__ import annotations

import math
import subprocess
import sys
import zlib
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import PolyCollection  # noqa: E402
from matplotlib.colors import to_hex  # noqa: E402
from scipy import stats  # noqa: E402
from PIL import Image  # noqa: E402

from plots import make_plots  # noqa: E402
from plots.__main__ import main  # noqa: E402
from plots.aggregate import ResultsError, load_matrix  # noqa: E402
from plots.figures import (ablation_summary, accuracy_vs_epoch, bank_size_curves,  # noqa: E402
                           figure_caption, figure_legend)
from plots.report import cost_to_reach  # noqa: E402
from plots.style import FALLBACK_COLOURS, arm_colour  # noqa: E402
from plots.traits import MethodTraits  # noqa: E402
from results_fixtures import FakeRun, write_matrix, write_run  # noqa: E402

import samplers  # noqa: E402
from benchmarks.traits import catalogue  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
EPOCHS = 6
SLOPES = {"sgd": 0.10, "impon": 0.05}
SECONDS = {"sgd": 2.0, "impon": 3.0}
EMA_SPAN = 5


def offset(seed: int) -> float:
    return 0.01 if seed == 0 else -0.01


def acc_curve(slope: float, seed: int):
    return lambda e: 0.1 + slope * e + offset(seed)


def loss_curve(arm: str, seed: int):
    scale = 2.0 if arm == "sgd" else 2.5
    return lambda i: scale * math.exp(-i / 50) + 0.1 + 0.05 * seed


# Datasets of the main matrix: a prepared reduced dataset, a full builtin, a subset.
DATASETS = {
    "cifar10-5k": dict(n_train=5170, n_test=1017, subset=None),
    "cifar10": dict(n_train=50000, n_test=10000, subset=None),
    "svhn": dict(n_train=512, n_test=256, subset={"train": 512, "test": 256, "seed": 0}),
}
TITLES = {
    "cifar10-5k": "cifar10-5k [subset] (train 5,170 / test 1,017) — 2 seeds",
    "cifar10": "CIFAR-10 (train 50,000 / test 10,000) — 2 seeds",
    "svhn": "svhn [subset] (train 512 / test 256) — 2 seeds",
}


def main_runs() -> list[FakeRun]:
    runs = []
    for dataset, sizes in DATASETS.items():
        for arm, slope in SLOPES.items():
            for seed in (0, 1):
                runs.append(FakeRun(
                    arm=arm, seed=seed, dataset=dataset, matrix="main", epochs=EPOCHS,
                    bank_size=200 if arm == "impon" else None, acc=acc_curve(slope, seed),
                    loss=loss_curve(arm, seed), train_seconds=SECONDS[arm], **sizes))
    bad = dict(dataset="cifar10-5k", matrix="main", epochs=EPOCHS, acc=lambda e: 0.99,
               **DATASETS["cifar10-5k"])
    runs += [
        FakeRun(arm="p_sgd", status="failed",
                error="RuntimeError: CUDA out of memory\nTraceback (most recent call last)", **bad),
        FakeRun(arm="c_sgd", status="running", **bad),
        FakeRun(arm="impon", seed=2, bank_size=200, status="diverged",
                error="loss is nan at iteration 57", **bad),
    ]
    return runs


BANKS = {50: 0.02, 200: 0.05, 800: 0.08}


def ablation_runs() -> list[FakeRun]:
    runs = []
    for dataset in ("cifar10-5k", "svhn"):
        sizes = DATASETS[dataset]
        for seed in (0, 1):
            for bank, slope in BANKS.items():
                runs.append(FakeRun(arm="impon", bank_size=bank, seed=seed, dataset=dataset,
                                    matrix="abl", epochs=EPOCHS, acc=acc_curve(slope, seed),
                                    **sizes))
            runs.append(FakeRun(arm="sgd", seed=seed, dataset=dataset, matrix="abl",
                                epochs=EPOCHS, acc=acc_curve(0.1, seed), **sizes))
    return runs


@pytest.fixture(scope="module")
def main_matrix(tmp_path_factory):
    results = tmp_path_factory.mktemp("results")
    write_matrix(results / "main", main_runs())
    res, outputs = make_plots(results / "main", ema_span=EMA_SPAN)
    return results, res, outputs


@pytest.fixture(scope="module")
def abl_matrix(tmp_path_factory):
    results = tmp_path_factory.mktemp("results")
    write_matrix(results / "abl", ablation_runs())
    return load_matrix(results / "abl")


# ----------------------------------------------------------------------- helpers


def lines_by_label(ax) -> dict[str, object]:
    return {ln.get_label(): ln for ln in ax.lines if not ln.get_label().startswith("_")}


def panels(fig) -> list:
    return [ax for ax in fig.axes if ax.get_visible()]


def panel_for(fig, title_start: str):
    (ax,) = [ax for ax in panels(fig) if title_start in ax.get_title()]
    return ax


def all_text(fig) -> str:
    texts = [fig.get_suptitle(), figure_caption(fig)]
    for ax in fig.axes:
        texts += [ax.get_title(), ax.get_xlabel(), ax.get_ylabel()]
    return "\n".join(texts)


# ------------------------------------------------------------------- aggregation


def test_summary_csv_rows_and_columns(main_matrix):
    results, res, _ = main_matrix
    summary = pd.read_csv(results / "main" / "summary.csv")
    assert len(summary) == 12 * (EPOCHS + 1)  # 12 done runs x epochs 0..6
    for col in ["matrix", "run_id", "dataset", "arm", "bank_size", "seed", "n_train", "n_test",
                "epoch", "test_acc", "test_loss", "train_loss", "backprops", "forwards",
                "train_seconds", "eval_seconds", "cum_train_seconds"]:
        assert col in summary.columns, col
    assert set(summary["matrix"]) == {"main"}
    assert summary.groupby("run_id").size().eq(EPOCHS + 1).all()
    assert set(summary["arm"]) == {"sgd", "impon"}
    assert summary.loc[summary["arm"] == "sgd", "bank_size"].isna().all()
    assert set(summary.loc[summary["arm"] == "impon", "bank_size"]) == {200}
    assert set(summary["seed"]) == {0, 1}
    sgd0 = summary.query("arm == 'sgd' and seed == 0 and dataset == 'cifar10-5k'")
    np.testing.assert_allclose(sgd0["test_acc"], [0.11 + 0.1 * e for e in range(EPOCHS + 1)])
    np.testing.assert_allclose(sgd0["cum_train_seconds"], [2.0 * e for e in range(EPOCHS + 1)])


def test_non_done_runs_are_left_out_and_listed(main_matrix):
    results, res, _ = main_matrix
    left = res.left_out.set_index("arm")
    assert dict(left["status"]) == {"p_sgd": "failed", "c_sgd": "running", "impon": "diverged"}
    assert not res.epochs["run_id"].isin(left["run_id"]).any()
    assert res.epochs["test_acc"].max() < 0.9  # the 0.99 curves of bad runs are not in
    report = (results / "main" / "report.md").read_text()
    section = report.split("## Runs left out", 1)[1]
    for run_id, status in zip(left["run_id"], left["status"]):
        assert run_id in section and status in section
    assert "RuntimeError: CUDA out of memory" in section
    assert "loss is nan at iteration 57" in section


def test_done_run_with_unreadable_csv_is_left_out(tmp_path):
    good, broken = FakeRun(seed=0), FakeRun(seed=1)
    write_run(tmp_path, good)
    folder = write_run(tmp_path, broken)
    (folder / "iterations.csv").unlink()
    res = load_matrix(tmp_path)
    assert list(res.epochs["run_id"].unique()) == [good.run_id()]
    (row,) = res.left_out.itertuples()
    assert row.status == "done" and "iterations.csv is missing" in row.reason


def test_extra_axis_becomes_column_and_splits_the_arm(tmp_path):
    write_matrix(tmp_path, [FakeRun(seed=s, extra_spec={"optimizer": {"lr": lr}})
                            for s in (0, 1) for lr in (0.1, 0.01)])
    res = load_matrix(tmp_path)
    assert "optimizer.lr" in res.epochs.columns
    assert sorted(res.epochs["variant"].unique()) == ["sgd (optimizer.lr=0.01)",
                                                      "sgd (optimizer.lr=0.1)"]


def test_no_usable_runs_raise(tmp_path):
    write_run(tmp_path, FakeRun(status="failed", error="boom"))
    with pytest.raises(ResultsError, match="no finished runs"):
        load_matrix(tmp_path)


# ---------------------------------------------------------------------- figures


def seed_lines(ax) -> dict[str, object]:
    """Thin per-seed lines, by gid ``seed:<variant>:<seed>``."""
    return {ln.get_gid(): ln for ln in ax.lines if str(ln.get_gid()).startswith("seed:")}


def test_figure2_two_seeds_draw_each_seed_under_the_mean_and_no_band(main_matrix):
    _, _, outputs = main_matrix
    fig = outputs.figures["fig2"]
    epochs = np.arange(EPOCHS + 1)
    for title in TITLES.values():
        ax = panel_for(fig, title)
        lines = lines_by_label(ax)
        assert set(lines) == {"sgd", "impon"}
        seeds = seed_lines(ax)
        assert set(seeds) == {f"seed:{a}:{s}" for a in SLOPES for s in (0, 1)}
        for arm, slope in SLOPES.items():
            np.testing.assert_allclose(lines[arm].get_xdata(), epochs)
            np.testing.assert_allclose(lines[arm].get_ydata(), 100 * (0.1 + slope * epochs),
                                       atol=1e-4)
            for seed in (0, 1):
                line = seeds[f"seed:{arm}:{seed}"]
                np.testing.assert_allclose(line.get_ydata(),
                                           100 * (0.1 + slope * epochs + offset(seed)), atol=1e-4)
                assert line.get_linewidth() < lines[arm].get_linewidth()
                assert to_hex(line.get_color()) == to_hex(lines[arm].get_color())
        assert not [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert "thin lines: the individual seeds" in figure_caption(fig)
    assert "confidence interval" not in figure_caption(fig)


def four_seed_runs(matrix: str, acc) -> list[FakeRun]:
    return [FakeRun(arm="sgd", seed=s, matrix=matrix, epochs=2, acc=lambda e, s=s: acc(e, s))
            for s in range(4)]


def test_figure2_four_seeds_draw_the_t_band_and_no_seed_lines(tmp_path):
    offsets = [0.01, -0.01, 0.03, -0.03]
    write_matrix(tmp_path / "four", four_seed_runs("four", lambda e, s: 0.3 + 0.1 * e + offsets[s]))
    fig = accuracy_vs_epoch(load_matrix(tmp_path / "four"))
    (ax,) = panels(fig)
    assert not seed_lines(ax)
    (band,) = [c for c in ax.collections if isinstance(c, PolyCollection)]
    verts = band.get_paths()[0].vertices
    half = stats.t.ppf(0.975, 3) * float(np.std(offsets, ddof=1)) / 2  # sd / sqrt(4)
    top = verts[np.isclose(verts[:, 0], 2), 1].max()
    assert top == pytest.approx(100 * (0.5 + half), abs=1e-3)
    assert "band: 95% Student-t confidence interval" in figure_caption(fig)


def test_accuracy_band_is_clipped_to_0_100(tmp_path):
    # four seeds at 88-99%: the t-interval reaches past 100% and must stop there, while
    # its lower edge (within range) stays the exact t-interval.
    values = [0.88, 0.99, 0.97, 0.99]
    write_matrix(tmp_path / "clip", four_seed_runs("clip", lambda e, s: values[s]))
    fig = accuracy_vs_epoch(load_matrix(tmp_path / "clip"))
    (ax,) = panels(fig)
    verts = ax.collections[0].get_paths()[0].vertices
    pct = 100 * np.array(values)
    half = stats.t.ppf(0.975, 3) * float(np.std(pct, ddof=1)) / 2
    assert pct.mean() + half > 100
    assert verts[:, 1].max() == pytest.approx(100.0)
    assert verts[:, 1].min() == pytest.approx(pct.mean() - half, abs=1e-6)
    assert "clipped to the possible 0–100%" in figure_caption(fig)


def test_legend_entries_are_the_arms(main_matrix):
    _, _, outputs = main_matrix
    for name in ("fig2", "fig3", "seconds", "forwards"):
        assert figure_legend(outputs.figures[name]) == ["sgd", "impon"], name


def test_one_panel_per_dataset_with_sizes_and_seeds_in_titles(main_matrix):
    _, _, outputs = main_matrix
    for name in ("fig2", "fig3", "seconds", "forwards"):
        fig = outputs.figures[name]
        titles = sorted(ax.get_title() for ax in panels(fig))
        assert titles == sorted(TITLES.values()), name
        assert "main" in fig.get_suptitle()


def test_full_dataset_is_not_marked_subset_and_subsets_are():
    # "[subset]" exactly on the reduced datasets: the full CIFAR-10 title has no tag.
    assert "[subset]" not in TITLES["cifar10"]
    assert all("[subset]" in TITLES[d] for d in ("cifar10-5k", "svhn"))


def test_arm_colour_is_the_same_in_every_figure(main_matrix, abl_matrix):
    _, res, outputs = main_matrix
    for name in ("fig2", "fig3", "seconds", "forwards"):
        for ax in panels(outputs.figures[name]):
            for arm, line in lines_by_label(ax).items():
                assert to_hex(line.get_color()) == to_hex(arm_colour(arm, table=res.arm_styles)), \
                    (name, arm)
    # the colours are the ones the samplers declare (recorded in run.json by the runner)
    assert to_hex(lines_by_label(panels(outputs.figures["fig2"])[0])["impon"].get_color()) \
        == samplers.get("impon").plot.arms["impon"].colour.lower()
    fig4 = bank_size_curves(abl_matrix)
    ref = lines_by_label(fig4.axes[0])["sgd (reference)"]
    assert to_hex(ref.get_color()) == to_hex(arm_colour("sgd", table=abl_matrix.arm_styles))


def test_figure3_is_seed_mean_of_per_run_ema(main_matrix):
    _, _, outputs = main_matrix
    fig = outputs.figures["fig3"]
    assert f"span {EMA_SPAN} iterations" in figure_caption(fig)
    ax = panel_for(fig, TITLES["svhn"])  # 4 steps/epoch: no thinning
    steps = 512 // 128 * EPOCHS
    it = pd.Series(np.arange(1, steps + 1))
    for arm in SLOPES:
        per_seed = [it.map(loss_curve(arm, s)).round(6).ewm(span=EMA_SPAN).mean()
                    for s in (0, 1)]
        expected = (per_seed[0] + per_seed[1]) / 2
        line = lines_by_label(ax)[arm]
        np.testing.assert_allclose(line.get_xdata(), it)
        np.testing.assert_allclose(line.get_ydata(), expected, rtol=1e-9)


def test_cost_figures_x_is_cumulative_cost(main_matrix):
    _, _, outputs = main_matrix
    ax = panel_for(outputs.figures["seconds"], TITLES["cifar10-5k"])
    for arm, secs in SECONDS.items():
        np.testing.assert_allclose(lines_by_label(ax)[arm].get_xdata(),
                                   secs * np.arange(EPOCHS + 1))
    ax = panel_for(outputs.figures["forwards"], TITLES["cifar10-5k"])
    per_epoch = 5170 // 128 * 128
    np.testing.assert_allclose(lines_by_label(ax)["sgd"].get_xdata(),
                               per_epoch * np.arange(EPOCHS + 1))
    assert "evaluation time excluded" in figure_caption(outputs.figures["seconds"])


def test_no_ablation_means_no_figure4_and_a_reason(main_matrix):
    _, res, outputs = main_matrix
    assert bank_size_curves(res) is None and ablation_summary(res) is None
    assert "≥2 bank sizes" in outputs.skipped["fig4"]
    assert "ablation" in outputs.skipped


def test_figure4_has_one_line_per_bank_size(abl_matrix):
    fig = bank_size_curves(abl_matrix)
    assert len(panels(fig)) == 2  # one arm (impon) x two datasets
    epochs = np.arange(EPOCHS + 1)
    for ax in panels(fig):
        lines = lines_by_label(ax)
        assert set(lines) == {"N=50", "N=200", "N=800", "sgd (reference)"}
        for bank, slope in BANKS.items():
            np.testing.assert_allclose(lines[f"N={bank}"].get_ydata(),
                                       100 * (0.1 + slope * epochs), atol=1e-4)
        assert "impon" in ax.get_title() and "2 seeds" in ax.get_title()
    assert figure_legend(fig) == ["N=50", "N=200", "N=800", "sgd (reference)"]


def test_ablation_summary_values(abl_matrix):
    fig = ablation_summary(abl_matrix)
    assert figure_legend(fig) == ["epoch 1", "epoch 5", f"final (epoch {EPOCHS})"]
    for ax in panels(fig):
        lines = lines_by_label(ax)
        for label, epoch in [("epoch 1", 1), ("epoch 5", 5), (f"final (epoch {EPOCHS})", EPOCHS)]:
            np.testing.assert_allclose(lines[label].get_xdata(), list(BANKS))
            np.testing.assert_allclose(lines[label].get_ydata(),
                                       [100 * (0.1 + s * epoch) for s in BANKS.values()],
                                       atol=1e-4)


def test_ablation_matrix_figure2_splits_bank_sizes_by_line_style(abl_matrix):
    fig = accuracy_vs_epoch(abl_matrix)
    assert figure_legend(fig) == ["sgd", "impon (N=50)", "impon (N=200)", "impon (N=800)"]
    lines = lines_by_label(panels(fig)[0])
    styles = {lines[f"impon (N={b})"].get_linestyle() for b in BANKS}
    colours = {to_hex(lines[f"impon (N={b})"].get_color()) for b in BANKS}
    assert len(styles) == 3 and colours == {to_hex(arm_colour("impon", table=abl_matrix.arm_styles))}


# ----------------------------------------------------------------------- report


def report_row(report: str, section_title: str, first_cell: str, after: str = "") -> list[str]:
    section = report.split(f"## {section_title}", 1)[1].split("\n## ", 1)[0]
    if after:
        section = section.split(after, 1)[1]
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[0] == first_cell:
            return cells
    raise AssertionError(f"no row {first_cell!r} in {section_title!r}")


def test_report_accuracy_table(main_matrix):
    results, _, _ = main_matrix
    report = (results / "main" / "report.md").read_text()
    assert "| arm | seeds | epoch 1 | epoch 5 | final (epoch 6) |" in report
    for title in TITLES.values():
        # mean over seeds 0.1 + slope*e (in %), std 0.02/sqrt(2) = 1.41 points
        assert report_row(report, title, "sgd") == [
            "sgd", "2", "20.00 ± 1.41", "60.00 ± 1.41", "70.00 ± 1.41"]
        assert report_row(report, title, "impon") == [
            "impon", "2", "15.00 ± 1.41", "35.00 ± 1.41", "40.00 ± 1.41"]


def test_report_cost_to_reach(main_matrix):
    results, _, _ = main_matrix
    report = (results / "main" / "report.md").read_text()
    title = TITLES["cifar10-5k"]
    # best final mean = 70% (sgd) -> levels 35%, 52.5%, 63%
    assert "≥ 35.00% (50% of best)" in report and "63.00%" in report
    # sgd reaches 35% at epoch 3 (both seeds), 52.5% at 5, 63% at 6; 2 s per epoch
    assert report_row(report, title, "sgd", "Training seconds to reach") == [
        "sgd", "6.0 ± 0.0", "10.0 ± 0.0", "12.0 ± 0.0"]
    # impon: 35% at epoch 5 (seed 0: 0.36) and 6 (seed 1: 0.39); 3 s per epoch
    assert report_row(report, title, "impon", "Training seconds to reach") == [
        "impon", "16.5 ± 2.1", "not reached (0/2)", "not reached (0/2)"]
    # backprops: 40 steps x 128 = 5,120 per epoch -> 25,600 and 30,720
    assert report_row(report, title, "impon", "Backprops (examples trained on) to reach")[1] \
        == "28,160 ± 3,620"


def test_cost_to_reach_needs_every_seed(main_matrix):
    _, res, _ = main_matrix
    # level 40% sits between impon's seeds' finals (41% and 39%): 1 of 2 reach it
    costs = cost_to_reach(res, "cifar10-5k", fractions=(0.40 / 0.70,))
    impon = costs.loc[costs["variant"] == "impon"].iloc[0]
    assert (impon["reached"], impon["n"]) == (1, 2)
    assert math.isnan(impon["cum_train_seconds_mean"])


def test_report_has_figures_inline(main_matrix):
    results, _, outputs = main_matrix
    report = (results / "main" / "report.md").read_text()
    for paths in outputs.written.values():
        png = paths[0]
        assert f"](figures/{png.name})" in report
    assert "Not drawn:" in report  # Figure 4 skipped, with its reason


# -------------------------------------------------------------------- files & CLI


def test_make_plots_writes_paired_table_and_figure_and_says_what_it_skipped(main_matrix):
    results, _, outputs = main_matrix
    root = results / "main"
    paired = pd.read_csv(root / "paired.csv")
    # no matrix file named "main": every arm against sgd; 3 datasets x 3 checkpoints
    assert set(zip(paired["arm"], paired["reference"])) == {("impon", "sgd")}
    assert len(paired) == 9 and (paired["n"] == 2).all()
    final = paired.loc[paired["checkpoint"] == "final", "mean"]
    np.testing.assert_allclose(final, (0.05 - 0.10) * EPOCHS, atol=1e-6)
    for fmt in ("png", "pdf"):
        assert (root / "figures" / f"paired_difference_vs_epoch.{fmt}").exists()
    assert "no run logged impon_spearman" in outputs.skipped["diag_impon"]
    report = (root / "report.md").read_text()
    assert "**Paired differences of test accuracy**" in report and "## Setup" in report


def test_png_150dpi_and_pdf_written_atomically(main_matrix):
    results, _, outputs = main_matrix
    figures = results / "main" / "figures"
    for png, pdf in outputs.written.values():
        assert Image.open(png).info["dpi"] == pytest.approx((150, 150), abs=0.5)
        assert pdf.read_bytes()[:5] == b"%PDF-"
    leftovers = [p.name for p in figures.iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_cli_writes_everything_and_names_left_out_runs(tmp_path, capsys):
    write_matrix(tmp_path / "small", [FakeRun(seed=0), FakeRun(seed=1),
                                      FakeRun(arm="adam", status="failed", error="boom")])
    assert main(["small", "--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "summary.csv" in out and "report.md" in out and "fig2_" in out
    assert "left out" in out and "[failed]" in out and "boom" in out
    assert "skipped fig4" in out


def test_cli_missing_folder_exits_2_without_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "plots", "no_such_matrix",
                           "--results", str(tmp_path)], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2
    assert "no results folder" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_cli_no_done_runs_exits_2(tmp_path, capsys):
    write_run(tmp_path / "m", FakeRun(status="running"))
    assert main(["m", "--results", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no finished runs" in err and "1 running" in err


# ------------------------------------------------------------------------- style


def test_arm_colours_fixed_and_fallback_stable():
    table = MethodTraits(catalogue()).arm_styles()
    assert arm_colour("impon", table=table) == "#D55E00"
    assert arm_colour("sgd", table=table) == "#0173B2"
    name = "my_new_sampler"
    assert arm_colour(name, table=table) == \
        FALLBACK_COLOURS[zlib.crc32(name.encode()) % len(FALLBACK_COLOURS)]
    known = ["sgd", "adam", "uniform_lr1e-3", "selective_backprop", "p_sgd", "c_sgd", "impon",
             "impon_low", "loss_oracle"]
    assert len({arm_colour(a, table=table) for a in known}) == len(known)
    # without any recorded traits (old runs) every arm still gets a stable colour
    assert arm_colour("impon") == FALLBACK_COLOURS[zlib.crc32(b"impon") % len(FALLBACK_COLOURS)]
