"""One call from Python or a notebook: :func:`render` builds what ``featvis fit`` builds (the
same ``FeatvisCLI`` parses the same config: the objective, the data module, the callbacks and the
Trainer) and returns a :class:`Rendering` of the images; :func:`layers` is ``featvis layers`` as
data.

Shapes: N targets, C channels, S the canvas side.
"""

from __future__ import annotations

import copy
import importlib
import inspect
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

import lightning as L
import numpy as np
import torch
from PIL import Image
from torch import nn
from torchvision.utils import make_grid

from lightning_featvis.algebra import UnitSum, as_spec
from lightning_featvis.callbacks import GroupResultHook, ImageWriter
from lightning_featvis.callbacks.attribution import AttributionMap
from lightning_featvis.data import TargetDataModule
from lightning_featvis.dictionaries import WithDictionaries
from lightning_featvis.errors import FeatvisError
from lightning_featvis.layer_table import LayerInfo, describe_layers
from lightning_featvis.lightning_cli import FeatvisCLI, featvis_error
from lightning_featvis.models.adapter import ModelAdapter
from lightning_featvis.models.any_module import AnyModule, adapter_for
from lightning_featvis.objectives.base import VisualizationObjective
from lightning_featvis.recipes import load_recipe
from lightning_featvis.results import GroupResult
from lightning_featvis.resume import read_table
from lightning_featvis.targets import Target

#: the recipe a call without ``recipe=`` uses: Lucent's defaults (colour, Fourier basis,
#: small transformations), the common ground for models of natural images
DEFAULT_RECIPE = "lucent"
ADAPTER_OPTIONS = set(inspect.signature(AnyModule.__init__).parameters) - {"self", "module"}


@dataclass
class Rendering:
    """What :func:`render` made.

    Attributes:
        images: the final images ``[N, C, S, S]`` in [0, 1], on the CPU, in target order.
        targets: the targets (:class:`~lightning_featvis.Target`; ``.key`` is ``layer:unit``),
            in config order.
        activations: each target's final mean activation ``[N]``.
        losses: each target's final loss ``[N]``.
        notes: per target, ``""`` or why it stopped early.
        log_dir: the run's folder (its PNGs, manifest and TensorBoard log), if it logged.
        attributions: per target, the accumulated input-gradient magnitude ``[N, 1, S, S]``
            (raw, not normalised), when the run had an
            :class:`~lightning_featvis.callbacks.AttributionMap` (feature accentuation runs).
    """

    images: torch.Tensor
    targets: list[Target]
    activations: torch.Tensor
    losses: torch.Tensor
    notes: list[str] = field(default_factory=list)
    log_dir: Path | None = None
    attributions: torch.Tensor | None = None

    def to_pil(self) -> list[Image.Image]:
        """One PIL image per target."""
        return [Image.fromarray(_as_uint8(image)) for image in self.images]

    def grid(self, nrow: int = 8, padding: int = 2) -> Image.Image:
        """All images in one PIL image, ``nrow`` to a row."""
        return Image.fromarray(_as_uint8(make_grid(self.images, nrow=nrow, padding=padding, pad_value=1.0)))

    def _repr_png_(self) -> bytes:
        import io

        buffer = io.BytesIO()
        self.grid().save(buffer, format="png")
        return buffer.getvalue()

    def save(self, directory: str | Path) -> Path:
        """Write the PNGs and ``manifest.csv`` into ``directory``, as ``featvis fit`` writes them."""
        writer = ImageWriter()
        writer.directory = Path(directory)
        writer.write_group(GroupResult(list(self.targets), self.images, self.activations, self.losses, list(self.notes)))
        return writer.directory


def _as_uint8(image: torch.Tensor):
    """``[C, H, W]`` in [0, 1] as ``[H, W, 3]`` uint8 (grey repeated), as the PNGs are written."""
    image = image.expand(3, -1, -1) if image.shape[0] == 1 else image
    return image.mul(255).add(0.5).clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()


class _Collector(GroupResultHook):
    """Keeps every finished group (rank 0 of an in-process run)."""

    def __init__(self) -> None:
        self.results: list[GroupResult] = []

    def on_target_group_end(self, trainer, objective, result) -> None:
        if trainer.is_global_zero:
            self.results.append(result)


def _split_options(options: Mapping, objective_class: type, callbacks: list[dict]) -> dict[str, dict]:
    """Route each option by name: the adapter's, the objective's, the data module's, a
    callback's (by its class name, with a dict of its arguments; ``None`` removes it) or the
    Trainer's."""
    routes = {"adapter": {}, "model": {}, "data": {}, "trainer": {}, "callbacks": {}}
    objective_args = set(inspect.signature(objective_class.__init__).parameters) - {"self", "network"}
    data_args = set(inspect.signature(TargetDataModule.__init__).parameters) - {"self", "targets"}
    trainer_args = set(inspect.signature(L.Trainer.__init__).parameters) - {"self"}
    callback_names = {cb["class_path"].rsplit(".", 1)[-1] for cb in callbacks}
    for name, value in options.items():
        if name in ADAPTER_OPTIONS:
            routes["adapter"][name] = value
        elif name in objective_args:
            routes["model"][name] = value
        elif name in data_args:
            routes["data"][name] = value
        elif name in callback_names or (value is not None and name[:1].isupper()):
            routes["callbacks"][name] = value
        elif name in trainer_args:
            routes["trainer"][name] = value
        else:
            raise FeatvisError(f"render: unknown option {name!r}; options are the objective's "
                               f"({', '.join(sorted(objective_args))}), the data module's ({', '.join(sorted(data_args))}), "
                               f"the model's ({', '.join(sorted(ADAPTER_OPTIONS))}), a callback's by class name, or the Trainer's")
    return routes


def render_config(targets: Sequence[str | UnitSum] | str | UnitSum, recipe: str | None = None, steps: int | None = None, seed: int = 0,
                  **options: object) -> tuple[dict, dict]:
    """The config :func:`render` runs (a dict, as a YAML file holds it) and the options that
    go to the model's adapter."""
    config = copy.deepcopy(load_recipe(recipe or DEFAULT_RECIPE))
    config["seed_everything"] = seed
    model = config.setdefault("model", {}).setdefault("init_args", {})
    objective_class = _import(config["model"]["class_path"])
    trainer = config.setdefault("trainer", {})
    callbacks = trainer.setdefault("callbacks", [])
    routes = _split_options(options, objective_class, callbacks)
    if steps is not None:
        if not isinstance(steps, int) or steps < 1:
            raise FeatvisError(f"steps must be a positive number of steps, got {steps!r}")
        # one octave at the model's input size, keeping the recipe's learning-rate ramp
        ramp = {"lr": lr for lr in [(model.get("octaves") or [{}])[0].get("lr")] if lr is not None}
        model["octaves"] = [{"steps": steps, **ramp}]
    for name, value in routes["model"].items():
        model[name] = value
    data = config.setdefault("data", {"class_path": "lightning_featvis.TargetDataModule"}).setdefault("init_args", {})
    data["targets"] = [as_spec(t) for t in ([targets] if isinstance(targets, (str, UnitSum)) else targets)]
    data.update(routes["data"])
    for name, value in routes["callbacks"].items():
        matching = [cb for cb in callbacks if cb["class_path"].rsplit(".", 1)[-1] == name]
        if value is None:
            callbacks[:] = [cb for cb in callbacks if cb not in matching]
        elif matching:
            for cb in matching:
                cb.setdefault("init_args", {}).update(value)
        else:
            callbacks.append({"class_path": f"lightning_featvis.{name}", "init_args": dict(value)})
    trainer.update(routes["trainer"])
    return config, routes["adapter"]


def _import(path: str) -> type:
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def render(model: nn.Module | ModelAdapter, targets: Sequence[str | UnitSum] | str | UnitSum, *, recipe: str | None = None,
           steps: int | None = None, seed: int = 0, **options: object) -> Rendering:
    """Render ``targets`` of ``model``; return the images.

    Args:
        model: an ``nn.Module`` (torchvision, timm, Hugging Face or your own; see
            :class:`~lightning_featvis.models.AnyModule`) or one of the package's adapters.
        targets: target strings as in a config, e.g. ``["heads.head:class=3",
            "encoder.layers.encoder_layer_1:neuron=0-3"]``, or unit values and their sums
            (:func:`~lightning_featvis.unit`: ``unit("a:neuron=3") - 0.5 * unit("b:neuron=7")``).
        recipe: a packaged recipe (:func:`recipe_names`: ``best``, ``lucent``, ``badger``, ...);
            default ``lucent``.
        steps: one octave of ``steps`` steps at the model's input size, with the learning
            rate ramp of the recipe's first octave if it has one (default: the recipe's octaves).
        seed: the run's seed (``seed_everything``).
        **options: ``dictionaries={"<layer>.sae": sae}`` attaches dictionaries (sparse
            autoencoders) after layers, as layers of their own
            (:class:`~lightning_featvis.dictionaries.WithDictionaries`); by name, the objective's arguments (``loss_form``, ``param``, ...), the data
            module's (``group_size``), the model's (``image_size``, ``layout``, ``mean``,
            ``std``, ``training_data``: the image source the ``auto`` recipe adapts to), a callback's by its class name (``TotalVariation={"weight": 0.5}``;
            ``None`` removes it) and the Trainer's (``accelerator``, ``devices``,
            ``precision``, ``default_root_dir``, ``logger``, ...). Values are what a YAML
            config holds (numbers, strings, lists, ``{"class_path": ..., "init_args": ...}``);
            ``callbacks=`` takes callback instances of your own, added to the recipe's.

    The run is the one ``featvis fit`` makes of the same config (:func:`render_config`): the
    same objects, callbacks and Trainer, writing the same PNGs, manifest and TensorBoard log
    into a new ``lightning_logs/version_N`` (under ``default_root_dir``; ``logger=False``
    writes nothing). Each call renders afresh: resuming is the command line's.
    The model is frozen for the run and given back as it was (its mode and ``requires_grad``).
    """
    with tempfile.TemporaryDirectory(prefix="featvis_render_") as scratch:
        # tensors in a config are files, as in YAML: the CLI's parser reads the same thing
        options = _tensors_as_files(options, Path(scratch))
        if options.get("logger") is False and "default_root_dir" not in options:
            # without a logger, Lightning and the writers fall back to the working directory
            # (PNGs, checkpoints, config.yaml): a call that asked for no log leaves none there
            options["default_root_dir"] = scratch
        return _render(model, targets, recipe, steps, seed, options)


def _tensors_as_files(options: dict, folder: Path) -> dict:
    """``directions={"sae": W}`` with tensors or arrays saved as ``.pt`` files in ``folder``."""
    sets = options.get("directions")
    if not isinstance(sets, Mapping):
        return options
    files = {}
    for name, value in sets.items():
        if isinstance(value, (torch.Tensor, np.ndarray)):
            path = folder / f"direction_{name}.pt"
            torch.save(torch.as_tensor(value).detach().cpu(), path)
            value = str(path)
        files[name] = value
    return {**options, "directions": files}


def _render(model: nn.Module | ModelAdapter, targets: Sequence[str | UnitSum] | str | UnitSum, recipe: str | None, steps: int | None,
            seed: int, options: dict) -> Rendering:
    extra_callbacks = list(options.pop("callbacks", None) or [])
    if not all(isinstance(cb, L.Callback) for cb in extra_callbacks):
        raise FeatvisError("render: callbacks= takes Lightning callback instances (the recipe's own are set by class name)")
    dictionaries = options.pop("dictionaries", None)
    config, adapter_options = render_config(targets, recipe, steps, seed, **options)
    with LentModel(model, dictionaries, adapter_options) as lent:
        cli = FeatvisCLI(args=config, run=False)  # the config is the whole command line
        objective = lent.objective = cli.model
        if not isinstance(objective, VisualizationObjective):
            raise FeatvisError(f"render: the recipe's model is {type(objective).__name__}, not a visualization objective")
        objective.network = lent.adapter  # built in setup, so nothing was built from the recipe's
        collector = _Collector()
        cli.trainer.callbacks.extend([*extra_callbacks, collector])
        cli.trainer.fit(objective, datamodule=cli.datamodule)
        targets_in_order = _planned_targets(objective, cli.datamodule)
    log_dir = Path(cli.trainer.log_dir) if cli.trainer.logger is not None and cli.trainer.log_dir else None
    rendering = _rendering(collector.results, targets_in_order, cli.trainer, log_dir)
    maps = next((cb for cb in cli.trainer.callbacks if isinstance(cb, AttributionMap)), None)
    if maps is not None and all(t.key in maps.maps for t in targets_in_order):
        rendering.attributions = torch.stack([maps.maps[t.key] for t in targets_in_order])
    return rendering


def adapter_with_dictionaries(model: nn.Module | ModelAdapter, dictionaries: Mapping | None, options: Mapping) -> ModelAdapter:
    """``model``'s adapter (:func:`adapter_for` with ``options``), with ``dictionaries`` attached if any."""
    adapter = adapter_for(model, **options)
    return WithDictionaries(adapter, dictionaries) if dictionaries else adapter


class LentModel:
    """A user's model lent to one run built from a config (``with LentModel(...) as lent``):
    :attr:`adapter` is its adapter (dictionaries attached); set :attr:`objective` to the run's
    objective once built. On leaving, the model goes back as it came (the adapter's hooks off
    the objective's network, the module's mode and ``requires_grad`` restored), and an error that
    the CLI's parser wrapped comes out as itself (its FeatvisError).
    """

    def __init__(self, model: nn.Module | ModelAdapter, dictionaries: Mapping | None, options: Mapping) -> None:
        self.adapter = adapter_with_dictionaries(model, dictionaries, options)
        self.module = model if isinstance(model, nn.Module) else None
        self.objective: object = None

    def __enter__(self) -> Self:
        self.state = (self.module.training, [p.requires_grad for p in self.module.parameters()]) \
            if self.module is not None else None
        return self

    def __exit__(self, kind, error, traceback) -> bool:
        if isinstance(self.objective, VisualizationObjective) and self.objective.net is not None:
            self.adapter.release(self.objective.net)
        if self.state is not None:
            self.module.train(self.state[0])
            for parameter, requires_grad in zip(self.module.parameters(), self.state[1]):
                parameter.requires_grad_(requires_grad)
        if isinstance(error, Exception):
            cause = featvis_error(error)
            if cause is not None and cause is not error:
                raise cause from error
        return False


def _rendering(results: list[GroupResult], targets: Sequence[Target], trainer: L.Trainer,
               log_dir: Path | None) -> Rendering:
    """The results in config order: from this process, or (ranks that ran in spawned
    processes) from the PNGs and manifest the run wrote."""
    found = {t.key: (t, img, a, loss, note) for r in results
             for t, img, a, loss, note in zip(r.targets, r.images, r.activations, r.losses, r.notes or [""] * len(r.targets))}
    missing = [t for t in targets if t.key not in found]
    if missing:
        found.update(_read_written(trainer, log_dir, missing))
    missing = [t.key for t in targets if t.key not in found]
    if missing:
        raise FeatvisError(f"render: no result for {', '.join(missing[:3])}: where the ranks run in other processes, "
                           "the results are read back from the images the run wrote (keep its ImageWriter and logger)")
    picked = [found[t.key] for t in targets]
    targets, images, activations, losses, notes = zip(*picked)
    return Rendering(torch.stack(list(images)), list(targets), torch.tensor([float(a) for a in activations]),
                     torch.tensor([float(x) for x in losses]), list(notes), log_dir)


def _read_written(trainer: L.Trainer, log_dir: Path | None, targets: list[Target]) -> dict:
    """``targets``' rows of the run's ``manifest.csv``, with their PNGs, by key."""
    from torchvision.io import read_image

    writers = [cb for cb in trainer.callbacks if isinstance(cb, ImageWriter)]
    if not writers or log_dir is None or not (log_dir / writers[0].dirname / "manifest.csv").is_file():
        return {}
    directory = log_dir / writers[0].dirname
    rows = {row["target"]: row for row in read_table(directory / "manifest.csv") or []}
    found = {}
    for target in targets:
        row = rows.get(target.key)
        if row is not None:
            image = read_image(str(directory / row["file"])).float() / 255
            found[target.key] = (target, image, float(row["activation"]), float(row["loss"]),
                                 "" if row["status"] == "ok" else row["status"])
    return found


def _planned_targets(objective: VisualizationObjective, datamodule: TargetDataModule) -> tuple[Target, ...]:
    """The run's targets in config order: from its plan, or (the ranks ran in spawned
    processes, whose plans stay there) parsed here the way the data module parses them."""
    if objective.plan is not None:
        return objective.plan.targets
    return tuple(datamodule.parse(objective.run_request(datamodule.data())))


def layers(model: nn.Module | ModelAdapter, dictionaries: Mapping | None = None, **options: object) -> list[LayerInfo]:
    """Every addressable layer of ``model`` with its output shape and layout (the table
    ``featvis layers`` prints), as data; ``dictionaries`` and ``options`` as :func:`render`'s."""
    return describe_layers(adapter_with_dictionaries(model, dictionaries, options))
