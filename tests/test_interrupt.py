"""Ctrl-C and SIGTERM during a sweep: finished images stay, the group under way is written to
partial/, the process says where everything is, and the same command finishes the rest."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import sweep_config

CONFIG = sweep_config(["neuron=0-5"], steps=150)
# a process started in the background (CI runners, `nohup ... &`) inherits SIGINT ignored, and
# Python then installs no KeyboardInterrupt handler: give the child the terminal's Ctrl-C
CODE = ("import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
        "from lightning_featvis.cli import main; main(sys.argv[1:])")


def rows(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("signum, status", [(signal.SIGTERM, 128 + signal.SIGTERM), (signal.SIGINT, 1)],
                         ids=["SIGTERM", "Ctrl-C"])
def test_a_signal_keeps_finished_images_writes_the_group_under_way_and_the_rerun_finishes(tmp_path, signum, status):
    config = tmp_path / "sweep.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    command = [sys.executable, "-c", CODE, "fit", "--config", str(config), f"--trainer.default_root_dir={tmp_path}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    images = tmp_path / "lightning_logs" / "version_0" / "images"
    deadline = time.monotonic() + 120
    while not rows(images / "manifest.csv") and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)  # into the next group
    process.send_signal(signum)
    _, err = process.communicate(timeout=120)
    assert process.returncode == status, err[-3000:]
    assert "featvis: interrupted" in err and "Run the same command again" in err, err[-3000:]
    assert "Traceback" not in err, err[-3000:]

    finished = {row["target"] for row in rows(images / "manifest.csv")}
    partial = rows(images / "partial" / "manifest.csv")
    assert 2 <= len(finished) < 6 and len(partial) == 2, (finished, partial)
    assert not finished & {row["target"] for row in partial}  # the group under way is not "finished"
    for row in partial:
        assert 0 <= int(row["step"]) < 149 and (images / "partial" / row["file"]).stat().st_size > 0
    assert all((images / row["file"]).is_file() for row in rows(images / "manifest.csv"))

    rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"resuming: {len(finished)} targets finished" in rerun.stdout + rerun.stderr
    assert len(rows(tmp_path / "lightning_logs" / "version_1" / "images" / "manifest.csv")) == 6
