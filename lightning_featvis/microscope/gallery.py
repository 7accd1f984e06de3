"""A static HTML gallery of a feature-visualization run (a "microscope"): ``featvis gallery``.

:func:`write_gallery` reads a run folder (``lightning_logs/version_N``: ``config.yaml`` and
``images/manifest.csv`` with its PNGs) and, optionally, a ``featvis examples`` folder (read
through :class:`~lightning_featvis.microscope.store.DatasetExamples`), and writes a site that
opens from ``file://`` offline (relative links only, every image copied in, no remote URL)::

    index.html                the run, its examples, one entry per layer with thumbnails
    layers/<layer>.html       one card per unit, sortable (gallery.js); sums: layers/sums.html
    units/<file stem>.html    a unit's renders, dataset examples, heatmaps, histogram, commands
    style.css, gallery.js
    images/<file>.png         the run's optimised images
    examples/NNNNNN.png       the dataset examples shown (by dataset index)
    heatmaps/<file stem>.png  a unit's per-patch maps, one colour-mapped [gh, gw] tile per
                              example (top k, then bottom k) stacked vertically

Per unit the work is a page, a few file copies and at most one small PNG, so a layer of 768
units is one page of 768 cards and 768 unit pages.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from urllib.parse import quote

import torch

from lightning_featvis.errors import FeatvisError, WriteError
from lightning_featvis.files import atomic_write
from lightning_featvis.microscope.store import DatasetExamples
from lightning_featvis.targets import Target, Term, parse_targets
from lightning_featvis.units import Unit

MANIFEST = "images/manifest.csv"
#: the group a run's limits (or an interruption) stopped inside: its canvases as they were
PARTIAL = "images/partial/manifest.csv"
CONFIG = "config.yaml"
#: the layer page of the group sums (keys ``sum(...)``)
SUMS = "sums"
#: thumbnails per layer on the index page
THUMBNAILS = 6
#: the heatmaps' colours where a patch is positive / negative, and their strongest opacity
POSITIVE, NEGATIVE, MAX_ALPHA = (255, 110, 0), (0, 120, 255), 150
WRITE_ADVICE = "choose a writable --output folder (or free space), then run featvis gallery again"


# --- what the site shows ------------------------------------------------------------------


@dataclass
class Render:
    """One manifest row: one optimised image of a unit (``key`` ends ``#n`` for copy n > 0)."""

    key: str
    file: str
    activation: float | None
    status: str
    row: dict[str, str]

    @property
    def copy(self) -> int:
        return int(self.key.rpartition("#")[2]) if "#" in self.key else 0


@dataclass
class UnitEntry:
    """A unit (a target's identity) and all its renders, in the run's order.

    Attributes:
        identity: the key of its first image (``layer:unit``, or ``sum(...)``).
        stem: the file stem of its page (its first image's, without ``__copyN``).
        name: the unit's name (``neuron5``) or a sum's terms.
        example_row: its row in the dataset examples (None: none for it).
    """

    identity: str
    stem: str
    layer: str  # its manifest's layer (a sum's: its first term's)
    name: str
    renders: list[Render] = field(default_factory=list)
    example_row: int | None = None
    best_example: float | None = None
    #: its best dataset example's image in the site (set when its page is written)
    top_example: str | None = None

    @property
    def is_sum(self) -> bool:
        """A weighted sum of units (its page is the sums' page)."""
        return self.identity.startswith("sum(")

    @property
    def activation(self) -> float | None:
        """The activation its first image (the one its card shows) reached."""
        return self.renders[0].activation

    @property
    def ratio(self) -> float | None:
        """Activation reached / the best dataset example's activation; None where that is not
        a meaningful scale (no examples, or a best example at or below zero)."""
        if self.activation is None or self.best_example is None or self.best_example <= 0:
            return None
        return self.activation / self.best_example


@dataclass
class LayerEntry:
    """A layer's page (``layers/<page>.html``) and its units in the run's order."""

    name: str
    page: str
    units: list[UnitEntry] = field(default_factory=list)


# --- reading the inputs -------------------------------------------------------------------


def _number(text: str | None) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _run_folder(run_dir: Path) -> Path:
    """``run_dir``, or its run folder when given the ``images`` folder inside it; refused
    (with the run folders it holds, if any) when it has no manifest."""
    if not run_dir.is_dir():
        raise FeatvisError(f"run folder {run_dir} does not exist: give a folder written by featvis fit, "
                           "e.g. lightning_logs/version_0")
    if not (run_dir / MANIFEST).is_file() and (run_dir / "manifest.csv").is_file():
        return run_dir.parent
    if not (run_dir / MANIFEST).is_file() and not (run_dir / PARTIAL).is_file():
        # two levels down at most (lightning_logs/version_N): a home folder is not searched
        below = [*run_dir.glob(f"*/{MANIFEST}"), *run_dir.glob(f"*/*/{MANIFEST}")]
        runs = sorted(str(p.parent.parent) for p in below)[:3]
        example = " or ".join(runs) if runs else "lightning_logs/version_0"
        raise FeatvisError(f"{run_dir} holds no {MANIFEST}: give the run folder of a featvis fit run "
                           f"that finished at least one target, e.g. {example}")
    return run_dir


def read_manifest(run_dir: Path) -> list[Render]:
    """The run's renders, each image checked to be on disk: ``images/manifest.csv``'s finished
    ones, then those of ``images/partial/manifest.csv`` (a group the run's limits or an
    interruption stopped inside) that did not finish since, marked ``unfinished``."""
    renders = _manifest_rows(run_dir, MANIFEST, {"target", "layer", "unit", "file", "activation"}) \
        if (run_dir / MANIFEST).is_file() else []
    finished = {render.key for render in renders}
    if (run_dir / PARTIAL).is_file():
        renders += [render for render in _manifest_rows(run_dir, PARTIAL, {"target", "layer", "unit", "file", "step"})
                    if render.key not in finished]
    if not renders:
        raise FeatvisError(f"{run_dir / MANIFEST} lists no finished image: let featvis fit finish at least one target")
    return renders


def _manifest_rows(run_dir: Path, relative: str, needed: set[str]) -> list[Render]:
    """The rows of the manifest ``run_dir/relative`` as renders (file names relative to ``images/``)."""
    path = run_dir / relative
    folder = path.parent
    try:
        with path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise FeatvisError(f"cannot read {path} ({err}): run the same featvis fit command again to rewrite it") from None
    if rows and (not needed <= set(rows[0]) or any(None in row or None in row.values() or not row["file"] for row in rows)):
        raise FeatvisError(f"{path} is damaged (a row cut short or columns missing): run the same featvis fit "
                           "command again, which rewrites it")
    renders = []
    for row in rows:
        if not (folder / row["file"]).is_file():
            raise FeatvisError(f"{path} lists {row['file']}, which is not in {folder}: run the same "
                               "featvis fit command again to write it")
        file = str((folder / row["file"]).relative_to(run_dir / "images"))
        if "step" in needed:  # an unfinished canvas: no final activation yet
            renders.append(Render(row["target"], file, None, f"unfinished (step {row['step']})", row))
        else:
            renders.append(Render(row["target"], file, _number(row["activation"]), row.get("status") or "ok", row))
    return renders


def read_config(run_dir: Path) -> dict:
    """The run's ``config.yaml`` (empty if it has none, e.g. a run started from Python)."""
    import yaml

    path = run_dir / CONFIG
    if not path.is_file():
        return {}
    try:
        config = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise FeatvisError(f"cannot read {path} ({type(err).__name__}): it is damaged; "
                           "restore it or render the run again") from None
    return config if isinstance(config, dict) else {}


def _safe(name: str) -> str:
    """A file-name-safe version of a layer name (``""``, the network's output: ``output``)."""
    return re.sub(r"[^\w.+-]+", "_", name) or "output"


def _unique(name: str, taken: set[str]) -> str:
    candidate, n = name, 1
    while candidate in taken:
        n += 1
        candidate = f"{name}-{n}"
    taken.add(candidate)
    return candidate


def group_units(renders: Sequence[Render]) -> list[LayerEntry]:
    """The renders as layers of units, in the manifest's order (a unit's copies together, the
    sums last on a page of their own)."""
    units: dict[str, UnitEntry] = {}
    for render in renders:
        identity = render.key.partition("#")[0]
        if identity not in units:
            layer = render.row["layer"]
            stem = re.sub(r"__copy\d+$", "", Path(render.file).stem)
            units[identity] = UnitEntry(identity, stem, layer, render.row["unit"])
        units[identity].renders.append(render)
    layers: dict[str, LayerEntry] = {}
    pages: set[str] = set()
    stems: set[str] = set()
    for unit in units.values():
        unit.renders.sort(key=lambda r: r.copy)
        unit.stem = _unique(unit.stem, stems)
        if not unit.is_sum and unit.layer not in layers:
            layers[unit.layer] = LayerEntry(unit.layer or "output", _unique(_safe(unit.layer), pages))
    sums = LayerEntry(SUMS, "")
    for unit in units.values():
        (sums if unit.is_sum else layers[unit.layer]).units.append(unit)
    ordered = list(layers.values())
    if sums.units:
        # after every layer: a layer named "sums" keeps its page name, this page gets "sums-2"
        sums.page = _unique(SUMS, pages)
        ordered.append(sums)
    return ordered


def load_examples(examples_dir: Path, layers: Sequence[LayerEntry]) -> DatasetExamples:
    """The dataset examples, each unit given its row; refused if they cover none of the run's."""
    examples = DatasetExamples.load(examples_dir)
    rows = {key: u for u, key in enumerate(examples.targets)}
    found = 0
    for layer in layers:
        for unit in layer.units:
            unit.example_row = rows.get(unit.identity)
            if unit.example_row is not None and examples.top_values.shape[1]:
                unit.best_example = float(examples.top_values[unit.example_row, 0])
                found += 1
    if not found:
        shown = ", ".join(examples.targets[:3]) + ("..." if len(examples.targets) > 3 else "")
        raise FeatvisError(f"the examples in {examples_dir} are for other targets ({shown}) than the run's: "
                           "run featvis examples on this run folder")
    return examples


# --- the commands shown -------------------------------------------------------------------


def _values(values: tuple[int, ...]) -> str:
    return str(values[0]) if len(values) == 1 else f"[{','.join(str(v) for v in values)}]"


def unit_spec(unit: Unit) -> str:
    """The unit specification that parses back into ``unit`` (``neuron=5 patch=12``...)."""
    parts = []
    if unit.direction is not None:
        parts.append(f"direction={unit.direction[0]}[{unit.direction[1]}]")
    if unit.heads is not None:
        parts.append(f"head={_values(unit.heads)}")
    if unit.neurons is not None:
        parts.append(f"{'class' if unit.is_class else 'neuron'}={_values(unit.neurons)}")
    query = "from" if unit.is_pattern else "patch"
    if unit.patches == () and unit.class_token:
        parts.append(f"{query}=cls")
    else:
        if unit.patches:
            parts.append(f"{query}={_values(unit.patches)}")
        if unit.class_token:
            parts.append("cls=1")
    if unit.keys == () and unit.key_class_token:
        parts.append("to=cls")
    elif unit.keys:
        parts.append(f"to={_values(unit.keys)}")
    return " ".join(parts) or "all"


_NAME_PART = re.compile(r"(neuron|class|patch|head|from|to)(?:s|es)?(\d+(?:\+\d+)*)")


def unit_spec_from_name(name: str) -> str | None:
    """The specification of a unit from its name (``neuron5_patch12`` -> ``neuron=5
    patch=12``), for units the config does not list one by one; None if it cannot tell."""
    specs = []
    for part in name.split("_"):
        match = _NAME_PART.fullmatch(part)
        if match:
            values = match.group(2).split("+")
            specs.append(f"{match.group(1)}={values[0] if len(values) == 1 else '[' + ','.join(values) + ']'}")
        elif part in ("fromcls", "tocls"):
            specs.append(f"{part[:-3]}=cls")
        elif part == "cls":
            specs.append("cls=1")
        elif part == "all" and name == "all":
            specs.append("all")
        else:
            direction = re.fullmatch(r"([A-Za-z_]\w*?)(\d+)", part)
            if direction is None:
                return None
            specs.append(f"direction={direction.group(1)}[{direction.group(2)}]")
    return " ".join(specs) or None


def _term_spec(term: Term) -> str:
    return f"{term.weight:g} * {term.layer or ''}:{unit_spec(term.unit)}"


def target_spec(target: Target) -> str:
    """A specification that parses back into ``target`` (its layer named), e.g.
    ``heads.head:class=3`` or ``0.5 * L:neuron=1 + -1 * L:neuron=2``."""
    if target.terms:
        return " + ".join(_term_spec(term) for term in target.terms)
    return f"{target.layer or ''}:{unit_spec(target.unit)}"


def _config_targets(config: dict) -> dict[str, Target]:
    """The config's targets by identity (exact units; specs with ``*`` need the model: left out)."""
    data = (config.get("data") or {}).get("init_args") or {}
    default = ((config.get("model") or {}).get("init_args") or {}).get("layer")
    found = {}
    for spec in data.get("targets") or []:
        try:
            targets = parse_targets([spec])
        except (FeatvisError, ValueError, TypeError):
            continue
        for target in targets:
            target = target.resolved(default)
            found.setdefault(target.identity, target)
    return found


def _spec_of(unit: UnitEntry, known: dict[str, Target]) -> str | None:
    """The unit's specification, checked to parse back into its identity; None if unknown."""
    candidates = []
    if unit.identity in known:
        candidates.append(target_spec(known[unit.identity]))
    if not unit.is_sum:
        by_name = unit_spec_from_name(unit.name)
        if by_name is not None:
            candidates.append(f"{unit.renders[0].row['layer']}:{by_name}")
    for spec in candidates:
        try:
            if parse_targets([spec])[0].identity == unit.identity:
                return spec
        except (FeatvisError, ValueError):
            continue
    return None


def render_command(config_path: Path, unit: UnitEntry, known: dict[str, Target], per_target: int) -> str | None:
    """``featvis fit`` of the run's config re-rendering only ``unit`` (all its copies: the
    spec listed once per copy unless the config makes ``per_target`` images of each)."""
    spec = _spec_of(unit, known)
    if spec is None:
        return None
    listed = [spec] * (1 if per_target > 1 else len(unit.renders))
    return (f"featvis fit --config {shlex.quote(str(config_path))} "
            f"--data.init_args.targets {shlex.quote(json.dumps(listed))}")


def _describe_class(node: object, shown: Sequence[str] | None = None) -> str:
    """``class_path`` of a config node with its scalar init_args (only those named in ``shown``
    if given), e.g. ``TorchvisionViT(name=vit_b_16)``."""
    if not isinstance(node, dict):
        return str(node) if node else "unknown"
    args = node.get("init_args") or {}
    scalars = [f"{k}={v}" for k, v in args.items() if isinstance(v, (str, int, float, bool)) and v is not None
               and (shown is None or k in shown)]
    return f"{node.get('class_path', 'unknown')}" + (f"({', '.join(scalars)})" if scalars else "")


# --- pictures ------------------------------------------------------------------------------


def heatmap_sprite(maps: torch.Tensor) -> bytes:
    """A PNG of ``maps`` ``[n, gh, gw]`` (one unit's examples) stacked vertically, ``gw`` wide
    and ``n * gh`` high: positive patches orange, negative blue, their opacity the value over
    the largest magnitude of all n maps (one scale, so the examples compare)."""
    from PIL import Image

    maps = maps.detach().float().cpu().nan_to_num(0.0)
    scale = float(maps.abs().max())
    strength = (maps / scale if scale > 0 else maps * 0).flatten(0, 1)  # [n * gh, gw] in [-1, 1]
    colour = torch.where(strength[..., None] >= 0, torch.tensor(POSITIVE), torch.tensor(NEGATIVE))
    alpha = (strength.abs() * MAX_ALPHA).round()[..., None]
    rgba = torch.cat([colour.float(), alpha], dim=-1).to(torch.uint8).numpy()
    buffer = io.BytesIO()
    Image.fromarray(rgba, mode="RGBA").save(buffer, format="png")
    return buffer.getvalue()


@dataclass
class Histogram:
    """An inline SVG histogram's geometry (pixels): bars, markers and axis labels."""

    width: int
    height: int
    bars: list[dict]
    markers: list[dict]
    ticks: list[dict]
    peak: int


def histogram(counts: torch.Tensor, edges: torch.Tensor, markers: Sequence[tuple[str, float, str]],
              width: int = 640, height: int = 170) -> Histogram | None:
    """The geometry of one unit's histogram, ``counts`` ``[K]`` over ``edges`` ``[K + 1]``
    (empty bins at both ends trimmed), with ``markers`` (label, value, css class) inside the
    x range (widened to hold them). None if the unit counted nothing."""
    counts, edges = counts.long().cpu(), edges.double().cpu()
    filled = counts.nonzero().flatten()
    if not len(filled):
        return None
    first, last = int(filled[0]), int(filled[-1])
    counts, edges = counts[first:last + 1], edges[first:last + 2]
    values = [value for _, value, _ in markers if value is not None and math.isfinite(value)]
    low, high = min([float(edges[0]), *values]), max([float(edges[-1]), *values])
    pad = (high - low) * 0.03 or 1.0
    low, high = low - pad, high + pad
    left, right, top, bottom = 8, width - 8, 34, height - 22

    def x(value: float) -> float:
        return left + (value - low) / (high - low) * (right - left)

    peak = int(counts.max())
    bars = []
    for j, count in enumerate(counts.tolist()):
        if count:
            h = (bottom - top) * count / peak
            bars.append({"x": round(x(float(edges[j])), 2), "y": round(bottom - h, 2), "h": round(h, 2),
                             "w": round(max(x(float(edges[j + 1])) - x(float(edges[j])) - 0.5, 0.8), 2),
                             "title": f"[{float(edges[j]):.4g}, {float(edges[j + 1]):.4g}): {count} images"})
    placed = [{"label": label, "value": value, "cls": cls, "x": round(x(value), 2), "y": 12 + 12 * (i % 2),
                   "anchor": "end" if x(value) > width * 0.7 else "start"}
              for i, (label, value, cls) in enumerate(m for m in markers if m[1] is not None and math.isfinite(m[1]))]
    ticks = [{"x": round(x(v), 2), "label": f"{v:.3g}", "anchor": anchor}
             for v, anchor in ((float(edges[0]), "start"), (float(edges[-1]), "end"))]
    if low < 0 < high and all(abs(x(0.0) - t["x"]) > 40 for t in ticks):
        ticks.append({"x": round(x(0.0), 2), "label": "0", "anchor": "middle"})
    return Histogram(width, height, bars, placed, ticks, peak)


# --- writing -------------------------------------------------------------------------------


def _environment():
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("lightning_featvis.microscope", "templates"),
                             autoescape=True, trim_blocks=True, lstrip_blocks=True,
                             undefined=jinja2.StrictUndefined)
    env.filters["url"] = lambda path: quote(str(path))
    env.filters["num"] = lambda value: "–" if value is None else f"{value:.4g}"
    env.filters["attr_num"] = lambda value: "" if value is None else repr(float(value))
    return env


class _Site:
    """Writes files under the site folder (atomically), refusals turned into one message."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.copied: set[str] = set()

    def write(self, relative: str, data: bytes) -> None:
        try:
            atomic_write(self.root / relative, data)
        except WriteError as err:
            raise WriteError(err.path, err.reason, WRITE_ADVICE) from err

    def copy(self, source: Path, relative: str, remedy: str) -> None:
        """Copy ``source`` to ``relative`` once per build; a source that cannot be read is
        refused with ``remedy`` (what makes it again)."""
        if relative in self.copied:
            return
        try:
            data = source.read_bytes()
        except OSError as err:
            raise FeatvisError(f"cannot read {source} ({err.strerror}): {remedy}") from None
        self.write(relative, data)
        self.copied.add(relative)


def _prepare_output(output: Path) -> None:
    if output.exists() and not output.is_dir():
        raise FeatvisError(f"--output {output} is a file: give a folder for the gallery (it is created if missing)")
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise WriteError.from_os_error(err, output, WRITE_ADVICE) from None


def _example_list(examples: DatasetExamples, unit: UnitEntry, side: str, sprite_rows: int | None) -> list[dict]:
    """One side's (``top``/``bottom``) examples of ``unit``: dataset index, image, activation,
    and its row in the unit's heatmap sprite (None: no heatmap)."""
    values = getattr(examples, f"{side}_values")[unit.example_row].tolist()
    indices = getattr(examples, f"{side}_indices")[unit.example_row].tolist()
    offset = 0 if side == "top" else len(examples.top_values[unit.example_row])
    return [{"index": index, "value": value, "file": f"examples/{Path(examples.image_file(index)).name}",
             "heat": offset + rank if sprite_rows is not None and offset + rank < sprite_rows else None}
            for rank, (value, index) in enumerate(zip(values, indices))]


def _unit_examples(site: _Site, examples: DatasetExamples, examples_dir: Path, unit: UnitEntry) -> dict | None:
    """Copy the unit's example images (and write its heatmap sprite); what its page shows."""
    if unit.example_row is None:
        return None
    maps = examples.heatmaps.get(unit.identity)
    sprite = None
    if maps is not None and len(maps.get("top", ())) and maps["top"].dim() == 3:
        stacked = torch.cat([maps["top"], maps["bottom"]]) if len(maps.get("bottom", ())) else maps["top"]
        sprite = {"file": f"heatmaps/{unit.stem}.png", "rows": len(stacked), "scale": float(stacked.abs().max())}
        site.write(sprite["file"], heatmap_sprite(stacked))
    top = _example_list(examples, unit, "top", sprite and sprite["rows"])
    bottom = _example_list(examples, unit, "bottom", sprite and sprite["rows"])
    for example in top + bottom:
        site.copy(examples_dir / examples.image_file(example["index"]), example["file"],
                  "the examples folder is incomplete; run featvis examples again")
    unit.top_example = top[0]["file"] if top else None
    hist = None
    u = unit.example_row
    if examples.histogram.get("counts") is not None and len(examples.histogram["counts"]) > u:
        markers = [(f"render{'' if r.copy == 0 else ' #' + str(r.copy)} {r.activation:.3g}", r.activation, "render")
                   for r in unit.renders if r.activation is not None]
        if unit.best_example is not None:
            markers.append((f"best example {unit.best_example:.3g}", unit.best_example, "best"))
        hist = histogram(examples.histogram["counts"][u], examples.histogram["edges"][u], markers)
    return {"top": top, "bottom": bottom, "sprite": sprite, "histogram": hist}


def write_gallery(run_dir: str | Path, examples_dir: str | Path | None = None, output: str | Path | None = None) -> Path:
    """Write the static gallery of the run in ``run_dir`` (``lightning_logs/version_N``) into
    ``output`` (default ``<run_dir>/gallery``), with the dataset examples of ``examples_dir``
    (a ``featvis examples`` folder) if given; return the path of its ``index.html``.

    Raises:
        FeatvisError: ``run_dir`` has no ``images/manifest.csv`` (or a damaged one, or lacks
            an image it lists), ``examples_dir`` has no ``examples.pt`` or is for other targets.
        WriteError: ``output`` cannot be written (read-only, full, no permission).
    """
    run_dir = _run_folder(Path(run_dir).expanduser())
    renders = read_manifest(run_dir)
    config = read_config(run_dir)
    layers = group_units(renders)
    examples = None
    if examples_dir is not None:
        examples_dir = Path(examples_dir).expanduser()
        examples = load_examples(examples_dir, layers)
    output = Path(output).expanduser() if output is not None else run_dir / "gallery"
    _prepare_output(output)
    site = _Site(output)
    env = _environment()
    for name in ("style.css", "gallery.js"):
        site.write(name, resources.files("lightning_featvis.microscope").joinpath("templates", name).read_bytes())
    for render in renders:
        site.copy(run_dir / "images" / render.file, f"images/{render.file}",
                  "run the same featvis fit command again to write it")
    run = _run_info(run_dir, config, layers, examples)
    _write_unit_pages(site, env, run, layers, examples, examples_dir, config)
    for i, layer in enumerate(layers):
        neighbours = {"previous": layers[i - 1] if i else None, "next": layers[i + 1] if i + 1 < len(layers) else None}
        page = env.get_template("layer.html").render(root="../", run=run, layer=layer, examples=examples, **neighbours)
        site.write(f"layers/{layer.page}.html", page.encode())
    site.write("index.html", env.get_template("index.html").render(root="", run=run, layers=layers,
                                                                    thumbnails=THUMBNAILS).encode())
    return output / "index.html"


def _run_info(run_dir: Path, config: dict, layers: Sequence[LayerEntry], examples: DatasetExamples | None) -> dict:
    """What the index says about the run and its examples."""
    model = config.get("model") or {}
    config_path = (run_dir / CONFIG).resolve()
    return {
        "folder": str(run_dir.resolve()),
        "objective": _describe_class(model, ("layer",)) if model else "unknown (no config.yaml)",
        "network": _describe_class((model.get("init_args") or {}).get("network")) if model else "unknown",
        "units": sum(len(layer.units) for layer in layers),
        "images": sum(len(unit.renders) for layer in layers for unit in layer.units),
        "command": f"featvis fit --config {shlex.quote(str(config_path))}" if config else None,
        "config_path": config_path,
        "examples": None if examples is None else {"source": examples.source, "count": examples.count, "k": examples.k,
                                                    "size": examples.size, "command": examples.command},
    }


def _write_unit_pages(site: _Site, env, run: dict, layers: Sequence[LayerEntry], examples: DatasetExamples | None,
                      examples_dir: Path | None, config: dict) -> None:
    """Write every unit's page (and copy its examples, write its heatmap sprite)."""
    template = env.get_template("unit.html")
    known = _config_targets(config)
    per_target = int(((config.get("data") or {}).get("init_args") or {}).get("images_per_target") or 1)
    for i, layer in enumerate(layers):
        for j, unit in enumerate(layer.units):
            shown = None if examples is None else _unit_examples(site, examples, examples_dir, unit)
            page = template.render(
                root="../", run=run, layer=layer, unit=unit, shown=shown, fields=list(unit.renders[0].row),
                command=render_command(run["config_path"], unit, known, per_target) if config else None,
                previous_unit=layer.units[j - 1] if j else None,
                next_unit=layer.units[j + 1] if j + 1 < len(layer.units) else None,
                previous_layer=layers[i - 1] if i else None, next_layer=layers[i + 1] if i + 1 < len(layers) else None,
            )
            site.write(f"units/{unit.stem}.html", page.encode())
