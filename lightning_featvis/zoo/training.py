"""Supervised training of a model adapter's network, e.g. to (re)train the embedded digits ViT."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from lightning_featvis.callbacks.image_writer import done_message, logger_dir
from lightning_featvis.errors import FeatvisError
from lightning_featvis.files import atomic_write
from lightning_featvis.models.adapter import ModelAdapter


class ImageClassifier(L.LightningModule):
    """Trains ``network.build()`` with cross-entropy on ``(images [B, 3, H, W] in [0, 1], labels [B])``.

    Images are mapped through ``network.normalize`` before the forward, so the trained weights
    expect exactly the input the adapter gives them later.

    Args:
        network: the adapter whose network is trained (built untouched and left trainable).
        lr: peak learning rate of the one-cycle schedule.
        weight_decay: AdamW weight decay, applied to linear and convolution weights only.
        label_smoothing: cross-entropy label smoothing.
        export: when set, the network's plain ``state_dict`` is written to this path at the end
            of ``fit`` (loadable by the adapter's ``checkpoint`` argument).
    """

    def __init__(
        self,
        network: ModelAdapter,
        lr: float = 1e-3,
        weight_decay: float = 0.05,
        label_smoothing: float = 0.0,
        export: str | None = None,
    ) -> None:
        super().__init__()
        if not lr > 0:
            raise FeatvisError(f"lr must be positive, got {lr}")
        # the adapter is a config object rebuilt from YAML, not a hyperparameter value
        self.save_hyperparameters(ignore=["network"])
        self.network = network
        self.net = network.build()
        # adapters may hand out networks frozen for visualisation; training needs the gradients
        self.net.requires_grad_(True)
        self.log_dir: str | None = None  # set in setup, said at the end

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Class logits ``[B, K]`` of ``[B, 3, H, W]`` images in [0, 1]."""
        return self.net(self.network.normalize(images))

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        images, labels = batch
        loss = F.cross_entropy(self(images), labels, label_smoothing=self.hparams.label_smoothing)
        self.log("train_loss", loss, prog_bar=True, batch_size=len(labels))
        return loss

    def _evaluate(self, batch: tuple[torch.Tensor, torch.Tensor], prefix: str) -> None:
        images, labels = batch
        logits = self(images)
        # epoch values are batch-size weighted means, i.e. exact dataset loss and accuracy
        self.log(f"{prefix}_loss", F.cross_entropy(logits, labels), batch_size=len(labels), sync_dist=True)
        accuracy = (logits.argmax(dim=-1) == labels).float().mean()
        self.log(f"{prefix}_acc", accuracy, prog_bar=True, batch_size=len(labels), sync_dist=True)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def configure_optimizers(self):
        # decaying norms, biases, position embeddings or the class token only hurts small ViTs
        decay, no_decay = [], []
        for module in self.net.modules():
            for name, param in module.named_parameters(recurse=False):
                is_weight = name == "weight" and isinstance(module, (nn.Linear, nn.Conv2d))
                (decay if is_weight else no_decay).append(param)
        optimizer = torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": self.hparams.weight_decay},
                {"params": no_decay, "weight_decay": 0.0},
            ],
            lr=self.hparams.lr,
        )
        schedule = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=self.hparams.lr, total_steps=self.trainer.estimated_stepping_batches
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def setup(self, stage: str) -> None:
        self.log_dir = logger_dir(self.trainer)  # every rank, now (see logger_dir)

    def on_fit_end(self) -> None:
        where = []
        if self.hparams.export and self.trainer.is_global_zero:
            where.append(f"weights in {export_state_dict(self.net, self.hparams.export)}")
        checkpoint = self.trainer.checkpoint_callback
        if checkpoint is not None and checkpoint.dirpath:
            where.append(f"checkpoints in {checkpoint.dirpath}")
        if self.trainer.is_global_zero:
            print(done_message("; ".join(where) or "trained", self.log_dir), file=sys.stderr)


def export_state_dict(net: nn.Module, path: str | Path) -> Path:
    """Write ``net``'s float32 ``state_dict`` to ``path`` atomically; returns the path.

    The file is written next to its destination and renamed into place, so an interrupted
    export never leaves a truncated checkpoint where a loader would pick it up.
    """
    path = Path(path).expanduser()
    state = {key: value.detach().cpu().float() if value.is_floating_point() else value.detach().cpu()
             for key, value in net.state_dict().items()}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write(path, buffer.getvalue())
    return path
