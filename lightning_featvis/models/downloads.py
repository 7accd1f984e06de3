"""Weights from the Hugging Face hub: fail at once, naming what to fetch, when it cannot be reached.

Offline, ``huggingface_hub`` retries every file five times with a growing pause (about 25 s a
file; a timm model asks for two files, a text model for its config, weights and tokenizer), so
an offline run would wait minutes before failing. Before asking the hub for files it does not
have, an adapter calls :func:`require_hub`: one connection attempt of a few seconds decides.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlparse

from lightning_featvis.errors import FeatvisError

#: seconds one connection attempt to the hub may take
CONNECT_TIMEOUT = 3.0


def hub_endpoint() -> str:
    """The hub's address (``HF_ENDPOINT``, by default ``https://huggingface.co``)."""
    from huggingface_hub import constants

    return constants.ENDPOINT


def reachable(url: str, timeout: float = CONNECT_TIMEOUT) -> bool:
    """Whether a TCP connection to ``url``'s host and port opens within ``timeout`` seconds."""
    parts = urlparse(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout):
            return True
    except OSError:  # no name resolution, refused, unreachable, timed out
        return False


def cached(repo_id: str, filenames: tuple[str, ...]) -> bool:
    """Whether any of ``filenames`` of hub repository ``repo_id`` is in the local hub cache."""
    from huggingface_hub import try_to_load_from_cache

    return any(isinstance(try_to_load_from_cache(repo_id, name), str) for name in filenames)


def offline_mode() -> bool:
    """Whether the user switched the hub off (``HF_HUB_OFFLINE=1``)."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE) or os.environ.get("HF_HUB_OFFLINE", "") in ("1", "true", "True")


def require_hub(repo_id: str, filenames: tuple[str, ...], what: str, instead: str) -> None:
    """Return if ``repo_id`` is a local directory, is cached, or the hub can be reached;
    otherwise raise at once.

    Args:
        repo_id: a hub repository id (``gpt2``, ``timm/vit_tiny_patch16_224.augreg_in21k_ft_in1k``)
            or a local directory.
        filenames: the files of the repository whose presence in the cache counts as cached.
        what: what is being loaded, for the message (``timm weights for vit_tiny_patch16_224``).
        instead: what to do offline, for the message (the download command and the argument
            that takes the downloaded file).

    Raises:
        FeatvisError: not cached, and the hub is switched off or cannot be reached.
    """
    if Path(repo_id).expanduser().is_dir() or cached(repo_id, filenames):
        return
    endpoint = hub_endpoint()
    if offline_mode():
        reason = "HF_HUB_OFFLINE is set and it is not in the local cache"
    elif not reachable(endpoint):
        reason = f"{endpoint} cannot be reached (offline?) and it is not in the local cache"
    else:
        return
    raise FeatvisError(f"cannot download {what} from the hub repository {repo_id!r}: {reason}. {instead}")
