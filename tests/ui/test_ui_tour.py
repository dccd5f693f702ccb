"""Every page in headless Chromium, as a photographer sees it (issue 15): result cards with one plain verdict, an
image query shown as its photo, the numbers in the detail view, the Tags, Index and Tune pages after real tagging
and an unvalidated tuning run. Each step saves a screenshot (into $LOUPE_UI_SCREENSHOTS when set, else the test's
tmp dir) for a person to look at, and asserts what the page says.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.ui.appkit import build_library
from tests.ui.test_ui_browser import CHROMEDRIVER, CHROMIUM, REPO, server, shown_images  # noqa: F401  (fixtures)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
                       reason="needs Debian chromium + chromium-driver (apt-get install chromium chromium-driver)"),
]


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    """A library of its own, tagged with `search.tag --write` and with one tuned version trained without a held-out
    set, both through the real command lines before the UI starts."""
    built = build_library(tmp_path_factory.mktemp("ui-tour"))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("LOUPE_HOME", None)
    tag = [sys.executable, "-m", "search.tag", str(built.root), "--home", str(built.home), "--write",
           "--threshold", "0", "--top-k", "2"]
    subprocess.run(tag, check=True, capture_output=True, cwd=REPO, env=env, timeout=300)
    captions = built.root.parent / "captions.csv"
    rows = "".join(f"{path},a photo of {name}\n" for name, path in built.files.items())
    captions.write_text("image,caption\n" + rows)
    tune = [sys.executable, "-m", "models.train", str(captions), "--home", str(built.home), "--model", "test-tiny",
            "--train", "head", "--epochs", "1", "--batch-size", "4", "--val-fraction", "0", "--name", "tour-tiny", "-q"]
    subprocess.run(tune, check=True, capture_output=True, cwd=REPO, env=env, timeout=300)
    return built


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1400,1600",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium-tour')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    folder = Path(os.environ.get("LOUPE_UI_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def snap(driver, shots: Path, name: str, scroll_to: str | None = None) -> None:
    """A screenshot once the rerun is over (no stale elements, no running indicator), scrolled to a heading."""
    from selenium.webdriver.common.by import By

    idle(driver)
    if scroll_to is not None:
        heading = driver.find_element(By.XPATH, f"//*[self::h1 or self::h2 or self::h3][contains(., {scroll_to!r})]")
        driver.execute_script("arguments[0].scrollIntoView(true);", heading)
    time.sleep(1.0)  # let images and charts paint
    path = shots / f"{name}.png"
    assert driver.save_screenshot(str(path)) and path.stat().st_size > 10_000
    print(f"screenshot: {path}")


def idle(driver) -> None:
    """Wait until Streamlit's rerun is over: no stale elements, no running indicator (clicks on a stale page are
    lost in the next render)."""
    from selenium.webdriver.common.by import By

    time.sleep(0.3)
    wait(driver, lambda d: not d.find_elements(By.CSS_SELECTOR, "[data-stale='true']")
         and not d.find_elements(By.CSS_SELECTOR, "[data-testid='stStatusWidget'] img, .stSpinner"))


def wait(driver, condition, timeout: float = 60):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(condition)


def button(driver, label: str):
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.XPATH, f"//button[.//p[normalize-space(.)={label!r}]]")


def body(driver) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.TAG_NAME, "body").text


def test_search_cards_similar_and_detail(server, browser, shots):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    browser.get(server)
    box = wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, "input[aria-label='Describe the photo']"))
    grouping = "//label[.//p[normalize-space(.)='Group near-duplicates']]"
    wait(browser, lambda d: d.find_elements(By.XPATH, grouping))[0].click()  # test-tiny: every photo looks alike
    time.sleep(1.0)
    box = browser.find_element(By.CSS_SELECTOR, "input[aria-label='Describe the photo']")
    box.send_keys("red square", Keys.ENTER)
    wait(browser, lambda d: shown_images(d) or button(d, "Show the closest photos anyway"))
    for closest in button(browser, "Show the closest photos anyway"):
        closest.click()
    wait(browser, lambda d: len(shown_images(d)) >= 8)
    text = body(browser)
    assert "Possible match" in text or "Good match" in text
    assert "cos " not in text and "% match" not in text  # no raw numbers on the cards
    assert "file date" in text and "taken 2021-06-0" in text  # a PNG without EXIF vs. dated JPEGs
    snap(browser, shots, "1-search")

    idle(browser)
    button(browser, "Similar")[0].click()
    wait(browser, lambda d: "photos like" in body(d))
    header = next(line for line in body(browser).splitlines() if line.startswith("Results ") and " for " in line)
    assert "photos like" in header and "/" not in header and "red square" not in header
    assert browser.find_element(By.CSS_SELECTOR, "input[aria-label='Describe the photo']").get_attribute("value") == ""
    snap(browser, shots, "2-similar")

    idle(browser)
    button(browser, "Details")[0].click()
    wait(browser, lambda d: "Nearest neighbours" in body(d))
    idle(browser)
    assert "cosine" in body(browser) and "Match" in body(browser)
    snap(browser, shots, "3-detail")


def test_tags_index_and_tune_pages(server, browser, shots, library):  # noqa: F811
    browser.get(f"{server}/tags_page")
    wait(browser, lambda d: "Browse by tag" in body(d) and len(shown_images(d)) >= 2)
    text = body(browser)
    assert "# --- nature and landscapes ---" in browser.page_source  # the editor opens on the tags
    assert str(library.root) not in text  # cards show short folders
    snap(browser, shots, "4-tags", scroll_to="Browse by tag")

    browser.get(f"{server}/index_page")
    wait(browser, lambda d: "Folders" in body(d) and "Add a folder" in body(d))
    assert "not followed yet" not in body(browser) and "Moved" in body(browser)
    snap(browser, shots, "5-index")

    browser.get(f"{server}/tune_page")
    wait(browser, lambda d: "Compare text-tower versions" in body(d) and "may make search worse" in body(d))
    text = body(browser)
    assert "trained without validation" in text and "not validated" in text and "None" not in text
    snap(browser, shots, "6-tune-compare", scroll_to="Compare text-tower versions")


def test_a_tiny_run_started_in_the_browser_reads_as_an_empty_state(server, browser, shots, library):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    two = library.root.parent / "two-captions.csv"  # 2 pairs: nothing can be held out
    two.write_text(f"image,caption\n{library.files['red']},a red square\n{library.files['blue']},a blue square\n")
    browser.get(f"{server}/tune_page")
    box = wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, "input[aria-label='Captions file on this machine']"))
    box.send_keys(str(two))
    name = browser.find_element(By.CSS_SELECTOR, "input[aria-label='Version name']")
    name.send_keys("tour-two", Keys.TAB)
    idle(browser)
    button(browser, "Start tuning")[0].click()
    try:
        wait(browser, lambda d: "Saved tour-two" in body(d) or "failed" in body(d), timeout=300)
    finally:
        browser.save_screenshot(str(shots / "7-tune-run-last.png"))
    text = body(browser)
    assert "Saved tour-two" in text, text
    assert "No held-out recall" in text and "None" not in text and "null" not in text
    wait(browser, lambda d: "Promoting tour-two may make search worse" in body(d))  # the comparison opens on it
    snap(browser, shots, "7-tune-run", scroll_to="Last run")
