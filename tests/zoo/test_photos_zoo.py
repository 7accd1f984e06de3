"""The photo zoo: ten bundled colour photos as a task, its shipped models and their training."""

from __future__ import annotations

import lightning as L
import pytest
import torch
import yaml

from lightning_featvis.image_sources import image_source
from lightning_featvis.photos_data import (
    CROP,
    HELD_OUT_WIDTH,
    PHOTO_CLASSES,
    load_photos,
    photo_split,
    train_crops,
)
from lightning_featvis.zoo.photos import PhotosCNN, PhotosViT
from lightning_featvis.zoo.photos.data import PhotoCropsDataModule
from lightning_featvis.zoo.photos.models import (
    PHOTOS_CNN_CHECKPOINT,
    PHOTOS_VIT_CHECKPOINT,
    PHOTOS_VIT_SEED1_CHECKPOINT,
)
from lightning_featvis.zoo.training import ImageClassifier


def test_ten_colour_photos_at_a_short_side_of_128():
    photos = load_photos()
    assert len(photos) == len(PHOTO_CLASSES) == 10
    assert PHOTO_CLASSES[0] == "astronaut" and PHOTO_CLASSES[-1] == "flower"
    for photo in photos:
        assert photo.shape[0] == 3 and min(photo.shape[-2:]) == 128
        assert 0 <= photo.min() and photo.max() <= 1
        assert (photo[0] - photo[2]).abs().max() > 0.1  # colour, not grey


def test_held_out_crops_come_from_a_strip_training_never_sees():
    split = photo_split()
    assert split.val_images.shape == (90, 3, CROP, CROP)
    assert split.val_labels.bincount().tolist() == [9] * 10
    for label, (photo, region) in enumerate(zip(load_photos(), split.train_regions)):
        width = photo.shape[-1]
        assert region.shape[-1] == width - HELD_OUT_WIDTH
        strip = photo[:, :, width - HELD_OUT_WIDTH:]
        for crop in split.val_images[split.val_labels == label]:
            # every held-out crop is a window of the strip, none overlaps the training region
            assert any(torch.equal(crop, strip[:, top : top + CROP]) for top in range(0, 128 - CROP + 1, 8))
    again = photo_split()
    assert torch.equal(again.val_images, split.val_images)


def test_training_crops_are_reproducible_and_balanced():
    images, labels = train_crops(40, seed=3)
    again, _ = train_crops(40, seed=3)
    assert torch.equal(images, again) and images.shape == (40, 3, CROP, CROP)
    assert labels.bincount().tolist() == [4] * 10
    assert not torch.equal(images, train_crops(40, seed=4)[0])
    assert len(image_source("photos:train", 64)) == 2000 and len(image_source("photos:val", 64)) == 90
    assert len(image_source("photos", 32)) == 2090 and image_source("photos", 32)[0][0].shape == (3, 32, 32)


def test_the_data_module_serves_zoomed_flipped_jittered_crops():
    L.seed_everything(0)
    data = PhotoCropsDataModule(batch_size=8, crops_per_epoch=40, zoom=1.5)
    data.setup("fit")
    images, labels = next(iter(data.train_dataloader()))
    assert images.shape == (8, 3, CROP, CROP) and images.min() >= 0 and images.max() <= 1
    assert len(data.train_set) == 40 and labels.dtype == torch.int64
    val_images, val_labels = next(iter(data.val_dataloader()))
    assert torch.equal(val_images, photo_split().val_images[:8])
    # zoom picks squares of 43-96 px and resizes them: unlike plain crops, not windows of the photo
    plain = PhotoCropsDataModule(colour_jitter=0.0, zoom=1.0)
    plain.setup("fit")
    region = photo_split().train_regions[1]
    crop = plain.train_set.crop(region)
    windows = region.unfold(1, CROP, 1).unfold(2, CROP, 1)  # [3, nH, nW, 64, 64]
    assert (windows - crop[:, None, None]).abs().amax(dim=(0, 3, 4)).min() == 0
    zoomed = PhotoCropsDataModule(zoom=1.5)
    zoomed.setup("fit")
    torch.manual_seed(1)
    sides = []
    for _ in range(30):
        crop = zoomed.train_set.crop(region)
        sides.append((windows - crop[:, None, None]).abs().amax(dim=(0, 3, 4)).min().item())
    assert crop.shape == (3, CROP, CROP) and max(sides) > 0.05


@pytest.mark.parametrize(
    "make, path",
    [
        (PhotosViT, PHOTOS_VIT_CHECKPOINT),
        (lambda: PhotosViT(checkpoint=str(PHOTOS_VIT_SEED1_CHECKPOINT)), PHOTOS_VIT_SEED1_CHECKPOINT),
        (PhotosCNN, PHOTOS_CNN_CHECKPOINT),
    ],
    ids=["vit", "vit_seed1_judge", "cnn_judge"],
)
def test_shipped_photo_zoo_scores_on_held_out_crops(make, path):
    assert path.stat().st_size <= 1.5 * 1024 * 1024
    adapter = make()
    assert adapter.image_size == 64 and adapter.training_data == "photos:train"
    net = adapter.build().eval()
    split = photo_split()
    with torch.no_grad():
        correct = int((net(adapter.normalize(split.val_images)).argmax(dim=-1) == split.val_labels).sum())
    assert correct >= 81, f"held-out accuracy {correct}/90 (goal: 90%)"


def test_the_two_vits_are_independent_models_of_one_architecture():
    seed0 = PhotosViT().build().state_dict()
    seed1 = PhotosViT(checkpoint=str(PHOTOS_VIT_SEED1_CHECKPOINT)).build().state_dict()
    assert seed0.keys() == seed1.keys()
    assert not torch.allclose(seed0["heads.head.weight"], seed1["heads.head.weight"])
    untrained = PhotosCNN(pretrained=False).build().state_dict()
    assert not torch.allclose(untrained["head.weight"], PhotosCNN().build().state_dict()["head.weight"])


@pytest.mark.parametrize("name", ["train_photos_vit", "train_photos_vit_seed1", "train_photos_cnn"])
def test_training_configs_write_the_shipped_weights(name):
    from importlib import resources

    config = yaml.safe_load((resources.files("lightning_featvis.zoo.photos") / "configs" / f"{name}.yaml").read_text())
    export = config["model"]["init_args"]["export"]
    assert export == f"lightning_featvis/zoo/photos/checkpoints/{name.removeprefix('train_')}.pt"
    assert config["data"]["class_path"] == "lightning_featvis.zoo.photos.data.PhotoCropsDataModule"


def test_a_short_fit_exports_weights_the_adapter_loads(tmp_path):
    L.seed_everything(0)
    export = tmp_path / "photos.pt"
    model = ImageClassifier(PhotosCNN(pretrained=False), lr=3e-3, export=str(export))
    trainer = L.Trainer(accelerator="cpu", max_epochs=1, limit_train_batches=2, limit_val_batches=1,
                        enable_checkpointing=False, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(model, datamodule=PhotoCropsDataModule(batch_size=16, crops_per_epoch=32))
    assert "val_acc" in trainer.callback_metrics
    loaded = PhotosCNN(checkpoint=str(export)).build().state_dict()
    for key, value in model.net.state_dict().items():
        assert torch.equal(loaded[key], value), key
