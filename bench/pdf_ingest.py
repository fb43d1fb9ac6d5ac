"""PDF ingest throughput: pages per second with a text layer and with OCR of scanned pages.

The bundled magazine is printed with ``eval/render_magazine_pdf.py`` (34 A4 pages, two columns);
``rag.ingest.load_document`` reads it (pypdfium2 characters → layout → reflow → articles) in
``--repeats`` rounds, best round kept. Then the same issue with ``--scan`` pages rasterised
(image-only, 200 dpi) is read: the extra time over the text-layer run is the OCR
(RapidOCR, PP-OCR models on onnxruntime), reported per scanned page. Both wall and CPU time
are recorded, with the machine's contention, since the OCR uses every core it is given.
For comparison, pdfplumber's character extraction alone on the same text-layer PDF.

Run: ``python -m bench.pdf_ingest [--scan 2] [--repeats 3]``. Results: ``bench/results/pdf_ingest.md``.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import time
from pathlib import Path

from bench.common import MAGAZINE, PROJECT_ROOT, CpuMonitor, go_offline, log, markdown_table, write_result


def _renderer():  # noqa: ANN202 - the eval script, loaded from its file
    spec = importlib.util.spec_from_file_location("render_magazine_pdf", PROJECT_ROOT / "eval" / "render_magazine_pdf.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def _time(fn) -> tuple[float, float]:  # noqa: ANN001
    w, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w, time.process_time() - c


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scan", type=int, default=2, help="how many body pages to rasterise for OCR")
    ap.add_argument("--repeats", type=int, default=3, help="rounds of the text-layer load (best kept)")
    a = ap.parse_args()
    go_offline()
    from rag.ingest import load_document

    render = _renderer().render
    tmp = Path(tempfile.mkdtemp(prefix="pdf-ingest-"))
    data, truth = render(MAGAZINE)
    text_pdf = tmp / "magazine.pdf"
    text_pdf.write_bytes(data)
    n = len(truth)
    body = [p["physical"] for p in truth if p["numbered"]]
    scan = body[1 : 1 + a.scan * 5 : 5][: a.scan]
    data, _ = render(MAGAZINE, raster=scan)
    scan_pdf = tmp / "magazine-scan.pdf"
    scan_pdf.write_bytes(data)

    mon = CpuMonitor().start()
    log(f"text layer: {n} pages × {a.repeats}")
    text_runs = [_time(lambda: load_document(text_pdf)) for _ in range(a.repeats)]
    tw, tc = min(text_runs)
    log("pdfplumber characters only")
    import pdfplumber

    def plumber() -> None:
        with pdfplumber.open(text_pdf) as pdf:
            for page in pdf.pages:
                _ = page.chars

    pw, pc = _time(plumber)
    log(f"OCR: {len(scan)} scanned pages (physical {[p + 1 for p in scan]})")
    sw, sc = _time(lambda: load_document(scan_pdf))
    noise = mon.stop()
    ow, oc = max(sw - tw, 1e-9), max(sc - tc, 1e-9)
    rows = [
        ["text layer: load_document (pypdfium2 + layout + articles)", n, tw, n / tw, n / tc],
        ["pdfplumber: characters only, no layout", n, pw, n / pw, n / pc],
        [f"{len(scan)} scanned pages: OCR time over the text-layer run", len(scan), ow, len(scan) / ow, len(scan) / oc],
    ]
    table = markdown_table(["what", "pages", "wall s", "pages/s (wall)", "pages per CPU-s"], rows, digits=2)
    note = (
        "OCR includes building the RapidOCR engine once per PDF (~1-2 s). onnxruntime uses all cores, "
        "so on a shared machine the wall time is dominated by waiting for them; the CPU column is the "
        "work itself."
    )
    write_result("pdf_ingest", "PDF ingest throughput (text layer and OCR)", [table, note], noise)


if __name__ == "__main__":
    main()
