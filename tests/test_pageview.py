"""The page beside the answer, without a server: a citation names the page its own sentence was
printed on; a quote is found among the page's characters across line wraps; the rendered page
marks it, is cached per index generation, and refuses unknown documents and pages."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import re
from pathlib import Path

import pytest
from viewer_pdf import BOOKS, COVERAGE, build_pdf

from rag.answer.citations import make_citation
from rag.chunk import chunk_document
from rag.config import ChunkSettings
from rag.errors import NotFoundError
from rag.ingest import load_document
from rag.pageview import PageViewer, find_quote, line_boxes, page_urls
from rag.types import Chunk

pytest.importorskip("pypdfium2")


@pytest.fixture(scope="module")
def pdf_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("viewer") / "nanyue.pdf"
    path.write_bytes(build_pdf())
    return path


@pytest.fixture(scope="module")
def chunks(pdf_path: Path) -> list[Chunk]:
    return chunk_document(load_document(pdf_path), ChunkSettings())


def _manifest(path: Path, doc_id: str = "nanyue") -> dict:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return {"documents": {doc_id: {"title": "南粤职工", "source": str(path), "loader": "pdf", "content_hash": digest}}}


def _holding(chunks: list[Chunk], text: str) -> Chunk:
    return next(c for c in chunks if c.kind == "body" and text in c.text.replace("\n", ""))


# --- citations name the quote's own page -----------------------------------------------------------


def test_chunks_of_a_pdf_record_where_each_page_begins(chunks: list[Chunk]) -> None:
    both = _holding(chunks, "八百万元")
    # the sentence running over the page break keeps both pages in one chunk
    assert both.pages == ("1", "2") and both.physical == (2, 3)
    assert [(p, label) for _, p, label in both.page_starts] == [(2, "1"), (3, "2")]
    second = both.page_starts[1][0]
    assert both.text[second:].startswith("八百万元")
    for c in chunks:
        if c.kind == "body":
            assert c.page_starts and c.page_starts[0][0] == 0
            assert tuple(dict.fromkeys(p for _, p, _ in c.page_starts)) == c.physical
    # the fields survive the index's JSON round trip
    assert Chunk.from_dict(both.to_dict()) == both


def test_citation_names_the_page_of_its_sentence_not_the_chunk(chunks: list[Chunk]) -> None:
    chunk = _holding(chunks, "八百万元")
    for _, sentence, physical, label in (COVERAGE, BOOKS):
        # the quote is verbatim chunk text, line wraps included (as the answer layer gives it)
        quote = re.search("\n?".join(map(re.escape, sentence)), chunk.text).group(0)
        cit = make_citation(1, chunk, quote)
        assert (cit.pages, cit.page_index, cit.doc_id) == ((label,), physical, chunk.doc_id)
    # a quote running over the page break names both pages and shows the first
    over = make_citation(2, chunk, "各区总工会共投入专项经费八百万元用于场地改造。")
    assert over.pages == ("1", "2") and over.page_index == 2
    # ... unless the answer names the part that answers: its page is the one to open
    asked = make_citation(2, chunk, "各区总工会共投入专项经费八百万元用于场地改造。", focus="八百万元")
    assert asked.pages == ("2",) and asked.page_index == 3
    unseen = make_citation(2, chunk, "各区总工会共投入专项经费八百万元用于场地改造。", focus="九百万元")
    assert unseen.pages == ("1", "2") and unseen.page_index == 2


def test_citations_of_text_sources_keep_their_pages(chunks: list[Chunk]) -> None:
    text_chunk = dataclasses.replace(_holding(chunks, "八百万元"), physical=(), page_starts=())
    cit = make_citation(1, text_chunk, "职工开放。")
    assert cit.pages == ("1", "2") and cit.page_index is None
    meta = next(c for c in chunks if c.kind == "meta" and c.article == "职工之家建设的三个抓手")
    cit = make_citation(1, meta, meta.text)
    assert cit.pages == ("1", "2", "3") and cit.page_index == 2  # the article's first page


# --- finding a quote among a page's characters -----------------------------------------------------


def test_quote_found_across_line_wraps_spaces_and_hyphens() -> None:
    page = list("第一页讲阵地建设。全市新建职工之家１２０家，覆盖职\r\n工3.5万人。第二句 话在这里。co-\r\noperation")
    idx, match = find_quote(page, "全市新建职工之家120家，覆盖职工3.5万人。")
    assert match == "full"
    assert "".join(page[i] for i in idx).replace("\r\n", "") == "全市新建职工之家１２０家，覆盖职工3.5万人。"
    assert find_quote(page, "第二句话在这里。")[1] == "full"
    assert find_quote(page, "cooperation")[1] == "full"
    assert find_quote(page, "这句话不在页面上，也没有一个分句在。") == ([], "none")
    assert find_quote(page, "") == ([], "none")


def test_quote_partly_on_the_page_is_marked_as_far_as_it_goes() -> None:
    # the sentence runs on to the next page: what this page holds is marked, nothing else
    page = list("服务内容方面，新建的职工书屋配备图书四千六百册，全天向")
    idx, match = find_quote(page, "新建的职工书屋配备图书四千六百册，全天向职工开放。")
    assert match == "partial"
    assert "".join(page[i] for i in idx) == "新建的职工书屋配备图书四千六百册，全天向"


def test_quote_found_when_columns_are_stored_line_by_line() -> None:
    # a PDF that draws both columns' first lines, then both second lines...: the quote's lines
    # are not one run of characters, yet every one of its characters is on the page
    left = ["今年全市新建职工之家一百", "二十家，覆盖职工三万五千", "人。阵地建设方面投入经费"]
    right = ["经验启示方面，关键在于把", "服务送到一线，让职工找得", "到、用得上。下一步将推进"]
    page = list("\r\n".join(a + "  " + b for a, b in zip(left, right, strict=True)))
    idx, match = find_quote(page, "今年全市新建职工之家一百二十家，覆盖职工三万五千人。")
    assert match == "full"
    assert "".join(page[i] for i in idx) == "今年全市新建职工之家一百二十家，覆盖职工三万五千人。"


def test_line_boxes_merge_a_line_and_split_at_wraps() -> None:
    # two characters on one line, a generated line break without extent, one on the next line
    boxes = [(72, 750, 84, 762), (84, 750, 96, 762), (0, 0, 0, 0), (72, 728, 84, 740)]
    assert line_boxes(boxes, [0, 1, 2, 3]) == [(72, 750, 96, 762), (72, 728, 84, 740)]


def test_page_urls_escape_the_document_and_the_quote() -> None:
    urls = page_urls("南粤 职工/../x", 3, "引用？&句", "/qa/api")
    assert urls["page_image_url"].startswith("/qa/api/page/%E5%8D%97")
    assert "/../" not in urls["page_image_url"] and "&" not in urls["page_image_url"].split("?", 1)[1]
    assert urls["page_pdf_url"].endswith("/3.pdf")
    assert "quote=" not in page_urls("a", 0, None, "/api")["page_image_url"]


# --- rendering, marking, caching -------------------------------------------------------------------


class CountingViewer(PageViewer):
    """The real viewer, counting how often it asks PDFium to render."""

    renders = 0

    def _render(self, src, page_index):  # type: ignore[no-untyped-def]
        self.renders += 1
        return super()._render(src, page_index)


def _marked_pixels(png: bytes) -> int:
    from PIL import Image

    img = Image.open(io.BytesIO(png)).convert("RGB")
    return sum(1 for r, g, b in img.getdata() if r > 200 and g > 170 and b < 150)  # the yellow band


def test_page_rendered_with_the_quote_marked_and_cached(pdf_path: Path, tmp_path: Path) -> None:
    from PIL import Image

    viewer = CountingViewer()
    manifest, cache = _manifest(pdf_path), tmp_path / "gen-1" / "pages"
    plain, match = viewer.png(manifest, cache, "nanyue", 3, None)
    assert match == "none" and Image.open(io.BytesIO(plain)).size[0] == viewer.width
    marked, match = viewer.png(manifest, cache, "nanyue", 3, BOOKS[1])
    assert match == "full"
    assert _marked_pixels(plain) == 0 and _marked_pixels(marked) > 2000
    # the sentence on the other page is not on this one
    assert viewer.png(manifest, cache, "nanyue", 3, COVERAGE[1])[1] == "none"
    focused, match = viewer.png(manifest, cache, "nanyue", 3, BOOKS[1], focus=True)
    size = Image.open(io.BytesIO(focused)).size
    assert match == "full" and size[0] < viewer.width and size[1] < 400  # the lines around the mark
    assert _marked_pixels(focused) == pytest.approx(_marked_pixels(marked), rel=0.05)
    assert viewer.renders == 1  # one render, four requests: the mark is drawn per request
    assert sorted(p.suffix for p in cache.iterdir()) == [".json", ".png"]

    again = CountingViewer()  # a restarted server reads the cache of the same generation
    assert again.png(manifest, cache, "nanyue", 3, BOOKS[1])[1] == "full" and again.renders == 0
    again.png(manifest, tmp_path / "gen-2" / "pages", "nanyue", 3, BOOKS[1])
    assert again.renders == 1  # a new generation starts a new cache


def test_one_page_pdf_download(pdf_path: Path, tmp_path: Path) -> None:
    from pypdf import PdfReader

    data, name = PageViewer().pdf(_manifest(pdf_path), tmp_path, "nanyue", 3)
    reader = PdfReader(io.BytesIO(data))
    assert len(reader.pages) == 1 and "四千六百册" in reader.pages[0].extract_text()
    assert name == "nanyue-p4.pdf"


def test_unknown_document_page_or_changed_file_is_not_found(pdf_path: Path, tmp_path: Path) -> None:
    viewer = PageViewer()
    manifest = _manifest(pdf_path)
    for doc_id, page in (("nope", 0), ("../nanyue", 0), ("nanyue", 5), ("nanyue", -1)):
        with pytest.raises(NotFoundError):
            viewer.png(manifest, None, doc_id, page, None)
    note = {"title": "简讯", "source": str(tmp_path / "note.md"), "loader": "markdown", "content_hash": "x"}
    with pytest.raises(NotFoundError, match="不是 PDF"):
        viewer.png({"documents": {"note": note}}, None, "note", 0, None)
    moved = dict(manifest["documents"]["nanyue"], source=str(tmp_path / "gone.pdf"))
    with pytest.raises(NotFoundError, match="已不存在"):
        viewer.png({"documents": {"nanyue": moved}}, None, "nanyue", 0, None)
    changed = tmp_path / "changed.pdf"
    changed.write_bytes(build_pdf()[:-10] + b"%%EOF\n")
    edited = dict(manifest["documents"]["nanyue"], source=str(changed))
    with pytest.raises(NotFoundError, match="被修改"):
        viewer.png({"documents": {"nanyue": edited}}, None, "nanyue", 0, None)
