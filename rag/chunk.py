"""Documents → chunks: Chinese-aware, article-bounded, labelled with printed pages.

Each article is cut into *runs* of contiguous segments (a continuation printed elsewhere is
its own run), so no chunk crosses an article or a jump in the text. A run is split into
prose and tables:

* prose is first normalised (whitespace collapsed; paragraphs that a page or column break
  cut mid-sentence are re-joined; a short heading is glued to the paragraph under it) while
  keeping a map back to the source offsets, then split with langchain's
  ``RecursiveCharacterTextSplitter`` at paragraphs, then sentence ends (。！？ plus any closing
  quote, kept with the sentence), then lines, clauses (；，) and finally characters;
* tab-separated tables become ``kind="table"`` chunks split by row groups, each repeating
  the caption and header rows.

A chunk's pages are those of exactly the segments its text overlaps; for sources with
physical pages (PDF) it also records the 0-based pages and where in its text each begins,
so a citation can name the page of its own sentence. Optional ``meta``
chunks state each article's title, section, unit, author and pages in Chinese so that
"which page / which article" questions can retrieve them.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Sequence
from dataclasses import dataclass

from langchain_text_splitters import RecursiveCharacterTextSplitter

from rag.config import ChunkSettings
from rag.ingest.text import is_folio_line, is_marker_line, norm_title
from rag.types import Article, Chunk, Document, Segment

_CLOSERS = "”’」』》）)\"'"
_STOPS = "。！？!?…"
# Zero-width split points right after a sentence end (and any closing quotes/brackets),
# so the punctuation stays with its sentence. Python needs fixed-width look-behinds,
# hence one alternative per width.
_SENTENCE_SPLIT = (
    rf"(?:(?<=[{_STOPS}])|(?<=[{_STOPS}][{_CLOSERS}])|(?<=[{_STOPS}][{_CLOSERS}][{_CLOSERS}]))"
    rf"(?![{_CLOSERS}{_STOPS}])"
)
SEPARATORS: list[str] = [
    r"\n\n",
    _SENTENCE_SPLIT,
    r"\n",
    r"(?<=[；;])",
    r"(?<=[，,、：:])",
    "",
]

_CAPTION = re.compile(r"^\s*(?:续?表|Table)\s*[0-9一二三四五六七八九十]+")
_NUMERIC = re.compile(r"^[\s+\-−—–]*[0-9][0-9,，.．%％\s]*$")
_HEADING_START = re.compile(
    r"^\s*(?:[(（][一二三四五六七八九十\d]+[)）]|[一二三四五六七八九十]+[、是]|\d+[.、．]|[-•·*]\s)"
)
_BYLINE = re.compile(r"^\s*(?:文|作者|作者单位|摄影|图|供图)\s*[|｜/／:：]")
_CREDIT = re.compile(r"(?:(?:摄影|供图|图|来源)\s*[|｜/／:：]\s*\S{1,12}|(?:资料|网络)?图片|视频截图)$")


@dataclass(frozen=True)
class _Piece:
    text: str
    start: int
    end: int
    kind: str  # "body" | "table"
    # source offset (into Document.text) of each character of ``text``: where its pages begin
    offsets: tuple[int, ...] = ()


# ---------------------------------------------------------------------------------------------
# Prose
# ---------------------------------------------------------------------------------------------


def _paragraphs(text: str, a: int, b: int) -> list[list[tuple[int, int]]]:
    """Paragraphs in text[a:b] as lists of (start, end) of their non-blank lines."""
    paras: list[list[tuple[int, int]]] = []
    cur: list[tuple[int, int]] = []
    pos = a
    for raw in re.split(r"(\n|\f)", text[a:b]):
        if raw in ("\n", "\f"):
            pos += 1
            continue
        start, end = pos, pos + len(raw)
        pos = end
        s = raw.strip()
        if not s or is_marker_line(raw):
            if cur:
                paras.append(cur)
                cur = []
            continue
        lead = len(raw) - len(raw.lstrip())
        cur.append((start + lead, start + lead + len(s)))
    if cur:
        paras.append(cur)
    return paras


def _is_soft_break(prev: str, nxt: str) -> bool:
    """True when a paragraph break only reflects a page/column break inside a sentence.

    The previous paragraph ends in a character (not punctuation) and reads as body text
    (it holds a sentence end, or is a long line that is not a numbered heading), is not a
    photo credit, and the next one does not open a heading, list item or byline.
    """
    if not prev or not nxt:
        return False
    last = prev[-1]
    if not (last.isalnum() or "\u4e00" <= last <= "\u9fff"):
        return False
    if _CREDIT.search(prev):
        return False
    body_like = any(ch in _STOPS for ch in prev) or (len(prev) >= 20 and not _HEADING_START.match(prev))
    if not body_like:
        return False
    if _HEADING_START.match(nxt) or _BYLINE.match(nxt):
        return False
    return not nxt.startswith(("——", "图", "表"))


def _is_heading(s: str) -> bool:
    """A short line that introduces the paragraph below it (kept on the same chunk).

    Either short and unpunctuated (``工作背景``), or a numbered one-sentence heading
    (``（三）打造行业协商样本，有效覆盖小微企业。``).
    """
    if _BYLINE.match(s):
        return False
    if len(s) <= 30 and s[-1] not in _STOPS + "；;，,：:":
        return True
    body = s.rstrip(_STOPS)
    return len(s) <= 40 and bool(_HEADING_START.match(s)) and not any(ch in _STOPS for ch in body)


def normalise(text: str, ranges: Sequence[tuple[int, int]]) -> tuple[str, list[int]]:
    """Whitespace-normalised prose of the given text ranges and, per output char, its offset.

    Runs of spaces become one space; paragraphs are separated by a blank line, except that
    a soft (mid-sentence) break is removed and a short heading is kept on the line above its
    paragraph so the splitter does not separate them. Ranges are the pieces of one run (its
    pages), so page headers/footers and markers between them never reach the output.
    """
    out: list[str] = []
    idx: list[int] = []
    paras = [p for a, b in ranges for p in _paragraphs(text, a, b)]
    prev_last = ""
    for k, para in enumerate(paras):
        first = text[para[0][0] : para[0][1]]
        if k:
            if _is_soft_break(prev_last, first):
                sep = ""
            elif _is_heading(prev_last) and len(paras[k - 1]) == 1:
                sep = "\n"
            else:
                sep = "\n\n"
            gap = paras[k - 1][-1][1]
            for ch in sep:
                out.append(ch)
                idx.append(gap)
        for j, (s, e) in enumerate(para):
            if j:
                out.append("\n")
                idx.append(para[j - 1][1])
            space = False
            for off in range(s, e):
                ch = text[off]
                if ch in " \t\u3000\u00a0":
                    if not space:
                        out.append(" ")
                        idx.append(off)
                    space = True
                    continue
                space = False
                out.append(ch)
                idx.append(off)
        prev_last = text[para[-1][0] : para[-1][1]]
    return "".join(out), idx


def _splitter(settings: ChunkSettings) -> RecursiveCharacterTextSplitter:
    return RecursiveCharacterTextSplitter(
        separators=SEPARATORS,
        is_separator_regex=True,
        keep_separator="end",
        chunk_size=settings.size,
        chunk_overlap=min(settings.overlap, settings.size // 2),
        strip_whitespace=True,
    )


def _prose(
    text: str, ranges: Sequence[tuple[int, int]], splitter: RecursiveCharacterTextSplitter, size: int
) -> list[_Piece]:
    norm, idx = normalise(text, ranges)
    if not norm.strip():
        return []
    spans: list[tuple[int, int]] = []  # positions in ``norm``
    cursor = 0
    for chunk in splitter.split_text(norm):
        at = norm.find(chunk, cursor)
        if at < 0:  # cannot happen for a splitter that only cuts and strips; be safe anyway
            at = norm.find(chunk)
        if at < 0:
            continue
        spans.append((at, at + len(chunk)))
        cursor = at + 1
    spans = _merge_small(spans, size)
    pieces = []
    for s, e in spans:
        lead = len(norm[s:e]) - len(norm[s:e].lstrip())
        body = norm[s:e].strip()
        offsets = tuple(idx[s + lead : s + lead + len(body)])
        pieces.append(_Piece(body, idx[s], idx[e - 1] + 1, "body", offsets))
    return pieces


def _merge_small(spans: list[tuple[int, int]], size: int) -> list[tuple[int, int]]:
    """Fold a tiny piece (a lone heading or caption) into a neighbour when the result stays
    within 1.25 x size; the splitter leaves such pieces before a paragraph too long to join."""
    small, limit = max(1, size // 5), int(size * 1.25)
    out = list(spans)
    i = 0
    while i < len(out):
        s, e = out[i]
        if e - s < small and len(out) > 1:
            nxt = out[i + 1] if i + 1 < len(out) else None
            prv = out[i - 1] if i > 0 else None
            # prefer the following piece: a short line usually introduces what comes next
            if nxt is not None and nxt[1] - s <= limit:
                out[i : i + 2] = [(s, nxt[1])]
                continue
            if prv is not None and e - prv[0] <= limit:
                out[i - 1 : i + 1] = [(prv[0], e)]
                i -= 1
                continue
        i += 1
    return out


# ---------------------------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------------------------


def _is_table_line(s: str) -> bool:
    return "\t" in s.strip("\n") and len([c for c in s.split("\t") if c.strip()]) >= 2


def _table_blocks(text: str, a: int, b: int) -> list[tuple[int, int, int | None]]:
    """(first row start, last row end, caption start or None) of each tab-separated table."""
    lines: list[tuple[int, int, str]] = []
    pos = a
    for raw in text[a:b].split("\n"):
        lines.append((pos, pos + len(raw), raw))
        pos += len(raw) + 1
    blocks: list[tuple[int, int, int | None]] = []
    i = 0
    while i < len(lines):
        if not _is_table_line(lines[i][2]):
            i += 1
            continue
        j, last = i, i
        while j < len(lines) and (_is_table_line(lines[j][2]) or not lines[j][2].strip()):
            if lines[j][2].strip():
                last = j
            j += 1
        rows = [k for k in range(i, last + 1) if lines[k][2].strip()]
        if len(rows) >= 2:
            caption = None
            for k in range(i - 1, max(-1, i - 5), -1):
                s = lines[k][2].strip()
                if not s:
                    continue
                if _CAPTION.match(s):
                    caption = lines[k][0] + (len(lines[k][2]) - len(lines[k][2].lstrip()))
                break
            blocks.append((lines[i][0], lines[last][1], caption))
        i = last + 1
    return blocks


TABLE_SIZE_FACTOR = 3


def _table_pieces(text: str, start: int, end: int, caption: int | None, size: int) -> list[_Piece]:
    """Split a table by row groups; every piece repeats the caption and the header rows."""
    rows: list[tuple[int, int, str]] = []
    pos = start
    for raw in text[start:end].split("\n"):
        if raw.strip():
            rows.append((pos, pos + len(raw), raw.rstrip()))
        pos += len(raw) + 1
    cap = ""
    if caption is not None:
        line_end = text.find("\n", caption, start)
        cap = text[caption : line_end if line_end >= 0 else start].strip()
    # header rows: leading rows without any numeric cell
    n_head = 0
    for _, _, r in rows[:3]:
        if any(_NUMERIC.match(c) for c in r.split("\t") if c.strip()):
            break
        n_head += 1
    if n_head == len(rows):
        n_head = min(1, len(rows) - 1)
    head = [r for _, _, r in rows[:n_head]]
    body = rows[n_head:]
    # a row whose first cell is empty continues the group above (e.g. the same industry)
    groups: list[list[tuple[int, int, str]]] = []
    for row in body:
        if groups and not row[2].split("\t")[0].strip():
            groups[-1].append(row)
        else:
            groups.append([row])
    prefix = "\n".join([x for x in [cap, *head] if x])
    # A table is read as a whole ("which industry pays most?"), so it may take a few chunk
    # sizes before it is split.
    budget = max(TABLE_SIZE_FACTOR * size - len(prefix) - 1, 40)
    packs: list[list[tuple[int, int, str]]] = []
    cur: list[tuple[int, int, str]] = []
    for g in groups:
        units = [g] if sum(len(r[2]) + 1 for r in g) <= budget else [[r] for r in g]
        for u in units:
            if cur and sum(len(r[2]) + 1 for r in cur + u) > budget:
                packs.append(cur)
                cur = []
            cur = cur + u
    if cur:
        packs.append(cur)
    # where each line of a piece was printed: the caption's and header rows' own offsets
    prefix_lines = ([(caption, cap)] if cap and caption is not None else []) + [(a, r) for a, _, r in rows[:n_head]]
    pieces: list[_Piece] = []
    for k, pack in enumerate(packs):
        s = caption if (k == 0 and caption is not None) else (rows[0][0] if k == 0 else pack[0][0])
        body_text = "\n".join(r[2] for r in pack)
        lines = [*prefix_lines, *((a, r) for a, _, r in pack)]
        offsets: list[int] = []
        for j, (a, line) in enumerate(lines):
            if j:
                offsets.append(offsets[-1])  # the joining line break belongs to the line above
            offsets.extend(range(a, a + len(line)))
        text_out = f"{prefix}\n{body_text}" if prefix else body_text
        if len(offsets) != len(text_out):  # a caption/header that was not a line of its own
            offsets = []
        pieces.append(_Piece(text_out, s, pack[-1][1], "table", tuple(offsets)))
    return pieces


# ---------------------------------------------------------------------------------------------
# Runs, pages, meta
# ---------------------------------------------------------------------------------------------


def _runs(text: str, segments: Sequence[Segment]) -> list[list[Segment]]:
    """Group segments that follow each other in the text with only whitespace/markers between.

    An exact page break that falls between sentences also starts a new run, so chunks name
    exactly one page whenever the text allows; only a sentence running over a page break
    produces a chunk that lists both pages.
    """
    runs: list[list[Segment]] = []
    for seg in segments:
        if runs:
            prev = runs[-1][-1]
            gap = text[prev.end : seg.start] if seg.start >= prev.end else None
            if gap is not None and all(
                not ln.strip() or is_marker_line(ln) or is_folio_line(ln) for ln in re.split(r"[\n\f]", gap)
            ):
                clean_break = (
                    prev.exact
                    and seg.exact
                    and prev.pages != seg.pages
                    and not _is_soft_break(_last_line(text, prev), _first_line(text, seg))
                )
                if not clean_break:
                    runs[-1].append(seg)
                    continue
        runs.append([seg])
    return runs


def _last_line(text: str, seg: Segment) -> str:
    return text[seg.start : seg.end].rstrip().rsplit("\n", 1)[-1].strip()


def _first_line(text: str, seg: Segment) -> str:
    return text[seg.start : seg.end].lstrip().split("\n", 1)[0].strip()


def _clip(run: Sequence[Segment], a: int, b: int) -> list[tuple[int, int]]:
    """The parts of [a, b) that lie inside the run's segments."""
    return [(max(a, s.start), min(b, s.end)) for s in run if max(a, s.start) < min(b, s.end)]


def _pages(run: Sequence[Segment], start: int, end: int) -> tuple[tuple[str, ...], bool, tuple[int, ...]]:
    """(printed labels, whether they are exact, 0-based physical pages) of the run's segments
    that overlap [start, end)."""
    hit = [s for s in run if s.start < end and s.end > start]
    if not hit:  # a chunk inside a gap between pages: take the nearest segment
        hit = [min(run, key=lambda s: min(abs(s.start - start), abs(s.end - end)))]
    seen: dict[str, None] = {}
    for s in hit:
        for p in s.pages:
            seen.setdefault(p, None)
    physical = tuple(dict.fromkeys(s.physical for s in hit if s.physical is not None))
    return tuple(seen), all(s.exact for s in hit), physical


def _page_starts(run: Sequence[Segment], offsets: Sequence[int]) -> tuple[tuple[int, int, str], ...]:
    """(offset in the chunk text, physical page, label) wherever the chunk's text moves to
    another source page; () unless every segment of the run lies on one exact physical page.

    A character mapped into a gap between segments (a joining space or line break) stays on
    the page before it.
    """
    if not offsets or any(s.physical is None or not s.exact or len(s.pages) != 1 for s in run):
        return ()
    starts = [s.start for s in run]  # a run's segments follow each other in the text
    out: list[tuple[int, int, str]] = []
    for i, off in enumerate(offsets):
        k = bisect.bisect_right(starts, off) - 1
        if k < 0 or off >= run[k].end:
            continue
        seg = run[k]
        page = (seg.physical, seg.pages[0])
        if not out or out[-1][1:] != page:
            out.append((i, *page))  # type: ignore[arg-type]
    if out:
        out[0] = (0, out[0][1], out[0][2])
    return tuple(out)


def pages_text(pages: Sequence[str]) -> str:
    """Printed pages in Chinese: ``第13、16页``; unnumbered labels as they are (``封二``)."""
    nums = sorted({int(p) for p in pages if p.isdigit()})
    words = [p for p in dict.fromkeys(pages) if not p.isdigit()]
    parts = []
    if nums:
        parts.append("第" + "、".join(str(n) for n in nums) + "页")
    parts.extend(words)
    return "、".join(parts)


_TOC_LINE = re.compile(r"^\s*(?:[-*•·]\s*)?(?P<entry>\d{1,3}\s+\S.*?)\s*$")


def toc_lines(doc: Document) -> list[str]:
    """The entry lines (``16 财务资产监督管理和经费审查审计工作``) of the document's 目录."""
    out: list[str] = []
    for art in doc.articles:
        if art.kind != "toc":
            continue
        for seg in art.segments:
            for line in doc.text[seg.start : seg.end].split("\n"):
                m = _TOC_LINE.match(line)
                if m:
                    out.append(m.group("entry"))
    return out


def _toc_entry(entries: Sequence[str], art: Article) -> str | None:
    """The 目录 line listing this article (a case write-up is listed under its parent)."""
    for name in (art.title, art.parent):
        want = norm_title(name or "")
        if not want:
            continue
        for line in entries:
            if want in norm_title(line):
                return line
    return None


def meta_text(doc: Document, art: Article, toc_entry: str | None = None) -> str:
    """One line stating where an article is: document, section, title, unit, author, pages,
    and the 目录 line that lists it (so "which page" questions meet the TOC's own words)."""
    where = pages_text(art.pages)
    if art.kind != "article":
        label = "、".join(dict.fromkeys(p for seg in art.segments for p in seg.pages))
        name = art.title if art.title != label else ""
        return f"{doc.title} {label}{('：' + name) if name else ''} 页码：{where}"
    bits = [doc.title]
    if art.section:
        bits.append(f"{art.section}栏目")
    bits.append(f"文章：《{art.title}》")
    if art.subtitle:
        bits.append(f"副题：{art.subtitle}")
    if art.parent:
        bits.append(f"所属：{art.parent}")
    if art.unit:
        bits.append(f"单位：{art.unit}")
    if art.author:
        bits.append(f"作者：{art.author}")
    bits.append(f"页码：{where}")
    if toc_entry:
        bits.append(f"目录：{toc_entry}")
    return " ".join(bits)


def _make(
    doc: Document,
    art: Article,
    ai: int,
    n: int,
    text: str,
    start: int,
    end: int,
    pages: tuple[str, ...],
    exact: bool,
    kind: str,
    physical: tuple[int, ...] = (),
    page_starts: tuple[tuple[int, int, str], ...] = (),
) -> Chunk:
    return Chunk(
        chunk_id=f"{doc.doc_id}:{ai:03d}:{n:03d}",
        doc=doc.title,
        doc_id=doc.doc_id,
        article=art.title,
        pages=pages,
        text=text,
        start=start,
        end=end,
        section=art.section,
        unit=art.unit,
        author=art.author,
        kind=kind,  # type: ignore[arg-type]
        page_exact=exact,
        article_kind=art.kind,
        physical=physical,
        page_starts=page_starts,
    )


def _title_span(text: str, art: Article) -> tuple[int, int]:
    """Offsets of the article's title line (the first line if the title cannot be seen)."""
    seg = art.segments[0]
    want = norm_title(art.title)
    pos = seg.start
    for _ in range(12):
        if pos >= seg.end:
            break
        nl = text.find("\n", pos, seg.end)
        line_end = seg.end if nl < 0 else nl
        got = norm_title(text[pos:line_end])
        if got and want and (want.startswith(got) or got.startswith(want)):
            a = pos + len(text[pos:line_end]) - len(text[pos:line_end].lstrip())
            return a, len(text[:line_end].rstrip())
        pos = line_end + 1
    nl = text.find("\n", seg.start, seg.end)
    return seg.start, seg.end if nl < 0 else nl


def chunk_document(doc: Document, settings: ChunkSettings) -> list[Chunk]:
    """Split a Document into chunks that never cross article or segment-jump boundaries.

    Args:
        doc: a loaded Document.
        settings: ``size`` (target characters), ``overlap`` (characters shared by
            neighbouring prose chunks), ``meta_chunks`` (one metadata chunk per article).

    Returns:
        Chunks in reading order. ``chunk_id`` is ``{doc_id}:{article:03d}:{n:03d}``
        (``n = 000`` is the article's meta chunk), stable for identical input; ``start``/``end``
        are offsets into ``doc.text`` of exactly the span each chunk's text comes from.
    """
    splitter = _splitter(settings)
    text = doc.text
    chunks: list[Chunk] = []
    entries = toc_lines(doc) if settings.meta_chunks else []
    for ai, art in enumerate(doc.articles):
        if not art.segments:
            continue
        if settings.meta_chunks:
            start, end = _title_span(text, art)
            exact = all(s.exact for s in art.segments)
            meta = meta_text(doc, art, _toc_entry(entries, art) if art.kind == "article" else None)
            physical = tuple(dict.fromkeys(s.physical for s in art.segments if s.physical is not None))
            chunks.append(_make(doc, art, ai, 0, meta, start, end, art.pages, exact, "meta", physical))
        n = 0
        for run in _runs(text, art.segments):
            a, b = run[0].start, run[-1].end
            pieces: list[_Piece] = []
            pos = a
            for t_start, t_end, caption in _table_blocks(text, a, b):
                prose_end = caption if caption is not None else t_start
                pieces.extend(_prose(text, _clip(run, pos, prose_end), splitter, settings.size))
                pieces.extend(_table_pieces(text, t_start, t_end, caption, settings.size))
                pos = t_end
            pieces.extend(_prose(text, _clip(run, pos, b), splitter, settings.size))
            for p in pieces:
                n += 1
                pages, exact, physical = _pages(run, p.start, p.end)
                starts = _page_starts(run, p.offsets)
                chunks.append(
                    _make(doc, art, ai, n, p.text, p.start, p.end, pages, exact, p.kind, physical, starts)
                )
    return chunks
