"""Pages in Debian's Chromium, driven by Playwright (no browser download: its own `chromium`
package, installed by scripts/system-deps.sh)."""

import shutil
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

# Headless, and quiet: with background networking on, Chromium tries Google's hosts at start.
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]


def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.fail("Debian's chromium is not installed: run scripts/system-deps.sh (apt-get install chromium)")
    return path


@contextmanager
def open_page(url: str, *, timezone: str = "UTC", size=(1400, 1000), ready: str = "body[data-ready=true]") -> Iterator:
    """The page at `url`, once `ready` matches; on leaving, no console error or page error may
    have been logged."""
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": size[0], "height": size[1]}, timezone_id=timezone)
            page = context.new_page()
            page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(url)
            page.wait_for_selector(ready, timeout=60_000)
            yield page
        finally:
            browser.close()
    assert errors == [], errors
