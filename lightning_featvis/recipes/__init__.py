"""The recipes that ship with the package: a recipe is a config (what ``featvis fit --config``
reads) whose objective, parameterization, octaves, optimizer and callbacks make one way of
rendering; its model and targets are the defaults that :func:`~lightning_featvis.render`
replaces. ``featvis fit --config recipe:best`` runs one as it is."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import yaml

from lightning_featvis.errors import FeatvisError

#: how a config argument names a packaged recipe: ``--config recipe:best``
PREFIX = "recipe:"


def recipe_names() -> list[str]:
    """The recipes that ship with the package (``featvis fit --config recipe:NAME``)."""
    return sorted(p.name[:-5] for p in resources.files("lightning_featvis.recipes").iterdir() if p.name.endswith(".yaml"))


def recipe_path(name: str) -> Path:
    """The packaged YAML of recipe ``name``."""
    if name not in recipe_names():
        raise FeatvisError(f"unknown recipe {name!r}; the recipes are {', '.join(recipe_names())}")
    return Path(str(resources.files("lightning_featvis.recipes") / f"{name}.yaml"))


def load_recipe(name: str) -> dict:
    """Recipe ``name`` as a config dict (what ``featvis fit --config recipe:NAME`` reads)."""
    return yaml.safe_load(recipe_path(name).read_text())


def resolve_config_argument(value: str) -> str:
    """A ``--config`` value with ``recipe:NAME`` replaced by that recipe's packaged file."""
    return str(recipe_path(value[len(PREFIX):])) if value.startswith(PREFIX) else value
