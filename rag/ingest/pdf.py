"""PDF loading: reading order, reflow, printed page labels, and OCR of scanned pages.

Each page is read from its character positions with pypdfium2 (faster and, on the CID fonts
of Chinese magazines, more exact than pdfplumber; see the module ``layout``): columns in order,
full-width titles, captions and tables in place, wrapped lines joined into paragraphs, running
headers, footers and page numbers removed. A page without a text layer but with an image (a
scan) is read by OCR (``ocr``), and its lines go through the same reflow.

Page labels, in order of trust: the PDF's own ``/PageLabels`` (what a viewer shows); else the
page number printed in the header/footer (the most common printed-minus-physical offset wins,
so a stray figure is ignored); pages outside the numbered run are named the way the issue
itself names them: 封面 (first page), 封二 (second), 目录 and 大事记 by their headings, 封三 and
封底 at the back. Without any printed number the label is the physical page number.

Pages are joined with form feeds, so the text loader's structure detection (the 目录, titles,
bylines, continuations) gives the PDF the same articles as a text export of the issue; every
segment lies on one page (``exact``), with its label and its 0-based physical page.
"""

from __future__ import annotations

import bisect
import ctypes
import dataclasses
import re
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from rag.errors import IngestError
from rag.types import Article, Document, Segment

from .layout import (
    Frag,
    Glyph,
    PageLayout,
    Rule,
    fragments,
    glyph_gutter,
    header_section,
    join_lines,
    page_text,
    split_margins,
    tables,
)
from .text import (
    _CHRONICLE,
    _TOC_HEAD,
    Draft,
    PageSpan,
    describe,
    finish,
    is_folio_line,
    line_at,
    locate_titles,
    norm_title,
    parse_toc,
    split_lines,
    structure,
)

Progress = Callable[[int, int], None]


@dataclass
class RawPage:
    """What one PDF page holds before layout: glyphs, rules, whether it has images, its size."""

    width: float
    height: float
    frags: list[Frag]
    has_image: bool
    ocr_score: float | None = None  # mean OCR confidence, for scanned pages


# ---------------------------------------------------------------------------------------------
# Reading a page with pypdfium2
# ---------------------------------------------------------------------------------------------


def _glyphs(page, height: float) -> list[Glyph]:  # noqa: ANN001 - pypdfium2.PdfPage
    import pypdfium2.raw as pdfium_c

    tp = page.get_textpage()
    try:
        n = tp.count_chars()
        if n <= 0:
            return []
        text = tp.get_text_range(0, n)
        out: list[Glyph] = []
        matrix = pdfium_c.FS_MATRIX()
        if len(text) != n:  # surrogate pairs or generated chars shift indices: go one by one
            chars = [tp.get_text_range(i, 1) for i in range(n)]
        else:
            chars = list(text)
        for i, ch in enumerate(chars):
            # spaces of the text layer are kept (STSong's space is only 0.2 em wide, too narrow
            # to infer from the gap); line ends and spaces pdfium made up are not
            if ch in "\r\n\x00" or pdfium_c.FPDFText_IsGenerated(tp.raw, i) == 1:
                continue
            if ch in "\ufffe\x02\u00ad":  # pdfium reports a line-end hyphen as a soft hyphen
                ch = "-"
            left, bottom, right, top = tp.get_charbox(i, loose=True)
            # the type size is the font size times the text matrix's scale: many layout
            # programs set ``1 Tf`` and scale with ``Tm``
            size = float(pdfium_c.FPDFText_GetFontSize(tp.raw, i))
            if pdfium_c.FPDFText_GetMatrix(tp.raw, i, matrix):
                size *= abs(matrix.a * matrix.d - matrix.b * matrix.c) ** 0.5 or 1.0
            if size <= 0:
                size = (top - bottom) / 1.1
            out.append(Glyph(ch, left, height - top, right, height - bottom, size))
        return out
    finally:
        tp.close()


def _rules_and_images(page, height: float) -> tuple[list[Rule], bool]:  # noqa: ANN001
    """Stroked straight path segments (table rules) and whether the page shows an image."""
    import pypdfium2.raw as pdfium_c

    rules: list[Rule] = []
    has_image = False
    for obj in page.get_objects(filter=(pdfium_c.FPDF_PAGEOBJ_PATH, pdfium_c.FPDF_PAGEOBJ_IMAGE)):
        if obj.type == pdfium_c.FPDF_PAGEOBJ_IMAGE:
            has_image = True
            continue
        fill, stroke = ctypes.c_int(), ctypes.c_int()
        pdfium_c.FPDFPath_GetDrawMode(obj.raw, fill, stroke)
        if not stroke.value:
            continue  # filled shapes (photo placeholders, backgrounds) are no rules
        m = obj.get_matrix()
        pts: list[tuple[int, float, float]] = []
        x, y = ctypes.c_float(), ctypes.c_float()
        for k in range(pdfium_c.FPDFPath_CountSegments(obj.raw)):
            seg = pdfium_c.FPDFPath_GetPathSegment(obj.raw, k)
            pdfium_c.FPDFPathSegment_GetPoint(seg, x, y)
            px = m.a * x.value + m.c * y.value + m.e
            py = m.b * x.value + m.d * y.value + m.f
            pts.append((pdfium_c.FPDFPathSegment_GetType(seg), px, height - py))
        for (_, x0, y0), (t1, x1, y1) in zip(pts, pts[1:], strict=False):
            if t1 == pdfium_c.FPDF_SEGMENT_LINETO and (abs(x0 - x1) < 1 or abs(y0 - y1) < 1):
                rules.append(Rule(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)))
    return rules, has_image


def _read_page(page) -> RawPage:  # noqa: ANN001
    width, height = page.get_size()
    glyphs = _glyphs(page, height)
    rules, has_image = _rules_and_images(page, height)
    found = tables(rules, glyphs) if rules else []
    inside: set[int] = set().union(*(idx for _, idx in found)) if found else set()
    rest = [g for k, g in enumerate(glyphs) if k not in inside]
    frags = fragments(rest, glyph_gutter(rest, width))
    frags.extend(t for t, _ in found)
    return RawPage(width, height, frags, has_image)


def _pdf_labels(pdf) -> list[str] | None:  # noqa: ANN001 - pypdfium2.PdfDocument
    """The PDF's own /PageLabels, or None when it has none (or they are incomplete)."""
    import pypdfium2.raw as pdfium_c

    labels: list[str] = []
    for i in range(len(pdf)):
        n = pdfium_c.FPDF_GetPageLabel(pdf.raw, i, None, 0)
        if n <= 2:
            return None
        buf = ctypes.create_string_buffer(n)
        pdfium_c.FPDF_GetPageLabel(pdf.raw, i, buf, n)
        label = buf.raw[: n - 2].decode("utf-16-le", errors="replace").strip()
        if not label:
            return None
        labels.append(label)
    return labels


# ---------------------------------------------------------------------------------------------
# Printed labels
# ---------------------------------------------------------------------------------------------

_FOLIO_NUM = re.compile(r"(\d{1,4})")
# a page number at either end of a running header/footer: ``12 | 广东工运``, ``广东工运 · 12``
_EDGE_NUM = re.compile(
    r"^\s*(?:P\s?)?(\d{1,3})(?:\s*[|｜·•]|\s+(?=[^\d\s]))|(?:[|｜·•]\s*|\s)(?:P\s?)?(\d{1,3})\s*$"
)


def folio(text: str) -> int | None:
    """The page number a header/footer line prints, if any."""
    if is_folio_line(text):
        m = _FOLIO_NUM.search(text)
        return int(m.group(1)) if m else None
    m = _EDGE_NUM.search(text)
    return int(m.group(1) or m.group(2)) if m else None


def printed_labels(margins: Sequence[Sequence[Frag]], texts: Sequence[str]) -> list[str]:
    """Labels from page numbers printed in the margins; unnumbered pages named as the issue does.

    Args:
        margins: per page, its header/footer lines (page numbers among them).
        texts: per page, its reflowed body text (to recognise a 目录 or 大事记 page).
    """
    n = len(texts)
    cands: dict[int, int] = {}
    for i, frs in enumerate(margins):
        # bare numbers first: a header's "2025.12" must not shadow the footer's "07"
        for f in sorted(frs, key=lambda f: not is_folio_line(f.text)):
            num = folio(f.text)
            if num is not None:
                cands[i] = num
                break
    if not cands:
        return [str(i + 1) for i in range(n)]
    offset, _ = Counter(num - i for i, num in cands.items()).most_common(1)[0]
    agreeing = sorted(i for i, num in cands.items() if num - i == offset)
    first, last = agreeing[0], agreeing[-1]
    labels: list[str] = []
    for i in range(n):
        if i < first:
            labels.append(str(i + offset) if i + offset >= 1 else _front_name(i, texts[i]))
        elif i <= last:
            labels.append(str(i + offset))
        else:
            labels.append(_back_name(i, n, texts[i]))
    return labels


def toc_labels(texts: Sequence[str]) -> list[str] | None:
    """Labels for a PDF without printed page numbers, from its own 目录.

    Each 目录 entry whose title is found in the body says which printed page that physical page
    is; the offset most entries agree on (at least two, and half of them) numbers the pages,
    and the pages before page 1 (and the last page, behind them) are named as covers.
    """
    text = _PAGE_BREAK.join(texts)
    starts, pos = [], 0
    for t in texts:
        starts.append(pos)
        pos += len(t) + len(_PAGE_BREAK)
    lines = split_lines(text)
    toc = parse_toc(lines)
    if toc is None:
        return None
    locate_titles(lines, toc.entries, toc.end_line)
    votes = Counter(
        e.page - (bisect.bisect_right(starts, lines[e.found[0]].start) - 1)
        for e in toc.entries
        if e.role != "section" and e.found
    )
    if not votes:
        return None
    offset, n = votes.most_common(1)[0]
    if n < 2 or n < sum(votes.values()) / 2:
        return None
    labels = [str(i + offset) if i + offset >= 1 else _front_name(i, texts[i]) for i in range(len(texts))]
    if offset < 0 and len(texts) > 1:  # a magazine with covers in front has one at the back
        labels[-1] = "封底"
    return labels


def _heads(text: str) -> list[str]:
    return [ln.strip() for ln in text.split("\n") if ln.strip()][:6]


def _front_name(i: int, text: str) -> str:
    heads = _heads(text)
    if any(_TOC_HEAD.match(h) for h in heads) or any(_TOC_HEAD.match(ln) for ln in text.split("\n")):
        return "目录"
    if any(_CHRONICLE.match(h) for h in heads[:2]):
        return "大事记"
    if i == 0:
        return "封面"
    if i == 1:
        return "封二"
    return f"前{i + 1}"


def _back_name(i: int, n: int, text: str) -> str:
    if i == n - 1:
        return "封底"
    if i == n - 2:
        return "封三"
    return f"后{n - i}"


# ---------------------------------------------------------------------------------------------
# The loader
# ---------------------------------------------------------------------------------------------


def _open(path: Path, raw: bytes):  # noqa: ANN202 - pypdfium2.PdfDocument
    import pypdfium2 as pdfium

    try:
        return pdfium.PdfDocument(raw)
    except pdfium.PdfiumError as e:
        msg = str(e)
        if "password" in msg.lower():
            raise IngestError(
                f"{path}: the PDF is password-protected; save an unencrypted copy "
                "(e.g. print it to PDF) and add that instead"
            ) from e
        detail = " ".join(msg.split())[:200]
        raise IngestError(
            f"{path}: cannot read the PDF ({detail}); the file looks damaged, re-export or re-download it"
        ) from e


def load_pdf(
    path: Path,
    raw: bytes,
    doc_id: str,
    content_hash: str,
    ocr_progress: Progress | None = None,
) -> Document:
    """Load a PDF: reflowed pages with printed labels, articles as for a text issue.

    Args:
        ocr_progress: called with (pages done, pages to OCR) while scanned pages are read;
            by default a progress bar on stderr (shown only on a terminal).

    Raises:
        IngestError: encrypted (password-protected), corrupt, or text-less PDFs.
    """
    pdf = _open(path, raw)
    try:
        if len(pdf) == 0:
            raise IngestError(f"{path}: the PDF has no pages; re-export it")
        pages: list[RawPage] = []
        try:
            for i in range(len(pdf)):
                page = pdf[i]
                try:
                    pages.append(_read_page(page))
                finally:
                    page.close()
        except IngestError:
            raise
        except Exception as e:  # noqa: BLE001 - pdfium reports damage in many shapes
            detail = " ".join(str(e).split())[:200]
            raise IngestError(
                f"{path}: cannot read the PDF ({type(e).__name__}: {detail}); the file looks damaged, "
                "re-export or re-download it"
            ) from e
        scans = [i for i, p in enumerate(pages) if not p.frags and p.has_image]
        if scans:
            from .ocr import ocr_pages

            ocr_pages(pdf, pages, scans, path.name, ocr_progress)
        own_labels = _pdf_labels(pdf)
    finally:
        pdf.close()
    if not any(p.frags for p in pages):
        raise IngestError(
            f"{path}: the PDF has no text: no text layer, and no scanned page that OCR could read; "
            "check it is the right file"
        )
    return _document(path, doc_id, content_hash, pages, own_labels)


def _document(
    path: Path, doc_id: str, content_hash: str, pages: Sequence[RawPage], own_labels: list[str] | None
) -> Document:
    layouts: list[PageLayout] = split_margins([p.frags for p in pages], [p.height for p in pages])
    # form feeds inside extracted text would be read as page breaks later on
    texts = [page_text(lay.body, p.width).replace("\f", "\n") for lay, p in zip(layouts, pages, strict=True)]
    printed = printed_labels([lay.margins for lay in layouts], texts)
    counting = [str(i + 1) for i in range(len(pages))]
    if printed == counting:  # no page numbers printed (or drawn as outlines): ask the 目录
        printed = toc_labels(texts) or printed
    # many exporters write /PageLabels that only count pages (1..N); the printed numbers say more
    labels = own_labels if own_labels and (own_labels != counting or printed == counting) else printed
    # a page break reads like a gap of blank lines (what ends a 目录 block or a cover)
    text = _PAGE_BREAK.join(texts)
    spans: list[PageSpan] = []
    pos = 0
    for t, label in zip(texts, labels, strict=True):
        spans.append(PageSpan(pos, pos + len(t), label))
        pos += len(t) + len(_PAGE_BREAK)
    # back covers (封三, 封底) are known from their labels: set them apart before the article
    # detection, which would otherwise read them as the tail of the last article
    n_body = len(spans)
    while n_body > 1 and spans[n_body - 1].label in _BACK:
        n_body -= 1
    body_end = spans[n_body - 1].end
    title, articles, used_toc = structure(text[:body_end], spans[:n_body], path.stem)
    if not used_toc and sum(1 for a in articles if a.kind == "article") <= 1:
        by_size = articles_by_title_size(text[:body_end], spans[:n_body], [lay.body for lay in layouts[:n_body]])
        articles = by_size or articles
    back = [
        Article(title=sp.label, segments=(Segment(*_trimmed(text, sp.start, sp.end), (sp.label,), True),), kind="back")
        for sp in spans[n_body:]
        if text[sp.start : sp.end].strip()
    ]
    articles = (*articles, *back)
    sections = [header_section(lay.margins) for lay in layouts]
    starts = [s.start for s in spans]
    fixed: list[Article] = []
    for art in articles:
        segs = tuple(
            dataclasses.replace(s, physical=bisect.bisect_right(starts, s.start) - 1) for s in art.segments
        )
        section = art.section
        if section is None and art.kind == "article" and segs[0].physical is not None:
            section = sections[segs[0].physical]
        fixed.append(dataclasses.replace(art, segments=segs, section=section))
    warnings = tuple(
        f"物理第{i + 1}页（{labels[i]}）OCR 置信度低（{p.ocr_score:.2f}），请核对原件或换更清晰的扫描件"
        for i, p in enumerate(pages)
        if p.ocr_score is not None and p.ocr_score < LOW_OCR_CONFIDENCE
    )
    return Document(
        doc_id=doc_id,
        title=title,
        path=str(path),
        text=text,
        articles=tuple(fixed),
        content_hash=content_hash,
        loader="pdf",
        warnings=warnings,
    )


_PAGE_BREAK = "\n\n\f"
_BACK = ("封三", "封底")


def articles_by_title_size(
    text: str, spans: Sequence[PageSpan], bodies: Sequence[Sequence[Frag]]
) -> tuple[Article, ...] | None:
    """Articles of a PDF without a 目录 or bylines: a line set at least 1.45× the body size
    starts one (titles are the largest type on a magazine page). None with fewer than two."""
    sizes = sorted(f.size for body in bodies for f in body if f.table is None)
    if not sizes:
        return None
    body_size = sizes[len(sizes) // 2]
    starts: list[tuple[int, str]] = []
    for span, body in zip(spans, bodies, strict=True):
        big = sorted((f for f in body if f.table is None and f.size >= 1.45 * body_size), key=lambda f: f.top)
        pos = span.start
        k = 0
        while k < len(big):
            title = big[k].text.strip()
            # a title set on two lines: tight lines of the same size
            while k + 1 < len(big) and big[k + 1].top - big[k].bottom < big[k].size and big[k + 1].size == big[k].size:
                k += 1
                title = join_lines(title, big[k].text.strip())
            k += 1
            at = text.find(title, pos, span.end)
            if len(norm_title(title)) >= 4 and at >= 0:
                starts.append((at, title))
                pos = at + len(title)
    if len(starts) < 2:
        return None
    lines = split_lines(text)
    drafts: list[Draft] = []
    if text[: starts[0][0]].strip():
        drafts.append(Draft("前言", 0, starts[0][0], "front"))
    for k, (at, title) in enumerate(starts):
        end = starts[k + 1][0] if k + 1 < len(starts) else len(text)
        d = Draft(title, at, end)
        describe(d, text, lines, line_at(lines, at), line_at(lines, max(at, end - 1)) + 1)
        drafts.append(d)
    return finish(text, drafts, spans)


def _trimmed(text: str, a: int, b: int) -> tuple[int, int]:
    while a < b and text[a].isspace():
        a += 1
    while b > a and text[b - 1].isspace():
        b -= 1
    return a, b


# A scanned page whose mean line confidence is below this is flagged in `rag index status`.
LOW_OCR_CONFIDENCE = 0.85


def _stderr_progress(name: str) -> Progress:
    from tqdm import tqdm

    bar = tqdm(desc=f"OCR {name}", unit="页", file=sys.stderr, disable=None, leave=False)

    def update(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()
        if done >= total:
            bar.close()

    return update
