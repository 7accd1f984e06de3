"""The gallery (``write_gallery``): a static site of a run and its dataset examples, every link
inside it, a class logit's k top examples and histogram, copies and sums, the one-unit command,
the heatmap tiles, a site without examples, 768 units, and bad input's one message."""

from __future__ import annotations

import csv
import errno
import json
import pathlib
import re
import shlex
import shutil
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import torch
from PIL import Image

pytest.register_assert_rewrite("gallery_fixtures")
from gallery_fixtures import L3, ROOT, SUM_KEY, manifest

from lightning_featvis.errors import FeatvisError, WriteError
from lightning_featvis.microscope import gallery
from lightning_featvis.microscope.gallery import MAX_ALPHA, write_gallery
from lightning_featvis.microscope.store import DatasetExamples, write_images
from lightning_featvis.targets import parse_targets

pytest_plugins = ["gallery_fixtures"]  # quick_run, examples_dir, site: shared with the browser test


class Tags(HTMLParser):
    """Every start tag of a page as ``(tag, {attribute: value})``."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, {name: value or "" for name, value in attrs}))


def start_tags(page: Path) -> list[tuple[str, dict]]:
    parser = Tags()
    parser.feed(page.read_text())
    return parser.tags


def tags(page: Path, tag: str | None = None, cls: str | None = None) -> list[dict]:
    """The attributes of ``page``'s ``tag`` elements (any tag if None) with class ``cls``."""
    return [attrs for name, attrs in start_tags(page)
            if (tag is None or name == tag) and (cls is None or cls in attrs.get("class", "").split())]


def links(page: Path) -> list[str]:
    """Every ``src`` and ``href`` on ``page``."""
    return [attrs[name] for _, attrs in start_tags(page) for name in ("src", "href") if name in attrs]


def broken_links(root: Path) -> list[str]:
    """Every link of every page of the site at ``root`` that is remote or names no file in it."""
    broken = []
    for page in root.rglob("*.html"):
        for link in links(page):
            parts = urlsplit(link)
            if parts.scheme or parts.netloc or link.startswith("/"):
                broken.append(f"{page.name}: remote or absolute {link}")
                continue
            target = (page.parent / unquote(parts.path)).resolve()
            if not target.is_file() or root.resolve() not in target.parents:
                broken.append(f"{page.relative_to(root)}: {link}")
    return broken


def unit_page(site: Path, stem: str) -> Path:
    return site / "units" / f"{stem}.html"


def test_every_image_and_link_is_a_file_of_the_site_and_nothing_is_remote(site, quick_run):
    pages = list(site.rglob("*.html"))
    rows = manifest(quick_run)
    identities = {row["target"].partition("#")[0] for row in rows}
    assert len(list((site / "units").glob("*.html"))) == len(identities) == 18
    assert len(pages) == 1 + 4 + 18  # index, three layers and the sums, the units
    assert broken_links(site) == []
    assert sum(len(links(page)) for page in pages) > 500
    for path in [*pages, site / "style.css", site / "gallery.js"]:
        text = path.read_text()
        assert "http://" not in text and "https://" not in text and "url(" not in text, path
    # every image the run wrote is in the site, byte for byte
    for row in rows:
        assert (site / "images" / row["file"]).read_bytes() == (quick_run / "images" / row["file"]).read_bytes()


def test_a_class_logits_page_shows_its_9_top_and_bottom_examples_and_its_histogram(site, examples_dir, quick_run):
    examples = DatasetExamples.load(examples_dir)
    u = examples.row("heads.head:class3")
    page = unit_page(site, "heads.head__class3")
    for side in ("top", "bottom"):
        shown = tags(page, "figure", "example")
        shown = [f for f in shown if f["data-side"] == side]
        assert [int(f["data-index"]) for f in shown] == getattr(examples, f"{side}_indices")[u].tolist()
        assert len(shown) == 9
        values = torch.tensor([float(f["data-value"]) for f in shown])
        torch.testing.assert_close(values, getattr(examples, f"{side}_values")[u])
    for index in examples.top_indices[u].tolist():
        copied = site / "examples" / f"{index:06d}.png"
        assert copied.read_bytes() == (examples_dir / examples.image_file(index)).read_bytes()
    bars = tags(page, "rect", "bar")
    assert 3 <= len(bars) <= 32
    markers = {m["class"].split()[1]: float(m["data-value"]) for m in tags(page, "line", "marker")}
    reached = next(float(row["activation"]) for row in manifest(quick_run) if row["target"] == "heads.head:class3")
    assert markers == pytest.approx({"best": float(examples.top_values[u, 0]), "render": reached})
    assert tags(page, "span", "heat") == []  # logits have no patches, so no heatmap


def test_copies_share_a_page_and_sums_have_their_own(site, quick_run):
    page = unit_page(site, f"{L3}__neuron5")
    renders = tags(page, "figure", "render")
    assert [r["data-key"] for r in renders] == [f"{L3}:neuron5", f"{L3}:neuron5#1"]
    sources = [a["src"] for a in tags(page, "img") if a["src"].startswith("../images/")]
    assert sources == [f"../images/{L3}__neuron5.png", f"../images/{L3}__neuron5__copy1.png"]
    layer_cards = [card["data-key"] for card in tags(site / "layers" / f"{L3}.html", "a", "card")]
    assert layer_cards == [f"{L3}:neuron{n}" for n in (0, 1, 2, 3, 5)]  # one card per unit, no sum
    sums = [card["data-key"] for card in tags(site / "layers" / "sums.html", "a", "card")]
    assert sums == [SUM_KEY]
    assert "layers/sums.html" in links(site / "index.html")


def test_layer_cards_carry_the_activation_reached_and_its_ratio_to_the_best_example(site, quick_run, examples_dir):
    examples = DatasetExamples.load(examples_dir)
    reached = {row["target"]: float(row["activation"]) for row in manifest(quick_run)}
    cards = tags(site / "layers" / "heads.head.html", "a", "card")
    assert [card["data-key"] for card in cards] == [f"heads.head:class{c}" for c in range(10)]
    for card in cards:
        best = float(examples.top_values[examples.row(card["data-key"]), 0])
        assert float(card["data-activation"]) == pytest.approx(reached[card["data-key"]])
        assert float(card["data-ratio"]) == pytest.approx(reached[card["data-key"]] / best)
        assert card["href"].startswith("../units/")


def test_a_units_heatmap_tiles_are_its_examples_maps_in_order(site, examples_dir):
    examples = DatasetExamples.load(examples_dir)
    key = f"{L3}:neuron2"
    maps = torch.cat([examples.heatmaps[key]["top"], examples.heatmaps[key]["bottom"]])  # [18, 8, 8]
    sprite = torch.tensor(list(Image.open(site / "heatmaps" / f"{L3}__neuron2.png").getdata())).view(18 * 8, 8, 4)
    expected = (maps.abs() / maps.abs().max() * MAX_ALPHA).round().flatten(0, 1)
    assert (sprite[..., 3].float() - expected).abs().max() <= 1
    page = unit_page(site, f"{L3}__neuron2")
    offsets = [a["style"] for a in tags(page, "img") if a["src"] == f"../heatmaps/{L3}__neuron2.png"]
    assert offsets == [f"height: 1800%; top: -{i * 100}%" for i in range(18)]


def test_a_units_command_renders_that_unit_and_all_its_copies_again(site, tmp_path):
    from lightning_featvis.cli import main

    page = unit_page(site, f"{L3}__neuron5").read_text()
    command = page.split('<pre class="command">')[1].split("</pre>")[0].replace("&#34;", '"').replace("&#39;", "'")
    words = shlex.split(command)
    assert words[:2] == ["featvis", "fit"]
    main([*words[1:], "--trainer.default_root_dir", str(tmp_path)])
    rendered = [row["target"] for row in manifest(tmp_path / "lightning_logs" / "version_0")]
    assert rendered == [f"{L3}:neuron5", f"{L3}:neuron5#1"]
    # a sum's command names its terms as a specification that parses back into it
    page = unit_page(site, "sum__0.5xencoder.layers.encoder_layer_3.neuron1__-1xencoder.layers.encoder_layer_3.neuron2")
    command = page.read_text().split('<pre class="command">')[1].split("</pre>")[0].replace("&#34;", '"')
    specs = json.loads(shlex.split(command.replace("&#39;", "'"))[-1])
    assert [t.key for t in parse_targets(specs)] == [SUM_KEY]


@pytest.mark.parametrize("spec", ["neuron=5", "neuron=[0,2]", "neuron=5 patch=12", "patch=cls", "neuron=5 cls=1",
                                  "class=3", "all", "head=2 neuron=5", "head=2 from=12 to=3", "head=1 from=cls to=cls",
                                  "direction=sae[3] patch=4", "patch=[1,2] cls=1"])
def test_a_units_command_spec_parses_back_into_the_same_unit(spec):
    (target,) = parse_targets([f"blocks.1:{spec}"])
    (again,) = parse_targets([gallery.target_spec(target)])
    assert again == target
    if spec != "patch=cls":  # its name, cls, is also that of cls=1 (all patches and the class token)
        assert parse_targets([f"blocks.1:{gallery.unit_spec_from_name(target.unit.name)}"]) == [target]


def test_without_examples_the_site_works_and_shows_no_example_sections(quick_run):
    index = write_gallery(quick_run)  # the default output: <run>/gallery
    root = quick_run / "gallery"
    assert index == root / "index.html"
    assert broken_links(root) == []
    assert not (root / "examples").exists() and not (root / "heatmaps").exists()
    page = unit_page(root, "heads.head__class3").read_text()
    assert "Dataset examples" not in page and "histogram" not in page
    assert 'data-sort="ratio"' not in (root / "layers" / "heads.head.html").read_text()
    assert [a["data-ratio"] for a in tags(root / "layers" / "heads.head.html", "a", "card")] == [""] * 10
    assert "featvis examples" in (root / "index.html").read_text()  # what to run to add them


def test_a_layer_of_768_units_is_one_page_of_768_cards_written_in_seconds(tmp_path):
    """A synthetic run (one 16 px PNG per unit) and examples (k=9, 4x4 maps, 16 bins)."""
    units, k = 768, 9
    run = tmp_path / "run"
    (run / "images").mkdir(parents=True)
    Image.new("RGB", (16, 16), (90, 30, 200)).save(run / "images" / "base.png")
    rows = ["target,layer,unit,file,activation,loss,status"]
    for n in range(units):
        shutil.copyfile(run / "images" / "base.png", run / "images" / f"blocks.11__neuron{n}.png")
        rows.append(f"blocks.11:neuron{n},blocks.11,neuron{n},blocks.11__neuron{n}.png,{n % 7 - 2.5},0,ok")
    (run / "images" / "manifest.csv").write_text("\n".join(rows) + "\n")
    generator = torch.Generator().manual_seed(0)
    top = torch.rand(units, k, generator=generator).sort(dim=1, descending=True).values + 1
    indices = torch.randint(0, 300, (units, 2 * k), generator=generator)
    examples = DatasetExamples(
        source="synthetic", count=300, size=16, k=k, command="featvis examples ...",
        targets=[f"blocks.11:neuron{n}" for n in range(units)], layers=["blocks.11"] * units,
        top_values=top, top_indices=indices[:, :k], bottom_values=-top, bottom_indices=indices[:, k:],
        heatmaps={f"blocks.11:neuron{n}": {"top": torch.randn(k, 4, 4), "bottom": torch.randn(k, 4, 4)}
                  for n in range(units)},
        histogram={"counts": torch.randint(0, 20, (units, 16)), "edges": torch.linspace(-2, 2, 17).expand(units, 17)},
    )
    write_images(tmp_path / "examples", {i: torch.rand(3, 16, 16) for i in examples.indices()})
    examples.save(tmp_path / "examples")
    start = time.perf_counter()
    write_gallery(run, tmp_path / "examples", tmp_path / "site")
    seconds = time.perf_counter() - start
    cards = tags(tmp_path / "site" / "layers" / "blocks.11.html", "a", "card")
    assert len(cards) == units and len(list((tmp_path / "site" / "units").glob("*.html"))) == units
    assert seconds < 60, f"{units} units took {seconds:.1f} s"
    print(f"768 units with examples: {seconds:.1f} s")


def test_the_images_folder_of_a_run_stands_for_the_run(quick_run, tmp_path):
    assert write_gallery(quick_run / "images", output=tmp_path / "site").is_file()


@pytest.mark.parametrize("case", ["empty folder", "missing folder", "runs above", "cut manifest", "missing image",
                                  "examples without examples.pt", "examples of other targets", "output is a file"])
def test_bad_input_gives_one_message_saying_what_to_do(case, quick_run, examples_dir, tmp_path):
    run, examples, output = quick_run, None, tmp_path / "site"
    expected = {
        "empty folder": "holds no images/manifest.csv: give the run folder of a featvis fit run",
        "missing folder": "does not exist",
        "runs above": f"e.g. {quick_run}",
        "cut manifest": "damaged",
        "missing image": "which is not in",
        "examples without examples.pt": "holds no examples.pt: give the --output folder of a finished featvis examples",
        "examples of other targets": "are for other targets",
        "output is a file": "is a file: give a folder",
    }[case]
    if case == "empty folder":
        run = tmp_path / "empty"
        run.mkdir()
    elif case == "missing folder":
        run = tmp_path / "nowhere"
    elif case == "runs above":
        run = quick_run.parent.parent  # the root holding lightning_logs/version_0
    elif case in ("cut manifest", "missing image"):
        run = tmp_path / "run"
        shutil.copytree(quick_run, run, ignore=shutil.ignore_patterns("gallery", "*.ckpt"))
        if case == "cut manifest":
            text = (run / "images" / "manifest.csv").read_text()
            (run / "images" / "manifest.csv").write_text(text[: len(text) // 2].rsplit(",", 3)[0])
        else:
            (run / "images" / "heads.head__class4.png").unlink()
    elif case == "examples without examples.pt":
        examples = tmp_path / "examples"
        examples.mkdir()
    elif case == "examples of other targets":
        other = DatasetExamples.load(examples_dir)
        other.targets = [f"blocks.9:neuron{u}" for u in range(len(other.targets))]
        examples = other.save(tmp_path / "other")
    elif case == "output is a file":
        output.write_text("not a folder")
    with pytest.raises(FeatvisError, match=re.escape(expected)) as error:
        write_gallery(run, examples, output)
    assert "\n" not in str(error.value)
    assert not (output / "index.html").exists()


def test_a_disk_that_refuses_writes_gives_a_write_error_saying_what_to_do(quick_run, tmp_path, monkeypatch):
    def refused(self, data):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(pathlib.Path, "write_bytes", refused)
    with pytest.raises(WriteError, match=r"cannot write .*: Read-only file system; choose a writable --output"):
        write_gallery(quick_run, output=tmp_path / "site")


def test_a_run_stopped_inside_a_group_shows_its_canvases_as_unfinished(tmp_path):
    from lightning_featvis.cli import main

    main(["fit", "--config", str(ROOT / "configs" / "quickstart.yaml"), "--trainer.default_root_dir", str(tmp_path),
          "--trainer.max_steps", "3", "--trainer.enable_progress_bar", "false"])
    run = tmp_path / "lightning_logs" / "version_0"
    # the Trainer's limit ended the run inside its one group: its 16 canvases are kept
    with (run / "images" / "partial" / "manifest.csv").open(newline="") as handle:
        assert len(list(csv.DictReader(handle))) == 16
    assert not (run / "images" / "manifest.csv").exists()
    index = write_gallery(run, output=tmp_path / "site")
    page = (index.parent / "units" / "heads.head__class3.html").read_text()
    assert "unfinished (step 2)" in page
    assert (index.parent / "images" / "partial" / "heads.head__class3.png").is_file()
