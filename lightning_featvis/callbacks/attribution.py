"""Attribution maps: where in the canvas the optimisation pushed, as feature accentuation
reports it (Hamblin et al. 2024; Horama's ``accentuation`` returns it as its alpha)."""

from __future__ import annotations

import io
from abc import ABC
from pathlib import Path

import torch
import torch.nn.functional as F
from lightning.pytorch.plugins.precision import MixedPrecision
from torchvision.utils import save_image

from lightning_featvis.callbacks.image_logger import tensorboard_writers
from lightning_featvis.callbacks.image_writer import kept_on_write_failure, logger_dir
from lightning_featvis.callbacks.roles import GroupResultHook
from lightning_featvis.errors import FeatvisError, WriteError
from lightning_featvis.files import atomic_write

#: what is appended to a target's file stem for its attribution PNG
SUFFIX = "__attribution"


def attribution_name(image_file: str) -> str:
    """The attribution PNG's name beside a target's image file: ``<stem>.png`` ->
    ``<stem>__attribution.png``."""
    return f"{Path(image_file).stem}{SUFFIX}.png"


def normalised(attribution: torch.Tensor, quantile: float = 1.0) -> torch.Tensor:
    """``attribution`` ``[..., 1, S, S]`` (non-negative) scaled to [0, 1] per map: divided by its
    ``quantile`` (1.0: its maximum; lower values saturate the brightest pixels to 1, for maps
    whose mass is a few hot pixels). An all-zero map stays zero."""
    flat = attribution.flatten(-3)
    top = flat.max(dim=-1).values if quantile >= 1.0 else torch.quantile(flat, quantile, dim=-1)
    top = top.clamp(min=torch.finfo(attribution.dtype).tiny)
    return (attribution / top[..., None, None, None]).clamp(0, 1)


class ExposesCanvasGradient(ABC):
    """What :class:`AttributionMap` reads of its objective (an
    :class:`~lightning_featvis.objectives.AccentuationObjective`).

    Attributes:
        step_canvas: the group's canvases ``[G, C, S, S]`` of the optimizer step under way, as
            the model's views were cut from them (differentiable, ``retain_grad``): after the
            step's backward its ``.grad`` is ``d loss / d canvas`` (loss: everything minimised,
            penalties included). ``None`` before the first step.
    """

    step_canvas: torch.Tensor | None


class AttributionMap(GroupResultHook):
    """Accumulates ``|d loss / d canvas|`` over every step of a group, summed over colour
    channels, and writes each target's map when its group finishes: the pixels the
    optimisation needed to change, i.e. where the unit's accentuated feature sits in the photo.

    Per target it writes ``<layer>__<unit>__attribution.png`` (grey, normalised to [0, 1] per map,
    see ``quantile``) beside the target's PNG in ``<log_dir>/<dirname>``, and logs it to
    TensorBoard as ``<model>/<layer>/<unit>/attribution``. The raw (unnormalised) maps stay in
    :attr:`maps`, ``{target key: [1, S, S]}`` on the CPU.

    When a canvas grows between octaves the map so far is resampled (bilinear) to the new size, so
    a map always has the final canvas's size. Under 16-bit mixed precision the gradients are
    unscaled first (the loss scale changes between steps); a step whose gradient is not finite
    adds nothing.

    Needs an objective that exposes its canvas gradient (:class:`ExposesCanvasGradient`); the
    :class:`~lightning_featvis.objectives.AccentuationObjective` adds this callback by itself.

    Args:
        dirname: folder inside the Trainer's log directory (the PNGs' folder by default).
        quantile: each PNG is divided by this quantile of its map (1.0: the maximum).
    """

    def __init__(self, dirname: str = "images", quantile: float = 1.0) -> None:
        if not 0.0 < quantile <= 1.0:
            raise FeatvisError(f"AttributionMap quantile must be in (0, 1] (1: normalise by the maximum), got {quantile}")
        self.dirname, self.quantile = dirname, quantile
        self.sums: torch.Tensor | None = None  # [G, 1, S, S] of the group under way, float32
        self.maps: dict[str, torch.Tensor] = {}
        self.directory: Path | None = None

    def setup(self, trainer, pl_module, stage) -> None:
        if not isinstance(pl_module, ExposesCanvasGradient):
            raise FeatvisError(
                f"AttributionMap reads the canvas gradient of an AccentuationObjective; {type(pl_module).__name__} "
                "does not expose it (remove the callback or use lightning_featvis.AccentuationObjective)"
            )
        self.directory = Path(logger_dir(trainer) or trainer.default_root_dir) / self.dirname
        self.maps = {}
        finished = pl_module.plan.finished
        if finished is not None and trainer.is_global_zero:
            # a resumed run's folder holds the whole sweep: bring the earlier run's maps along
            for row in finished.rows:
                earlier = finished.results_dir / attribution_name(row["file"])
                if earlier.is_file():
                    atomic_write(self.directory / earlier.name, earlier.read_bytes())

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch["step"] == 0:  # a new group
            self.sums = None

    def on_after_backward(self, trainer, pl_module) -> None:
        canvas = pl_module.step_canvas
        if canvas is None or canvas.grad is None:
            return
        grad = canvas.grad.detach().float()
        precision = trainer.precision_plugin
        if isinstance(precision, MixedPrecision) and precision.scaler is not None:
            grad = grad / precision.scaler.get_scale()
        # a non-finite step (an overflow the scaler skips, a target the guard stops) adds nothing
        magnitude = torch.nan_to_num(grad.abs().sum(dim=1, keepdim=True), nan=0.0, posinf=0.0)
        self.sums = self._at_size(self.sums, magnitude) + magnitude

    @staticmethod
    def _at_size(sums: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
        """The sums so far ``[G, 1, S', S']`` at ``like``'s size (zeros when there are none)."""
        if sums is None or sums.shape[0] != like.shape[0]:
            return torch.zeros_like(like)
        sums = sums.to(like.device)  # a checkpoint's sums come back on the CPU
        if sums.shape[-1] != like.shape[-1]:  # the canvas grew: carry the map over
            sums = F.interpolate(sums, size=like.shape[-2:], mode="bilinear", align_corners=False)
        return sums

    def group_maps(self, pl_module) -> torch.Tensor:
        """This group's maps from every rank, padding removed, ``[N, 1, S, S]`` in the order of
        the group's result (a group restored from a checkpoint that had already ended: zeros)."""
        slots, size = len(pl_module.targets), pl_module.param.size
        sums = self.sums
        if sums is None or sums.shape[0] != slots:
            sums = torch.zeros(slots, 1, size, size, device=pl_module.device)
        sums = self._at_size(sums, torch.empty(slots, 1, size, size, device=sums.device))
        valid = pl_module.valid().long()  # not bool: every backend gathers integers
        if pl_module.trainer.world_size > 1:  # the same order as gather_group's
            sums, valid = pl_module.all_gather(sums).flatten(0, 1), pl_module.all_gather(valid).flatten()
        return sums[valid.bool()].cpu()

    def on_target_group_end(self, trainer, pl_module, result) -> None:
        maps = self.group_maps(pl_module)  # every rank: a collective
        if not trainer.is_global_zero:
            return
        pictures = normalised(maps, self.quantile)
        model = pl_module.network.name
        try:
            for target, raw, picture in zip(result.targets, maps, pictures):
                self.maps[target.key] = raw
                buffer = io.BytesIO()
                save_image(picture, buffer, format="png")
                atomic_write(self.directory / f"{target.file_stem}{SUFFIX}.png", buffer.getvalue())
        except WriteError as err:
            raise kept_on_write_failure(err, len(self.maps), f"attribution maps in {self.directory}") from err
        for writer in tensorboard_writers(trainer):
            for target, picture in zip(result.targets, pictures):
                where = f"{target.layer or 'output'}/{target.unit.name}" if not target.terms else f"sum/{target.description}"
                copy = f"/image{target.copy}" if target.copy else ""
                writer.add_image(f"{model}/{where}{copy}/attribution", picture, trainer.global_step)
            writer.flush()

    def state_dict(self) -> dict:
        # a checkpoint inside a group resumes its map too
        return {"sums": None if self.sums is None else self.sums.cpu()}

    def load_state_dict(self, state_dict: dict) -> None:
        self.sums = state_dict.get("sums")
