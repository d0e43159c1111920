"""The demo in a real browser: headless Chromium (Debian's chromium + chromedriver) driven by
Selenium loads the page of ``python app.py --tiny-random``, uploads an image, types a prompt,
runs it, and finds the annotated result, the table and the downloads; then clicks a point in
the interactive mode, and checks that a refused request shows its reason as text. Screenshots go to test-artifacts/ (ignored by git)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from _app_server import ROOT

selenium = pytest.importorskip("selenium")
from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as ec  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

ARTIFACTS = ROOT / "test-artifacts"
EXAMPLE = ROOT / "assets" / "examples" / "shapes.png"


def _find(name: str, *candidates: str) -> str:
    for c in candidates:
        if Path(c).exists():
            return c
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed; run `apt-get install chromium chromium-driver`")
    return found


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = _find("chromium", "/usr/bin/chromium")
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1400,1900",
        "--no-first-run",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-component-update",
    ):
        options.add_argument(arg)
    service = Service(executable_path=_find("chromedriver", "/usr/bin/chromedriver"))
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def _wait(driver, timeout: float = 120):
    return WebDriverWait(driver, timeout, poll_frequency=0.25)


def _screenshot(driver, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    driver.save_screenshot(str(path))
    return path


def _table_rows(driver, elem_id: str) -> int:
    """Data rows of a gr.Dataframe (its grid's aria-rowcount counts the header row too)."""
    grid = driver.find_element(By.CSS_SELECTOR, f"#{elem_id} [role=grid]")
    return int(grid.get_attribute("aria-rowcount")) - 1


def _open_with_image(driver, app_server) -> WebDriverWait:
    """Load the page and upload the example image; returns a waiter."""
    driver.get(app_server.url)
    wait = _wait(driver)
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#input-image")))
    upload = driver.find_element(By.CSS_SELECTOR, "#input-image input[type=file]")
    upload.send_keys(str(EXAMPLE))
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#input-image img")))
    return wait


def _run_prompt(driver, text: str) -> None:
    """Type ``text`` as the prompt and press "Detect and segment"."""
    prompt = driver.find_element(By.CSS_SELECTOR, "#prompt textarea")
    prompt.clear()
    prompt.send_keys(text)
    driver.find_element(By.ID, "run").click()


def test_text_prompt_run_in_the_browser(app_server, browser):
    wait = _open_with_image(browser, app_server)
    assert "Random weights" in browser.find_element(By.ID, "model-status").text

    _run_prompt(browser, "ball . box . triangle")

    result = wait.until(
        ec.visibility_of_element_located((By.CSS_SELECTOR, "#result-image img[src]"))
    )
    wait.until(lambda d: d.execute_script("return arguments[0].naturalWidth", result) > 0)
    assert browser.execute_script("return arguments[0].naturalWidth", result) == 480
    assert browser.execute_script("return arguments[0].naturalHeight", result) == 360

    rows = wait.until(lambda d: _table_rows(d, "result-table") or False)
    table_text = browser.find_element(By.ID, "result-table").text
    for header in ("label", "score", "mask score", "review"):
        assert header in table_text
    assert rows >= 1
    body = table_text.split("review", 1)[1]  # below the header: the detections' labels
    assert any(name in body for name in ("ball", "box", "triangle", "#"))

    files = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#result-files a") or False)
    assert len(files) == 2  # one download link per file
    names = browser.find_element(By.ID, "result-files").text.replace("\n", "")
    assert "annotations.coco.json" in names and "masks.zip" in names
    # the download names the uploaded file, not "image.png" (fetched from the local server)
    import json
    import urllib.request

    (coco_link,) = [a for a in files if "annotations.coco.json" in (a.get_attribute("href") or "")]
    with urllib.request.urlopen(coco_link.get_attribute("href"), timeout=30) as response:
        coco = json.loads(response.read())
    assert coco["images"][0]["file_name"] == EXAMPLE.name

    browser.execute_script("window.scrollTo(0, 0)")
    path = _screenshot(browser, "app.png")
    assert path.stat().st_size > 10_000


def test_click_mode_in_the_browser(app_server, browser):
    wait = _open_with_image(browser, app_server)
    tab = next(
        b
        for b in browser.find_elements(By.CSS_SELECTOR, "button[role=tab]")
        if b.text.strip() == "Click"
    )
    tab.click()
    img = wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, "#click-image img[src]")))
    before = img.get_attribute("src")
    ActionChains(browser).move_to_element_with_offset(img, 10, 5).click().perform()
    wait.until(
        lambda d: d.find_element(By.CSS_SELECTOR, "#click-image img").get_attribute("src") != before
    )
    wait.until(lambda d: "object" in d.find_element(By.ID, "click-table").text)
    assert _table_rows(browser, "click-table") == 1  # one mask
    _screenshot(browser, "app-click.png")


def test_a_refusal_shows_its_reason_on_the_page(app_server, browser):
    wait = _open_with_image(browser, app_server)
    _run_prompt(browser, " . ")
    toast = wait.until(
        ec.visibility_of_element_located((By.CSS_SELECTOR, "[data-testid=toast-body]"))
    )
    assert "names no class; write classes separated by ' . '" in toast.text
    _screenshot(browser, "app-error.png")
