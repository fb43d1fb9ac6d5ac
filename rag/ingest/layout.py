"""Reading order and reflow of a printed page, from the positions of its characters.

A magazine page is set in columns with full-width titles, captions and tables between them; a
text layer (or an OCR of a scan) gives positioned glyphs, not sentences. This module turns them
into the text a reader reads:

1. glyphs → *fragments*: runs of glyphs on one baseline without a column-sized gap;
2. the gutter: the vertical strip in the middle that no ordinary fragment crosses; fragments
   crossing it are full width and cut the page into bands, each read left column then right;
3. lines → paragraphs: a new paragraph starts at an indent, a vertical gap, a change of font
   size, or after a line that stops short of the column's right edge; wrapped lines join
   without a space between CJK characters, with one between Latin words, and a word hyphenated
   at a line end is rejoined;
4. gridded tables (stroked rules crossing each other) are read cell by cell into
   tab-separated rows, header included, at their place in the flow.

Paragraphs are separated by a blank line when the print sets them apart (indent, gap, another
size) and by a single line break when they are tight lines (a list, a title on two lines, the
entries of a 目录), which is how the text loader's structure detection reads a plain-text issue.

Coordinates are PDF points measured from the page's *top* edge (``top < bottom``).
"""

from __future__ import annotations

import re
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Glyph:
    """One character with its box (points, from the top-left corner) and font size."""

    text: str
    x0: float
    top: float
    x1: float
    bottom: float
    size: float


@dataclass
class Frag:
    """A run of glyphs on one baseline: one line of one column (or a full-width line)."""

    text: str
    x0: float
    top: float
    x1: float
    bottom: float
    size: float
    full: bool = False  # crosses the gutter: a title, caption or other full-width line
    table: list[list[str]] | None = None  # a table placed as one block in the flow
    score: float = 1.0  # OCR confidence of the line (1 for a text layer)
    left: float | None = None  # the edges of the column the line belongs to (set by reading_order)
    right: float | None = None
    parts: list[Frag] = field(default_factory=list)  # the cell lines a ruleless table was made of

    @property
    def mid(self) -> float:
        return (self.top + self.bottom) / 2


@dataclass(frozen=True)
class Rule:
    """A stroked straight line: horizontal (y0 == y1) or vertical (x0 == x1)."""

    x0: float
    y0: float
    x1: float
    y1: float


@dataclass
class PageLayout:
    """The reading-order text of one page, plus its header/footer lines (removed from it)."""

    body: list[Frag]
    margins: list[Frag] = field(default_factory=list)


_BYLINE = re.compile(r"^\s*(?:■\s*)?文\s*[|｜/／:：]")
_ENDS = "。！？；：:;!?”」』）)…"
_CJK = re.compile(r"[\u2014\u2015\u2026\u2e80-\u9fff\uf900-\ufaff\u3000-\u303f\uff00-\uffef“”‘’]")


# ---------------------------------------------------------------------------------------------
# Glyphs → fragments
# ---------------------------------------------------------------------------------------------


def glyph_gutter(glyphs: Sequence[Glyph], width: float) -> float | None:
    """The x of an empty vertical strip in the middle of the page (a column gutter), if any.

    Counts the glyphs covering each point of the middle third; a gutter is covered only by
    the few full-width lines (titles, captions), a column by every line. Finding it from the
    glyphs, before lines are formed, keeps a narrow gutter of justified columns from being
    read as a word space that joins the two columns' lines.
    """
    lo, hi = int(width * 0.3), int(width * 0.7)
    if hi - lo < 10 or len(glyphs) < 50:
        return None
    cover = [0] * (hi - lo)
    for g in glyphs:
        for x in range(max(lo, int(g.x0)), min(hi, int(g.x1) + 1)):
            cover[x - lo] += 1
    peak = max(cover)
    if peak == 0:
        return None
    low = [c <= 0.1 * peak for c in cover]
    best: tuple[int, int] | None = None
    i = 0
    while i < len(low):
        if low[i]:
            j = i
            while j < len(low) and low[j]:
                j += 1
            if best is None or j - i > best[1] - best[0]:
                best = (i, j)
            i = j
        else:
            i += 1
    if best is None or best[1] - best[0] < 4:
        return None
    return lo + (best[0] + best[1]) / 2


def fragments(glyphs: Sequence[Glyph], split_x: float | None = None) -> list[Frag]:
    """Group glyphs into line fragments; spaces come from gaps, not from the text layer.

    ``split_x``: a column gutter; a gap across it ends a fragment even when it is narrow.
    """
    rows: list[list[Glyph]] = []
    for g in sorted(glyphs, key=lambda g: ((g.top + g.bottom) / 2, g.x0)):
        mid = (g.top + g.bottom) / 2
        if rows:
            r = rows[-1]
            rmid = statistics.fmean((x.top + x.bottom) / 2 for x in r[-3:])
            if abs(mid - rmid) <= 0.35 * max(g.size, r[-1].size, 1.0):
                r.append(g)
                continue
        rows.append([g])
    out: list[Frag] = []
    for r in rows:
        r.sort(key=lambda g: g.x0)
        cur: list[Glyph] = []
        for g in r:
            gap = g.x0 - cur[-1].x1 if cur else 0.0
            across = split_x is not None and cur and cur[-1].x1 - 1 <= split_x <= g.x0 + 1 and gap > 0.5 * g.size
            if cur and (gap > max(1.2 * g.size, 6.0) or across):
                out.append(_frag(cur))
                cur = []
            cur.append(g)
        if cur:
            out.append(_frag(cur))
    return [f for f in out if f.text.strip()]


def _frag(gs: Sequence[Glyph]) -> Frag:
    parts: list[str] = []
    for k, g in enumerate(gs):
        space = g.text.isspace()
        # a gap makes a space only where it is wider than justification stretches: 0.6 em next to
        # a CJK character, 0.25 em between Latin ones (text layers often omit space characters)
        gap = g.x0 - gs[k - 1].x1 if k else 0.0
        wide = 0.6 if (_CJK.match(g.text) or _CJK.match(gs[k - 1].text)) else 0.25
        if k and (space or gap > wide * g.size) and parts and parts[-1] != " ":
            parts.append(" ")
        if not space:
            parts.append(g.text)
    gs = [g for g in gs if not g.text.isspace()] or list(gs)
    sizes = [g.size for g in gs]
    return Frag(
        text="".join(parts).strip(),
        x0=min(g.x0 for g in gs),
        top=min(g.top for g in gs),
        x1=max(g.x1 for g in gs),
        bottom=max(g.bottom for g in gs),
        size=statistics.median(sizes),
    )


# ---------------------------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------------------------


def tables(rules: Sequence[Rule], glyphs: Sequence[Glyph], tol: float = 1.5) -> list[tuple[Frag, set[int]]]:
    """Gridded tables: (a Frag holding the rows, indices of the glyphs inside it).

    A table is a set of horizontal and vertical rules that cross one another, with at least
    three of each (two rows, two columns); a cell's text is its glyphs in reading order.
    """
    hs = [r for r in rules if abs(r.y0 - r.y1) <= tol and abs(r.x1 - r.x0) > 10]
    vs = [r for r in rules if abs(r.x0 - r.x1) <= tol and abs(r.y1 - r.y0) > 5]
    if len(hs) < 3 or len(vs) < 3:
        return []
    # connected components of crossing rules (union-find over h and v rules)
    parent = list(range(len(hs) + len(vs)))

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for i, h in enumerate(hs):
        hx0, hx1 = sorted((h.x0, h.x1))
        for j, v in enumerate(vs):
            vy0, vy1 = sorted((v.y0, v.y1))
            if hx0 - tol <= v.x0 <= hx1 + tol and vy0 - tol <= h.y0 <= vy1 + tol:
                parent[find(i)] = find(len(hs) + j)
    comps: dict[int, tuple[list[Rule], list[Rule]]] = {}
    for i, h in enumerate(hs):
        comps.setdefault(find(i), ([], []))[0].append(h)
    for j, v in enumerate(vs):
        comps.setdefault(find(len(hs) + j), ([], []))[1].append(v)
    out: list[tuple[Frag, set[int]]] = []
    for hl, vl in comps.values():
        ys = _distinct(sorted(h.y0 for h in hl), tol)
        xs = _distinct(sorted(v.x0 for v in vl), tol)
        if len(ys) < 3 or len(xs) < 3:
            continue
        cells: list[list[list[Glyph]]] = [[[] for _ in xs[:-1]] for _ in ys[:-1]]
        inside: set[int] = set()
        for k, g in enumerate(glyphs):
            cx, cy = (g.x0 + g.x1) / 2, (g.top + g.bottom) / 2
            if not (xs[0] < cx < xs[-1] and ys[0] < cy < ys[-1]):
                continue
            inside.add(k)
            r = next(i for i in range(len(ys) - 1) if cy < ys[i + 1])
            c = next(i for i in range(len(xs) - 1) if cx < xs[i + 1])
            cells[r][c].append(g)
        rows = [[_cell_text(c) for c in row] for row in cells]
        rows = [r for r in rows if any(r)]
        if not rows:
            continue
        size = statistics.median([g.size for k, g in enumerate(glyphs) if k in inside] or [10.0])
        out.append((Frag("", xs[0], ys[0], xs[-1], ys[-1], size, full=True, table=rows), inside))
    return out


def _distinct(vals: Sequence[float], tol: float) -> list[float]:
    out: list[float] = []
    for v in vals:
        if not out or v - out[-1] > tol:
            out.append(v)
    return out


def _cell_text(gs: Sequence[Glyph]) -> str:
    lines = [f.text for f in sorted(fragments(gs), key=lambda f: (f.mid, f.x0))]
    text = ""
    for ln in lines:
        text = join_lines(text, ln) if text else ln
    return text.strip()


# ---------------------------------------------------------------------------------------------
# Columns and reading order
# ---------------------------------------------------------------------------------------------


def gutter(frags: Sequence[Frag], width: float) -> float | None:
    """The x of the column gutter, or None for a single-column page.

    The gutter is the x in the middle third of the page crossed by the fewest fragments, with
    enough lines entirely on each side of it; crossing fragments are the full-width ones.
    """
    body = [f for f in frags if f.table is None]
    if len(body) < 6:
        return None
    best: tuple[int, float] | None = None
    x = width * 0.33
    while x <= width * 0.67:
        cross = sum(1 for f in body if f.x0 < x < f.x1)
        left = sum(1 for f in body if f.x1 <= x)
        right = sum(1 for f in body if f.x0 >= x)
        if left >= 3 and right >= 3 and (best is None or cross < best[0]):
            best = (cross, x)
        x += 2.0
    if best is None:
        return None
    cross, x = best
    # a real gutter: most lines stay on one side of it
    if cross > 0.4 * len(body):
        return None
    # centre of the empty strip around x
    lo, hi = x, x
    while lo > width * 0.25 and not any(f.x0 < lo - 1 < f.x1 and not _crosses(f, x) for f in body):
        lo -= 1
    while hi < width * 0.75 and not any(f.x0 < hi + 1 < f.x1 and not _crosses(f, x) for f in body):
        hi += 1
    return (lo + hi) / 2


def _crosses(f: Frag, x: float) -> bool:
    return f.x0 < x < f.x1


def _edges(lines: Sequence[Frag], min_width: float = 0.0) -> None:
    """Set the left and right edge of a column from the lines that share them.

    The right edge is the right margin where at least two lines (and a tenth of them) end: in a
    list of short lines (a 目录, a masthead) the longest line alone does not make an edge, so no
    line of it counts as running on.
    """
    if not lines:
        return
    size = statistics.median(f.size for f in lines)
    x1s = sorted((f.x1 for f in lines), reverse=True)
    need = max(2, int(0.1 * len(lines)))
    right = float("inf")
    # the edge is at the right margin: among the longest lines, not a cluster of short ones
    for x in (v for v in x1s if v >= x1s[0] - 3 * size):
        if sum(1 for v in x1s if x - size <= v <= x + 0.5 * size) >= need:
            right = x
            break
    x0s = Counter(round(f.x0) for f in lines)
    shared = [x for x, c in x0s.items() if c >= 2]
    left = float(min(shared)) if shared else min(f.x0 for f in lines)
    if right - left < min_width:  # short lines of similar length (a masthead) make no column
        right = float("inf")
    for f in lines:
        f.left, f.right = left, right


def ruleless_tables(frags: Sequence[Frag]) -> list[Frag]:
    """Rows of three or more cells on one baseline, two or more rows in a row: a table without rules.

    A scan has no rules to find a grid by, and two-column prose never has more than two
    fragments on one baseline, so such rows are read as one table (cells placed in columns
    by their left edges, empty cells kept), not split between the columns.
    """
    rows: list[list[Frag]] = []
    for f in sorted((f for f in frags if f.table is None), key=lambda f: (f.mid, f.x0)):
        if rows and abs(f.mid - rows[-1][0].mid) <= 0.4 * max(f.size, rows[-1][0].size):
            rows[-1].append(f)
        else:
            rows.append([f])
    out: list[Frag] = []
    block: list[list[Frag]] = []
    for r in [*rows, []]:
        if len(r) >= 3 and (not block or r[0].top - block[-1][0].bottom < 2.5 * r[0].size):
            block.append(sorted(r, key=lambda f: f.x0))
            continue
        if len(block) >= 2:
            out.append(_cells_to_table(block))
        block = [sorted(r, key=lambda f: f.x0)] if len(r) >= 3 else []
    return out


def _cells_to_table(block: list[list[Frag]]) -> Frag:
    size = statistics.median(f.size for r in block for f in r)
    starts: list[float] = []
    for x in sorted(f.x0 for r in block for f in r):
        if not starts or x - starts[-1] > size:
            starts.append(x)
    rows: list[list[str]] = []
    for r in block:
        cells = [""] * len(starts)
        for f in r:
            k = max(i for i, x in enumerate(starts) if x <= f.x0 + size)
            cells[k] = join_lines(cells[k], f.text) if cells[k] else f.text
        rows.append(cells)
    cells_ = [f for r in block for f in r]
    return Frag(
        "",
        min(f.x0 for f in cells_),
        min(f.top for f in cells_),
        max(f.x1 for f in cells_),
        max(f.bottom for f in cells_),
        size,
        full=True,
        table=rows,
        parts=cells_,
    )


def reading_order(frags: Sequence[Frag], width: float) -> list[list[Frag]]:
    """Fragments grouped into *columns runs* in reading order.

    Each run is a list of lines read top to bottom (one column of one band, or one full-width
    element); runs are ordered band by band, left column before right.
    """
    found = ruleless_tables(frags)
    if found:
        used = {id(p) for t in found for p in t.parts}
        frags = [f for f in frags if id(f) not in used] + found
    g = gutter(frags, width)
    items = sorted(frags, key=lambda f: (f.top, f.x0))
    if g is None:  # one column: tables still stand apart from the lines around them
        _edges([f for f in items if f.table is None], 0.3 * width)
        runs1: list[list[Frag]] = []
        for f in items:
            if f.table is not None:
                runs1.append([f])
            elif runs1 and runs1[-1][0].table is None:
                runs1[-1].append(f)
            else:
                runs1.append([f])
        return runs1
    for f in items:
        f.full = f.table is not None or _crosses(f, g)
    # the short last line of a full-width element (a caption) does not reach the gutter
    for k, f in enumerate(items):
        if f.full or f.table is not None:
            continue
        above = [p for p in items[:k] if p.full and p.table is None and 0 <= f.top - p.bottom < p.size]
        if above and abs(above[-1].x0 - f.x0) < 2 and _same_size(above[-1].size, f.size):
            f.full = True
    fulls = [f for f in items if f.full]
    lefts = [f for f in items if not f.full and f.x1 <= g]
    rights = [f for f in items if not f.full and f.x0 >= g]
    _edges(lefts, 0.6 * (g - min((f.x0 for f in lefts), default=g)))
    _edges(rights, 0.6 * (max((f.x1 for f in rights), default=g) - g))
    # full-width lines span from the left column's left edge to the right column's right edge
    _edges([f for f in fulls if f.table is None])
    if lefts and rights and rights[0].right != float("inf"):
        for f in fulls:
            f.left, f.right = lefts[0].left, rights[0].right
    runs: list[list[Frag]] = []
    band_top = -1e9
    for cut in [*fulls, None]:
        band_bottom = cut.top if cut is not None else 1e9
        band = [f for f in items if not f.full and band_top <= f.mid < band_bottom]
        left = [f for f in band if f.x1 <= g]
        right = [f for f in band if f.x0 >= g]
        if left:
            runs.append(left)
        if right:
            runs.append(right)
        if cut is not None:
            # consecutive full-width lines of one element (a title on two lines) read as one run
            if runs and runs[-1] and runs[-1][-1].full and runs[-1][-1].table is None and cut.table is None:
                runs[-1].append(cut)
            else:
                runs.append([cut])
            band_top = cut.bottom
    return runs


# ---------------------------------------------------------------------------------------------
# Reflow
# ---------------------------------------------------------------------------------------------


def join_lines(prev: str, nxt: str) -> str:
    """Join a wrapped line to the next: CJK directly, Latin words with a space, de-hyphenated."""
    if not prev:
        return nxt
    if not nxt:
        return prev
    a, b = prev[-1], nxt[0]
    if a == "-" and len(prev) > 1 and prev[-2].isalpha() and b.isalpha() and b.islower():
        return prev[:-1] + nxt
    if _CJK.match(a) or _CJK.match(b):
        return prev + nxt
    if a.isspace():
        return prev + nxt
    return prev + " " + nxt


def _same_size(a: float, b: float) -> bool:
    return abs(a - b) <= max(0.5, 0.08 * max(a, b))


def reflow(runs: Sequence[Sequence[Frag]]) -> str:
    """Paragraph text of a page from its runs (see the module docstring for the rules).

    A column paragraph interrupted by a full-width element (a photo caption between two bands)
    continues after it: the caption is kept as its own paragraph after the one it interrupted.
    """
    paras: list[list[str]] = []  # [separator before, text]
    open_idx: int | None = None  # the column paragraph the next column line may continue
    last: Frag | None = None  # the last column line
    last_full = False  # ... and whether it reached its column's right edge
    for run in runs:
        if not run:
            continue
        if run[0].table is not None:
            rows = "\n".join("\t".join(" ".join(c.split()) for c in r) for r in run[0].table)
            paras.append(["\n\n", rows])
            continue
        full_run = run[0].full
        cur: int | None = None
        for k, f in enumerate(run):
            text = f.text.strip()
            left = f.left if f.left is not None else min(x.x0 for x in run)
            indent = f.x0 - left > 0.8 * f.size
            if k == 0:
                if (
                    not full_run
                    and open_idx is not None
                    and last is not None
                    and last_full
                    and not indent
                    and _same_size(last.size, f.size)
                ):
                    paras[open_idx][1] = join_lines(paras[open_idx][1], text)
                    cur = open_idx
                else:
                    paras.append(["\n\n", text])
                    cur = len(paras) - 1
            else:
                p = run[k - 1]
                p_full = _reaches_edge(p)
                gap = f.top - p.bottom
                if not _same_size(p.size, f.size) or gap > 0.9 * f.size or indent:
                    paras.append(["\n\n", text])
                    cur = len(paras) - 1
                elif not p_full or text.startswith("——") or _BYLINE.match(text):
                    # a subtitle or byline is never run on
                    paras.append(["\n", text])
                    cur = len(paras) - 1
                else:
                    assert cur is not None
                    paras[cur][1] = join_lines(paras[cur][1], text)
            if not full_run:
                open_idx, last = cur, f
                last_full = _reaches_edge(f)
    text = ""
    for k, (sep, body) in enumerate(paras):
        text += (sep if k else "") + body
    return text


def _reaches_edge(f: Frag) -> bool:
    # 2 characters of slack: CJK line-breaking rules move a character or two to the next line;
    # a line stopping mid-sentence may be shorter still when a number or word did not fit
    if f.right is None or f.right == float("inf"):
        return False
    short = abs(f.right - f.x1)
    return short <= 2.2 * f.size or (short <= 6 * f.size and f.text.rstrip()[-1:] not in _ENDS)


def page_text(frags: Sequence[Frag], width: float) -> str:
    """Reading-order, reflowed text of a page's body fragments."""
    return reflow(reading_order(frags, width))


# ---------------------------------------------------------------------------------------------
# Running headers and footers
# ---------------------------------------------------------------------------------------------

_DIGITS = re.compile(r"\d+")


def margin_key(text: str) -> str:
    """A header/footer line with its numbers folded, so ``06`` and ``07`` repeat as one line."""
    return _DIGITS.sub("#", "".join(text.split()))


def split_margins(
    pages: Sequence[Sequence[Frag]], heights: Sequence[float], zone: float = 0.09
) -> list[PageLayout]:
    """Separate running headers/footers (and page numbers) from each page's body.

    A line in the top or bottom ``zone`` of the page is a margin line when it is a bare
    number (a page number), or when its text with numbers folded recurs on at least two other
    pages in the same zone (a running header such as ``广东工运 2025.12 · 调研`` varies only in
    its section, so lines sharing the part before ``·`` count as the same header).
    """
    from .text import is_folio_line

    def zone_of(f: Frag, h: float) -> str | None:
        if f.bottom <= h * zone:
            return "top"
        if f.top >= h * (1 - zone):
            return "bottom"
        return None

    counts: dict[tuple[str, str], int] = {}
    for frs, h in zip(pages, heights, strict=True):
        seen: set[tuple[str, str]] = set()
        for f in frs:
            z = zone_of(f, h)
            if z:
                seen.add((z, _header_key(f.text)))
        for key in seen:
            counts[key] = counts.get(key, 0) + 1
    out: list[PageLayout] = []
    for frs, h in zip(pages, heights, strict=True):
        body: list[Frag] = []
        margins: list[Frag] = []
        for f in frs:
            z = zone_of(f, h)
            if z and f.table is None and (is_folio_line(f.text) or counts.get((z, _header_key(f.text)), 0) >= 3):
                margins.append(f)
            else:
                body.append(f)
        out.append(PageLayout(body, margins))
    return out


def _header_key(text: str) -> str:
    return margin_key(re.split(r"\s*[·•|｜]\s*", text.strip(), maxsplit=1)[0])


def header_section(margins: Sequence[Frag]) -> str | None:
    """The section (栏目) named in a running header ``广东工运 2025.12 · 调研``."""
    for f in margins:
        m = re.search(r"[·•|｜]\s*(\S{1,8})\s*$", f.text.strip())
        if m and not m.group(1).isdigit():
            return m.group(1)
    return None
