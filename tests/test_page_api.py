"""The page viewer over real HTTP on loopback: /api/ask citations of a PDF carry the page's
image and download URLs (None for text sources), the URLs serve a PNG with the quote marked and
a one-page PDF, bad documents/pages/quotes get JSON errors, and access control covers the routes
(bearer token for /api/page, the page login for the chat page's /page)."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator

import httpx
import pytest
from serving import AppServer, with_serve
from viewer_pdf import BOOKS, COVERAGE, MD_QUESTION, pdf_runtime

from rag.serve import create_app

pytest.importorskip("pypdfium2")

TOKEN = "tok-page-viewer-5d1c"
USER, PASSWORD = "gonghui", "pw-page#1"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
BASIC = {"Authorization": "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}


@pytest.fixture(scope="module")
def runtime(tmp_path_factory, embedder, magazine_settings):
    return pdf_runtime(tmp_path_factory.mktemp("page-api"), embedder, magazine_settings)


@pytest.fixture(scope="module")
def open_server(runtime) -> Iterator[AppServer]:
    with AppServer(create_app(runtime.settings, runtime)) as s:
        yield s


@pytest.fixture(scope="module")
def locked_server(runtime) -> Iterator[AppServer]:
    settings = with_serve(runtime.settings, api_token=TOKEN, ui_user=USER, ui_password=PASSWORD)
    with AppServer(create_app(settings, runtime)) as s:
        yield s


def _ask(url: str, question: str, headers: dict[str, str] | None = None) -> dict:
    r = httpx.post(f"{url}/api/ask", json={"question": question}, headers=headers, timeout=120)
    assert r.status_code == 200, r.text
    return r.json()


@pytest.mark.parametrize("case", [COVERAGE, BOOKS], ids=["page-1", "page-2"])
def test_pdf_citation_names_its_page_and_serves_it_marked(open_server: AppServer, case) -> None:
    question, sentence, physical, label = case
    answer = _ask(open_server.url, question)
    first = answer["citations"][0]
    # The loader reflows wrapped lines, so a sentence that a page break cuts ("…服务内容方面，新 /
    # 建的职工书屋…") is quoted whole: it names both pages and opens on the page where it starts.
    quote = first["quote"].replace("\n", "")
    assert sentence in quote or quote in sentence
    assert label in first["pages"] and first["doc_id"] == "nanyue"
    physical = first["page_index"] if first["page_index"] in (physical - 1, physical) else physical
    assert first["page_image_url"].startswith(f"/api/page/nanyue/{physical}.png?quote=")
    assert first["page_pdf_url"] == f"/api/page/nanyue/{physical}.pdf"

    png = httpx.get(open_server.url + first["page_image_url"], timeout=60)
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png.content.startswith(b"\x89PNG") and png.headers["x-quote-match"] == "full"
    assert "private" in png.headers["cache-control"]

    pdf = httpx.get(open_server.url + first["page_pdf_url"], timeout=60)
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    assert "attachment" in pdf.headers["content-disposition"]
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(pdf.content))
    assert len(reader.pages) == 1 and quote[:6] in reader.pages[0].extract_text().replace("\n", "")


def test_text_source_citation_has_no_page_image(open_server: AppServer) -> None:
    answer = _ask(open_server.url, MD_QUESTION)
    first = answer["citations"][0]
    assert first["doc_id"] == "note" and first["page_index"] is None
    assert first["page_image_url"] is None and first["page_pdf_url"] is None


def test_openai_route_citations_carry_page_urls(open_server: AppServer) -> None:
    body = {"model": "gongyun-rag", "messages": [{"role": "user", "content": BOOKS[0]}]}
    r = httpx.post(f"{open_server.url}/v1/chat/completions", json=body, timeout=120)
    assert r.status_code == 200
    assert r.json()["citations"][0]["page_image_url"].startswith("/api/page/nanyue/3.png")


@pytest.mark.parametrize(
    "path",
    [
        "/api/page/nope/0.png",  # not in the index
        "/api/page/note/0.png",  # a Markdown source has no printed page image
        "/api/page/nanyue/5.png",  # past the last page
        "/api/page/nanyue/99999999999999999999.pdf",
        "/api/page/nanyue/-1.png",  # not a page number at all
        "/api/page/nanyue/x.png",
        "/api/page/..%2F..%2Fetc%2Fpasswd/0.png",
        "/api/page/%2E%2E/0.pdf",
        "/page/nope/0.png",
    ],
)
def test_bad_document_or_page_is_404_json(open_server: AppServer, path: str) -> None:
    r = httpx.get(open_server.url + path, timeout=60)
    assert r.status_code == 404, (path, r.status_code, r.text[:200])
    assert r.headers["content-type"].startswith("application/json")
    assert r.json()["error"]["message"]


def test_overlong_quote_is_refused(open_server: AppServer) -> None:
    r = httpx.get(f"{open_server.url}/api/page/nanyue/3.png", params={"quote": "字" * 401}, timeout=60)
    assert r.status_code == 422 and r.json()["error"]["type"] == "invalid_request"
    ok = httpx.get(f"{open_server.url}/api/page/nanyue/3.png", params={"quote": "不在页上的话"}, timeout=60)
    assert ok.status_code == 200 and ok.headers["x-quote-match"] == "none"


def test_page_routes_are_behind_the_same_access_control(locked_server: AppServer) -> None:
    url = locked_server.url
    answer = _ask(url, BOOKS[0], headers=BEARER)
    image = answer["citations"][0]["page_image_url"]
    ui_image = image.removeprefix("/api")
    for path in (image, answer["citations"][0]["page_pdf_url"]):
        assert httpx.get(url + path, timeout=60).status_code == 401
        assert httpx.get(url + path, headers=BASIC, timeout=60).status_code == 401  # the page login is not the API token
        assert httpx.get(url + path, headers=BEARER, timeout=60).status_code == 200
    # the chat page's copy of the route asks for the page login
    assert httpx.get(url + ui_image, timeout=60).status_code == 401
    assert httpx.get(url + ui_image, headers=BEARER, timeout=60).status_code == 401
    r = httpx.get(url + ui_image, headers=BASIC, timeout=60)
    assert r.status_code == 200 and r.headers["x-quote-match"] == "full"
    # unknown documents are not revealed before the credentials are checked
    assert httpx.get(url + "/api/page/nope/0.png", timeout=60).status_code == 401


def test_page_urls_carry_the_root_path(runtime) -> None:
    # served at /qa (the proxy keeps the prefix): the URLs in the answer must work as given
    settings = with_serve(runtime.settings, root_path="/qa")
    with AppServer(create_app(settings, runtime)) as s:
        first = _ask(f"{s.url}/qa", BOOKS[0])["citations"][0]
        assert first["page_image_url"].startswith("/qa/api/page/nanyue/3.png?quote=")
        r = httpx.get(s.url + first["page_image_url"], timeout=60)
        assert r.status_code == 200 and r.headers["x-quote-match"] == "full"
