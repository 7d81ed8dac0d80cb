"""Issue "Never silently wrong, round two": points 2 (tuned.yaml kept once edited), 4 (plots
check every column's type and range), 6 (YAML 1.1 number forms), 7 (``--set arm=X`` with
another arm as reference) and 8b (plots on a matrix.yaml that is not UTF-8). Each test
failed before its fix.
"""
from __future__ import annotations

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import yaml  # noqa: E402

from benchmarks import matrix as matrix_mod  # noqa: E402
from benchmarks import yamlsafe  # noqa: E402
from benchmarks.config import parse_set  # noqa: E402
from benchmarks.errors import UserError  # noqa: E402
from conftest import run_cli, snapshot, write_matrix  # noqa: E402
from plots.__main__ import main as plots_main  # noqa: E402
from plots.aggregate import load_matrix  # noqa: E402
from plots.tuning import write_generated  # noqa: E402
from results_fixtures import FakeRun, left_out_after, write_run  # noqa: E402
from test_tuning import _sweep_run  # noqa: E402


def _one_line_exit_2(rc: int, err: str, needle: str) -> None:
    assert rc == 2, err
    assert needle in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err


# ----------------------------------------------------------------- 2: tuned.yaml
def _sweep(root: Path) -> Path:
    for seed in (0, 1):
        for lr, val in ((0.1, 0.6), (0.03, 0.8)):
            _sweep_run(root / "sweep", "sgd", lr, seed, 0.5, val)
    return root / "sweep"


def test_plots_never_overwrite_a_hand_edited_tuned_yaml(tmp_path, capsys):
    sweep = _sweep(tmp_path)
    assert plots_main(["sweep", "--results", str(tmp_path)]) == 0
    tuned = sweep / "tuned.yaml"
    generated = tuned.read_text()
    assert plots_main(["sweep", "--results", str(tmp_path)]) == 0  # unedited: same file, no .new
    assert tuned.read_text() == generated and not (sweep / "tuned.new.yaml").exists()
    capsys.readouterr()

    edited = generated.replace("  - 2\n", "  - 2\n  - 3\n")  # the header invites editing seeds
    assert edited != generated
    tuned.write_text(edited)
    assert plots_main(["sweep", "--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert tuned.read_text() == edited  # the edit survives
    assert (sweep / "tuned.new.yaml").read_text() == generated
    assert "kept tuned.yaml: edited since it was generated" in out and "tuned.new.yaml" in out
    assert "kept tuned.yaml: edited since it was generated" in (sweep / "report.md").read_text()
    assert yaml.safe_load(edited)["grid"]["seed"] == [0, 1, 2, 3]


def test_generated_file_is_replaced_only_while_unedited(tmp_path):
    path = tmp_path / "tuned.yaml"
    assert write_generated(path, "# generated\na: 1\n") == path
    assert write_generated(path, "# generated\na: 2\n") == path  # unedited: replaced
    assert "a: 2" in path.read_text()
    # the committed form without a hash line: left byte for byte while the content is the same,
    # kept (and the new one written next to it) once it differs
    path.write_text("# generated\na: 3\n")
    assert write_generated(path, "# generated\na: 3\n") == path
    assert path.read_text() == "# generated\na: 3\n"
    assert write_generated(path, "# generated\na: 4\n") == tmp_path / "tuned.new.yaml"
    assert path.read_text() == "# generated\na: 3\n"


# ----------------------------------------------------------------- 4: types and ranges
def _edit_field(name: str, data_row: int, column: str, new: str | None = None,
                cut: int = 0) -> callable:
    """Damage one field of one data row (1-based): replace it, or cut its last ``cut`` chars."""
    def damage(folder: Path) -> None:
        path = folder / name
        lines = path.read_text().splitlines(keepends=True)
        header = lines[0].rstrip("\n").split(",")
        fields = lines[data_row].rstrip("\n").split(",")
        i = header.index(column)
        fields[i] = new if new is not None else fields[i][:-cut]
        lines[data_row] = ",".join(fields) + "\n"
        path.write_text("".join(lines))
    return damage


def _last_row_missing_fields(folder: Path) -> None:
    path = folder / "epochs.csv"
    lines = path.read_text().splitlines(keepends=True)
    lines[-1] = ",".join(lines[-1].rstrip("\n").split(",")[:-2]) + "\n"
    path.write_text("".join(lines))


def _cut_inside_last_number(folder: Path) -> None:
    path = folder / "epochs.csv"
    path.write_bytes(path.read_bytes()[:-2])  # "0.5\n" -> "0." : no line end


def _sampler_column(value: str) -> callable:
    def damage(folder: Path) -> None:
        path = folder / "epochs.csv"
        lines = path.read_text().splitlines()
        lines = [f"{lines[0]},impon_spearman"] + [f"{ln},{value if i == 3 else '0.5'}"
                                                   for i, ln in enumerate(lines[1:], 1)]
        path.write_text("\n".join(lines) + "\n")
    return damage


@pytest.mark.parametrize("damage,reason", [
    # default FakeRun: 4 steps of 128 per epoch, epochs 0..5; epoch 5 has 2560 backprops
    (_edit_field("epochs.csv", 6, "backprops", cut=1), "epochs.csv backprops goes down in data row 6"),
    # epoch 1's forwards 512 -> 51 still grows along epochs.csv, but not after step 4's 512
    (_edit_field("epochs.csv", 2, "forwards", cut=1), "epochs.csv forwards disagrees with iterations"),
    (_edit_field("iterations.csv", 7, "backprops", cut=1), "iterations.csv backprops goes down"),
    (_edit_field("epochs.csv", 6, "test_acc", "1.7"), "test_acc = 1.7 in data row 6; it must be in [0, 1]"),
    (_edit_field("epochs.csv", 3, "test_loss", "-0.1"), "test_loss = -0.1 in data row 3; it must be a finite number ≥ 0"),
    (_edit_field("epochs.csv", 4, "eval_seconds", "inf"), "eval_seconds = inf in data row 4"),
    (_edit_field("iterations.csv", 3, "lr", "-0.1"), "iterations.csv has lr = -0.1 in data row 3"),
    (_edit_field("epochs.csv", 4, "train_seconds", "-2"), "train_seconds = -2"),
    (_last_row_missing_fields, "epochs.csv data row 6 has 7 fields, the header 9"),
    (_cut_inside_last_number, "epochs.csv ends inside its last row"),
    (_sampler_column("inf"), "impon_spearman = inf in data row 3; it must be finite"),
    (_sampler_column("n/a"), "non-numeric impon_spearman in data row 3"),
])
def test_run_with_impossible_or_damaged_values_is_left_out(tmp_path, damage, reason):
    _, row = left_out_after(tmp_path, damage)
    assert reason in row.reason, row.reason


def test_sampler_columns_may_be_empty_and_validation_columns_are_ranged(tmp_path):
    _sampler_column("")(write_run(tmp_path, FakeRun(seed=0)))
    bad = write_run(tmp_path, FakeRun(seed=1))
    _sampler_column("0.5")(bad)
    path = bad / "epochs.csv"
    lines = path.read_text().splitlines()
    lines = [f"{lines[0]},val_acc"] + [f"{ln},{1.2 if i == 6 else 0.3}"
                                       for i, ln in enumerate(lines[1:], 1)]
    path.write_text("\n".join(lines) + "\n")
    res = load_matrix(tmp_path)
    (row,) = res.left_out.itertuples()
    assert row.run_id == bad.name and "val_acc = 1.2 in data row 6" in row.reason


def test_plots_report_lists_the_run_with_an_impossible_accuracy(tmp_path, capsys):
    write_run(tmp_path / "m", FakeRun(seed=0))
    broken = FakeRun(seed=1)
    _edit_field("epochs.csv", 6, "test_acc", "1.7")(write_run(tmp_path / "m", broken))
    assert plots_main(["m", "--results", str(tmp_path)]) == 0
    assert f"left out {broken.run_id()} [done]: done, but epochs.csv has test_acc = 1.7" \
        in capsys.readouterr().out
    report = (tmp_path / "m" / "report.md").read_text()
    assert broken.run_id() in report.split("## Runs left out", 1)[1]
    summary = (tmp_path / "m" / "summary.csv").read_text()
    assert broken.run_id() not in summary


# ----------------------------------------------------------------- 6: YAML 1.1 numbers
def test_leading_zero_seed_is_an_error_in_the_file_and_in_set(tmp_path, tiny_root, tiny_defaults,
                                                              capsys):
    m = tmp_path / "m.yaml"
    m.write_text(yaml.safe_dump({"name": "t", "defaults": tiny_defaults}) + "grid:\n  seed: [1, 010]\n")
    before = snapshot(tmp_path)
    rc, _, err = run_cli(capsys, m, tiny_root, tmp_path / "r")
    _one_line_exit_2(rc, err, "grid.seed[1]: 010 has a leading zero; write 10 or 8 "
                              "(YAML 1.1 would read it as octal 8)")
    assert f"{m}: line " in err and snapshot(tmp_path) == before
    m2 = write_matrix(tmp_path / "m2.yaml", tiny_defaults, {"seed": [0]})
    before = snapshot(tmp_path)
    rc, _, err = run_cli(capsys, m2, tiny_root, tmp_path / "r", "--set", "seed=010")
    _one_line_exit_2(rc, err, "--set seed: 010 has a leading zero; write 10 or 8 "
                              "(YAML 1.1 would read it as octal 8)")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("text,needle", [
    ("0o10", "0o10 is a YAML 1.1 number form that reads as 8; write 8"),
    ("0x10", "0x10 is a YAML 1.1 number form that reads as 16; write 16"),
    ("0b10", "0b10 is a YAML 1.1 number form that reads as 2; write 2"),
    ("1_000", "1_000 is a YAML 1.1 number form that reads as 1000; write 1000"),
    ("1:30", "1:30 is a YAML 1.1 number form that reads as 90; write 90, or quote it ('1:30')"),
    ("1_0.5", "1_0.5 is a YAML 1.1 number form that reads as 10.5; write 10.5"),
    ("019", "019 has a leading zero; write 19"),
])
def test_yaml_1_1_only_number_forms_are_never_converted_silently(text, needle):
    with pytest.raises(UserError, match=re.escape(f"m.yaml: line 3: defaults.model.width: {needle}")):
        yamlsafe.load_text(f"defaults:\n  model:\n    width: {text}\n", "m.yaml")
    with pytest.raises(UserError, match=re.escape(f"--set model.width: {needle}")):
        parse_set([f"model.width={text}"])


def test_plain_numbers_and_quoted_text_still_load():
    doc = yamlsafe.load_text("a: [0, -3, +7, 10, 0.5, .5, 1.0e-6, '010', \"1:30\", 1e-3]\n", "m")
    assert doc == {"a": [0, -3, 7, 10, 0.5, 0.5, 1e-6, "010", "1:30", "1e-3"]}
    assert parse_set(["seed=10", "arm=impon", "x={a: [1"]) == {"seed": 10, "arm": "impon", "x": "{a: [1"}


# ----------------------------------------------------------------- 7: --set arm=X, reference
def test_selecting_an_arm_that_is_not_the_reference_works(tmp_path, tiny_root, tiny_defaults, capsys):
    m = tmp_path / "m.yaml"
    m.write_text(yaml.safe_dump({"name": "t", "reference": "a", "defaults": tiny_defaults,
                                 "grid": {"seed": [0], "arm": [{"name": "a"}, {"name": "b"}]}}))
    mat = matrix_mod.load(str(m), parse_set(["arm=b"]))
    assert [r["arm"] for r in mat.runs] == ["b"] and mat.comparisons == ()
    assert mat.notes == ("reference arm 'a' is not selected: run it too (--set arm=a) for paired "
                         "differences of b",)
    assert matrix_mod.load(str(m), parse_set(["arm=a"])).notes == ()
    assert matrix_mod.load(str(m)).comparisons == (("b", "a"),)
    rc, out, err = run_cli(capsys, m, tiny_root, tmp_path / "r", "--set", "arm=b", "--dry-run")
    assert rc == 0, err
    assert "note: reference arm 'a' is not selected" in out and "1 runs" in out


def test_readme_example_set_arm_on_cpu_methods():
    mat = matrix_mod.load("cpu_methods", parse_set(["arm=impon"]))
    assert {r["arm"] for r in mat.runs} == {"impon"}
    assert any("reference arm 'sgd' is not selected" in n for n in mat.notes)


# ----------------------------------------------------------------- 8b: matrix.yaml not UTF-8
@pytest.mark.parametrize("content,needle", [
    ("reference: caf\u00e9\n".encode("latin-1"), "matrix.yaml: not UTF-8 text (byte 0xe9 at offset 14)"),
    (b"reference: [sgd\n", "matrix.yaml: not valid YAML"),
])
def test_plots_on_an_unreadable_matrix_yaml_is_one_line(tmp_path, capsys, content, needle):
    write_run(tmp_path / "m", FakeRun(seed=0))
    (tmp_path / "m" / "matrix.yaml").write_bytes(content)
    before = snapshot(tmp_path)
    rc = plots_main(["m", "--results", str(tmp_path)])
    _one_line_exit_2(rc, capsys.readouterr().err, needle)
    assert snapshot(tmp_path) == before  # refused before summary.csv or anything was written
