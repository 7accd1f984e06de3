"""The benchmarks run (in their quick form) and print the tables docs/results.md quotes."""

import pytest
import torch
from conftest import load_benchmark


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


def test_quality_quick_judges_every_recipe(tmp_path, capsys):
    quality = load("quality")
    rows = quality.main(["--quick", "--seeds", "2", "--root", str(tmp_path)])
    assert list(rows) == list(quality.RECIPES)
    for row in rows.values():
        assert all(0.0 <= row[k] <= 1.0 for k in ("self top-1", "transfer top-1", "transfer CNN", "transfer ViT seed 1"))
        assert row["transfer top-1"] == pytest.approx((row["transfer CNN"] + row["transfer ViT seed 1"]) / 2, abs=1e-9)
        assert -1.0 <= row["feature cos"] <= 1.0 and row["s/image"] > 0 and row["neuron reached"] > 0
    assert "| best |" in capsys.readouterr().out and (tmp_path / "quality.md").is_file()


def test_quality_judges_real_digits_as_digits():
    """The judging itself: real held-out digits score (nearly) perfectly and agree with themselves."""
    from lightning_featvis.digits_data import digits_split

    split = digits_split()
    per_class = [torch.stack([split.val_images[split.val_labels == c][i] for c in range(10)]) for i in range(2)]
    judges = load("quality").Judges()
    row = judges.score(per_class)
    assert row["self top-1"] >= 0.9 and row["transfer top-1"] >= 0.9
    assert 0.5 < row["logit reached"] <= 1.0  # real digits cannot beat the real maximum
    # neuron i's own top real digit reaches exactly 1; others do not beat it
    means = judges.neuron_means(split.train_images)
    best = torch.stack([split.train_images[means[:, i].argmax()] for i in range(means.shape[1])])
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
