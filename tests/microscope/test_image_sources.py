"""Image sources for dataset examples: the digits, folders (flat and ImageFolder), and Hugging Face
datasets saved to disk, each giving (image [3, S, S] in [0, 1], index) at the model's size."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from lightning_featvis.digits_data import digits_split, load_digits_tensors
from lightning_featvis.errors import FeatvisError
from lightning_featvis.image_sources import image_source, square


def test_the_digits_come_as_the_digits_models_see_them():
    every = image_source("digits", 32)
    image, index = every[5]
    assert len(every) == 1797 and index == 5 and image.shape == (3, 32, 32)
    torch.testing.assert_close(image, load_digits_tensors(32)[0][5])
    held_out = image_source("digits:val", 32)
    torch.testing.assert_close(held_out[0][0], digits_split().val_images[0])
    with pytest.raises(FeatvisError, match="splits train and val"):
        image_source("digits:test", 32)


def write_images(folder, colours):
    folder.mkdir(parents=True, exist_ok=True)
    for i, colour in enumerate(colours):
        Image.fromarray(np.full((20, 30, 3), colour, dtype=np.uint8)).save(folder / f"{i}.png")


def test_a_folder_flat_or_by_class_is_read_in_sorted_order_cropped_and_resized(tmp_path):
    write_images(tmp_path / "flat", [(255, 0, 0), (0, 255, 0)])
    flat = image_source(str(tmp_path / "flat"), 16)
    assert len(flat) == 2 and flat[0][0].shape == (3, 16, 16)
    torch.testing.assert_close(flat[1][0][:, 8, 8], torch.tensor([0.0, 1.0, 0.0]))
    write_images(tmp_path / "classes" / "b_dog", [(0, 0, 255)])
    write_images(tmp_path / "classes" / "a_cat", [(255, 255, 255), (0, 0, 0)])
    by_class = image_source(str(tmp_path / "classes"), 16)
    assert [f.parent.name for f in by_class.files] == ["a_cat", "a_cat", "b_dog"]
    torch.testing.assert_close(by_class[2][0][:, 0, 0], torch.tensor([0.0, 0.0, 1.0]))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FeatvisError, match="no image files"):
        image_source(str(tmp_path / "empty"), 16)
    with pytest.raises(FeatvisError, match="image source 'nowhere'"):
        image_source("nowhere", 16)


def test_a_saved_hugging_face_dataset_is_read_offline(tmp_path):
    import datasets

    pictures = [Image.fromarray(np.full((8, 12, 3), v, dtype=np.uint8)) for v in (0, 128, 255)]
    data = datasets.Dataset.from_dict({"label": [0, 1, 2], "img": pictures},
                                      features=datasets.Features({"label": datasets.Value("int64"),
                                                                  "img": datasets.Image()}))
    data.save_to_disk(str(tmp_path / "saved"))
    source = image_source(str(tmp_path / "saved"), 8)
    assert len(source) == 3
    torch.testing.assert_close(source[2][0], torch.ones(3, 8, 8))
    torch.testing.assert_close(source[1][0], torch.full((3, 8, 8), 128 / 255))
    plain = datasets.Dataset.from_dict({"label": [0]})
    plain.save_to_disk(str(tmp_path / "no_images"))
    with pytest.raises(FeatvisError, match="no image column"):
        image_source(str(tmp_path / "no_images"), 8)


def test_square_crops_the_middle():
    image = torch.zeros(3, 4, 8)
    image[:, :, 2:6] = 1.0  # the middle 4 columns are white
    torch.testing.assert_close(square(image, 4), torch.ones(3, 4, 4))
