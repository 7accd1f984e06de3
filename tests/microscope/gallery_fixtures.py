"""Shared by the gallery tests: a short quickstart run with copies and a sum, a dataset-examples
folder for it (real digits through the digits ViT), and the gallery of both. Session-scoped,
imported by tests/microscope/test_gallery*.py (pytest puts this folder on sys.path)."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest
import torch
import yaml

from lightning_featvis import NeuronObjective
from lightning_featvis.image_sources import image_source
from lightning_featvis.microscope.extremes import RunningExtremes
from lightning_featvis.microscope.histogram import RunningHistogram
from lightning_featvis.microscope.reader import UnitReader
from lightning_featvis.microscope.store import DatasetExamples, write_images
from lightning_featvis.targets import parse_targets
from lightning_featvis.zoo.digits import DigitsViT

ROOT = Path(__file__).resolve().parents[2]
L1, L3 = "encoder.layers.encoder_layer_1", "encoder.layers.encoder_layer_3"
#: the quickstart's targets, a diverse set of two images (neuron 5 listed twice) and a sum
TARGETS = [
    "heads.head:class=0-9",
    f"{L3}:neuron=0-3",
    f"{L1}:neuron=0 patch=27",
    f"{L1}:patch=27",
    f"{L3}:neuron=5",
    f"{L3}:neuron=5",
    f"0.5 * {L3}:neuron=1 - {L3}:neuron=2",
]
SUM_KEY = f"sum(0.5*{L3}:neuron1 + -1*{L3}:neuron2)"
K = 9


def fit_quickstart(root: Path, targets: list[str] = TARGETS, steps: int = 5) -> Path:
    """Run ``featvis fit`` on the quickstart config with ``targets`` and ``steps`` steps per
    target (in-process); return the run folder ``root/lightning_logs/version_0``."""
    from lightning_featvis.cli import main

    overrides = root / "targets.yaml"
    overrides.write_text(yaml.safe_dump({"data": {"init_args": {"targets": targets}}}))
    main(["fit", "--config", str(ROOT / "configs" / "quickstart.yaml"), "--config", str(overrides),
          "--model.init_args.octaves", f"[{{steps: {steps}}}]", "--trainer.default_root_dir", str(root),
          "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"])
    return root / "lightning_logs" / "version_0"


def manifest(run_dir: Path) -> list[dict]:
    with (run_dir / "images" / "manifest.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def build_examples(folder: Path, targets: list[str] = TARGETS, k: int = K, bins: int = 32,
                   source: str = "digits") -> Path:
    """Write a ``featvis examples`` folder for ``targets`` of the digits ViT over ``source``
    (one pass: top/bottom k, a ``bins``-bin histogram; then the per-patch maps of the examples)."""
    objective = NeuronObjective(DigitsViT())
    unique = list({t.identity: t for t in parse_targets(targets) if t.copy == 0}.values())
    reader = UnitReader(objective, unique)
    dataset = image_source(source, 32)
    extremes, hist = RunningExtremes(len(unique), k), RunningHistogram(len(unique), bins)
    loader = torch.utils.data.DataLoader(dataset, batch_size=512)
    for images, indices in loader:
        values = reader.values(images)
        extremes.update(values, indices)
        hist.update(values)
    heatmaps = {}
    for u, target in enumerate(unique):
        maps = {}
        for side in ("top", "bottom"):
            chosen = getattr(extremes, f"{side}_indices")[u]
            patches = reader.heatmap(torch.stack([dataset[int(i)][0] for i in chosen]), target)
            if patches is not None:
                side_length = int(patches.shape[1] ** 0.5)
                maps[side] = patches.view(len(chosen), side_length, side_length)
        if maps:
            heatmaps[target.key] = maps
    examples = DatasetExamples(
        source=source, count=len(dataset), size=32, k=k,
        command=f"featvis examples RUN_DIR --source {source} --k {k} --output {folder}",
        targets=[t.key for t in unique], layers=[t.layer for t in unique],
        top_values=extremes.top_values, top_indices=extremes.top_indices,
        bottom_values=extremes.bottom_values, bottom_indices=extremes.bottom_indices,
        heatmaps=heatmaps,
        histogram={"counts": hist.counts, "edges": torch.stack([hist.edges(u) for u in range(len(unique))])},
    )
    write_images(folder, {i: dataset[i][0] for i in examples.indices()})
    return examples.save(folder)


@pytest.fixture(scope="session")
def quick_run(tmp_path_factory) -> Path:
    """A 5-step quickstart run with copies and a sum (about 10 s)."""
    return fit_quickstart(tmp_path_factory.mktemp("gallery_run"))


@pytest.fixture(scope="session")
def examples_dir(tmp_path_factory) -> Path:
    """Dataset examples of the run's targets over the 1797 digits (a few seconds)."""
    return build_examples(tmp_path_factory.mktemp("gallery_examples"))


@pytest.fixture(scope="session")
def site(quick_run, examples_dir, tmp_path_factory) -> Path:
    """The gallery of the run with its examples: its folder."""
    from lightning_featvis.microscope.gallery import write_gallery

    return write_gallery(quick_run, examples_dir, tmp_path_factory.mktemp("gallery_site") / "site").parent


if __name__ == "__main__":  # python tests/microscope/gallery_fixtures.py RUN_DIR OUT: examples for a run
    build_examples(Path(sys.argv[2]), yaml.safe_load((Path(sys.argv[1]) / "config.yaml").read_text())
                   ["data"]["init_args"]["targets"])
