"""A generic trainer: it knows batches, logits and labels, never the architecture.

SG-MFT and every baseline go through this same loop on the same data, so comparisons are fair by
construction. AdamW (with an optional learning-rate multiplier on 0-dim parameters,
`train.scalar_lr_scale`), linear warm-up then cosine decay, gradient clipping, early stopping on
dev macro-F1, seeded and resumable. Model selection looks at the dev split only; the test split is
never touched here.

Precision and speed (train.precision, train.num_threads, train.compile): the forward pass and
loss run under autocast in the dtype `semloc.precision.resolve_precision` picks (weights and
optimizer state stay fp32; fp16 adds loss scaling); see `Trainer._configure_speed`.

Callbacks (e.g. `semloc.tracking`): each gets `on_epoch_end(record)` with the epoch's history
record, on rank 0 only; the trainer knows nothing else about them.

Distributed data parallel: pass a `DistContext` (see `semloc.training.distributed`); the trainer then
wraps the model in DDP, reduces the training loss across ranks, gathers dev predictions from every
rank before computing metrics, and writes checkpoints and logs on rank 0 only.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from semloc.config import TrainConfig, resolve_device
from semloc.errors import ConfigError, SemlocError
from semloc.features.batch import FeatureBatch, drop_pictures, swap_pictures
from semloc.io import atomic_path, atomic_write_json
from semloc.metrics import HEADLINE, classification_metrics
from semloc.models.base import ModelOutput
from semloc.outputs import model_outputs
from semloc.precision import autocast, grad_scaler, precision_name, resolve_precision

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def auxiliary_loss(
    out: ModelOutput, labels: torch.Tensor, loss_fn: nn.CrossEntropyLoss
) -> torch.Tensor | None:
    """Sum of weight x cross-entropy over each auxiliary term's masked rows (None without terms).

    The same class weights and label smoothing as `loss_fn`, and the same denominator as its
    mean (the batch's posts, or their class weights), so a term whose mask is all True is exactly
    `weight * loss_fn(logits, labels)`, a masked-out row adds nothing, and DDP's per-rank
    weighting of the main loss holds for the sum as well."""
    if not out.auxiliary:
        return None
    weight = loss_fn.weight
    denom = weight[labels].sum() if weight is not None else labels.new_tensor(len(labels)).float()
    total = None
    for term in out.auxiliary:
        if term.targets is None:
            per_row = nn.functional.cross_entropy(
                term.logits.float(),
                labels,
                weight=weight,
                label_smoothing=loss_fn.label_smoothing,
                reduction="none",
            )  # (B,), class-weighted
        else:  # its own targets: a plain cross-entropy, on the same per-post scale
            per_row = nn.functional.cross_entropy(
                term.logits.float(), term.targets, reduction="none"
            )
            if weight is not None:
                per_row = per_row * weight[labels]  # keeps the denominator's per-post weights
        value = term.weight * torch.where(term.mask, per_row, 0.0).sum() / denom.clamp(min=1e-12)
        total = value if total is None else total + value
    return total


def class_weights(counts: np.ndarray) -> torch.Tensor:
    """'balanced' weights n / (C * n_c), as scikit-learn defines them; unseen classes get 0."""
    counts = np.asarray(counts, dtype=np.float64)
    weights = np.where(counts > 0, counts.sum() / (len(counts) * np.maximum(counts, 1)), 0.0)
    return torch.tensor(weights, dtype=torch.float32)


def warmup_cosine(total_steps: int, warmup_fraction: float) -> Callable[[int], float]:
    warmup = max(1, round(total_steps * warmup_fraction)) if warmup_fraction > 0 else 0

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def weight_decay_groups(
    model: nn.Module, weight_decay: float, scalar_lr: float | None = None
) -> list[dict[str, Any]]:
    """AdamW parameter groups: weight decay on matrices only, none on biases, norm gains and
    scalars (gates, CLIP's logit scale) — the usual practice, and open_clip's rule.

    `scalar_lr`: the 0-dim parameters get a third group with this learning rate (no decay);
    None keeps them in the no-decay group at the optimizer's lr (exactly the two groups). A
    LambdaLR schedule scales each group's own initial lr, so the ratio holds at every step."""
    decay, no_decay, scalars = [], [], []
    for p in model.parameters():
        if p.requires_grad:
            if p.ndim >= 2:
                decay.append(p)
            elif p.ndim == 0 and scalar_lr is not None:
                scalars.append(p)
            else:
                no_decay.append(p)
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if scalars:
        groups.append({"params": scalars, "weight_decay": 0.0, "lr": scalar_lr})
    return groups


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """torch.save through a temporary file and rename: never a half-written checkpoint."""
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


@dataclass
class TrainResult:
    best_epoch: int
    best_metrics: dict[str, Any]
    history: list[dict[str, Any]]
    stopped_early: bool


class Trainer:
    """Trains any model mapping a FeatureBatch to a ModelOutput with `.logits`.

    checkpoint_meta: everything that makes a checkpoint self-describing (resolved config, labels,
    model name/config, feature header, code version); stored verbatim in every checkpoint.
    """

    def __init__(
        self,
        model: nn.Module,
        cfg: TrainConfig,
        train_loader: DataLoader,
        dev_loader: DataLoader,
        labels: list[str],
        out_dir: str | Path,
        *,
        checkpoint_meta: dict[str, Any],
        class_counts: np.ndarray | None = None,
        dist: Any = None,
        callbacks: Sequence[Any] = (),
    ) -> None:
        self.cfg = cfg
        self.labels = labels
        self.out_dir = Path(out_dir)
        self.meta = checkpoint_meta
        self.callbacks = list(callbacks)
        self.dist = dist
        self.is_main = dist is None or dist.is_main
        self.device = (
            dist.device
            if dist is not None
            else torch.device(resolve_device(cfg.device, "train.device"))
        )
        self.model = model.to(self.device)
        self.ddp_model: nn.Module = dist.wrap(self.model) if dist is not None else self.model
        self._configure_speed()
        self.train_loader = train_loader
        self.dev_loader = dev_loader
        weight = None
        if cfg.class_weights == "balanced":
            if class_counts is None:
                raise ValueError("class_weights='balanced' needs class_counts")
            weight = class_weights(class_counts).to(self.device)
        self.loss_fn = nn.CrossEntropyLoss(weight=weight, label_smoothing=cfg.label_smoothing)
        self.optimizer = torch.optim.AdamW(
            self._param_groups(), lr=cfg.lr, weight_decay=cfg.weight_decay
        )
        self.steps_per_epoch = max(1, len(train_loader))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            warmup_cosine(self.steps_per_epoch * cfg.epochs, cfg.warmup_fraction),
        )
        self.history: list[dict[str, Any]] = []
        self.start_epoch = 0
        self.best_score = -math.inf
        self.best_epoch = -1
        self.best_metrics: dict[str, Any] = {}
        self.bad_epochs = 0

    # -------------------------------------------------------------------------- precision, speed

    def _configure_speed(self) -> None:
        """train.num_threads, train.precision (autocast dtype + loss scaler), train.compile."""
        if self.cfg.num_threads < 0:
            raise ConfigError(f"config key 'train.num_threads': {self.cfg.num_threads} is < 0")
        if self.cfg.num_threads > 0:
            torch.set_num_threads(self.cfg.num_threads)  # process-wide, as training owns it
        self.amp_dtype = resolve_precision(self.cfg.precision, self.device)
        self.precision = precision_name(self.amp_dtype)
        self.meta = {**self.meta, "precision": self.precision}  # what the run actually used
        self.scaler = grad_scaler(self.amp_dtype, self.device)
        # the compiled module shares its parameters with self.model: checkpoints stay plain
        self.forward_model: nn.Module = (
            torch.compile(self.ddp_model) if self.cfg.compile else self.ddp_model
        )
        if self.is_main and (self.amp_dtype is not None or self.cfg.compile):
            log.info(
                "training in %s%s (train.precision=%s)",
                self.precision,
                " with torch.compile" if self.cfg.compile else "",
                self.cfg.precision,
            )

    def _param_groups(self) -> list[dict[str, Any]]:
        scale = self.cfg.scalar_lr_scale
        scalar_lr = None if scale == 1.0 else self.cfg.lr * scale
        return weight_decay_groups(self.model, self.cfg.weight_decay, scalar_lr)

    # -------------------------------------------------------------------------- checkpoints

    def _payload(self, epoch: int, full: bool) -> dict[str, Any]:
        payload = {
            **self.meta,
            "epoch": epoch,
            "metrics": self.best_metrics if not full else self.history[-1] if self.history else {},
            "dev_metrics": self.best_metrics,
            "model_state": self.model.state_dict(),
        }
        if full:
            payload.update(
                optimizer_state=self.optimizer.state_dict(),
                scheduler_state=self.scheduler.state_dict(),
                torch_rng_state=torch.get_rng_state(),
                history=self.history,
                best_score=self.best_score,
                best_epoch=self.best_epoch,
                bad_epochs=self.bad_epochs,
            )
        return payload

    def resume(self, path: str | Path) -> None:
        try:
            state = torch.load(path, map_location=self.device, weights_only=True)
            self.model.load_state_dict(state["model_state"])
            self.optimizer.load_state_dict(state["optimizer_state"])
            self.scheduler.load_state_dict(state["scheduler_state"])
            torch.set_rng_state(state["torch_rng_state"].cpu())
            self.history = list(state["history"])
            self.best_score = float(state["best_score"])
            self.best_epoch = int(state["best_epoch"])
            self.best_metrics = dict(state["dev_metrics"])
            self.bad_epochs = int(state["bad_epochs"])
            self.start_epoch = int(state["epoch"]) + 1
        except (OSError, RuntimeError, KeyError, TypeError, ValueError, AttributeError) as e:
            raise SemlocError(
                f"cannot resume from {path}: it is damaged or does not fit this model "
                f"({type(e).__name__}: {e}); start over with --overwrite"
            ) from None

    # -------------------------------------------------------------------------- the loop

    def _train_epoch(self, epoch: int) -> tuple[float, float]:
        sampler = getattr(self.train_loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        self.ddp_model.train()
        total_loss, total_n = 0.0, 0
        t0 = time.perf_counter()
        n_posts = len(sampler) if sampler is not None else None
        bar = tqdm(
            total=n_posts,
            desc=f"epoch {epoch + 1}/{self.cfg.epochs}",
            unit="post",
            disable=not (self.cfg.progress and self.is_main),
            leave=False,
        )
        # mismatch augmentation and picture dropout: one generator per (seed, epoch, rank), so a
        # resumed run (which restarts at an epoch boundary) draws the same as an uninterrupted one
        rank = self.dist.rank if self.dist is not None else 0
        draws = torch.Generator().manual_seed(
            (self.cfg.seed * 1_000_003 + epoch * 1_009 + rank) % 2**63
        )
        for batch in self.train_loader:
            batch: FeatureBatch = batch.to(self.device)
            if self.cfg.swap_pictures > 0:
                batch = swap_pictures(batch, self.cfg.swap_pictures, draws)
            if self.cfg.drop_pictures > 0:
                batch = drop_pictures(batch, self.cfg.drop_pictures, draws)
            with autocast(self.amp_dtype, self.device):
                out = self.forward_model(batch)
                loss = self.loss_fn(out.logits.float(), batch.labels)
                aux = auxiliary_loss(out, batch.labels, self.loss_fn)
                if aux is not None:
                    loss = loss + aux
            self.optimizer.zero_grad(set_to_none=True)
            if self.dist is None:
                self.scaler.scale(loss).backward()
            else:
                share = self.dist.global_share(self._loss_denominator(batch))
                self.scaler.scale(loss * share).backward()
            if self.cfg.grad_clip > 0:
                self.scaler.unscale_(self.optimizer)  # clip the true gradients (no-op unless fp16)
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
            self.scaler.step(self.optimizer)  # optimizer.step(), skipped on fp16 overflow
            self.scaler.update()
            self.scheduler.step()
            total_loss += loss.item() * len(batch)
            total_n += len(batch)
            bar.update(len(batch))
            bar.set_postfix(loss=f"{total_loss / total_n:.4f}")
        bar.close()
        if self.dist is not None:
            total_loss, total_n = self.dist.sum_pair(total_loss, total_n)
        seconds = time.perf_counter() - t0
        return total_loss / max(1, total_n), total_n / max(seconds, 1e-9)

    def _loss_denominator(self, batch: FeatureBatch) -> float:
        # what the mean loss divides by (posts, or their class weights): DDP averages per-rank
        # gradients, and weighting each rank by its share of this makes the step the global-batch
        # mean that one process would take, even when the last batch splits unevenly
        weight = self.loss_fn.weight
        return float(weight[batch.labels].sum()) if weight is not None else float(len(batch))

    def _evaluate_dev(self) -> dict[str, Any]:
        with autocast(self.amp_dtype, self.device):
            preds = model_outputs(self.model, self.dev_loader, self.device)
        if self.dist is not None:
            preds = self.dist.gather_predictions(preds)
        mask = preds.labels >= 0
        metrics = classification_metrics(
            preds.labels[mask], preds.logits[mask].argmax(1), self.labels
        )
        logits = torch.from_numpy(preds.logits[mask])
        metrics["loss"] = (
            float(nn.functional.cross_entropy(logits, torch.from_numpy(preds.labels[mask])).item())
            if mask.any()
            else float("nan")
        )
        return metrics

    def fit(self) -> TrainResult:
        cfg = self.cfg
        if self.start_epoch >= cfg.epochs or (cfg.patience > 0 and self.bad_epochs >= cfg.patience):
            log.info("training already finished (epoch %d); nothing to do", self.start_epoch)
        for epoch in range(self.start_epoch, cfg.epochs):
            if cfg.patience > 0 and self.bad_epochs >= cfg.patience:
                break
            t0 = time.perf_counter()
            train_loss, posts_per_s = self._train_epoch(epoch)
            dev = self._evaluate_dev()
            score = dev[HEADLINE]
            improved = score > self.best_score
            if improved:
                self.best_score, self.best_epoch, self.bad_epochs = score, epoch, 0
                self.best_metrics = {k: v for k, v in dev.items()}
            else:
                self.bad_epochs += 1
            self.history.append(
                {
                    "epoch": epoch + 1,
                    "train_loss": train_loss,
                    "dev_loss": dev["loss"],
                    "dev_macro_f1": dev["macro_f1"],
                    "dev_accuracy": dev["accuracy"],
                    "lr": self.scheduler.get_last_lr()[0],
                    "seconds": time.perf_counter() - t0,
                    "train_posts_per_s": posts_per_s,
                }
            )
            if self.is_main:
                log.info(
                    "epoch %d/%d  train loss %.4f  dev macro-F1 %.4f  acc %.4f%s  (%.0f posts/s)",
                    epoch + 1,
                    cfg.epochs,
                    train_loss,
                    dev["macro_f1"],
                    dev["accuracy"],
                    "  *best*" if improved else "",
                    posts_per_s,
                )
                if improved:
                    save_checkpoint(self.out_dir / "best.pt", self._payload(epoch, full=False))
                save_checkpoint(self.out_dir / "last.pt", self._payload(epoch, full=True))
                atomic_write_json(self.out_dir / "history.json", self.history)
                for callback in self.callbacks:
                    callback.on_epoch_end(self.history[-1])
        stopped_early = (
            cfg.patience > 0 and self.bad_epochs >= cfg.patience and len(self.history) < cfg.epochs
        )
        return TrainResult(
            best_epoch=self.best_epoch + 1,
            best_metrics=self.best_metrics,
            history=self.history,
            stopped_early=stopped_early,
        )
