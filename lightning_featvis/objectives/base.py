"""The base of every visualization objective: a LightningModule whose only parameter is the image."""

from __future__ import annotations

import sys
import warnings
from abc import abstractmethod
from dataclasses import dataclass, field
from typing import Any

import lightning as L
import torch
from lightning.pytorch.cli import OptimizerCallable
from torch.nn.parallel import DistributedDataParallel

from lightning_featvis.callbacks import ImageLogger, ImageWriter
from lightning_featvis.data import Target, TargetDataModule
from lightning_featvis.errors import FeatvisError
from lightning_featvis.models.adapter import ModelAdapter
from lightning_featvis.params import ImageParam, PixelImage
from lightning_featvis.probe import Probe
from lightning_featvis.schedule import Octave, linear, locate
from lightning_featvis.seeding import derive_seed, run_seed
from lightning_featvis.units import as_tokens, check_unit, select

# Benign by design: the frozen network stays in eval mode; batches describe targets (frozen
# dataclasses Lightning cannot move, hence our transfer_batch_to_device); GroupSteps knows its
# exact length and is never split across workers; a resumed sweep may have nothing left to do;
# a checkpoint taken inside the epoch resumes exactly (resume_position), though Lightning cannot see it.
for _message in (
    r".*module\(s\) in eval mode.*",
    r".*resuming from a checkpoint that ended before the epoch ended.*",
    r".*Total length of `(DataLoader|CombinedLoader)` across ranks is zero.*",
    r".*overridden `transfer_batch_to_device`.*",
    r".*`IterableDataset` has `__len__` defined.*",
    r".*does not have many workers.*",
):
    warnings.filterwarnings("ignore", message=_message)


@dataclass
class GroupResult:
    """What a finished group produced (gathered from every rank onto each).

    Attributes:
        targets: the targets, one per image (padding removed).
        images: their final canvases ``[N, C, S, S]`` in [0, 1] (clamped), on the CPU (a text
            run's: the final input embeddings ``[N, T, D]``, see :meth:`rendered`).
        activations: mean selected activation of each target's centre view ``[N]``.
        losses: each target's loss on its centre view ``[N]`` (regularization included; for
            reconstruction, the distance to the target photo's output).
        notes: per target, ``""`` or why it stopped early (``non-finite loss at step 12``: its
            image is the last finite one).
    """

    targets: list[Target]
    images: torch.Tensor
    activations: torch.Tensor
    losses: torch.Tensor
    notes: list[str] = field(default_factory=list)


def _keep_local_gradients(_state, bucket):
    """DDP communication hook that does not all-reduce: each rank optimises its own targets,
    so averaging their image gradients would mix unrelated targets. (No annotations: DDP checks
    them against ``GradBucket`` and this module's postponed annotations are strings.)"""
    future: torch.futures.Future = torch.futures.Future()
    future.set_result(bucket.buffer())
    return future


class VisualizationObjective(L.LightningModule):
    """Finds input images that drive units of a frozen network.

    One batch is one optimizer step of one group of targets (see :class:`TargetDataModule`).
    Subclasses say what to maximise by overriding :meth:`loss` (and optionally :meth:`select`
    or :meth:`regularization`).

    Args:
        network: the model adapter (``lightning_featvis.models``); its network is frozen and
            kept in ``eval()``.
        octaves: the phases of a render (canvas size, steps, learning rate). Default: 100
            steps at the model's input size.
        param: the image parameterization (default: pixels initialised from N(0.7, 1/20)).
        optimizer: the optimizer, e.g. ``{class_path: torch.optim.Adam, init_args: {lr: 0.05}}``
            in YAML (default: plain gradient descent, ``SGD(lr=1.0)``).
    """

    def __init__(
        self,
        network: ModelAdapter,
        octaves: list[Octave] | None = None,
        param: ImageParam | None = None,
        optimizer: OptimizerCallable | None = None,
    ) -> None:
        super().__init__()
        # construction stays cheap and never fails: the network is built and everything is
        # checked in setup(), where errors reach the user as themselves (the CLI's argument
        # parser would wrap errors raised here into an unreadable one)
        self.network = network
        self.net: torch.nn.Module | None = None
        self.octaves = octaves or [Octave(steps=100)]
        self.param = param if param is not None else PixelImage()
        self.optimizer_factory = optimizer
        # where each target's model-sized view sits in its canvas, as fractions of the free room
        # (0.5 = centred); PositionalJitter moves it
        self.view_position = torch.full((0, 2), 0.5)
        self.targets: tuple[Target | None, ...] = ()
        self._group: int | None = None
        self._octave: int | None = None
        # where the run is, for checkpoints: the last batch begun and whether its hooks ended
        self._position, self._step, self._batch_ended = -1, -1, True
        self._restored: dict | None = None  # the position a checkpoint brought back
        # targets stopped by a NaN or inf: the step and kind per slot (-1: running), and each
        # slot's storage before the step under way (what a stopped target goes back to)
        self._stopped_step = torch.empty(0, dtype=torch.long)
        self._stopped_kind = torch.empty(0, dtype=torch.long)
        self._before_step: list[torch.Tensor] = []
        self._probes: dict[tuple[str, ...], Probe] = {}
        # the frozen network is not saved with checkpoints (see on_save_checkpoint)
        self.strict_loading = False

    # --- what subclasses customise -------------------------------------------------------

    #: where a run's finished results and their table are (inside the log directory), for a
    #: rerun of the same config to take them over: ImageWriter's PNGs and manifest
    results_table: tuple[str, str] = ("images", "manifest.csv")

    @property
    def default_layer(self) -> str | None:
        """Layer for targets that name none."""
        return None

    def select(self, acts: dict[str, torch.Tensor], target: Target) -> torch.Tensor:
        """The activations ``target`` names, ``[B, N]`` (B: this target's views)."""
        return select(acts[target.layer], self.network.layout(target.layer), target.unit)

    @abstractmethod
    def loss(self, selected: torch.Tensor, target: Target) -> torch.Tensor:
        """Loss to minimise per view, ``[B]``, from ``target``'s selected activations ``[B, N]``
        (float32)."""

    def reset_canvases(self, seeds: list[int | None]) -> None:
        """Fresh canvases for a new group at the first octave's size, canvas i drawn from
        ``seeds[i]`` (``None``: a padding slot)."""
        self.param.reset_(seeds, self.canvas_size(0))

    def rendered(self) -> torch.Tensor:
        """The group's results as they are written: the canvases ``[G, C, S, S]`` clamped to
        [0, 1], detached."""
        return self.param().detach().clamp(0, 1)

    def regularization(self, view: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """Extra loss per target ``[G]`` from its model-sized view ``[G, C, s, s]`` or its whole
        canvas ``image`` ``[G, C, S, S]``."""
        return view.new_zeros(view.shape[0])

    # --- geometry --------------------------------------------------------------------------

    @property
    def steps_per_target(self) -> int:
        return sum(octave.steps for octave in self.octaves)

    def canvas_size(self, octave: int) -> int:
        return self.octaves[octave].size or self.network.image_size

    def view_offsets(self, position: torch.Tensor | None = None) -> list[tuple[int, int]]:
        """Top-left ``(y, x)`` of each target's model-sized view in its canvas, from fractions of
        the free room ``[G, 2]`` (default: :attr:`view_position`; 0.5 is the centre)."""
        room = self.param.size - self.network.image_size
        position = self.view_position if position is None else position
        return [(min(int(fy * (room + 1)), room), min(int(fx * (room + 1)), room)) for fy, fx in position.tolist()]

    def crop(self, image: torch.Tensor, offsets: list[tuple[int, int]]) -> torch.Tensor:
        """Model-sized views ``[G, C, s, s]`` of canvases ``[G, C, S, S]`` at ``offsets``."""
        s = self.network.image_size
        if image.shape[-1] == s:
            return image
        return torch.stack([image[i, :, y : y + s, x : x + s] for i, (y, x) in enumerate(offsets)])

    # --- the forward pass ------------------------------------------------------------------

    def activations(self, view: torch.Tensor, layers: list[str]) -> dict[str, torch.Tensor]:
        """Outputs of ``layers`` for views ``[B, C, s, s]`` in [0, 1]; stops after the last one."""
        key = tuple(layers)
        if key not in self._probes:  # a group's layers are fixed: look the modules up once
            self._probes[key] = Probe(self.net, layers)
        return self._probes[key](self.network.normalize(view))

    def target_losses(self, views: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-target loss and mean selected activation, both ``[G]``, of views
        ``[G * k, C, s, s]``: k copies per target, target-major (an augmentation ensemble; k = 1
        without one). A target's loss is the mean over its copies; padding slots give 0."""
        layers = sorted({t.layer for t in self.targets if t is not None})
        acts = self.activations(views, layers)
        copies = views.shape[0] // len(self.targets)
        losses, means = [], []
        for i, target in enumerate(self.targets):
            if target is None:
                losses.append(views.new_zeros(()))
                means.append(views.new_zeros(()))
                continue
            rows = slice(i * copies, (i + 1) * copies)
            chosen = self.select({k: v[rows] for k, v in acts.items()}, target).float()
            losses.append(self.loss(chosen, target).mean())
            means.append(chosen.detach().mean())
        return torch.stack(losses), torch.stack(means)

    def augment(self, view: torch.Tensor, step: int) -> torch.Tensor:
        """The views the model sees this step, ``[G * k, C, s, s]``: ``view`` ``[G, C, s, s]``
        through the Trainer's augmentation callbacks (those with an ``augment`` method, e.g.
        :class:`~lightning_featvis.callbacks.AugmentationEnsemble`), in their order."""
        for callback in self.trainer.callbacks:
            hook = getattr(callback, "augment", None)
            if hook is not None:
                view = hook(view, self.targets, step)
        return view

    def penalties(self, view: torch.Tensor, image: torch.Tensor, step: int) -> torch.Tensor:
        """Per-target ``[G]`` sum of :meth:`regularization` and the Trainer's penalty callbacks
        (those with a ``penalty(view, image, step)`` method, e.g. ``TotalVariation``)."""
        total = self.regularization(view, image)
        for callback in self.trainer.callbacks:
            hook = getattr(callback, "penalty", None)
            if hook is not None:
                total = total + hook(view, image, step)
        return total

    def valid(self) -> torch.Tensor:
        return torch.tensor([t is not None for t in self.targets], device=self.device)

    # --- Lightning hooks -----------------------------------------------------------------

    def build_network(self) -> torch.nn.Module:
        """Build (once) the frozen network: ``eval()``, no gradients for its weights."""
        if self.net is None:
            self.net = self.network.build().eval().requires_grad_(False)
        return self.net

    def unit_sizes(self, layer: str) -> dict[str, int]:
        """What ``*`` stands for in ``layer`` (``neuron=*``, ``patch=*``, ``class=*``):
        ``{"neurons": D, "patches": P}`` of its output viewed as tokens ``[B, T, D]``."""
        s = self.network.image_size
        layout = self.network.layout(layer)
        with torch.no_grad():
            acts = Probe(self.build_network(), [layer])(torch.zeros(1, 3, s, s))
        _, tokens, width = as_tokens(acts[layer], layout).shape
        return {"neurons": width, "patches": tokens - layout.prefix_tokens}

    def check_octaves(self) -> None:
        size = self.network.image_size
        for octave in self.octaves:
            octave.check()
            if (octave.size or size) < size:
                raise FeatvisError(f"octave canvas size {octave.size} is smaller than the {self.network.name} input size {size}")

    def setup(self, stage: str) -> None:
        datamodule = self.trainer.datamodule
        if not isinstance(datamodule, TargetDataModule):
            raise FeatvisError("visualization objectives take their targets from a TargetDataModule (data: ...)")
        self.check_octaves()
        self.build_network()
        self.check_targets(datamodule.targets)
        self.param.allocate(datamodule.group_size, max(self.canvas_size(i) for i in range(len(self.octaves))))
        self.view_position = torch.full((datamodule.group_size, 2), 0.5)

    def check_targets(self, targets: list[Target]) -> None:
        """Fail before the first step if a target names an unknown layer or an index out of range."""
        layers = sorted({t.layer for t in targets})
        s = self.network.image_size
        with torch.no_grad():
            acts = Probe(self.net, layers, stop=False)(torch.zeros(1, 3, s, s))
        for target in targets:
            tokens = as_tokens(acts[target.layer], self.network.layout(target.layer))
            check_unit(target.unit, self.network.layout(target.layer), tuple(tokens.shape), target.layer)

    def train(self, mode: bool = True):
        # Lightning puts the module in train mode; the frozen network must stay in eval
        # (dropout off, no batch-norm statistics updates)
        super().train(mode)
        if self.net is not None:
            self.net.eval()
        return self

    def on_fit_start(self) -> None:
        model = self.trainer.strategy.model
        if isinstance(model, DistributedDataParallel):
            model.register_comm_hook(None, _keep_local_gradients)

    def transfer_batch_to_device(self, batch: dict, device: torch.device, dataloader_idx: int) -> dict:
        return batch  # a batch holds target descriptions only, no tensors

    def _reset_optimizer_state(self) -> None:
        for optimizer in self.trainer.optimizers:
            optimizer.state.clear()

    def on_train_batch_start(self, batch: dict, batch_idx: int) -> None:
        self._continue_restored_group()
        step = batch["step"]
        self._position, self._step, self._batch_ended = batch["position"], step, False
        if step == 0 or batch["group"] != self._group:
            # a new group: fresh canvases seeded by each target's key, fresh optimizer state
            self._group, self._octave = batch["group"], 0
            self.targets = batch["targets"]
            seed = run_seed()
            self.reset_canvases([derive_seed(seed, "canvas", t.key) if t is not None else None for t in self.targets])
            self._reset_optimizer_state()
            self._stopped_step = torch.full((len(self.targets),), -1, dtype=torch.long)
            self._stopped_kind = torch.zeros(len(self.targets), dtype=torch.long)
        octave, octave_step = locate(self.octaves, step)
        if octave != self._octave:
            # the pixel grid changed meaning: resample and restart the optimizer's statistics
            self._octave = octave
            self.param.resize_(self.canvas_size(octave))
            self._reset_optimizer_state()
        self._before_step = [p.detach().clone() for p in self.param.parameters()]
        lr = self.octaves[octave].lr
        if lr is not None:
            for optimizer in self.trainer.optimizers:
                for group in optimizer.param_groups:
                    group["lr"] = linear(lr[0], lr[1], octave_step, self.octaves[octave].steps)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        image = self.param()
        view = self.crop(image, self.view_offsets())
        losses, means = self.target_losses(self.augment(view, batch["step"]))
        losses = losses + self.penalties(view, image, batch["step"])
        self._stop_nonfinite(~torch.isfinite(losses.detach()).cpu(), batch["step"], kind=0)
        valid = self.valid() & (self._stopped_step < 0).to(self.device)
        # a sum, not a mean: each target's gradient must not depend on the group size; where,
        # not a product: a stopped target's NaN must not reach the sum
        loss = torch.where(valid, losses, 0.0).sum()
        if not valid.any():
            # a padding-only group (uneven shards): keep the canvas in the graph for DDP
            loss = loss + image.sum() * 0.0
        count = valid.sum().clamp(min=1)
        self.log("loss", loss.detach() / count, prog_bar=True)
        self.log("activation", (means * valid).sum() / count, prog_bar=True)
        return loss

    def on_train_batch_end(self, outputs: Any, batch: dict, batch_idx: int) -> None:
        # runs after the callbacks' on_train_batch_end, so after the blur of the last step
        self._hold_stopped_targets(batch["step"])
        if batch["step"] == self.steps_per_target - 1:
            self.end_group(batch["group"])
        self._batch_ended = True

    _STOP_KINDS = ("loss", "image")

    def _stop_nonfinite(self, bad: torch.Tensor, step: int, kind: int) -> None:
        """Stop the running targets flagged in ``bad`` ``[G]`` (a NaN or inf in their loss,
        kind 0, or image, kind 1) at ``step``, saying so on stderr."""
        running = self._stopped_step < 0
        for i in torch.nonzero(bad & running).flatten().tolist():
            target = self.targets[i]
            if target is None:
                continue
            self._stopped_step[i], self._stopped_kind[i] = step, kind
            print(f"featvis: {target.key}: non-finite {self._STOP_KINDS[kind]} at step {step}; this target stops "
                  "with its last finite image, the others go on", file=sys.stderr)

    def _hold_stopped_targets(self, step: int) -> None:
        """After the step: stop targets whose canvas went non-finite, and put every stopped
        target's storage back to what it was before the step (its last finite image)."""
        if not self._before_step:
            return
        with torch.no_grad():
            image = self.param()
            self._stop_nonfinite(~torch.isfinite(image.flatten(1)).all(dim=1).cpu(), step, kind=1)
            stopped = torch.nonzero(self._stopped_step >= 0).flatten().tolist()
            for current, before in zip(self.param.parameters(), self._before_step):
                for i in stopped:
                    current[i].copy_(before[i])

    def end_group(self, group: int) -> None:
        """Measure a finished group and hand the result to every ``on_target_group_end``."""
        result = self.finish_group(group)
        for callback in self.trainer.callbacks:
            hook = getattr(callback, "on_target_group_end", None)
            if hook is not None:
                hook(self.trainer, self, result)

    def finish_group(self, group: int) -> GroupResult:
        """Measure the final canvases and gather every rank's group into one result."""
        with torch.no_grad():
            image = self.rendered()
            centre = self.crop(image, self.view_offsets(torch.full((image.shape[0], 2), 0.5)))
            # the plain centre view: no augmentation, as the images will be used
            losses, activations = self.target_losses(centre)
            losses = losses + self.penalties(centre, image, self.steps_per_target - 1)
        groups = torch.tensor([group], device=self.device)
        stopped = torch.stack([self._stopped_step, self._stopped_kind], dim=1).to(self.device)  # [G, 2]
        if self.trainer.world_size > 1:
            image, activations, losses, groups, stopped = (
                self.all_gather(t) for t in (image, activations, losses, groups, stopped))
            image, activations, losses = image.flatten(0, 1), activations.flatten(0, 1), losses.flatten(0, 1)
            groups, stopped = groups.flatten(), stopped.flatten(0, 1)
        notes = ["" if s < 0 else f"non-finite {self._STOP_KINDS[k]} at step {s}" for s, k in stopped.tolist()]
        all_groups, padding = self.trainer.datamodule.groups, (None,) * len(self.targets)
        targets = [t for g in groups.tolist() for t in (all_groups[g].targets if g >= 0 else padding)]
        keep = [i for i, t in enumerate(targets) if t is not None]
        return GroupResult(
            targets=[targets[i] for i in keep],
            images=image[keep].float().cpu(),
            activations=activations[keep].float().cpu(),
            losses=losses[keep].float().cpu(),
            notes=[notes[i] for i in keep],
        )

    def on_train_epoch_end(self) -> None:
        # one pass over the targets is the whole render
        self.trainer.should_stop = True

    def configure_callbacks(self) -> list[L.Callback]:
        # results must reach disk and TensorBoard even when a config lists no output callbacks
        present = {type(cb) for cb in self.trainer.callbacks}
        return [cb() for cb in (ImageWriter, ImageLogger) if not any(issubclass(p, cb) for p in present)]

    def configure_optimizers(self) -> torch.optim.Optimizer:
        params = list(self.param.parameters())
        if self.optimizer_factory is None:
            return torch.optim.SGD(params, lr=1.0)
        try:
            optimizer = self.optimizer_factory(params)
        except ValueError as err:  # torch's own checks: "Invalid learning rate: -0.1", ...
            raise FeatvisError(f"optimizer: {err}") from err
        if any(octave.lr is None for octave in self.octaves):  # octaves with an lr set their own
            for group in optimizer.param_groups:
                if not group.get("lr", 1.0) > 0:
                    raise FeatvisError(f"optimizer lr must be positive, got {group['lr']} "
                                       f"({type(optimizer).__name__}); it would leave the canvas where it starts")
        return optimizer

    def unfinished_group(self) -> tuple[list[Target], torch.Tensor, int] | None:
        """This rank's group under way, for an interrupted run: its targets, their current
        canvases ``[N, C, S, S]`` in [0, 1] on the CPU and the last step begun; None when no
        group is under way (none started, or the last one finished)."""
        if self._group is None or (self._step == self.steps_per_target - 1 and self._batch_ended):
            return None
        keep = [i for i, t in enumerate(self.targets) if t is not None]
        if not keep:
            return None
        with torch.no_grad():
            images = self.rendered()[keep].float().cpu()
        return [self.targets[i] for i in keep], images, self._step

    # --- checkpoints: resuming inside a group ----------------------------------------------

    @property
    def resume_position(self) -> int:
        """The first batch a run restored from a checkpoint still has to take (0: a fresh run)."""
        return self._restored["next_position"] if self._restored else 0

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # the frozen network is rebuilt from its adapter; only the canvases are state
        state = checkpoint.get("state_dict", {})
        for key in [k for k in state if k.startswith("net.")]:
            del state[key]
        if self._group is None:
            return
        # ModelCheckpoint saves in the callbacks' on_train_batch_end, before this module's: a
        # checkpoint taken at a group's last step must still measure and write that group
        checkpoint["featvis_position"] = {
            "next_position": self._position + 1,
            "group": self._group,
            "octave": self._octave,
            "size": self.param.size,
            "end_group": not self._batch_ended and self._step == self.steps_per_target - 1,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._restored = checkpoint.get("featvis_position")
        if self._restored is not None:
            self.param.restore_size(self._restored["size"])

    def _continue_restored_group(self) -> None:
        """First batch after a checkpoint: take up its group where it stood (canvases and
        optimizer state came back with the checkpoint) and finish it if it had ended."""
        if self._restored is None or self._group is not None:
            return
        group = self._restored["group"]
        self._group, self._octave = group, self._restored["octave"]
        size = self.trainer.datamodule.group_size
        self._stopped_step = torch.full((size,), -1, dtype=torch.long)  # a stop is not in checkpoints
        self._stopped_kind = torch.zeros(size, dtype=torch.long)
        groups = self.trainer.datamodule.groups
        self.targets = groups[group].targets if group >= 0 else (None,) * self.trainer.datamodule.group_size
        if self._restored["end_group"]:
            self.end_group(group)

    def on_train_end(self) -> None:
        # a checkpoint of the very last step leaves no batch to finish its group in
        self._continue_restored_group()
