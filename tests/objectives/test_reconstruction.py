"""Reconstruction matches a photo's layer output; deep dream starts from the photo."""

import numpy as np
import pytest
import torch
from conftest import Collector, FirstActivation, render
from PIL import Image
from torchmetrics.functional.image import peak_signal_noise_ratio

from lightning_featvis import (
    DeepDreamObjective,
    FeatvisError,
    NeuronObjective,
    Octave,
    PhotoImage,
    ReconstructionObjective,
    ReconstructionReport,
)
from lightning_featvis.digits_data import digits_split, load_digits_tensors
from lightning_featvis.images import load_photo
from lightning_featvis.zoo.digits import DigitsViT

BLOCK0 = "encoder.layers.encoder_layer_0"


@pytest.fixture
def digit_png(tmp_path):
    """A held-out digit (32x32 RGB) as a PNG file."""
    image = digits_split().val_images[3]
    path = tmp_path / "digit.png"
    Image.fromarray((image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(path)
    return path


class InitialCanvas(Collector):
    def on_before_backward(self, trainer, pl_module, loss):
        if trainer.global_step == 0:
            self.initial = pl_module.param().detach().clone()


def test_reconstruction_from_an_early_layer_beats_the_noise_by_far(digit_png, tmp_path):
    seen = InitialCanvas()
    objective = ReconstructionObjective(
        DigitsViT(), target_image=str(digit_png), octaves=[Octave(steps=300)],
        optimizer=lambda params: torch.optim.Adam(params, lr=0.05),
    )
    render(objective, [f"{BLOCK0}:all"], tmp_path, callbacks=[seen])
    target = load_photo(str(digit_png), 32)
    start = peak_signal_noise_ratio(seen.initial.clamp(0, 1), target, data_range=1.0)
    final = peak_signal_noise_ratio(seen.results[0].images, target, data_range=1.0)
    assert final > start + 10, (float(start), float(final))


def test_the_patch_subset_loss_ignores_the_other_tokens(digit_png, tmp_path):
    objective = ReconstructionObjective(DigitsViT(), target_image=str(digit_png), distance="cos", octaves=[Octave(steps=1)])
    render(objective, [f"{BLOCK0}:patch=[0-26] cls=1"], tmp_path)  # builds the network and the reference
    (target,) = [t for t in objective.plan.targets]
    acts = objective.activations(torch.rand(1, 3, 32, 32, requires_grad=True), [BLOCK0])
    acts[BLOCK0].retain_grad()
    objective.loss(objective.select(acts, target), target).sum().backward()
    grad = acts[BLOCK0].grad[0].abs().sum(dim=1)  # per token
    # the other tokens get no gradient: none within rounding of the subset's (a loss that read
    # them would give them gradients of the subset's size)
    assert (grad[:28] > 0).all() and grad[28:].max() <= 1e-6 * grad[:28].min()


def test_layernorms_can_be_removed(digit_png, tmp_path):
    objective = ReconstructionObjective(DigitsViT(), target_image=str(digit_png), remove_layernorm=True, octaves=[Octave(steps=2)])
    render(objective, [f"{BLOCK0}:all"], tmp_path)
    assert not any(isinstance(m, torch.nn.LayerNorm) for m in objective.net.modules())


def test_dream_starts_from_the_photo_and_raises_the_unit(digit_png, tmp_path):
    first, seen = FirstActivation(), InitialCanvas()
    objective = NeuronObjective(DigitsViT(), param=PhotoImage(str(digit_png)), reduction="mean",
                                octaves=[Octave(steps=10, lr=(1.0, 1.0)), Octave(steps=10, size=48, lr=(1.0, 1.0))])
    render(objective, [f"{BLOCK0}:neuron=5"], tmp_path, callbacks=[first, seen])
    torch.testing.assert_close(seen.initial, load_photo(str(digit_png), 32))
    (result,) = seen.results
    assert result.images.shape == (1, 3, 48, 48)
    assert result.activations[0] > first.value + 0.5


def test_missing_or_unreadable_images_are_named(tmp_path):
    with pytest.raises(FeatvisError, match="image file not found"):
        load_photo(str(tmp_path / "nope.png"))
    (tmp_path / "bad.png").write_text("not an image")
    with pytest.raises(FeatvisError, match="cannot read image"):
        load_photo(str(tmp_path / "bad.png"))
    assert load_photo(None, 64).shape == (1, 3, 64, 64)  # scikit-learn's bundled photo


def test_digits_samples_load_by_index():
    torch.testing.assert_close(load_photo("digits:7"), load_digits_tensors()[0][7:8])
    with pytest.raises(FeatvisError, match="digits:0 to digits:1796"):
        load_photo("digits:1797")


def test_layer_sweep_writes_table_grid_manifest_and_tensorboard(digit_png, tmp_path):
    import csv

    from lightning.pytorch.loggers import TensorBoardLogger
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    objective = ReconstructionObjective(
        DigitsViT(), target_image=str(digit_png), octaves=[Octave(steps=30)],
        optimizer=lambda params: torch.optim.Adam(params, lr=0.05),
    )
    # listed deep-first, in groups of 2: rows, grid and TensorBoard steps follow the config
    targets = [f"encoder.layers.encoder_layer_{i}:all" for i in (3, 2, 1)] + ["conv_proj:all"]
    collected = render(objective, targets, tmp_path, group_size=2, callbacks=[ReconstructionReport()],
                       logger=TensorBoardLogger(tmp_path, name="tb"))
    images = tmp_path / "tb" / "version_0" / "images"
    with (images / "reconstruction.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["target"] for r in rows] == targets
    results = {t.key: (img, loss) for res in collected.results for t, img, loss in zip(res.targets, res.images, res.losses)}
    target = load_photo(str(digit_png), 32)
    with (images / "manifest.csv").open() as f:
        manifest = {r["target"]: r for r in csv.DictReader(f)}
    for row in rows:
        image, loss = results[row["target"]]
        assert float(row["psnr"]) == pytest.approx(float(peak_signal_noise_ratio(image[None], target, data_range=1.0)), abs=1e-3)
        assert float(row["distance"]) == pytest.approx(float(loss), rel=1e-4)
        assert float(manifest[row["target"]]["loss"]) == pytest.approx(float(loss), rel=1e-4)
        assert row["accurate"] == str(float(row["distance"]) < float(row["noise_distance"]))
    # the stem is easiest to invert: the sweep must show it
    assert float(rows[-1]["psnr"]) > float(rows[0]["psnr"])
    grid = Image.open(images / "reconstruction_grid.png")
    assert grid.size == (2 + 5 * 34, 2 + 34)  # the photo and 4 reconstructions in one row
    grid = torch.from_numpy(np.array(grid.convert("RGB"))).permute(2, 0, 1).float() / 255
    torch.testing.assert_close(grid[:, 2:34, 2:34], target[0], atol=1 / 255, rtol=0)  # the photo first
    torch.testing.assert_close(grid[:, 2:34, 2 + 4 * 34 : 34 + 4 * 34], results["conv_proj:all"][0], atol=1 / 255, rtol=0)
    events = EventAccumulator(str(tmp_path / "tb" / "version_0"), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    psnr = events.Scalars("digits_vit/reconstruction/psnr")
    psnr = sorted(psnr, key=lambda e: e.step)
    assert [e.step for e in psnr] == list(range(len(rows)))
    assert [e.value for e in psnr] == pytest.approx([float(r["psnr"]) for r in rows], abs=1e-3)  # float32 in TensorBoard
    assert "digits_vit/reconstruction/grid" in events.Tags()["images"]


def test_the_criterion_accepts_a_perfect_and_rejects_a_poor_reconstruction(digit_png, tmp_path):
    objective = ReconstructionObjective(DigitsViT(), target_image=str(digit_png), octaves=[Octave(steps=1)])
    render(objective, [f"{BLOCK0}:all"], tmp_path)
    (target,) = objective.plan.targets
    photo = load_photo(str(digit_png), 32)[0]
    perfect, poor = objective.fidelity(torch.stack([photo, torch.full_like(photo, 0.5)]), [target, target])
    # the photo itself is at distance 0 up to float rounding, which depends on the CPU and the
    # batch; its noisy copy and a grey image are many orders of magnitude further
    assert perfect["distance"] < 1e-5 and perfect["accurate"] and perfect["ssim"] == pytest.approx(1.0)
    assert perfect["noise_distance"] > 1e3 * max(perfect["distance"], 1e-7)
    assert poor["distance"] > 1e3 * max(perfect["distance"], 1e-7) and not poor["accurate"]
    # a' = a + N(0, criterion_noise): noisier references accept worse reconstructions
    objective.criterion_noise = 10.0
    (lenient,) = objective.fidelity(torch.full_like(photo, 0.5)[None], [target])
    assert lenient["accurate"] and lenient["noise_distance"] > poor["noise_distance"]


def test_the_report_refuses_objectives_that_reconstruct_nothing(tmp_path):
    with pytest.raises(FeatvisError, match="not a ReconstructionObjective"):
        render(NeuronObjective(DigitsViT(), octaves=[Octave(steps=1)]), [f"{BLOCK0}:neuron=0"], tmp_path,
               callbacks=[ReconstructionReport()])


@pytest.fixture
def big_digit_png(tmp_path):
    """A held-out digit as a 56x56 PNG: larger than the digits models' 32 px input."""
    image = torch.nn.functional.interpolate(digits_split().val_images[3:4], size=(56, 56), mode="bilinear")[0]
    path = tmp_path / "big_digit.png"
    Image.fromarray((image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(path)
    return path


def test_growing_a_photo_canvas_upsamples_only_the_dream(big_digit_png):
    # the photo file is larger than both sizes: the 48 px photo is read from it, not blown up
    param = PhotoImage(str(big_digit_png))
    param.allocate(1, 48)
    param.reset_([0], 32)
    detail = torch.randn(1, 3, 32, 32) * 0.1
    param.update_(lambda region: region + detail)
    param.resize_(48)
    expected = load_photo(str(big_digit_png), 48) + torch.nn.functional.interpolate(detail, size=(48, 48), mode="bilinear")
    torch.testing.assert_close(param(), expected)


def test_deep_dream_comes_out_at_the_photo_size_and_raises_the_unit(big_digit_png, tmp_path):
    first = FirstActivation()
    objective = DeepDreamObjective(DigitsViT(), photo=str(big_digit_png))
    collected = render(objective, [f"{BLOCK0}:neuron=5"], tmp_path, callbacks=[first])
    assert [o.size for o in objective.octaves] == [32, 42, 56] and objective.steps_per_target == 300
    (result,) = collected.results
    assert result.images.shape == (1, 3, 56, 56)
    assert result.activations[0] > first.value + 0.5


def test_deep_dream_can_stay_near_the_photo(big_digit_png, tmp_path):
    photo = load_photo(str(big_digit_png), 32)
    drift = {}
    for weight in (0.0, 1000.0):
        objective = DeepDreamObjective(DigitsViT(), photo=str(big_digit_png), stay_near=weight,
                                       octaves=[Octave(steps=30, size=32, lr=(1.0, 1.0))])
        seen = render(objective, [f"{BLOCK0}:neuron=5"], tmp_path / str(weight), callbacks=[])
        drift[weight] = float((seen.results[0].images - photo).abs().mean())
    assert drift[1000.0] < 0.5 * drift[0.0], drift


@pytest.mark.parametrize("distance", ["l1", "l2", "cos"])
def test_the_objective_loss_is_the_distance_it_is_asked_for(distance):
    """The loss on a known reference/output pair: mean |d| for l1, mean d^2 for l2, 1 - cos for
    cos, with differences far from 0 and 1 so that the three disagree."""
    from conftest import tiny_vit

    from lightning_featvis.targets import Target
    from lightning_featvis.units import Unit

    objective = ReconstructionObjective(tiny_vit(), distance=distance)
    wanted = torch.tensor([[0.5, -1.0, 2.0, 0.0, 1.5]])
    objective._references["heads.head"] = wanted  # the photo's logits, as reference() caches them
    diff = torch.tensor([[0.3, -2.5, 1.2, 0.4, -0.7], [2.0, 0.6, -3.0, 1.4, 0.2]])
    selected = wanted + diff
    loss = objective.loss(selected, Target("heads.head", Unit()))
    expected = {
        "l1": diff.abs().mean(dim=1),
        "l2": diff.square().mean(dim=1),
        "cos": 1 - (selected * wanted).sum(dim=1) / (selected.norm(dim=1) * wanted.norm()),
    }[distance]
    torch.testing.assert_close(loss, expected, atol=1e-6, rtol=1e-6)
    # the three distances really differ on this pair
    assert (diff.abs().mean(dim=1) - diff.square().mean(dim=1)).abs().min() > 0.3
