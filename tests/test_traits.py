"""Plot and perf traits: declared by the sampler classes, recorded by the runner, read by the
plots (issue "One method, one file"): the backfill of old run.json files, neutral defaults
with a one-line warning for runs without traits, the formula evaluator of chance lines and
notes, the registry of outputs, and ``make perf``'s rows and targets from the traits."""
from __future__ import annotations

import json
import math
import subprocess
import sys
import warnings
from dataclasses import replace

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402

import samplers  # noqa: E402
from benchmarks.cli import main as cli_main  # noqa: E402
from benchmarks.traits import backfill, catalogue  # noqa: E402
from conftest import REPO  # noqa: E402
from plots import load_matrix, make_plots  # noqa: E402
from plots import outputs as outputs_mod  # noqa: E402
from plots.traits import MethodTraits, evaluate, render_note  # noqa: E402
from results_fixtures import FakeRun, write_matrix  # noqa: E402


def _old_matrix(root, **kw):
    """Runs as recorded before the runner wrote plot traits."""
    return write_matrix(root, [FakeRun(arm=arm, seed=seed, matrix=root.name, epochs=3,
                                       plot_traits=False, **kw)
                               for arm in ("sgd", "impon") for seed in (0, 1)])


def test_every_registered_sampler_declares_json_ready_plot_traits():
    cat = catalogue()
    assert set(cat) == set(samplers.available())
    assert json.loads(json.dumps(cat)) == cat
    for name, traits in cat.items():
        assert traits["colour"], name                    # a family colour each
        for d in traits["diagnostics"]:                  # chance lines are valid formulas
            for c in d["columns"]:
                if c["chance"] is not None:
                    evaluate(c["chance"], {})


def test_backfill_adds_only_the_traits_key_atomically_and_once(tmp_path, capsys):
    folders = _old_matrix(tmp_path / "m")
    unknown = write_matrix(tmp_path / "m", [FakeRun(arm="gone", sampler="gone_method", matrix="m",
                                                    plot_traits=False)])[0]
    before = {f: (f / "run.json").read_text() for f in [*folders, unknown]}
    assert cli_main(["traits", "--backfill", str(tmp_path / "m")]) == 0
    assert "added to 4 run.json" in capsys.readouterr().out
    for f in folders:
        old, new = json.loads(before[f]), json.loads((f / "run.json").read_text())
        sampler = old["spec"]["sampler"]["name"]
        assert new == {**old, "plot_traits": samplers.get(sampler).plot.to_dict()}
        assert list(new)[:-1] == list(old)               # the key appended, nothing reordered
    assert (unknown / "run.json").read_text() == before[unknown]  # unregistered: untouched
    assert set(json.loads((tmp_path / "m" / "methods.json").read_text())) == set(samplers.available())
    again = {f: (f / "run.json").stat().st_mtime_ns for f in folders}
    assert backfill(tmp_path) == {"added": 0, "had": 4, "unknown": 1, "catalogues": 0}  # a root
    assert {f: (f / "run.json").stat().st_mtime_ns for f in folders} == again
    assert not list((tmp_path / "m").rglob("*.tmp"))


def test_backfill_refuses_a_folder_without_runs_in_one_line(tmp_path, capsys):
    assert cli_main(["traits", "--backfill", str(tmp_path / "nope")]) == 2
    (tmp_path / "empty").mkdir()
    assert cli_main(["traits", "--backfill", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("error: --backfill") for line in err)


def test_runs_without_traits_still_plot_with_a_one_line_warning(tmp_path):
    _old_matrix(tmp_path / "m")
    proc = subprocess.run([sys.executable, "-m", "plots", "m", "--results", str(tmp_path)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    warning = [ln for ln in proc.stderr.splitlines() if "plot traits" in ln]
    assert len(warning) == 1 and warning[0].startswith("warning: no plot traits recorded for "
                                                       "sampler(s) impon, uniform")
    assert "traits --backfill" in warning[0]
    report = (tmp_path / "m" / "report.md").read_text()
    assert "| impon |" in report and "Diagnostics" not in report  # neutral: no diagnostics
    # after the backfill the same runs get their methods' colours and diagnostics
    backfill(tmp_path / "m")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _, out = make_plots(tmp_path / "m")
    assert not [w for w in caught if "plot traits" in str(w.message)]
    assert "diag_impon" in out.skipped
    assert "### Diagnostics — IMPON loss predictor" in (tmp_path / "m" / "report.md").read_text()


def test_formulas_are_arithmetic_over_config_keys_only():
    spec = {"batch_size": 128, "sampler.bank_size": 200, "sampler.beta": 3}
    assert evaluate("batch_size / sampler.bank_size", spec) == 128 / 200
    assert evaluate("1 / (sampler.beta + 1)", spec) == 0.25
    assert evaluate("(n + 1) // 2", {"n": 7}) == 4 and evaluate("-2 ** 2", {}) == -4
    assert math.isnan(evaluate("batch_size / sampler.bank_size", {"batch_size": 128}))
    assert math.isnan(evaluate("1 / sampler.bank_size", {"sampler.bank_size": 0}))
    assert math.isnan(evaluate("sampler.select", {"sampler.select": "lowest"}))
    for bad in ("__import__('os').system('true')", "batch_size.__class__()", "[1][0]",
                "1 if 1 else 2", "f(1)"):
        with pytest.raises(ValueError, match="only numbers"):
            evaluate(bad, spec)


def test_note_parts_follow_what_is_known():
    parts = [{"text": "**{arm}** trains on "},
             {"text": "{half:,} of {n_train:,}", "needs": ["n_train"]},
             {"text": "half", "unless": ["n_train"]},
             {"text": " for {sampler.il_epochs} epochs, {extra:,.0f} extra"},
             {"text": ".", "unless": ["extra"]}, {"text": "!", "needs": ["extra"]}]
    values = {"half": "(n_train + 1) // 2"}
    text = render_note(parts, values, {"arm": "r", "n_train": 5001, "sampler.il_epochs": 3,
                                       "extra": 1234.4})
    assert text == "**r** trains on 2,501 of 5,001 for 3 epochs, 1,234 extra!"
    text = render_note(parts, values, {"arm": "r", "n_train": None, "extra": math.nan})
    assert text == "**r** trains on half for default epochs, nan extra."


def test_arm_styles_come_from_the_declared_arms_in_rank_order():
    styles = MethodTraits(catalogue()).arm_styles()
    assert list(styles.arms)[:3] == ["sgd", "uniform", "unif_sgd"]
    assert list(styles.arms)[-1] == "loss_oracle" and styles.arms["impon_low"] == "#CC78BC"
    assert styles.grey_samplers == {"uniform"} and "adam" in styles.grey_arms
    assert styles.families["rho_loss"] == samplers.get("rho_loss").plot.colour


def test_a_figure_added_to_the_registry_reaches_the_report_under_its_title(tmp_path, monkeypatch):
    write_matrix(tmp_path / "m", [FakeRun(arm="sgd", seed=s, matrix="m", epochs=2) for s in (0, 1)])
    fig2 = outputs_mod.CORE[0]
    extra = replace(fig2, name="fig2_again", title="Figure 2 again — a new figure",
                    stem="fig2_again")
    monkeypatch.setattr(outputs_mod, "CORE", (*outputs_mod.CORE, extra))
    _, out = make_plots(tmp_path / "m")
    report = (tmp_path / "m" / "report.md").read_text()
    assert "### Figure 2 again — a new figure" in report
    assert "![Figure 2 again — a new figure](figures/fig2_again.png)" in report
    assert (tmp_path / "m" / "figures" / "fig2_again.pdf").exists()
    stems = outputs_mod.stems(load_matrix(tmp_path / "m"))
    assert len(set(stems.values())) == len(stems) and stems["fig2_again"] == "fig2_again"


def test_perf_rows_and_targets_come_from_the_samplers(monkeypatch):
    from benchmarks.perf import report, setup
    assert set(report.TARGETED) == {"impon", "impon_low", "p_sgd", "c_sgd"}
    assert set(report.EFFICIENCY_TARGETED) == {"uniform", "impon", "p_sgd", "c_sgd"}
    rows = setup.perf_rows(4096, 128)
    assert rows["rho_loss"][1].params == {"il_epochs": 1, "n_big": 1280}
    assert setup.perf_rows(300, 128)["rho_loss"][1].params["n_big"] == 150

    def spec(sampler):
        return {"name": "m", "sampler": sampler}
    assert report.arm_label(spec({"name": "impon", "select": "lowest"})) == "impon_low"
    assert report.arm_label(spec({"name": "impon", "select": "highest"})) == "impon"
    assert report.arm_label(spec({"name": "rho_loss", "il_epochs": 100})) == "rho_loss"
    # a sampler declaring a target is held to it, with no edit of the perf code
    monkeypatch.setattr(samplers.registry, "_REGISTRY", dict(samplers.registry._REGISTRY))

    @samplers.register("fast_pick")
    class FastPick(samplers.get("uniform")):
        @classmethod
        def perf_rows(cls, n_train=None, batch_size=None):
            return {"fast_pick": samplers.PerfRow(step_target=True)}

    assert "fast_pick" in setup.targeted("step_target")
    assert setup.sampler_table()["fast_pick"] == {"name": "fast_pick"}
