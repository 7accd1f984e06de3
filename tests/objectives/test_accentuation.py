"""Feature accentuation: a unit driven from a photo while a layer's features stay near the
photo's, and the attribution map of where the optimisation changed it."""

import lightning as L
import numpy as np
import pytest
import torch
from conftest import FirstActivation, render
from PIL import Image

from lightning_featvis import (
    AccentuationObjective,
    AttributionMap,
    DeepDreamObjective,
    FeatvisError,
    NeuronObjective,
    Octave,
    PhotoImage,
)
from lightning_featvis.images import load_photo
from lightning_featvis.objectives.accentuation import feature_distance
from lightning_featvis.probe import Probe
from lightning_featvis.zoo.digits import DigitsViT

BLOCK0, BLOCK1 = "encoder.layers.encoder_layer_0", "encoder.layers.encoder_layer_1"
PHOTO = "digits:3"


def adam(lr):
    return lambda params: torch.optim.Adam(params, lr=lr)


def block1_features(images: torch.Tensor) -> torch.Tensor:
    """The digits ViT's block-2 tokens of ``images`` ``[N, 3, 32, 32]``, flattened ``[N, F]``."""
    vit = DigitsViT()
    with torch.no_grad():
        return Probe(vit.build().eval(), [BLOCK1])(vit.normalize(images))[BLOCK1].flatten(1)


def test_accentuation_stays_nearer_the_photo_than_deep_dream_while_it_raises_the_unit(tmp_path):
    # the same unit, steps, optimizer and start (PhotoImage pixels): only the closeness differs
    target, steps = "heads.head:class=8", [Octave(steps=40)]
    runs = {
        "dream": DeepDreamObjective(DigitsViT(), photo=PHOTO, loss_form="mean", octaves=steps, optimizer=adam(0.02)),
        "free": AccentuationObjective(DigitsViT(), photo=PHOTO, closeness=0.0, param=PhotoImage(PHOTO),
                                      octaves=steps, optimizer=adam(0.02)),
        "accentuated": AccentuationObjective(DigitsViT(), photo=PHOTO, feature_layer=BLOCK1, closeness=10.0,
                                             param=PhotoImage(PHOTO), octaves=steps, optimizer=adam(0.02)),
    }
    images, activations, starts = {}, {}, {}
    for name, objective in runs.items():
        first = FirstActivation()
        collected = render(objective, [target], tmp_path / name, callbacks=[first])
        (images[name],), (activations[name],) = collected.images().values(), collected.activations().values()
        starts[name] = first.value
    photo = load_photo(PHOTO, 32)
    assert starts["dream"] == pytest.approx(starts["accentuated"]) == pytest.approx(starts["free"])
    # without closeness, accentuation is deep dream from the same photo
    torch.testing.assert_close(images["free"], images["dream"])
    pixels = {name: float((image - photo[0]).square().mean()) for name, image in images.items()}
    features = block1_features(torch.stack([photo[0], images["dream"], images["accentuated"]]))
    feature_gap = {name: float(feature_distance(features[i : i + 1], features[:1], "l2"))
                   for i, name in ((1, "dream"), (2, "accentuated"))}
    assert pixels["accentuated"] < 0.7 * pixels["dream"], pixels
    assert feature_gap["accentuated"] < 0.7 * feature_gap["dream"], feature_gap
    assert activations["accentuated"] > starts["accentuated"] + 2.0, (starts, activations)  # class 8 still rises


def attribution_run(tmp_path, **options):
    """Neuron 5 of block 1 in patch 27 (pixels 12-15 both ways), 30 steps from digits:3 in pixels;
    the objective, its AttributionMap, the test's own sum of |d loss / d canvas| and the results."""

    class Summed(L.Callback):  # PhotoImage stores the canvas itself: its grad is d loss / d canvas
        total = None

        def on_after_backward(self, trainer, pl_module):
            grad = pl_module.param.canvas.grad.abs().sum(dim=1, keepdim=True)
            self.total = grad if self.total is None else self.total + grad

    objective = AccentuationObjective(DigitsViT(), photo=PHOTO, param=PhotoImage(PHOTO), octaves=[Octave(steps=30)],
                                      optimizer=adam(0.02), **options)
    attribution, summed = AttributionMap(), Summed()
    collected = render(objective, [f"{BLOCK0}:neuron=5 patch=27"], tmp_path, callbacks=[attribution, summed],
                       logger=L.pytorch.loggers.TensorBoardLogger(tmp_path, name="tb"))
    return objective, attribution, summed, collected


def test_the_attribution_map_is_written_beside_the_image_and_sits_in_the_units_patch(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    objective, attribution, summed, collected = attribution_run(tmp_path)
    raw = attribution.maps[f"{BLOCK0}:neuron5_patch27"]
    assert raw.shape == (1, 32, 32) and (raw >= 0).all() and raw.max() > 0
    # every step's gradient, not the last one's
    torch.testing.assert_close(raw, summed.total[0].cpu())
    # the mass of each 4x4-pixel patch (8 x 8 of them): the unit's own patch holds far more than
    # its 1/64 share, and far more than any other patch
    patches = (raw[0].reshape(8, 4, 8, 4).sum(dim=(1, 3)) / raw.sum()).flatten()
    first, second = patches.topk(2).values.tolist()
    assert int(patches.argmax()) == 27 and first > 0.25 and first > 3 * second, patches.reshape(8, 8)

    folder = tmp_path / "tb" / "version_0" / "images"
    image = Image.open(folder / f"{BLOCK0}__neuron5_patch27.png")
    written = Image.open(folder / f"{BLOCK0}__neuron5_patch27__attribution.png")
    assert written.size == image.size == (32, 32)
    pixels = np.asarray(written.convert("L")).astype(np.float32) / 255
    np.testing.assert_allclose(pixels, (raw[0] / raw.max()).numpy(), atol=1 / 255)  # normalised to [0, 1]
    events = EventAccumulator(str(tmp_path / "tb" / "version_0"), size_guidance={"images": 0})
    events.Reload()
    assert f"digits_vit/{BLOCK0}/neuron5_patch27/attribution" in events.Tags()["images"]


def test_the_objective_adds_its_attribution_map_unless_told_not_to(tmp_path):
    for attribution, expected in ((True, True), (False, False)):
        objective = AccentuationObjective(DigitsViT(), photo=PHOTO, attribution=attribution, octaves=[Octave(steps=2)])
        root = tmp_path / str(attribution)
        render(objective, ["heads.head:class=8"], root, callbacks=[])
        assert (root / "images" / "heads.head__class8__attribution.png").is_file() == expected


@pytest.mark.parametrize("distance", ["l2", "cos"])
def test_the_closeness_penalty_is_zero_at_the_photo_and_grows_away_from_it(distance, tmp_path):
    objective = AccentuationObjective(DigitsViT(), photo=PHOTO, feature_layer=BLOCK1, distance=distance,
                                      octaves=[Octave(steps=1)], attribution=False)
    render(objective, ["heads.head:class=8", "heads.head:class=3"], tmp_path, group_size=2, callbacks=[])
    views = torch.cat([load_photo(PHOTO, 32), load_photo("digits:5", 32)])
    penalty = objective.closeness_distance(views, objective.targets)
    assert float(penalty[0]) == pytest.approx(0.0, abs=1e-6)
    assert float(penalty[1]) > 0.05


def test_the_default_fourier_canvas_starts_as_the_photo(tmp_path):
    starts = []

    class Start(L.Callback):
        def on_before_backward(self, trainer, pl_module, loss):
            starts.append(pl_module.param().detach().clone())

    objective = AccentuationObjective(DigitsViT(), photo="china.jpg", octaves=[Octave(steps=1)], attribution=False)
    render(objective, ["heads.head:class=8"], tmp_path, callbacks=[Start()])
    torch.testing.assert_close(starts[0][0], load_photo("china.jpg", 32)[0], atol=1e-4, rtol=0)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (dict(closeness=-1.0), "closeness must be >= 0"),
        (dict(stay_near=-0.5), "stay_near must be >= 0"),
        (dict(distance="l1"), "distance must be 'l2' or 'cos'"),
        (dict(feature_layer="encoder.layers.encoder_layer_9"), "unknown layer 'encoder.layers.encoder_layer_9'"),
        (dict(photo="no/such/photo.png"), "image file not found"),
    ],
)
def test_bad_options_fail_before_the_first_step(options, message, tmp_path):
    objective = AccentuationObjective(DigitsViT(), **{"photo": PHOTO, **options, "octaves": [Octave(steps=1)]})
    with pytest.raises(FeatvisError, match=message):
        render(objective, ["heads.head:class=8"], tmp_path, callbacks=[])


def test_an_attribution_map_needs_an_objective_that_exposes_its_canvas_gradient(tmp_path):
    with pytest.raises(FeatvisError, match="AttributionMap reads the canvas gradient"):
        render(NeuronObjective(DigitsViT(), octaves=[Octave(steps=1)]), ["heads.head:class=8"], tmp_path,
               callbacks=[AttributionMap()])
    with pytest.raises(FeatvisError, match=r"quantile must be in \(0, 1\]"):
        AttributionMap(quantile=0.0)


def test_feature_distance_is_zero_for_equal_features_and_scale_free():
    reference = torch.randn(2, 10)
    assert feature_distance(reference, reference, "l2").abs().max() == 0
    assert feature_distance(torch.zeros(2, 10), reference, "l2") == pytest.approx(torch.ones(2))
    torch.testing.assert_close(feature_distance(2 * reference, reference, "cos"), torch.zeros(2), atol=1e-6, rtol=0)
    torch.testing.assert_close(feature_distance(3 * reference, 3 * torch.zeros_like(reference) + 3 * reference.roll(1, 0),
                                                "l2"),
                               feature_distance(reference, reference.roll(1, 0), "l2"))


def test_render_with_the_accentuation_recipe_gives_the_maps_to_python(tmp_path):
    from lightning_featvis import render

    rendering = render(DigitsViT(), ["heads.head:class=8", "heads.head:class=1"], recipe="accentuation", steps=3,
                       photo=PHOTO, feature_layer=BLOCK1, default_root_dir=str(tmp_path),
                       enable_progress_bar=False, enable_model_summary=False)
    assert rendering.attributions.shape == (2, 1, 32, 32) and (rendering.attributions >= 0).all()
    assert not torch.allclose(rendering.attributions[0], rendering.attributions[1])  # each target's own
    assert (rendering.log_dir / "images" / "heads.head__class8__attribution.png").is_file()
    plain = render(DigitsViT(), ["heads.head:class=8"], steps=1, logger=False, enable_progress_bar=False)
    assert plain.attributions is None


@pytest.mark.slow  # two spawned processes: about 9 s
def test_two_processes_write_the_attribution_maps_of_one(tiny, tmp_path):
    # 3 targets in groups of 2 over a growing, jittered canvas: the maps are gathered from both
    # ranks (padding removed) and carried to the second octave's size
    from lightning_featvis import PositionalJitter

    targets = ["encoder.layers.encoder_layer_1:neuron=0-1", "heads.head:class=1"]
    for devices in (1, 2):
        objective = AccentuationObjective(tiny, photo=PHOTO, octaves=[Octave(steps=2, lr=(0.05, 0.05)),
                                                                      Octave(steps=2, size=24, lr=(0.05, 0.05))])
        extra = dict(strategy="ddp_spawn") if devices == 2 else {}
        render(objective, targets, tmp_path / f"d{devices}", group_size=2, callbacks=[PositionalJitter()],
               devices=devices, **extra)
    one, two = ({p.name: np.asarray(Image.open(p), dtype=np.int16) for p in (tmp_path / d).rglob("*__attribution.png")}
                for d in ("d1", "d2"))
    assert len(one) == 3 and set(one) == set(two)
    assert all(image.shape[:2] == (24, 24) for image in one.values())
    assert max(int(np.abs(one[k] - two[k]).max()) for k in one) <= 1
