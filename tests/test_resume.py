"""Resume checks the run folder against its checkpoint: exact recovery or one clear failure.

Each test damages a copy of a run interrupted after epoch 1 (of 2) the way a user, a full
disk or a bug could, and resumes it: either the result equals an uninterrupted run byte
for byte, or the run fails with one line naming what disagrees and the command that
restarts it; never a padded or silently restarted "done".
"""
from __future__ import annotations

import copy
import json
import shlex
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from benchmarks.config import RunSpec
from benchmarks.errors import RunFolderError
from benchmarks.train import train_one
from conftest import TINY_DEFAULTS
from data_fixtures import make_prepared


class Interrupt(Exception):
    pass


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """(data root, spec, reference folder, interrupted folder) built once for the module."""
    base = tmp_path_factory.mktemp("resume")
    root = base / "data"
    make_prepared(root, "tiny", n_train=96, n_test=40, num_classes=4, seed=0)
    spec = RunSpec.from_dict({**copy.deepcopy(TINY_DEFAULTS), "matrix": "t"})
    ref = base / "ref"
    assert train_one(spec, ref, data_root=root, download=False, device="cpu").status == "done"

    def stop_after_epoch_1(epoch, row):
        if epoch == 1:
            raise Interrupt  # as if killed right after epoch 1's checkpoint

    cut = base / "cut"
    with pytest.raises(Interrupt):
        train_one(spec, cut, data_root=root, download=False, device="cpu", on_epoch=stop_after_epoch_1)
    return root, spec, ref, cut


@pytest.fixture
def run(made, tmp_path):
    root, spec, ref, cut = made
    folder = tmp_path / "t" / spec.run_id
    shutil.copytree(cut, folder)
    return root, spec, ref, folder


def _resume(spec, folder, root):
    return train_one(spec, folder, data_root=root, download=False, device="cpu")


def _fails(spec, folder, root, *needles):
    with pytest.raises(RunFolderError) as e:
        _resume(spec, folder, root)
    msg = str(e.value)
    assert "\n" not in msg, msg
    for needle in (*needles, "cannot resume exactly", f"mv {folder} {folder.parent}/_broken-"):
        assert needle in msg, msg
    info = json.loads((folder / "run.json").read_text())
    assert info["status"] == "failed" and info["error"] == msg
    return msg


def _rows(folder):
    return (folder / "iterations.csv").read_bytes()


def test_interrupted_run_resumes_to_the_same_bytes(run):
    root, spec, ref, folder = run
    assert _resume(spec, folder, root).status == "done"
    assert _rows(folder) == _rows(ref)


def test_rows_after_the_checkpoint_are_cut_back_exactly(run):
    root, spec, ref, folder = run
    with open(folder / "iterations.csv", "ab") as f:  # an epoch killed before its checkpoint
        f.write(b"7,2,1.25,0.01,112,112\n8,2,1.2")
        f.write(b"\0\0junk\n")
    (folder / "epochs.csv").unlink()
    assert _resume(spec, folder, root).status == "done"
    assert _rows(folder) == _rows(ref)


def test_shorter_iterations_csv_fails_and_is_not_padded(run):
    root, spec, ref, folder = run
    data = _rows(folder)
    (folder / "iterations.csv").write_bytes(data[:-30])
    _fails(spec, folder, root, "iterations.csv is shorter", f"({len(data)} bytes, 6 rows to epoch 1)")
    assert _rows(folder) == data[:-30]


def test_changed_rows_inside_the_checkpointed_part_fail(run):
    root, spec, ref, folder = run
    lines = _rows(folder).split(b"\n")
    lines[3] = lines[3].replace(b"3,1,", b"3,1,9", 1)[:len(lines[3])]  # same length, other loss
    (folder / "iterations.csv").write_bytes(b"\n".join(lines))
    _fails(spec, folder, root, "iterations.csv: the 6 rows", "sha256 differs")


def test_junk_line_inside_the_checkpointed_part_fails(run):
    root, spec, ref, folder = run
    lines = _rows(folder).split(b"\n")
    lines[2] = b"x" * len(lines[2])
    (folder / "iterations.csv").write_bytes(b"\n".join(lines))
    _fails(spec, folder, root, "are not well-formed (line 3")


def test_deleted_iterations_csv_fails_and_keeps_the_checkpoint(run):
    root, spec, ref, folder = run
    (folder / "iterations.csv").unlink()
    ckpt = (folder / "checkpoint.pt").read_bytes()
    _fails(spec, folder, root, "iterations.csv is missing but checkpoint.pt records 6 rows (to epoch 1)")
    assert (folder / "checkpoint.pt").read_bytes() == ckpt


@pytest.mark.parametrize("damage,needle", [
    (lambda b: b"", "checkpoint.pt is empty (0 bytes)"),
    (lambda b: b[: len(b) // 2], "checkpoint.pt is unreadable, truncated or corrupt"),
    (lambda b: b"not a zip" * 10, "checkpoint.pt is unreadable, truncated or corrupt"),
])
def test_corrupt_checkpoint_fails_in_one_line(run, damage, needle):
    root, spec, ref, folder = run
    path = folder / "checkpoint.pt"
    path.write_bytes(damage(path.read_bytes()))
    _fails(spec, folder, root, needle)


def test_deleted_checkpoint_with_rows_fails(run):
    root, spec, ref, folder = run
    (folder / "checkpoint.pt").unlink()
    _fails(spec, folder, root, "checkpoint.pt is missing but iterations.csv holds 6 rows")
    assert len(_rows(folder).splitlines()) == 7


def test_resume_on_different_data_fails_naming_both_fingerprints(run, tmp_path):
    root, spec, ref, folder = run
    other = tmp_path / "other"
    shutil.copytree(root, other)
    with np.load(other / "tiny" / "train.npz") as z:
        x, y = z["x"].copy(), z["y"].copy()
    x[0] ^= 1
    np.savez(other / "tiny" / "train.npz", x=x, y=y)
    then = json.loads((folder / "run.json").read_text())["dataset"]["fingerprint"]
    msg = _fails(spec, folder, other, f"records data fingerprint {then}",
                 "point --data-root at the original data")
    now = msg.split("the data found now has ")[1].split(",")[0]
    assert now != then and len(now) == len(then)
    # The provenance of the rows already trained is kept.
    assert json.loads((folder / "run.json").read_text())["dataset"]["fingerprint"] == then
    assert _resume(spec, folder, root).status == "done" and _rows(folder) == _rows(ref)


def test_following_the_restart_hint_restarts_the_run(run):
    root, spec, ref, folder = run
    (folder / "checkpoint.pt").write_bytes(b"")
    msg = _fails(spec, folder, root, "checkpoint.pt is empty")
    command = msg.split("(mv ")[1].split(") and run")[0]
    subprocess.run(["mv", *shlex.split(command)], check=True)
    assert _resume(spec, folder, root).status == "done" and _rows(folder) == _rows(ref)
    assert len(list(folder.parent.glob("_broken-*"))) == 1


def test_missing_rows_of_a_run_that_never_trained_are_recreated(made, tmp_path):
    root, spec, ref, _ = made

    def stop_at_0(epoch, row):
        raise Interrupt

    folder = tmp_path / spec.run_id
    with pytest.raises(Interrupt):
        train_one(spec, folder, data_root=root, download=False, device="cpu", on_epoch=stop_at_0)
    (folder / "iterations.csv").unlink()  # checkpoint 0 vouches for the header only
    assert _resume(spec, folder, root).status == "done"
    assert _rows(folder) == _rows(ref)


def test_a_broken_run_fails_in_one_line_and_the_matrix_goes_on(made, tmp_path, capsys):
    from benchmarks.cli import main
    from conftest import write_matrix

    root, spec, ref, cut = made
    m = write_matrix(tmp_path / "m.yaml", copy.deepcopy(TINY_DEFAULTS),
                     {"seed": [0, 1], "arm": [{"name": spec["arm"]}]})
    results = tmp_path / "r"
    shutil.copytree(cut, results / "t" / spec.run_id)
    (results / "t" / spec.run_id / "checkpoint.pt").write_bytes(b"")
    rc = main(["run", str(m), "--data-root", str(root), "--results", str(results),
               "--no-download", "--device", "cpu"])
    out = capsys.readouterr().out
    assert rc == 1
    broken = [line for line in out.splitlines() if spec.run_id in line]
    assert len(broken) == 1 and ": failed (" in broken[0] and "checkpoint.pt is empty" in broken[0]
    statuses = {p.parent.name: json.loads(p.read_text())["status"] for p in (results / "t").glob("*/run.json")}
    assert statuses.pop(spec.run_id) == "failed" and list(statuses.values()) == ["done"]
