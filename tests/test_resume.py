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
from conftest import sweep_config

from lightning_featvis.cli import main
from lightning_featvis.resume import config_fingerprint

CONFIG = sweep_config(["neuron=0-7"], steps=40)


def manifest(images: Path) -> list[dict]:
    path = images / "manifest.csv"
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def rendered_units(log_dir: Path) -> set[str]:
    """The units a run rendered itself: its per-target TensorBoard images (``<model>/<layer>/<unit>``)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    units = set()
    for events in log_dir.glob("events.out.tfevents*"):
        accumulator = EventAccumulator(str(events), size_guidance={"images": 0})
        accumulator.Reload()
        units |= {tag.split("/")[-1] for tag in accumulator.Tags()["images"] if tag.count("/") == 2}
    return units


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
    # it rendered only the rest: TensorBoard has an image for each target it finished itself
    assert rendered_units(root / "lightning_logs" / "version_1") == {t.rpartition(":")[2] for t in
                                                                      {r["target"] for r in manifest(whole)} - done}
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


def checkpointed_sweep(tmp_path: Path, callbacks: list[dict]) -> Path:
    """A config file: 6 targets in groups of 2, 10 Adam steps each, ``callbacks`` and a
    ModelCheckpoint every 5 steps keeping all (in ``tmp_path/ckpt``)."""
    config = sweep_config(["neuron=0-5"], steps=10)
    config["model"]["init_args"]["optimizer"] = {"class_path": "torch.optim.Adam", "init_args": {"lr": 0.05}}
    config["trainer"]["callbacks"] = [*callbacks, {
        "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
        "init_args": {"every_n_train_steps": 5, "save_top_k": -1, "dirpath": str(tmp_path / "ckpt")}}]
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_a_checkpoint_inside_a_group_resumes_to_the_uninterrupted_images(tmp_path):
    """ModelCheckpoint every 5 steps (10 steps a group): resuming from step 15 (inside group 2),
    from step 10 (saved at group 1's last step, before it was written) and from step 30 (the
    sweep's last step: no batch is left to write group 3 in) all end with the PNGs of the run
    that was never interrupted."""
    path = checkpointed_sweep(tmp_path, [{"class_path": "lightning_featvis.PositionalJitter"}])
    main(command(path, tmp_path / "whole"))
    whole = tmp_path / "whole" / "lightning_logs" / "version_0" / "images"
    assert len(manifest(whole)) == 6
    for step in (15, 10, 30):
        (checkpoint,) = (tmp_path / "ckpt").glob(f"*step={step}.ckpt")
        root = tmp_path / f"from{step}"
        main([*command(path, root), f"--ckpt_path={checkpoint}", "--data.init_args.resume=false"])
        images = root / "lightning_logs" / "version_0" / "images"
        rows = manifest(images)
        first_group = {10: 0, 15: 1, 30: 2}[step]  # the groups the resumed run writes itself
        assert sorted(row["target"] for row in rows) == sorted(row["target"] for row in manifest(whole))[2 * first_group:]
        for row in rows:
            assert (images / row["file"]).read_bytes() == (whole / row["file"]).read_bytes(), (step, row["target"])
    # beside the earlier run (resume on): its images are taken over, the groups after the
    # checkpoint are rendered again, and each target keeps one row
    (checkpoint,) = (tmp_path / "ckpt").glob("*step=15.ckpt")
    main([*command(path, tmp_path / "whole"), f"--ckpt_path={checkpoint}"])
    again = tmp_path / "whole" / "lightning_logs" / "version_1" / "images"
    assert sorted(row["target"] for row in manifest(again)) == sorted(row["target"] for row in manifest(whole))
    assert all((again / row["file"]).read_bytes() == (whole / row["file"]).read_bytes() for row in manifest(again))


def test_a_run_stopped_by_a_step_limit_goes_on_from_its_checkpoint_beside_its_images(tmp_path):
    """A cluster job cut at 25 of 30 steps (``max_steps``: groups 1-2 written, group 3 half
    done, checkpoints every 5 steps) goes on from its last checkpoint: the finished groups'
    images are taken over, group 3 continues from step 5, and all match an uninterrupted run."""
    path = checkpointed_sweep(tmp_path, [])
    main(command(path, tmp_path / "whole"))
    whole = tmp_path / "whole" / "lightning_logs" / "version_0" / "images"
    main([*command(path, tmp_path / "cut"), "--trainer.max_steps=25"])
    logs = tmp_path / "cut" / "lightning_logs"
    assert len(manifest(logs / "version_0" / "images")) == 4
    (checkpoint,) = (tmp_path / "ckpt").glob("*step=25.ckpt")
    main([*command(path, tmp_path / "cut"), f"--ckpt_path={checkpoint}"])
    rows = manifest(logs / "version_1" / "images")
    assert sorted(row["target"] for row in rows) == sorted(row["target"] for row in manifest(whole))
    for row in rows:
        assert (logs / "version_1" / "images" / row["file"]).read_bytes() == (whole / row["file"]).read_bytes()
    assert rendered_units(logs / "version_1") == {"neuron4", "neuron5"}


def test_a_named_version_is_written_over_only_when_asked(tmp_path):
    config = yaml.safe_load(yaml.safe_dump(CONFIG))
    config["model"]["init_args"]["octaves"] = [{"steps": 2}]
    config["data"]["init_args"]["targets"] = ["neuron=0-1"]
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(config))
    named = ["--trainer.logger=lightning.pytorch.loggers.TensorBoardLogger",
             f"--trainer.logger.init_args.save_dir={tmp_path}", "--trainer.logger.init_args.version=sweep1"]
    for seed in (0, 1):  # the second run asks for the same folder, with another seed
        main([*command(path, tmp_path), *named, f"--seed_everything={seed}"])
        images = tmp_path / "lightning_logs" / "sweep1" / "images"
        assert len(manifest(images)) == 2
        if seed == 0:
            first = {row["file"]: (images / row["file"]).read_bytes() for row in manifest(images)}
    assert all((images / name).read_bytes() != data for name, data in first.items())  # written over
    main(command(path, tmp_path))  # without a name: a new version beside it, nothing written over
    assert (tmp_path / "lightning_logs" / "version_0" / "images" / "manifest.csv").is_file()


def test_a_rerun_after_a_step_limit_renders_only_the_unfinished_group(tmp_path, capsys):
    """6 targets in groups of 2, 2 steps each; run 1 stops at step 4 (``max_steps``, no
    checkpoint to go on from): groups 1-2 are finished. The same command again takes them over
    and renders exactly group 3 itself, not a finished group again."""
    config = sweep_config(["neuron=0-5"], steps=2)
    config["trainer"]["enable_checkpointing"] = False
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(config))
    logs = tmp_path / "lightning_logs"
    main([*command(path, tmp_path), "--trainer.max_steps=4"])
    assert sorted(row["target"] for row in manifest(logs / "version_0" / "images")) == [
        f"encoder.layers.encoder_layer_1:neuron{n}" for n in range(4)]
    assert rendered_units(logs / "version_0") == {f"neuron{n}" for n in range(4)}
    capsys.readouterr()

    main(command(path, tmp_path))
    said = "".join(capsys.readouterr())
    assert "resuming: 4 targets finished" in said and "2 to go" in said, said[-2000:]
    assert rendered_units(logs / "version_1") == {"neuron4", "neuron5"}  # what the rerun rendered itself
    rows = manifest(logs / "version_1" / "images")
    assert sorted(row["target"] for row in rows) == [f"encoder.layers.encoder_layer_1:neuron{n}" for n in range(6)]
