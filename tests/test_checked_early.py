"""Values the data sizes rule out are refused before anything trains (one line per problem,
exit 2, nothing written), not an epoch into a run that is then left ``failed``: budgets
leaving no full batch, InfoBatch keeping less than a batch, RHO-LOSS's n_big, upper-bound
IS's presample; and parameters that cannot work at all are schema errors."""
from __future__ import annotations

import pytest

from conftest import run_cli, snapshot, write_matrix


@pytest.mark.parametrize("over,needle", [
    ({"budget": 0.1}, "leaves no full batch"),
    ({"budget": 0.2, "validation": 40}, "leaves no full batch"),      # 56 left to train
    ({"sampler": {"name": "infobatch", "ratio": 0.9}}, "less than one batch"),
    ({"sampler": {"name": "rho_loss", "n_big": 16, "il_epochs": 1}}, "must be larger than the batch"),
    ({"sampler": {"name": "rho_loss", "il_epochs": 1}}, "non-holdout examples"),   # 10 b = 160 > 48
    ({"sampler": {"name": "upper_bound_is", "presample": 1.01}}, "is not more than the batch"),
])
def test_size_problems_are_refused_before_training(over, needle, tmp_path, tiny_root, tiny_defaults,
                                                   capsys):
    results = tmp_path / "results"
    results.mkdir()
    m = write_matrix(tmp_path / "m.yaml", {**tiny_defaults, **over}, {"arm": [{"name": "a"}]})
    before = snapshot(results)
    rc, out, err = run_cli(capsys, m, tiny_root, results, "--yes")
    assert rc == 2 and needle in err and "Traceback" not in err, err
    assert "arm a on tiny (" in err                  # says which run and which data
    assert snapshot(results) == before and not any(results.iterdir())


@pytest.mark.parametrize("sampler,needle", [
    ({"name": "upper_bound_is", "presample": float("inf")}, "finite number > 1"),
    ({"name": "rho_loss", "il_epochs": 0}, "untrained"),
])
def test_parameters_that_cannot_work_are_schema_errors(sampler, needle, tmp_path, tiny_root,
                                                       tiny_defaults, capsys):
    m = write_matrix(tmp_path / "m.yaml", {**tiny_defaults, "sampler": sampler}, {"arm": [{"name": "a"}]})
    rc, out, err = run_cli(capsys, m, tiny_root, tmp_path / "results", "--yes")
    assert rc == 2 and needle in err and "Traceback" not in err, err
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").iterdir())
