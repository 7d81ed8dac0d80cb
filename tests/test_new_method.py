"""A new method is one file: the README's example, defined here and nowhere else, goes
through validation, ``--dry-run``, a run, the common sampler tests, the sync harness,
``make perf``'s set-up and the plots with no other edit (its declared colour, diagnostic
figure and note reach the figures and the report through run.json); and a method without
a cost model is refused by ``--dry-run`` instead of being estimated as free."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

import samplers
from samplers import registry

REPO = Path(__file__).resolve().parent.parent
HEADING = "## Add a method in one file"


def readme_method_code() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text[text.index(HEADING):]
    return re.search(r"^```python\n(.*?)^```", section, re.S | re.M).group(1)


@pytest.fixture
def new_method(monkeypatch):
    """The README's method registered in a private copy of the registry (undone after)."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    ns: dict = {"__name__": "samplers.loss_proportional"}
    exec(compile(readme_method_code(), "README.md", "exec"), ns)
    assert "loss_proportional" in samplers.available()
    return ns["LossProportional"]


def _matrix(path: Path, defaults: dict) -> Path:
    path.write_text(yaml.safe_dump({
        "name": "new_method", "reference": "sgd", "defaults": defaults,
        "grid": {"seed": [0, 1], "arm": [
            {"name": "sgd", "sampler": {"name": "uniform"}},
            {"name": "loss_proportional", "sampler": {"name": "loss_proportional", "initial": 2.0}}]}}))
    return path


def test_the_readme_method_runs_through_the_whole_suite(new_method, monkeypatch, tmp_path, tiny_root,
                                                       tiny_defaults, capsys):
    from conftest import run_cli
    from benchmarks.config import RunSpec
    from benchmarks.errors import UserError

    # validation from the class signature
    RunSpec.from_dict({**tiny_defaults, "sampler": {"name": "loss_proportional", "initial": 2.0}})
    with pytest.raises(UserError, match="did you mean initial"):
        RunSpec.from_dict({**tiny_defaults, "sampler": {"name": "loss_proportional", "inital": 2.0}})

    m = _matrix(tmp_path / "new_method.yaml", tiny_defaults)
    results = tmp_path / "results"
    rc, out, err = run_cli(capsys, m, tiny_root, results, "--dry-run")
    assert rc == 0 and "loss_proportional" in out and "estimated cost" in out, err
    rc, out, err = run_cli(capsys, m, tiny_root, results)
    assert rc == 0, err
    done = [json.loads(p.read_text())["status"] for p in (results / "new_method").glob("*/run.json")]
    assert done == ["done"] * 4

    # the common sampler tests and the sync harness pick it up from its traits
    import test_samplers_common as common
    import test_sync
    configs = common.sampler_configs()
    assert configs["loss_proportional"] == ("loss_proportional", {})
    monkeypatch.setattr(common, "CONFIGS", configs)
    common.test_same_seed_same_batches("loss_proportional")
    common.test_state_dict_round_trip_mid_epoch_continues_identically("loss_proportional")
    for placement in ("device", "host"):   # the images on the device, and host-resident
        test_sync.test_train_step_and_begin_epoch_never_sync("loss_proportional", placement,
                                                             tmp_path / f"sync-{placement}")

    # make perf times every registered sampler
    from benchmarks.perf import setup
    assert setup.sampler_table()["loss_proportional"] == {"name": "loss_proportional"}

    # plots and report: what the class declares reaches them through run.json
    from matplotlib.colors import to_hex
    from plots import make_plots
    from plots.figures import figure_caption
    recorded = json.loads(next((results / "new_method").glob("*loss_proportional*/run.json"))
                          .read_text())["plot_traits"]
    assert recorded == new_method.plot.to_dict()
    res, outputs = make_plots(results / "new_method")
    report = (results / "new_method" / "report.md").read_text()
    assert "loss_proportional" in report and "| loss_proportional | sgd |" in report
    assert int(res.runs["included"].sum()) == 4
    fig2_lines = {ln.get_label(): ln for ax in outputs.figures["fig2"].axes for ln in ax.lines}
    assert to_hex(fig2_lines["loss_proportional"].get_color()) == "#7f7f00"   # its colour
    diag = outputs.figures["diag_loss_proportional"]                           # its figure
    assert (results / "new_method" / "figures" / "diagnostics_loss_proportional.png").exists()
    assert "1 = uniform sampling" in figure_caption(diag)
    chance = [ln for ax in diag.axes for ln in ax.lines if ln.get_gid() == "reference"]
    assert chance and all(ln.get_ydata()[0] == 1.0 for ln in chance)          # its chance line
    assert "### Diagnostics — loss-proportional effective sample size" in report
    assert "- **loss_proportional** (loss-proportional): draws with replacement" in report


def test_a_method_without_a_cost_model_is_refused_by_dry_run(new_method, monkeypatch, tmp_path,
                                                             tiny_root, tiny_defaults, capsys):
    from conftest import run_cli
    monkeypatch.setattr(new_method, "cost", samplers.Sampler.cost)
    m = _matrix(tmp_path / "new_method.yaml", tiny_defaults)
    rc, out, err = run_cli(capsys, m, tiny_root, tmp_path / "results", "--dry-run")
    assert rc == 2 and "declares no cost model" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
