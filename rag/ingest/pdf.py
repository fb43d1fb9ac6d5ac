"""PDF loading with pypdf: one page per PDF page, labelled with its *printed* page label.

The label comes from the PDF's own ``/PageLabels`` (what a viewer shows: 封面, 封二, 1, 2...)
when present; else from a bare page number printed in the page's header or footer; else it
is the physical page number. Pages are joined with form feeds, so ``Document.text`` reloads
with the same pages through the text loader, and articles are found the same way as for
text (the issue's 目录 if it has one, else bylines).
"""

from __future__ import annotations

import bisect
import dataclasses
import io
from pathlib import Path

from pypdf import PdfReader
from pypdf.errors import PdfReadError, PyPdfError

from rag.errors import IngestError
from rag.types import Article, Document, Segment

from .text import PageSpan, label_pages, structure


def _labels(reader: PdfReader, texts: list[str]) -> list[str]:
    try:
        if "/PageLabels" in reader.trailer["/Root"]:
            labels = list(reader.page_labels)
            if len(labels) == len(texts) and all(labels):
                return labels
    except (PyPdfError, KeyError, ValueError, TypeError, AttributeError):
        pass  # a broken label tree: fall back to the printed numbers
    return label_pages(texts)


def _with_physical(articles: tuple[Article, ...], spans: list[PageSpan]) -> tuple[Article, ...]:
    """Each segment marked with the 0-based PDF page it lies on (spans are the pages, in order).

    Segments are cut at page spans by the text loader, so a segment lies on exactly one page.
    """
    starts = [sp.start for sp in spans]

    def mark(seg: Segment) -> Segment:
        return dataclasses.replace(seg, physical=max(0, bisect.bisect_right(starts, seg.start) - 1))

    return tuple(dataclasses.replace(a, segments=tuple(mark(s) for s in a.segments)) for a in articles)


def load_pdf(path: Path, raw: bytes, doc_id: str, content_hash: str) -> Document:
    """Load a PDF; each page becomes a segment run labelled with its printed page.

    Raises:
        IngestError: encrypted (password-protected), corrupt, or text-less PDFs.
    """
    try:
        reader = PdfReader(io.BytesIO(raw))
        if reader.is_encrypted:
            try:
                opened = reader.decrypt("")  # owner-password-only files open with an empty password
            except (PyPdfError, NotImplementedError) as e:
                raise IngestError(
                    f"{path}: the PDF is encrypted ({e}); save an unencrypted copy and add that instead"
                ) from e
            if not opened:
                raise IngestError(
                    f"{path}: the PDF is password-protected; save an unencrypted copy "
                    "(e.g. print it to PDF) and add that instead"
                )
        texts = [
            (page.extract_text() or "").replace("\r\n", "\n").replace("\r", "\n") for page in reader.pages
        ]
    except IngestError:
        raise
    except (PdfReadError, PyPdfError, ValueError, KeyError, TypeError, AttributeError, OSError) as e:
        detail = " ".join(str(e).split())[:200]  # one line, however chatty the parser is
        raise IngestError(
            f"{path}: cannot read the PDF ({type(e).__name__}: {detail}); the file looks damaged, "
            "re-export or re-download it"
        ) from e
    if not texts:
        raise IngestError(f"{path}: the PDF has no pages; re-export it")
    if not any(t.strip() for t in texts):
        raise IngestError(
            f"{path}: the PDF has no extractable text (a scanned image?); run OCR on it "
            "(e.g. ocrmypdf) and add the result"
        )
    # form feeds inside extracted text would be read as page breaks later on
    texts = [t.replace("\f", "\n") for t in texts]
    labels = _labels(reader, texts)
    text = "\f".join(texts)
    spans: list[PageSpan] = []
    pos = 0
    for t, label in zip(texts, labels, strict=True):
        spans.append(PageSpan(pos, pos + len(t), label))
        pos += len(t) + 1
    title, articles, _ = structure(text, spans, path.stem)
    articles = _with_physical(articles, spans)
    return Document(
        doc_id=doc_id,
        title=title,
        path=str(path),
        text=text,
        articles=articles,
        content_hash=content_hash,
        loader="pdf",
    )
