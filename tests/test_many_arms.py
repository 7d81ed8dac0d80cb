"""Statistics for many arms (plots/stats.py) and the many-arm figures (plots/multiples.py).

Holm is checked on hand-worked examples (and would fail for Bonferroni or an unadjusted
test); the paired-t p-value recovered from an interval against scipy's own t-test; IQM and
probability of improvement against hand-computed cases, scipy's Mann-Whitney U (what
rliable calls) and values rliable 1.2.0 printed; the small multiples against a fixture
matrix with one arm more and one arm fewer than the threshold.
"""
from __future__ import annotations

import json
import math

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from scipy import stats as sps  # noqa: E402

from plots import multiples, stats  # noqa: E402
from plots.aggregate import load_matrix  # noqa: E402
from plots.paired import comparisons_for, paired_t_interval  # noqa: E402
from results_fixtures import FakeRun, write_matrix  # noqa: E402

# fixture runs without recorded plot traits (no sampler import): neutral colours, said once
pytestmark = pytest.mark.filterwarnings("ignore:no plot traits recorded")

# ------------------------------------------------------------------------------ Holm


def test_holm_hand_worked_example():
    # sorted: 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 = 0.02, 0.03, 0.06, 0.04;
    # running maximum: 0.02, 0.03, 0.06, 0.06; back in input order:
    adjusted = stats.holm([0.01, 0.04, 0.03, 0.005])
    np.testing.assert_allclose(adjusted, [0.03, 0.06, 0.06, 0.02])
    # step-down at 5%: 0.005 <= 0.05/4, 0.01 <= 0.05/3, 0.03 > 0.05/2 -> stop
    assert list(adjusted <= 0.05) == [True, False, False, True]
    # Bonferroni (p * k) would say 0.16 for the 0.04; unadjusted would keep all four
    assert adjusted[1] != pytest.approx(0.16)


def test_holm_known_values_monotone_capped_and_nan():
    # k = 5: 0.05, 0.08, 0.09, (0.08 -> running max) 0.09, (0.05 ->) 0.09
    np.testing.assert_allclose(stats.holm([0.01, 0.02, 0.03, 0.04, 0.05]),
                               [0.05, 0.08, 0.09, 0.09, 0.09])
    np.testing.assert_allclose(stats.holm([0.5, 0.6]), [1.0, 1.0])  # capped at 1
    out = stats.holm([0.01, math.nan, 0.04])  # a comparison with no test: not counted
    assert math.isnan(out[1])
    np.testing.assert_allclose(out[[0, 2]], [0.02, 0.04])
    assert stats.holm([0.03]).tolist() == [0.03]  # one comparison: nothing to adjust
    assert np.isnan(stats.holm([math.nan])).all()


def test_pvalue_from_the_interval_is_scipys_paired_t_test():
    for diffs in ([0.02, 0.03, 0.04], [-0.05, 0.01, -0.02, -0.04], [0.1, -0.1, 0.05]):
        mean, lo, hi = paired_t_interval(diffs)
        assert stats.t_pvalue(mean, hi, len(diffs)) == pytest.approx(
            sps.ttest_1samp(diffs, 0.0).pvalue, rel=1e-9)
    assert stats.t_pvalue(0.0, 0.0, 3) == 1.0  # identical runs
    assert stats.t_pvalue(0.01, 0.01, 3) == 0.0  # every seed moved by exactly 0.01
    assert math.isnan(stats.t_pvalue(0.01, math.nan, 1))


def test_add_holm_adjusts_each_panel_and_checkpoint_on_its_own():
    rows = []
    for panel, diffs_by_arm in (("a", {"x": [0.02, 0.03, 0.04], "y": [0.1, -0.1, 0.05]}),
                                ("b", {"x": [0.02, 0.03, 0.04]})):
        for arm, diffs in diffs_by_arm.items():
            mean, lo, hi = paired_t_interval(diffs)
            rows.append({"panel": panel, "variant": arm, "checkpoint": "final", "n": 3,
                         "mean": mean, "t_lo": lo, "t_hi": hi})
    out = stats.add_holm(pd.DataFrame(rows))
    p_x = sps.ttest_1samp([0.02, 0.03, 0.04], 0.0).pvalue
    p_y = sps.ttest_1samp([0.1, -0.1, 0.05], 0.0).pvalue
    np.testing.assert_allclose(out["p_holm"], [min(1, 2 * p_x), min(1, max(2 * p_x, p_y)), p_x])
    assert list(out["holm_survives"]) == [2 * p_x <= 0.05, False, p_x <= 0.05]


# ---------------------------------------------------------------------- IQM / PoI


def test_iqm_trims_a_quarter_each_side_of_all_runs_pooled():
    assert stats.iqm([[1, 2, 3, 4, 5, 6, 7, 8]]) == pytest.approx(4.5)  # mean of 3..6
    assert stats.iqm([[1, 2, 3, 4], [5, 6, 7, 8]]) == pytest.approx(4.5)
    assert stats.iqm([[1, 2, 3, 100]]) == pytest.approx(2.5)  # the outlier is cut
    assert stats.iqm([[0.4, 0.5, 0.6]]) == pytest.approx(0.5)  # 3 runs: nothing to cut
    with pytest.raises(ValueError):
        stats.iqm([[]])


def test_probability_of_improvement_counts_ties_half_and_averages_tasks():
    assert stats.probability_of_improvement([[1, 2, 3]], [[2, 2, 2]]) == pytest.approx(0.5)
    assert stats.probability_of_improvement([[3, 4]], [[1, 2]]) == 1.0
    # task 1: only (2, 2) is a tie -> 0.5/4; task 2: 1.0; mean 0.5625
    assert stats.probability_of_improvement([[1, 2], [3, 4]], [[2, 3], [1, 2]]) == \
        pytest.approx(0.5625)
    with pytest.raises(ValueError, match="same tasks"):
        stats.probability_of_improvement([[1], [2]], [[1]])


def test_poi_is_mann_whitney_u_over_pairs_as_rliable_computes_it():
    rng = np.random.default_rng(5)
    for nx, ny in ((3, 3), (5, 4), (2, 6)):
        x = np.round(rng.uniform(0.3, 0.5, nx), 2)  # rounded: ties happen
        y = np.round(rng.uniform(0.3, 0.5, ny), 2)
        u = sps.mannwhitneyu(x, y, alternative="greater").statistic
        assert stats.probability_of_improvement([x], [y]) == pytest.approx(u / (nx * ny))


#: From rliable 1.2.0, run once outside the suite (its ``library`` needs ``arch``, whose
#: 7.2 release does not import under pandas 3; patched for that run only):
#: scores ``RandomState(3).uniform(0.3, 0.6, (5, 3))`` for x and y, y[:, 1] = x[:, 1],
#: x[0, 2] = y[1, 2]; ``metrics.aggregate_iqm``, ``metrics.probability_of_improvement``,
#: ``library.get_interval_estimates`` (percentile, 50,000 / 20,000 resamples).
RLIABLE = {"iqm": 0.43513075893233194, "iqm_ci": (0.38326321, 0.48619264),
           "poi": 0.48, "poi_ci": (0.26666667, 0.7)}


def _rliable_scores() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.RandomState(3)
    x = rng.uniform(0.3, 0.6, size=(5, 3))
    y = rng.uniform(0.3, 0.6, size=(5, 3))
    y[:, 1] = x[:, 1]
    x[0, 2] = y[1, 2]
    return x, y


def test_iqm_poi_and_their_intervals_match_rliables_printed_values():
    x, y = _rliable_scores()
    xs, ys = list(x.T), list(y.T)  # rliable: (runs, tasks); here: a list of tasks
    assert stats.iqm(xs) == pytest.approx(RLIABLE["iqm"], rel=1e-12)
    assert stats.probability_of_improvement(xs, ys) == pytest.approx(RLIABLE["poi"])
    # bootstrap intervals: another generator, so equal up to resampling noise
    assert stats.stratified_bootstrap_iqm(xs) == pytest.approx(RLIABLE["iqm_ci"], abs=2e-3)
    assert stats.stratified_bootstrap_poi(xs, ys) == pytest.approx(RLIABLE["poi_ci"], abs=0.02)


def test_against_rliable_itself_when_installed():
    metrics = pytest.importorskip("rliable.metrics")
    x, y = _rliable_scores()
    assert stats.iqm(list(x.T)) == pytest.approx(metrics.aggregate_iqm(x))
    assert stats.probability_of_improvement(list(x.T), list(y.T)) == pytest.approx(
        metrics.probability_of_improvement(x, y))


def test_stratified_bootstrap_resamples_within_tasks_only():
    # one run per task: every resample is the data itself -> a zero-width interval
    assert stats.stratified_bootstrap_iqm([[0.3], [0.5], [0.7], [0.9]]) == (
        pytest.approx(0.6), pytest.approx(0.6))
    # pooling tasks before resampling would let a resample draw 0.9 twice and 0.3 never
    lo, hi = stats.stratified_bootstrap_iqm([[0.3, 0.31], [0.9, 0.91]], reps=2000)
    assert 0.59 < lo <= hi < 0.62
    lo, hi = stats.stratified_bootstrap_poi([[1.0, 2.0]], [[0.0, 3.0]], reps=2000)
    assert 0.0 <= lo < 0.5 < hi <= 1.0
    # same inputs, same seed: the same interval (the report is reproducible)
    assert stats.stratified_bootstrap_iqm([[1, 2, 3]], reps=500) == \
        stats.stratified_bootstrap_iqm([[1, 2, 3]], reps=500)


def test_aggregate_table_compares_each_setting_with_the_reference_at_that_setting(tmp_path):
    runs = []
    for seed in range(3):
        for budget, level in ((0.5, 0.3), (1.0, 0.5)):
            runs.append(FakeRun(arm="sgd", seed=seed, epochs=2, plot_traits=False,
                                extra_spec={"budget": budget},
                                acc=lambda e, b=level, s=seed: b + 0.01 * s if e else 0.1))
            runs.append(FakeRun(arm="fast", sampler="uniform", seed=seed, epochs=2,
                                plot_traits=False, extra_spec={"budget": budget},
                                acc=lambda e, b=level, s=seed: b + 0.1 + 0.01 * s if e else 0.1))
    write_matrix(tmp_path / "m", runs)
    res = load_matrix(tmp_path / "m")
    table = stats.aggregate_table(res.epochs, [("fast", "sgd")], ["budget"], reps=500)
    fast = table.loc[table["arm"] == "fast"].set_index("variant")
    # each budget of `fast` beats sgd at the same budget on every pair of runs; against
    # the pooled reference (0.3 and 0.5 levels) the 0.5 budget's 0.4 runs would not
    assert (fast["poi"] == 1.0).all() and (fast["poi_lo"] == 1.0).all()
    assert table.loc[table["arm"] == "sgd", "poi"].isna().all()
    assert fast.loc["fast (budget=0.5)", "iqm"] == pytest.approx(0.41)


# ----------------------------------------------------------- many-arm figures


SAMPLERS = ["impon", "p_sgd", "c_sgd", "unif_sgd", "infobatch", "rho_loss",
            "selective_backprop", "online_batch_selection", "upper_bound_is", "loss_oracle"]


def _matrix(tmp_path, n_arms: int, name: str = "many", budgets: tuple = (None,)):
    """sgd plus n_arms - 1 other arms (two of them impon, one family), 2 seeds each (per
    budget, when given)."""
    arms = [("sgd", "uniform"), ("impon_low", "impon")] + [(s, s) for s in SAMPLERS]
    runs = [FakeRun(arm=arm, sampler=sampler, seed=seed, matrix=name, epochs=3,
                    plot_traits=False, extra_spec={"budget": b} if b else {},
                    acc=lambda e, i=i, s=seed: min(0.9, 0.1 + (0.1 + 0.01 * i) * e + 0.005 * s))
            for i, (arm, sampler) in enumerate(arms[:n_arms]) for seed in (0, 1)
            for b in budgets]
    write_matrix(tmp_path / name, runs)
    return load_matrix(tmp_path / name)


def test_small_multiples_are_chosen_above_the_fixed_arm_count(tmp_path):
    assert multiples.MANY_ARMS == 8  # the threshold the README and the reports state
    few = _matrix(tmp_path, multiples.MANY_ARMS, "few")
    many = _matrix(tmp_path, multiples.MANY_ARMS + 1, "many")
    assert multiples.arm_count(few) == 8 and not multiples.wants_multiples(few)
    assert "8 arms per dataset, at most 8" in multiples.skip_reason(few)
    assert multiples.arm_count(many) == 9 and multiples.wants_multiples(many)


def test_one_panel_per_family_with_the_reference_in_every_panel(tmp_path):
    res = _matrix(tmp_path, 9)
    pairs = comparisons_for(res).pairs
    fams = multiples.families(res, "sgd")
    assert fams["impon"] == ["impon", "impon_low"]  # one family: the sampler's arms
    assert "uniform" not in fams  # the reference's family has nothing else: no panel
    fig = multiples.small_multiples(res, pairs, tmp_path / "fig")
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in visible] == list(fams)
    for ax, family in zip(visible, fams):
        labels = [t.get_text() for t in ax.get_legend().get_texts()]
        assert labels == ["sgd (reference)", *fams[family]]
    assert (tmp_path / "fig" / "multiples_test_accuracy_vs_epoch.png").stat().st_size > 0
    assert (tmp_path / "fig" / "multiples_test_accuracy_vs_epoch.pdf").stat().st_size > 0


def test_each_setting_gets_its_own_row_with_the_reference_at_that_setting(tmp_path):
    res = _matrix(tmp_path, 9, budgets=(0.5, 1.0))
    assert multiples.settings(res) == ["budget"]
    fig = multiples.small_multiples(res, comparisons_for(res).pairs)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    titles = [ax.get_title() for ax in visible]
    fams = list(multiples.families(res, "sgd"))
    assert len(fams) == 7  # 9 arms: sgd is the reference, impon and impon_low one family
    assert titles == [f"{f} · budget={b}" for b in ("0.5", "1.0") for f in fams]
    for ax in visible:
        labels = [t.get_text() for t in ax.get_legend().get_texts()]
        assert labels.count("sgd (reference)") == 1  # sgd at this budget only, each arm once
        assert len(labels) == len(set(labels))


def test_a_family_declared_in_the_plot_traits_groups_samplers(tmp_path):
    res = _matrix(tmp_path, 9)
    for folder in (tmp_path / "many").iterdir():  # the runner records traits per run
        info = json.loads((folder / "run.json").read_text())
        if info["spec"]["sampler"]["name"] in ("p_sgd", "c_sgd"):
            info["plot_traits"] = {"family": "loss-proportional"}
            (folder / "run.json").write_text(json.dumps(info))
    res = load_matrix(tmp_path / "many")
    fams = multiples.families(res, "sgd")
    assert sorted(fams["loss-proportional"]) == ["c_sgd", "p_sgd"]
    assert "p_sgd" not in fams and "c_sgd" not in fams


def test_time_to_accuracy_bars_and_unreached_targets(tmp_path):
    res = _matrix(tmp_path, 9)
    pairs = comparisons_for(res).pairs
    fig = multiples.time_to_accuracy(res, pairs)
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    # sgd (the slowest riser) reaches its own worst-seed best; every other arm rises
    # faster, so nothing is "not reached" at either target
    assert not [t for t in texts if t.startswith("not reached")]
    first = fig.axes[0]
    assert "sgd (reference)" in [t.get_text() for t in first.get_yticklabels()]
    # sgd's bar is the longest in seconds: it needs the most epochs (2 s each)
    widths = {t.get_text(): p.get_width() for t, p in zip(first.get_yticklabels(),
                                                          first.patches)}
    assert max(widths, key=widths.get) == "sgd (reference)"


def test_python_m_plots_draws_them_above_the_threshold_only(tmp_path):
    from plots import make_plots

    for n, drawn in ((multiples.MANY_ARMS, False), (multiples.MANY_ARMS + 1, True)):
        res = _matrix(tmp_path, n, name=f"m{n}")
        _, outputs = make_plots(res.root)
        figures = res.root / "figures"
        report = (res.root / "report.md").read_text(encoding="utf-8")
        for name, stem in multiples.STEMS.items():
            assert (name in outputs.written) is drawn
            assert (figures / f"{stem}.png").exists() is drawn
            if drawn:
                assert f"](figures/{stem}.png)" in report
            else:
                assert outputs.skipped[name] == multiples.skip_reason(res)
        # the report's Holm column and the across-datasets section come with them
        assert "p (Holm)" in report and "## Across datasets and seeds" in report
