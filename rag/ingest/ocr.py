"""OCR of scanned PDF pages with RapidOCR (PP-OCR models on onnxruntime).

The default detection, orientation and recognition models ship inside the ``rapidocr`` wheel
(``rapidocr/models/*.onnx``), so nothing is downloaded at run time; the engine is built once per
PDF that needs it. Each recognised line becomes a layout fragment in page points, so a scan
goes through the same column detection, reflow and header/footer handling as a text layer.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from rag.errors import IngestError

from .layout import Frag

if TYPE_CHECKING:
    from .pdf import RawPage

# OCR resolution: 200 dpi reads 9-pt CJK body text reliably at ~2 s a page on one core.
OCR_DPI = 200


def _engine() -> Any:
    try:
        from rapidocr import RapidOCR
    except ImportError as e:  # pragma: no cover - a dependency of the package
        raise IngestError("OCR is not installed: pip install 'rapidocr==3.10.0' onnxruntime") from e
    # the default models of the wheel; quiet logging (progress is ours)
    return RapidOCR(params={"Global.log_level": "warning"})


def ocr_frags(result: Any, scale: float) -> tuple[list[Frag], float | None]:
    """RapidOCR output → fragments in page points, and the page's mean confidence.

    With per-character boxes (``return_word_box``) a line is rebuilt from its characters, so
    spaces come from the gaps between them and a line the detector ran across the gutter is
    split again; the type size of lines within 20 % of the page's median height is snapped to
    it (detection boxes vary by a few pixels, which must not read as a change of font). The
    confidence is weighted by line length, so a mis-read caption counts less than a mis-read
    paragraph; None when nothing was recognised.
    """
    boxes = getattr(result, "boxes", None)
    txts = getattr(result, "txts", None) or ()
    scores = getattr(result, "scores", None) or ()
    words = getattr(result, "word_results", None) or ()
    if boxes is None or not txts:
        return [], None
    frags: list[Frag] = []
    total = weight = 0.0
    for k, (box, text, score) in enumerate(zip(boxes, txts, scores, strict=False)):
        text = str(text).strip()
        if not text:
            continue
        ys = [float(p[1]) / scale for p in box]
        xs = [float(p[0]) / scale for p in box]
        # a detection box is ~15 % taller than the type it holds
        size = max((max(ys) - min(ys)) / 1.15, 1.0)
        chars = [(str(ch), cb) for ch, _, cb in (words[k] if k < len(words) and words[k] else ()) if str(ch).strip()]
        line = _split_line(text, chars, scale, min(ys), max(ys), size) if chars else []
        if not line or "".join(f.text for f in line).replace(" ", "").replace("|", "") != text.replace(" ", ""):
            line = [Frag(text, min(xs), min(ys), max(xs), max(ys), size)]
        for f in line:
            f.score = float(score)
        frags.extend(line)
        total += float(score) * len(text)
        weight += len(text)
    if frags:
        median = statistics.median(f.size for f in frags)
        for f in frags:
            if abs(f.size - median) <= 0.2 * median:
                f.size = median
    return frags, (total / weight if weight else None)


def _split_line(
    text: str, chars: Sequence[tuple[str, Any]], scale: float, top: float, bottom: float, size: float
) -> list[Frag]:
    """A recognised line, split where its character boxes show a column-sized gap.

    The spaces are OCR's own, plus one where the bar of a byline ``文 | 作者`` was: too thin for
    OCR, it leaves a gap after a line-initial 文 (and the names after it are spaced by gaps).
    """
    spaced: list[bool] = []  # per char entry: did the OCR text have a space before it?
    pos = 0
    for ch, _ in chars:
        j = text.find(ch, pos)
        if j < 0:
            return []
        spaced.append(j > pos and not text[pos:j].strip())
        pos = j + len(ch)
    out: list[Frag] = []
    cur, x0, x1 = "", 0.0, 0.0
    for k, (ch, cb) in enumerate(chars):
        cx0 = min(q[0] for q in cb) / scale
        cx1 = max(q[0] for q in cb) / scale
        if cur:
            gap = cx0 - x1
            if gap > max(1.2 * size, 6.0):
                out.append(Frag(cur, x0, top, x1, bottom, size))
                cur = ""
            elif k == 1 and cur == "文" and gap > 0.5 * size:
                cur += " | "
            elif spaced[k] or (cur.startswith("文 | ") and gap > 0.3 * size):
                cur += " "  # OCR's space, or the gap between two names of a byline
        if not cur:
            x0 = cx0
        cur += ch
        x1 = cx1
    if cur:
        out.append(Frag(cur, x0, top, x1, bottom, size))
    return out


def ocr_pages(
    pdf: Any,
    pages: Sequence[RawPage],
    which: Sequence[int],
    name: str,
    progress: Callable[[int, int], None] | None = None,
    dpi: int = OCR_DPI,
) -> None:
    """Fill ``pages[i].frags`` and ``.ocr_score`` for each scanned page ``i`` in ``which``."""
    from .pdf import _stderr_progress

    engine = _engine()
    report = progress or _stderr_progress(name)
    scale = dpi / 72
    report(0, len(which))
    for done, i in enumerate(which, 1):
        page = pdf[i]
        try:
            image = page.render(scale=scale).to_numpy()
        finally:
            page.close()
        if image.ndim == 3 and image.shape[2] == 4:
            image = image[:, :, :3]
        frags, score = ocr_frags(engine(image, return_word_box=True), scale)
        pages[i].frags = frags
        pages[i].ocr_score = score
        report(done, len(which))
