"""Plots check each run's files against each other before using them (issue 10, item 3).

A ``done`` run whose iterations.csv has junk lines, was cut short or padded, or whose
epochs.csv disagrees with it, is left out with the reason listed; the plots never crash
on it and never average it in.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402

from plots.__main__ import main  # noqa: E402
from plots.aggregate import load_matrix  # noqa: E402
from results_fixtures import FakeRun, left_out_after, write_run  # noqa: E402


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines(keepends=True)


def _cut_last_rows(folder: Path) -> None:
    path = folder / "iterations.csv"
    path.write_text("".join(_lines(path)[:-5]))


def _truncate_mid_line(folder: Path) -> None:
    path = folder / "iterations.csv"
    data = path.read_bytes()
    path.write_bytes(data[:-7])


def _junk_line(folder: Path) -> None:
    path = folder / "iterations.csv"
    lines = _lines(path)
    lines.insert(10, "this is not a row\n")
    path.write_text("".join(lines))


def _nul_padding(folder: Path) -> None:  # what resume used to leave behind
    with open(folder / "iterations.csv", "ab") as f:
        f.write(b"\0" * 300)


def _duplicate_row(folder: Path) -> None:
    path = folder / "iterations.csv"
    lines = _lines(path)
    lines.insert(5, lines[5])
    path.write_text("".join(lines[:-1]))  # same row count, one step repeated, one lost


def _epochs_cut(folder: Path) -> None:
    path = folder / "epochs.csv"
    path.write_text("".join(_lines(path)[:-1]))


def _epoch_count_mismatch(folder: Path) -> None:
    path = folder / "epochs.csv"
    lines = _lines(path)
    fields = lines[2].split(",")
    fields[1] = str(int(fields[1]) + 1)  # epoch 1 ends one step later than it did
    lines[2] = ",".join(fields)
    path.write_text("".join(lines))


def _non_numeric_accuracy(folder: Path) -> None:
    path = folder / "epochs.csv"
    lines = _lines(path)
    header = lines[0].split(",")
    fields = lines[3].split(",")
    fields[header.index("test_acc")] = "0.5x"
    lines[3] = ",".join(fields)
    path.write_text("".join(lines))


@pytest.mark.parametrize("damage,reason", [
    (_cut_last_rows, "iterations.csv has 15 rows, but epochs.csv says 20 steps"),
    (_truncate_mid_line, "iterations.csv ends inside its last row"),
    (_junk_line, "iterations.csv has a non-numeric iteration in data row 10"),
    (_nul_padding, "iterations.csv"),
    (_duplicate_row, "iterations.csv rows are not numbered 1..20"),
    (_epochs_cut, "epochs.csv ends at epoch 4, but the run was for 5 epochs"),
    (_epoch_count_mismatch, "iterations.csv has 4 rows for epoch 1, epochs.csv says 5"),
    (_non_numeric_accuracy, "epochs.csv has a non-numeric test_acc in data row 3"),
])
def test_done_run_whose_files_do_not_add_up_is_left_out_with_its_reason(tmp_path, damage, reason):
    res, row = left_out_after(tmp_path, damage)
    assert list(res.iterations["run_id"].unique()) == [FakeRun(seed=0).run_id()]
    assert row.status == "done"
    assert row.reason.startswith("done, but ") and reason in row.reason, row.reason


def test_well_formed_runs_all_pass_the_checks(tmp_path):
    for seed in range(3):
        write_run(tmp_path, FakeRun(seed=seed, epochs=3, batch_size=64))
    res = load_matrix(tmp_path)
    assert res.runs["included"].all() and res.left_out.empty


def test_plots_cli_lists_a_junk_run_instead_of_crashing(tmp_path, capsys):
    write_run(tmp_path / "m", FakeRun(seed=0))
    broken = FakeRun(seed=1)
    _junk_line(write_run(tmp_path / "m", broken))
    assert main(["m", "--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert broken.run_id() in out and "non-numeric iteration" in out
    report = (tmp_path / "m" / "report.md").read_text()
    assert broken.run_id() in report.split("## Runs left out", 1)[1]
