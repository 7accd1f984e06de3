"""The featvis command: every shipped config runs offline, and bad input gives one message."""

import io
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from lightning_featvis.cli import main

ROOT = Path(__file__).resolve().parents[1]
# every config that ships: the repository's, the packaged recipes and the digits zoo's training
CONFIG_DIRS = [ROOT / "configs", ROOT / "lightning_featvis" / "recipes", ROOT / "lightning_featvis" / "zoo" / "digits" / "configs"]
CONFIGS = sorted(p for folder in CONFIG_DIRS for p in folder.rglob("*.yaml"))


def offline(config: dict, tmp_path: Path) -> dict:
    """The same config without downloads or writes outside tmp_path, one target per group."""
    model = config["model"]["init_args"]
    network = model.get("network", {}).get("init_args", {})
    if "weights" in network:
        network["weights"] = None  # random weights: pretrained ones cannot be downloaded here
    if network.get("pretrained") and "Digits" not in config["model"]["init_args"]["network"]["class_path"]:
        network["pretrained"] = False  # hub weights; the digits models' own weights ship inside
    if network.get("model") == "gpt2":
        # GPT-2's config and tokenizer come from the hub: the same layer names on a small
        # random GPT-2 of as many blocks, reading MiniLM's packaged vocabulary
        from lightning_featvis.models.text import packaged_minilm

        network.update(model=None, model_type="gpt2", pretrained=False, tokenizer=packaged_minilm(),
                       config=dict(n_layer=12, n_embd=32, n_head=2, vocab_size=30522))
    if "export" in model:
        model["export"] = str(tmp_path / "exported.pt")
    data = config["data"].setdefault("init_args", {})
    if "group_size" in data:
        data["group_size"] = 1
    return config


def quick_octaves(octaves: list[dict]) -> list[dict]:
    """The same octaves (sizes, learning rates) with 1-2 steps each."""
    return [{**octave, "steps": min(int(octave["steps"]), 2)} for octave in octaves]


def expected_canvas(config_path: Path, octaves: list[dict]) -> int:
    """The side of the canvas a target ends on: the last octave's size, else the model's input
    size (read from the config's own objective, as the CLI builds it)."""
    if octaves[-1].get("size"):
        return int(octaves[-1]["size"])
    from lightning_featvis.cli import FeatvisCLI

    cli = FeatvisCLI(args=["--config", str(config_path)], run=False)
    return cli.model.network.image_size


def one_row_table(path: Path) -> list[dict]:
    import csv

    with path.open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("path", CONFIGS, ids=[str(p.relative_to(ROOT)) for p in CONFIGS])
def test_every_config_finishes_a_target_through_every_octave_offline(path, tmp_path):
    """Each shipped config, offline (random weights where they would be downloaded), with its
    octaves cut to 1-2 steps each but their sizes kept: a render finishes its first target,
    whose PNG has the config's final canvas size and is not blank; a text run writes its row
    and embeddings; a training run trains and exports its weights."""
    config = offline(yaml.safe_load(path.read_text()), tmp_path)
    model = config["model"]["init_args"]
    octaves = model.get("octaves")
    if octaves:
        model["octaves"] = octaves = quick_octaves(octaves)
        steps = sum(octave["steps"] for octave in octaves)  # one target's steps: groups hold one target
    else:
        steps = 2  # training: two optimizer steps
    patched = tmp_path / path.name
    patched.write_text(yaml.safe_dump(config))
    main(["fit", "--config", str(patched), f"--trainer.max_steps={steps}", "--trainer.limit_val_batches=1",
          f"--trainer.default_root_dir={tmp_path}", "--trainer.enable_progress_bar=false"])
    assert list(tmp_path.rglob("events.out.tfevents*"))
    run = next((tmp_path / "lightning_logs").glob("version_*")) if (tmp_path / "lightning_logs").is_dir() else None
    kind = config["model"]["class_path"].rsplit(".", 1)[-1]
    if kind == "ImageClassifier":
        exported = Path(model["export"])
        assert exported.is_file() and torch.load(exported, weights_only=True)
    elif kind == "TextReconstructionObjective":
        rows = one_row_table(run / "text" / "text.csv")
        assert len(rows) >= 1 and all((run / "text" / row["file"]).is_file() for row in rows)
        assert rows[0]["recovered"] != ""
    else:
        rows = one_row_table(run / "images" / "manifest.csv")
        assert len(rows) >= 1, "no target finished"
        side = expected_canvas(patched, octaves)
        for row in rows:
            pixels = np.asarray(Image.open(run / "images" / row["file"]), dtype=np.float64)
            assert pixels.shape[:2] == (side, side), (row["file"], pixels.shape, side)
            assert pixels.std() > 1.0, f"{row['file']} is blank (pixel std {pixels.std():.3f} of 255)"


def test_unknown_layer_is_one_message_not_a_traceback(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--model=lightning_featvis.NeuronObjective", "--model.network=lightning_featvis.zoo.digits.DigitsViT",
              "--model.layer=encoder.layers.encoder_layer_9", "--data=lightning_featvis.TargetDataModule",
              "--data.targets=[neuron=0]", f"--trainer.default_root_dir={tmp_path}"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "unknown layer 'encoder.layers.encoder_layer_9'" in err and "encoder.layers.encoder_layer_3" in err
    assert "Traceback" not in err


def test_index_out_of_range_names_the_range(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--model=lightning_featvis.ClassLogitObjective", "--model.network=lightning_featvis.zoo.digits.DigitsViT",
              "--data=lightning_featvis.TargetDataModule", "--data.targets=[class=12]",
              f"--trainer.default_root_dir={tmp_path}"])
    assert "valid classs are 0-9" not in (err := capsys.readouterr().err) and "valid classes are 0-9" in err


def test_unknown_model_name_lists_the_choices(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--model=lightning_featvis.NeuronObjective", "--model.network=lightning_featvis.models.TorchvisionViT",
              "--model.network.name=vit_q", "--data=lightning_featvis.TargetDataModule", f"--trainer.default_root_dir={tmp_path}"])
    assert "unknown torchvision ViT 'vit_q'; choose one of vit_b_16" in capsys.readouterr().err


def test_layers_lists_names_shapes_and_layouts(capsys):
    main(["layers", "--model=lightning_featvis.NeuronObjective", "--model.network=lightning_featvis.zoo.digits.DigitsViT",
          "--data=lightning_featvis.TargetDataModule"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "digits_vit: input [1, 3, 32, 32]"
    rows = {line.split()[0]: line.split(None, 2)[2] for line in lines[2:]}
    assert rows["conv_proj"].startswith("[1, 64, 8, 8]") and rows["conv_proj"].endswith("map")
    # columns are padded to the widest entry: compare with the spaces collapsed
    assert " ".join(rows["encoder.layers.encoder_layer_3.mlp.0"].split()) == "[1, 65, 256] tokens (1 class token)"
    assert (" ".join(rows["encoder.layers.encoder_layer_3.self_attention.pattern"].split())
            == "[1, 4, 65, 65] pattern (1 class token, 4 heads)")
    assert rows["heads.head"].endswith("logits")


def test_quickstart_writes_pngs_and_tensorboard_images(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    main(["fit", "--config", str(ROOT / "configs" / "quickstart.yaml"), f"--trainer.default_root_dir={tmp_path}",
          "--model.init_args.octaves=[{steps: 3}, {steps: 3, size: 48}]", "--trainer.enable_progress_bar=false"])
    folder = next(tmp_path.rglob("images"))
    pngs = sorted(folder.glob("*.png"))
    assert "heads.head__class0.png" in {p.name for p in pngs} and len(pngs) >= 11
    for png in pngs:
        pixels = np.asarray(Image.open(png))
        assert pixels.shape == (48, 48, 3) and pixels.std() > 0
    (events,) = tmp_path.rglob("events.out.tfevents*")
    accumulator = EventAccumulator(str(events), size_guidance={"images": 0})
    accumulator.Reload()
    tags = accumulator.Tags()["images"]
    assert {"digits_vit/heads.head/class0", "digits_vit/final", "digits_vit/progress"} <= set(tags)
    (summary,) = accumulator.Images("digits_vit/heads.head/class0")
    assert (summary.width, summary.height) == (48, 48) and summary.encoded_image_string.startswith(b"\x89PNG")


def test_own_objective_runs_by_class_path(tmp_path):
    main(["fit", "--config", str(ROOT / "configs" / "quickstart.yaml"), f"--trainer.default_root_dir={tmp_path}",
          "--model.class_path=lightning_featvis.examples.suppress.SuppressObjective",
          "--model.init_args.octaves=[{steps: 2}, {steps: 2, size: 40}]", "--data.init_args.targets=[encoder.layers.encoder_layer_3:neuron=0]",
          "--trainer.enable_progress_bar=false"])
    (config,) = tmp_path.rglob("config.yaml")
    assert yaml.safe_load(config.read_text())["model"]["class_path"] == "lightning_featvis.examples.suppress.SuppressObjective"
    assert (next(tmp_path.rglob("images")) / "encoder.layers.encoder_layer_3__neuron0.png").is_file()


def test_blur_schedule_must_fit_the_octaves(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--config", "recipe:badger", f"--trainer.default_root_dir={tmp_path}",
              "--model.init_args.octaves=[{steps: 2}]"])
    assert "2 sigma pairs for 1 octave(s): give one [start, end] pair for all octaves" in capsys.readouterr().err


def test_reconstruction_sweep_from_the_cli_writes_its_table_and_grid(tmp_path):
    main(["fit", "--config", str(ROOT / "configs" / "reconstruction" / "digits_mixer_by_depth.yaml"),
          "--model.init_args.octaves=[{steps: 5}]", f"--trainer.default_root_dir={tmp_path}",
          "--trainer.enable_progress_bar=false"])
    folder = next(tmp_path.rglob("images"))
    rows = (folder / "reconstruction.csv").read_text().splitlines()
    assert rows[0] == "target,layer,unit,psnr,ssim,distance,noise_distance,accurate"
    assert [r.split(",")[0] for r in rows[1:]] == ["patch_embed:all"] + [f"blocks.{i}:all" for i in range(4)]
    assert Image.open(folder / "reconstruction_grid.png").size == (2 + 6 * 34, 2 + 34)


def test_the_same_command_writes_bit_identical_pngs_and_the_same_images_whatever_the_group_size(tmp_path):
    """Two runs of the quickstart (its ensemble, penalties and Adam included) with its group of
    16: byte-for-byte the same PNG files. With groups of 5 the batches have other shapes, which
    a CPU may round differently: the same images to within 2/255 per pixel (a seed or jitter
    that depended on the grouping would change them entirely)."""
    written = []
    for group in (16, 16, 5):
        root = tmp_path / f"run{len(written)}"
        main(["fit", "--config", str(ROOT / "configs" / "quickstart.yaml"), f"--trainer.default_root_dir={root}",
              "--model.init_args.octaves=[{steps: 4}]", f"--data.init_args.group_size={group}",
              "--trainer.enable_progress_bar=false"])
        folder = next(root.rglob("images"))
        written.append({p.name: p.read_bytes() for p in folder.glob("*.png")})
    assert len(written[0]) == 16 and written[0] == written[1]
    assert written[2].keys() == written[0].keys()
    for name, data in written[0].items():
        a = np.asarray(Image.open(io.BytesIO(data)), dtype=np.int16)
        b = np.asarray(Image.open(io.BytesIO(written[2][name])), dtype=np.int16)
        assert np.abs(a - b).max() <= 2, name
    assert len(set(written[0].values())) == 16  # 16 targets, 16 different images: the check can fail
