"""The gallery in a real browser (headless Debian Chromium through Selenium, from ``file://``):
every image loads, the console stays clean, the sort buttons reorder the cards as the manifest
says, the heatmaps sit on their images and hide on request; screenshots of each page.

No browser is a failure that says what to install, never a silent skip."""

from __future__ import annotations

import pytest
from PIL import Image

pytest.register_assert_rewrite("gallery_fixtures")
from gallery_fixtures import L1, L3, SUM_KEY, manifest

from lightning_featvis.microscope import browser
from lightning_featvis.microscope.store import DatasetExamples

pytest_plugins = ["gallery_fixtures"]  # quick_run, examples_dir, site: shared with test_gallery.py

PAGES = ["index.html", "layers/heads.head.html", f"layers/{L3}.html", "layers/sums.html",
         "units/heads.head__class3.html", f"units/{L3}__neuron5.html", f"units/{L1}__patch27.html",
         "units/sum__0.5xencoder.layers.encoder_layer_3.neuron1__-1xencoder.layers.encoder_layer_3.neuron2.html"]
CARD_KEYS = "return Array.from(document.querySelectorAll('#cards > .card')).map(card => card.dataset.key);"


@pytest.fixture(scope="module")
def driver():
    reason = browser.missing()
    if reason is not None:
        pytest.fail(f"the gallery's browser test needs a headless Chromium: {reason}", pytrace=False)
    with browser.chromium() as chromium:
        yield chromium


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory):
    return tmp_path_factory.mktemp("gallery_screenshots")


@pytest.mark.parametrize("page", PAGES)
def test_each_page_shows_every_image_and_logs_no_error(driver, site, screenshots, page):
    browser.console_errors(driver)  # what earlier pages logged
    images = browser.load(driver, site / page)
    assert len(images) >= 2
    assert [image for image in images if not (image[1] and image[2] > 0)] == []
    assert browser.console_errors(driver) == []
    shot = screenshots / (page.replace("/", "_") + ".png")
    driver.save_screenshot(str(shot))
    assert Image.open(shot).size == browser.WINDOW
    print(shot)


def test_the_sort_buttons_reorder_the_cards_by_activation_and_ratio_and_back(driver, site, quick_run, examples_dir):
    from selenium.webdriver.common.by import By

    examples = DatasetExamples.load(examples_dir)
    rows = [row for row in manifest(quick_run) if row["layer"] == "heads.head"]
    keys = [row["target"] for row in rows]
    reached = {row["target"]: float(row["activation"]) for row in rows}
    ratio = {key: reached[key] / float(examples.top_values[examples.row(key), 0]) for key in keys}
    browser.console_errors(driver)
    browser.load(driver, site / "layers" / "heads.head.html")
    assert driver.execute_script(CARD_KEYS) == keys

    def click(sort: str) -> list[str]:
        button = driver.find_element(By.CSS_SELECTOR, f"button[data-sort='{sort}']")
        button.click()
        assert button.get_attribute("aria-pressed") == "true"
        return driver.execute_script(CARD_KEYS)

    by_activation = click("activation")
    assert by_activation == sorted(keys, key=lambda key: -reached[key]) and by_activation != keys
    assert click("ratio") == sorted(keys, key=lambda key: -ratio[key])
    assert click("order") == keys
    assert browser.console_errors(driver) == []


def test_a_heatmap_covers_its_image_with_its_own_tile_and_hides_on_request(driver, site):
    from selenium.webdriver.common.by import By

    browser.load(driver, site / "units" / f"{L3}__neuron5.html")
    # each example's frame, and the sprite inside it: the sprite's tile i must fill frame i
    geometry = driver.execute_script("""
        return Array.from(document.querySelectorAll('figure.example')).map(f => {
          const frame = f.querySelector('.frame').getBoundingClientRect();
          const sprite = f.querySelector('.heat img').getBoundingClientRect();
          const heat = f.querySelector('.heat').getBoundingClientRect();
          return [frame.top, frame.height, sprite.top, sprite.height, heat.top, heat.height];
        });""")
    assert len(geometry) == 18
    for i, (top, height, sprite_top, sprite_height, heat_top, heat_height) in enumerate(geometry):
        assert (heat_top, heat_height) == pytest.approx((top, height), abs=0.5)
        assert sprite_height == pytest.approx(18 * height, abs=1)
        assert sprite_top == pytest.approx(top - i * height, abs=1)
    visible = "return Array.from(document.querySelectorAll('.heat')).map(h => getComputedStyle(h).display);"
    assert set(driver.execute_script(visible)) == {"block"}
    driver.find_element(By.ID, "show-heat").click()
    assert set(driver.execute_script(visible)) == {"none"}
    driver.find_element(By.ID, "show-heat").click()
    assert set(driver.execute_script(visible)) == {"block"}


def test_the_sums_page_links_its_sum_and_the_unit_pages_link_their_neighbours(driver, site):
    from selenium.webdriver.common.by import By

    browser.load(driver, site / "layers" / "sums.html")
    driver.find_element(By.CSS_SELECTOR, "a.card").click()
    assert driver.find_element(By.CSS_SELECTOR, "figure.render").get_attribute("data-key") == SUM_KEY
    browser.load(driver, site / "units" / "heads.head__class3.html")
    driver.find_element(By.CSS_SELECTOR, "a[rel=next]").click()
    assert driver.current_url.endswith("/units/heads.head__class4.html")
    driver.find_element(By.LINK_TEXT, "index").click()
    assert driver.current_url.endswith("/index.html")
    assert browser.console_errors(driver) == []
