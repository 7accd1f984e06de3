"""Faults and nonsense values, through the real ``featvis`` command: each ends in one
``featvis: error:`` line with exit status 2 and no traceback, leaves no empty ``version_N``
behind and never touches finished results; concurrent runs get their own folders; a damaged
manifest does not block the rerun; a finished run says where everything is.

The disk faults run ``featvis`` inside a private mount namespace (``unshare``): a small tmpfs
for a full disk, a read-only bind mount for a read-only one (root ignores file permissions).
"""

from __future__ import annotations

import csv
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = str(ROOT / "configs" / "quickstart.yaml")
SHORT = ["--model.init_args.octaves", '[{"steps": 2}]', "--data.init_args.targets", '["heads.head:class=0-1"]',
         "--trainer.enable_progress_bar", "false"]


def featvis_command() -> list[str]:
    """The installed ``featvis`` console script (beside this Python), as a user runs it."""
    script = Path(sys.executable).parent / "featvis"
    return [str(script)] if script.is_file() else [shutil.which("featvis") or "featvis"]


ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def featvis(*args: str, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*featvis_command(), *args], env=env or ENV, capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def one_error_line(result: subprocess.CompletedProcess) -> str:
    """Assert the run failed as bad input or a fault should: exit 2, no traceback, exactly one
    ``featvis: error:`` line; return it."""
    assert result.returncode == 2, (result.returncode, result.stderr[-3000:])
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("featvis: error: ")]
    assert len(errors) == 1, result.stderr[-3000:]
    return errors[0]


def versions(root: Path) -> list[Path]:
    return sorted((root / "lightning_logs").glob("version_*"))


def manifest_rows(images: Path) -> list[dict]:
    with (images / "manifest.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def file_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# --- values that make no sense: refused before anything runs ------------------------------------

NONSENSE = {
    "negative octave lr": ([SHORT[0], '[{"steps": 2, "lr": [-0.5, -0.1]}]', *SHORT[2:]],
                           "an octave's lr is [start, end], start positive and end not negative; got lr=[-0.5, -0.1]"),
    "zero optimizer lr": ([*SHORT, "--model.init_args.optimizer.init_args.lr", "0"],
                          "optimizer lr must be positive, got 0"),
    "negative optimizer lr": ([*SHORT, "--model.init_args.optimizer.init_args.lr", "-0.1"],
                              "optimizer: Invalid learning rate: -0.1"),
    "max_steps 0": ([*SHORT, "--trainer.max_steps", "0"], "--trainer.max_steps 0 renders nothing"),
    "no GPU": ([*SHORT, "--trainer.accelerator", "gpu"], "--trainer.accelerator gpu: no GPU is available here"),
}


@pytest.mark.parametrize("case", list(NONSENSE))
def test_a_nonsense_value_is_refused_before_anything_runs(case, tmp_path):
    if case == "no GPU" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")  # CI's machines have none: there it always runs
    args, message = NONSENSE[case]
    line = one_error_line(featvis("fit", "--config", QUICKSTART, f"--trainer.default_root_dir={tmp_path}", *args))
    assert message in line, line
    assert not versions(tmp_path) and not (tmp_path / "lightning_logs").exists()


def test_a_photo_path_that_is_a_directory_says_so(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    line = one_error_line(featvis("fit", "--config", str(ROOT / "configs" / "reconstruction" / "digits_vit_by_depth.yaml"),
                                  f"--trainer.default_root_dir={tmp_path / 'run'}", "--trainer.max_steps=2",
                                  f"--model.init_args.target_image={folder}"))
    assert f"{folder} is a directory, not an image file" in line
    assert not versions(tmp_path / "run")


def refused_pickle(path: Path) -> None:
    """A torch file holding a Python object: torch's safe loader refuses it."""
    code = ("import sys, torch, collections\nclass Thing: pass\n"
            "torch.save({'state_dict': {}, 'thing': Thing()}, sys.argv[1])")
    subprocess.run([sys.executable, "-c", code, str(path)], check=True)


@pytest.mark.parametrize("kind", ["garbage", "refused pickle", "state dict", "directory", "missing"])
def test_a_ckpt_path_that_is_not_a_checkpoint_is_one_line(kind, tmp_path):
    path = tmp_path / "resume.ckpt"
    if kind == "garbage":
        path.write_bytes(b"not a checkpoint at all")
    elif kind == "refused pickle":
        refused_pickle(path)
    elif kind == "state dict":
        torch.save({"weight": torch.ones(2)}, path)
    elif kind == "directory":
        path.mkdir()
    expected = {"garbage": "not a PyTorch checkpoint file", "refused pickle": "torch refuses to unpickle it safely",
                "state dict": "is a PyTorch file but not a Lightning checkpoint", "directory": "is a directory",
                "missing": "no such file"}[kind]
    line = one_error_line(featvis("fit", "--config", QUICKSTART, f"--trainer.default_root_dir={tmp_path / 'run'}",
                                  *SHORT, f"--ckpt_path={path}"))
    assert f"--ckpt_path {path}" in line and expected in line and "ModelCheckpoint" in line, line
    assert "weights_only=False" not in line  # torch's unsafe advice is not passed on
    assert not versions(tmp_path / "run")


# --- downloads that cannot happen ----------------------------------------------------------------

def offline_env(tmp_path: Path) -> dict:
    """An empty hub cache and a hub address where nothing listens: a download cannot happen,
    whatever this machine's network, and nothing is fetched from anywhere."""
    return {**ENV, "HF_HOME": str(tmp_path / "hf_home"), "HF_ENDPOINT": "http://127.0.0.1:9"}


def test_an_offline_timm_download_fails_at_once_naming_the_file(tmp_path):
    result = featvis("fit", "--model=lightning_featvis.NeuronObjective",
                     "--model.network=lightning_featvis.models.TimmModel",
                     "--model.network.init_args.name=vit_tiny_patch16_224", "--model.network.init_args.pretrained=true",
                     "--model.layer=blocks.0", "--model.octaves=[{steps: 1}]",
                     "--data=lightning_featvis.TargetDataModule", "--data.targets=[neuron=0]",
                     f"--trainer.default_root_dir={tmp_path / 'run'}", env=offline_env(tmp_path), timeout=120)
    line = one_error_line(result)
    assert "cannot download timm weights for vit_tiny_patch16_224" in line, line
    assert "hf download timm/vit_tiny_patch16_224.augreg_in21k_ft_in1k model.safetensors" in line, line
    assert "checkpoint: DIR/model.safetensors" in line
    # the hub client's retries (five a file, about 25 s each) never started
    assert "Retrying" not in result.stderr
    assert not versions(tmp_path / "run")


def test_an_offline_hugging_face_model_fails_at_once_naming_the_hub_id(tmp_path):
    result = featvis("fit", "--config", str(ROOT / "configs" / "seeds" / "gpt2_sentences_by_block.yaml"),
                     f"--trainer.default_root_dir={tmp_path / 'run'}", env=offline_env(tmp_path), timeout=120)
    line = one_error_line(result)
    assert "from the hub repository 'gpt2'" in line and "hf download gpt2 --local-dir" in line, line
    assert "Retrying" not in result.stderr
    assert not versions(tmp_path / "run")


# --- several runs at once, damaged results, the end of a run ------------------------------------

def test_runs_started_at_once_each_get_their_own_version_folder(tmp_path):
    processes = [subprocess.Popen([*featvis_command(), "fit", "--config", QUICKSTART, *SHORT,
                                   f"--trainer.default_root_dir={tmp_path}", f"--seed_everything={seed}"],
                                  env=ENV, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                 for seed in (1, 2, 3)]
    said = [p.communicate(timeout=300)[1] for p in processes]
    assert [p.returncode for p in processes] == [0, 0, 0], [s[-2000:] for s in said]
    folders = versions(tmp_path)
    assert [f.name for f in folders] == ["version_0", "version_1", "version_2"]
    seeds, images = {}, {}
    for folder in folders:
        assert len(list(folder.glob("events.out.tfevents*"))) == 1, sorted(p.name for p in folder.iterdir())
        config = (folder / "config.yaml").read_text()
        (seed,) = [int(line.split(":")[1]) for line in config.splitlines() if line.startswith("seed_everything:")]
        seeds[folder.name] = seed
        rows = manifest_rows(folder / "images")
        assert sorted(r["target"] for r in rows) == ["heads.head:class0", "heads.head:class1"]
        images[seed] = (folder / "images" / rows[0]["file"]).read_bytes()
    assert sorted(seeds.values()) == [1, 2, 3]
    assert len(set(images.values())) == 3  # three seeds, three different images: no run wrote over another
    for seed, err in zip((1, 2, 3), said):  # each run names the folder holding its own seed
        (own,) = [name for name, s in seeds.items() if s == seed]
        assert f"lightning_logs/{own}/images" in err, err[-2000:]


def test_a_damaged_manifest_means_nothing_finished_there_and_the_rerun_renders_everything(tmp_path):
    command = ["fit", "--config", QUICKSTART, *SHORT, f"--trainer.default_root_dir={tmp_path}"]
    assert featvis(*command).returncode == 0
    manifest = tmp_path / "lightning_logs" / "version_0" / "images" / "manifest.csv"
    header, first, *_ = manifest.read_text().splitlines()
    manifest.write_text(f"{header}\n{first[:12]}")  # cut mid-row, as a crash of another tool would
    result = featvis(*command)
    assert result.returncode == 0, result.stderr[-3000:]
    warnings = [line for line in result.stderr.splitlines() if line.startswith("featvis: warning:")]
    assert warnings == [f"featvis: warning: cannot read {manifest} (damaged?); taking nothing over from that run"]
    assert "resuming" not in result.stderr
    rows = manifest_rows(tmp_path / "lightning_logs" / "version_1" / "images")
    assert sorted(r["target"] for r in rows) == ["heads.head:class0", "heads.head:class1"]


def test_a_finished_run_says_where_its_images_manifest_and_log_are(tmp_path):
    result = featvis("fit", "--config", QUICKSTART, *SHORT, f"--trainer.default_root_dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "lightning_logs" / "version_0"
    (done,) = [line for line in result.stderr.splitlines() if line.startswith("featvis: done:")]
    assert done == (f"featvis: done: 2 images and manifest.csv in {run / 'images'}; TensorBoard log in {run} "
                    f"(tensorboard --logdir {run.parent})")
    assert len(manifest_rows(run / "images")) == 2 and list(run.glob("events.out.tfevents*"))


# --- full and read-only disks ---------------------------------------------------------------------

def in_mount_namespace(script: str) -> subprocess.CompletedProcess:
    """Run a bash ``script`` in a private mount namespace (its mounts vanish with it): as root
    directly, otherwise as root of a new user namespace."""
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("needs util-linux's unshare for a private mount namespace")
    flags = ["-m"] if os.geteuid() == 0 else ["-r", "-m"]
    probe = subprocess.run([unshare, *flags, "mount", "-t", "tmpfs", "tmpfs", "/mnt"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot mount in a private namespace here: {probe.stderr.strip()}")
    return subprocess.run([unshare, *flags, "bash", "-c", script], env=ENV, cwd=ROOT, capture_output=True, text=True,
                          timeout=600)


def quoted(*args: str) -> str:
    return " ".join(shlex.quote(a) for a in args)


def test_a_read_only_disk_is_one_line_and_finished_results_stay(tmp_path):
    root = tmp_path / "root"
    command = ["fit", "--config", QUICKSTART, *SHORT, f"--trainer.default_root_dir={root}"]
    assert featvis(*command).returncode == 0
    before = file_bytes(root)
    result = in_mount_namespace(f"mount --bind {root} {root} && mount -o remount,ro,bind {root} && "
                                f"{quoted(*featvis_command(), *command)}")
    line = one_error_line(result)
    assert line == (f"featvis: error: cannot write {root / 'lightning_logs' / 'version_1'}: Read-only file system; "
                    "choose a writable --trainer.default_root_dir")
    assert file_bytes(root) == before  # nothing added, nothing changed


def test_a_disk_full_from_the_start_is_one_line_and_leaves_no_version_folder(tmp_path):
    disk, copy = tmp_path / "disk", tmp_path / "copy"
    disk.mkdir()
    command = quoted(*featvis_command(), "fit", "--config", QUICKSTART, *SHORT, f"--trainer.default_root_dir={disk}")
    # a 64 KiB disk, then filled to the last byte
    result = in_mount_namespace(f"mount -t tmpfs -o size=64k tmpfs {disk} && "
                                f"(dd if=/dev/zero of={disk}/filler bs=4k 2>/dev/null; true) && {command}; "
                                f"status=$?; cp -a {disk} {copy}; exit $status")
    line = one_error_line(result)
    assert line.startswith(f"featvis: error: cannot write {disk}") and "No space left on device" in line, line
    assert sorted(p.name for p in copy.iterdir()) == ["filler"]  # no version folder, no lightning_logs


def test_a_disk_that_fills_mid_run_keeps_every_finished_image_whole(tmp_path):
    disk, copy = tmp_path / "disk", tmp_path / "copy"
    disk.mkdir()
    four = ["--model.init_args.octaves", '[{"steps": 2}]', "--data.init_args.targets", '["heads.head:class=0-5"]',
            "--data.init_args.group_size", "1", "--trainer.enable_progress_bar", "false"]
    command = quoted(*featvis_command(), "fit", "--config", QUICKSTART, *four, f"--trainer.default_root_dir={disk}")
    # room for the run's bookkeeping and a few 32 px PNGs, not for all six and their logs
    result = in_mount_namespace(f"mount -t tmpfs -o size=40k tmpfs {disk} && {command}; "
                                f"status=$?; cp -a {disk} {copy}; exit $status")
    line = one_error_line(result)
    assert "No space left on device" in line and "run the same command again" in line, line
    images = copy / "lightning_logs" / "version_0" / "images"
    if (images / "manifest.csv").is_file():
        rows = manifest_rows(images)
        assert f"the {len(rows)} finished targets' images and manifest.csv in" in line or not rows, line
        for row in rows:  # every finished image is a whole PNG
            with Image.open(images / row["file"]) as png:
                png.load()
                assert png.size == (32, 32)
    else:
        assert not (copy / "lightning_logs" / "version_0").exists() or not list(images.glob("*.png"))
    assert not list(copy.rglob("*.tmp"))  # no temporary file left behind


def test_a_png_write_that_fails_midway_leaves_no_half_written_file(tiny, tmp_path, monkeypatch):
    """ImageWriter encodes each PNG in memory and moves it into place whole: a write that dies
    half-way (here: the encoder writes half a file, then the disk is full) leaves no truncated
    PNG where a reader or a resumed run would take it for a finished image."""
    import errno
    import io

    from conftest import render
    from torchvision.utils import save_image

    from lightning_featvis import ImageWriter, NeuronObjective
    from lightning_featvis.callbacks import image_writer
    from lightning_featvis.schedule import Octave

    def dies_half_way(image, fp, format=None):
        whole = io.BytesIO()
        save_image(image, whole, format="png")
        data = whole.getvalue()[: len(whole.getvalue()) // 2]
        if isinstance(fp, (str, Path)):
            Path(fp).write_bytes(data)
        else:
            fp.write(data)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(image_writer, "save_image", dies_half_way)
    objective = NeuronObjective(tiny, layer="encoder.layers.encoder_layer_1", octaves=[Octave(steps=1)])
    with pytest.raises(OSError, match="No space left on device"):
        render(objective, ["neuron=0"], tmp_path, callbacks=[ImageWriter()])
    images = tmp_path / "images"
    assert not (images / "encoder.layers.encoder_layer_1__neuron0.png").exists()
    assert not list(tmp_path.rglob("*.png")) and not list(tmp_path.rglob("*.tmp"))
