"""Markdown (``.md``) and Word (``.docx``) loading: headings make articles.

Articles start at the top heading level used more than once (a single top heading is the
document's title and its sub-headings are the articles). Pages: Markdown may carry page
markers (``--- 第 5 页 ---``); a .docx has its page breaks (explicit breaks, or the breaks Word
recorded when it last laid the document out) turned into form feeds. Without either, the
document is one unnumbered-range page ``1`` (``exact=False``). HTML in a document is kept as
plain text, never interpreted.
"""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path

from rag.errors import IngestError
from rag.types import Document

from .text import Draft, decode_text, describe, finish, line_at, marker_pages, split_lines, structure

_MD_HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.+?)[ \t]*#*[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(```|~~~)")


def _from_headings(
    text: str, headings: list[tuple[int, int, str]], fallback_title: str
) -> tuple[str, list[Draft]]:
    """(document title, drafts) from (offset, level, title) headings in reading order."""
    lines = split_lines(text)
    levels = sorted({lvl for _, lvl, _ in headings})
    top = levels[0]
    title = fallback_title
    level = top
    if sum(1 for _, lvl, _ in headings if lvl == top) == 1 and len(levels) > 1:
        title = next(t for _, lvl, t in headings if lvl == top)
        level = levels[1]
    starts = [(off, t) for off, lvl, t in headings if lvl == level]
    drafts: list[Draft] = []
    lead = text[: starts[0][0]]
    if title != fallback_title:
        lead = lead.replace(title, "", 1).lstrip("# \t\n\f")
    # a front article only when something besides the document's title precedes the articles
    if lead.strip():
        drafts.append(Draft(title if title != fallback_title else "前言", 0, starts[0][0], "front"))
    for k, (off, t) in enumerate(starts):
        end = starts[k + 1][0] if k + 1 < len(starts) else len(text)
        d = Draft(t, off, end)
        describe(d, text, lines, line_at(lines, off), line_at(lines, max(off, end - 1)) + 1)
        drafts.append(d)
    return title, drafts


def _document(
    path: Path, text: str, doc_id: str, content_hash: str, loader: str, headings: list[tuple[int, int, str]]
) -> Document:
    spans = marker_pages(text)
    if headings:
        title, drafts = _from_headings(text, headings, path.stem)
        articles = finish(text, drafts, spans)
    else:
        title, articles, _ = structure(text, spans, path.stem)
    return Document(
        doc_id=doc_id,
        title=title,
        path=str(path),
        text=text,
        articles=articles,
        content_hash=content_hash,
        loader=loader,
    )


def load_markdown(path: Path, raw: bytes, doc_id: str, content_hash: str) -> Document:
    """Load a Markdown file; ``#`` headings (outside code fences) start articles."""
    text = decode_text(raw, path)
    headings: list[tuple[int, int, str]] = []
    fenced = False
    for ln in split_lines(text):
        if _FENCE.match(ln.text):
            fenced = not fenced
            continue
        m = None if fenced else _MD_HEADING.match(ln.text)
        if m:
            headings.append((ln.start, len(m.group(1)), m.group(2).strip()))
    return _document(path, text, doc_id, content_hash, "markdown", headings)


# --- .docx -------------------------------------------------------------------------------------

_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"


def _heading_level(style_name: str) -> int | None:
    name = style_name.strip().lower()
    if name == "title" or name == "标题":
        return 0
    m = re.match(r"^(?:heading|标题)\s*(\d)$", name)
    return int(m.group(1)) if m else None


def _paragraph_text(p_el, rendered: bool) -> tuple[str, bool]:  # type: ignore[no-untyped-def]
    """Text of a w:p with page breaks as form feeds; also whether it starts a new page."""
    parts: list[str] = []
    before = False
    ppr = p_el.find(f"{_W}pPr")
    if ppr is not None and ppr.find(f"{_W}pageBreakBefore") is not None:
        before = True
    for el in p_el.iter():
        tag = el.tag
        if tag == f"{_W}t":
            parts.append(el.text or "")
        elif tag == f"{_W}tab":
            parts.append("\t")
        elif tag == f"{_W}br":
            is_page = el.get(f"{_W}type") == "page"
            if is_page and not rendered:
                parts.append("\f")
            elif not is_page:
                parts.append("\n")
        elif tag == f"{_W}lastRenderedPageBreak" and rendered:
            parts.append("\f")
    return "".join(parts), before


def load_docx(path: Path, raw: bytes, doc_id: str, content_hash: str) -> Document:
    """Load a .docx; Heading/标题 styles start articles, tables become tab-separated rows."""
    try:
        import docx  # python-docx
        from docx.opc.exceptions import PackageNotFoundError
    except ImportError as e:  # pragma: no cover - it is a declared dependency
        raise IngestError(f"{path}: python-docx is not installed; pip install python-docx") from e
    try:
        d = docx.Document(io.BytesIO(raw))
    except (PackageNotFoundError, zipfile.BadZipFile, KeyError, ValueError) as e:
        raise IngestError(
            f"{path}: cannot open the Word file ({type(e).__name__}); it may be damaged or an old "
            ".doc renamed to .docx — re-save it as .docx"
        ) from e
    body = d.element.body
    # Word records where it last broke pages; when present those are the real pages.
    rendered = any(True for _ in body.iter(f"{_W}lastRenderedPageBreak"))
    styles = {s.style_id: s.name for s in d.styles if getattr(s, "style_id", None)}
    pieces: list[str] = []
    headings: list[tuple[int, int, str]] = []
    pos = 0

    def add(s: str, sep: str = "\n\n") -> None:
        nonlocal pos
        if pieces:
            pieces.append(sep)
            pos += len(sep)
        pieces.append(s)
        pos += len(s)

    for child in body.iterchildren():
        if child.tag == f"{_W}p":
            txt, before = _paragraph_text(child, rendered)
            if before and pieces and not rendered:
                pieces.append("\f")
                pos += 1
            style_id = None
            ppr = child.find(f"{_W}pPr")
            if ppr is not None:
                ps = ppr.find(f"{_W}pStyle")
                if ps is not None:
                    style_id = ps.get(f"{_W}val")
            level = _heading_level(styles.get(style_id or "", "") or (style_id or ""))
            if not txt.strip():
                if "\f" in txt:
                    pieces.append("\f")
                    pos += 1
                continue
            add(txt)
            if level is not None:
                # the heading's offset is where its visible text starts
                lead = len(txt) - len(txt.lstrip("\f\n \t"))
                headings.append((pos - len(txt) + lead, level, txt.strip("\f\n \t")))
        elif child.tag == f"{_W}tbl":
            rows = []
            for tr in child.iter(f"{_W}tr"):
                cells = []
                for tc in tr.iter(f"{_W}tc"):
                    cells.append(
                        " ".join(
                            _paragraph_text(p, rendered)[0].replace("\f", " ").strip()
                            for p in tc.iter(f"{_W}p")
                        ).strip()
                    )
                rows.append("\t".join(cells))
            if rows:
                add("\n".join(rows))
    text = "".join(pieces)
    if not text.strip():
        raise IngestError(f"{path}: the Word file has no text; add content or remove it from the folder")
    return _document(path, text, doc_id, content_hash, "docx", headings)
