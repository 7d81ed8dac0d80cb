"""Host-resident data (``--data-placement``, benchmarks/placement.py): the decision, the
image store, and whole runs that train identically on both placements.

On a CPU both placements are host memory, so what these tests prove is the wiring: the
host path's own store (a page-aligned copy), its gathers, its chunked evaluation and
feature building, and the runner passing the choice through, give the same CSVs as the
device path for every registered sampler, and a run resumes across placements. The CUDA
view itself (page-locked memory read by kernels) is checked by the CUDA test at the end,
which ``make gpu-check`` runs.
"""
from __future__ import annotations

import copy
import csv
import io as _io
import json
import mmap
from pathlib import Path

import numpy as np
import pytest
import torch

import samplers
from benchmarks.config import RunSpec
from benchmarks.errors import UserError
from benchmarks.placement import DEVICE_FRACTION, Images, decide
from benchmarks.train import train_one
from conftest import TINY_DEFAULTS, Interrupt, run_cli, stop_after
from data_fixtures import make_prepared
from sync_harness import sampler_case

N_TRAIN, BATCH = 64, 16
#: epochs.csv / iterations.csv columns that are clocks (the only ones allowed to differ)
CLOCKS = {"train_seconds", "eval_seconds", "diag_seconds"}


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    r = tmp_path_factory.mktemp("placement") / "data"
    make_prepared(r, "tiny", n_train=N_TRAIN + 16, n_test=40, num_classes=4, seed=0)
    return r


# ------------------------------------------------------------------------ the decision
def test_auto_on_a_gpu_keeps_data_on_the_device_up_to_the_fraction():
    gpu = torch.device("cuda")  # a decision only: nothing touches a GPU when free is given
    free = 10 * 2 ** 30
    at_limit = int(DEVICE_FRACTION * free)
    assert decide("auto", at_limit, gpu, free).where == "device"
    over = decide("auto", at_limit + 1, gpu, free)
    assert over.where == "host" and "free on the device" in over.reason
    assert decide("device", at_limit + 1, gpu, free).where == "device"   # the user's call
    assert decide("host", 1, gpu, free).where == "host"
    assert over.to_dict() == {"where": "host", "requested": "auto", "data_bytes": at_limit + 1,
                              "free_bytes": free, "reason": over.reason}


def test_on_a_cpu_auto_means_device_and_host_runs_the_host_path():
    cpu = torch.device("cpu")
    assert decide("auto", 2 ** 40, cpu).where == "device"
    assert decide("host", 1, cpu).where == "host"
    with pytest.raises(UserError, match="expected one of auto, device, host"):
        decide("gpu", 1, cpu)


# ------------------------------------------------------------------------ the store
@pytest.mark.parametrize("shape", [(37, 8, 8, 3), (9, 3, 3, 3)])   # 8-byte words, and not
def test_both_stores_hand_out_the_same_bytes(shape):
    x = np.random.default_rng(0).integers(0, 256, size=shape, dtype=np.uint8)
    dev, host = Images(x, torch.device("cpu"), "device"), Images(x, torch.device("cpu"), "host")
    idx = torch.tensor([5, 0, 8, 5, 2])
    want = torch.from_numpy(x)
    for store in (dev, host):
        assert torch.equal(store.rows(idx), want[idx])
        assert torch.equal(store.slice(2, 7), want[2:7])
        assert [s for s, _ in store.chunks(4)] == list(range(0, shape[0], 4))
        assert torch.equal(torch.cat([c for _, c in store.chunks(4)]), want)


def test_the_host_store_is_a_page_aligned_copy_of_its_own():
    x = np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3)
    store = Images(x, torch.device("cpu"), "host")
    assert store.host is not None and store.host.data_ptr() % mmap.PAGESIZE == 0
    x[0, 0, 0, 0] = 99   # the loader's array may go away or change: the store keeps its copy
    assert int(store.host[0, 0, 0, 0]) == 0


def test_chunked_features_equal_the_whole_set_features(root):
    """IMPON's features built chunk by chunk (how a host-resident set is read) are the
    same bits as those built from the whole float set, in both memory layouts."""
    from benchmarks.data import DeviceData, load_run_data

    train, test, val, info = load_run_data("tiny", root, False, None, None, None)
    for channels_last in (False, True):
        data = DeviceData(train, test, info, torch.device("cpu"), channels_last=channels_last,
                          placement="host")
        base = dict(n_train=data.n_train, batch_size=4, device=torch.device("cpu"),
                    generator=torch.Generator(), labels=data.y_train, num_classes=4,
                    weight_norm_fn=lambda: torch.zeros(()), augment_fn=data.plain,
                    score_fn=lambda x, y: torch.zeros(len(y)))
        whole = samplers.StepContext(**base, images_fn=data.train_images)
        chunked = samplers.StepContext(**base, images_fn=data.train_images,
                                       image_chunks_fn=lambda: data.train_image_chunks(7))
        for kind in samplers.FEATURE_KINDS:
            assert torch.equal(whole.features(kind), chunked.features(kind)), (kind, channels_last)


# ------------------------------------------------------------------------ whole runs
def _spec(name: str, params: dict) -> RunSpec:
    return RunSpec.from_dict({**copy.deepcopy(TINY_DEFAULTS), "matrix": "p", "batch_size": BATCH,
                              "validation": 16, "sampler": {"name": name, **params}})


def _table(path: Path) -> list[dict[str, str]]:
    rows = list(csv.DictReader(_io.StringIO(path.read_text())))
    return [{k: v for k, v in r.items() if k not in CLOCKS} for r in rows]


@pytest.mark.parametrize("name", samplers.available())
def test_every_sampler_trains_identically_on_both_placements(name, root, tmp_path):
    """Same spec, device- vs host-resident images: the same epochs.csv and iterations.csv
    (clock columns aside), and run.json says where the images were."""
    spec = _spec(name, sampler_case(name, N_TRAIN, BATCH).params)
    folders = {}
    for where in ("device", "host"):
        folders[where] = tmp_path / where
        res = train_one(spec, folders[where], data_root=root, download=False, device="cpu",
                        data_placement=where)
        assert res.status == "done", res.error
        placed = json.loads((folders[where] / "run.json").read_text())["data_placement"]
        assert placed["where"] == where and placed["requested"] == where
    for table in ("epochs.csv", "iterations.csv"):
        assert _table(folders["device"] / table) == _table(folders["host"] / table), (name, table)


def test_a_run_resumes_across_placements(root, tmp_path):
    """Placement is not part of a run's identity: a run interrupted on one resumes on the
    other to the same rows as an uninterrupted run."""
    spec = _spec("impon", {"bank_size": 2 * BATCH, "features": "pooled"})
    ref = tmp_path / "ref"
    assert train_one(spec, ref, data_root=root, download=False, device="cpu").status == "done"

    cut = tmp_path / "cut"
    with pytest.raises(Interrupt):
        train_one(spec, cut, data_root=root, download=False, device="cpu",
                  data_placement="device", on_epoch=stop_after(1))
    assert train_one(spec, cut, data_root=root, download=False, device="cpu",
                     data_placement="host").status == "done"
    for table in ("epochs.csv", "iterations.csv"):
        assert _table(ref / table) == _table(cut / table), table


def test_cli_passes_the_placement_and_refuses_a_bad_one(root, tmp_path, capsys):
    matrix = tmp_path / "m.yaml"
    matrix.write_text("name: m\nreference: uniform\ndefaults:\n  dataset: tiny\n  epochs: 1\n"
                      "  batch_size: 16\n  eval_batch_size: 64\n"
                      "  model: {name: resnet18, width: 0.0625}\n"
                      "grid:\n  arm:\n    - {name: uniform, sampler: {name: uniform}}\n")
    results = tmp_path / "results"
    rc, out, err = run_cli(capsys, matrix, root, results, "--data-placement", "gpu")
    assert rc == 2 and err.strip().count("\n") == 0 and "--data-placement 'gpu'" in err
    assert not results.exists()
    rc, out, err = run_cli(capsys, matrix, root, results, "--dry-run")
    assert rc == 0 and "data placement, tiny:" in out
    rc, out, err = run_cli(capsys, matrix, root, results, "--data-placement", "host")
    assert rc == 0, err
    (record,) = list(results.glob("m/*/run.json"))
    assert json.loads(record.read_text())["data_placement"]["where"] == "host"


# ------------------------------------------------------------------------ CUDA only
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_host_resident_cuda_view_gathers_the_same_batches_without_a_sync(root):
    """On a GPU: the page-locked host view reads the same bytes as the device copy, and
    the augmentation and evaluation batches of the host path never synchronise."""
    from benchmarks.data import DeviceData, load_run_data

    train, test, val, info = load_run_data("tiny", root, False, None, None, None)
    cuda = torch.device("cuda")
    dev = DeviceData(train, test, info, cuda, placement="device")
    host = DeviceData(train, test, info, cuda, placement="host")
    assert host.x_train.is_cuda and host.x_train.data_ptr() == host.train_x.host.data_ptr()
    idx = torch.randint(0, dev.n_train, (BATCH,), device=cuda)
    g1, g2 = torch.Generator(device=cuda), torch.Generator(device=cuda)
    g1.manual_seed(3)
    g2.manual_seed(3)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        a, b = dev.augment(idx, g1), host.augment(idx, g2)
        ev = [(x.clone(), y) for x, y in host.test_batches(16)]
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert torch.equal(a, b)
    assert torch.equal(torch.cat([x for x, _ in ev]), torch.cat([x for x, _ in dev.test_batches(16)]))
