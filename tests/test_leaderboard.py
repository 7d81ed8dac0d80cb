"""``python -m plots leaderboard`` (plots/leaderboard.py): results/LEADERBOARD.md and its
figure from every matrix with finished runs.

The committed page must be what the committed runs give, byte for byte (like the README
tables); on a fixture, every number of a row is known in advance.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402

from plots import leaderboard  # noqa: E402
from results_fixtures import FakeRun, write_matrix  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "results"

pytestmark = pytest.mark.filterwarnings("ignore:no plot traits recorded")


def _committed_matrices() -> set[str]:
    """The committed example matrices (``results/cpu_*``) that hold run folders."""
    return {p.name for p in RESULTS.glob("cpu_*")
            if p.is_dir() and any((r / "run.json").exists() for r in p.iterdir() if r.is_dir())}


def test_committed_leaderboard_is_what_the_committed_runs_give():
    text = (RESULTS / leaderboard.PAGE).read_text(encoding="utf-8")
    names = leaderboard.matrices_in(text)
    assert set(names) == _committed_matrices(), \
        "results/LEADERBOARD.md misses a committed matrix: run `python -m plots leaderboard`"
    found, skipped = leaderboard.boards(RESULTS, only=names)
    assert leaderboard.render(found, skipped) == text, \
        "results/LEADERBOARD.md differs from the runs: run `python -m plots leaderboard`"
    for stem in (f"{leaderboard.FIGURE_STEM}.png", f"{leaderboard.FIGURE_STEM}.pdf"):
        assert (RESULTS / stem).stat().st_size > 0


# ------------------------------------------------------------------- fixture


def _acc(offsets: dict[int, float], seed: int):
    """0.1 per epoch plus 0.01 per seed (the reference), plus the arm's offset per seed."""
    return lambda e: 0.1 * e + 0.01 * seed + (offsets[seed] if e else 0.0)


def _results(tmp_path: Path) -> Path:
    results = tmp_path / "results"
    runs = []
    for seed in range(3):
        runs.append(FakeRun(arm="sgd", seed=seed, matrix="alpha", plot_traits=False,
                            acc=_acc({0: 0.0, 1: 0.0, 2: 0.0}, seed)))
        runs.append(FakeRun(arm="fast", sampler="uniform", seed=seed, matrix="alpha",
                            plot_traits=False, acc=_acc({0: 0.05, 1: 0.06, 2: 0.07}, seed)))
        runs.append(FakeRun(arm="noisy", sampler="uniform", seed=seed, matrix="alpha",
                            plot_traits=False, acc=_acc({0: -0.01, 1: 0.02, 2: -0.005}, seed)))
    write_matrix(results / "alpha", runs)
    write_matrix(results / "beta", [FakeRun(matrix="beta", status="failed", error="boom",
                                            plot_traits=False)])
    (results / "gamma").mkdir()  # no run folders: not a matrix
    return results


def _row(text: str, arm: str, after: str = "") -> list[str]:
    start = text.index(after) if after else 0
    line = next(ln for ln in text[start:].splitlines() if ln.startswith(f"| {arm} ")
                or ln.startswith(f"| **{arm}**"))
    return [c.strip() for c in line.strip("|").split("|")]


def test_leaderboard_rows_on_a_fixture(tmp_path, capsys):
    from plots.__main__ import main

    results = _results(tmp_path)
    assert main(["leaderboard", "--results", str(results)]) == 0
    out = capsys.readouterr().out
    page = results / leaderboard.PAGE
    assert f"wrote {page}" in out
    text = page.read_text(encoding="utf-8")

    setup = _row(text, "alpha")
    assert setup[1] == "cifar10-5k [subset] (train 512 / test 256)"  # a subset, named so
    assert setup[5:9] == ["3", "9", "3", "sgd"]  # arms, runs, seeds, reference
    assert setup[9] == "00000000"  # the runs' commit
    assert "Not on the board (no finished run): `beta`" in text
    assert "gamma" not in text

    fast = _row(text, "fast")
    assert fast[1] == "3"
    assert fast[2].startswith("57.00 [")  # sgd 0.51 mean at epoch 5, + 0.06
    assert fast[4].startswith("+6.00 [")  # paired difference in points
    assert fast[5].endswith("✱")  # p ≈ 0.009, Holm over 2 arms ≈ 0.018 ≤ 0.05
    assert fast[6] == "1.00"  # every run of fast beats every run of sgd: no spread
    noisy = _row(text, "noisy")
    assert not noisy[5].endswith("✱")
    reference = _row(text, "sgd")
    assert reference[0] == "**sgd** (reference)" and reference[4] == "—"

    # targets: sgd's worst seed peaks at 50% -> 50% and 40%; 2 s per epoch
    assert "Targets: cifar10-5k: 40%, 50%." in text
    cost = _row(text, "sgd", after="test accuracy (mean over seeds):")
    assert cost[1:3] == ["8.0", "10.0"]  # epoch 4 reaches 40%, epoch 5 reaches 50%
    noisy_cost = _row(text, "noisy", after="test accuracy (mean over seeds):")
    assert noisy_cost[2] == "— (2/3)"  # seed 0 peaks at 0.49: only 2 of 3 reach 50%
    assert (results / "leaderboard.png").stat().st_size > 0

    # the same runs give the same bytes, figure included
    before = {p.name: p.read_bytes() for p in results.glob("leaderboard.*")}
    before[leaderboard.PAGE] = text.encode()
    assert leaderboard.main(["--results", str(results)]) == 0
    after = {p.name: p.read_bytes() for p in results.glob("leaderboard.*")}
    after[leaderboard.PAGE] = page.read_bytes()
    assert after == before

    section = leaderboard.section(text, "alpha")
    assert section.startswith("## `alpha`") and "<!-- end matrix -->" not in section
    with pytest.raises(KeyError):
        leaderboard.section(text, "beta")


def test_leaderboard_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    assert leaderboard.main(["--results", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: results folder") and "\n" not in err
    (tmp_path / "empty").mkdir()
    assert leaderboard.main(["--results", str(tmp_path / "empty")]) == 2
    assert "no matrix with finished runs" in capsys.readouterr().err
    assert not (tmp_path / "empty" / leaderboard.PAGE).exists()


# ------------------------------------------------------------------- README


def test_readme_quotes_the_committed_leaderboard(tmp_path):
    from plots import readme

    text = (REPO / "README.md").read_text(encoding="utf-8")
    start = text.index("<!-- table: leaderboard cpu_methods -->")
    block = text[start:text.index("<!-- end table -->", start)]
    page = (RESULTS / leaderboard.PAGE).read_text(encoding="utf-8")
    row = next(ln for ln in block.splitlines() if ln.startswith("| selective_backprop |"))
    assert row in page  # the row as the leaderboard has it
    edited = text.replace(row, row.replace("| 3 |", "| 4 |", 1))
    assert edited != text
    assert readme.render(edited, RESULTS) == text  # a hand edit is undone (and the test
    # of every README block, tests/test_readme_tables.py, fails on it)
    (tmp_path / "cpu_methods").mkdir()
    (tmp_path / "cpu_methods" / "summary.csv").write_text("x\n")
    with pytest.raises(readme.ReadmeTableError, match="LEADERBOARD.md missing"):
        readme.render("<!-- table: leaderboard cpu_methods -->\n<!-- end table -->", tmp_path)
