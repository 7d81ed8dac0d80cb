"""The README's and docs' code and references are tested, so they cannot drift from the
repository.

- The two "Using a sampler in your own training loop" blocks are extracted from
  docs/own-loop.md and executed on CPU, with the sizes on the line marked ``# sizes`` made tiny. After
  training, every BatchNorm layer must have counted exactly one update per optimiser step:
  scoring forwards (Selective Backprop, the loss oracle) must not touch running statistics.
"""
from __future__ import annotations

import re
from pathlib import Path
from unittest import mock

import pytest
import torch
import torch.nn.functional as F

import samplers

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()
#: The README and every page of docs/ (reference material the README links to).
PAGES = {p: p.read_text() for p in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]}
OWN_LOOP_PAGE = (REPO / "docs" / "own-loop.md").read_text()
SIZES = re.compile(r"^n_train, batch_size, epochs, width = .*# sizes$", re.M)
TINY = "n_train, batch_size, epochs, width = 256, 64, 1, 0.0625"
STEPS = 256 // 64


def _python_blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", OWN_LOOP_PAGE, re.S | re.M)


def _block(needle: str) -> str:
    found = [b for b in _python_blocks() if needle in b]
    assert len(found) == 1, f"expected one docs/own-loop.md python block containing {needle!r}"
    code = found[0]
    assert len(SIZES.findall(code)) == 1, "the block needs its '# sizes' line (the test shrinks it)"
    return SIZES.sub(TINY, code)


OWN_LOOP = "for _ in range(n_train // batch_size):"
LOADER_LOOP = "for x, y, idx in loader:"


def _run(code: str) -> dict:
    ns: dict = {"__name__": "readme_example"}
    with mock.patch("torch.cuda.is_available", return_value=False):   # executed on CPU
        exec(compile(code, "docs/own-loop.md", "exec"), ns)
    return ns


def _bn_counts(model: torch.nn.Module) -> set[int]:
    return {int(m.num_batches_tracked) for m in model.modules()
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)}


def test_readme_code_is_device_agnostic():
    for code in (_block(OWN_LOOP), _block(LOADER_LOOP)):
        assert 'torch.device("cuda")' not in code and "device=\"cuda\"" not in code
        assert "torch.cuda.is_available()" in code


@pytest.mark.parametrize("build", [
    None,                                                    # as written (IMPON)
    'samplers.build("selective_backprop", beta=3)',
    'samplers.build("loss_oracle", bank_size=64)',
])
def test_readme_own_loop_runs_and_scoring_leaves_batchnorm_alone(build):
    code = _block(OWN_LOOP)
    if build is not None:
        code, n = re.subn(r"samplers\.build\(.*\)", build, code)
        assert n == 1
    ns = _run(code)
    assert _bn_counts(ns["model"]) == {STEPS}            # one update per training step
    assert all(torch.isfinite(p).all() for p in ns["model"].parameters())


def test_readme_dataloader_loop_runs_and_scoring_leaves_batchnorm_alone():
    ns = _run(_block(LOADER_LOOP))
    assert _bn_counts(ns["model"]) == {STEPS}
    assert ns["ctx"].forwards > 0                        # Selective Backprop did score


def test_batchnorm_check_catches_training_mode_scoring(monkeypatch):
    """The check above can fail: with a naive score_fn (train mode, no restore, the README's
    old code) Selective Backprop's scoring forwards update BatchNorm."""
    def naive(model, **kw):
        return lambda x, y: F.cross_entropy(model(x), y, reduction="none")
    monkeypatch.setattr(samplers, "score_fn", naive)
    code = re.sub(r"samplers\.build\(.*\)", 'samplers.build("selective_backprop", beta=3)',
                  _block(OWN_LOOP))
    ns = _run(code)
    assert min(_bn_counts(ns["model"])) > STEPS


def test_score_fn_eval_mode_and_restores_train_state():
    import models
    model = models.build("resnet18", 10, width=0.0625)
    model.train()
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for mode in ("train", "eval"):
        losses = samplers.score_fn(model, mode=mode, chunk_size=3)(x, y)
        assert losses.shape == (8,) and not losses.requires_grad
        assert model.training
        assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    model.eval()
    want = F.cross_entropy(model(x), y, reduction="none").detach()
    model.train()
    torch.testing.assert_close(samplers.score_fn(model, mode="eval")(x, y), want)
    with pytest.raises(ValueError, match="mode"):
        samplers.score_fn(model, mode="test")


# --- every reference in the README resolves inside the repository ------------------------
REPO_PATH = re.compile(r"^(?:benchmarks|samplers|models|plots|tests|results|\.ci)/[\w./-]+$")


def _headings(text: str) -> set[str]:
    return {m.strip() for m in re.findall(r"^#{1,6} (.+)$", text, re.M)}


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces -> '-'."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def reference_problems(text: str, root: Path = REPO, base: Path | None = None) -> list[str]:
    """What in ``text`` (markdown of a page in ``base``, default the repository root) points
    at nothing inside the repository.

    Checked: link and image targets (files relative to the page, and ``#anchors`` against
    the headings of the page or of the linked markdown page), repository paths written in
    backticks (``samplers/scoring.py``; templated ones with ``<...>``, ``*`` or ``{...}``
    are skipped), quoted section names after "see"/"section" (``see "Speed"``), and section
    signs or design documents that are not shipped (``§5``, ``DESIGN``).
    """
    base = root if base is None else base
    problems = []
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)    # code is tested above
    heads = _headings(text)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"^[a-z]+://", target):
            continue
        path, _, anchor = target.partition("#")
        if path and not (base / path).exists():
            problems.append(f"link to missing file {path}")
        elif anchor and path.endswith(".md"):
            other = re.sub(r"^```.*?^```", "", (base / path).read_text(), flags=re.S | re.M)
            if anchor not in {_slug(h) for h in _headings(other)}:
                problems.append(f"link to missing section {path}#{anchor}")
        if anchor and not path and anchor not in {_slug(h) for h in heads}:
            problems.append(f"link to missing section #{anchor}")
    for token in re.findall(r"`([^`\s]+)`", text):
        if REPO_PATH.match(token) and not re.search(r"[<*{]", token) and not (root / token).exists():
            problems.append(f"path {token} does not exist")
    for name in re.findall(r"(?:see|section) \"([^\"]+)\"", text):
        if name not in heads:
            problems.append(f"reference to missing section \"{name}\"")
    for bad in re.findall(r"[^\n]*(?:§|DESIGN)[^\n]*", text):
        problems.append(f"reference outside the repository: {bad.strip()}")
    return problems


@pytest.mark.parametrize("page", sorted(PAGES), ids=lambda p: str(p.relative_to(REPO)))
def test_every_reference_of_the_readme_and_docs_resolves(page: Path):
    assert reference_problems(PAGES[page], base=page.parent) == []


def test_the_readme_is_a_first_screen_that_links_every_doc():
    """Reference material lives in docs/; the README links each page of it."""
    assert README.count("\n") < 250
    for page in (REPO / "docs").glob("*.md"):
        assert f"(docs/{page.name})" in README, page.name


def test_reference_checker_catches_dangling_references():
    bad = ("Methods (DESIGN §6). See [x](docs/nothing.md) and [y](#no-such-section), "
           "`samplers/nothing.py`, see \"Nowhere\".\n## Speed\nsee \"Speed\", [ok](#speed), "
           "`samplers/base.py`, `results/<matrix>/report.md`\n")
    got = reference_problems(bad + "[z](README.md#no-such-heading), [w](README.md#results)\n")
    assert len(got) == 6, got
    assert any("README.md#no-such-heading" in p for p in got)
    assert any("docs/nothing.md" in p for p in got) and any("#no-such-section" in p for p in got)
    assert any("samplers/nothing.py" in p for p in got) and any("Nowhere" in p for p in got)
    assert any("DESIGN" in p for p in got)
