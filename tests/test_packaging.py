"""The conda environment and the pip dependencies must describe the same environment."""
import re
import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent


def _name(req: str) -> str:
    return re.split(r"[<>=!~ \[]", req.strip(), maxsplit=1)[0].lower()


def test_environment_yml_matches_pyproject():
    py = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = {r.strip() for r in py["dependencies"] + py["optional-dependencies"]["dev"]}
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    have = {r.strip() for r in pip if not r.startswith("-e")}
    assert have == wanted, f"only in environment.yml: {have - wanted}; only in pyproject: {wanted - have}"
    assert {_name(r) for r in wanted} >= {"torch", "torchvision", "pandas", "matplotlib", "seaborn",
                                          "pyyaml", "tqdm", "submitit", "pytest"}


def test_ci_runs_make_test_and_readme_shows_it():
    assert "make test" in (REPO / ".ci" / "run").read_text()
    readme = (REPO / "README.md").read_text()
    assert "make test" in readme and "make reproduce" in readme


def test_samplers_never_import_benchmarks():
    for path in (REPO / "samplers").glob("*.py"):
        text = path.read_text()
        assert not re.search(r"^\s*(from|import)\s+benchmarks", text, re.M), path
