"""Paired statistics, comparisons, colours, diagnostics figures and the report's setup table.

Accuracy curves are chosen so that every statistic is computable by hand: the impon run of
seed s is the sgd run of seed s plus a known difference, at every epoch.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import yaml  # noqa: E402
from matplotlib.collections import PolyCollection  # noqa: E402
from matplotlib.colors import to_hex  # noqa: E402

from plots.__main__ import main  # noqa: E402
from plots.aggregate import load_matrix  # noqa: E402
from plots.figures import (FigureOutputs, accuracy_vs_epoch, diagnostics_figure,  # noqa: E402
                           figure_caption, loss_vs_iteration, paired_difference_vs_epoch)
from plots.report import render_report  # noqa: E402
from plots.paired import (bootstrap_interval, comparisons_for, paired_stats,  # noqa: E402
                          paired_t_interval, paired_table, sign_agreement)
from plots.setup import arm_table, common_table, provenance  # noqa: E402
from plots.style import (MIN_DELTA_E, arm_palette, close_pairs,  # noqa: E402
                         delta_e, srgb_to_lab)
from plots.traits import ArmTable, MethodTraits  # noqa: E402
from benchmarks.traits import catalogue  # noqa: E402

#: What every registered sampler declares about colours (their plot traits).
STYLES = MethodTraits(catalogue()).arm_styles()
ARM_COLOURS = STYLES.arms
from results_fixtures import FakeRun, write_matrix  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
T_975_DOF2 = 4.302652729749464  # Student-t 97.5% quantile, 2 degrees of freedom
DIFFS = {0: 0.02, 1: 0.03, 2: 0.04}  # impon - sgd per seed: mean 0.03, sd 0.01


def base_acc(seed: int):
    return lambda e: 0.2 + 0.05 * e + 0.02 * seed


def paired_runs(matrix: str, diffs: dict[int, float], extra_impon_seeds: tuple[int, ...] = (),
                epochs: int = 5) -> list[FakeRun]:
    runs = []
    for seed, d in diffs.items():
        runs.append(FakeRun(arm="sgd", seed=seed, matrix=matrix, epochs=epochs,
                            acc=base_acc(seed)))
        runs.append(FakeRun(arm="impon", seed=seed, matrix=matrix, epochs=epochs, bank_size=200,
                            acc=lambda e, s=seed, d=d: base_acc(s)(e) + (d if e > 0 else 0.0)))
    for seed in extra_impon_seeds:
        runs.append(FakeRun(arm="impon", seed=seed, matrix=matrix, epochs=epochs, bank_size=200,
                            acc=lambda e: 0.99))
    return runs


# ------------------------------------------------------------------ the statistics


def test_paired_t_interval_of_three_known_differences():
    mean, lo, hi = paired_t_interval([0.02, 0.03, 0.04])
    half = T_975_DOF2 * 0.01 / math.sqrt(3)  # 0.0248
    assert mean == pytest.approx(0.03)
    assert (lo, hi) == (pytest.approx(0.03 - half), pytest.approx(0.03 + half))
    s = paired_stats([0.02, 0.03, 0.04])
    assert s.n == 3 and s.n_agree == 3 and s.excludes_zero
    s = paired_stats([0.01, 0.02, 0.03])  # same spread, mean 0.02 < half width: spans 0
    assert s.n_agree == 3 and s.t_lo < 0 < s.t_hi and not s.excludes_zero
    # one seed against the others: mean 0.0133 > 0, two of three agree, CI spans 0
    s = paired_stats([0.03, 0.03, -0.02])
    assert s.mean == pytest.approx(0.04 / 3) and s.n_agree == 2 and not s.excludes_zero
    assert sign_agreement([0.0, 0.0]) == 0 and sign_agreement([-1.0, -2.0, 0.5]) == 2


def test_bootstrap_interval_is_reproducible_contains_the_mean_and_depends_on_its_seed():
    d = [0.012, -0.004, 0.03, 0.021, 0.008]
    first, again = bootstrap_interval(d), bootstrap_interval(d)
    assert first == again
    assert first[0] < np.mean(d) < first[1]
    assert min(d) <= first[0] and first[1] <= max(d)  # percentile: inside the data range
    assert bootstrap_interval(d, seed=1) != first
    assert all(math.isnan(x) for x in bootstrap_interval([0.1]))


def test_paired_table_pairs_by_seed_and_reports_unpaired_seeds(tmp_path):
    write_matrix(tmp_path / "p", paired_runs("p", DIFFS, extra_impon_seeds=(7,)))
    res = load_matrix(tmp_path / "p")
    table = paired_table(res, [("impon", "sgd")])
    assert list(table["checkpoint"]) == ["epoch 1", "epoch 5", "final"]
    half = T_975_DOF2 * 0.01 / math.sqrt(3)
    for _, row in table.iterrows():
        assert row["n"] == 3 and row["n_agree"] == 3 and row["excludes_zero"]
        assert row["mean"] == pytest.approx(0.03, abs=1e-6)
        assert row["t_lo"] == pytest.approx(0.03 - half, abs=1e-6)
        assert row["t_hi"] == pytest.approx(0.03 + half, abs=1e-6)
        assert row["boot_lo"] <= 0.03 <= row["boot_hi"]
        assert row["unpaired"] == "seed 7 of impon (no sgd run)"
    assert table.loc[table["checkpoint"] == "final", "epoch"].item() == "5"


def test_pairs_follow_the_matrix_yaml_and_cli_reference(tmp_path):
    root = tmp_path / "p"
    runs = paired_runs("p", DIFFS) + [FakeRun(arm="sgd_lr1e-3", seed=s, matrix="p",
                                              sampler="uniform") for s in DIFFS]
    write_matrix(root, runs)
    res = load_matrix(root)
    # no matrix file: every arm against sgd
    assert comparisons_for(res).pairs == [("sgd_lr1e-3", "sgd"), ("impon", "sgd")]
    (root / "matrix.yaml").write_text(yaml.safe_dump({
        "name": "p", "reference": "sgd", "comparisons": {"impon": ["sgd", "sgd_lr1e-3"]},
        "grid": {"arm": [{"name": "sgd"}, {"name": "sgd_lr1e-3"}, {"name": "impon"},
                         {"name": "loss_oracle"}]}}))
    comps = comparisons_for(res)
    assert comps.pairs == [("sgd_lr1e-3", "sgd"), ("impon", "sgd"), ("impon", "sgd_lr1e-3")]
    assert any("loss_oracle vs sgd" in n for n in comps.notes)  # no runs: said, not hidden
    assert comparisons_for(res, reference="sgd_lr1e-3").pairs == [
        ("sgd", "sgd_lr1e-3"), ("impon", "sgd_lr1e-3")]


# ------------------------------------------------------------- paired figure / report


def test_paired_figure_three_seeds_draws_seed_lines_and_zero_line(tmp_path):
    write_matrix(tmp_path / "p", paired_runs("p", DIFFS))
    res = load_matrix(tmp_path / "p")
    fig = paired_difference_vs_epoch(res, [("impon", "sgd")])
    (ax,) = [a for a in fig.axes if a.get_visible()]
    mean = [ln for ln in ax.lines if ln.get_label() == "impon"][0]
    np.testing.assert_allclose(mean.get_ydata(), [0.0] + [3.0] * 5, atol=1e-3)  # pp
    seeds = {ln.get_gid(): ln for ln in ax.lines if str(ln.get_gid()).startswith("seed:")}
    assert set(seeds) == {"seed:impon:0", "seed:impon:1", "seed:impon:2"}
    np.testing.assert_allclose(seeds["seed:impon:2"].get_ydata()[1:], 4.0, atol=1e-3)
    zero = [ln for ln in ax.lines if ln.get_gid() == "zero"]
    assert zero and np.allclose(zero[0].get_ydata(), 0.0)
    assert not [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert "thin lines: the individual seeds" in figure_caption(fig)


def test_paired_figure_more_seeds_draws_a_band(tmp_path):
    diffs = {0: 0.01, 1: 0.02, 2: 0.03, 3: 0.02}
    write_matrix(tmp_path / "p", paired_runs("p", diffs))
    fig = paired_difference_vs_epoch(load_matrix(tmp_path / "p"), [("impon", "sgd")])
    (ax,) = [a for a in fig.axes if a.get_visible()]
    assert [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert not [ln for ln in ax.lines if str(ln.get_gid()).startswith("seed:")]


def test_report_rows_and_caption_of_the_paired_comparison(tmp_path):
    write_matrix(tmp_path / "p", paired_runs("p", DIFFS, extra_impon_seeds=(7,)))
    res = load_matrix(tmp_path / "p")
    comparisons = comparisons_for(res)
    outputs = FigureOutputs(comparisons=comparisons,
                            paired=paired_table(res, comparisons.pairs))
    report = render_report(res, outputs)
    half = 100 * T_975_DOF2 * 0.01 / math.sqrt(3)
    assert f"| impon | sgd | epoch 1 | 3 | +3.00 ✱ | [{3 - half:+.2f}, {3 + half:+.2f}] |" \
        in report
    assert "| impon | sgd | final (5) | 3 | +3.00 ✱ |" in report
    assert "seed 7 of impon (no sgd run)" in report
    fig = paired_difference_vs_epoch(res, comparisons.pairs)
    assert "seed 7 of impon (no sgd run)" in figure_caption(fig)


def test_cli_reference_must_be_an_arm(tmp_path, capsys):
    write_matrix(tmp_path / "p", paired_runs("p", DIFFS))
    assert main(["p", "--results", str(tmp_path), "--reference", "sdg"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'sdg' is not an arm" in err
    assert not (tmp_path / "p" / "summary.csv").exists()  # nothing written


# --------------------------------------------------------------------- diagnostics


def _add_columns(folder: Path, columns: dict[str, list[float]]) -> None:
    ep = pd.read_csv(folder / "epochs.csv")
    for name, values in columns.items():
        ep[name] = [math.nan] + values
    ep.to_csv(folder / "epochs.csv", index=False)


def test_impon_diagnostics_figure_with_chance_line(tmp_path):
    folders = write_matrix(tmp_path / "d", paired_runs("d", DIFFS, epochs=3))
    for folder in folders:
        if "-impon-" in folder.name:
            _add_columns(folder, {"impon_spearman": [0.2, 0.3, 0.4],
                                  "impon_precision_at_b": [0.7, 0.72, 0.74]})
    res = load_matrix(tmp_path / "d")
    fig = diagnostics_figure(res, "diag_impon")
    rho_ax, prec_ax = [a for a in fig.axes if a.get_visible()]
    mean = [ln for ln in prec_ax.lines if ln.get_label() == "impon"][0]
    np.testing.assert_allclose(mean.get_xdata(), [1, 2, 3])
    np.testing.assert_allclose(mean.get_ydata(), [0.7, 0.72, 0.74])
    chance = [ln for ln in prec_ax.lines if ln.get_gid() == "reference"]
    assert len(chance) == 1 and np.allclose(chance[0].get_ydata(), 128 / 200)
    assert [ln for ln in rho_ax.lines if ln.get_gid() == "reference"][0].get_ydata()[0] == 0
    assert "chance b/N" in figure_caption(fig)
    assert diagnostics_figure(res, "diag_psgd") is None  # no p/c-SGD run


def test_selective_backprop_and_psgd_diagnostics(tmp_path):
    runs = [FakeRun(arm="selective_backprop", seed=0, matrix="d", epochs=2,
                    extra_spec={"sampler": {"beta": 3}}),
            FakeRun(arm="p_sgd", seed=0, matrix="d", epochs=2)]
    sb, psgd = write_matrix(tmp_path / "d", runs)
    _add_columns(sb, {"sb_keep_rate": [1.0, 0.26]})
    _add_columns(psgd, {"psgd_ess_frac": [1.0, 0.8], "psgd_ess": [512.0, 409.6]})
    res = load_matrix(tmp_path / "d")
    (ax,) = [a for a in diagnostics_figure(res, "diag_selective_backprop").axes
             if a.get_visible()]
    assert np.allclose([ln for ln in ax.lines if ln.get_gid() == "reference"][0].get_ydata(),
                       0.25)
    (ax,) = [a for a in diagnostics_figure(res, "diag_psgd").axes if a.get_visible()]
    np.testing.assert_allclose([ln for ln in ax.lines if ln.get_label() == "p_sgd"][0]
                               .get_ydata(), [1.0, 0.8])


# --------------------------------------------------------------------------- colours


def test_delta_e_matches_published_ciede2000_pairs():
    # the sRGB -> L*a*b* path: pure red is (53.24, 80.09, 67.20) (D65)
    lab = srgb_to_lab("#FF0000")
    assert lab == pytest.approx((53.24, 80.09, 67.20), abs=0.02)
    assert delta_e("#FF0000", "#FF0000") == 0
    assert delta_e("#000000", "#FFFFFF") == pytest.approx(100.0, abs=0.01)
    # the CIEDE2000 formula on pairs of Sharma, Wu & Dalal (2005), Table 1 (given in Lab)
    from plots import style
    for lab1, lab2, expected in [((50.0, 2.6772, -79.7751), (50.0, 0.0, -82.7485), 2.0425),
                                 ((50.0, 2.5, 0.0), (73.0, 25.0, -18.0), 27.1492),
                                 ((50.0, 2.49, -0.001), (50.0, -2.49, 0.0009), 7.1792),
                                 ((90.8027, -2.0831, 1.441), (91.1528, -1.6435, 0.0447), 1.4441)]:
        assert style.ciede2000(lab1, lab2) == pytest.approx(expected, abs=1e-4)


def test_committed_matrices_arms_have_distinct_colours():
    for path in sorted((REPO / "benchmarks" / "matrices").glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        arms = [a["name"] for a in doc["grid"].get("arm", [])]
        samplers = {a["name"]: (a.get("sampler") or doc["defaults"].get("sampler") or {})
                    .get("name") for a in doc["grid"].get("arm", [])}
        assert close_pairs(arm_palette(arms, samplers, STYLES), aliases=STYLES.aliases) == [], \
            path.name
    # and every fixed colour against every other, as any future matrix may mix them
    assert close_pairs(ARM_COLOURS, aliases=STYLES.aliases) == []
    assert frozenset({"sgd", "uniform"}) in STYLES.aliases  # one arm, two names: one colour


def test_new_method_arms_and_controls_have_their_own_family_colours():
    new = ["unif_sgd", "infobatch", "rho_loss", "upper_bound_is", "online_batch_selection",
           "selective_backprop_beta0"]
    assert all(a in ARM_COLOURS for a in new)
    assert ARM_COLOURS["loss_oracle"] == "#000000"
    grey = srgb_to_lab(ARM_COLOURS["sgd_lr1e-3"])
    assert abs(grey[1]) < 1 and abs(grey[2]) < 1  # uniform at another lr: a grey


def test_close_colours_are_caught_and_unknown_arms_get_a_distinct_family_shade():
    assert close_pairs({"a": "#D55E00", "b": "#D65F01"})[0][:2] == ("a", "b")
    assert close_pairs({"a": "#D55E00", "b": "#0173B2"}) == []
    with pytest.warns(UserWarning, match="near-identical colours"):
        _warn_on_forced_clash()
    palette = arm_palette(["impon", "impon_bank50", "sgd", "sgd_lr0.01"],
                          {"impon_bank50": "impon", "sgd_lr0.01": "uniform"}, STYLES)
    assert palette["impon"] == ARM_COLOURS["impon"]
    assert delta_e(palette["impon_bank50"], palette["impon"]) >= MIN_DELTA_E
    lab = srgb_to_lab(palette["impon_bank50"])
    assert lab[1] > 10 and lab[2] > 10  # still a red-orange: the IMPON family
    grey = srgb_to_lab(palette["sgd_lr0.01"])
    assert abs(grey[1]) < 1 and abs(grey[2]) < 1
    assert close_pairs(palette) == []


def _warn_on_forced_clash() -> None:
    """Two fixed colours too close for one figure must warn, not pass silently."""
    arm_palette(["clash_a", "clash_b"],
                table=ArmTable(arms={"clash_a": "#D55E00", "clash_b": "#D65F01"}))


def test_figure_lines_use_the_palette(tmp_path):
    write_matrix(tmp_path / "c", [FakeRun(arm="sgd_lr1e-3", sampler="uniform", matrix="c"),
                                  FakeRun(arm="loss_oracle", bank_size=200, matrix="c")])
    ax = [a for a in accuracy_vs_epoch(load_matrix(tmp_path / "c")).axes if a.get_visible()][0]
    colours = {ln.get_label(): to_hex(ln.get_color()) for ln in ax.lines
               if not ln.get_label().startswith("_")}
    assert colours == {"sgd_lr1e-3": "#8c8c8c", "loss_oracle": "#000000"}


# ------------------------------------------------------------------- setup / commits


def _set_git(folder: Path, commit: str, dirty: bool) -> None:
    info = json.loads((folder / "run.json").read_text())
    info["git"] = {"commit": commit, "dirty": dirty}
    info["versions"] = {"torch": "2.9.0", "cuda": "12.8"}
    info["device"] = "NVIDIA H100"
    (folder / "run.json").write_text(json.dumps(info))


def test_setup_table_lists_what_each_arm_ran(tmp_path):
    runs = [FakeRun(arm="sgd", seed=s, matrix="s") for s in (0, 1)]
    runs += [FakeRun(arm="impon", seed=s, matrix="s", bank_size=200,
                     extra_spec={"optimizer": {"lr": 1e-3}}) for s in (0, 1)]
    for folder in write_matrix(tmp_path / "s", runs):
        _set_git(folder, "a" * 40, False)
    res = load_matrix(tmp_path / "s")
    prov = provenance(res)
    arms = arm_table(prov).set_index("arm")
    assert arms.loc["sgd", "lr"] == "0.1" and arms.loc["impon", "lr"] == "0.001"
    assert arms.loc["sgd", "optimizer"] == "sgd (momentum 0.9, nesterov no, weight decay 0.0005)"
    assert arms.loc["impon", "schedule"] == "linear per step to 1e-6"
    assert arms.loc["impon", "sampler"].startswith("impon: bank_size 200, lr 1e-6")
    common = dict(common_table(res, prov))
    assert common["model"] == "resnet18, width 0.25"
    assert common["epochs"] == "5" and common["batch size"] == "128"
    assert common["seeds"] == "2 (0, 1)"
    assert common["git commit"] == "`aaaaaaaaaa`"
    assert common["torch"] == "2.9.0" and common["CUDA (build)"] == "12.8"
    assert common["devices"] == "NVIDIA H100"
    assert "cifar10-5k [subset] (train 512 / test 256)" in common["datasets"]
    assert not prov.mixed and prov.caption_note() == ""
    report = render_report(res)
    assert report.index("## Setup") < report.index("**Test accuracy (%)**")
    assert "| impon | sgd (momentum 0.9, nesterov no, weight decay 0.0005) | 0.001 |" in report
    assert "different commits" not in report


def test_runs_from_different_commits_are_flagged_in_report_and_captions(tmp_path):
    folders = write_matrix(tmp_path / "m", [FakeRun(arm="sgd", seed=s, matrix="m")
                                            for s in (0, 1, 2)])
    for i, folder in enumerate(folders):
        _set_git(folder, ("b" if i == 2 else "a") * 40, i == 1)
    res = load_matrix(tmp_path / "m")
    prov = provenance(res)
    assert prov.mixed and prov.dirty
    report = render_report(res)
    assert "**Warning: runs from different commits**" in report
    assert "**MIXED**" in report and "`bbbbbbbbbb`" in report and "(dirty)" in report
    for fig in (accuracy_vs_epoch(res), loss_vs_iteration(res, ema_span=5)):
        assert "2 different git commits" in figure_caption(fig)


# ------------------------------------------------------------------ matrix keys


def _matrix_with(tmp_path: Path, **keys: object) -> Path:
    doc = yaml.safe_load((REPO / "benchmarks" / "matrices" / "cpu_mini.yaml").read_text())
    for key in ("reference", "comparisons"):
        doc.pop(key, None)
    doc.update(keys)
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_reference_and_comparisons_do_not_change_run_ids(tmp_path):
    from benchmarks import matrix
    plain = matrix.load(str(_matrix_with(tmp_path)))
    keyed = matrix.load(str(REPO / "benchmarks" / "matrices" / "cpu_mini.yaml"))
    assert [r.run_id for r in plain.runs] == [r.run_id for r in keyed.runs]
    assert plain.comparisons == ()
    assert ("impon", "sgd") in keyed.comparisons and ("impon", "sgd_lr1e-3") in keyed.comparisons
    assert ("sgd_lr1e-3", "sgd") in keyed.comparisons
    assert not any(a == r for a, r in keyed.comparisons)


@pytest.mark.parametrize("keys,message", [
    ({"reference": "sdg"}, "reference: 'sdg' is not an arm of this matrix (did you mean sgd?)"),
    ({"reference": "sgd", "comparisons": {"impon": "nope"}},
     "comparisons.impon: 'nope' is not an arm"),
    ({"comparisons": {"imp": "sgd"}}, "comparisons.imp: 'imp' is not an arm"),
    ({"comparisons": {"impon": "impon"}}, "comparisons.impon: an arm cannot be compared with itself"),
    ({"comparisons": ["impon"]}, "comparisons: expected a mapping"),
])
def test_bad_reference_is_one_line_naming_the_problem(tmp_path, keys, message):
    from benchmarks import matrix
    from benchmarks.errors import UserError
    with pytest.raises(UserError) as info:
        matrix.load(str(_matrix_with(tmp_path, **keys)))
    assert message in str(info.value) and "\n" not in str(info.value)
