"""The microscope's command lines: featvis microscope makes the render, the examples and the
gallery in one folder, and bad options end in one line."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lightning_featvis.cli import main
from lightning_featvis.microscope import DatasetExamples

ROOT = Path(__file__).resolve().parents[2]


def test_featvis_microscope_renders_finds_examples_and_writes_the_gallery(tmp_path, capsys):
    overrides = tmp_path / "few.yaml"
    overrides.write_text(yaml.safe_dump({"model": {"init_args": {"octaves": [{"steps": 3}]}},
                                         "data": {"init_args": {"targets": ["heads.head:class=0-1",
                                                                            "encoder.layers.encoder_layer_3:neuron=4"]}}}))
    out = tmp_path / "m"
    main(["microscope", "--config", str(ROOT / "configs" / "quickstart.yaml"), "--config", str(overrides),
          "--data", "digits:val", "--output", str(out), "--k", "4", "--trainer.enable_progress_bar", "false"])
    assert "featvis: done: the microscope is in" in capsys.readouterr().err
    (run,) = (out / "render" / "lightning_logs").glob("version_*")
    assert len(list((run / "images").glob("*.png"))) == 3
    found = DatasetExamples.load(out / "examples")
    assert found.targets == ["heads.head:class0", "heads.head:class1", "encoder.layers.encoder_layer_3:neuron4"]
    assert found.top_indices.shape == (3, 4) and found.source == "digits:val"
    page = (out / "site" / "units" / "encoder.layers.encoder_layer_3__neuron4.html").read_text()
    assert "Top 4" in page and "examples/" in page


@pytest.mark.parametrize("args, message", [
    (["examples", "--config", "configs/quickstart.yaml"], "the following arguments are required: --data"),
    (["examples", "--config", "configs/quickstart.yaml", "--data", "digits", "--bogus", "1"], "unknown option --bogus"),
    (["gallery"], "the following arguments are required: run_dir"),
    (["microscope", "--data", "digits"], "the following arguments are required: --config"),
])
def test_bad_options_end_in_one_line(args, message, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    with pytest.raises(SystemExit) as stopped:
        main(args)
    assert stopped.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("featvis: error: featvis ") and message in err[0]
