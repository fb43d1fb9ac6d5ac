"""The page beside the answer in headless Chromium: ask about a PDF, click [1], see the printed
page with the sentence marked and a link that downloads the page; a text source still shows its
passage with the quote marked. Saves docs/page-viewer.png."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest
from serving import CHROMIUM, CHROMIUM_ARGS, AppServer, PrefixProxy, with_serve
from viewer_pdf import BOOKS, MD_QUESTION, pdf_runtime

from rag.serve import create_app

pytest.importorskip("playwright")
pytest.importorskip("pypdfium2")
if not Path(CHROMIUM).exists():  # `make browser` installs it
    pytest.skip(f"Chromium not installed at {CHROMIUM}", allow_module_level=True)

from playwright.sync_api import Browser, Page, expect, sync_playwright  # noqa: E402

PROJECT_ROOT = Path(__file__).resolve().parent.parent
TIMEOUT_MS = 120_000


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: Browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, locale="zh-CN", accept_downloads=True)
    pg = context.new_page()
    pg.set_default_timeout(TIMEOUT_MS)
    yield pg
    context.close()


@pytest.fixture(scope="module")
def runtime(tmp_path_factory, embedder, magazine_settings):
    return pdf_runtime(tmp_path_factory.mktemp("page-ui"), embedder, magazine_settings)


@pytest.fixture(scope="module")
def server(runtime):
    with AppServer(create_app(runtime.settings, runtime)) as s:
        yield s


def _ask(page: Page, question: str) -> None:
    expect(page.locator("#gy-status")).to_contain_text("索引版本")
    page.locator("#gy-question textarea").fill(question)
    page.locator("#gy-submit").click()
    expect(page.locator("[data-testid='bot']").last.locator("a.gy-cite").first).to_be_visible()


def _open_first_citation_and_check_page(page: Page, tmp_path: Path) -> None:
    with page.expect_response(lambda r: "/page/nanyue/3.png" in r.url and "focus=true" in r.url) as got:
        page.locator("[data-testid='bot']").last.locator("a.gy-cite").first.click()
    response = got.value
    assert response.status == 200 and response.headers["x-quote-match"] == "full"
    source = page.locator("#src-1-1")
    # the lines around the sentence, legible in the panel, then the whole page
    for img, width in ((source.locator("img.gy-page-focus"), 300), (source.locator("img.gy-page-full"), 1000)):
        expect(img).to_be_visible()
        page.wait_for_function(
            "([img, w]) => img.complete && img.naturalWidth > w", arg=[img.element_handle(), width]
        )
    expect(source.locator("details.gy-page summary")).to_contain_text("第2页")
    expect(source.locator("summary").first).to_contain_text("第2页")  # the sentence's own page
    with page.expect_download() as dl:
        source.get_by_text("下载此页（PDF）").click()
    saved = tmp_path / "page.pdf"
    dl.value.save_as(saved)
    assert saved.read_bytes().startswith(b"%PDF")


def test_click_citation_shows_the_printed_page_marked(page: Page, server: AppServer, tmp_path: Path) -> None:
    page.goto(f"{server.url}/")
    _ask(page, BOOKS[0])
    _open_first_citation_and_check_page(page, tmp_path)
    page.locator("#src-1-1 img.gy-page-focus").scroll_into_view_if_needed()
    shot = tmp_path / "page-viewer.png"
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 50_000
    docs = PROJECT_ROOT / "docs"
    docs.mkdir(exist_ok=True)
    shutil.copyfile(shot, docs / "page-viewer.png")


def test_text_source_keeps_the_passage_with_the_quote_marked(page: Page, server: AppServer) -> None:
    page.goto(f"{server.url}/")
    _ask(page, MD_QUESTION)
    page.locator("[data-testid='bot']").last.locator("a.gy-cite").first.click()
    source = page.locator("#src-1-1")
    expect(source).to_be_in_viewport()
    expect(source.locator("mark")).to_contain_text("二百一十家")
    assert source.locator("details.gy-page").count() == 0 and source.locator("img").count() == 0


def test_page_image_under_a_sub_path(page: Page, runtime, tmp_path: Path) -> None:
    # behind a proxy that serves the app at /qa and strips the prefix, the page's relative URLs
    # must still reach the server
    settings = with_serve(runtime.settings, root_path="/qa")
    with AppServer(create_app(settings, runtime)) as s, PrefixProxy(s.port, "/qa") as proxy:
        assert httpx.get(f"{proxy.url}/page/nanyue/3.png", timeout=60).status_code == 200
        page.goto(f"{proxy.url}/")
        _ask(page, BOOKS[0])
        _open_first_citation_and_check_page(page, tmp_path)
