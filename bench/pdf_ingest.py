"""PDF ingest speed: pages/s of the PDF loader (and loader + chunker) on this machine, for a
text-layer PDF, for image-only (scanned) pages, and for a text PDF with two scanned pages; plus
the page viewer's render and mark times.

The PDFs are made here from the bundled magazine text: A4, two columns of STSong-Light 10.5 pt,
a running header and a printed page number in the footer (the layout of issue 13). The scanned
pages are those pages rasterised at 200 dpi and stored as images only (no text layer).

Whatever the loader does with image-only pages is what gets measured: a loader without OCR
refuses a fully scanned PDF (the refusal and its time are reported) and reads no text from a
scanned page inside a text PDF; a loader with OCR reads them, and this script shows its pages/s
and how many characters came back. Embedding is not included (``bench.indexing`` covers it).

Run: ``python -m bench.pdf_ingest [--rounds 3] [--scanned 4]``. Results:
``bench/results/pdf_ingest.md``.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import re
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import MAGAZINE, CpuMonitor, go_offline, log, markdown_table, write_result

PAGE_W, PAGE_H = 595.28, 841.89  # A4 in points
MARGIN, GUTTER = 50.0, 20.0
FONT_SIZE, LEADING = 10.5, 15.0
SCAN_DPI = 200


def _wrap(paragraph: str, width: int) -> list[str]:
    """Cut a paragraph into lines of ``width`` characters (CJK text: one character per cell)."""
    text = paragraph.replace("\t", "  ")
    return [text[i : i + width] for i in range(0, len(text), width)] or [""]


def magazine_pdf(text: str) -> tuple[bytes, int]:
    """The text laid out in two columns with header and footer; (PDF bytes, page count)."""
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont
    from reportlab.pdfgen import canvas

    pdfmetrics.registerFont(UnicodeCIDFont("STSong-Light"))
    col_w = (PAGE_W - 2 * MARGIN - GUTTER) / 2
    per_line = int(col_w // FONT_SIZE)
    top, bottom = PAGE_H - MARGIN - 20, MARGIN + 20
    per_col = int((top - bottom) // LEADING)
    lines: list[str] = []
    for para in re.split(r"\n\s*\n|\n", text):
        para = para.strip()
        if para:
            lines.extend(_wrap(para, per_line))
            lines.append("")
    buf = io.BytesIO()
    c = canvas.Canvas(buf, pagesize=(PAGE_W, PAGE_H))
    page = 0
    for start in range(0, len(lines), 2 * per_col):
        page += 1
        c.setFont("STSong-Light", 9)
        c.drawString(MARGIN, PAGE_H - MARGIN, "广东工运 2025.12 · 调研")
        c.drawCentredString(PAGE_W / 2, MARGIN - 10, str(page))
        c.setFont("STSong-Light", FONT_SIZE)
        for col in range(2):
            x = MARGIN + col * (col_w + GUTTER)
            chunk = lines[start + col * per_col : start + (col + 1) * per_col]
            for k, line in enumerate(chunk):
                c.drawString(x, top - k * LEADING, line)
        c.showPage()
    c.save()
    return buf.getvalue(), page


def scanned_pdf(pdf: bytes, pages: list[int]) -> bytes:
    """The given pages rasterised at ``SCAN_DPI`` and saved as an image-only PDF."""
    import pypdfium2 as pdfium

    doc = pdfium.PdfDocument(pdf)
    images = [doc[i].render(scale=SCAN_DPI / 72).to_pil().convert("L") for i in pages]
    doc.close()
    buf = io.BytesIO()
    images[0].save(buf, "PDF", resolution=SCAN_DPI, save_all=True, append_images=images[1:])
    return buf.getvalue()


def mixed_pdf(text_pdf: bytes, scanned: bytes, at: list[int]) -> bytes:
    """The text PDF with the pages ``at`` replaced by the scanned ones, in order."""
    from pypdf import PdfReader, PdfWriter

    text_r, scan_r = PdfReader(io.BytesIO(text_pdf)), PdfReader(io.BytesIO(scanned))
    writer = PdfWriter()
    for i, page in enumerate(text_r.pages):
        writer.add_page(scan_r.pages[at.index(i)] if i in at else page)
    buf = io.BytesIO()
    writer.write(buf)
    return buf.getvalue()


def time_ingest(path: Path, rounds: int) -> dict[str, Any]:
    """Median seconds of ``load_document`` and of load + ``chunk_document`` over ``rounds``."""
    from rag.chunk import chunk_document
    from rag.config import ChunkSettings
    from rag.errors import IngestError
    from rag.ingest import load_document

    load_s: list[float] = []
    total_s: list[float] = []
    out: dict[str, Any] = {"error": None, "chars": 0, "chunks": 0, "pages": 0}
    for _ in range(rounds):
        t0 = time.perf_counter()
        try:
            doc = load_document(path)
        except IngestError as e:
            load_s.append(time.perf_counter() - t0)
            out["error"] = str(e)
            continue
        t1 = time.perf_counter()
        chunks = chunk_document(doc, ChunkSettings())
        t2 = time.perf_counter()
        load_s.append(t1 - t0)
        total_s.append(t2 - t0)
        out.update(chars=len(doc.text.replace("\f", "").strip()), chunks=len(chunks), pages=len(doc.pages))
    out["load_s"] = statistics.median(load_s)
    out["total_s"] = statistics.median(total_s) if total_s else float("nan")
    return out


def time_viewer(path: Path, quotes: list[tuple[int, str]]) -> dict[str, float]:
    """Page viewer: first render of each quoted page (PDFium + PNG + cache write), then each
    quote marked on its page from the cache (whole page, and the focus crop), in ms."""
    from rag.pageview import PageViewer

    manifest = {
        "documents": {
            "mag": {
                "title": "bench",
                "source": str(path),
                "loader": "pdf",
                "content_hash": hashlib.sha256(path.read_bytes()).hexdigest(),
            }
        }
    }
    viewer = PageViewer()
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "pages"
        cold = []
        for i in sorted({i for i, _ in quotes}):
            t0 = time.perf_counter()
            viewer.png(manifest, cache, "mag", i, None)
            cold.append((time.perf_counter() - t0) * 1000)
        warm, focus, matched = [], [], 0
        for i, quote in quotes:
            t0 = time.perf_counter()
            _, match = viewer.png(manifest, cache, "mag", i, quote)
            warm.append((time.perf_counter() - t0) * 1000)
            matched += match == "full"
            t0 = time.perf_counter()
            viewer.png(manifest, cache, "mag", i, quote, focus=True)
            focus.append((time.perf_counter() - t0) * 1000)
    return {
        "cold_ms": statistics.median(cold),
        "warm_ms": statistics.median(warm),
        "focus_ms": statistics.median(focus),
        "matched": matched,
        "quotes": len(quotes),
    }


def _quotes(path: Path, n: int) -> list[tuple[int, str]]:
    """Sentences of the indexed PDF with the page they were printed on (from the chunks)."""
    from rag.answer.citations import make_citation
    from rag.chunk import chunk_document
    from rag.config import ChunkSettings
    from rag.ingest import load_document

    out = []
    for chunk in chunk_document(load_document(path), ChunkSettings()):
        if chunk.kind != "body":
            continue
        m = re.search(r"[^。！？\n]{12,60}。", chunk.text)
        if m:
            cit = make_citation(1, chunk, m.group(0))
            if cit.page_index is not None:
                out.append((cit.page_index, cit.quote))
    step = max(1, len(out) // n)
    return out[::step][:n]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="timed runs per PDF (the median is kept)")
    parser.add_argument("--scanned", type=int, default=4, help="pages in the image-only PDF")
    args = parser.parse_args()
    go_offline()
    monitor = CpuMonitor().start()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        text_pdf, n_pages = magazine_pdf(MAGAZINE.read_text(encoding="utf-8"))
        scan = scanned_pdf(text_pdf, list(range(min(args.scanned, n_pages))))
        mixed = mixed_pdf(text_pdf, scanned_pdf(text_pdf, [2, 3]), [2, 3])
        files = {
            "text layer (magazine, 2 columns)": (folder / "text.pdf", text_pdf, n_pages),
            f"image-only ({SCAN_DPI} dpi scans)": (folder / "scanned.pdf", scan, min(args.scanned, n_pages)),
            "text layer with 2 scanned pages": (folder / "mixed.pdf", mixed, n_pages),
        }
        rows = []
        for label, (path, data, pages) in files.items():
            path.write_bytes(data)
            log(f"{label}: {pages} pages, {len(data) / 1e6:.1f} MB")
            r = time_ingest(path, args.rounds)
            if r["error"]:
                outcome = "refused: " + r["error"].split(": ", 1)[-1][:90]
            else:
                outcome = f"{r['chars']:,} chars, {r['chunks']} chunks"
            rows.append(
                [label, pages, round(len(data) / 1e6, 2), r["load_s"], pages / r["load_s"], pages / r["total_s"], outcome]
            )
        log("page viewer")
        viewer = time_viewer(folder / "text.pdf", _quotes(folder / "text.pdf", 12))
    noise = monitor.stop()
    table = markdown_table(
        ["PDF", "pages", "MB", "load s", "load pages/s", "load + chunk pages/s", "result"],
        rows,
        digits=[0, 0, 2, 2, 1, 1, 0],
    )
    viewer_table = markdown_table(
        ["first render of a page (PDFium, PNG, cache)", "page with the quote marked (cached)", "focus crop", "quotes found in full"],
        [[viewer["cold_ms"], viewer["warm_ms"], viewer["focus_ms"], f"{viewer['matched']}/{viewer['quotes']}"]],
        digits=[0, 0, 0, 0],
    )
    write_result(
        "pdf_ingest",
        "PDF ingest: pages per second (loader, loader + chunker) and the page viewer",
        [
            "Median of the timed rounds; one process, no embedding. Page viewer times are medians in ms "
            f"(width {1100} px).",
            table,
            "## Page viewer",
            viewer_table,
        ],
        noise,
    )


if __name__ == "__main__":
    main()
