"""The benchmarks run (in their quick form) and print the tables docs/results.md quotes."""

import pytest
import torch
from conftest import load_benchmark
from PIL import Image


def load(name: str):
    return load_benchmark(name)  # dataclasses look their module up in sys.modules


def test_step_overhead_quick_prints_all_rows(capsys):
    rows = load("step_overhead").main(["--quick", "--steps", "2", "--rounds", "1"])
    assert len(rows) == 4 and all(row["a_ms"] > 0 and row["b_ms"] > 0 for row in rows)
    out = capsys.readouterr().out
    assert "| overhead, 1 target" in out and "| early exit" in out and "| render(), 1 target" in out
    assert "fixed cost of one call" in out


def test_patch_locality_quick_measures_every_model(capsys):
    rows = load("patch_locality").main(["--quick", "--images", "4"])
    assert {r["model"] for r in rows} == {"ViT", "mixer", "GPT-2 stack"}
    # shares are fractions; a single-patch unit of the first block weighs its own patch above uniform
    assert all(0.0 <= r["gradient"] <= 1.0 and 0.0 <= r["change"] <= 1.0 for r in rows)
    assert all(r["gradient"] > 1 / 64 for r in rows if r["block"] == 1)
    assert "| ViT | 1 |" in capsys.readouterr().out


def test_reconstruction_by_depth_quick_tabulates_every_run(tmp_path, capsys):
    results = load("reconstruction_by_depth").main(["--suite", "digits", "--quick", "--root", str(tmp_path)])
    labels = [label for label, _ in results["depth"]]
    assert labels == ["ViT", "ViT untrained", "mixer", "mixer no LN", "mixer untrained", "GPT-2 stack", "GPT-2 untrained"]
    assert all(len(rows) == 5 for _, rows in results["depth"])  # the stem and 4 blocks
    assert [len(rows) for _, rows in results["first28"]] == [4, 4]
    out = capsys.readouterr().out
    assert "| block 4 |" in out and "| block 1, first 28 tokens |" in out
    assert (tmp_path / "digits" / "tables.md").read_text() in out


def test_quality_quick_judges_every_recipe_on_both_zoos(tmp_path, capsys):
    quality = load("quality")
    results = quality.main(["--quick", "--seeds", "2", "--root", str(tmp_path)])
    assert list(results) == ["digits", "photos"]
    for rows in results.values():
        assert list(rows) == list(quality.RECIPES)
        for row in rows.values():
            assert all(0.0 <= row[k] <= 1.0 for k in ("self top-1", "transfer top-1", "transfer CNN", "transfer ViT seed 1"))
            assert row["transfer top-1"] == pytest.approx((row["transfer CNN"] + row["transfer ViT seed 1"]) / 2, abs=1e-9)
            assert -1.0 <= row["feature cos"] <= 1.0 and row["s/image"] > 0 and row["neuron reached"] > 0
            assert -1.0 <= row["plausibility"] <= 1.0 and row["FD"] > 0 and row["real FD"] > 0
    out = capsys.readouterr().out
    assert "| best |" in out and "| photos: recipe |" in out and (tmp_path / "quality.md").is_file()
    # the gallery: a row of real held-out images and one per recipe, 10 classes wide, enlarged
    gallery = Image.open(tmp_path / "gallery_photos.png")
    assert gallery.size == (10 * 128, (1 + len(quality.RECIPES)) * 128)


@pytest.mark.parametrize("zoo", ["digits", "photos"])
def test_quality_judges_real_images_as_their_class(zoo):
    """The judging itself: real held-out images score (nearly) perfectly, agree with themselves,
    are as plausible as real images and close to them in feature space."""
    quality = load("quality")
    judges = quality.Judges(quality.ZOOS[zoo], per_class=40)
    assert torch.equal(judges.train_labels.bincount(), torch.full((10,), 40))
    per_class = [torch.stack([judges.val[judges.val_labels == c][i] for c in range(10)]) for i in range(3)]
    row = judges.score(per_class)
    assert row["self top-1"] >= 0.9 - 1e-6 and row["transfer top-1"] >= 0.85 - 1e-6  # 27 of 30 is a float
    assert 0.5 < row["logit reached"] <= 1.0  # real images cannot beat the real maximum
    assert row["plausibility"] > 0.5 and row["real plaus."] > 0.5
    # the class images here are 30 of the real held-out images themselves
    noise = torch.rand(30, 3, judges.size, judges.size, generator=torch.Generator().manual_seed(0))
    assert row["FD"] < quality.frechet_distance(next(iter(judges.judges.values())), judges.val, noise)
    assert judges.plausibility(noise, torch.arange(10).repeat(3)) < row["plausibility"]
    # neuron i's own top real image reaches exactly 1; others do not beat it
    means = judges.neuron_means(judges.train)
    best = torch.stack([judges.train[means[:, i].argmax()] for i in range(means.shape[1])])
    assert judges.neuron_reached(best) <= 1.0 + 1e-5 and judges.neuron_reached(best) > 0.9


def test_quality_recipe_names_are_checked(tmp_path, capsys):
    with pytest.raises(SystemExit):
        load("quality").main(["--recipes", "nope", "--root", str(tmp_path)])
    assert "no recipe nope" in capsys.readouterr().err


def test_text_recovery_quick_tabulates_every_run(tmp_path, capsys):
    results = load("text_recovery").main(["--quick", "--root", str(tmp_path)])
    assert list(results) == ["MiniLM", "MiniLM untrained", "tiny GPT-2 untrained", "MiniLM, last block"]
    assert list(results["MiniLM"]) == [f"encoder.layer.{i}" for i in range(6)]
    assert list(results["tiny GPT-2 untrained"]) == ["transformer.h.0", "transformer.h.1", "lm_head"]
    for layers in results.values():
        for row in layers.values():
            assert 0.0 <= row["token recovery"] <= 1.0 and 0.0 <= row["accurate"] <= 1.0 and row["s/target"] > 0
    # only the causal LM has a next token to agree on
    assert results["MiniLM"]["encoder.layer.0"]["next token"] is None
    assert results["tiny GPT-2 untrained"]["lm_head"]["next token"] is not None
    out = capsys.readouterr().out
    assert "| MiniLM | encoder.layer.5 |" in out and (tmp_path / "text_recovery.md").read_text() in out
