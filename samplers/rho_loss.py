"""RHO-LOSS (Mindermann et al., ICML 2022, "Prioritized Training on Points that are
Learnable, Worth Learning, and Not Yet Learnt"), as in the reference code OATML/RHO-Loss.

Rules (file references are to that repository):

- Holdout split: the reference's CIFAR-10 data module (``src/datamodules/datamodules.py``,
  ``CIFAR10DataModule``) trains the target model on the even indices of the 50,000
  training images and the irreducible-loss (IL) model on the odd ones. Here likewise:
  training index i is holdout iff i is odd, for any data set. The target model is never
  trained on a holdout example: every candidate is drawn from the even indices (tested).
- IL model (``configs/experiment/cifar10_resnet18_irred.yaml``, ``configs/irreducible_training.yaml``,
  ``configs/optimizer/adamw.yaml``): the same ResNet-18 as the target model, trained on
  the holdout half with data augmentation (``valset_data_aug: True``), AdamW at lr 1e-3,
  batch 320, 100 epochs. Its loss on every (un-augmented) non-holdout example, in eval
  mode, is computed once (``src/train_irreducible.py`` +
  ``utils.compute_losses_with_sanity_checks``) and kept as the IL loss.
  Deviation: the reference keeps the IL checkpoint with the lowest loss on the *test*
  set (its ``val_loss`` callback validates on the test loader); we keep the last epoch's
  model, so no test data is used for training decisions.
  Here the IL model is trained inside the sampler at its first ``start_epoch`` through
  ``ctx.train_aux_model`` (the suite's trainer builds the run's architecture and width;
  initialisation, order and augmentation come from the sampler's generator). Its cost is
  the method's: ``il_epochs * |holdout|`` forwards and backprops plus ``|train|``
  forwards, in the ``forwards``/``backprops`` columns and in the first epoch's seconds.
  The IL losses are sampler state, so a resumed run does not retrain the IL model.
- Every step (``src/models/MultiModels.py::training_step`` with
  ``src/curricula/selection_methods.py::reducible_loss_selection``): a big batch of
  ``n_big`` candidates (consecutive chunks of successive random permutations of the
  non-holdout examples, as the reference's shuffled loader with batch 320 gives), augmented
  and scored with a no-grad **train-mode** forward (``ctx.score``, ``n_big`` forwards
  counted); the batch is the b candidates with the largest reducible loss ``training loss
  - IL loss`` (``top_x_indices``), trained on the same augmented views (``Batch.inputs``).
- ``score_mode``: how that scoring forward treats BatchNorm. ``train_update`` (default,
  the reference): ``MultiModels.training_step`` puts the target model in train mode
  (``selection_train_mode: True``, its default) and ``reducible_loss_selection`` runs a
  plain ``torch.no_grad()`` forward, which *updates* the BatchNorm running statistics with
  the n_big candidates, so eval-time BatchNorm sees every scored big batch. ``train``
  (ours, the suite's earlier rule): same forward, running statistics restored afterwards,
  so eval-time BatchNorm only sees the trained batches. ``eval``: the reference's
  ``selection_train_mode: False`` (running statistics used, not updated).

Defaults: ``n_big`` = 10·b (``percent_train: 0.1`` in ``configs/model/multi_model.yaml``),
``il_epochs`` 100, ``il_batch_size`` 320, ``il_lr`` 1e-3 (files above), ``il_weight_decay``
0.01 (PyTorch's AdamW default, which ``adamw.yaml`` leaves unset). The suite's epoch is
n // b steps as for every sampler (the reference's epoch is one pass of big batches).

No host sync per step (top-k has a fixed size); one at the first ``start_epoch`` (the
IL training reads two seeds).
"""
from __future__ import annotations

from typing import Any, Optional

import torch
from torch import Tensor

from .base import SCORE_MODES, Batch, Cost, HostSyncs, Sampler, StepContext
from .registry import register
from .traits import ArmStyle, NotePart, PerfRow, PlotTraits


def holdout_mask(n: int, device: torch.device | str = "cpu") -> Tensor:
    """True for the IL model's holdout examples: the odd indices (reference CIFAR split)."""
    return torch.arange(n, device=device) % 2 == 1


def _check_int(name: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return value


@register("rho_loss")
class RhoLoss(Sampler):
    """``n_big``: candidates scored per step (null = 10 x batch size; must exceed b);
    ``il_epochs``, ``il_batch_size``, ``il_lr``, ``il_weight_decay``: the IL model's AdamW
    training on the holdout half; ``score_mode``: BatchNorm in the scoring forward
    (``train_update`` = the reference, ``train`` = ours, ``eval``). Epoch metrics: ``rho_il_mean`` (mean IL loss over the
    training half) and ``rho_reducible_selected`` (mean reducible loss of the trained
    examples this epoch)."""

    revision = 2   # 2: scoring keeps the BatchNorm update (the reference); 1 restored it

    # training the IL model at the first epoch start reads seeds and AdamW's counters: once
    # per run; steps and later epoch starts do not sync
    host_syncs = HostSyncs(once_per_run_setup=True)
    test_variants = {"train-restored": {"score_mode": "train"}}
    # magenta. The note: a reader must know the target model sees half the data and that
    # the IL model's cost lands in epoch 1, with the runs' own numbers.
    plot = PlotTraits(
        colour="#E7298A", arms={"rho_loss": ArmStyle("#E7298A", 120)}, report_rank=3,
        note=(NotePart("**{arm}** (RHO-LOSS): the target model trains only on the "),
              NotePart("{n_target:,} even-index examples of {n_train:,}", needs=("n_train",)),
              NotePart("the even-index half", unless=("n_train",)),
              NotePart("; the odd-index half is the irreducible-loss model's holdout and is "
                       "never trained on by the target model. The IL model's training "
                       "({sampler.il_epochs} epochs) and scoring are counted in epoch 1: about "
                       "{epoch1_extra_backprops:,.0f} extra backprops per run"),
              NotePart(" (epoch 1 minus a later epoch's count).", needs=("epoch1_extra_backprops",)),
              NotePart(".", unless=("epoch1_extra_backprops",))),
        note_values={"n_target": "(n_train + 1) // 2"})

    @classmethod
    def perf_rows(cls, n_train: Optional[int] = None,
                  batch_size: Optional[int] = None) -> dict[str, PerfRow]:
        # the IL model trained 1 epoch: its once-per-run cost is not part of a step time;
        # n_big the default 10b, capped by the non-holdout half of the timed data
        params: dict[str, Any] = {"il_epochs": 1}
        if n_train and batch_size:
            params["n_big"] = max(batch_size + 1, min(10 * batch_size, n_train // 2))
        return {"rho_loss": PerfRow(params)}

    @classmethod
    def test_params(cls, n_train: int, batch_size: int) -> dict[str, Any]:
        return {"n_big": min(2 * batch_size, (n_train + 1) // 2), "il_epochs": 1}

    def check_sizes(self, *, n_train: int, batch_size: int, epochs: int) -> list[str]:
        big, n_target = self.big_size(batch_size), (n_train + 1) // 2
        if big <= batch_size:
            return [f"rho_loss: n_big {big} must be larger than the batch size {batch_size} "
                    "(the batch is the top-b of n_big candidates); raise n_big"]
        if big > n_target:
            return [f"rho_loss: n_big {big} is more than the {n_target} non-holdout examples of "
                    f"{n_train} (the other half trains the irreducible-loss model); lower n_big "
                    "or batch_size (n_big defaults to 10 x batch_size)"]
        return []

    def cost(self, *, n_train: int, batch_size: int, epochs: int) -> Cost:
        half = n_train / 2
        return Cost(forwards_per_step=self.big_size(batch_size),
                    backprops_per_run=self.il_epochs * half,   # the IL model's training
                    forwards_per_run=half)                     # its losses of the other half

    def __init__(self, n_big: Optional[int] = None, il_epochs: int = 100, il_batch_size: int = 320,
                 il_lr: float = 1.0e-3, il_weight_decay: float = 0.01,
                 score_mode: str = "train_update") -> None:
        if score_mode not in SCORE_MODES:
            raise ValueError(f"score_mode must be one of {', '.join(SCORE_MODES)}, got {score_mode!r}")
        self.score_mode = score_mode
        if n_big is not None:
            _check_int("n_big", n_big, 2)
        if isinstance(il_epochs, int) and not isinstance(il_epochs, bool) and il_epochs == 0:
            raise ValueError("il_epochs must be >= 1: with 0 the irreducible-loss model is "
                             "untrained and the selection is noise")
        _check_int("il_epochs", il_epochs, 1)
        _check_int("il_batch_size", il_batch_size, 1)
        for name, value, low_ok in (("il_lr", il_lr, False), ("il_weight_decay", il_weight_decay, True)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                    value >= 0 if low_ok else value > 0) or value == float("inf"):
                raise ValueError(f"{name} must be a finite number {'>= 0' if low_ok else '> 0'}, got {value!r}")
        self.n_big = n_big
        self.il_epochs, self.il_batch_size = il_epochs, il_batch_size
        self.il_lr, self.il_weight_decay = float(il_lr), float(il_weight_decay)
        self._il: Optional[Tensor] = None        # IL loss per training index (nan on holdout)
        self._train_idx: Optional[Tensor] = None
        self._perm: Optional[Tensor] = None
        self._pos = 0
        self._sel_sum: Optional[Tensor] = None   # reducible loss of selected, summed this epoch
        self._sel_n = 0

    def big_size(self, b: int) -> int:
        return 10 * b if self.n_big is None else self.n_big

    def start_epoch(self, epoch: int, ctx: StepContext) -> None:
        n, b = ctx.n_train, ctx.batch_size
        # even indices train the target model, odd ones are the holdout (no nonzero: no sync)
        self._train_idx = torch.arange(0, n, 2, device=ctx.device)
        problems = self.check_sizes(n_train=n, batch_size=b, epochs=ctx.epochs or 1)
        if problems:  # a loop outside the suite's runner, which refuses these up front
            raise ValueError(problems[0])
        if self._il is None:
            holdout_idx = torch.arange(1, n, 2, device=ctx.device)
            il = ctx.train_aux_model(holdout_idx, self._train_idx, epochs=self.il_epochs,
                                     batch_size=self.il_batch_size, lr=self.il_lr,
                                     weight_decay=self.il_weight_decay)
            full = torch.full((n,), float("nan"), dtype=torch.float32, device=ctx.device)
            full[self._train_idx] = il.float()
            self._il = full
        self._sel_sum = torch.zeros((), dtype=torch.float32, device=ctx.device)
        self._sel_n = 0

    def next_batch(self, ctx: StepContext) -> Batch:
        if self._il is None or self._train_idx is None:
            raise RuntimeError("start_epoch must be called before next_batch")
        b = ctx.batch_size
        big = self.big_size(b)
        m = int(self._train_idx.shape[0])
        if self._perm is None or self._pos + big > m:
            self._perm = self._train_idx[torch.randperm(m, generator=ctx.generator, device=ctx.device)]
            self._pos = 0
        cand = self._perm[self._pos:self._pos + big]
        self._pos += big
        inputs = ctx.augment(cand)
        reducible = ctx.score(cand, inputs, mode=self.score_mode) - self._il[cand]
        top = torch.topk(reducible, b, largest=True, sorted=False).indices
        if self._sel_sum is not None:
            self._sel_sum = self._sel_sum + reducible[top].sum()
            self._sel_n += b
        return Batch(idx=cand[top], inputs=inputs[top])

    def irreducible_losses(self) -> Tensor:
        """IL loss per training index (nan on the holdout half)."""
        assert self._il is not None
        return self._il.clone()

    def epoch_metrics(self) -> dict[str, float]:
        if self._il is None or self._train_idx is None:
            return {}
        out = {"rho_il_mean": float(self._il[self._train_idx].mean())}
        if self._sel_n and self._sel_sum is not None:
            out["rho_reducible_selected"] = float(self._sel_sum) / self._sel_n
        return out

    def state_dict(self) -> dict[str, Any]:
        def clone(t: Optional[Tensor]) -> Optional[Tensor]:
            return None if t is None else t.detach().clone()
        return {"il": clone(self._il), "train_idx": clone(self._train_idx), "perm": clone(self._perm),
                "pos": self._pos, "sel_sum": clone(self._sel_sum), "sel_n": self._sel_n}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._il, self._train_idx, self._perm = state["il"], state["train_idx"], state["perm"]
        self._pos, self._sel_sum, self._sel_n = int(state["pos"]), state["sel_sum"], int(state["sel_n"])
