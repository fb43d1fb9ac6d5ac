"""The printed page beside the answer: a cited PDF page as an image with the quoted sentence
marked, and the same page as a one-page PDF to download.

* The page is rendered once with pypdfium2 and cached, with its characters and their boxes,
  under the index generation (``<generation>/pages/``): a rebuilt index starts a fresh cache and
  the old one goes with its generation. Only the base image is cached; the mark is drawn per
  request, so any quote costs one PNG encode and no PDF work.
* The quote comes from reflowed text (line wraps joined, hyphens removed) while the page holds
  the printed lines, so it is matched against the page's characters ignoring whitespace, line
  breaks and hyphens, after NFKC (full-width digits, compatibility forms). A quote that runs on
  to the next page, or whose characters the PDF stores out of reading order, is marked clause by
  clause as far as it is found.
* The source file is the one recorded in the index manifest; it is checked against the content
  hash recorded at indexing, so the page shown is the page that was indexed.

PDFium is not thread-safe: every call into it holds one lock per :class:`PageViewer`.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import threading
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote as urlquote

from rag.errors import NotFoundError, RagError

MAX_QUOTE_CHARS = 400  # a cited sentence; longer input is refused (422), URLs carry at most this
RENDER_WIDTH = 1100  # pixels across the page: A4 at ~133 dpi, small print stays legible
MAX_RENDER_SCALE = 4.0  # a tiny page (a label, a slip) is not blown up past this
CACHE_VERSION = 1  # bump when the cached files' layout or rendering changes

Box = tuple[float, float, float, float]  # left, bottom, right, top in PDF points (origin bottom-left)
Match = Literal["full", "partial", "none"]

_SKIP = set(" \t\r\n\f\v\u00a0\u3000\u00ad\u200b-‐‑")  # never compared: wraps, spaces, hyphens
_MIN_PIECE = 8  # a shorter piece of a quote is too common on a page to mark on its own...
_NEAR = 60  # ...unless it follows the previous piece within this many characters (the next line)


# --------------------------------------------------------------------------------------------------
# Matching a quote against the page's characters (pure functions)


def _keys(chars: Sequence[str]) -> tuple[str, list[int]]:
    """The comparable text of ``chars`` and, per character of it, the index in ``chars``."""
    out: list[str] = []
    idx: list[int] = []
    for i, ch in enumerate(chars):
        if ch in _SKIP:
            continue
        for k in unicodedata.normalize("NFKC", ch).casefold():
            if k not in _SKIP and not k.isspace():
                out.append(k)
                idx.append(i)
    return "".join(out), idx


def _longest_prefix(want: str, page: str) -> int:
    """Length of the longest prefix of ``want`` found in ``page`` (if a prefix occurs, so does
    every shorter one: binary search)."""
    lo, hi = 0, len(want)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if want[:mid] in page:
            lo = mid
        else:
            hi = mid - 1
    return lo


def find_quote(chars: Sequence[str], quote: str) -> tuple[list[int], Match]:
    """Indices into ``chars`` (a page's characters in PDF order) that print ``quote``.

    Whitespace, line breaks and hyphens are ignored on both sides. When the whole quote is not
    one run of the page's characters (a PDF may store a column's lines out of reading order, or
    interleave two columns line by line, and a quote may run on to the next page), it is
    covered piece by piece, each the longest start of what is left: anywhere on the page if it
    has at least ``_MIN_PIECE`` characters, otherwise only shortly after the previous piece (a
    line's last few characters), so that common words elsewhere on the page are not marked.
    "full" means every character of the quote was found.

    Returns:
        (sorted character indices, "full" | "partial" | "none")
    """
    page, idx = _keys(chars)
    want, _ = _keys(list(quote))
    if not want or not page:
        return [], "none"
    at = page.find(want)
    if at >= 0:
        return sorted({idx[j] for j in range(at, at + len(want))}), "full"
    found: set[int] = set()
    covered = q = 0
    after: int | None = None  # end of the previous piece on the page
    while q < len(want):
        rest = want[q:]
        n = _longest_prefix(rest, page)
        at = -1
        if n >= _MIN_PIECE:
            at = page.find(rest[:n], after or 0)
            at = at if at >= 0 else page.find(rest[:n])
        elif after is not None:
            near = page[after : after + _NEAR + len(rest)]
            n = _longest_prefix(rest, near)
            at = after + near.find(rest[:n]) if n else -1
        if at < 0:
            q += 1  # a character that is not on this page
            continue
        found.update(idx[j] for j in range(at, at + n))
        covered += n
        after, q = at + n, q + n
    if not found:
        return [], "none"
    return sorted(found), ("full" if covered == len(want) else "partial")


def line_boxes(boxes: Sequence[Box], indices: Sequence[int]) -> list[Box]:
    """The marked characters' boxes merged into one rectangle per printed line (or column piece).

    A character joins the current rectangle when it sits on the same line (its vertical middle
    inside the rectangle's height) and follows it closely; otherwise it starts a new one.
    """
    rects: list[list[float]] = []
    for i in indices:
        left, bottom, right, top = boxes[i]
        if right <= left or top <= bottom:
            continue  # generated characters (line breaks) have no extent
        mid = (bottom + top) / 2
        if rects:
            r = rects[-1]
            height = r[3] - r[1]
            same_line = r[1] <= mid <= r[3]
            near = -height <= left - r[2] <= 2 * height
            if same_line and near:
                r[0], r[1], r[2], r[3] = min(r[0], left), min(r[1], bottom), max(r[2], right), max(r[3], top)
                continue
        rects.append([left, bottom, right, top])
    return [(r[0], r[1], r[2], r[3]) for r in rects]


# --------------------------------------------------------------------------------------------------
# URLs


def page_urls(doc_id: str, page_index: int, quote: str | None, base: str) -> dict[str, str]:
    """``page_image_url`` (the page with ``quote`` marked) and ``page_pdf_url`` under ``base``.

    ``base`` is ``"<root>/api"`` for API clients and ``"page"``-relative for the chat page; the
    quote is cut to :data:`MAX_QUOTE_CHARS` (its start is enough to find and mark it).
    """
    stem = f"{base.rstrip('/')}/page/{urlquote(doc_id, safe='')}/{int(page_index)}"
    query = f"?quote={urlquote(quote[:MAX_QUOTE_CHARS], safe='')}" if quote else ""
    return {"page_image_url": f"{stem}.png{query}", "page_pdf_url": f"{stem}.pdf"}


# --------------------------------------------------------------------------------------------------
# Rendering and the cache


@dataclass(frozen=True)
class _Source:
    doc_id: str
    title: str
    path: Path
    key: str  # names the cache files: the document id and content, hashed (no path tricks)


@dataclass
class _Page:
    png: bytes
    width: int
    height: int
    bbox: Box  # the rendered area in PDF points
    chars: list[str]
    boxes: list[Box]


class PageViewer:
    """Renders cited pages of the indexed PDFs; one per server (it holds the PDFium lock)."""

    def __init__(self, width: int = RENDER_WIDTH) -> None:
        self.width = width
        self._lock = threading.Lock()
        self._verified: dict[tuple[str, int, int, str], bool] = {}
        self._page_counts: dict[str, int] = {}

    # -- sources ---------------------------------------------------------------------------------

    def source(self, manifest: dict[str, Any], doc_id: str) -> _Source:
        """The indexed PDF ``doc_id`` as recorded in the manifest, checked against its content hash.

        Raises:
            NotFoundError: no such document, not a PDF, or its file is gone or has changed.
        """
        docs = manifest.get("documents") or {}
        meta = docs.get(doc_id) if isinstance(doc_id, str) else None
        if not isinstance(meta, dict):
            raise NotFoundError(f"索引中没有文档 {doc_id!r}；可用的文档见 /api/health。")
        raw_path = str(meta.get("source") or meta.get("path") or "")
        if not (str(meta.get("loader", "")).startswith("pdf") or raw_path.lower().endswith(".pdf")):
            raise NotFoundError(f"文档 {doc_id!r} 不是 PDF，没有印刷页面图像；请查看引用的原文段落。")
        path = Path(raw_path)
        expected = str(meta.get("content_hash") or "")
        try:
            st = path.stat()
        except OSError:
            raise NotFoundError(
                f"文档 {doc_id!r} 的原文件 {path} 已不存在；请把它放回原处，或运行 `rag index build` 重建索引。"
            ) from None
        check = (str(path), st.st_size, st.st_mtime_ns, expected)
        if check not in self._verified:
            self._verified[check] = _sha256(path) == expected
        if not self._verified[check]:
            raise NotFoundError(
                f"文档 {doc_id!r} 的原文件 {path} 在建索引后被修改过，页面可能对不上；请运行 `rag index build` 重建索引。"
            )
        key = hashlib.sha256(f"{doc_id}\0{expected}".encode()).hexdigest()[:20]
        return _Source(doc_id=doc_id, title=str(meta.get("title") or doc_id), path=path, key=key)

    def page_count(self, src: _Source) -> int:
        if src.key not in self._page_counts:
            with self._lock:
                pdf = _open(src)
                try:
                    self._page_counts[src.key] = len(pdf)
                finally:
                    pdf.close()
        return self._page_counts[src.key]

    def _check_page(self, src: _Source, page_index: int) -> None:
        n = self.page_count(src)
        if not 0 <= page_index < n:
            raise NotFoundError(f"文档 {src.doc_id!r} 只有 {n} 页（页序号 0 到 {n - 1}），没有页序号 {page_index}。")

    # -- the image -------------------------------------------------------------------------------

    def png(
        self,
        manifest: dict[str, Any],
        cache_dir: Path | None,
        doc_id: str,
        page_index: int,
        quote: str | None,
        focus: bool = False,
    ) -> tuple[bytes, Match]:
        """The page as PNG with ``quote`` marked, and how much of the quote was found on it.

        With ``focus`` only the part of the page around the mark comes back (its column and a
        few lines above and below): a whole page shrunk to a side panel is too small to read,
        the excerpt is not. Without a mark, ``focus`` changes nothing.

        Raises:
            NotFoundError: unknown document or page (see :meth:`source`); a quote that is not
                on the page is no error, the page comes back unmarked with ``"none"``.
        """
        src = self.source(manifest, doc_id)
        self._check_page(src, page_index)
        page = self._page(src, cache_dir, page_index)
        if not quote:
            return page.png, "none"
        indices, match = find_quote(page.chars, quote[:MAX_QUOTE_CHARS])
        rects = line_boxes(page.boxes, indices)
        if not rects:
            return page.png, "none"
        return _draw_marks(page, rects, focus), match

    def _page(self, src: _Source, cache_dir: Path | None, page_index: int) -> _Page:
        stem = f"v{CACHE_VERSION}-{src.key}-{page_index}-w{self.width}"
        if cache_dir is not None:
            png, meta = cache_dir / f"{stem}.png", cache_dir / f"{stem}.json"
            try:
                info = json.loads(meta.read_text(encoding="utf-8"))
                return _Page(
                    png=png.read_bytes(),
                    width=info["width"],
                    height=info["height"],
                    bbox=tuple(info["bbox"]),  # type: ignore[arg-type]
                    chars=list(info["chars"]),
                    boxes=[tuple(b) for b in info["boxes"]],  # type: ignore[misc]
                )
            except (OSError, ValueError, KeyError, TypeError):
                pass  # not cached yet (or half-written by a crash): render it
        page = self._render(src, page_index)
        if cache_dir is not None:
            info = {
                "width": page.width,
                "height": page.height,
                "bbox": page.bbox,
                "chars": page.chars,
                "boxes": page.boxes,
            }
            try:
                cache_dir.mkdir(parents=True, exist_ok=True)
                _write_atomic(cache_dir / f"{stem}.png", page.png)
                _write_atomic(cache_dir / f"{stem}.json", json.dumps(info, ensure_ascii=False).encode())
            except OSError:
                pass  # a read-only index folder: serve uncached rather than fail
        return page

    def _render(self, src: _Source, page_index: int) -> _Page:
        import pypdfium2.raw as pdfium_c

        with self._lock:
            pdf = _open(src)
            try:
                page = pdf[page_index]
                bbox = tuple(float(v) for v in page.get_bbox())
                width_pt = max(bbox[2] - bbox[0], 1.0)
                scale = min(self.width / width_pt, MAX_RENDER_SCALE)
                image = page.render(scale=scale, may_draw_forms=False).to_pil().convert("RGB")
                text = page.get_textpage()
                n = text.count_chars()
                chars = [chr(pdfium_c.FPDFText_GetUnicode(text.raw, i) or 0xFFFD) for i in range(n)]
                boxes = [tuple(float(v) for v in text.get_charbox(i, loose=True)) for i in range(n)]
            except Exception as e:  # noqa: BLE001 - PDFium's errors carry no useful type
                raise RagError(
                    f"无法渲染文档 {src.doc_id!r} 的第 {page_index} 页（{type(e).__name__}）；请检查原 PDF 文件。"
                ) from e
            finally:
                pdf.close()
        buf = io.BytesIO()
        image.save(buf, format="PNG", compress_level=1)  # measured: smaller and faster than 6 here
        return _Page(
            png=buf.getvalue(),
            width=image.width,
            height=image.height,
            bbox=bbox,  # type: ignore[arg-type]
            chars=chars,
            boxes=boxes,  # type: ignore[arg-type]
        )

    # -- the one-page PDF ------------------------------------------------------------------------

    def pdf(self, manifest: dict[str, Any], cache_dir: Path | None, doc_id: str, page_index: int) -> tuple[bytes, str]:
        """(bytes, file name) of a PDF holding only this page of the document."""
        import pypdfium2 as pdfium

        src = self.source(manifest, doc_id)
        self._check_page(src, page_index)
        name = f"{src.doc_id}-p{page_index + 1}.pdf"
        cached = cache_dir / f"v{CACHE_VERSION}-{src.key}-{page_index}.pdf" if cache_dir is not None else None
        if cached is not None and cached.exists():
            return cached.read_bytes(), name
        with self._lock:
            pdf = _open(src)
            out = pdfium.PdfDocument.new()
            try:
                out.import_pages(pdf, [page_index])
                buf = io.BytesIO()
                out.save(buf)
            finally:
                out.close()
                pdf.close()
        data = buf.getvalue()
        if cached is not None:
            try:
                cached.parent.mkdir(parents=True, exist_ok=True)
                _write_atomic(cached, data)
            except OSError:
                pass
        return data, name


def cache_dir_of(index_path: Path) -> Path | None:
    """Where a generation's rendered pages live; None for an index that is not on disk."""
    return index_path / "pages" if index_path.is_dir() else None


def _open(src: _Source) -> Any:
    import pypdfium2 as pdfium

    try:
        return pdfium.PdfDocument(str(src.path))
    except Exception as e:  # noqa: BLE001 - PdfiumError or an OSError, both mean the same here
        raise RagError(f"无法打开文档 {src.doc_id!r} 的原文件 {src.path}（{e}）；请检查文件。") from e


def _draw_marks(page: _Page, rects: Sequence[Box], focus: bool = False) -> bytes:
    """The cached page with each rectangle tinted yellow (multiplied, so the print stays as dark
    as it was) and underlined in red; with ``focus``, cut to the marked lines' column plus a
    margin of a few lines.

    Decoding and re-encoding the PNG is most of the cost (measured: PDFium renders a page in
    less time than the PNG encode), hence only the rectangles are touched and the encoder runs
    at its fastest level.
    """
    from PIL import Image, ImageChops, ImageDraw

    img = Image.open(io.BytesIO(page.png)).convert("RGB")
    left0, _, right0, top0 = page.bbox
    scale = page.width / max(right0 - left0, 1e-6)
    pad = max(1, round(1.5 * scale))
    draw = ImageDraw.Draw(img)
    for left, bottom, right, top in rects:
        x0 = max(0, int((left - left0) * scale) - pad)
        x1 = min(img.width, int((right - left0) * scale) + pad)
        y0 = max(0, int((top0 - top) * scale) - pad)
        y1 = min(img.height, int((top0 - bottom) * scale) + pad)
        if x1 <= x0 or y1 <= y0:
            continue
        box = (x0, y0, x1, y1)
        img.paste(ImageChops.multiply(img.crop(box), Image.new("RGB", (x1 - x0, y1 - y0), (253, 224, 90))), box)
        draw.line((x0, y1, x1, y1), fill=(185, 28, 28), width=max(2, round(scale)))
    if focus:
        img = img.crop(_focus_box(page, rects, scale))
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _focus_box(page: _Page, rects: Sequence[Box], scale: float) -> tuple[int, int, int, int]:
    """Pixel box around the marks: their horizontal extent widened to at least 40 % of the page
    (a column), four line heights above and below, clipped to the page."""
    left0, _, _, top0 = page.bbox
    line = max(max(t - b for _, b, _, t in rects), 6.0) * scale
    x0 = min(r[0] for r in rects) - left0
    x1 = max(r[2] for r in rects) - left0
    y0, y1 = top0 - max(r[3] for r in rects), top0 - min(r[1] for r in rects)
    x0, x1, y0, y1 = x0 * scale - line, x1 * scale + line, y0 * scale - 4 * line, y1 * scale + 4 * line
    # never cut a printed line in half: take in whole any line the top or bottom edge crosses
    for left, bottom, right, top in page.boxes:
        if right <= left or top <= bottom:
            continue
        px0, px1 = (left - left0) * scale, (right - left0) * scale
        if px1 < x0 or px0 > x1:
            continue
        py0, py1 = (top0 - top) * scale, (top0 - bottom) * scale
        if py0 < y0 < py1:
            y0 = py0 - 2
        if py0 < y1 < py1:
            y1 = py1 + 2
    min_width = 0.4 * page.width
    if x1 - x0 < min_width:
        mid = (x0 + x1) / 2
        x0, x1 = mid - min_width / 2, mid + min_width / 2
    if x0 < 0:
        x0, x1 = 0, x1 - x0
    if x1 > page.width:
        x0, x1 = max(0, x0 - (x1 - page.width)), page.width
    return int(max(0, x0)), int(max(0, y0)), int(min(page.width, x1)), int(min(page.height, y1))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
