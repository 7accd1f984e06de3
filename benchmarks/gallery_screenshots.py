"""Screenshots of a gallery (``featvis gallery``) for the docs: the index, the first layer's
page and one unit's page, each 1280x900, in a headless Chromium (the browser test's code,
:mod:`lightning_featvis.microscope.browser`; needs ``apt-get install chromium chromium-driver``
and ``pip install selenium``).

Run from the repository root, on a gallery folder (seconds):

    python benchmarks/gallery_screenshots.py lightning_logs/version_0/gallery docs/ --unit heads.head__class3

writes ``OUT_DIR/gallery_index.png``, ``gallery_layer.png`` and ``gallery_unit.png``. The unit
is a page name in ``SITE_DIR/units`` (its file stem); by default the first unit with dataset
examples, else the first unit. The browser's console must stay clean and every image must
load, as in the test: otherwise the script stops with what failed.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from lightning_featvis.microscope import browser

#: the first card's link on a layer page
_FIRST_CARD = re.compile(r'<a class="card[^"]*" href="\.\./units/([^"]+)\.html"')


def pages(site: Path, unit: str | None) -> dict[str, Path]:
    """The pages to shoot: ``{name: page}``, the first layer's in the index's order."""
    index = (site / "index.html").read_text()
    first_layer = re.search(r'href="(layers/[^"]+\.html)"', index)
    if first_layer is None:
        raise SystemExit(f"{site}/index.html links no layer page: is {site} a featvis gallery?")
    layer = site / first_layer.group(1)
    if unit is None:
        with_examples = [p for p in sorted((site / "units").glob("*.html")) if 'class="example"' in p.read_text()]
        unit = with_examples[0].stem if with_examples else _FIRST_CARD.search(layer.read_text()).group(1)
    return {"gallery_index": site / "index.html", "gallery_layer": layer, "gallery_unit": site / "units" / f"{unit}.html"}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("site", type=Path, help="a gallery folder (the one holding index.html)")
    parser.add_argument("out", type=Path, help="where the PNGs go")
    parser.add_argument("--unit", help="the unit page's file stem (default: the first unit with examples)")
    args = parser.parse_args(argv)
    shots = pages(args.site, args.unit)
    failures = []
    with browser.chromium() as driver:
        for name, page in shots.items():
            if not page.is_file():
                raise SystemExit(f"no page {page}")
            images = browser.load(driver, page)
            path = args.out / f"{name}.png"
            args.out.mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(str(path))
            broken = [src for src, complete, width in images if not (complete and width)]
            failures += [f"{page.name}: {error}" for error in browser.console_errors(driver)]
            failures += [f"{page.name}: image {src} did not load" for src in broken]
            print(path)
    if failures:
        print("\n".join(failures), file=sys.stderr)
        raise SystemExit(1)


if __name__ == "__main__":
    main()
