"""The README's result tables are generated from the committed reports' CSVs
(``python -m plots.readme``): a number typed by hand, or left over from an earlier run,
fails here."""
from __future__ import annotations

from pathlib import Path

import pytest

from plots import readme

REPO = Path(__file__).resolve().parent.parent


def test_readme_tables_are_the_committed_results():
    found = set()
    for page in readme.pages(REPO):
        text = page.read_text(encoding="utf-8")
        found |= {(kind, matrix) for _, kind, matrix, _, _ in readme.BLOCK.findall(text)}
        assert readme.render(text, REPO / "results") == text, \
            f"{page.name}: tables differ from results/: run `python -m plots.readme`"
    assert found >= {("methods", "cpu_methods"), ("budget", "cpu_budget"),
                     ("leaderboard", "cpu_methods")}


def test_a_hand_edited_number_is_caught(tmp_path):
    text = (REPO / "docs" / "results.md").read_text(encoding="utf-8")
    start = text.index("<!-- table: methods cpu_methods -->")
    row = text.index("| sgd |", start)
    cell = text.index("|", row + 6)
    edited = text[:cell + 2] + "9" + text[cell + 3:]       # one digit of sgd's accuracy
    assert edited != text
    assert readme.render(edited, REPO / "results") == text
    (tmp_path / "README.md").write_text(edited, encoding="utf-8")
    assert readme.main([str(tmp_path / "README.md"), "--results", str(REPO / "results")]) == 0
    assert (tmp_path / "README.md").read_text(encoding="utf-8") == text


def test_unknown_kind_or_missing_matrix_is_an_error(tmp_path):
    with pytest.raises(readme.ReadmeTableError, match="kind"):
        readme.render("<!-- table: nosuch cpu_methods -->\nx\n<!-- end table -->", REPO / "results")
    with pytest.raises(readme.ReadmeTableError, match="summary.csv missing"):
        readme.render("<!-- table: methods nosuch -->\nx\n<!-- end table -->", tmp_path)
