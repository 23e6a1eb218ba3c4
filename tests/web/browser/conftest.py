"""Browser-test fixtures: a live console server in a thread and Debian's Chromium via Playwright.

One browser per test session, one synced site per module. Playwright drives `/usr/bin/chromium`
(Debian's package; `.ci/run` installs it with fonts-noto-cjk) through `executable_path`, never a
browser Playwright downloads. Without Chromium (or Playwright) the tests skip locally and fail in
CI (CI=true), like the database tests in tests/conftest.py.
"""
from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from tests.conftest import IN_CI
from tests.web.console_sites import PASSWORDS, ConsoleSite, build_console_site, make_app

CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


def _unavailable(message: str) -> None:
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        _unavailable(f"playwright is not installed: {exc}")
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        _unavailable(f"Debian's chromium is not installed ({CHROMIUM}); apt-get install chromium fonts-noto-cjk")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=shutil.which("chromium") or CHROMIUM, headless=True)
        yield browser
        browser.close()


class LiveServer:
    """The console app served by werkzeug on 127.0.0.1 (a free port) in a daemon thread."""

    def __init__(self, app) -> None:
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.thread.join(timeout=5)


@pytest.fixture(scope="module")
def console_site(tmp_path_factory: pytest.TempPathFactory) -> ConsoleSite:
    folder = tmp_path_factory.mktemp("browser")
    return build_console_site(folder / "src", f"sqlite:///{folder / 'console.db'}")


@pytest.fixture(scope="module")
def live_server(console_site: ConsoleSite) -> Iterator[LiveServer]:
    app = make_app(console_site)
    with LiveServer(app) as server:
        yield server


@pytest.fixture(params=["desktop", "phone"])
def viewport(request: pytest.FixtureRequest) -> tuple[str, dict[str, int]]:
    return request.param, DESKTOP if request.param == "desktop" else PHONE


@pytest.fixture
def new_page(browser, live_server: LiveServer):
    """Factory: a fresh browser context (own cookies) at a viewport, logged in as `username`."""
    contexts = []

    def answer(dialog) -> None:
        """A person confirms what they asked for (transfer out: "are you sure?"); any other
        dialog (an alert) is something a page must never show: recorded for the test."""
        if dialog.type == "confirm":
            dialog.accept()
        else:
            open_page.alerts.append(dialog.message)
            dialog.dismiss()

    def open_page(username: str | None = "admin", size: dict[str, int] = DESKTOP, lang: str = "zh"):
        context = browser.new_context(viewport=size, base_url=live_server.url, accept_downloads=True,
                                      locale="zh-CN" if lang == "zh" else "en-US")
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(10_000)
        page.on("dialog", answer)
        if username is not None:
            page.goto("/login")
            page.fill('input[name="username"]', username)
            page.fill('input[name="password"]', PASSWORDS[username])
            page.click('form [type="submit"]')
            page.wait_for_load_state()
            assert "/login" not in page.url, f"log-in as {username} failed: {page.url}"
        if lang == "en":
            page.goto("/lang/en")
        return page

    open_page.alerts = []
    yield open_page
    for context in contexts:
        context.close()


MAX_SHOT_HEIGHT = 4000  # a run's change list can be 25 000 px tall: its top tells enough


def screenshot(page, name: str) -> Path:
    """Keep a full-page screenshot (its top 4 000 px) as a CI artifact
    (tests/artifacts/screenshots/NAME.png)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    width, height = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.scrollHeight]")
    page.screenshot(path=str(path), full_page=True, animations="disabled",
                    clip={"x": 0, "y": 0, "width": width, "height": min(height, MAX_SHOT_HEIGHT)})
    return path


def horizontal_overflow(page) -> int:
    """How many CSS pixels the page is wider than the viewport (0 when the layout holds)."""
    return page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
