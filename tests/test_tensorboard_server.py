"""The quickstart's images through a real TensorBoard server: its HTTP API lists the image tags
and serves a logged per-target image as a 32x32 PNG."""

import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lightning_featvis.cli import main

ROOT = Path(__file__).resolve().parents[1]
TAGS = {"digits_vit/heads.head/class0", "digits_vit/final", "digits_vit/progress"}
# A direct opener: an http_proxy in the environment must not intercept 127.0.0.1.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port() -> int:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            return sock.getsockname()[1]
    except OSError as error:
        pytest.skip(f"cannot bind a port on 127.0.0.1: {error}")


def get(url: str, timeout: float = 5.0) -> tuple[int, str, bytes]:
    with OPENER.open(url, timeout=timeout) as response:
        return response.status, response.headers.get("Content-Type", ""), response.read()


def tail(log: Path, lines: int = 20) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else "(no log)"


def wait_until_up(base: str, server: subprocess.Popen, log: Path, seconds: float = 60.0) -> None:
    """Skip, with the server's log tail, if it exits or does not answer within ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.skip(f"tensorboard exited with code {server.returncode} before answering:\n{tail(log)}")
        try:
            status, _, _ = get(f"{base}/data/plugins_listing", timeout=2.0)
            if status == 200:
                return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    pytest.skip(f"tensorboard did not answer within {seconds:.0f} s:\n{tail(log)}")


def test_tensorboard_server_serves_quickstart_images(tmp_path):
    logs = tmp_path / "logs"
    main(["fit", "--config", str(ROOT / "configs" / "quickstart.yaml"), f"--trainer.default_root_dir={logs}",
          "--model.init_args.octaves=[{steps: 3}]", "--trainer.enable_progress_bar=false"])
    (events,) = logs.rglob("events.out.tfevents*")
    run = events.parent.relative_to(logs).as_posix()  # lightning_logs/version_0
    written = next(logs.rglob("images")) / "heads.head__class0.png"

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "tensorboard.log"
    scratch = tmp_path / "tmp"  # TensorBoard's info files and its data server's port file
    scratch.mkdir()
    env = {**os.environ, "TMPDIR": str(scratch), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "tensorboard.main", "--logdir", str(logs), "--host", "127.0.0.1",
               "--port", str(port)]
    with open(log, "wb") as out:
        try:
            # Its own session, so the data-server child it spawns can be killed with it if need be.
            server = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                      env=env, start_new_session=True)
        except OSError as error:
            pytest.skip(f"cannot start tensorboard: {error}")
        try:
            wait_until_up(base, server, log)
            # Up from here on: anything wrong with the API is a failure, not a skip.
            status, content_type, body = get(f"{base}/data/plugins_listing")
            assert json.loads(body)["images"]["enabled"] is True, body[:500]

            deadline = time.monotonic() + 60.0
            while True:  # the events load in the background: wait for the tags to show
                status, content_type, body = get(f"{base}/data/plugin/images/tags")
                assert status == 200 and content_type.startswith("application/json"), (status, content_type)
                tags = json.loads(body)
                if TAGS <= set(tags.get(run, {})) or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            assert list(tags) == [run], (list(tags), run)
            assert TAGS <= set(tags[run]), (sorted(tags[run]), f"log:\n{tail(log)}")
            assert tags[run]["digits_vit/heads.head/class0"]["samples"] == 1

            query = urllib.parse.urlencode({"run": run, "tag": "digits_vit/heads.head/class0"})
            status, content_type, body = get(f"{base}/data/plugin/images/images?{query}")
            assert status == 200, status
            entries = json.loads(body)
            assert len(entries) == 1 and entries[0]["step"] == 3, entries
            # The route answers an opaque query string (blob_key=...) for individualImage, not a URL.
            status, content_type, png = get(f"{base}/data/plugin/images/individualImage?{entries[0]['query']}")
            assert status == 200 and content_type == "image/png", (status, content_type)
            assert png.startswith(b"\x89PNG")
            image = Image.open(io.BytesIO(png))
            assert image.size == (32, 32) and image.mode == "RGB"
            # The image ImageWriter wrote, to within one level: torch's add_image truncates x*255 to uint8,
            # the PNG writer rounds.
            difference = np.abs(np.asarray(image, np.int16) - np.asarray(Image.open(written).convert("RGB"), np.int16))
            assert difference.max() <= 1, difference.max()

            with pytest.raises(urllib.error.HTTPError) as missing:  # an unknown tag is an error, not []
                get(f"{base}/data/plugin/images/images?{urllib.parse.urlencode({'run': run, 'tag': 'nope'})}")
            assert missing.value.code == 404
        finally:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait(timeout=10)
