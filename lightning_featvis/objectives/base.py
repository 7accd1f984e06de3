"""The base of every visualization objective: a LightningModule whose only parameter is the input.

The spine of a render is here: one batch is one optimizer step of one group of targets. The
other jobs live beside it: the input's geometry in the parameterization
(:class:`~lightning_featvis.params.InputParam`), the non-finite guard in
:mod:`~lightning_featvis.objectives.nonfinite`, group results in
:mod:`~lightning_featvis.objectives.gather`, where a checkpoint left the run in
:class:`~lightning_featvis.resume.RunPosition`, and the targets in the
:class:`~lightning_featvis.plan.RunPlan` the data module makes.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import lightning as L
import torch
from lightning.pytorch.cli import OptimizerCallable
from torch.nn.parallel import DistributedDataParallel

import lightning_featvis.benign_warnings  # noqa: F401  (silences Lightning's benign warnings)
from lightning_featvis.callbacks import (
    GroupResultHook,
    ImageLogger,
    ImageWriter,
    Penalty,
    ViewAugmentation,
)
from lightning_featvis.data import TargetDataModule
from lightning_featvis.diversity import NO_DIVERSITY
from lightning_featvis.errors import FeatvisError
from lightning_featvis.models.adapter import ModelAdapter
from lightning_featvis.objectives.gather import gather_group
from lightning_featvis.objectives.nonfinite import NonFiniteGuard
from lightning_featvis.params import ImageParam, InputParam, PixelImage
from lightning_featvis.plan import (
    IMAGE_RESULTS,
    PlannedObjective,
    ResultsLocation,
    RunData,
    RunPlan,
    RunRequest,
)
from lightning_featvis.probe import Probe
from lightning_featvis.results import GroupResult
from lightning_featvis.resume import RunPosition
from lightning_featvis.schedule import Octave, linear, locate
from lightning_featvis.seeding import derive_seed, run_seed
from lightning_featvis.targets import Target
from lightning_featvis.units import as_tokens, check_unit, layer_sizes, select


def _keep_local_gradients(_state, bucket):
    """DDP communication hook that does not all-reduce: each rank optimises its own targets,
    so averaging their input gradients would mix unrelated targets. (No annotations: DDP checks
    them against ``GradBucket`` and this module's postponed annotations are strings.)"""
    future: torch.futures.Future = torch.futures.Future()
    future.set_result(bucket.buffer())
    return future


class VisualizationObjective(L.LightningModule, PlannedObjective):
    """Finds inputs that drive units of a frozen network.

    One batch is one optimizer step of one group of targets (see :class:`TargetDataModule`).
    Subclasses say what to minimise by overriding :meth:`loss` (and optionally :meth:`select`,
    :meth:`regularization` or :attr:`default_layer`).

    Args:
        network: the model adapter (``lightning_featvis.models``); its network is frozen and
            kept in ``eval()``.
        octaves: the phases of a render (canvas size, steps, learning rate). Default: 100
            steps at the model's input size.
        param: the input parameterization (default: pixels initialised from N(0.7, 1/20)).
        optimizer: the optimizer, e.g. ``{class_path: torch.optim.Adam, init_args: {lr: 0.05}}``
            in YAML (default: plain gradient descent, ``SGD(lr=1.0)``).
    """

    #: where results and their table are written (a rerun of the same config reads them)
    results: ResultsLocation = IMAGE_RESULTS

    def __init__(
        self,
        network: ModelAdapter,
        octaves: list[Octave] | None = None,
        param: InputParam | None = None,
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
        self.plan: RunPlan | None = None  # made by the data module in setup
        self.targets: tuple[Target | None, ...] = ()  # the group under way, one per slot
        self.position = RunPosition()
        self.guard = NonFiniteGuard()
        self._probes: dict[tuple, Probe] = {}
        # the frozen network is not saved with checkpoints (see on_save_checkpoint)
        self.strict_loading = False

    # --- what subclasses customise -------------------------------------------------------

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

    def regularization(self, view: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """Extra loss per target ``[G]`` from its model-sized view ``[G, C, s, s]`` or its whole
        canvas ``image`` ``[G, C, S, S]``."""
        return view.new_zeros(view.shape[0])

    def reset_inputs(self, seeds: list[int | None]) -> None:
        """Fresh inputs for a new group at the first octave's size, input i drawn from
        ``seeds[i]`` (``None``: a padding slot)."""
        self.param.reset_(seeds, self.param.canvas_size(self.octaves[0]))

    def configure_input(self) -> None:
        """Tell the parameterization the model's input geometry (before storage is allocated)."""
        if isinstance(self.param, ImageParam):
            self.param.bind(self.network)

    def prepare(self) -> None:
        """What the data module's questions need (it asks before this module's setup): the
        octaves and the frozen network. Runs once; subclasses extend it."""
        for octave in self.octaves:
            octave.check()
        self.build_network()

    # --- the handshake with the data module -------------------------------------------------

    @property
    def steps_per_target(self) -> int:
        return sum(octave.steps for octave in self.octaves)

    def run_request(self, data: RunData) -> RunRequest:
        self.prepare()
        return RunRequest(default_layer=self.default_layer, unit_sizes=self.unit_sizes, results=self.results,
                          steps_per_target=self.steps_per_target, position=self.position)

    def receive_plan(self, plan: RunPlan) -> None:
        self.plan = plan

    def unit_sizes(self, layer: str) -> dict[str, int]:
        """What ``*`` stands for in ``layer`` (``neuron=*``, ``patch=*``, ``class=*``):
        ``{"neurons": D, "patches": P}`` of its output viewed as tokens ``[B, T, D]``."""
        s = self.network.image_size
        layout = self.network.layout(layer)
        with torch.no_grad():
            acts = Probe(self.build_network(), [layer])(torch.zeros(1, 3, s, s))
        return layer_sizes(tuple(as_tokens(acts[layer], layout).shape), layout)

    def check_targets(self, targets: tuple[Target, ...]) -> None:
        """Fail before the first step if a target names an unknown layer or an index out of range."""
        compared = {self.plan.diversity.layer} if self.plan.diversity.weight and self.plan.diversity.layer else set()
        layers = sorted({part.layer for t in targets for part in t.parts} | compared)
        s = self.network.image_size
        with torch.no_grad():
            acts = Probe(self.net, layers, stop=False)(torch.zeros(1, 3, s, s))
        for target in targets:
            for part in target.parts:
                one = part.target
                self.check_unit(one, tuple(as_tokens(acts[one.layer], self.network.layout(one.layer)).shape))

    def check_unit(self, target: Target, tokens_shape: tuple[int, ...]) -> None:
        """Refuse ``target`` if its unit does not fit its layer, whose output viewed as tokens
        has shape ``tokens_shape`` ``[1, T, D]``."""
        check_unit(target.unit, self.network.layout(target.layer), tokens_shape, target.layer)

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
        without one). A target's loss is the mean over its copies; padding slots give 0. A sum's loss
        and activation are the weighted sums of its terms'. Images of one target in the group
        add the plan's diversity penalty (:mod:`~lightning_featvis.diversity`)."""
        diversity = self.plan.diversity if self.plan is not None else NO_DIVERSITY
        progress = max(self.position.step, 0) / self.steps_per_target
        compared = diversity.layers(self.targets, progress)
        layers = sorted({part.layer for t in self.targets if t is not None for part in t.parts} | compared)
        acts = self.activations(views, layers)
        copies = views.shape[0] // len(self.targets)
        losses, means = [], []
        for i, target in enumerate(self.targets):
            if target is None:
                losses.append(views.new_zeros(()))
                means.append(views.new_zeros(()))
                continue
            rows = slice(i * copies, (i + 1) * copies)
            mine = {k: v[rows] for k, v in acts.items()}
            if not target.terms:
                chosen = self.select(mine, target).float()
                losses.append(self.loss(chosen, target).mean())
                means.append(chosen.detach().mean())
                continue
            parts = [(term.weight, term.target) for term in target.terms]
            chosen = [(weight, one, self.select(mine, one).float()) for weight, one in parts]
            losses.append(sum(weight * self.loss(values, one).mean() for weight, one, values in chosen))
            means.append(sum(weight * values.detach().mean() for weight, _, values in chosen))
        losses = torch.stack(losses)
        if compared:
            losses = losses + diversity.penalty(acts, {layer: self.network.layout(layer) for layer in compared},
                                                self.targets, progress)
        return losses, torch.stack(means)

    def augment(self, view: torch.Tensor, step: int) -> torch.Tensor:
        """The views the model sees this step, ``[G * k, C, s, s]``: ``view`` ``[G, C, s, s]``
        through the Trainer's :class:`~lightning_featvis.callbacks.ViewAugmentation` callbacks,
        in their order."""
        for callback in self.trainer.callbacks:
            if isinstance(callback, ViewAugmentation):
                view = callback.augment(view, self.targets, step)
        return view

    def penalties(self, view: torch.Tensor, image: torch.Tensor, step: int) -> torch.Tensor:
        """Per-target ``[G]`` sum of :meth:`regularization` and the Trainer's
        :class:`~lightning_featvis.callbacks.Penalty` callbacks."""
        total = self.regularization(view, image)
        for callback in self.trainer.callbacks:
            if isinstance(callback, Penalty):
                total = total + callback.penalty(view, image, step)
        return total

    def valid(self) -> torch.Tensor:
        """``[G]`` bool: slots that hold a target (not padding)."""
        return torch.tensor([t is not None for t in self.targets], device=self.device)

    # --- Lightning hooks -----------------------------------------------------------------

    def build_network(self) -> torch.nn.Module:
        """Build (once) the frozen network: ``eval()``, no gradients for its weights."""
        if self.net is None:
            self.net = self.network.build().eval().requires_grad_(False)
        return self.net

    def setup(self, stage: str) -> None:
        if not isinstance(self.trainer.datamodule, TargetDataModule) or self.plan is None:
            raise FeatvisError("visualization objectives take their targets from a TargetDataModule (data: ...)")
        self.prepare()
        self.configure_input()
        self.param.check_octaves(self.octaves, self.network.name)
        self.check_targets(self.plan.targets)
        self.param.allocate(self.plan.group_size, max(self.param.canvas_size(o) for o in self.octaves))
        if isinstance(self.param, ImageParam):
            self.param.centre_views(self.plan.group_size)

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
        step, position = batch["step"], self.position
        position.begin_batch(batch["position"], step)
        if step == 0 or batch["group"] != position.group:
            # a new group: fresh inputs seeded by each target's key, fresh optimizer state
            position.group, position.octave = batch["group"], 0
            self.targets = batch["targets"]
            seed = run_seed()
            self.reset_inputs([derive_seed(seed, "canvas", t.key) if t is not None else None for t in self.targets])
            self._reset_optimizer_state()
            self.guard.start_group(len(self.targets))
        octave, octave_step = locate(self.octaves, step)
        if octave != position.octave:
            # the pixel grid changed meaning: resample and restart the optimizer's statistics
            position.octave = octave
            self.param.resize_(self.param.canvas_size(self.octaves[octave]))
            self._reset_optimizer_state()
        self.guard.remember(self.param)
        lr = self.octaves[octave].lr
        if lr is not None:
            for optimizer in self.trainer.optimizers:
                for group in optimizer.param_groups:
                    group["lr"] = linear(lr[0], lr[1], octave_step, self.octaves[octave].steps)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        image = self.param()
        view = self.param.views(image)
        losses, means = self.target_losses(self.augment(view, batch["step"]))
        losses = losses + self.penalties(view, image, batch["step"])
        self.guard.stop(~torch.isfinite(losses.detach()).cpu(), self.targets, batch["step"], "loss")
        valid = self.valid() & self.guard.running().to(self.device)
        # a sum, not a mean: each target's gradient must not depend on the group size; where,
        # not a product: a stopped target's NaN must not reach the sum
        loss = torch.where(valid, losses, 0.0).sum()
        if not valid.any():
            # a padding-only group (uneven shards): keep the input in the graph for DDP
            loss = loss + image.sum() * 0.0
        count = valid.sum().clamp(min=1)
        self.log("loss", loss.detach() / count, prog_bar=True)
        self.log("activation", (means * valid).sum() / count, prog_bar=True)
        return loss

    def on_train_batch_end(self, outputs: Any, batch: dict, batch_idx: int) -> None:
        # runs after the callbacks' on_train_batch_end, so after the blur of the last step
        self.guard.hold(self.param, self.targets, batch["step"])
        if batch["step"] == self.steps_per_target - 1:
            self.end_group(batch["group"])
        self.position.end_batch()

    def end_group(self, group: int) -> None:
        """Measure a finished group and hand the result to every
        :class:`~lightning_featvis.callbacks.GroupResultHook`."""
        result = self.finish_group(group)
        for callback in self.trainer.callbacks:
            if isinstance(callback, GroupResultHook):
                callback.on_target_group_end(self.trainer, self, result)

    def finish_group(self, group: int) -> GroupResult:
        """Measure the final inputs and gather every rank's group into one result."""
        with torch.no_grad():
            image = self.param.rendered()
            centre = self.param.views(image, centred=True)
            # the plain centre view: no augmentation, as the images will be used
            losses, activations = self.target_losses(centre)
            losses = losses + self.penalties(centre, image, self.steps_per_target - 1)
        return gather_group(self, self.plan.groups, group, len(self.targets), image, activations, losses,
                            self.guard.state())

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
        inputs ``[N, ...]`` (as :meth:`InputParam.rendered`) on the CPU and the last step begun;
        None when no group is under way (none started, or the last one finished)."""
        if self.position.group_done(self.steps_per_target - 1):
            return None
        keep = [i for i, t in enumerate(self.targets) if t is not None]
        if not keep:
            return None
        with torch.no_grad():
            images = self.param.rendered()[keep].float().cpu()
        return [self.targets[i] for i in keep], images, self.position.step

    # --- checkpoints: resuming inside a group (the position itself: RunPosition) -------------

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # the frozen network is rebuilt from its adapter; only the inputs are state
        state = checkpoint.get("state_dict", {})
        for key in [k for k in state if k.startswith("net.")]:
            del state[key]
        self.position.save(checkpoint, self.param.size, self.steps_per_target - 1)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        restored = self.position.load(checkpoint)
        if restored is not None:
            self.param.restore_size(restored["size"])

    def _continue_restored_group(self) -> None:
        """First batch after a checkpoint: take up its group where it stood (inputs and
        optimizer state came back with the checkpoint) and finish it if it had ended."""
        restored = self.position.take_up()
        if restored is None:
            return
        group, size = restored["group"], self.plan.group_size
        self.guard.start_group(size)  # a stop is not in checkpoints
        self.targets = self.plan.groups[group].targets if group >= 0 else (None,) * size
        if restored["end_group"]:
            self.end_group(group)

    def on_train_end(self) -> None:
        # a checkpoint of the very last step leaves no batch to finish its group in
        self._continue_restored_group()
