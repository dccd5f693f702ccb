"""The real thing: `python -m ui` on loopback, driven by headless Debian Chromium through Selenium.

A query typed into the search box shows result images (displayed, decoded, non-zero size); a screenshot is saved in
the test's tmp dir; a crafted `?path=/etc/passwd` (and a `../` variant) shows a refusal and never the file. Skipped
when /usr/bin/chromium is missing (`apt-get install chromium chromium-driver`; .ci/run installs both).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
REPO = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
                       reason="needs Debian chromium + chromium-driver (apt-get install chromium chromium-driver)"),
]


@pytest.fixture(scope="module")
def server(library, tmp_path_factory):
    """`python -m ui` as a user starts it, on a free loopback port; stopped (SIGTERM, then kill) afterwards."""
    from indexer.owner.ownership import free_port

    port = free_port()
    log = tmp_path_factory.mktemp("ui-server") / "server.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("LOUPE_HOME", None)
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "ui", "--port", str(port), "--home", str(library.home),
                                 "--no-browser"], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_healthy(port, proc, log)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_healthy(port: int, proc: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the UI exited:\n{log.read_text()}"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=1) as answer:
                if answer.read().strip() == b"ok":
                    return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"no /_stcore/health within {timeout} s:\n{log.read_text()}")


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1400,1000",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    yield driver
    driver.quit()


def shown_images(driver) -> list:
    """Result images the browser really displays: visible, loaded and decoded (naturalWidth > 0)."""
    from selenium.webdriver.common.by import By

    images = driver.find_elements(By.CSS_SELECTOR, "[data-testid='stImage'] img")
    return [i for i in images if i.is_displayed() and int(i.get_attribute("naturalWidth") or 0) > 0]


def test_a_typed_query_shows_result_images(server, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as seen
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 60)
    browser.get(server)
    box = wait.until(seen.element_to_be_clickable((By.CSS_SELECTOR, "input[aria-label='Describe the photo']")))
    box.send_keys("red square", Keys.ENTER)
    closest = "//button[.//p[contains(., 'Show the closest photos anyway')]]"
    wait.until(lambda d: shown_images(d) or d.find_elements(By.XPATH, closest))
    for button in browser.find_elements(By.XPATH, closest):  # test-tiny is random: "no good match" is likely
        button.click()
    wait.until(lambda d: len(shown_images(d)) >= 2)
    time.sleep(0.5)  # let the last thumbnails paint before the screenshot
    shot = tmp_path / "search.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    print(f"screenshot: {shot}")
    assert all(image.size["width"] > 50 for image in shown_images(browser))
    assert "red square" in browser.find_element(By.CSS_SELECTOR, "input[aria-label='Describe the photo']") \
        .get_attribute("value")


@pytest.mark.parametrize("crafted", ["/etc/passwd", "../../../../../../etc/passwd"])
def test_a_crafted_path_is_refused_not_served(server, browser, crafted):
    import urllib.parse

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(f"{server}/?path={urllib.parse.quote(crafted)}")
    alert = "//*[@data-testid='stAlertContentError'][contains(., 'Refused')]"
    WebDriverWait(browser, 60).until(lambda d: d.find_elements(By.XPATH, alert))
    assert "root:x:0:0" not in browser.page_source
    assert not shown_images(browser)
