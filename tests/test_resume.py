"""Resuming a sweep: a run killed mid-way and restarted with the same command skips the targets
it finished and ends with the images of an uninterrupted run."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from lightning_featvis.cli import main
from lightning_featvis.resume import config_fingerprint

CONFIG = {
    "model": {
        "class_path": "lightning_featvis.NeuronObjective",
        "init_args": {
            "network": {"class_path": "lightning_featvis.models.DigitsViT"},
            "layer": "encoder.layers.encoder_layer_1",
            "octaves": [{"steps": 40}],
        },
    },
    "data": {"class_path": "lightning_featvis.TargetDataModule",
             "init_args": {"targets": ["neuron=0-7"], "group_size": 2}},
    "trainer": {"enable_progress_bar": False, "enable_model_summary": False},
}


def manifest(images: Path) -> list[dict]:
    path = images / "manifest.csv"
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def command(config: Path, root: Path) -> list[str]:
    return ["fit", "--config", str(config), f"--trainer.default_root_dir={root}"]


def test_a_killed_sweep_resumes_where_it_stopped_and_matches_an_uninterrupted_one(tmp_path):
    config = tmp_path / "sweep.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    main(command(config, tmp_path / "whole"))
    whole = tmp_path / "whole" / "lightning_logs" / "version_0" / "images"
    assert len(manifest(whole)) == 8

    root = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    code = "import sys; from lightning_featvis.cli import main; main(sys.argv[1:])"
    process = subprocess.Popen([sys.executable, "-c", code, *command(config, root)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = root / "lightning_logs" / "version_0" / "images"
    deadline = time.monotonic() + 120
    while not manifest(first) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)  # no chance to clean up: only what was written counts
    process.wait()
    done = {row["target"] for row in manifest(first)}
    assert 2 <= len(done) < 8, f"the kill should land mid-sweep; finished: {sorted(done)}"

    rerun = subprocess.run([sys.executable, "-c", code, *command(config, root)], env=env, capture_output=True,
                           text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    said = rerun.stdout + rerun.stderr
    assert f"resuming: {len(done)} targets finished" in said and f"{8 - len(done)} to go" in said, said[-2000:]
    second = root / "lightning_logs" / "version_1" / "images"
    rows = manifest(second)
    assert sorted(row["target"] for row in rows) == sorted(row["target"] for row in manifest(whole))
    for row in rows:  # every image, carried over or rendered now, is the uninterrupted run's
        assert (second / row["file"]).read_bytes() == (whole / row["file"]).read_bytes(), row["target"]
    assert manifest(first) and {row["target"] for row in manifest(first)} == done  # the first run is untouched

    main(command(config, root))  # a finished sweep: nothing left to do, a complete copy
    assert len(manifest(root / "lightning_logs" / "version_2" / "images")) == 8


def test_a_different_config_starts_over(tmp_path):
    config = tmp_path / "sweep.yaml"
    short = {**CONFIG, "data": {**CONFIG["data"], "init_args": {"targets": ["neuron=0-1"], "group_size": 2}}}
    short["model"] = {**CONFIG["model"], "init_args": {**CONFIG["model"]["init_args"], "octaves": [{"steps": 2}]}}
    config.write_text(yaml.safe_dump(short))
    main(command(config, tmp_path))
    short["model"]["init_args"]["octaves"] = [{"steps": 3}]
    config.write_text(yaml.safe_dump(short))
    main(command(config, tmp_path))
    second = tmp_path / "lightning_logs" / "version_1" / "images"
    first = tmp_path / "lightning_logs" / "version_0" / "images"
    assert len(manifest(second)) == 2
    assert (second / manifest(second)[0]["file"]).read_bytes() != (first / manifest(first)[0]["file"]).read_bytes()


def test_the_fingerprint_ignores_what_does_not_change_images():
    base = {"model": {"init_args": {"octaves": [{"steps": 40}]}}, "seed_everything": 0,
            "trainer": {"devices": 1, "logger": None, "callbacks": [
                {"class_path": "lightning_featvis.GaussianBlur", "init_args": {"sigma": 1.0}},
                {"class_path": "lightning_featvis.ImageLogger", "init_args": {"every_n_steps": 50}}]}}
    same = yaml.safe_load(yaml.safe_dump(base))
    same["trainer"].update(devices=2, strategy="ddp_spawn", enable_progress_bar=False, default_root_dir="/elsewhere")
    same["trainer"]["callbacks"][1]["init_args"]["every_n_steps"] = 10
    same["ckpt_path"] = "last"
    assert config_fingerprint(same) == config_fingerprint(base)
    for change in (lambda c: c["model"]["init_args"]["octaves"][0].update(steps=41),
                   lambda c: c.update(seed_everything=1),
                   lambda c: c["trainer"]["callbacks"][0]["init_args"].update(sigma=2.0)):
        other = yaml.safe_load(yaml.safe_dump(base))
        change(other)
        assert config_fingerprint(other) != config_fingerprint(base)
