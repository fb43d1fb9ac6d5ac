"""Render a magazine issue (.txt in the bundled format) as a realistic printed PDF.

A4, two columns, a running header ``广东工运 2025.12 · 栏目`` and the printed page number in
the outer footer corner on numbered pages; the unnumbered front and back matter (封面, 封二,
大事记, 目录, 封底) one page each; titles, bylines, captions and tables full width; tables as
gridded tables; an article continued on another page (``（下转第13页）`` / ``（上接第16页）``)
printed where the issue's 目录 says. Every article is laid out over exactly the printed pages
the text loader infers from the 目录 (the font size is chosen so it fits), so the printed page
numbers of the PDF match the .txt's.

Besides the PDF it writes ``<out>.truth.json``: per physical page its label and the text printed
on it in reading order (what the tests and the eval compare the PDF loader against).

    python eval/render_magazine_pdf.py data/guangdong-gongyun-2025-12.txt --out /tmp/mag.pdf
    python eval/render_magazine_pdf.py data/... --out /tmp/mag-labels.pdf --page-labels
    python eval/render_magazine_pdf.py data/... --out /tmp/mag-scan.pdf --raster 7,8

STSong-Light (a reportlab CID font, not embedded) extracts exactly, so what the loader reads
can be compared character for character with what was drawn.
"""

from __future__ import annotations

import argparse
import io
import json
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from reportlab.lib import colors  # noqa: E402
from reportlab.lib.pagesizes import A4  # noqa: E402
from reportlab.pdfbase import pdfmetrics  # noqa: E402
from reportlab.pdfbase.cidfonts import UnicodeCIDFont  # noqa: E402
from reportlab.pdfgen import canvas as rl_canvas  # noqa: E402

from rag.ingest.text import load_text, norm_title  # noqa: E402
from rag.types import Document  # noqa: E402

FONT = "STSong-Light"
PAGE_W, PAGE_H = A4
MARGIN = 52.0
GUTTER = 20.0
COL_W = (PAGE_W - 2 * MARGIN - GUTTER) / 2
TOP = PAGE_H - 70.0  # below the running header
BOTTOM = 62.0  # above the footer
LEADING = 1.7
JUSTIFY = False
STYLE = "standard"

# A second, independent-looking layout (``--style alt``): wider margins, narrower gutter, justified
# columns, no running header on top but a footer ``广东工运 2025.12 · 栏目 | 07``; ``bare`` prints
# no header and no page numbers at all (the labels must come from the 目录). The globals
# above are swapped by ``_use_style`` for one render (this is a script, run one render at a time).
_STYLES = {
    "standard": {"MARGIN": 52.0, "GUTTER": 20.0, "TOP": PAGE_H - 70.0, "BOTTOM": 62.0, "LEADING": 1.7, "JUSTIFY": False},
    "bare": {"MARGIN": 52.0, "GUTTER": 20.0, "TOP": PAGE_H - 70.0, "BOTTOM": 62.0, "LEADING": 1.7, "JUSTIFY": False},
    "alt": {"MARGIN": 64.0, "GUTTER": 15.0, "TOP": PAGE_H - 58.0, "BOTTOM": 70.0, "LEADING": 1.6, "JUSTIFY": True},
}


def _use_style(name: str) -> None:
    g = globals()
    g.update(_STYLES[name])
    g["COL_W"] = (PAGE_W - 2 * g["MARGIN"] - g["GUTTER"]) / 2
    g["STYLE"] = name
# a line may not start with these (CJK line-breaking rule), nor end with the openers
_NO_START = "，。、；：？！”’）》」』】,.;:?!)%·…—"
_NO_END = "“‘（《「『【("
_CAPTION = re.compile(r"^(?:图|表)\s?\d|资料图片\s*$|(?:摄影|供图)\s*[|｜]")
_FIGURE = re.compile(r"^图\s?\d|资料图片\s*$|(?:摄影|供图)\s*[|｜]")
_BYLINE = re.compile(r"^\s*(?:■\s*)?文\s*[|｜]")


def _register() -> None:
    if FONT not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(UnicodeCIDFont(FONT))


def _w(s: str, size: float) -> float:
    return pdfmetrics.stringWidth(s, FONT, size)


# ---------------------------------------------------------------------------------------------
# Line breaking
# ---------------------------------------------------------------------------------------------


def break_lines(text: str, width: float, size: float, indent: float = 0.0) -> list[tuple[str, str]]:
    """Break a paragraph into (drawn, logical) lines that fit ``width``.

    CJK breaks between any two characters (not before closing punctuation); Latin words break
    at spaces, and a long word that does not fit is hyphenated (the drawn line gets ``-``, the
    logical text does not).
    """
    tokens = re.findall(r"[A-Za-z0-9][A-Za-z0-9'’.,:;%]*\s*|\s+|.", text)
    lines: list[tuple[str, str]] = []
    cur = ""
    avail = width - indent
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if _w(cur + tok.rstrip(), size) <= avail:
            cur += tok
            i += 1
            continue
        word = tok.rstrip()
        if word[:1].isalpha() and len(word) >= 7 and not cur.endswith("-"):
            # hyphenate: as many letters as fit, at least 3 on each side
            k = len(word) - 3
            while k >= 3 and (_w(cur + word[:k] + "-", size) > avail or not word[k - 1 : k + 1].isalpha()):
                k -= 1
            if k >= 3:
                lines.append((cur + word[:k] + "-", cur + word[:k]))
                tokens[i] = tok[k:]
                cur = ""
                avail = width
                continue
        if not cur:  # a single token wider than the line: force it
            cur = tok
            i += 1
            continue
        # keep closing punctuation with the line before; openers move to the next line
        while tok[:1] in _NO_START and cur and len(cur) > 1:
            tok = cur[-1] + tok
            cur = cur[:-1]
            tokens[i] = tok
            break
        while cur and cur[-1] in _NO_END and len(cur) > 1:
            tokens[i] = cur[-1] + tokens[i]
            cur = cur[:-1]
        lines.append((cur.rstrip(), cur))
        cur = ""
        avail = width
    if cur.strip():
        lines.append((cur.rstrip(), cur))
    return lines


# ---------------------------------------------------------------------------------------------
# Blocks and the page layout engine
# ---------------------------------------------------------------------------------------------


@dataclass
class Block:
    """A piece of content in reading order: a column paragraph, or a full-width element."""

    kind: str  # "para" | "heading" | "title" | "subtitle" | "byline" | "caption" | "table" | "line"
    text: str = ""
    rows: list[list[str]] = field(default_factory=list)
    gap: float = 0.0  # extra space before, in lines
    figure: bool = False  # a caption under a photo: a grey placeholder is drawn above it


@dataclass
class Drawn:
    x: float
    y: float
    text: str
    logical: str
    size: float
    char_space: float = 0.0
    word_space: float = 0.0


@dataclass
class PageOut:
    label: str
    numbered: bool
    section: str | None
    items: list[Drawn] = field(default_factory=list)
    boxes: list[tuple[float, float, float, float]] = field(default_factory=list)  # grey photos
    tables: list[tuple[float, float, list[float], list[float], list[list[str]], float]] = field(
        default_factory=list
    )  # (x, y_top, col widths, row heights, rows, size)
    truth: list[str] = field(default_factory=list)


class Layout:
    """Two-column flow with full-width elements; balanced columns above a full-width element."""

    def __init__(self, size: float, columns: int = 2) -> None:
        self.size = size
        self.columns = columns
        self.pages: list[list[tuple[str, object]]] = []
        self.y = TOP
        self.pending: list[tuple[str, str, float, float, float]] = []  # drawn, logical, x offset, gap, justify
        self._new_page()

    @property
    def lead(self) -> float:
        return self.size * LEADING

    @property
    def col_w(self) -> float:
        return COL_W if self.columns == 2 else PAGE_W - 2 * MARGIN

    def _new_page(self) -> None:
        self.pages.append([])
        self.y = TOP

    def add_para(self, text: str, indent: bool, gap: float) -> None:
        ind = 2 * self.size if indent else 0.0
        lines = break_lines(text, self.col_w, self.size, ind)
        for k, (drawn, logical) in enumerate(lines):
            # justified: every line but a paragraph's last is stretched to the column width
            target = (self.col_w - (ind if k == 0 else 0.0)) if JUSTIFY and k + 1 < len(lines) else 0.0
            self.pending.append(
                (drawn, logical, ind if k == 0 else 0.0, gap * self.lead if k == 0 else 0.0, target)
            )

    def _heights(self, lines: Sequence[tuple[str, str, float, float, float]], first_in_col: bool) -> float:
        return sum(self.lead + (0.0 if (first_in_col and j == 0) else g) for j, (_, _, _, g, _) in enumerate(lines))

    def _take(self, lines: list[tuple[str, str, float, float, float]], avail: float) -> int:
        """How many of ``lines`` fit in a column of height ``avail``."""
        h, n = 0.0, 0
        for j, (_, _, _, g, _) in enumerate(lines):
            h += self.lead + (0.0 if j == 0 else g)
            if h > avail + 0.01:
                break
            n += 1
        return n

    def _draw_col(self, lines: Sequence[tuple[str, str, float, float, float]], col: int, top: float) -> float:
        x0 = MARGIN + col * (COL_W + GUTTER)
        y = top
        for j, (drawn, logical, ind, g, target) in enumerate(lines):
            y -= (0.0 if j == 0 else g) + self.lead
            d = Drawn(x0 + ind, y + self.lead * 0.25, drawn, logical, self.size)
            if target and len(drawn) > 1:
                extra = max(0.0, target - _w(drawn, self.size))
                if " " in drawn.strip():  # Latin text is justified between words, CJK between characters
                    d.word_space = extra / drawn.strip().count(" ")
                else:
                    d.char_space = extra / (len(drawn) - 1)
            self.pages[-1].append(("text", d))
        return top - y

    def flush(self) -> None:
        """Place the pending column lines: fill whole pages, then balance the rest."""
        while self.pending:
            avail = self.y - BOTTOM
            if self.columns == 1:
                n = self._take(self.pending, avail)
                if n == 0:
                    self._new_page()
                    continue
                used = self._draw_col(self.pending[:n], 0, self.y)
                self.pending = self.pending[n:]
                self.y -= used
                if self.pending:
                    self._new_page()
                continue
            n1 = self._take(self.pending, avail)
            n2 = self._take(self.pending[n1:], avail) if n1 else 0
            if n1 + n2 < len(self.pending):  # more than this band holds: fill both columns
                if n1 == 0:
                    self._new_page()
                    continue
                self._draw_col(self.pending[:n1], 0, self.y)
                self._draw_col(self.pending[n1 : n1 + n2], 1, self.y)
                self.pending = self.pending[n1 + n2 :]
                self._new_page()
                continue
            total = self._heights(self.pending, True)
            k = 1
            while k < len(self.pending) and self._heights(self.pending[:k], True) < total / 2 - 0.01:
                k += 1
            left, right = self.pending[:k], self.pending[k:]
            h1 = self._draw_col(left, 0, self.y)
            h2 = self._draw_col(right, 1, self.y) if right else 0.0
            self.y -= max(h1, h2)
            self.pending = []

    def full(self, kind: str, payload: object, height: float) -> None:
        self.flush()
        if self.y - height < BOTTOM and self.y < TOP:
            self._new_page()
        self.pages[-1].append((kind, (self.y, payload)))
        self.y -= height

    def full_lines(self, text: str, size: float, gap: float, centre: bool = False) -> None:
        lines = break_lines(text, PAGE_W - 2 * MARGIN, size)
        lead = size * LEADING
        self.full("lines", (lines, size, gap * self.lead, centre), gap * self.lead + lead * len(lines))

    def table(self, rows: list[list[str]]) -> None:
        size = max(6.5, self.size - 1.5)
        ncol = max(len(r) for r in rows)
        widths = [max((_w(r[c], size) if c < len(r) else 0) for r in rows) + 8 for c in range(ncol)]
        scale = (PAGE_W - 2 * MARGIN) / sum(widths)
        widths = [w * scale for w in widths]
        heights = [size * 1.9] * len(rows)
        self.full("table", (widths, heights, rows, size), sum(heights) + self.lead)

    def figure(self, height: float) -> None:
        self.full("box", height, height + 0.4 * self.lead)


def lay_out(blocks: Sequence[Block], size: float, columns: int = 2) -> Layout:
    lay = Layout(size, columns)
    for b in blocks:
        if b.kind in ("para", "heading", "line"):
            lay.add_para(b.text, indent=b.kind == "para", gap=b.gap)
        elif b.kind == "title":
            lay.full_lines(b.text, size * 1.9, b.gap)
        elif b.kind in ("subtitle", "byline"):
            lay.full_lines(b.text, size * 1.1, 0.2)
        elif b.kind == "caption":
            if b.figure:
                lay.figure(size * 9)
            lay.full_lines(b.text, size * 0.85, 0.1, centre=len(b.text) < 40)
        elif b.kind == "table":
            lay.table(b.rows)
    lay.flush()
    return lay


def fit(blocks: Sequence[Block], n_pages: int, columns: int = 2, lo: float = 6.0, hi: float = 12.0) -> Layout:
    """The largest font size (step 0.25 pt) at which the blocks fit on ``n_pages`` pages."""
    size = hi
    while size >= lo:
        lay = lay_out(blocks, size, columns)
        if len(lay.pages) <= n_pages:
            return lay
        size -= 0.25
    raise SystemExit(f"content does not fit on {n_pages} page(s) even at {lo} pt")


# ---------------------------------------------------------------------------------------------
# From the magazine text to blocks and page groups
# ---------------------------------------------------------------------------------------------


def _soft(prev: str, nxt: str) -> bool:
    from rag.chunk import _is_soft_break

    return _is_soft_break(prev, nxt)


def blocks_for(text: str, titles: set[str], front: bool = False) -> list[Block]:
    """Blocks of a stretch of the magazine text (one line of the .txt = one paragraph).

    ``front``: front/back matter, where every line is kept as printed (lists, mastheads), and
    a blank line in the text becomes a small vertical gap.
    """
    raw = text.split("\n")
    out: list[Block] = []
    blank = 0
    i = 0
    while i < len(raw):
        s = raw[i].strip()
        if not s:
            blank += 1
            i += 1
            continue
        gap = 0.6 if (blank and out) else 0.0
        blank = 0
        if "\t" in raw[i]:
            rows = []
            while i < len(raw) and "\t" in raw[i]:
                rows.append([c.strip() for c in raw[i].split("\t")])
                i += 1
            ncol = max(len(r) for r in rows)
            out.append(Block("table", rows=[r + [""] * (ncol - len(r)) for r in rows]))
            continue
        i += 1
        n = norm_title(s)
        if front:
            out.append(Block("line", s, gap=gap))
        elif out and out[-1].kind == "title" and norm_title(out[-1].text) + n in titles:
            out[-1].text += " " + s  # the second line of a title broken in the source
        elif n in titles or _next_completes(raw, i, n, titles):
            out.append(Block("title", s, gap=1.0 if out else 0.0))
        elif s.startswith("——") and out and out[-1].kind == "title":
            out.append(Block("subtitle", s))
        elif _BYLINE.match(s):
            out.append(Block("byline", s))
        elif _CAPTION.search(s) and len(s) < 200:
            out.append(Block("caption", s, figure=bool(_FIGURE.search(s))))
        elif out and out[-1].kind == "para" and _soft(out[-1].text, s):
            out[-1].text += s  # a line break of the source extraction inside a sentence
        elif len(s) <= 30 and s[-1] not in "。！？；…”":
            out.append(Block("heading", s, gap=0.5))
        else:
            out.append(Block("para", s))
    return out


def _next_completes(raw: Sequence[str], i: int, n: str, titles: set[str]) -> bool:
    j = i
    while j < len(raw) and not raw[j].strip():
        j += 1
    return j < len(raw) and (n + norm_title(raw[j])) in titles


@dataclass
class Group:
    pages: list[str]  # printed labels, one per physical page
    numbered: bool
    section: str | None
    blocks: list[Block]
    columns: int = 2


def groups_for(doc: Document) -> list[Group]:
    """Page groups: each front/back block one page; body articles grouped by their pages."""
    titles = {norm_title(a.title) for a in doc.articles if a.kind == "article"}
    text = doc.text
    groups: list[Group] = []
    body: dict[str, list[tuple[int, int, str | None]]] = {}
    ranges: dict[str, list[str]] = {}
    for a in doc.articles:
        if a.kind != "article":
            seg = a.segments[0]
            cols = 2 if a.title.startswith("20") else 1  # 大事记 / 之声 run in two columns
            groups.append(
                Group(
                    [seg.pages[0]],
                    False,
                    None,
                    blocks_for(text[seg.start : seg.end], titles, front=True),
                    cols,
                )
            )
            continue
        for seg in a.segments:
            key = seg.pages[0]
            body.setdefault(key, []).append((seg.start, seg.end, a.section))
            if not seg.exact:
                ranges.setdefault(key, list(seg.pages))
    # body page groups: from each start page to the page before the next one
    starts = sorted({int(k) for k in ranges})
    body_groups: list[Group] = []
    for k, p in enumerate(starts):
        last = starts[k + 1] - 1 if k + 1 < len(starts) else int(ranges[str(p)][-1])
        labels = [str(x) for x in range(p, last + 1)]
        pieces = sorted(x for lab in labels for x in body.get(lab, []))
        blocks: list[Block] = []
        for a, b, _ in pieces:
            blocks.extend(blocks_for(text[a:b], titles))
        section = pieces[0][2] if pieces else None
        body_groups.append(Group(labels, True, section, blocks))
    # order: front matter, body, back matter
    front = [g for g in groups if g.pages[0] != "封底"]
    back = [g for g in groups if g.pages[0] == "封底"]
    return front + body_groups + back


# ---------------------------------------------------------------------------------------------
# Drawing
# ---------------------------------------------------------------------------------------------


def _render_group(g: Group) -> list[PageOut]:
    if not g.numbered:
        lay = fit(g.blocks, 1, g.columns, lo=5.0, hi=11.0)
    else:
        lay = fit(g.blocks, len(g.pages), g.columns)
    pages: list[PageOut] = []
    for k, label in enumerate(g.pages):
        po = PageOut(label, g.numbered, g.section)
        items = lay.pages[k] if k < len(lay.pages) else []
        if not items:  # the text ran out before the printed range did: a full-page photo
            po.boxes.append((MARGIN, TOP - 420, PAGE_W - 2 * MARGIN, 420))
        for kind, payload in items:
            if kind == "text":
                assert isinstance(payload, Drawn)
                po.items.append(payload)
                po.truth.append(payload.logical)
            elif kind == "lines":
                y, (lines, size, gap, centre) = payload  # type: ignore[misc]
                y -= gap
                for drawn, logical in lines:
                    y -= size * LEADING
                    x = (PAGE_W - _w(drawn, size)) / 2 if centre else MARGIN
                    po.items.append(Drawn(x, y + size * LEADING * 0.25, drawn, logical, size))
                    po.truth.append(logical)
            elif kind == "box":
                y, h = payload  # type: ignore[misc]
                po.boxes.append((MARGIN + 40, y - h, PAGE_W - 2 * MARGIN - 80, h))
            elif kind == "table":
                y, (widths, heights, rows, size) = payload  # type: ignore[misc]
                po.tables.append((MARGIN, y - lay.lead * 0.5, widths, heights, rows, size))
                po.truth.extend("".join(r) for r in rows)
        pages.append(po)
    return pages


def _draw(c: rl_canvas.Canvas, po: PageOut, issue: str) -> None:
    if STYLE == "bare":
        pass
    elif po.numbered and STYLE == "alt":
        c.setFont(FONT, 8.5)
        c.setFillColor(colors.HexColor("#444444"))
        foot = f"{issue} · {po.section} | {po.label.zfill(2)}" if po.section else f"{issue} | {po.label.zfill(2)}"
        if int(po.label) % 2:
            c.drawRightString(PAGE_W - MARGIN, 36, foot)
        else:
            c.drawString(MARGIN, 36, foot)
    elif po.numbered:
        c.setFont(FONT, 8.5)
        c.setFillColor(colors.HexColor("#444444"))
        head = f"{issue} · {po.section}" if po.section else issue
        c.drawString(MARGIN, PAGE_H - 45, head)
        c.setStrokeColor(colors.HexColor("#888888"))
        c.setLineWidth(0.6)
        c.line(MARGIN, PAGE_H - 52, PAGE_W - MARGIN, PAGE_H - 52)
        c.setFont(FONT, 9)
        num = po.label.zfill(2)
        if int(po.label) % 2:  # odd pages on the right: the number in the outer corner
            c.drawRightString(PAGE_W - MARGIN, 34, num)
        else:
            c.drawString(MARGIN, 34, num)
    c.setFillColor(colors.HexColor("#dddddd"))
    for x, y, w, h in po.boxes:
        c.rect(x, y, w, h, stroke=0, fill=1)
    c.setFillColor(colors.black)
    for d in po.items:
        c.setFont(FONT, d.size)
        c.drawString(d.x, d.y, d.text, charSpace=d.char_space, wordSpace=d.word_space or None)
    c.setStrokeColor(colors.black)
    c.setLineWidth(0.5)
    for x, top, widths, heights, rows, size in po.tables:
        xs = [x]
        for w in widths:
            xs.append(xs[-1] + w)
        ys = [top]
        for h in heights:
            ys.append(ys[-1] - h)
        c.grid(xs, ys)
        c.setFont(FONT, size)
        for r, row in enumerate(rows):
            for col, cell in enumerate(row):
                if cell:
                    c.drawString(xs[col] + 4, ys[r + 1] + (heights[r] - size) / 2 + 1, cell)


def render(
    txt: Path,
    page_labels: bool = False,
    raster: Sequence[int] = (),
    dpi: int = 200,
    style: str = "standard",
) -> tuple[bytes, list[dict]]:
    """Render the issue; returns (PDF bytes, truth per physical page).

    ``raster``: 0-based physical pages replaced by an image of themselves (a scan: no text).
    ``style``: ``standard`` or ``alt`` (another layout of the same issue, see ``_STYLES``).
    """
    _register()
    _use_style(style)
    doc = load_text(txt, txt.read_bytes(), txt.stem, "")
    m = re.search(r"(\d{4})年第(\d+)期", doc.title)
    name = re.match(r"《(.+?)》", doc.title)
    issue = f"{name.group(1) if name else '广东工运'} {m.group(1)}.{int(m.group(2)):02d}" if m else doc.title
    pages: list[PageOut] = []
    for g in groups_for(doc):
        pages.extend(_render_group(g))
    buf = io.BytesIO()
    c = rl_canvas.Canvas(buf, pagesize=A4)
    c.setTitle(doc.title)
    for po in pages:
        _draw(c, po, issue)
        c.showPage()
    c.save()
    data = buf.getvalue()
    if raster or page_labels:
        data = _post(data, pages, page_labels, raster, dpi)
    truth = [
        {"physical": i, "label": po.label, "numbered": po.numbered, "scanned": i in raster, "lines": po.truth}
        for i, po in enumerate(pages)
    ]
    return data, truth


def _post(data: bytes, pages: Sequence[PageOut], page_labels: bool, raster: Sequence[int], dpi: int) -> bytes:
    """Rasterise pages (pypdfium2 render → image-only page) and add /PageLabels (pypdf)."""
    import pypdfium2 as pdfium
    from pypdf import PdfReader, PdfWriter

    scans: dict[int, bytes] = {}
    if raster:
        pdf = pdfium.PdfDocument(data)
        for i in raster:
            img = pdf[i].render(scale=dpi / 72).to_pil().convert("L")
            b = io.BytesIO()
            c = rl_canvas.Canvas(b, pagesize=A4)
            png = io.BytesIO()
            img.save(png, format="PNG")
            png.seek(0)
            from reportlab.lib.utils import ImageReader

            c.drawImage(ImageReader(png), 0, 0, PAGE_W, PAGE_H)
            c.showPage()
            c.save()
            scans[i] = b.getvalue()
        pdf.close()
    reader = PdfReader(io.BytesIO(data))
    writer = PdfWriter()
    for i, page in enumerate(reader.pages):
        writer.add_page(PdfReader(io.BytesIO(scans[i])).pages[0] if i in scans else page)
    if page_labels:
        for i, po in enumerate(pages):
            if po.numbered:
                writer.set_page_label(i, i, style="/D", start=int(po.label))
            else:
                writer.set_page_label(i, i, prefix=po.label)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("txt", type=Path, help="the magazine issue as text (bundled format)")
    ap.add_argument("--out", type=Path, required=True, help="the PDF to write (plus <out>.truth.json)")
    ap.add_argument("--page-labels", action="store_true", help="add /PageLabels (封面, 封二, 1, 2, ...)")
    ap.add_argument("--raster", default="", help="1-based physical pages to turn into scans, e.g. 7,8")
    ap.add_argument("--dpi", type=int, default=200, help="resolution of the rasterised pages")
    ap.add_argument("--style", choices=sorted(_STYLES), default="standard", help="page design")
    a = ap.parse_args(argv)
    raster = [int(x) - 1 for x in a.raster.split(",") if x.strip()]
    data, truth = render(a.txt, a.page_labels, raster, a.dpi, a.style)
    a.out.write_bytes(data)
    a.out.with_suffix(a.out.suffix + ".truth.json").write_text(
        json.dumps(truth, ensure_ascii=False, indent=1), encoding="utf-8"
    )
    print(f"{a.out}: {len(truth)} pages", file=sys.stderr)


if __name__ == "__main__":
    main()
