"""The web page in a real browser: Debian's headless Chromium driven by Playwright.

A real uvicorn server on a loopback port serves the session snapshot. Every test
fails on a console error, an uncaught exception or a failed request, unless it
expects that very status. Screenshots go to test-artifacts/ for people to look at.
"""

from __future__ import annotations

import io
import json
import re
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import uvicorn
from PIL import Image, ImageChops, ImageStat

from service.app import create_app
from service.settings import Settings

from .conftest import ROOT, Built

sync_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]
ARTIFACTS = ROOT / "test-artifacts"
TIMEOUT_MS = 30_000  # two shared cores: be patient, never flaky

sync_api.expect.set_options(timeout=TIMEOUT_MS)

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Debian's chromium is not installed (/usr/bin/chromium)"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(built: Built) -> Iterator[str]:
    """The real app under uvicorn in a thread, on a free loopback port."""
    port = _free_port()
    app = create_app(Settings(data_dir=built.data_dir))
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while not srv.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    yield base
    srv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


@dataclass
class Watch:
    """What went wrong in the page: console errors, exceptions, failed requests."""

    problems: list[str] = field(default_factory=list)
    allowed_status: set[int] = field(default_factory=set)

    def allow(self, status: int) -> None:
        self.allowed_status.add(status)


@pytest.fixture
def page(browser, server: str) -> Iterator[object]:
    context = browser.new_context(viewport={"width": 1280, "height": 860}, base_url=server)
    context.set_default_timeout(TIMEOUT_MS)
    pg = context.new_page()
    watch = Watch()
    pg.watch = watch

    def on_console(msg) -> None:
        if msg.type != "error":
            return
        m = re.search(r"status of (\d{3})", msg.text)
        if m and int(m.group(1)) in watch.allowed_status:
            return
        watch.problems.append(f"console: {msg.text}")

    def on_response(res) -> None:
        if res.status >= 400 and res.status not in watch.allowed_status:
            watch.problems.append(f"HTTP {res.status}: {res.url}")

    pg.on("console", on_console)
    pg.on("pageerror", lambda exc: watch.problems.append(f"exception: {exc}"))

    def on_failed(req) -> None:
        # Navigating away cancels the requests in flight (lazy thumbnails): not a failure.
        if "ERR_ABORTED" not in (req.failure or ""):
            watch.problems.append(f"failed: {req.url} {req.failure}")

    pg.on("requestfailed", on_failed)
    pg.on("response", on_response)
    yield pg
    context.close()
    assert not watch.problems, "\n".join(watch.problems)


def shot(pg, name: str, **kwargs) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    pg.screenshot(path=str(path), **kwargs)
    return path


def pixels(pg, selector: str) -> Image.Image:
    return Image.open(io.BytesIO(pg.locator(selector).screenshot())).convert("RGB")


def differ(a: Image.Image, b: Image.Image) -> float:
    """Mean absolute difference per channel, 0..255."""
    return sum(ImageStat.Stat(ImageChops.difference(a, b)).mean) / 3


def photo_row(built: Built):
    return next(r for r in built.snapshot.rows if r.path.startswith("photos/"))


# ---------------------------------------------------------------- search


def test_header_shows_the_collection(page, built: Built) -> None:
    page.goto("/")
    stats = page.locator("#stats")
    sync_api.expect(stats).to_contain_text(f"{built.snapshot.count} images")
    sync_api.expect(stats).to_contain_text("efficientnet-lite0")
    # The sample grid invites a first click; every image has alt text.
    sync_api.expect(page.locator("#samples .card img").first).to_be_visible()
    for alt in page.locator("img:visible").evaluate_all("els => els.map(e => e.alt)"):
        assert alt.strip()


def test_header_links_to_the_api_documentation(page) -> None:
    page.goto("/")
    page.get_by_role("link", name="API").click()
    page.wait_for_url("**/docs")
    # Swagger UI (served from a wheel, no CDN) lists the routes.
    sync_api.expect(page.get_by_text("/api/search").first).to_be_visible()


def test_upload_a_photo_finds_its_original_first(page, built: Built) -> None:
    row = photo_row(built)
    page.goto("/")
    page.set_input_files("#file-input", str(built.collection / row.path))
    first = page.locator("#results .card").first
    sync_api.expect(first).to_have_attribute("data-id", str(row.id))
    img = first.locator("img")
    assert f"/api/images/{row.id}/thumbnail" in img.get_attribute("src")
    page.wait_for_function("i => i.complete && i.naturalWidth > 0", arg=img.element_handle())
    sync_api.expect(first.locator(".score")).to_have_text("100%")
    assert page.locator("#results .card").count() >= 20
    sync_api.expect(page.locator("#query-img")).to_be_visible()
    shot(page, "search")


def test_more_like_this_lives_in_the_url(page, built: Built) -> None:
    page.goto("/")
    page.locator("#samples .card-main").nth(2).click()
    page.wait_for_url(re.compile(r"like=\d+"))
    like = int(re.search(r"like=(\d+)", page.url).group(1))
    sync_api.expect(page.locator("#results .card").first).to_be_visible()
    ids = page.locator("#results .card").evaluate_all("cs => cs.map(c => +c.dataset.id)")
    assert like not in ids and len(ids) >= 20
    # A fresh page on the same link shows the same results.
    page.goto("/")
    page.goto(f"/#v=search&like={like}&k=50")
    sync_api.expect(page.locator("#results .card").nth(49)).to_be_attached()
    again = page.locator("#results .card").evaluate_all("cs => cs.map(c => +c.dataset.id)")
    assert again[:20] == ids[:20]
    sync_api.expect(page.locator("#query-caption")).to_contain_text(built.snapshot.rows[like].path)


def test_scrolling_loads_more_results(page) -> None:
    page.goto("/#v=search&like=3")
    sync_api.expect(page.locator("#results .card").nth(19)).to_be_attached()
    page.wait_for_timeout(500)
    n = page.locator("#results .card").count()
    page.locator("#results-more").scroll_into_view_if_needed()
    page.wait_for_function(f"() => document.querySelectorAll('#results .card').length > {n}")
    ids = page.locator("#results .card").evaluate_all("cs => cs.map(c => +c.dataset.id)")
    assert len(set(ids)) == len(ids)


def test_a_file_that_is_not_an_image_is_refused_plainly(page) -> None:
    page.watch.allow(415)
    page.goto("/")
    page.set_input_files(
        "#file-input", files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"hi"}]
    )
    alert = page.locator("#search-error")
    sync_api.expect(alert).to_be_visible()
    sync_api.expect(alert).to_contain_text("not an image format")
    shot(page, "search-error")


def test_clicking_details_opens_the_panel_and_escape_closes_it(page, built: Built) -> None:
    page.goto("/#v=search&like=5")
    card = page.locator("#results .card").first
    target = int(card.get_attribute("data-id"))
    card.locator(".details-button").click()
    panel = page.locator("#panel")
    sync_api.expect(panel).to_be_visible()
    sync_api.expect(panel.locator(".meta")).to_contain_text(built.snapshot.rows[target].path)
    sync_api.expect(panel.locator(".grid .card")).to_have_count(12)
    assert f"sel={target}" in page.url
    shot(page, "panel")
    page.keyboard.press("Escape")
    sync_api.expect(panel).to_be_hidden()
    assert "sel=" not in page.url


def test_typing_a_word_completes_it_and_finds_its_images(page, built: Built) -> None:
    page.goto("/")
    box = page.locator("#word-input")
    box.fill("tabb")
    sync_api.expect(page.locator("#word-list option[value=tabby]")).to_be_attached()
    box.fill("cat")
    box.press("Enter")
    page.wait_for_url(re.compile(r"q=cat"))
    first = page.locator("#results .card").first
    sync_api.expect(first).to_be_visible()
    # The cat photos are crops of chelsea.png; the card says what the network saw.
    row = built.snapshot.rows[built.snapshot.row_of(int(first.get_attribute("data-id")))]
    assert "chelsea" in row.path
    sync_api.expect(first.locator(".badge")).to_have_text(re.compile("cat|tabby", re.I))
    sync_api.expect(page.locator("#results-head")).to_contain_text("the network calls")
    shot(page, "search-words")
    # The same link on a fresh page shows the same search.
    page.goto("/")
    page.goto("/#v=search&q=cat")
    sync_api.expect(page.locator("#word-input")).to_have_value("cat")
    sync_api.expect(page.locator("#results .card").first).to_have_attribute(
        "data-id", first.get_attribute("data-id")
    )


def test_an_unknown_word_offers_close_ones(page) -> None:
    page.goto("/#v=search&q=parot")
    head = page.locator("#results-head")
    sync_api.expect(head).to_contain_text("not among")
    head.get_by_role("button", name="parrot").click()
    page.wait_for_url(re.compile(r"q=parrot"))
    sync_api.expect(page.locator("#word-input")).to_have_value("parrot")


def test_the_panel_shows_tags_that_search(page, built: Built) -> None:
    row = next(r for r in built.snapshot.rows if "chelsea" in r.path)
    page.goto(f"/#v=search&sel={row.id}")
    tag = page.locator("#panel .tags .tag").first
    sync_api.expect(tag).to_be_visible()
    word = tag.inner_text().rsplit(" ", 1)[0]
    shot(page, "panel-tags")
    tag.click()
    page.wait_for_url(re.compile(r"q="))
    sync_api.expect(page.locator("#word-input")).to_have_value(word)
    sync_api.expect(page.locator("#results .card").first).to_be_visible()


def test_keyboard_reaches_the_upload_button_with_visible_focus(page) -> None:
    page.goto("/")
    for _ in range(12):
        page.keyboard.press("Tab")
        if page.evaluate("() => document.activeElement.id") == "file-input":
            break
    else:
        pytest.fail("Tab never reached the file input")
    label = page.locator("label[for=file-input]")
    outline = label.evaluate("e => getComputedStyle(e).outlineStyle")
    assert outline == "solid"


def test_phone_width_has_no_sideways_scroll(page) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto("/#v=search&like=7")
    sync_api.expect(page.locator("#results .card").first).to_be_visible()
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 390
    shot(page, "search-phone")


# ---------------------------------------------------------------- path


def _chain_ids(page) -> list[int]:
    return page.locator("#path-strip .card").evaluate_all("cs => cs.map(c => +c.dataset.id)")


def test_path_strip_runs_from_start_to_end(page, built: Built) -> None:
    a, b = 2, built.snapshot.count - 3
    page.goto("/")
    # Choose the ends from the image panel, as a person would.
    page.goto(f"/#v=search&sel={a}")
    page.get_by_role("button", name="Start path here").click()
    page.wait_for_url(re.compile(f"from={a}"))
    page.goto(page.url.replace("v=path", "v=search") + f"&sel={b}")
    page.get_by_role("button", name="End path here").click()
    sync_api.expect(page.locator("#path-strip .card").first).to_be_visible()
    ids = _chain_ids(page)
    assert ids[0] == a and ids[-1] == b and len(ids) >= 2
    assert len(set(ids)) == len(ids)
    steps = page.locator("#path-strip .step").all_inner_texts()
    assert len(steps) == len(ids) - 1 and all(s.endswith("%") for s in steps)
    shot(page, "path")
    # The link reproduces the path.
    url = page.url
    assert f"from={a}" in url and f"to={b}" in url
    page.goto("/")
    page.goto(url)
    sync_api.expect(page.locator("#path-strip .card").first).to_be_visible()
    assert _chain_ids(page) == ids


def test_path_slideshow_plays(page, built: Built) -> None:
    page.goto(f"/#v=path&from=1&to={built.snapshot.count - 1}")
    sync_api.expect(page.locator("#path-strip .card").first).to_be_visible()
    page.get_by_role("button", name=re.compile("slideshow")).click()
    dialog = page.locator("#slideshow")
    sync_api.expect(dialog).to_be_visible()
    sync_api.expect(page.locator("#slide-caption")).to_contain_text("1 /")
    page.keyboard.press("ArrowRight")
    sync_api.expect(page.locator("#slide-caption")).to_contain_text("2 /")
    shot(page, "path-slideshow")
    page.keyboard.press("Escape")
    sync_api.expect(dialog).to_be_hidden()


# ---------------------------------------------------------------- map


def _has_maps(server: str) -> bool:
    try:
        with urllib.request.urlopen(f"{server}/api/maps", timeout=30) as res:
            return bool(json.load(res))
    except urllib.error.HTTPError:
        return False


def _open_map(page, server: str, hash_: str = "v=map"):
    assert _has_maps(server), "the snapshot has no maps: /api/maps is empty"
    page.goto(f"/#{hash_}")
    canvas = page.locator("#map-canvas")
    sync_api.expect(canvas).to_have_attribute("data-painted", "1")
    page.wait_for_timeout(900)  # let a layout transition or fly-to settle
    return canvas


def _background_share(img: Image.Image) -> float:
    """Share of pixels that are the map's empty background colour."""
    small = np.asarray(img.convert("RGB").resize((160, 100)), dtype=np.int16)
    bg = np.array([21, 21, 27], dtype=np.int16)
    return float((np.abs(small - bg).max(axis=2) < 6).mean())


@pytest.mark.parametrize("renderer", ["canvas2d", "webgl2"])
def test_map_draws_and_moves(page, server: str, renderer: str) -> None:
    # By itself the page picks WebGL2 on a GPU and Canvas2D where WebGL is only
    # emulated on the CPU (as in this headless Chromium): force each in turn.
    forced = {"canvas2d": "canvas", "webgl2": "webgl"}[renderer]
    canvas = _open_map(page, server, f"v=map&renderer={forced}")
    if canvas.get_attribute("data-renderer") != renderer:
        pytest.skip(f"{renderer} is not available in this browser")
    before = pixels(page, "#map-stage")
    assert _background_share(before) < 0.97, f"the map ({renderer}) drew nothing"
    shot(page, f"map-{renderer}")
    # Zoom with the keyboard, then drag: the picture changes each time.
    canvas.focus()
    page.keyboard.press("+")
    page.wait_for_timeout(700)
    zoomed = pixels(page, "#map-stage")
    assert differ(before, zoomed) > 2
    box = canvas.bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(cx, cy)
    page.mouse.down()
    page.mouse.move(cx - 200, cy - 120, steps=8)
    page.mouse.up()
    page.wait_for_timeout(300)
    panned = pixels(page, "#map-stage")
    assert differ(zoomed, panned) > 2
    page.mouse.wheel(0, -600)
    page.wait_for_timeout(700)
    assert differ(panned, pixels(page, "#map-stage")) > 2
    # The camera is in the URL, and a fresh page on that link shows the same view.
    page.wait_for_function("() => /[&#]z=/.test(location.hash)")
    url = page.url
    assert re.search(r"[#&]x=[\d.]+", url) and "layout=" in url
    camera = {k: re.search(rf"[#&]{k}=([\d.]+)", url).group(1) for k in "xyz"}
    page.goto("/")
    page.goto(url)
    sync_api.expect(canvas).to_have_attribute("data-painted", "1")
    page.wait_for_timeout(800)  # the page writes its camera back once it has settled
    for k, v in camera.items():
        assert re.search(rf"[#&]{k}=([\d.]+)", page.url).group(1) == v
    assert differ(before, pixels(page, "#map-stage")) > 2


def test_map_layout_switch_and_url(page, server: str) -> None:
    canvas = _open_map(page, server)
    switch = page.locator("#layout-switch button")
    if switch.count() < 2:
        pytest.skip("only one layout in this snapshot")
    before = pixels(page, "#map-stage")
    current = page.locator("#layout-switch [aria-checked=true]").get_attribute("data-layout")
    other = next(
        b for b in switch.evaluate_all("bs => bs.map(b => b.dataset.layout)") if b != current
    )
    page.locator(f"#layout-switch [data-layout={other}]").click()
    page.wait_for_timeout(1200)
    after = pixels(page, "#map-stage")
    assert differ(before, after) > 2
    assert f"layout={other}" in page.url
    shot(page, f"map-{other}")
    page.wait_for_function("() => /[&#]z=/.test(location.hash)")
    url = page.url
    page.goto("/")
    page.goto(url)
    sync_api.expect(canvas).to_have_attribute("data-painted", "1")
    sync_api.expect(page.locator(f"#layout-switch [data-layout={other}]")).to_have_attribute(
        "aria-checked", "true"
    )


def test_clicking_the_map_opens_the_image_panel(page, server: str, built: Built) -> None:
    canvas = _open_map(page, server)
    # Fly to image 0 through the URL, then click the centre of the canvas.
    page.goto("/#v=map&sel=0&fly=1")
    page.wait_for_timeout(1500)
    sync_api.expect(page.locator("#panel")).to_be_visible()
    page.keyboard.press("Escape")
    sync_api.expect(page.locator("#panel")).to_be_hidden()
    box = canvas.bounding_box()
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    panel = page.locator("#panel")
    sync_api.expect(panel).to_be_visible()
    sync_api.expect(panel.locator(".meta")).to_be_visible()
    assert re.search(r"sel=\d+", page.url)
    page.wait_for_timeout(400)  # the panel's slide-in
    shot(page, "map-panel")


def test_an_upload_is_shown_on_the_map(page, server: str, built: Built) -> None:
    assert _has_maps(server), "the snapshot has no maps: /api/maps is empty"
    row = photo_row(built)
    page.goto("/")
    page.set_input_files("#file-input", str(built.collection / row.path))
    page.get_by_role("link", name=re.compile("falls on the map")).click()
    canvas = page.locator("#map-canvas")
    sync_api.expect(canvas).to_have_attribute("data-painted", "1")
    page.wait_for_function("() => !location.hash.includes('here=')")
    page.wait_for_timeout(1500)
    shot(page, "map-you-are-here")
    z = float(re.search(r"[#&]z=([\d.]+)", page.url).group(1))
    assert z > 2  # it flew in to where the upload falls


def test_path_shows_on_the_map(page, server: str, built: Built) -> None:
    _open_map(page, server)
    page.goto(f"/#v=path&from=0&to={built.snapshot.count - 1}")
    sync_api.expect(page.locator("#path-strip .card").first).to_be_visible()
    page.get_by_role("link", name=re.compile("route on the map")).click()
    page.wait_for_timeout(1500)
    shot(page, "map-path")
