"""``benchmarks.perf`` (``make perf``) end to end on a tiny CPU config, its estimate helpers,
and the "no device->host sync per training step" check on CUDA (skipped without a GPU)."""
from __future__ import annotations

import json
import math
import random
import re
from pathlib import Path

import pytest
import torch

from benchmarks import perf
from benchmarks.errors import UserError
from benchmarks.train import Trainer
from data_fixtures import make_prepared

# One intra-op thread: on CPU cores shared with other jobs, two OpenMP threads on this tiny
# model stall at barriers (tens of times slower); the code paths are the same.
TINY = ["--device", "cpu", "--width", "0.0625", "--n-train", "256", "--steps", "2",
        "--rounds", "1", "--warmup", "1", "--threads", "1"]


def _table_rows(out: str) -> dict[str, list[str]]:
    """Markdown table rows of the report, keyed by the first cell."""
    rows = {}
    for line in out.splitlines():
        if line.startswith("| ") and not line.startswith("| sampler"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows[cells[0]] = cells[1:]
    return rows


def _num(cell: str) -> float:
    """First number of a table cell ('1,234.5' or '1.012 [0.99, 1.03]')."""
    m = re.match(r"[-+]?[\d,]*\.?\d+", cell)
    assert m, cell
    return float(m.group(0).replace(",", ""))


def test_cpu_tiny_run_prints_table_and_writes_json(tmp_path, capsys):
    out_json = tmp_path / "perf.json"
    threads = torch.get_num_threads()
    res = perf.main([*TINY, "--samplers", "uniform,impon", "--workers", "0",
                     "--json", str(out_json)])
    out = capsys.readouterr().out
    assert out.startswith("device: cpu")
    assert "synthetic (256 random uint8" in out and "torch " + torch.__version__ in out
    rows = _table_rows(out)
    assert list(rows) == ["uniform", "impon", "uniform (host-resident data)", "model", "conventional"]
    for label, cells in rows.items():
        images_s, step_ms, ratio, fwd = (_num(c) for c in cells[:4])
        for v in (images_s, step_ms, ratio, fwd):
            assert math.isfinite(v) and v > 0, (label, cells)
        assert images_s == pytest.approx(128 / (step_ms / 1e3), rel=0.01)
        assert fwd == 128.0  # none of these scores extra examples
    assert _num(rows["uniform"][2]) == 1.0
    assert "ours (uniform) / conventional images/s = " in out
    assert "target impon step <= 1.05x uniform" in out
    assert re.search(r"host-resident data .*: step time [\d.]+x device-resident", out), out
    eff = re.search(r"loop efficiency \(pure model step.*?\): uniform ([\d.]+) \((met|NOT met) "
                    r">= 0.95\), impon ([\d.]+)", out)
    assert eff, out
    assert 0 < float(eff.group(1)) and 0 < float(eff.group(3))

    data = json.loads(out_json.read_text())
    assert {"device", "torch", "config", "dataset", "memory", "entries", "samplers",
            "targets", "conventional"} <= set(data)
    assert set(data["samplers"]) == {"uniform", "impon"}
    assert set(data["entries"]) == {"uniform", "impon", "uniform (host-resident data)", "model",
                                    "conventional"}
    assert set(data["loop_efficiency"]) == {"uniform", "impon", "uniform (host-resident data)"}
    host = data["host_data"]
    assert host["ratio_to_device"] == data["entries"]["uniform (host-resident data)"]["ratio_to_uniform"] > 0
    keys = {"images_per_s", "step_ms", "ratio_to_uniform", "ratio_rounds", "step_ms_rounds",
            "start_epoch_ms", "forwards_per_step", "peak_memory_mib", "resident_mib"}
    for row in data["entries"].values():
        assert keys <= set(row)
        assert all(math.isfinite(row[k]) and row[k] > 0
                   for k in ("images_per_s", "step_ms", "ratio_to_uniform", "peak_memory_mib"))
    ratio = data["conventional"]["ours_over_conventional"]
    assert math.isfinite(ratio) and ratio > 0
    assert data["config"]["threads"] == 1 and torch.get_num_threads() == threads
    assert data["config"]["width"] == 0.0625 and data["dataset"]["n_train"] == 256
    assert data["dataset"]["synthetic"] is True and not data["cuda"] and "estimates" not in data
    assert data == json.loads(json.dumps(res))


def test_selection_forwards_are_counted(capsys):
    res = perf.main([*TINY, "--samplers", "loss_oracle", "--no-conventional", "--no-host-data"])
    out = capsys.readouterr().out
    assert set(res["entries"]) == {"uniform", "loss_oracle", "model"}  # uniform always timed
    assert res["entries"]["loss_oracle"]["forwards_per_step"] == 128 + 200  # batch + bank
    # a sampler that forwards more than it trains gets its cost line (no per-name table)
    assert set(res["selection_forwards"]) == {"loss_oracle"} and "host_data" not in res
    assert "loss_oracle selection forwards: step time" in out and "(2.56 per trained example)" in out


def test_conventional_with_a_worker_process(capsys):
    """Exercises the drain / settle / shutdown path of DataLoader workers."""
    res = perf.main([*TINY, "--samplers", "uniform", "--workers", "1"])
    capsys.readouterr()
    assert res["conventional"]["workers"] == 1
    assert res["conventional"]["ours_over_conventional"] > 0


def test_bad_arguments_are_one_line_errors(capsys):
    with pytest.raises(UserError, match="unknown nope"):
        perf.main(["--samplers", "uniform,nope", "--device", "cpu"])
    assert perf.cli(["--steps", "0", "--device", "cpu"]) == 2
    assert "--steps: must be >= 1" in capsys.readouterr().err
    with pytest.raises(UserError, match="go together"):
        perf.main(["--dataset", "cifar10", "--device", "cpu"])


def test_sampler_table_follows_the_registry():
    """Every registered sampler is a row (new ones too), with the construction hook's
    variants; banked rows are found from the registry."""
    import samplers

    assert set(samplers.available()) <= set(perf.SAMPLERS)
    assert perf.SAMPLERS["impon_low"] == {"name": "impon", "select": "lowest"}
    assert list(perf.SAMPLERS)[0] == "uniform"
    assert set(perf.BANKED) == {"impon", "impon_low", "loss_oracle"}


def test_defaults_depend_on_the_device():
    cpu = perf._parse(["--device", "cpu"])
    assert (cpu.width, cpu.n_train, cpu.steps, cpu.rounds) == (0.25, 4096, 6, 3)
    full = perf._parse(["--device", "cpu", "--full"])
    assert (full.width, full.n_train, full.steps) == (1.0, 50_000, 20)
    assert perf._parse(["--device", "cpu", "--width", "0.5"]).width == 0.5
    assert perf._parse(["--device", "cpu", "--data-root", "d", "--dataset", "x"]).n_train is None


def test_make_perf_defaults_run_end_to_end_on_cpu(capsys):
    """`make perf` at its CPU defaults, shrunk only in steps/rounds/size to stay a unit test
    (512 images: RHO-LOSS needs a big batch > b from its non-holdout half):
    every sampler of the registry, the model entry, progress lines and the efficiency line."""
    res = perf.main(["--device", "cpu", "--width", "0.0625", "--n-train", "512", "--steps", "1",
                     "--rounds", "1", "--warmup", "1", "--threads", "1", "--no-conventional"])
    captured = capsys.readouterr()
    assert set(res["samplers"]) == set(perf.SAMPLERS)
    assert "[perf] round 1/1" in captured.err and "built + warmed up" in captured.err
    assert "loop efficiency" in captured.out


def test_visiting_order_leads_with_each_entry_in_turn():
    entries = [perf.Entry(f"e{i}", 1, 1) for i in range(5)]
    rng = random.Random(0)
    orders = [perf.visiting_order(entries, r, rng) for r in range(10)]
    assert all(sorted(e.label for e in o) == [e.label for e in entries] for o in orders)
    assert [o[0].label for o in orders] == [f"e{r % 5}" for r in range(10)]


def test_estimates_scale_with_measured_step_times():
    step_s = {"uniform": 0.02, "impon": 0.021, "impon_low": 0.021, "p_sgd": 0.02,
              "c_sgd": 0.02, "selective_backprop": 0.05, "loss_oracle": 0.03}
    ep = perf.epoch_estimates(step_s, 128)
    assert ep["uniform"] == pytest.approx(390 * 0.02 + 10000 / 128 / 3 * 0.02)
    m = perf.matrix_estimate(step_s, 128)
    assert m["matrix"] == "paper" and m["runs"] == 63 and m["epochs"] == [30]
    assert m["runs_estimated_from_uniform"] == 0
    doubled = perf.matrix_estimate({k: 2 * v for k, v in step_s.items()}, 128)
    assert doubled["seconds"] == pytest.approx(2 * m["seconds"])
    partial = perf.matrix_estimate({"uniform": 0.02}, 128)  # other arms: uniform x factor
    assert partial["runs_estimated_from_uniform"] == 45 and partial["seconds"] > 0


NO_SYNC_SAMPLERS = [s for s in perf.SAMPLERS if s != "selective_backprop"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("placement", ["device", "host"])
@pytest.mark.parametrize("amp", ["off", "bf16"])
@pytest.mark.parametrize("label", NO_SYNC_SAMPLERS)
def test_train_step_never_syncs_on_cuda(label: str, amp: str, placement: str, tmp_path: Path):
    """Nothing in the training step forces a device->host sync, with the images on the
    device or host-resident (``--data-placement host``, read by the device in place).

    Selective Backprop is exempt (documented in samplers.selective_backprop: how many
    candidate chunks it scores depends on its keep decisions, one small sync per chunk).
    Steps run past the end of an epoch's draw, so uniform's new permutation and
    p-/c-SGD's redraw inside ``next_batch`` are covered too.
    """
    make_prepared(tmp_path, "tiny", n_train=256, n_test=64, num_classes=10)
    args = perf._parse(["--device", "cuda", "--width", "0.0625", "--batch-size", "64",
                        "--bank-size", "128", "--amp", amp])
    spec = perf.make_spec(label, args, "tiny", None)
    trainer = Trainer(spec, tmp_path / "run", data_root=tmp_path, download=False,
                      device=torch.device("cuda"), data_placement=placement)
    assert trainer.data.placement == placement
    trainer.begin_epoch(1)
    trainer.train_step(0.1)  # first-call allocations (momentum buffers) outside the check
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(2 * trainer.steps_per_epoch):
            loss = trainer.train_step(0.1)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert math.isfinite(float(loss))
