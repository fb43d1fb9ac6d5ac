"""Plain-text loading and the layout inference shared by every loader.

A magazine issue exported to plain text has lost its page breaks. What it still has is its own
table of contents (目录): ``05 产业工人工资增长机制的困境与突破`` says the article starts on
printed page 5, and the next entry (``09 ...``) says it ends on page 8. So:

1. find the 目录 block and parse its entries (section heads, collections and their sub-entries);
2. locate each entry's title in the body, matching fuzzily (the body breaks titles over lines
   and spells punctuation differently);
3. give every article the printed range from its start page to the page before the next one
   (``Segment.exact=False``: only the range is known), move ``（上接第16页）`` continuations to
   the article they continue, and label the front matter (封面, 封二, 大事记, 目录) and back
   matter (封底) without numbers.

When the text carries explicit page markers (form feeds, ``--- 第 5 页 ---``) or comes from a
PDF, the same article detection runs but the pages are exact. Nothing here knows any one
issue: every cue is structural (line shapes, numbers, the order of things).
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rag.errors import IngestError
from rag.types import Article, ArticleKind, Document, Segment

# ---------------------------------------------------------------------------------------------
# Small records used while the layout is being worked out
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PageSpan:
    """A stretch of ``Document.text`` printed on one page with a known label."""

    start: int
    end: int
    label: str


@dataclass(frozen=True)
class Line:
    start: int
    end: int  # excludes the newline
    text: str

    @property
    def stripped(self) -> str:
        return self.text.strip()


@dataclass
class Draft:
    """An article while its boundaries and metadata are still being settled."""

    title: str
    start: int
    end: int
    kind: ArticleKind = "article"
    pages: tuple[str, ...] = ()  # printed labels when pages are inferred, not exact
    exact: bool = False
    section: str | None = None
    author: str | None = None
    unit: str | None = None
    subtitle: str | None = None
    parent: str | None = None
    first_page: int | None = None  # TOC start page, for continuation look-ups
    jump_to: int | None = None  # page named by a trailing （下转第N页）
    extra: list[tuple[int, int, tuple[str, ...], bool]] = field(default_factory=list)


@dataclass
class TocEntry:
    page: int
    title: str
    line: int  # index into the line list
    subtitle: str | None = None
    role: str = "article"  # "section" | "collection" | "sub" | "article"
    section: str | None = None
    parent: str | None = None
    found: tuple[int, int] | None = None  # first and last body line of the located title


@dataclass
class Toc:
    head_line: int
    end_line: int  # first line after the 目录 block
    entries: list[TocEntry]


# ---------------------------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------------------------


def decode_text(raw: bytes, path: Path) -> str:
    """Decode a text file (UTF-8 with or without BOM, UTF-16 with BOM, or GB18030).

    Newlines are normalised to ``\\n``; all offsets refer to the returned string.

    Raises:
        IngestError: the file is empty, binary, or in none of those encodings.
    """
    if not raw.strip():
        raise IngestError(f"{path}: the file is empty; add text to it or remove it from the folder")
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        candidates: tuple[str, ...] = ("utf-16",)
    elif b"\x00" in raw[:8192]:
        raise IngestError(f"{path}: looks like a binary file, not text; export it as UTF-8 text first")
    else:
        # utf-8-sig also reads plain UTF-8; GB18030 covers GBK/GB2312 exports of older tools.
        candidates = ("utf-8-sig", "gb18030")
    text: str | None = None
    for enc in candidates:
        try:
            text = raw.decode(enc)
            break
        except UnicodeDecodeError:
            continue
    if text is None:
        raise IngestError(
            f"{path}: cannot decode the text (tried UTF-8 and GB18030); save it as UTF-8 and retry"
        )
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    # GB18030 decodes almost any byte soup; junk shows up as control / unassigned characters.
    odd = sum(1 for ch in text if ch not in "\n\t\f" and unicodedata.category(ch) in ("Cc", "Cn", "Co", "Cs"))
    if odd > max(3, len(text) // 100):
        raise IngestError(f"{path}: looks like a binary file, not text; export it as UTF-8 text first")
    if not text.strip():
        raise IngestError(f"{path}: the file is empty; add text to it or remove it from the folder")
    return text


# ---------------------------------------------------------------------------------------------
# Line and title helpers
# ---------------------------------------------------------------------------------------------


def split_lines(text: str) -> list[Line]:
    """Split into lines with their offsets (form feeds count as line breaks)."""
    out: list[Line] = []
    for m in re.finditer(r"[^\n\f]*", text):
        # finditer yields an empty match after each line; keep only real line starts
        if m.start() > 0 and text[m.start() - 1] not in "\n\f":
            continue
        out.append(Line(m.start(), m.end(), m.group()))
    return out


def norm_title(s: str) -> str:
    """Fold a title for matching: NFKC (full-width → half-width), drop spaces and punctuation."""
    s = unicodedata.normalize("NFKC", s).lower()
    return "".join(ch for ch in s if unicodedata.category(ch)[0] not in "PSZC")


_SENTENCE_END = "。！？!?；;…"
_BYLINE = re.compile(r"^\s*(?:■\s*)?文\s*[|｜/／:：]\s*(?P<who>\S.*?)\s*$")
_AUTHOR_UNIT = re.compile(r"^\s*作者单位\s*[|｜/／:：]\s*(?P<unit>\S.*?)\s*$")
_PHOTO = re.compile(r"^\s*(?:摄影|图|供图|图片)\s*[|｜/／:：]")
_SUBTITLE = re.compile(r"^\s*(?:——|－－|--|—)\s*(?P<sub>\S.*?)\s*$")
# A unit line of a case write-up: short, no sentence punctuation, ends with an organisation word.
_UNIT = re.compile(
    r"^[^\s，。：:；;、|｜“”\"'（）()]{2,24}"
    r"(?:总工会|工会|工会委员会|工会联合会|联合会|公司|集团|委员会|协会|局|厅|办公室|研究院|学院|大学|医院|中心|商会)$"
)
_JUMP_OUT = re.compile(r"[(（]\s*(?:下转|转)\s*第?\s*(\d{1,3})\s*[页版]\s*[)）]")
_JUMP_IN = re.compile(r"[(（]\s*(?:上接|接)\s*第?\s*(\d{1,3})\s*[页版]\s*[)）]")


def clean_author(who: str) -> str:
    """``欧慧娅 黄宝仪 图 | 张三`` → ``欧慧娅 黄宝仪`` (drop a trailing photo credit)."""
    who = re.split(r"\s+(?:图|摄影|供图)\s*[|｜/／:：]", who)[0]
    return re.sub(r"\s+", " ", who).strip()


# ---------------------------------------------------------------------------------------------
# Explicit pages: markers in text, and labels printed in headers/footers
# ---------------------------------------------------------------------------------------------

_MARKER = re.compile(
    r"^[ \t]*(?:[-=*#]{3,}|<!--)[ \t]*"
    r"(?:第[ \t]*(?P<zh>[^\s页]{1,12})[ \t]*页|[Pp](?:age|AGE)[ \t]+(?P<en>[^\s\-=*]{1,12}))"
    r"[ \t]*(?:[-=*#]{3,}|-->)?[ \t]*$",
    re.M,
)


def is_marker_line(s: str) -> bool:
    """True for a page-marker line such as ``--- 第 5 页 ---`` or ``=== page 5 ===``."""
    return bool(_MARKER.match(s))


def marker_pages(text: str) -> list[PageSpan] | None:
    """Pages from explicit markers, or None when the text has none.

    ``--- 第 5 页 ---`` / ``=== page 5 ===`` lines start a page with that label; otherwise form
    feeds separate pages, labelled by a bare number printed at their top or bottom, else by
    their position. Text before the first marker belongs to the first marked page.
    """
    marks = list(_MARKER.finditer(text))
    if marks:
        spans: list[PageSpan] = []
        for i, m in enumerate(marks):
            label = (m.group("zh") or m.group("en") or "").strip()
            start = 0 if i == 0 else m.end()
            end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
            spans.append(PageSpan(start, end, label))
        return spans
    if "\f" in text:
        bounds: list[tuple[int, int]] = []
        pos = 0
        for part in text.split("\f"):
            bounds.append((pos, pos + len(part)))
            pos += len(part) + 1
        labels = label_pages([text[a:b] for a, b in bounds])
        return [PageSpan(a, b, lab) for (a, b), lab in zip(bounds, labels, strict=True)]
    return None


_FOLIO = re.compile(r"^[-—–·•\s]*(?:第\s*)?(\d{1,4})(?:\s*页)?(?:\s*/\s*\d{1,4})?[-—–·•\s]*$")


def label_pages(page_texts: Sequence[str]) -> list[str]:
    """Printed labels for physical pages, read from bare page numbers in headers/footers.

    A number on a page's first or last line counts only if it agrees with the most common
    offset between printed and physical numbers (so a stray figure in a table is ignored).
    Pages before the first printed number get cover labels (封面, 封二, 扉页...), pages
    without a number inside the numbered run get the number the offset implies; with no
    printed numbers at all, the physical position is the label.
    """
    n = len(page_texts)
    cands: dict[int, int] = {}
    for i, t in enumerate(page_texts):
        lines = [ln.strip() for ln in t.splitlines() if ln.strip()]
        for ln in lines[:2] + lines[-2:]:
            m = _FOLIO.match(ln)
            if m:
                cands[i] = int(m.group(1))
                break
    if not cands:
        return [str(i + 1) for i in range(n)]
    offset, _ = Counter(num - i for i, num in cands.items()).most_common(1)[0]
    agreeing = [i for i, num in cands.items() if num - i == offset]
    first = min(agreeing)
    labels: list[str] = []
    front = ["封面", "封二", "扉页"]
    for i in range(n):
        printed = i + offset
        if i < first and printed < 1:
            labels.append(front[i] if i < len(front) else f"前{i + 1}")
        else:
            labels.append(str(printed))
    return labels


# ---------------------------------------------------------------------------------------------
# The table of contents
# ---------------------------------------------------------------------------------------------

_TOC_HEAD = re.compile(r"^\s*(?:本期)?(?:目\s*录|CONTENTS|Contents)\s*$")
_ENTRY_FIRST = re.compile(
    r"^\s*(?:[-*•·]\s*)?(?:P\s?)?(?P<page>\d{1,3})(?:\s+|\s*[.、]\s*)(?P<title>\S.*?)\s*$"
)
_ENTRY_LAST = re.compile(
    r"^\s*(?:[-*•]\s*)?(?P<title>\S.*?)\s*(?:[.·…]{2,}|\s)\s*(?:P\s?)?(?P<page>\d{1,3})\s*$"
)


def _parse_entry(s: str) -> tuple[int, str] | None:
    m = _ENTRY_FIRST.match(s) or _ENTRY_LAST.match(s)
    if not m:
        return None
    title = m.group("title").strip()
    if not norm_title(title):
        return None
    return int(m.group("page")), title


def parse_toc(lines: Sequence[Line]) -> Toc | None:
    """Find and parse the issue's 目录 block; None when there is none (or it is too thin).

    Entries are ``NN title`` lines (a leading ``-`` bullet is allowed); a line right under an
    entry continues it (``——`` lines are subtitles); after a blank line, the first line that
    is not an entry ends the block. Roles: a short entry followed by one with the same page is
    a section head (调研, 典型...); a longer one is a collection whose following entries, up to
    the next section head, are its sub-entries.
    """
    for head, ln in enumerate(lines):
        if not _TOC_HEAD.match(ln.text):
            continue
        parsed = _toc_entries(lines, head)
        if parsed is not None:
            entries, end = parsed
            _assign_roles(entries)
            return Toc(head_line=head, end_line=end, entries=entries)
    return None


def _toc_entries(lines: Sequence[Line], head: int) -> tuple[list[TocEntry], int] | None:
    """Entries under a 目录 heading and the line after the block; None if it is no TOC."""
    entries: list[TocEntry] = []
    prev_blank = False
    end = len(lines)
    for i in range(head + 1, len(lines)):
        s = lines[i].stripped
        if not s:
            prev_blank = True
            continue
        parsed = _parse_entry(s)
        if parsed:
            entries.append(TocEntry(page=parsed[0], title=parsed[1], line=i))
            prev_blank = False
            continue
        if entries and not prev_blank:
            sub = _SUBTITLE.match(s)
            if sub:
                entries[-1].subtitle = sub.group("sub")
            else:
                entries[-1].title = f"{entries[-1].title} {s}"
            continue
        if entries:
            end = i
            break
        if i - head > 5:  # a 目录 heading with no entries under it: not a TOC
            return None
    if len(entries) < 2:
        return None
    return entries, end


def _assign_roles(entries: list[TocEntry]) -> None:
    section: str | None = None
    parent: str | None = None
    for k, e in enumerate(entries):
        nxt = entries[k + 1] if k + 1 < len(entries) else None
        same_page_next = nxt is not None and nxt.page == e.page
        if same_page_next and len(norm_title(e.title)) <= 4:
            e.role = "section"
            section, parent = e.title.strip(), None
            continue
        e.section = section
        if parent is not None:
            e.role, e.parent = "sub", parent
        elif same_page_next:
            e.role = "collection"
            parent = e.title
        else:
            e.role = "article"


# ---------------------------------------------------------------------------------------------
# Locating titles in the body
# ---------------------------------------------------------------------------------------------


def _find_exact(norms: Sequence[str], target: str, lo: int, hi: int) -> tuple[int, int] | None:
    """First run of up to 4 non-empty lines whose folded text equals ``target``."""
    for i in range(lo, hi):
        if not norms[i] or not target.startswith(norms[i]):
            continue
        acc, j, used = "", i, 0
        while j < hi and used < 4:
            if norms[j]:
                acc += norms[j]
                used += 1
                if acc == target:
                    return i, j
                if not target.startswith(acc):
                    break
            elif j - i > 6:
                break
            j += 1
    return None


def _find_fuzzy(
    lines: Sequence[Line], norms: Sequence[str], target: str, lo: int, hi: int
) -> tuple[int, int] | None:
    """A heading-like line that is a large prefix of the title, or a close match of it."""
    best: tuple[float, int, int] | None = None
    for i in range(lo, hi):
        s = norms[i]
        if not s or len(lines[i].stripped) > 60:
            continue
        if len(s) >= max(4, int(0.4 * len(target))) and target.startswith(s):
            return i, i
        if s.startswith(target) and len(s) <= len(target) + 12:
            return i, i
        # windows of 1-3 non-empty lines, compared with a similarity ratio
        acc, used, j = "", 0, i
        while j < hi and used < 3:
            if norms[j]:
                acc += norms[j]
                used += 1
                r = difflib.SequenceMatcher(None, acc, target, autojunk=False).ratio()
                if r >= 0.85 and (best is None or r > best[0]):
                    best = (r, i, j)
            j += 1
    return (best[1], best[2]) if best else None


def locate_titles(lines: Sequence[Line], entries: Sequence[TocEntry], lo: int) -> None:
    """Set ``entry.found`` for each TOC entry whose title can be found after line ``lo``.

    Exact matches are placed first, in TOC order; an entry without one is then looked for
    fuzzily between its located neighbours, so one garbled title cannot derail the rest.
    """
    norms = [norm_title(ln.text) for ln in lines]
    targets = [e for e in entries if e.role != "section"]
    pos = lo
    for e in targets:
        hit = _find_exact(norms, norm_title(e.title), pos, len(lines))
        if hit:
            e.found = hit
            pos = hit[1] + 1
    for k, e in enumerate(targets):
        if e.found:
            continue
        a = max((t.found[1] + 1 for t in targets[:k] if t.found), default=lo)
        b = min((t.found[0] for t in targets[k + 1 :] if t.found), default=len(lines))
        e.found = _find_fuzzy(lines, norms, norm_title(e.title), a, b)


# ---------------------------------------------------------------------------------------------
# Front matter: cover, inside cover, 大事记, masthead
# ---------------------------------------------------------------------------------------------

_TEASER = re.compile(r"^\s*(?:\S{1,8}\s*)?P\s?\d{1,3}\s*$")
_CHRONICLE = re.compile(
    r"^\s*(?:\d{4}\s*年\s*\d{1,2}\s*月\s*|本[期刊]\s*)?(?:大事记?|之声|工运动态|大事纪要)\s*$"
)
_MAG_NAME = re.compile(r"^\s*《[^》]{1,24}》\s*$")
_ISSUE = re.compile(r"^\s*(\d{4})\s*年\s*第\s*(\d{1,3})\s*期")


def find_masthead(lines: Sequence[Line], before: int) -> tuple[int, str] | None:
    """The masthead (``《刊名》`` then ``2025年第12期``) above line ``before``: (line, title)."""
    for i in range(before - 1, -1, -1):
        if not _MAG_NAME.match(lines[i].text):
            continue
        for j in range(i + 1, min(i + 4, len(lines))):
            m = _ISSUE.match(lines[j].text)
            if m:
                return i, f"{lines[i].stripped}{m.group(1)}年第{int(m.group(2))}期"
    return None


def _blank_runs(lines: Sequence[Line], lo: int, hi: int) -> list[tuple[int, int]]:
    """(first blank line, length) of each run of blank lines in [lo, hi)."""
    runs: list[tuple[int, int]] = []
    i = lo
    while i < hi:
        if not lines[i].stripped:
            j = i
            while j < hi and not lines[j].stripped:
                j += 1
            runs.append((i, j - i))
            i = j
        else:
            i += 1
    return runs


def front_matter(lines: Sequence[Line], hi: int) -> list[Draft]:
    """Split the text before the masthead/目录 (lines [0, hi)) into labelled blocks.

    The first block is the cover (封面): when the cover lists teasers (``调研 P01`` + title),
    it ends with the title under the last teaser, else at the first double blank line. A
    line such as ``2025年12月大事`` / ``...之声`` opens a 大事记 block; anything between the
    cover and the first of those is the inside cover (封二).
    """
    first = next((i for i in range(hi) if lines[i].stripped), None)
    if first is None:
        return []
    teasers = [i for i in range(first, hi) if _TEASER.match(lines[i].text)]
    cover_end: int | None = None
    if teasers:
        i = teasers[-1] + 1
        while i < hi and not lines[i].stripped:
            i += 1
        while i < hi and lines[i].stripped:
            i += 1
        cover_end = i
    else:
        for start, length in _blank_runs(lines, first, hi):
            if length >= 2:
                cover_end = start
                break
    if cover_end is None or cover_end >= hi:
        cover_end = hi
    heads = [i for i in range(cover_end, hi) if _CHRONICLE.match(lines[i].text)]
    drafts = [Draft("封面", lines[first].start, lines[cover_end - 1].end, "front", ("封面",), True)]
    if cover_end < hi:
        inside_end = heads[0] if heads else hi
        if any(lines[i].stripped for i in range(cover_end, inside_end)):
            body = next(i for i in range(cover_end, inside_end) if lines[i].stripped)
            drafts.append(
                Draft("封二", lines[body].start, lines[inside_end - 1].end, "front", ("封二",), True)
            )
        for k, h in enumerate(heads):
            end = heads[k + 1] if k + 1 < len(heads) else hi
            drafts.append(
                Draft(lines[h].stripped, lines[h].start, lines[end - 1].end, "front", ("大事记",), True)
            )
    return drafts


# ---------------------------------------------------------------------------------------------
# Articles from a TOC
# ---------------------------------------------------------------------------------------------


def _range(a: int, b: int) -> tuple[str, ...]:
    return tuple(str(p) for p in range(a, max(a, b) + 1))


def _visible_chars(text: str, start: int, end: int) -> int:
    return sum(1 for ch in text[start:end] if not ch.isspace())


def describe(draft: Draft, text: str, lines: Sequence[Line], first_line: int, last_line: int) -> None:
    """Fill author, subtitle and unit from the lines of a draft."""
    head = [i for i in range(first_line, last_line) if lines[i].stripped][:14]
    for i in head:
        s = lines[i].stripped
        m = _BYLINE.match(s)
        if m and draft.author is None:
            draft.author = clean_author(m.group("who"))
        sub = _SUBTITLE.match(s)
        if sub and draft.subtitle is None and i <= head[min(3, len(head) - 1)]:
            draft.subtitle = sub.group("sub")
    if draft.unit is None:
        for i in range(first_line, last_line):
            m = _AUTHOR_UNIT.match(lines[i].text)
            if m:
                draft.unit = m.group("unit")
                break


def line_at(lines: Sequence[Line], offset: int) -> int:
    lo, hi = 0, len(lines)
    while lo < hi:
        mid = (lo + hi) // 2
        if lines[mid].end < offset:
            lo = mid + 1
        else:
            hi = mid
    return min(lo, len(lines) - 1)


def _split_cases(draft: Draft, lines: Sequence[Line], a: int, b: int) -> list[Draft]:
    """Split a collection sub-entry into case write-ups: a unit line, then a headline line."""
    cases: list[tuple[int, str, str]] = []  # (unit line, unit, headline)
    i = a
    while i < b:
        s = lines[i].stripped
        if s and _UNIT.match(s):
            j = i + 1
            while j < b and not lines[j].stripped:
                j += 1
            if j < b:
                h = lines[j].stripped
                if 4 <= len(h) <= 40 and h[-1] not in _SENTENCE_END + "，," and not _UNIT.match(h):
                    if not _BYLINE.match(h) and not _PHOTO.match(h):
                        cases.append((i, s, h))
                        i = j + 1
                        continue
        i += 1
    if not cases:
        return [draft]
    out: list[Draft] = []
    for k, (li, unit, headline) in enumerate(cases):
        start = draft.start if k == 0 else lines[li].start
        end = lines[cases[k + 1][0]].start if k + 1 < len(cases) else draft.end
        out.append(
            Draft(
                title=headline,
                start=start,
                end=end,
                pages=draft.pages,
                section=draft.section,
                unit=unit,
                parent=draft.title,
                first_page=draft.first_page,
            )
        )
    return out


def articles_from_toc(text: str, lines: Sequence[Line], toc: Toc) -> list[Draft]:
    """Numbered articles located from the TOC, with inferred page ranges and continuations."""
    locate_titles(lines, toc.entries, toc.end_line)
    found = [e for e in toc.entries if e.role != "section" and e.found]
    if not found:
        return []
    drafts: list[Draft] = []
    for k, e in enumerate(found):
        assert e.found is not None
        start = lines[e.found[0]].start if k else lines[toc.end_line].start
        end = lines[found[k + 1].found[0]].start if k + 1 < len(found) else len(text)  # type: ignore[index]
        later = [t.page for t in found[k + 1 :] if t.page > e.page]
        last = min(later) - 1 if later else None
        d = Draft(
            title=re.sub(r"\s+", " ", e.title).strip(),
            start=start,
            end=end,
            pages=_range(e.page, last) if last is not None else (str(e.page),),
            section=e.section,
            parent=e.parent,
            first_page=e.page,
        )
        d.subtitle = e.subtitle
        drafts.append(d)
    _fix_last_range(text, drafts, found[-1].page)
    # cut the back matter off the last article before anything else looks at its end
    back = _back_matter(text, lines, drafts)
    # jumps: （下转第N页） ends an article; （上接第M页） text moves to the article it continues
    _apply_jumps(text, lines, drafts)
    # metadata, then split collection sub-entries into their case write-ups
    out: list[Draft] = []
    by_title = {e.title: e for e in found}
    for d in drafts:
        a, b = line_at(lines, d.start), line_at(lines, max(d.start, d.end - 1)) + 1
        entry = by_title.get(d.title)
        parts = [d]
        if entry is not None and entry.role == "sub":
            title_line = entry.found[1] + 1 if entry.found else a  # skip the sub-entry heading
            parts = _split_cases(d, lines, title_line, b)
            if len(parts) > 1 or parts[0] is not d:
                # the continuation found inside the sub-entry belongs to its last case
                parts[-1].extra.extend(d.extra)
                parts[-1].jump_to = d.jump_to
        for p in parts:
            pa, pb = line_at(lines, p.start), line_at(lines, max(p.start, p.end - 1)) + 1
            describe(p, text, lines, pa, pb)
            out.append(p)
    if back:
        out.append(back)
    return out


def _fix_last_range(text: str, drafts: list[Draft], last_page: int) -> None:
    """The TOC gives no end for the last article: estimate it from the issue's chars per page."""
    if len(drafts) < 2:
        return
    known = [d for d in drafts[:-1] if d.pages]
    chars = sum(_visible_chars(text, d.start, d.end) for d in known)
    pages = sum(len(d.pages) for d in known)
    if not pages or not chars:
        return
    per_page = chars / pages
    n = max(1, round(_visible_chars(text, drafts[-1].start, drafts[-1].end) / per_page))
    drafts[-1].pages = _range(last_page, last_page + n - 1)


def _back_matter(text: str, lines: Sequence[Line], drafts: list[Draft]) -> Draft | None:
    """封底: text after the last article, set off by a blank gap at least as long as any
    gap inside the articles, and shorter than what precedes it in the last article."""
    last = drafts[-1]
    a, b = line_at(lines, last.start), len(lines)
    body_gap = max(
        (
            n
            for d in drafts[:-1]
            for _, n in _blank_runs(lines, line_at(lines, d.start), line_at(lines, d.end))
        ),
        default=0,
    )
    threshold = max(4, body_gap)
    for start, n in _blank_runs(lines, a, b):
        if n < threshold or start + n >= b:
            continue
        cut = lines[start].start
        after = _visible_chars(text, cut, last.end)
        before = _visible_chars(text, last.start, cut)
        if after and before and after < before:
            body = next(i for i in range(start + n, b) if lines[i].stripped)
            last.end = cut
            # the last article's page estimate is now too generous; recompute it
            if len(drafts) > 1 and last.first_page is not None:
                _fix_last_range(text, drafts, last.first_page)
            return Draft("封底", lines[body].start, len(text), "back", ("封底",), True)
    return None


def _apply_jumps(text: str, lines: Sequence[Line], drafts: list[Draft]) -> None:
    # （下转第N页）: the article stops at the marker; what follows up to the next title is
    # printed on the next article's page (captions, photos), so it joins that article.
    for k, d in enumerate(drafts):
        for m in _JUMP_OUT.finditer(text, d.start, d.end):
            d.jump_to = int(m.group(1))
            end_of_line = text.find("\n", m.end())
            cut = len(text) if end_of_line < 0 else end_of_line
            if k + 1 < len(drafts) and cut < d.end:
                drafts[k + 1].start = cut
            d.end = min(d.end, cut)
            break
    # （上接第M页）: from the marker to the end of the host article is the continuation of
    # the article on page M; it is printed where the host article ends.
    for host in drafts:
        m = _JUMP_IN.search(text, host.start, host.end)
        if not m:
            continue
        from_page = int(m.group(1))
        owners = [d for d in drafts if d is not host and str(from_page) in d.pages]
        if not owners:
            continue
        owner = next((d for d in owners if d.jump_to is not None), owners[-1])
        line_start = text.rfind("\n", 0, m.start()) + 1
        if owner.jump_to is not None:
            pages, exact = (str(owner.jump_to),), True
        else:
            pages, exact = (host.pages[-1],) if host.pages else (), False
        owner.extra.append((line_start, host.end, pages, exact))
        host.end = line_start


# ---------------------------------------------------------------------------------------------
# Articles without a TOC: bylines or the first heading
# ---------------------------------------------------------------------------------------------


def articles_by_bylines(text: str, lines: Sequence[Line]) -> list[Draft]:
    """Split at bylines (``文 | 作者``): the title lines right above a byline start an article.

    Returns one article (titled by the first short line) when there are no bylines.
    """
    starts: list[tuple[int, str, str | None, str]] = []  # (line, title, subtitle, author)
    for i, ln in enumerate(lines):
        m = _BYLINE.match(ln.text)
        if not m:
            continue
        above = [j for j in range(max(0, i - 8), i) if lines[j].stripped][-3:]
        sub = None
        title_lines: list[int] = []
        for j in reversed(above):
            s = lines[j].stripped
            if is_marker_line(s) or is_folio_line(s):
                break  # a page boundary: the title is below it
            sm = _SUBTITLE.match(s)
            if sm and sub is None and not title_lines:
                sub = sm.group("sub")
                continue
            if len(s) <= 40 and s[-1] not in _SENTENCE_END and not (starts and j <= starts[-1][0]):
                title_lines.insert(0, j)
                if len(title_lines) == 2:
                    break
            else:
                break
        if title_lines:
            title = " ".join(lines[j].stripped for j in title_lines)
            starts.append((title_lines[0], title, sub, clean_author(m.group("who"))))
    if not starts:
        first = next((ln.stripped for ln in lines if ln.stripped), "")
        title = first if len(first) <= 40 else first[:40]
        return [Draft(title, 0, len(text))]
    drafts: list[Draft] = []
    if any(lines[i].stripped for i in range(starts[0][0])):
        drafts.append(Draft("前言", 0, lines[starts[0][0]].start, "front"))
    for k, (li, title, sub, author) in enumerate(starts):
        end = lines[starts[k + 1][0]].start if k + 1 < len(starts) else len(text)
        d = Draft(title, lines[li].start, end, subtitle=sub, author=author)
        describe(d, text, lines, li, line_at(lines, max(d.start, end - 1)) + 1)
        drafts.append(d)
    return drafts


# ---------------------------------------------------------------------------------------------
# Drafts → Articles
# ---------------------------------------------------------------------------------------------


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def is_folio_line(s: str) -> bool:
    """True for a line holding only a printed page number (``12``, ``- 12 -``, ``第12页``)."""
    return bool(s.strip()) and bool(_FOLIO.match(s))


def _strip_folios(text: str, a: int, b: int) -> tuple[int, int]:
    """Drop a page-number line at the top or bottom of a page piece (headers/footers)."""
    first_nl = text.find("\n", a, b)
    if first_nl >= 0 and is_folio_line(text[a:first_nl]):
        a = first_nl + 1
    last_nl = text.rfind("\n", a, b)
    if last_nl >= 0 and is_folio_line(text[last_nl + 1 : b]):
        b = last_nl
    return _trim(text, a, b)


def _segments(
    text: str,
    start: int,
    end: int,
    pages: tuple[str, ...],
    exact: bool,
    page_spans: Sequence[PageSpan] | None,
) -> list[Segment]:
    out: list[Segment] = []
    if page_spans:
        for ps in page_spans:
            a, b = max(start, ps.start), min(end, ps.end)
            if a >= b:
                continue
            a, b = _strip_folios(text, *_trim(text, a, b))
            # a page piece made only of a marker line carries no content
            if a < b and not all(is_marker_line(x) or not x.strip() for x in text[a:b].split("\n")):
                out.append(Segment(a, b, (ps.label,), True))
        return out
    a, b = _trim(text, start, end)
    if a < b:
        out.append(Segment(a, b, pages or ("1",), exact))
    return out


def finish(text: str, drafts: Sequence[Draft], page_spans: Sequence[PageSpan] | None) -> tuple[Article, ...]:
    """Turn drafts into Articles: segments clipped to exact pages when those are known."""
    arts: list[Article] = []
    for d in drafts:
        segs = _segments(text, d.start, d.end, d.pages, d.exact, page_spans)
        for a, b, pages, exact in d.extra:
            segs.extend(_segments(text, a, b, pages, exact, page_spans))
        if not segs:
            continue
        arts.append(
            Article(
                title=d.title,
                segments=tuple(segs),
                kind=d.kind,
                section=d.section,
                author=d.author,
                unit=d.unit,
                subtitle=d.subtitle,
                parent=d.parent,
            )
        )
    return tuple(arts)


# ---------------------------------------------------------------------------------------------
# The loader
# ---------------------------------------------------------------------------------------------


def structure(
    text: str, page_spans: Sequence[PageSpan] | None, fallback_title: str
) -> tuple[str, tuple[Article, ...], bool]:
    """Work out (document title, articles, used_toc) for a text, with or without exact pages."""
    lines = split_lines(text)
    toc = parse_toc(lines)
    title = fallback_title
    if toc is not None:
        mast = find_masthead(lines, toc.head_line)
        if mast is not None and toc.head_line - mast[0] <= 60:
            title = mast[1]
            toc_start = mast[0]
        else:
            toc_start = toc.head_line
        body = articles_from_toc(text, lines, toc)
        if body:
            drafts = front_matter(lines, toc_start)
            toc_end = lines[toc.end_line].start if toc.end_line < len(lines) else len(text)
            drafts.append(Draft("目录", lines[toc_start].start, toc_end, "toc", ("目录",), True))
            drafts.extend(body)
            return title, finish(text, drafts, page_spans), True
    mast = find_masthead(lines, min(len(lines), 200))
    if mast is not None:
        title = mast[1]
    return title, finish(text, articles_by_bylines(text, lines), page_spans), False


def load_text(path: Path, raw: bytes, doc_id: str, content_hash: str) -> Document:
    """Load a ``.txt`` file: exact pages from markers if present, else pages from its 目录."""
    text = decode_text(raw, path)
    spans = marker_pages(text)
    title, articles, used_toc = structure(text, spans, path.stem)
    if spans:
        loader = "text-markers"
    elif used_toc:
        loader = "text-toc"
    else:
        loader = "text"
    return Document(
        doc_id=doc_id,
        title=title,
        path=str(path),
        text=text,
        articles=articles,
        content_hash=content_hash,
        loader=loader,
    )
