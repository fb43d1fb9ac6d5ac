"""OCR of scanned PDF pages with RapidOCR (PP-OCR models on onnxruntime).

The default detection, orientation and recognition models ship inside the ``rapidocr`` wheel
(``rapidocr/models/*.onnx``), so nothing is downloaded at run time; the engine is built once per
PDF that needs it. Each recognised line becomes a layout fragment in page points, so a scan
goes through the same column detection, reflow and header/footer handling as a text layer.
"""

from __future__ import annotations

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

    The confidence is weighted by line length, so a mis-read caption counts less than a
    mis-read paragraph; None when nothing was recognised.
    """
    boxes = getattr(result, "boxes", None)
    txts = getattr(result, "txts", None) or ()
    scores = getattr(result, "scores", None) or ()
    if boxes is None or not txts:
        return [], None
    frags: list[Frag] = []
    total = weight = 0.0
    for box, text, score in zip(boxes, txts, scores, strict=False):
        text = str(text).strip()
        if not text:
            continue
        xs = [float(p[0]) / scale for p in box]
        ys = [float(p[1]) / scale for p in box]
        h = max(ys) - min(ys)
        # a detection box is ~15 % taller than the type it holds
        frags.append(Frag(text, min(xs), min(ys), max(xs), max(ys), max(h / 1.15, 1.0), score=float(score)))
        total += float(score) * len(text)
        weight += len(text)
    return frags, (total / weight if weight else None)


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
        frags, score = ocr_frags(engine(image), scale)
        pages[i].frags = frags
        pages[i].ocr_score = score
        report(done, len(which))
