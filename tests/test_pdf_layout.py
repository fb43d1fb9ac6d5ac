"""PDF layout: reading order, reflow, articles, printed labels and OCR on realistically printed issues.

The issue of ``tests/pdf_builder.py`` is printed by the eval renderer (A4, two columns, running
header, footer numbers, unnumbered covers, a gridded table, an article continued on an earlier
page), with and without /PageLabels; the renderer records what it printed on every page, which
is what the loader is checked against. The OCR test rasterises two pages (a scan) and needs a
CJK system font for pdfium to draw STSong-Light (``fonts-arphic-uming``).
"""

from __future__ import annotations

import difflib
import re
import shutil
import subprocess
import unicodedata
from pathlib import Path

import pytest
from pdf_builder import render_issue, write_issue

from rag.chunk import chunk_document
from rag.config import ChunkSettings
from rag.ingest import load_document
from rag.ingest.layout import Frag, join_lines
from rag.ingest.pdf import RawPage, _document, load_pdf
from rag.ingest.text import norm_title
from rag.types import Document

_STOPS = "。！？；…”」）)：:"


def _norm(s: str) -> str:
    return "".join(unicodedata.normalize("NFKC", s).split())


@pytest.fixture(scope="module")
def issue(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("pdf-issue")
    txt = write_issue(root)
    plain, truth = render_issue(txt, root / "plain.pdf")
    labelled, truth_l = render_issue(txt, root / "labelled.pdf", page_labels=True)
    alt, truth_alt = render_issue(txt, root / "alt.pdf", style="alt")
    bare, _ = render_issue(txt, root / "bare.pdf", style="bare")  # no page numbers printed at all
    return {
        "bare": load_document(bare),
        "alt": load_document(alt),
        "truth_alt": truth_alt,
        "txt": txt,
        "text_doc": load_document(txt),
        "plain": load_document(plain),
        "labelled": load_document(labelled),
        "truth": truth,
        "truth_labelled": truth_l,
        "root": root,
    }


@pytest.mark.parametrize("variant", ["plain", "labelled", "alt", "bare"])
def test_every_segment_lies_on_the_page_it_was_printed_on(issue: dict, variant: str) -> None:
    doc: Document = issue[variant]
    truth = issue["truth_alt" if variant == "alt" else "truth"]
    printed = [_norm("".join(p["lines"])) for p in truth]
    n = 0
    for art in doc.articles:
        for seg in art.segments:
            assert seg.exact and seg.physical is not None and len(seg.pages) == 1
            assert seg.pages[0] == truth[seg.physical]["label"], (art.title, seg)
            assert _norm(doc.text[seg.start : seg.end]) in printed[seg.physical], (art.title, seg.pages)
            n += 1
    assert n >= 10
    # every printed body character is in some segment (nothing dropped but headers/footers)
    covered = "".join(_norm(doc.text[s.start : s.end]) for a in doc.articles for s in a.segments)
    assert len(covered) >= 0.99 * sum(len(p) for p in printed)


@pytest.mark.parametrize("variant", ["plain", "labelled", "alt", "bare"])
def test_labels_name_covers_and_printed_numbers(issue: dict, variant: str) -> None:
    doc: Document = issue[variant]
    truth = issue["truth_alt" if variant == "alt" else "truth"]
    labels = [p["label"] for p in truth]
    assert labels[:4] == ["封面", "封二", "大事记", "目录"] and labels[-1] == "封底"
    # every page with text is labelled as printed (page 3 is a full-page photo, no text)
    assert set(doc.pages) == {lab for lab, p in zip(labels, truth, strict=True) if p["lines"]}
    assert doc.loader == "pdf"


def test_articles_authors_and_pages_match_the_text_version(issue: dict) -> None:
    ref = {a.title: a for a in issue["text_doc"].articles}
    for variant in ("plain", "labelled", "alt", "bare"):
        doc: Document = issue[variant]
        assert doc.title == issue["text_doc"].title
        assert [a.title for a in doc.articles] == list(ref)
        for art in doc.articles:
            r = ref[art.title]
            assert (art.kind, art.author, art.unit, art.section, art.parent) == (
                r.kind, r.author, r.unit, r.section, r.parent
            ), art.title
            # the text version only knows ranges from the 目录; the PDF knows the exact pages
            assert set(art.pages) <= set(r.pages) and art.pages[0] == r.pages[0], (art.title, art.pages, r.pages)
        cont = next(a for a in doc.articles if a.title == "职工书屋建设的新探索")
        assert cont.pages == ("7", "5")  # （下转第5页）: continued on page 5


def _source_lines(txt: Path) -> set[str]:
    return {_norm(s) for s in txt.read_text(encoding="utf-8").split("\n") if s.strip()}


@pytest.mark.parametrize("variant", ["plain", "alt"])
def test_no_chunk_breaks_a_sentence_or_holds_a_header_or_footer(issue: dict, variant: str) -> None:
    doc: Document = issue[variant]
    source = _source_lines(issue["txt"])
    chunks = chunk_document(doc, ChunkSettings(size=300, overlap=0))
    assert chunks
    for c in chunks:
        assert "南粤工运 2026.03" not in c.text and "· 调研" not in c.text and "· 案例" not in c.text
        lines = c.text.split("\n")
        for ln in lines:
            assert not re.fullmatch(r"\s*\d{1,3}\s*", ln), (c.chunk_id, ln)
        if c.kind == "table":
            continue
        for ln in lines[:-1]:
            s = ln.strip()
            # a line ends a sentence, or is a whole line of the source (title, heading, byline)
            assert not s or s[-1] in _STOPS or _norm(s) in source, (c.chunk_id, s)
    # wrapped Latin text: words keep their spaces and hyphenated words are whole again
    text = " ".join(c.text for c in chunks)
    assert "internationalisation" in text and "collective bargaining arrangements" in text


def test_gridded_table_reads_as_tab_separated_rows_with_header(issue: dict) -> None:
    doc: Document = issue["plain"]
    assert "行业名称\t人才类型\t单位:元/月" in doc.text
    assert "电气机械制造业\t高技能人才\t8,997\t6,140\t5,038" in doc.text
    chunks = chunk_document(doc, ChunkSettings(size=300, overlap=0))
    table = next(c for c in chunks if c.kind == "table")
    assert "高位数" in table.text and table.pages == ("4",)


def test_join_lines_rules() -> None:
    assert join_lines("习", "近平") == "习近平"
    assert join_lines("collective", "bargaining") == "collective bargaining"
    assert join_lines("internation-", "alisation") == "internationalisation"
    assert join_lines("COVID-", "19") == "COVID- 19"  # not a hyphenated word: kept as printed
    assert join_lines("第2025", "年") == "第2025年"


def test_low_ocr_confidence_is_flagged_not_silent(tmp_path: Path) -> None:
    """A scanned page read with low confidence is indexed and reported in doc.warnings."""
    frag = Frag("模糊扫描页上的一行文字。", 60, 100, 300, 114, 12, score=0.5)
    pages = [RawPage(595, 842, [frag], True, ocr_score=0.5)]
    doc = _document(tmp_path / "scan.pdf", "scan", "0" * 64, pages, None)
    assert doc.warnings and "OCR" in doc.warnings[0] and "0.50" in doc.warnings[0]
    assert "模糊扫描页" in doc.text


def _cjk_font_installed() -> bool:
    if not shutil.which("fc-list"):
        return False
    out = subprocess.run(["fc-list", ":lang=zh"], capture_output=True, text=True, check=False).stdout
    return bool(out.strip())


@pytest.mark.skipif(not _cjk_font_installed(), reason="pdfium needs a CJK system font to draw the scan (apt install fonts-arphic-uming)")
def test_scanned_pages_are_read_by_ocr_with_their_labels(issue: dict, tmp_path: Path) -> None:
    # physical pages 4 and 7 (printed 1 and 4: a title page and the page with the table)
    pdf, truth = render_issue(issue["txt"], tmp_path / "scan.pdf", raster=(4, 7))
    seen: list[tuple[int, int]] = []
    doc = load_pdf(pdf, pdf.read_bytes(), "scan", "0" * 64, ocr_progress=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (2, 2)
    texts = doc.text.split("\n\n\f")
    for i in (4, 7):
        assert truth[i]["scanned"]
        got, want = _norm(texts[i]), _norm("".join(truth[i]["lines"]))
        sm = difflib.SequenceMatcher(None, got, want, autojunk=False)
        matched = sum(b.size for b in sm.get_matching_blocks())
        assert matched / len(want) >= 0.95 and matched / max(1, len(got)) >= 0.95, (i, matched / len(want))
        segs = [s for a in doc.articles for s in a.segments if s.physical == i]
        assert segs and all(s.pages == (truth[i]["label"],) for s in segs)
    # the article on the scanned title page is still found, with its author
    first = next(a for a in doc.articles if norm_title(a.title) == norm_title("推进职工服务阵地建设的实践与思考"))
    assert first.author == "陈一鸣 李晓华" and first.pages[0] == "1"


def _two_articles_by_size(path: Path) -> Path:
    """Two articles without a 目录 or bylines: only the type size says where each starts."""
    import io as _io

    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont
    from reportlab.pdfgen import canvas

    pdfmetrics.registerFont(UnicodeCIDFont("STSong-Light"))
    buf = _io.BytesIO()
    c = canvas.Canvas(buf)
    for title, body in (("职工疗休养工作综述", "今年全市安排一线职工疗休养三千人次。"), ("困难职工帮扶回顾", "全年发放帮扶资金两百万元。")):
        c.setFont("STSong-Light", 22)
        c.drawString(72, 740, title)
        c.setFont("STSong-Light", 11)
        for k in range(12):
            c.drawString(72, 700 - 18 * k, f"第{k + 1}段：{body}")
        c.showPage()
    c.save()
    path.write_bytes(buf.getvalue())
    return path


def test_titles_by_type_size_when_there_is_no_toc_or_byline(tmp_path: Path) -> None:
    doc = load_document(_two_articles_by_size(tmp_path / "report.pdf"))
    arts = [a for a in doc.articles if a.kind == "article"]
    assert [a.title for a in arts] == ["职工疗休养工作综述", "困难职工帮扶回顾"]
    assert [a.pages for a in arts] == [("1",), ("2",)]


def test_page_numbers_in_running_footers() -> None:
    from rag.ingest.pdf import folio

    assert [folio(t) for t in ("07", "- 7 -", "第7页", "07 | 广东工运", "广东工运 2025.12 · 调研 | 07")] == [7] * 5
    assert folio("广东工运 2025.12 · 调研") is None and folio("2025.12") is None
