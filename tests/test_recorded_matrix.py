"""Matrices name their reference wherever they live (issue "One method, one file", item C).

The runner keeps the matrix file it ran in ``results/<matrix>/matrix.yaml`` and the plots
read ``reference``/``comparisons`` from there first: a matrix run from a path outside
``benchmarks/matrices/`` used to have both keys silently ignored.
"""
from __future__ import annotations

import pandas as pd
import yaml

from benchmarks.runner import record_matrix
from conftest import run_cli, snapshot


def test_a_matrix_outside_the_matrices_folder_is_paired_against_its_reference(
        tmp_path, tiny_root, tiny_defaults, capsys):
    from plots.__main__ import main as plots_main

    m = tmp_path / "mine" / "m.yaml"
    m.parent.mkdir()
    m.write_text("# kept verbatim, comments too\n" + yaml.safe_dump({
        "name": "elsewhere", "reference": "base",
        "defaults": {**tiny_defaults, "epochs": 1},
        # no arm called sgd: without the matrix's own reference nothing would be paired
        "grid": {"seed": [0, 1], "arm": [{"name": "base"},
                                          {"name": "fast", "optimizer": {"lr": 0.1}}]}}))
    results = tmp_path / "results"
    rc, out, err = run_cli(capsys, m, tiny_root, results)
    assert rc == 0, out + err
    folder = results / "elsewhere"
    assert (folder / "matrix.yaml").read_bytes() == m.read_bytes()

    assert plots_main(["elsewhere", "--results", str(results)]) == 0
    report = (folder / "report.md").read_text()
    assert "Pairs from `reference`/`comparisons` of matrix.yaml" in report
    assert "names no reference" not in report
    paired = pd.read_csv(folder / "paired.csv")
    assert set(zip(paired["arm"], paired["reference"])) == {("fast", "base")}
    assert (paired["n"] == 2).all()                       # both seeds paired


def test_recording_keeps_an_earlier_different_matrix_and_says_so(tmp_path):
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text("name: m\nreference: base\n")
    second.write_text("name: m\nreference: other\n")
    folder = tmp_path / "results" / "m"

    assert record_matrix(first, folder) is None
    assert (folder / "matrix.yaml").read_text() == first.read_text()
    before = snapshot(folder)
    assert record_matrix(first, folder) is None             # same text: nothing to do
    assert snapshot(folder) == before

    note = record_matrix(second, folder)
    kept = [p for p in folder.iterdir() if p.name != "matrix.yaml"]
    assert len(kept) == 1 and kept[0].name.startswith("matrix.") and kept[0].suffix == ".yaml"
    assert kept[0].read_text() == first.read_text()        # the earlier one, kept
    assert (folder / "matrix.yaml").read_text() == second.read_text()
    assert note is not None and kept[0].name in note and str(second) in note
    assert "\n" not in note
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no temp left


def test_bad_input_and_dry_runs_record_nothing(tmp_path, tiny_root, tiny_defaults, capsys):
    m = tmp_path / "m.yaml"
    m.write_text(yaml.safe_dump({"name": "t", "defaults": {**tiny_defaults, "batch_size": 1000},
                                 "grid": {"arm": [{"name": "sgd"}]}}))
    results = tmp_path / "results"
    rc, _, err = run_cli(capsys, m, tiny_root, results)
    assert rc == 2 and "batch_size" in err
    rc, _, _ = run_cli(capsys, m, tiny_root, results, "--dry-run")
    assert rc == 0
    assert not (results / "t" / "matrix.yaml").exists()


def test_a_copy_of_a_suite_matrix_is_named_as_the_suite_file(tmp_path):
    # results/cpu_* keep matrix.yaml out of git: a report must read the same with the copy
    # (where the runs were trained) as without it (a fresh clone)
    from benchmarks.comparisons import MATRIX_DIR, matrix_file

    folder = tmp_path / "cpu_mini"
    folder.mkdir()
    assert matrix_file("cpu_mini", folder) == MATRIX_DIR / "cpu_mini.yaml"
    (folder / "matrix.yaml").write_bytes((MATRIX_DIR / "cpu_mini.yaml").read_bytes())
    assert matrix_file("cpu_mini", folder) == MATRIX_DIR / "cpu_mini.yaml"
    (folder / "matrix.yaml").write_text("name: cpu_mini\nreference: impon\n")   # edited since
    assert matrix_file("cpu_mini", folder) == folder / "matrix.yaml"
    assert matrix_file("nowhere", tmp_path) is None
