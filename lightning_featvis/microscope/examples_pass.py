"""The dataset-examples pass as a Lightning run: ``Trainer.predict`` streams an image source once
through the frozen model and keeps, for every target, its top-k and bottom-k images and the
histogram of its activation (``featvis examples``, :func:`~lightning_featvis.microscope.find_dataset_examples`).

- :class:`ImageSourceData` serves the images (:func:`~lightning_featvis.image_sources.image_source`),
  batched; the Trainer shards them over devices (each image read by one rank);
- :class:`ExamplesPass` reads every target on each batch (:class:`~lightning_featvis.microscope.reader.UnitReader`,
  under ``inference_mode``, the forward stopping at the deepest target layer) into an
  :class:`ExamplesState` (memory O(U x k)), and merges the ranks' states at the end;
- :class:`ExamplesFolder` is the output folder: it saves each rank's state as it goes, so an
  interrupted pass continues where it stopped (whatever the number of devices then), and
  writes the result (:class:`~lightning_featvis.microscope.store.DatasetExamples`).

Shapes: B images in a batch, U targets, k examples per target and side, N images in the
dataset, P patches, S the model's input side.
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader, Subset

from lightning_featvis.errors import FeatvisError
from lightning_featvis.files import atomic_write
from lightning_featvis.image_sources import image_source
from lightning_featvis.microscope.extremes import RunningExtremes
from lightning_featvis.microscope.histogram import RunningHistogram
from lightning_featvis.microscope.reader import UnitReader
from lightning_featvis.microscope.store import FILE, DatasetExamples, write_images
from lightning_featvis.objectives.base import VisualizationObjective
from lightning_featvis.targets import Target

PROGRESS = "progress"


class ImageSourceData(L.LightningDataModule):
    """Batches ``(images [B, 3, S, S] in [0, 1], dataset indices [B])`` of an image source, in
    dataset order, leaving out the images an earlier, interrupted pass has read (:meth:`skip`).

    Args:
        source: what :func:`~lightning_featvis.image_sources.image_source` reads (``digits``, a folder, ``hf:NAME``).
        size: the model's input side S.
        batch_size: images per batch (per device).
        num_workers: DataLoader worker processes (0: read in the main process).
    """

    def __init__(self, source: str, size: int, batch_size: int = 64, num_workers: int = 0) -> None:
        super().__init__()
        if not isinstance(batch_size, int) or batch_size < 1:
            raise FeatvisError(f"batch_size must be a whole number >= 1, got {batch_size!r}")
        self.source, self.size, self.batch_size, self.num_workers = source, size, batch_size, num_workers
        self.dataset = image_source(source, size)  # read now: a bad source is refused before the run
        self.done = torch.zeros(len(self.dataset), dtype=torch.bool)

    def skip(self, indices: torch.Tensor) -> None:
        """Leave out the images with these dataset indices (read by an earlier pass)."""
        done = self.done.clone()  # never in place: spawned ranks would share the storage
        done[indices] = True
        self.done = done

    def predict_dataloader(self) -> DataLoader:
        remaining = (~self.done).nonzero().flatten().tolist()
        # Lightning adds a distributed sampler that gives each rank its own images, none twice
        return DataLoader(Subset(self.dataset, remaining), batch_size=self.batch_size, shuffle=False,
                          num_workers=self.num_workers)


class ExamplesState:
    """What a pass has found so far: each target's extremes and histogram, and which images it
    read. States of disjoint sets of images (ranks, earlier runs) merge exactly.

    Args:
        units: U, the number of targets.
        k: examples kept per target and side.
        count: N, the dataset's size.
        bins: histogram bins per target.
    """

    def __init__(self, units: int, k: int, count: int, bins: int = 64) -> None:
        self.extremes = RunningExtremes(units, k)
        self.histogram = RunningHistogram(units, bins)
        self.read = torch.zeros(count, dtype=torch.bool)

    def update(self, values: torch.Tensor, indices: torch.Tensor) -> None:
        """Take in a batch: ``values`` ``[B, U]`` of the images ``indices`` ``[B]``."""
        self.extremes.update(values, indices)
        self.histogram.update(values)
        self.read[indices.cpu()] = True

    def merge(self, other: ExamplesState) -> None:
        """Take in another state, of other images."""
        if (self.read & other.read).any():
            raise FeatvisError("two parts of a dataset-examples pass read the same images: the output folder's "
                               f"{PROGRESS}/ was written by two passes at once; delete it and run again")
        self.extremes.merge(other.extremes)
        self.histogram.merge(other.histogram)
        self.read |= other.read

    def state_dict(self) -> dict:
        return {"extremes": self.extremes.state_dict(), "histogram": self.histogram.state_dict(),
                "read": self.read.nonzero().flatten()}

    @classmethod
    def from_state_dict(cls, state: dict, count: int) -> ExamplesState:
        extremes = RunningExtremes.from_state_dict(state["extremes"])
        histogram = RunningHistogram.from_state_dict(state["histogram"])
        merged = cls(extremes.units, extremes.k, count, histogram.bins)
        merged.extremes, merged.histogram = extremes, histogram
        merged.read[state["read"]] = True
        return merged

    def padded(self) -> dict[str, torch.Tensor]:
        """Its tensors at fixed shapes (extremes padded to k with index -1), to gather across ranks."""
        e, k = self.extremes, self.extremes.k

        def pad(values: torch.Tensor, indices: torch.Tensor, fill: float) -> tuple[torch.Tensor, torch.Tensor]:
            missing = k - values.shape[1]
            return (torch.cat([values, values.new_full((values.shape[0], missing), fill)], 1),
                    torch.cat([indices, indices.new_full((indices.shape[0], missing), -1)], 1))

        top = pad(e.top_values, e.top_indices, float("-inf"))
        bottom = pad(e.bottom_values, e.bottom_indices, float("inf"))
        h = self.histogram
        return {"top_values": top[0], "top_indices": top[1], "bottom_values": bottom[0], "bottom_indices": bottom[1],
                "seen": torch.tensor(e.seen), "counts": h.counts, "first": h.first, "exponent": h.exponent,
                "low": h.low, "high": h.high, "read": self.read}

    @classmethod
    def from_padded(cls, tensors: dict[str, torch.Tensor], k: int, bins: int) -> ExamplesState:
        """A state from :meth:`padded`'s tensors (one rank's)."""
        units, count = tensors["counts"].shape[0], tensors["read"].shape[0]
        state = cls(units, k, count, bins)
        kept = int((tensors["top_indices"][0] >= 0).sum())  # every unit has seen the same images
        e = state.extremes
        e.top_values, e.top_indices = tensors["top_values"][:, :kept], tensors["top_indices"][:, :kept]
        e.bottom_values, e.bottom_indices = tensors["bottom_values"][:, :kept], tensors["bottom_indices"][:, :kept]
        e.seen = int(tensors["seen"])
        h = state.histogram
        h.counts, h.first, h.exponent, h.low, h.high = (tensors[n] for n in ("counts", "first", "exponent", "low", "high"))
        state.read = tensors["read"].bool()
        return state


class ExamplesPass(L.LightningModule):
    """Reads every target of ``objective``'s frozen network on each predicted batch.

    Args:
        objective: the visualization objective of the run whose targets these are (its
            network, and its ``select``: directions and logits read as they render).
        targets: the targets (resolved; one per unit, copies left out).
        k: examples per target and side.
        count: N, the number of images in the dataset.
        bins: histogram bins per target.
    """

    def __init__(self, objective: VisualizationObjective, targets: Sequence[Target], k: int, count: int,
                 bins: int = 64) -> None:
        super().__init__()
        if not isinstance(k, int) or k < 1:
            raise FeatvisError(f"k (examples per unit and side) must be a whole number >= 1, got {k!r}")
        self.reader = UnitReader(objective, targets)
        self.objective = objective  # a child: the Trainer moves its network to the device
        self.k, self.count, self.bins = k, count, bins
        self.state = self.fresh_state()  # this run, this rank
        self.earlier: ExamplesState | None = None  # what interrupted passes read
        self.result: ExamplesState | None = None  # all of it, on rank 0 at the end

    def fresh_state(self) -> ExamplesState:
        return ExamplesState(len(self.reader.targets), self.k, self.count, self.bins)

    def setup(self, stage: str) -> None:
        # made here, in each rank's process: tensors handed to spawned processes share their
        # storage, and the ranks' counts must not
        self.state = self.fresh_state()

    def train(self, mode: bool = True):
        super().train(mode)
        self.objective.net.eval()  # the frozen network never leaves eval (dropout, batch norm)
        return self

    def predict_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        images, indices = batch
        self.state.update(self.reader.values(images), indices)

    def on_predict_epoch_end(self) -> None:
        states = [self.state]
        if self.trainer.world_size > 1:  # every rank takes part; rank 0 keeps the merge
            gathered = self.all_gather(self.state.padded())
            states = [ExamplesState.from_padded({n: t[r].cpu() for n, t in gathered.items()}, self.k, self.bins)
                      for r in range(self.trainer.world_size)]
        if not self.trainer.is_global_zero:
            return
        result = self.fresh_state()
        for state in ([self.earlier] if self.earlier is not None else []) + states:
            result.merge(state)
        self.result = result

    def heatmaps(self, dataset, batch_size: int,
                 keep: Callable[[dict[int, torch.Tensor]], None] | None = None) -> dict[str, dict[str, torch.Tensor]]:
        """Each unit-with-patches target's per-patch maps of its examples, ``{key: {"top":
        [k, gh, gw], "bottom": [k, gh, gw]}}``: one more forward over just the example images,
        each target's map read on its own examples' rows only. ``keep`` receives each batch of
        example images read, ``{dataset index: [3, S, S]}`` (to write them without reading
        them again)."""
        e = self.result.extremes
        examples = [set(e.top_indices[u].tolist()) | set(e.bottom_indices[u].tolist()) for u in range(e.units)]
        wanted = sorted(set().union(*examples))
        maps: dict[int, dict[int, torch.Tensor]] = {}  # target -> dataset index -> [gh, gw]
        for start in range(0, len(wanted), batch_size):
            chunk = wanted[start:start + batch_size]
            position = {index: row for row, index in enumerate(chunk)}
            read = {i: dataset[i][0] for i in chunk}
            if keep is not None:
                keep(read)
            images = torch.stack(list(read.values())).to(self.device)
            acts = self.reader.activations(images)
            for u, target in enumerate(self.reader.targets):
                mine = [i for i in examples[u] if i in position]
                if not mine:
                    continue
                with torch.inference_mode():
                    heat = self.reader.heatmap_of(acts, target)  # [B, P]: cheap, the rows are picked after
                if heat is not None:
                    grid = _grid(acts, target, heat.shape[1], self.reader)
                    rows = heat[[position[i] for i in mine]].float().cpu()
                    maps.setdefault(u, {}).update({i: m.view(grid) for i, m in zip(mine, rows)})
        out = {}
        for u, by_index in maps.items():
            out[self.reader.targets[u].key] = {
                "top": torch.stack([by_index[i] for i in e.top_indices[u].tolist()]),
                "bottom": torch.stack([by_index[i] for i in e.bottom_indices[u].tolist()])}
        return out


def _grid(acts: dict[str, torch.Tensor], target: Target, patches: int, reader: UnitReader) -> tuple[int, int]:
    """The patch grid ``(gh, gw)`` of ``patches`` values: a feature map's own height and
    width, a square of tokens, else one row."""
    layer = target.parts[0].layer
    layout = reader.objective.network.layout(layer)
    if layout.kind == "map":
        return tuple(acts[layer].shape[-2:])
    side = round(patches ** 0.5)
    return (side, side) if side * side == patches else (1, patches)


def fingerprint(pass_: ExamplesPass, source: str, size: int) -> str:
    """What makes two passes the same: the targets, the network's weights, the source and
    the settings (a continued pass must be of the same)."""
    net = pass_.objective.net
    weights = [float(p.detach().double().sum()) for p in net.parameters()]
    described = {"targets": [t.key for t in pass_.reader.targets], "network": pass_.objective.network.name,
                 "weights": [f"{w:.6g}" for w in weights], "source": source, "count": pass_.count, "size": size,
                 "k": pass_.k, "bins": pass_.bins}
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:16]


class ExamplesFolder(L.Callback):
    """The pass's output folder: continues an interrupted pass, saves each rank's state as it
    goes, and writes the result.

    While the pass runs, each rank saves what it has read to ``<folder>/progress/<run>-rank<r>.pt``
    every ``save_every`` seconds and when the run stops on an exception; a rerun of the same
    pass (same targets, weights, source and settings) takes these in and reads only the images
    they do not cover, on any number of devices. At the end rank 0 writes the example images,
    ``examples.csv`` and, last, ``examples.pt``, then removes ``progress/``.

    Args:
        folder: the output folder.
        source: the image source's specification (recorded).
        fingerprint: the pass's :func:`fingerprint` (saved states of another pass are refused).
        command: the command line (recorded).
        save_every: seconds between saves of the state (0: after every batch).
    """

    def __init__(self, folder: str | Path, source: str, fingerprint: str, command: str = "",
                 save_every: float = 60.0) -> None:
        self.folder, self.source, self.fingerprint = Path(folder), source, fingerprint
        self.command, self.save_every = command, save_every
        self.part = uuid.uuid4().hex[:12]  # this run's saves, beside earlier runs' (never overwritten)
        self.saved_at = 0.0
        self.written: DatasetExamples | None = None

    def setup(self, trainer, pl_module: ExamplesPass, stage: str) -> None:
        data: ImageSourceData = trainer.datamodule
        earlier = read_progress(self.folder, self.fingerprint, pl_module.count)
        if earlier is not None:
            pl_module.earlier = earlier
            data.skip(earlier.read)
        self.saved_at = time.monotonic()

    def _save(self, trainer, pl_module: ExamplesPass) -> bool:
        """Write this rank's state (if it has read anything); whether it did."""
        state = pl_module.state
        if not state.read.any():
            return False
        buffer = io.BytesIO()
        torch.save({"fingerprint": self.fingerprint, "state": state.state_dict()}, buffer)
        atomic_write(self.folder / PROGRESS / f"{self.part}-rank{trainer.global_rank}.pt", buffer.getvalue())
        self.saved_at = time.monotonic()
        return True

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if time.monotonic() - self.saved_at >= self.save_every:
            self._save(trainer, pl_module)

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if isinstance(exception, FeatvisError) or not isinstance(pl_module, ExamplesPass):
            return
        if self._save(trainer, pl_module) and trainer.is_global_zero:
            print(f"featvis: interrupted: what was read is saved in {self.folder / PROGRESS}; "
                  "run the same command again to continue", file=sys.stderr)

    def on_predict_end(self, trainer, pl_module: ExamplesPass) -> None:
        # every rank's state goes to disk before rank 0 writes the result and removes them: a
        # failure while writing loses nothing that a rerun would not take in
        self._save(trainer, pl_module)
        trainer.strategy.barrier()
        if not trainer.is_global_zero:
            return
        result = pl_module.result
        if result is not None and bool(result.read.all()):
            self.written = self.write(trainer, pl_module)
            return
        read = int(result.read.sum()) if result is not None else 0
        print(f"featvis: partial: {read} of {pl_module.count} images read (the Trainer's limits stopped the pass); "
              "run the same command again to continue", file=sys.stderr)

    def write(self, trainer, pl_module: ExamplesPass) -> DatasetExamples:
        """Rank 0: the example images, the table and ``examples.pt`` (last: its presence means done)."""
        data: ImageSourceData = trainer.datamodule
        # the images are written as the maps' pass reads them: each decoded once
        maps = pl_module.heatmaps(data.dataset, data.batch_size, keep=lambda read: write_images(self.folder, read))
        result = pl_module.result
        e, h = result.extremes, result.histogram
        examples = DatasetExamples(
            source=self.source, count=pl_module.count, size=data.size, k=pl_module.k, command=self.command,
            targets=[t.key for t in pl_module.reader.targets], layers=[t.layer for t in pl_module.reader.targets],
            top_values=e.top_values, top_indices=e.top_indices, bottom_values=e.bottom_values,
            bottom_indices=e.bottom_indices, heatmaps=maps,
            histogram={"counts": h.counts, "edges": torch.stack([h.edges(u) for u in range(h.units)])},
            fingerprint=self.fingerprint)
        examples.save(self.folder)
        for part in (self.folder / PROGRESS).glob("*.pt"):
            part.unlink()
        if (self.folder / PROGRESS).is_dir():
            (self.folder / PROGRESS).rmdir()
        print(f"featvis: done: dataset examples of {len(examples.targets)} targets over {examples.count} images "
              f"in {self.folder} (examples.pt, examples.csv, {len(examples.indices())} images)", file=sys.stderr)
        return examples


def read_progress(folder: Path, expected: str, count: int) -> ExamplesState | None:
    """What interrupted passes into ``folder`` read (their saved states merged), or None;
    refuses a folder holding another pass's."""
    parts = sorted((folder / PROGRESS).glob("*.pt"))
    if not parts:
        return None
    merged = None
    for part in parts:
        try:
            saved = torch.load(part, map_location="cpu", weights_only=True)
            state = ExamplesState.from_state_dict(saved["state"], count)
        except Exception as err:  # noqa: BLE001 - a damaged part: say which, and what to do
            raise FeatvisError(f"cannot read {part} ({type(err).__name__}): a damaged save of an interrupted pass; "
                               f"delete it (its images are read again) and run the same command") from None
        if saved.get("fingerprint") != expected:
            raise FeatvisError(f"{folder} holds an interrupted pass of other targets, weights, source or settings; "
                               f"choose another --output, or delete {folder / PROGRESS} to start afresh")
        if merged is None:
            merged = state
        else:
            merged.merge(state)
    return merged


def finished(folder: Path) -> DatasetExamples | None:
    """The examples already in ``folder`` (a finished pass), if any."""
    return DatasetExamples.load(folder) if (folder / FILE).is_file() else None

