"""A server with a read key, used from a real browser: the page asks for the key
on the first 401 and then works (search, the map's thumbnails and atlas sheets),
and /docs offers Authorize. Debian's headless Chromium, a real uvicorn server."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Iterator

import pytest
import uvicorn

from service.app import create_app
from service.settings import Settings

from .conftest import Built
from .test_web import CHROMIUM, CHROMIUM_ARGS, TIMEOUT_MS, _free_port, photo_row, shot

sync_api = pytest.importorskip("playwright.sync_api")

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Debian's chromium is not installed (/usr/bin/chromium)"
)

READ = "read key; with spaces & 100%"  # cookie-unsafe characters on purpose


@pytest.fixture(scope="module")
def server(built: Built) -> Iterator[str]:
    port = _free_port()
    app = create_app(Settings(data_dir=built.data_dir, read_key=READ))
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


class Seen:
    """Responses and problems of one page; 401s are counted, not failures."""

    def __init__(self, pg, base: str) -> None:
        self.unauthorised: list[str] = []
        self.problems: list[str] = []
        self.outside: list[str] = []

        def on_response(res) -> None:
            if res.status == 401:
                self.unauthorised.append(res.url)
            elif res.status >= 400:
                self.problems.append(f"HTTP {res.status}: {res.url}")

        def on_console(msg) -> None:
            if msg.type == "error" and "status of 401" not in msg.text:
                self.problems.append(f"console: {msg.text}")

        def on_request(req) -> None:
            if not req.url.startswith((base, "data:", "blob:")):
                self.outside.append(req.url)

        pg.on("response", on_response)
        pg.on("console", on_console)
        pg.on("request", on_request)
        pg.on("pageerror", lambda exc: self.problems.append(f"exception: {exc}"))


def _page(browser, server: str, width: int = 1440, height: int = 900):
    context = browser.new_context(viewport={"width": width, "height": height}, base_url=server)
    context.set_default_timeout(TIMEOUT_MS)
    pg = context.new_page()
    return context, pg, Seen(pg, server)


def _enter(pg, key: str) -> None:
    dialog = pg.locator("#key-dialog")
    sync_api.expect(dialog).to_be_visible()
    sync_api.expect(pg.locator("#key-input")).to_be_focused()
    pg.fill("#key-input", key)
    pg.keyboard.press("Enter")


def test_the_page_asks_for_the_key_then_search_and_map_work(
    browser, server: str, built: Built
) -> None:
    context, pg, seen = _page(browser, server)
    try:
        pg.goto("/")
        dialog = pg.locator("#key-dialog")
        sync_api.expect(dialog).to_be_visible()
        sync_api.expect(dialog).to_contain_text("needs a key")
        shot(pg, "key-dialog-1440x900")
        assert seen.unauthorised, "the page asked before the server said 401"

        _enter(pg, "not the key")
        sync_api.expect(pg.locator("#key-error")).to_be_visible()
        sync_api.expect(pg.locator("#key-error")).to_contain_text("not accepted")
        _enter(pg, READ)
        sync_api.expect(dialog).to_have_count(0)
        sync_api.expect(pg.locator("#stats")).to_contain_text(f"{built.snapshot.count} images")
        refused_before = len(seen.unauthorised)

        # <img> thumbnails load: they carry no header, the page's cookie stands in.
        first = pg.locator("#samples .card img").first
        sync_api.expect(first).to_be_visible()
        pg.wait_for_function("i => i.complete && i.naturalWidth > 0", arg=first.element_handle())

        # A search by upload (a POST: the header, never the cookie, carries the key).
        row = photo_row(built)
        pg.set_input_files("#file-input", str(built.collection / row.path))
        top = pg.locator("#results .card").first
        sync_api.expect(top).to_have_attribute("data-id", str(row.id))
        sync_api.expect(top.locator(".score")).to_have_text("100%")

        # The map: layout over fetch, atlas sheets and thumbnails as images.
        pg.goto("/#v=map")
        canvas = pg.locator("#map-canvas")
        sync_api.expect(canvas).to_have_attribute("data-painted", "1")
        pg.wait_for_function("() => performance.getEntriesByName('pixscape-map-sheets').length > 0")
        sheets = pg.evaluate(
            "() => performance.getEntriesByType('resource')"
            ".filter(e => e.name.includes('/api/atlas/') && e.responseStatus === 200).length"
        )
        assert sheets >= 1, "no atlas sheet was loaded"

        # A reload in the same tab keeps the key: no second dialog.
        pg.reload()
        sync_api.expect(pg.locator("#stats")).to_contain_text(f"{built.snapshot.count} images")
        assert pg.locator("#key-dialog").count() == 0
        assert len(seen.unauthorised) == refused_before, seen.unauthorised[refused_before:]
        assert not seen.problems, "\n".join(seen.problems)
        assert not seen.outside, seen.outside
    finally:
        context.close()


def test_the_key_dialog_fits_a_phone_and_cancel_says_why(browser, server: str) -> None:
    context, pg, seen = _page(browser, server, 390, 844)
    try:
        pg.goto("/")
        dialog = pg.locator("#key-dialog")
        sync_api.expect(dialog).to_be_visible()
        box = dialog.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 390
        assert pg.evaluate("() => document.documentElement.scrollWidth") <= 390
        shot(pg, "key-dialog-390x844")
        pg.get_by_role("button", name="Cancel").click()
        sync_api.expect(pg.locator("#stats")).to_contain_text("needs a key")
        assert not seen.problems, "\n".join(seen.problems)
    finally:
        context.close()


def test_openapi_declares_the_key_and_docs_offer_authorize(browser, server: str) -> None:
    with urllib.request.urlopen(f"{server}/openapi.json", timeout=30) as res:
        spec = json.load(res)
    schemes = spec["components"]["securitySchemes"]
    assert {"type": "apiKey", "in": "header", "name": "X-API-Key"}.items() <= schemes[
        "apiKey"
    ].items()
    assert schemes["bearer"]["scheme"] == "bearer"
    stats = spec["paths"]["/api/stats"]["get"]["security"]
    assert {"apiKey": []} in stats and {"bearer": []} in stats
    assert "security" not in spec["paths"]["/api/health"]["get"]

    context, pg, seen = _page(browser, server)
    try:
        pg.goto("/docs")
        authorize = pg.locator("button.authorize")
        sync_api.expect(authorize).to_be_visible()
        authorize.click()
        sync_api.expect(pg.locator(".auth-container input").first).to_be_visible()
        pg.locator(".auth-container input").first.fill(READ)
        pg.locator(".auth-container button.authorize").first.click()
        pg.locator("button.close-modal").click()
        # Try it out on /api/stats: Swagger sends X-API-Key, the server answers 200.
        block = pg.locator("#operations-meta-stats_api_stats_get")
        block.locator(".opblock-summary").click()
        block.locator("button.try-out__btn").click()
        with pg.expect_response(lambda r: r.url.endswith("/api/stats")) as answer:
            block.locator("button.execute").click()
        assert answer.value.status == 200
        assert not seen.outside, f"/docs fetched from elsewhere: {seen.outside}"
        assert not seen.problems, "\n".join(seen.problems)
    finally:
        context.close()
