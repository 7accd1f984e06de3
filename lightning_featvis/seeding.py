"""Seeds derived from the run's seed and a target, so results never depend on grouping or ranks."""

from __future__ import annotations

import hashlib
import os


def run_seed() -> int:
    """The seed of this run: the Trainer's ``seed_everything`` value (0 when none was set)."""
    return int(os.environ.get("PL_GLOBAL_SEED", 0))


def derive_seed(*parts: object) -> int:
    """A 63-bit seed that depends only on ``parts`` (e.g. run seed, purpose, target key, step).

    Every rank computes the same value for the same parts, unlike the global RNG's state.
    """
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1
