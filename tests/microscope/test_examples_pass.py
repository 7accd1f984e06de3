"""The dataset-examples pass (``featvis examples``, ``dataset_examples``): one Lightning
prediction run whose result equals keeping every activation, continued after an interruption,
sharded over devices, and on the digits ViT class logits' examples of their own class."""

from __future__ import annotations

import pytest
import torch
import yaml

import lightning_featvis.microscope.reader as reader_module
from lightning_featvis import FeatvisError, NeuronObjective, parse_targets
from lightning_featvis.cli import main
from lightning_featvis.image_sources import image_source
from lightning_featvis.microscope import DatasetExamples, dataset_examples
from lightning_featvis.microscope.examples_pass import PROGRESS
from lightning_featvis.microscope.reader import UnitReader

L0 = "encoder.layers.encoder_layer_0"
TARGETS = ["heads.head:class=0-2", f"{L0}:neuron=0-3", f"{L0}:patch=5", f"0.5 * {L0}:neuron=1 - {L0}:neuron=2"]
QUIET = dict(enable_progress_bar=False)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """A flat folder of 50 small RGB photos (random, fixed)."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("photos")
    generator = torch.Generator().manual_seed(0)
    for i in range(50):
        pixels = (torch.rand(20, 24, 3, generator=generator) * 255).to(torch.uint8).numpy()
        Image.fromarray(pixels).save(folder / f"p{i:02d}.png")
    return str(folder)


def every_value(model, photos: str) -> tuple[UnitReader, torch.Tensor, torch.Tensor]:
    """The targets' activations on every image, kept: ``[N, U]``, and the images."""
    objective = NeuronObjective(model)
    objective.build_network()
    targets = [t.resolved(None) for t in parse_targets(TARGETS)]
    reader = UnitReader(objective, targets)
    images = torch.stack([image for image, _ in image_source(photos, model.image_size)])
    return reader, reader.values(images), images


def test_the_pass_keeps_what_a_pass_keeping_every_activation_finds(tiny, photos, tmp_path):
    found = dataset_examples(tiny, TARGETS, photos, k=4, output=tmp_path / "ex", batch_size=7, **QUIET)
    reader, every, images = every_value(tiny, photos)
    assert found.targets == [t.key for t in reader.targets] and found.count == 50
    top, bottom = every.T.topk(4, dim=1), every.T.topk(4, dim=1, largest=False)
    torch.testing.assert_close(found.top_values, top.values, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(found.bottom_values, bottom.values, rtol=1e-4, atol=1e-5)
    assert torch.equal(found.top_indices, top.indices) and torch.equal(found.bottom_indices, bottom.indices)
    # each target's histogram counts every image once, in the bin its activation falls in
    for u in range(len(found.targets)):
        edges = found.histogram["edges"][u]
        assert int(found.histogram["counts"][u].sum()) == 50
        expected = torch.histogram(every[:, u].double(), bins=edges).hist.long()
        assert (found.histogram["counts"][u] - expected).abs().sum() <= 1  # a value on an edge may move by one
    # per-patch maps of the examples: 16 patches as 4x4; logits and... have none
    neuron = found.targets.index(f"{L0}:neuron0")
    maps = found.heatmaps[found.targets[neuron]]
    assert maps["top"].shape == (4, 4, 4)
    expected = reader.heatmap(images[found.top_indices[neuron]], reader.targets[neuron]).view(4, 4, 4)
    torch.testing.assert_close(maps["top"], expected, rtol=1e-4, atol=1e-5)
    assert "heads.head:class0" not in found.heatmaps
    # what the gallery reads: the table, every example's image, and the file back
    again = DatasetExamples.load(tmp_path / "ex")
    assert torch.equal(again.top_indices, found.top_indices)
    assert all((tmp_path / "ex" / found.image_file(i)).is_file() for i in found.indices())
    rows = (tmp_path / "ex" / "examples.csv").read_text().splitlines()
    assert len(rows) == 1 + len(found.targets) * 2 * 4
    assert not (tmp_path / "ex" / PROGRESS).exists()


def test_an_interrupted_pass_continues_where_it_stopped(tiny, photos, tmp_path, monkeypatch):
    out = tmp_path / "ex"
    read = []
    values = reader_module.UnitReader.values
    monkeypatch.setattr(reader_module.UnitReader, "values", lambda self, images: read.append(len(images)) or values(self, images))
    # the Trainer's limit stops it after 2 batches of 7: it says so, and keeps what it read
    partial = dataset_examples  # the same call, stopped by limit_predict_batches
    with pytest.raises(FeatvisError, match="stopped before the end"):
        partial(tiny, TARGETS, photos, k=4, output=out, batch_size=7, limit_predict_batches=2, **QUIET)
    assert sum(read) == 14 and list((out / PROGRESS).glob("*.pt")) and not (out / "examples.pt").exists()
    # an error in the middle of a continued pass: what it read is saved too
    monkeypatch.setattr(reader_module.UnitReader, "values",
                        lambda self, images: (_ for _ in ()).throw(RuntimeError("disk hiccup")) if sum(read) >= 28
                        else read.append(len(images)) or values(self, images))
    with pytest.raises(RuntimeError, match="disk hiccup"):
        dataset_examples(tiny, TARGETS, photos, k=4, output=out, batch_size=7, **QUIET)
    assert sum(read) == 28
    monkeypatch.setattr(reader_module.UnitReader, "values", lambda self, images: read.append(len(images)) or values(self, images))
    found = dataset_examples(tiny, TARGETS, photos, k=4, output=out, batch_size=7, **QUIET)
    assert sum(read) == 50  # 14 + 14 read before, then the 22 left (the maps of the examples are not values)
    whole = dataset_examples(tiny, TARGETS, photos, k=4, output=tmp_path / "whole", batch_size=50, **QUIET)
    assert torch.equal(found.top_indices, whole.top_indices) and torch.equal(found.bottom_indices, whole.bottom_indices)
    assert torch.equal(found.histogram["counts"], whole.histogram["counts"])
    assert not (out / PROGRESS).exists()


TWO = dict(accelerator="cpu", devices=2, strategy="ddp_spawn")


def test_a_pass_sharded_over_two_devices_finds_what_one_finds(tiny, photos, tmp_path):
    one = dataset_examples(tiny, TARGETS, photos, k=4, output=tmp_path / "one", batch_size=5, **QUIET)
    # each rank reads half the images; rank 0 gathers the others' examples and writes the whole
    both = dataset_examples(tiny, TARGETS, photos, k=4, output=tmp_path / "both", batch_size=5, **TWO, **QUIET)
    assert torch.equal(both.top_indices, one.top_indices) and torch.equal(both.bottom_indices, one.bottom_indices)
    assert torch.equal(both.histogram["counts"], one.histogram["counts"])
    torch.testing.assert_close(both.top_values, one.top_values, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_a_pass_interrupted_on_two_devices_is_finished_on_one(tiny, photos, tmp_path):
    one = dataset_examples(tiny, TARGETS, photos, k=4, output=tmp_path / "one", batch_size=5, **QUIET)
    # two processes stop after 2 batches each, each saving what it read; one device finishes
    with pytest.raises(FeatvisError, match="stopped before the end"):
        dataset_examples(tiny, TARGETS, photos, k=4, output=tmp_path / "two", batch_size=5, limit_predict_batches=2,
                         **TWO, **QUIET)
    assert len(list((tmp_path / "two" / PROGRESS).glob("*.pt"))) == 2
    finished = dataset_examples(tiny, TARGETS, photos, k=4, output=tmp_path / "two", batch_size=5, **QUIET)
    assert torch.equal(finished.top_indices, one.top_indices) and torch.equal(finished.bottom_indices, one.bottom_indices)
    assert torch.equal(finished.histogram["counts"], one.histogram["counts"])


def test_a_folder_of_another_pass_is_refused(tiny, photos, tmp_path):
    dataset_examples(tiny, TARGETS[:1], photos, k=3, output=tmp_path / "ex", **QUIET)
    with pytest.raises(FeatvisError, match="other targets, weights, source or settings"):
        dataset_examples(tiny, TARGETS[:2], photos, k=3, output=tmp_path / "ex", **QUIET)
    (tmp_path / "ex" / "examples.pt").write_bytes(b"not torch")
    with pytest.raises(FeatvisError, match="damaged"):
        DatasetExamples.load(tmp_path / "ex")


def test_featvis_examples_on_the_digits_vit_finds_each_class_in_its_logits_top_nine(tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({
        "model": {"class_path": "lightning_featvis.NeuronObjective",
                  "init_args": {"network": {"class_path": "lightning_featvis.zoo.digits.DigitsViT"}}},
        "data": {"class_path": "lightning_featvis.TargetDataModule",
                 "init_args": {"targets": ["heads.head:class=0-9", "encoder.layers.encoder_layer_3:neuron=0-3"],
                               "images_per_target": 2}}}))
    out = tmp_path / "ex"
    main(["examples", "--config", str(config), "--data", "digits:val", "--output", str(out),
          "--trainer.enable_progress_bar", "false"])
    assert "featvis: done: dataset examples of 14 targets" in capsys.readouterr().err  # copies share their target's
    found = DatasetExamples.load(out)
    from lightning_featvis.digits_data import digits_split

    labels = digits_split().val_labels[found.top_indices[:10]]  # [10, 9]
    precision = float((labels == torch.arange(10)[:, None]).float().mean())
    assert precision >= 0.9, labels
    assert found.heatmaps["encoder.layers.encoder_layer_3:neuron0"]["top"].shape == (9, 8, 8)
    assert "featvis examples --config" in found.command
    with pytest.raises(SystemExit) as stopped:
        main(["examples", "--config", str(config), "--data", str(tmp_path / "nowhere")])
    assert stopped.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("featvis: error: image source")
