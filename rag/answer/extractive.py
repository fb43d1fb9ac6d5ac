"""The default backend: answer with the passages' own sentences, each cited, or refuse.

It never writes a word the magazine did not print. The reader (``rag/answer/reader.py``)
scores every sentence and table row of the retrieved passages; the best one's calibrated
probability decides between answering and refusing; the answer is composed by what was
asked (``rag/answer/compose.py``): the best sentence for a fact (two when a second scores nearly
as well); the passage's own enumeration, item by item, for a list, a how or a why. Questions
about the magazine itself (which page, who wrote an article, which unit) are answered from
the article records.
"""

from __future__ import annotations

import bisect
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from difflib import SequenceMatcher
from functools import lru_cache

import numpy as np

from rag.answer.bridge import ABOUT_ISSUE, record_by_unit, record_hits, record_line
from rag.answer.citations import format_pages, make_citation, sources_block
from rag.answer.compose import (
    COUNT_CLASSIFIERS,
    Item,
    clause_list,
    counted_items,
    counted_noun,
    enumeration,
    headed_lists,
    item_text,
    items_counted_before,
    list_after,
    list_around,
)
from rag.answer.question import (
    MONTH_DAY,
    NUMBERED_THING,
    PRINTED_YEAR,
    QuestionInfo,
    analyze_question,
    is_proper_name,
    numeral_value,
    ordinals,
    quantities,
)
from rag.answer.reader import HAS_DATE, HAS_NUMBER, Candidate, ReaderModel, featurize
from rag.config import AnswerSettings
from rag.crosslingual import STOPWORDS, english_words
from rag.lexical import ChineseTokenizer, whole_words
from rag.retrieve import latin_script
from rag.support import QuestionProfile
from rag.types import Answer, Chunk, Citation, Hit

REFUSAL = "资料中未找到相关内容。"
_HEADLINE = re.compile(r"^\s*(——|—|文\s*[|｜]|作者单位|摄影|图\s*[|｜]|资料图片)")
MIN_PIECE_CHARS = 4
_SENTENCE_END = ("。", "！", "？", "!", "?", "；")
LIST_READ_ON = 2  # passages of the same article read past a retrieved one for the rest of its list
MAX_FORMULA_PASSAGES = 6  # passages read for the items of a numbered formula (哪三个“性”)
# A line of a table of contents: a page number, then a title or section ("12 劳动关系协商协调工作",
# "- 09 全国工会重点工作创新案例"); it states where things are printed, which the page questions
# read from the article records, and answers nothing else.
_CONTENTS_ENTRY = re.compile(r"^\s*(?:[-•·]\s*)?\d{1,3}\s+[^\d\s%％]")
# A reference-list entry (GB/T 7714 type codes: [J] journal, [M] book, [N] newspaper…) cites
# another work; its years and names answer nothing about this one.
_REFERENCE_ENTRY = re.compile(r"\[(?:J|M|N|C|D|R|S|P|Z|EB/OL|J/OL|N/OL)\]")


_SUPERLATIVE = re.compile(r"最(高|多|大|低|少|小)")
_CELL_NUMBER = re.compile(r"^-?[\d,]+(?:\.\d+)?%?$")


def _table_superlative(question: str, profile: QuestionProfile, hits: list[Hit], tokenizer: ChineseTokenizer):
    """Answer "which row is highest/lowest in column X" from a table chunk by reading the numbers.

    Returns (sentence, hit, raw row) or None. The sentence quotes the row's labels and the
    value exactly as printed.
    """
    m = _SUPERLATIVE.search(question)
    if not m:
        return None
    want_max = m.group(1) in "高多大"
    for hit in hits:
        if hit.chunk.kind != "table":
            continue
        lines = [ln for ln in hit.chunk.text.split("\n") if ln.strip()]
        header: list[list[str]] = []
        rows: list[tuple[list[str], str]] = []
        prev: list[str] = []
        for ln in lines:
            cells = ln.split("\t")
            if not any(_CELL_NUMBER.match(c.strip()) for c in cells):
                if not rows:
                    header.append(cells)
                continue
            filled = [c if c.strip() or i >= len(prev) else prev[i] for i, c in enumerate(cells)]
            prev = filled
            rows.append((filled, ln))
        if not rows:
            continue
        width = max(len(r[0]) for r in rows)
        col_names = [""] * width
        for h in header:
            for i, c in enumerate(h[:width]):
                if c.strip():
                    col_names[i] = c.strip()
        target = next((i for i, n in enumerate(col_names) if n and tokenizer.normalize(n) in profile.norm), None)
        if target is None:
            continue
        # Rows whose labels match the question best (e.g. 企业经营管理人才), then the extreme value.
        def label(cells: list[str]) -> str:
            return " ".join(c.strip() for c in cells if c.strip() and not _CELL_NUMBER.match(c.strip()))

        scored = [(profile.coverage(tokenizer.normalize(label(c))), c, raw) for c, raw in rows if target < len(c)]
        if not scored:
            continue
        top = max(sc for sc, _, _ in scored)
        pool = [(c, raw) for sc, c, raw in scored if sc >= top - 1e-9 and _CELL_NUMBER.match(c[target].strip())]
        if len(pool) < 2:
            continue
        col = target
        cells, raw = (max if want_max else min)(pool, key=lambda x: _number(x[0][col]))
        caption = lines[0].strip() if header and not header[0][0].strip() == "" else ""
        sentence = f"{caption}中，{label(cells)}的{col_names[target]}最{m.group(1)}，为{cells[target].strip()}。"
        return sentence, hit, raw
    return None


def _number(cell: str) -> float:
    return float(cell.strip().replace(",", "").rstrip("%"))


def refusal_answer(question: str, hits: list[Hit], backend: str = "extractive") -> Answer:
    """The honest 'not found' answer, suggesting the nearest articles."""
    seen: dict[str, Chunk] = {}
    for h in hits:
        seen.setdefault(h.chunk.article, h.chunk)
    suggestions = [f"《{a.strip('《》')}》（{format_pages(c.pages)}）" for a, c in list(seen.items())[:3]]
    text = REFUSAL
    if suggestions:
        text += "相关的文章有：" + "；".join(suggestions) + "。"
    return Answer(
        question=question,
        answer=text,
        body=text,
        refused=True,
        citations=[],
        passages=hits,
        backend=backend,
        suggestions=suggestions,
    )


def _page_answer(
    profile: QuestionProfile,
    hits: list[Hit],
    tokenizer: ChineseTokenizer,
    article_pages: Callable[[Chunk], tuple[str, ...]] | None,
) -> tuple[str, Chunk] | None:
    """For 'which page' questions: the article that best matches, stated with its pages."""
    best: tuple[float, Chunk] | None = None
    for hit in hits:
        c = hit.chunk
        meta_text = tokenizer.normalize(f"{c.article} {c.unit or ''} {c.section or ''} {c.text if c.kind == 'meta' else ''}")
        score = profile.coverage(meta_text) + (0.1 if c.kind == "meta" else 0.0) + 0.05 / hit.rank
        if best is None or score > best[0]:
            best = (score, c)
    if best is None:
        return None
    c = best[1]
    pages = article_pages(c) if article_pages else c.pages
    title = c.article if c.article.startswith("《") else f"《{c.article}》"
    return f"{title}刊登在{c.doc}{format_pages(pages)}。", c




def render(body: str, citations: list[Citation]) -> str:
    """The answer as plain text: the body, then the 来源 lines (the CLI and API text field)."""
    return f"{body}\n\n{sources_block(citations)}" if citations else body


def _paragraph_norms(text: str, pieces: list) -> list[str]:
    """Per piece, the normalised text of the paragraph (line) of ``text`` it starts in."""
    line_of = [text.count("\n", 0, p.start) for p in pieces]
    joined: dict[int, str] = {}
    for p, line in zip(pieces, line_of, strict=True):
        joined[line] = joined.get(line, "") + p.norm
    return [joined[line] for line in line_of]


def gather_candidates(index, embedder, hits: list[Hit], qvec: np.ndarray) -> list[Candidate]:
    """Every sentence and table row of the hits' passages, with its vector and context."""
    normalize = index.tokenizer.normalize
    cands: list[Candidate] = []
    for hit in hits:
        chunk = hit.chunk
        if chunk.kind == "meta":
            continue
        i = index.position(chunk)
        pieces, title_norm = index.pieces(i)
        if not pieces:
            continue
        vecs = index.piece_vectors(i, embedder)
        context = index.chunk_norm(i) + "\n" + title_norm + normalize(f" {chunk.unit or ''} {chunk.section or ''}")
        chunk_cos = hit.dense_score if hit.dense_score is not None else float(index.vectors[i] @ qvec)
        article = index.article_norm(chunk)
        paragraphs = _paragraph_norms(chunk.text, pieces)
        for j, (piece, vec) in enumerate(zip(pieces, vecs, strict=True)):
            # Titles, subtitles and bylines restate the question's words but answer nothing.
            if (
                len(piece.norm) < MIN_PIECE_CHARS
                # (a sentence the loader also took as the title of a title-less document stays)
                or (piece.norm in title_norm and not piece.shown.rstrip().endswith(_SENTENCE_END))
                or (_HEADLINE.match(piece.shown) and len(piece.shown) < 40)
                or (_CONTENTS_ENTRY.match(piece.shown) and not piece.shown.rstrip().endswith(_SENTENCE_END))
                or _REFERENCE_ENTRY.search(piece.shown)
                or index.is_title_line(piece.norm)
            ):
                continue
            cands.append(
                Candidate(
                    text=piece.shown,
                    quote=piece.quote,
                    start=piece.start,
                    norm=piece.norm,
                    vec=vec,
                    title_norm=title_norm,
                    context_norm=context,
                    rank=hit.rank,
                    chunk_cos=chunk_cos,
                    kind=chunk.kind,
                    article_norm=article,
                    hit=hit,
                    index=j,
                    passage=chunk.text,
                    paragraph_norm=paragraphs[j],
                )
            )
    return cands


_AUTHOR_Q = re.compile(r"作者|谁写|谁撰写|执笔|撰稿|署名|written by|who wrote|author")
_UNIT_Q = re.compile(r"哪个单位|哪家单位|什么单位|报送|供稿|which unit")
_SECTION_Q = re.compile(r"栏目|哪个版块|哪一栏|section")


def _record_answer(info: QuestionInfo, hits: list[Hit], tokenizer: ChineseTokenizer) -> tuple[str, Chunk] | None:
    """Who wrote an article, which unit reported it, which section it is in: from its record.

    The article must be named by the question (its title covers most of the question's content
    outside the interrogative), so a question about someone else's role is not answered here.
    """
    low = info.text.lower()
    # "作者是哪个单位的" asks for the unit: the unit pattern goes first.
    want = (
        "unit" if _UNIT_Q.search(low) else
        "author" if _AUTHOR_Q.search(low) else
        "section" if _SECTION_Q.search(low) else None
    )
    if want is None:
        return None
    best: tuple[float, Chunk] | None = None
    if not info.latin:
        for hit in hits:
            c = hit.chunk
            if not getattr(c, want):
                continue
            cov = info.profile.coverage(tokenizer.normalize(c.article))
            if best is None or cov > best[0]:
                best = (cov, c)
    if (best is None or best[0] < 0.45) and (info.latin or _ARTICLE_REF.search(info.text.lower())):
        # The question names the article by its topic ("湛江钢铁安康杯那篇文章"), or in English,
        # which cannot cover a Chinese title: an article holding two of the top three passages
        # stands in for naming it (the table of contents, which lists every title, often ranks
        # first for such a question and names no author).
        top = [h.chunk for h in hits[:3]]
        votes = Counter((c.doc_id, c.article) for c in top if getattr(c, want))
        agreed = [c for c in top if votes[(c.doc_id, c.article)] >= 2]
        if agreed:
            best = (1.0, agreed[0])
    if best is None or best[0] < 0.45:
        return None
    c = best[1]
    title = c.article if c.article.startswith("《") else f"《{c.article}》"
    what = {"author": "作者是", "unit": "报送单位是", "section": "刊登在栏目"}[want]
    return f"{title}的{what}{getattr(c, want)}（{c.doc}{format_pages(c.pages)}）。", c


_ARTICLE_REF = re.compile(r"那篇|这篇|该篇|篇文章|一文|这份稿|\barticle\b")
_ARTICLES_Q = re.compile(r"哪篇|哪几篇|几篇|多少篇|哪些文章|什么文章|哪些稿|which articles?|how many articles")
_SECTION_WORD = re.compile(r"栏目|版块|专栏|栏|section|column")


# Who took the photographs: answered by the credit printed with them ("摄影 | 林景余").
_PHOTO_Q = re.compile(r"谁拍|谁摄|拍摄者|摄影师|摄影者|摄影是谁|(?:照片|图片|相片).{0,8}(?:谁|哪位)|photographer|who took")
_PHOTO_CREDIT = re.compile(r"(?:摄影|摄|图)\s*[|｜]\s*([\u4e00-\u9fff]{2,4}(?:[ 、][\u4e00-\u9fff]{2,4}){0,3})")


def _photo_credit(hits: list[Hit]) -> tuple[str, Citation] | None:
    """"照片是谁拍的" answered by the photo credit of the top passage (the one the question
    describes); None when it prints none: a credit elsewhere belongs to other photographs."""
    if not hits:
        return None
    chunk = hits[0].chunk
    m = _PHOTO_CREDIT.search(chunk.text)
    if m is None:
        return None
    return f"摄影：{m.group(1)}", make_citation(1, chunk, m.group(0))


def _title_citation(n: int, chunk: Chunk, index) -> Citation:
    """A citation of an article's record (title, byline, unit): the page its title is printed on,
    quoting the first line of the article (``chunk`` may be any of its passages)."""
    first = _article_start(chunk, index)
    cit = make_citation(n, first, first.text.split("\n")[0][:120])
    pages = index.article_pages(first)
    return replace(cit, pages=(pages[0],)) if pages else cit


def _article_starts(index) -> dict[tuple[str, str], Chunk]:
    """Every article's first passage by (document, article), in reading order: once per index
    generation."""
    starts: dict[tuple[str, str], Chunk] | None = index.derived.get("article_starts")
    if starts is None:
        starts = {}
        for c in index.chunks:
            if c.kind != "meta":
                starts.setdefault((c.doc_id, c.article), c)
        index.derived["article_starts"] = starts
    return starts


def _article_start(chunk: Chunk, index) -> Chunk:
    """The first passage of ``chunk``'s article."""
    return _article_starts(index).get((chunk.doc_id, chunk.article), chunk)


def _section_firsts(index) -> dict[tuple[str, str, str], Chunk]:
    """Every article's first chunk by (document, section, article), in reading order: the
    articles the issues' tables of contents list. Once per index generation."""
    firsts: dict[tuple[str, str, str], Chunk] | None = index.derived.get("section_firsts")
    if firsts is None:
        starts = _article_starts(index).items()
        firsts = {(doc, c.section, article): c for (doc, article), c in starts if c.section}
        index.derived["section_firsts"] = firsts
    return firsts


def _article_line(c: Chunk, cit: Citation, index, with_doc: bool = True) -> str:
    return f"《{c.article.strip('《》')}》（{c.doc if with_doc else ''}{format_pages(index.article_pages(c))}）[{cit.n}]"


# What a question about the whole issue's articles may say besides asking for them: "本刊这一期一共
# 登了多少篇文章". Anything more ("本期哪些文章讲到工会资产") asks about some of them.
_ISSUE_FILLER = re.compile(r"文章|稿件|一共|总共|这一期|一期|刊登|登了|收录|[共有都是哪些的了吗呢里中上期本这该]")
MAX_ISSUE_REST = 2
_ISSUE_FILLER_EN = frozenset("articles article issue magazine there published printed total list all".split())


def _asks_more_than_the_articles(info: QuestionInfo) -> bool:
    """Whether a question about the issue's articles asks about some of them only."""
    if latin_script(info.text):
        words = english_words(ABOUT_ISSUE.sub(" ", _ARTICLES_Q.sub(" ", info.text.lower())))
        return any(w not in STOPWORDS and w not in _ISSUE_FILLER_EN for w in words)
    rest = _ISSUE_FILLER.sub("", ABOUT_ISSUE.sub("", _ARTICLES_Q.sub("", info.norm)))
    return len(re.findall(r"[\u4e00-\u9fff\w]", rest)) > MAX_ISSUE_REST


def _section_answer(info: QuestionInfo, hits: list[Hit], index) -> tuple[str, list[Citation]] | None:
    """Which articles a section (栏目) of an issue holds, or the whole issue ("本期有几篇文章"):
    from the article records, in page order.

    Only when the question asks for articles and names exactly one section the index knows, or
    names none and asks about the issue itself (the issue of the best passage that has sections).
    """
    low = info.text.lower()
    if not _ARTICLES_Q.search(low):
        return None
    firsts = _section_firsts(index)
    named = {sec for _, sec, _ in firsts if index.tokenizer.normalize(sec) in info.norm}
    if _SECTION_WORD.search(low) and len(named) == 1:
        section = named.pop()
        chunks = [c for (_, sec, _), c in firsts.items() if sec == section]
        citations = [_title_citation(n, c, index) for n, c in enumerate(chunks, 1)]
        lines = [f"- {_article_line(c, cit, index)}" for c, cit in zip(chunks, citations, strict=True)]
        return f"“{section}”栏目共{len(chunks)}篇文章：\n" + "\n".join(lines), citations
    if named or not ABOUT_ISSUE.search(low):
        return None
    if _asks_more_than_the_articles(info):
        return None
    docs = {doc for doc, _, _ in firsts}
    doc = next((h.chunk.doc_id for h in hits if h.chunk.doc_id in docs), None)
    if doc is None:
        return None
    chunks = [c for (d, _, _), c in firsts.items() if d == doc]
    citations = [_title_citation(n, c, index) for n, c in enumerate(chunks, 1)]
    by_section: dict[str, list[str]] = {}
    for c, cit in zip(chunks, citations, strict=True):
        by_section.setdefault(c.section or "", []).append(_article_line(c, cit, index, with_doc=False))
    lines = [f"- {section}：{'；'.join(items)}" for section, items in by_section.items()]
    head = f"{chunks[0].doc}目录所列栏目共{len(by_section)}个、文章共{len(chunks)}篇（目录不列入栏目的页面不计）："
    return head + "\n" + "\n".join(lines), citations


def _read_on(index, chunk: Chunk, more: int = LIST_READ_ON) -> tuple[str, list[Chunk], list[int]]:
    """``chunk``'s text continued by up to ``more`` next passages of its article: a list
    often runs past its passage's end. Returns the text, its passages and where each one ends in
    it (the overlap neighbouring chunks share is not repeated)."""
    parts, text, ends = [chunk], chunk.text, [len(chunk.text)]
    i = index.position(chunk)
    for nxt in index.chunks[i + 1 : i + 1 + more]:
        if nxt.kind != "body" or nxt.doc_id != chunk.doc_id or nxt.article != chunk.article:
            break
        prev = parts[-1]
        shared = prev.end - nxt.start
        exact = len(prev.text) == prev.end - prev.start and len(nxt.text) == nxt.end - nxt.start
        if exact and 0 <= shared < len(nxt.text) and prev.text.endswith(nxt.text[:shared]):
            text += nxt.text[shared:]
        else:
            text += "\n" + nxt.text
        parts.append(nxt)
        ends.append(len(text))
    return text, parts, ends


def _owner(parts: list[Chunk], ends: list[int], at: int) -> Chunk:
    """The passage of a read-on text that holds offset ``at``."""
    return parts[min(bisect.bisect_right(ends, at), len(parts) - 1)]


def _named_list(info: QuestionInfo, hits: list[Hit], index) -> tuple[str, list[Citation]] | None:
    """A list question that names a heading of one of the top passages ("对策建议" for 对策与建议)
    is answered by the list under that heading, item by item, whatever the sentence scores say.

    The list is read on into the article's next passages; each item cites the passage it is in.
    """
    if not info.listing or info.answer_type not in ("list", "how", "other"):
        return None
    for hit in hits[:3]:
        chunk = hit.chunk
        if chunk.kind != "body":
            continue
        text, parts, ends = _read_on(index, chunk)
        for heading, items in headed_lists(text):
            words = [w for w in index.tokenizer.words(index.tokenizer.normalize(heading)) if len(w) >= 2]
            if len(heading) < 4 or not words or not all(w in info.norm for w in words):
                continue
            if items[0].start >= len(chunk.text):
                continue  # the heading's list is the next passage's: it was not retrieved
            cite = _Citer()
            lines = []
            for it in items:
                owner = _owner(parts, ends, it.start)
                n = cite(Hit(chunk=owner, score=hit.score, rank=hit.rank), it.text.strip())
                lines.append(f"- {_sentence(item_text(it, info.how))}[{n}]")
            return f"{heading}：\n" + "\n".join(lines), cite.citations
    return None


# "哪五同", "哪三个“性”": a numbered formula whose items share one character.
# 哪7个产业工人班组: the items are listed before "等7个产业工人班组" (the noun as the question has it).
_COUNTED_NOUN_Q = re.compile(rf"哪([二三四五六七八九十两]|\d{{1,2}})[{COUNT_CLASSIFIERS}]([\u4e00-\u9fff]{{2,12}}?)(?=[？?，,。！!]|$)")
_COUNTED_Q = re.compile(r"哪([二三四五六七八九十两]|\d{1,2})(?:个|项|条|种|大)?([“\"「]?)([\u4e00-\u9fff])[”\"」]?(?=[？?，,。！!]|$)")


# An organisation named by its own words and a suffix: 中铁广州局二公司, 鹤山市总工会.
_ORGANISATION = re.compile(r"([^\W\d的了是在和与有又很都也把被对从向为及或]{2,10})(?:有限公司|公司|集团|总工会|局|协会)")


def _unknown_organisations(info: QuestionInfo, index) -> list[str]:
    """Organisations of the question the corpus never names, not even by their own words without
    the suffix ("中铁广州局一公司" when only 二公司 is written; "湛钢工会" is 湛钢's union)."""
    out = []
    for m in _ORGANISATION.finditer(info.norm):
        if not index.corpus_has(m.group(0)) and not index.corpus_has(m.group(1)):
            out.append(m.group(0))
    return out


def _counted_list(info: QuestionInfo, hits: list[Hit], index) -> tuple[str, list[Citation]] | None:
    """A question for the items of a numbered formula (哪五同, 哪三个“性”) or of a counted noun
    (哪7个产业工人班组) is answered by the top passages' items of that formula, or by the items
    listed before "等7个产业工人班组", when they list exactly that many (each citing its passage);
    the article must name every place, person and organisation the question does."""
    m = _COUNTED_Q.search(info.norm) or _COUNTED_NOUN_Q.search(info.norm)
    if m is None:
        return None
    count = numeral_value(m.group(1).replace("两", "二"))
    if count is None or count < 2:
        return None
    top = [h for h in hits[:3] if h.chunk.kind == "body" and h.chunk.article == hits[0].chunk.article]
    if not top or _names_missing(info, top[0].chunk, index) or _unknown_organisations(info, index):
        return None
    if m.re is _COUNTED_NOUN_Q:
        # "等7个产业工人班组" is printed once, in or just after one of the article's passages retrieved
        found = None
        for hit in [h for h in hits if h.chunk.kind == "body" and h.chunk.article == top[0].chunk.article]:
            text, parts, ends = _read_on(index, hit.chunk, 1)
            items = items_counted_before(text, count, m.group(2))
            if items:
                found = hit, text, parts, ends, items
                break
        if found is None:
            return None
        first, text, parts, ends, items = found
    else:
        # The formula's items may sit in several of the top passages (one paragraph per "性"):
        # read the article from the first of them to past the last.
        first = min(top, key=lambda h: index.position(h.chunk))
        span = max(index.position(h.chunk) for h in top) - index.position(first.chunk)
        text, parts, ends = _read_on(index, first.chunk, min(span + LIST_READ_ON, MAX_FORMULA_PASSAGES))
        # 哪五同: items that each hold 同; 哪三级: a chain counted by 三级 (“公司-项目部-班组”三级)
        items = counted_items(text, count, m.group(3), quoted_first=bool(m.group(2))) or items_counted_before(
            text, count, m.group(3)
        )
    if not items:
        return None
    cite = _Citer()
    lines = []
    for it in items:
        n = cite(Hit(chunk=_owner(parts, ends, it.start), score=first.score, rank=first.rank), it.text)
        lines.append(f"- {it.text}[{n}]")
    return "\n".join(lines), cite.citations


def _count_contradicted(info: QuestionInfo, hits: list[Hit]) -> bool:
    """"哪8个产业工人班组" over passages that print "7个产业工人班组" and never 8: the question's count
    is not the issue's, and any list quoted would be another one."""
    m = _COUNTED_NOUN_Q.search(info.norm)
    if m is None:
        return False
    asked = numeral_value(m.group(1).replace("两", "二"))
    printed = counted_noun(m.group(2))
    counts = {numeral_value(n) for h in hits if h.chunk.kind == "body" for n in printed.findall(h.chunk.text)}
    counts.discard(None)
    return bool(counts) and asked not in counts


def _with_masthead(info: QuestionInfo, hits: list[Hit], index) -> list[Hit]:
    """A question about the issue itself (本期是总第几期, 这期杂志印了多少本) also reads the masthead
    blocks, which retrieval ranks poorly: their lines are short and share few words with it."""
    if not ABOUT_ISSUE.search(info.text.lower()):
        return hits
    seen = {h.chunk.chunk_id for h in hits}
    extra = [h for h in record_hits(index) if h.chunk.chunk_id not in seen]
    return [*hits, *(replace(h, rank=len(hits) + n, score=0.0) for n, h in enumerate(extra, 1))]


def _article_text(chunk: Chunk, index, with_text: bool) -> str:
    """``chunk``'s whole article, normalised (it starts with the title and unit); for a chunk with
    no real article, its title and unit, and ``with_text`` its own text."""
    own = f"{chunk.article} {chunk.unit or ''}" + (f" {chunk.text}" if with_text else "")
    return index.article_norm(chunk) or index.tokenizer.normalize(own)


def _cites_unnamed(info: QuestionInfo, citations: list[Citation], index) -> bool:
    """A worked-out answer whose first source's article never names a person or place the
    question does ("李映互助保障工作针对哪些问题" answered with 顺德's list)."""
    if not citations or not (info.persons or info.places):
        return False
    chunk = index.chunks[index.position_of(citations[0].chunk_id)]
    return info.unnamed_in(_article_text(chunk, index, with_text=True))


def _names_missing(info: QuestionInfo, chunk: Chunk, index) -> list[str]:
    """The places, people and organisations of the question that ``chunk``'s article never names."""
    return info.missing_names(_article_text(chunk, index, with_text=False))


# A longer quote is more likely a misremembered title than another one.
MAX_EXACT_QUOTE = 12


def _unknown_quoted(info: QuestionInfo, index) -> list[str]:
    """The question's quoted names (《…》, “…”, or Chinese written into an English question) of at
    most ``MAX_EXACT_QUOTE`` characters that the corpus never prints, spacing and line breaks aside.
    (An English question's "quoted English" is a paraphrase, never printed.)"""
    return [
        q for q in info.quoted
        if 2 <= len(q.strip()) <= MAX_EXACT_QUOTE
        and not (latin_script(info.text) and latin_script(q))
        and not index.corpus_has(q, ignore_space=True)
    ]


def _misquoted_title(info: QuestionInfo, hits: list[Hit], tokenizer: ChineseTokenizer) -> bool:
    """A quoted title the corpus does not print that is a retrieved article's title with a name
    replaced: 《创新粤港澳工会协同机制 促进佛山区融合发展》 for the article about 大湾区 is
    another article, not a misremembered one (a word left out, or 推动 for 促进, is misremembered)."""
    titles = {tokenizer.normalize(h.chunk.article).replace(" ", "") for h in hits if h.chunk.article}
    for q in info.quoted:
        quote = q.replace(" ", "")
        if len(quote) <= MAX_EXACT_QUOTE or quote in titles:
            continue
        for title in titles:
            match = SequenceMatcher(None, quote, title, autojunk=False)
            if match.ratio() < 0.6:
                continue
            for op, i1, i2, _j1, _j2 in match.get_opcodes():
                if op == "replace" and any(is_proper_name(w, tokenizer) for w in tokenizer.words(quote[i1:i2])):
                    return True
    return False


def _unknown_terms(info: QuestionInfo, index) -> list[str]:
    """The question's words (two characters or more) that no passage of the corpus contains."""
    return [w for w in whole_words(info.profile.words) if len(w) >= 2 and not index.corpus_has(w)]


# Statistics a figure may be: a question asking one of these gets no other kind of figure.
_STATISTIC = re.compile(r"平均|人均|均值|中位数|中位|众数")


def _uncomputed_statistic(info: QuestionInfo, index) -> bool:
    """A question asking for a statistic (an average, a median) that the corpus never prints."""
    return any(not index.corpus_has(m.group(0)) for m in _STATISTIC.finditer(info.norm))


# A table question that picks its row (最高的, 哪个行业) names no row itself.
_PICKS_ROW = re.compile(r"最高|最低|最多|最少|最大|最小|排第|第一|哪个|哪些|哪一")


def _row_labels(c: Candidate, index) -> list[list[str]]:
    """The words of each row label of a table candidate ("表1 …：通用设备制造业 企业经营管理人才：…")."""
    parts = c.text.split("：")
    if len(parts) < 2:
        return []
    labels = []
    for label in parts[-2].split(" "):
        norm = index.tokenizer.normalize(label)
        labels.append([w for w in whole_words(index.tokenizer.words(norm)) if len(w) >= 2])
    return labels


def _row_unnamed(info: QuestionInfo, c: Candidate, cands: list[Candidate], index) -> bool:
    """A table row asked for one of its values whose row labels the question does not name:
    "汽车制造业的高位数" over the row of 通用设备制造业. A label counts as named when half of the
    words that tell it from the other rows' labels are in the question (制造业 is every row's)."""
    rows = [_row_labels(o, index) for o in cands if o.kind == "table" and o is not c]
    for k, words in enumerate(_row_labels(c, index)):
        # words of other rows' different labels in the same column (rows filled down from a
        # merged cell share this row's label, which says nothing about telling them apart)
        others = {w for row in rows if k < len(row) and row[k] != words for w in row[k]}
        own = [w for w in words if w not in others]
        if own and sum(w in info.norm for w in own) < 0.5 * len(own):
            return True
    return False


# "一名", "一位" on their own: the article "a", not a count of one.
_ONE = re.compile(r"一\s*\S")


def paragraph_span(text: str, offset: int) -> tuple[int, int]:
    """(start, end) of the line-delimited paragraph of ``text`` that holds ``offset``."""
    end = text.find("\n", offset)
    return text.rfind("\n", 0, offset) + 1, len(text) if end < 0 else end


def _in_force(pattern: re.Pattern[str], c: Candidate) -> set:
    """What ``pattern`` finds in a sentence, else the last of it named before the sentence in its
    paragraph ("2024年，…增长14.2%。从不同等级来看，…" is still about 2024; in a chronicle the
    sentences after "12月9日，…举行。" are about 12月9日)."""
    named = set(pattern.findall(c.text))
    if named:
        return named
    before = pattern.findall(c.passage[paragraph_span(c.passage, c.start)[0] : c.start])
    return {before[-1]} if before else set()


_TABLE_LABEL = re.compile(r"^\s*(表\s*\d{1,2})(?!\d)")


def _years_of(c: Candidate) -> set:
    """The years a sentence is about: its own, the one in force in its paragraph, or (a table
    row) those of the sentences citing its table."""
    return _in_force(PRINTED_YEAR, c) or set(_cited_years(c))


def _cited_years(c: Candidate) -> frozenset:
    """The years of the sentences that cite a table row's table ("据…发布的2023年…价位…。(详见表1)"):
    a table's caption often names no year, the text that points to it does."""
    label = _TABLE_LABEL.match(c.text) if c.kind == "table" else None
    if label is None:
        return frozenset()
    return _years_citing(re.sub(r"\s+", "", label.group(1)), c.article_norm)


@lru_cache(maxsize=32)
def _years_citing(tag: str, article_norm: str) -> frozenset:
    """The years of the sentences of ``article_norm`` that cite table ``tag`` (once per table, not
    once per row: every row of a table asks the same)."""
    years: set = set()
    sentences = [t.strip() for t in re.split(r"[。！？；\n]", article_norm) if t.strip()]
    for k, sentence in enumerate(sentences):
        if tag in sentence and not sentence.startswith(tag):
            # "(详见表1)" on its own cites the sentence before it
            cited = sentence if len(sentence) > 12 or k == 0 else sentences[k - 1] + sentence
            years |= set(PRINTED_YEAR.findall(cited))
    return frozenset(years)


def _states_quantities(info: QuestionInfo, text: str) -> bool:
    """Whether the sentence states every amount the question sets as a condition, in its unit
    ("超过1万元的占多少" over "8000元以上的占18.2%": the asked bracket is not printed)."""
    stated = set(quantities(text))
    return all(q in stated for q in info.quantities)


# Words of a when-question that ask, not say what happened (什么时候, 哪天, 日期).
_WHEN_WORD = re.compile(r"时候|时间|日期|什么|[哪何几]")
# An event still to come: 即将投入运营, 将于明年开通, 计划…建成.
_COMING = re.compile(r"即将|将要|将于|拟于?|计划于?|预计于?|有望")
_CLAUSE_END = re.compile(r"[，,。；;！!？?：:]")


def _only_coming(info: QuestionInfo, text: str) -> bool:
    """A when-question whose event the sentence states only as still to come: the clause holding
    most of the question's words has 即将/将于/计划… and no date of its own. "2025年12月26日，为庆祝
    深圳地铁13号线一期北段即将投入运营，…" dates a celebration, not the opening ("预计于2026年开通"
    dates it: kept)."""
    if _COMING.search(info.norm):
        return False  # the question itself asks when something will happen
    words = [w for w in whole_words(info.profile.words) if len(w) >= 2 and not _WHEN_WORD.search(w)]
    clauses = _CLAUSE_END.split(text)
    held = [sum(w in clause for w in words) for clause in clauses]
    if not words or max(held) < 2:
        return False
    clause = clauses[held.index(max(held))]
    return bool(_COMING.search(clause)) and not HAS_DATE.search(NUMBERED_THING.sub("", clause))


# A clause that goes on about the previous one's subject: it opens with the verb of a figure.
_GOES_ON = re.compile(r"\s*(?:并|且|共|总|约|已|均|再|分别)?(?:达到?|为|是|有|超过?|突破|增长|增加|下降|减少|提高|提升|同比|环比|较|比|占|创|实现|累计|合计|计)")


def _value_unstated(attribute: str | None, text: str) -> bool:
    """The sentence names the asked attribute only in clauses holding no figure: "2024年伤害频率、
    严重率等关键指标全面受控，违章总量同比下降82.66%" names 伤害频率 but gives no value for it
    (the 82.66 % is the 违章总量's)."""
    if not attribute or attribute not in text:
        return False
    clauses = _CLAUSE_END.split(text)
    held = []
    for k, clause in enumerate(clauses):
        if attribute in clause:
            held.append(clause)
            # "参赛人数创新高，达到1000人": the next clause goes on about it without a subject
            if k + 1 < len(clauses) and _GOES_ON.match(clauses[k + 1]):
                held.append(clauses[k + 1])
    return not any(HAS_NUMBER.search(PRINTED_YEAR.sub("", NUMBERED_THING.sub("", c))) for c in held)


_FIGURE_SPACE = re.compile(r"(?<=\d)\s+(?=[年月日号%万亿元人名个])|(?<=[年月])\s+(?=\d)")


def _other_ordinal(asked: set[tuple[int, str]], text: str) -> bool:
    """The sentence names another ordinal of what the question counts and not the asked one:
    "第三种基因转殖生物" asked, "第一种基因转殖生物是…" printed."""
    if not asked:
        return False  # the question counts nothing: no sentence needs scanning
    named = ordinals(text)
    return any(
        (n, unit) not in named and any(u == unit for _, u in named) for n, unit in asked
    )


def _type_ok(info: QuestionInfo, c: Candidate) -> bool:
    """Whether a sentence holds the kind of value the question asks for (when it says so)."""
    # normalised: 三個月 (Traditional) and full-width digits are numbers too; "成立于 1985 年" (a
    # space between a figure and its unit, as translated or PDF text prints it) is a year too
    text = _FIGURE_SPACE.sub("", c.norm or c.text)
    if info.count_pattern is not None and not any(
        # "她仅是一名业余跑者": 一名 is an article, not a count (on the public train/calib splits
        # 1 of 230 count questions is answered "一个")
        not _ONE.fullmatch(m.group(0).strip()) for m in info.count_pattern.finditer(text)
    ):
        return False
    if info.answer_type == "number" and not HAS_NUMBER.search(PRINTED_YEAR.sub("", text)):
        return False  # a year is not the count, amount or share asked for
    if info.years:
        # A sentence about other years and not the asked one is about another year. On the public
        # train/calib splits 7 of 327 answering sentences of year questions name no year while
        # the last one before them in the paragraph is another; 29 of the 43 yearless sentences
        # that held the swapped-out answer of a year swap are such sentences.
        named = _years_of(c)
        if named and not named & set(info.years):
            return False
    if info.days:
        # The same for a day: on those splits 2 of 30 answering sentences of questions naming a
        # day are about another day, against 29 of 30 sentences that held a date swap's answer.
        named = _in_force(MONTH_DAY, c)
        if named and not named & set(info.days):
            return False
    if _other_ordinal(info.ordinals, text):
        return False
    if _value_unstated(info.attribute, text):
        return False
    if info.quantities and not _states_quantities(info, text):
        return False
    if info.missing_persons(c.paragraph_norm or c.context_norm):
        # A fact about a person comes from a paragraph naming them: in a chronicle the entry of
        # 12月22日 names who went (副主席郑辉), and another official asked about did not.
        return False
    if info.places and info.missing_names(c.article_norm or c.context_norm, info.places):  # both hold the title
        # A fact about a place comes from an article that names it: on the magazine's tune and
        # dev sets this refuses 3 more unanswerables (佛山 asked, only 中山 written) and no
        # answerable question; on public paragraphs (narrower than articles) 2 % of answerable
        # questions name a place their own paragraph does not.
        return False
    return not (info.answer_type == "when" and not HAS_DATE.search(text))


def _chosen(info: QuestionInfo, cands: list[Candidate], settings: AnswerSettings) -> list[Candidate]:
    """The sentences an answer quotes: the best one, plus close runners-up.

    A list, how or why takes up to ``max_sentences + 1`` sentences scoring at least
    ``support_ratio`` of the best; a fact takes a second sentence only when it scores nearly as
    well (a question asking two things, or a fact stated across two sentences).
    """
    best = max(cands, key=lambda c: c.prob)
    if info.broad:
        limit, floor = settings.max_sentences + 1, max(settings.support_ratio * best.prob, 0.05)
    else:
        limit, floor = 2, max(settings.second_ratio * best.prob, 0.05)
    chosen = [best]
    for c in sorted(cands, key=lambda c: -c.prob):
        if len(chosen) >= limit:
            break
        if c is best or c.prob < floor or any(c.text == o.text for o in chosen):
            continue
        chosen.append(c)
    chosen.sort(key=lambda c: (c.rank, c.start))
    return chosen


def _bullets(info: QuestionInfo, best: Candidate) -> list[str]:
    """The items of the enumeration the best sentence introduces ("主要做法有：一是…二是…"), or
    the ；-clauses of the best sentence itself; [] when it introduces none.

    Only a lead-in counts: an enumeration merely near the best sentence is often another list
    (the article's section headings), and quoting it would answer a different question.
    """
    chunk = best.hit.chunk
    end = best.start + len(best.quote)
    items = enumeration(chunk.text, best.start, end)
    if len(items) >= 2:
        # "主要做法有：" or a heading line ("针对问题") with the list right under it
        lead_in = best.text.rstrip().endswith(("：", ":")) or not best.text.rstrip().endswith(_SENTENCE_END)
        opens = lead_in and 0 <= items[0].start - end <= 2
        is_first = best.start <= items[0].start < end  # "主要做法有：一是…。" is one sentence
        if opens or is_first:
            return [item_text(it, info.how) for it in items]
    return clause_list(best.text)


_ASKED_COUNT = re.compile(r"哪([二三四五六七八九十两])|([二三四五六七八九十两])(?:个|项|条|点|方面|类|种|大|级)")


def _asked_count(question: str) -> int | None:
    """How many items a list question asks for (哪三个, 四项), or None."""
    m = _ASKED_COUNT.search(question)
    return None if m is None else "一二三四五六七八九十".find((m.group(1) or m.group(2)).replace("两", "二")) + 1


def _led_list(
    info: QuestionInfo, cands: list[Candidate], best: Candidate, index
) -> tuple[Candidate, list[tuple[Chunk, Item]]] | None:
    """A list question whose best sentences lead into a list ("……的经验启示。" then a heading and
    its items): the items, each with the passage it is printed in (the list is read on into the
    article's next passages). Only the top few sentences of the best
    passages are tried, and a list of the wrong length is not the one asked for (哪三个 needs three)."""
    if not info.listing:
        return None
    want = _asked_count(info.text)
    asked = [w for w in info.profile.words if len(w) >= 2 and w not in best.title_norm]
    near = [c for c in cands if c.rank <= max(2, best.rank) and c.kind != "table"]
    for c in sorted(near, key=lambda c: -c.prob)[:5]:
        chunk = c.hit.chunk
        text, parts, ends = _read_on(index, chunk)
        heading, items = list_after(text, c.start + len(c.quote))
        if not items:
            heading, items = list_around(text, c.start)
        # The heading (针对问题, 经验启示) or, without one, the lead sentence must name what is
        # asked: a list under another heading of the same article answers another question.
        named = heading or c.text
        if items and (want is None or len(items) == want) and any(w in named for w in asked):
            return c, [(_owner(parts, ends, it.start), it) for it in items]
    return None


class _Citer:
    """Numbers passages in order of first use and keeps each one's first quote."""

    def __init__(self) -> None:
        self.number: dict[str, int] = {}
        self.citations: list[Citation] = []

    def __call__(self, hit: Hit, quote: str, focus: str | None = None) -> int:
        cid = hit.chunk.chunk_id
        if cid not in self.number:
            self.number[cid] = len(self.number) + 1
            self.citations.append(make_citation(self.number[cid], hit.chunk, quote, focus))
        return self.number[cid]


def _answer_value(info: QuestionInfo, text: str) -> str | None:
    """The part of a sentence that answers a count, amount or date question (the first one
    printed): what a citation's page must show."""
    if info.count_pattern is not None:
        m = info.count_pattern.search(text)
    elif info.answer_type == "number":
        m = HAS_NUMBER.search(PRINTED_YEAR.sub(lambda y: "#" * len(y.group(0)), text))
    elif info.answer_type == "when":
        m = HAS_DATE.search(text)
    else:
        m = None
    return text[m.start() : m.end()] if m else None


def _sentence(text: str) -> str:
    return text if re.search(r"[。！？；!?;”’」』）)]$", text) else text + "。"


# A sentence that points back at the scene or event of the one before it ("活动现场，…", "会上，…",
# "…在现场宣讲"): read alone it does not say which event it is about.
_POINTS_BACK = re.compile(
    r"^\s*(?:活动现场|现场|会上|会议上|会后|活动中|活动上|仪式上|比赛中|赛后|期间|其间|此次|本次|随后|此后|其中"
    r"|该(?:活动|会议|项目|赛事|比赛|机制|平台))"
    r"|在(?:现场|会上|会议上|活动上|活动中|比赛中)"  # "冯文虎获邀在现场宣讲"
)


def _antecedent(best: Candidate, chosen: list[Candidate], index) -> str | None:
    """The sentence before ``best`` in its paragraph when ``best`` opens by pointing back at it
    ("12月5日，…宣传活动在华南理工大学举行。" before "活动现场，…颁发聘书。"), else None."""
    if best.hit is None or best.index == 0 or not _POINTS_BACK.search(best.text):
        return None
    pieces = index.pieces(index.position(best.hit.chunk))[0]
    if best.index >= len(pieces):
        return None
    prev = pieces[best.index - 1]
    between = best.passage[prev.start + len(prev.quote) : best.start] if best.passage else ""
    if "\n" in between or any(c.quote == prev.quote for c in chosen):
        return None  # another paragraph, or already quoted
    return prev.shown


# A how/why answer quotes the best sentence's whole paragraph when it is this short: there a
# paragraph is one measure ("典型引路消顾虑强信心。选取龙头企业…。指导企业…。召开3次交流会…。").
HOW_PARAGRAPH_CHARS = 260


@dataclass
class _Paragraph:
    """A short paragraph around the best sentence: its span in the passage and the text around it."""

    start: int
    end: int
    before: str
    after: str

    def holds(self, c: Candidate, best: Candidate) -> bool:
        return c.passage == best.passage and self.start <= c.start < self.end


def _paragraph(best: Candidate, index) -> _Paragraph | None:
    """The paragraph of ``best`` when it is short and holds other sentences, else None."""
    text = best.passage
    if best.hit is None or best.kind == "table" or not text:
        return None
    lo, hi = paragraph_span(text, best.start)
    if hi - lo > HOW_PARAGRAPH_CHARS:
        return None
    pieces = index.pieces(index.position(best.hit.chunk))[0]
    before = [p.shown for p in pieces if lo <= p.start < best.start]
    after = [p.shown for p in pieces if best.start + len(best.quote) <= p.start < hi]
    if not before and not after:
        return None
    return _Paragraph(lo, hi, "".join(map(_sentence, before)), "".join(map(_sentence, after)))


# A line this short without an ending is a heading ("针对问题", "主要做法").
HEADING_CHARS = 24


def _heading_line(c: Candidate) -> bool:
    return c.kind == "body" and len(c.norm) <= HEADING_CHARS and not c.text.rstrip().endswith(_SENTENCE_END)


def compose(
    info: QuestionInfo, cands: list[Candidate], settings: AnswerSettings, index
) -> tuple[str, list[Citation]]:
    """The answer body with [n] markers, and its citations, from scored candidates (``index``:
    to read a list on past its passage)."""
    cite = _Citer()
    best = max(cands, key=lambda c: c.prob)
    if info.broad or _heading_line(best):
        # (a heading alone, "针对问题", answers nothing: the list under it does)
        items = _bullets(info, best)
        if len(items) >= 2:
            n = cite(best.hit, best.quote)
            head = "" if items[0] in best.text else f"{_sentence(best.text)}[{n}]\n"
            return head + "\n".join(f"- {_sentence(text)}[{n}]" for text in items), cite.citations
        led = _led_list(info, cands, best, index)
        if led is not None:
            lead, items = led
            head = ""
            if lead is best and len(best.norm) > 16:
                head = f"{_sentence(best.text)}[{cite(lead.hit, best.quote)}]\n"
            lines = []
            for owner, item in items:
                n = cite(Hit(chunk=owner, score=lead.hit.score, rank=lead.hit.rank), item_text(item))
                lines.append(f"- {_sentence(item_text(item, info.how))}[{n}]")
            return head + "\n".join(lines), cite.citations
    chosen = _chosen(info, cands, settings)
    before = None if info.broad else _antecedent(best, chosen, index)
    around = _paragraph(best, index) if info.broad and info.how else None
    if around is not None:
        chosen = [c for c in chosen if c is best or not around.holds(c, best)]
    parts = []
    for c in chosen:
        if c.kind == "table" and c is not best:
            continue  # other rows add noise once the table question is answered
        if c is best and around is not None:
            n = cite(c.hit, c.passage[around.start : around.end].strip())
            parts.append(f"{around.before}{_sentence(c.text)}{around.after}[{n}]")
            continue
        n = cite(c.hit, c.quote, None if info.broad else _answer_value(info, c.quote))
        lead = _sentence(before) if c is best and before else ""
        parts.append(f"{lead}{_sentence(c.text)}[{n}]")
    if len(parts) >= 3 and info.broad:
        return "\n".join(f"- {p}" for p in parts), cite.citations
    return "".join(parts), cite.citations


def answer_extractive(
    question: str,
    hits: list[Hit],
    index,
    embedder,
    qvec: np.ndarray,
    settings: AnswerSettings,
    reader: ReaderModel,
    translated: str | None = None,
) -> Answer:
    """Compose a short cited answer from the hits' sentences, or refuse when none answers.

    ``index`` is the :class:`rag.index.LoadedIndex` the hits come from (sentence vectors, corpus
    statistics, article pages); ``qvec`` the question's e5 vector; ``reader`` the fitted scorer.
    """
    tokenizer = index.tokenizer
    info = analyze_question(question, tokenizer, index.idf, index.corpus_has, translated=translated)

    def done(body: str, citations: list[Citation], confidence: float | None, computed: bool = False) -> Answer:
        return Answer(
            question=question,
            answer=render(body, citations),
            refused=False,
            citations=citations,
            passages=hits,
            backend="extractive",
            computed=computed,
            body=body,
            confidence=confidence,
        )

    if _unknown_quoted(info, index) or _misquoted_title(info, hits, tokenizer):
        # 《深圳工运》: a name the user quotes that the corpus never prints is something the magazine
        # does not cover (the nearest name, 《广东工运》, would answer another question).
        return refusal_answer(question, hits)
    if info.page:
        found = _page_answer(info.profile, hits, tokenizer, index.article_pages)
        if found is not None and _names_missing(info, found[1], index):
            # "深圳市总工会资产确权那篇在哪一页" when the article is Guangzhou's: no such article.
            return refusal_answer(question, hits)
        if found is not None:
            text, chunk = found
            cit = make_citation(1, chunk, chunk.text.split("\n")[0][:120])
            return done(f"{text}[1]", [cit], None, computed=True)
    listed = _section_answer(info, hits, index) or _named_list(info, hits, index) or _counted_list(info, hits, index)
    if listed is not None and _cites_unnamed(info, listed[1], index):
        return refusal_answer(question, hits)  # the list of an article about another person or place
    if listed is not None:
        return done(*listed, None, computed=True)
    if _count_contradicted(info, hits):
        return refusal_answer(question, hits)
    if _PHOTO_Q.search(question.lower()):
        credit = _photo_credit(hits)
        if credit is None:  # no credit printed with them: the issue does not say
            return refusal_answer(question, hits)
        return done(f"{credit[0]}[1]", [credit[1]], None, computed=True)
    record = _record_answer(info, hits, tokenizer)
    if record is not None:
        text, chunk = record
        return done(f"{text}[1]", [_title_citation(1, chunk, index)], None, computed=True)
    line = record_line(info.norm, hits, index, info.answer_type, info.count_pattern, listing=info.listing)
    line = line or record_by_unit(info.norm, info.count_pattern, index)
    if line is not None:
        # A masthead-style "label value" line that the question names (主编, 印数, 投稿信箱…).
        hit, quote, label, value = line
        cit = make_citation(1, hit.chunk, quote)
        return done(f"{label}：{value}[1]", [cit], None, computed=True)

    cands = gather_candidates(index, embedder, _with_masthead(info, hits, index), qvec)
    if not cands:
        return refusal_answer(question, hits)
    x = featurize(info, qvec, cands)
    probs, answerable = reader.score(info, x)
    for c, p in zip(cands, probs, strict=True):
        c.prob = float(p)
    if settings.refusal_threshold is not None:
        reader = replace(reader, threshold=settings.refusal_threshold)
    cands, confidence = decide(info, cands, x, answerable, reader, index)
    if not cands:
        refused = refusal_answer(question, hits)
        refused.confidence = confidence
        return refused
    evidence = sorted(cands, key=lambda c: -c.prob)

    table = _table_superlative(question, info.profile, hits, tokenizer)
    if table is not None:
        sentence, hit, raw = table
        n = 1
        cit = make_citation(n, hit.chunk, raw)
        return done(f"{sentence}[{n}]", [cit], confidence, computed=True)
    body, citations = compose(info, cands, settings, index)
    result = done(body, citations, confidence)
    result.evidence = evidence
    return result


def decide(
    info: QuestionInfo, cands: list[Candidate], x: np.ndarray, answerable: np.ndarray, reader: ReaderModel, index
) -> tuple[list[Candidate], float]:
    """The one answerability decision: the candidates an answer may quote ([] = refuse), and the
    calibrated confidence it rests on."""
    top = int(np.argmax([c.prob for c in cands]))
    confidence = float(answerable[top])
    if reader.refuses(info, x, confidence):
        return [], confidence
    if cands[top].kind == "table" and _unknown_terms(info, index):
        # A table answers for the rows and columns it has: a question naming a row or column the
        # whole corpus never mentions (another industry, an average where the table gives medians)
        # would get the neighbouring row's figure.
        return [], confidence
    if info.answer_type == "number" and index is not None and _uncomputed_statistic(info, index):
        # "平均月工资是多少" over an issue that never averages anything: its figures are shares
        # and totals, and none of them is the average asked for.
        return [], confidence
    if (
        cands[top].kind == "table"
        and info.answer_type == "number"
        and not _PICKS_ROW.search(info.norm)
        and _row_unnamed(info, cands[top], cands, index)
    ):
        return [], confidence
    if info.role and info.role not in (cands[top].context_norm or cands[top].norm):
        # "竞赛的冠军是谁" over a passage that never says 冠军: it names people, just not the one
        # asked for. On the public train/calib splits 6 of 68 answerable role questions (9 %,
        # mostly 主演 in news snippets) lack the role word in their passages, and 40 of 85
        # unanswerable ones do. The best sentence's own passage must name it: another passage
        # naming the role (another race's 冠军) does not make this one answer.
        return [], confidence
    if info.unnamed_in(cands[top].article_norm or cands[top].context_norm):
        return [], confidence  # about a person or place the answering article never names
    if info.answer_type == "when" and _only_coming(info, cands[top].norm):
        # The best evidence announces the event as still to come: the sources do not date it, and
        # the next sentence with a date is about something else.
        return [], confidence
    if info.broad:
        return cands, confidence
    # A count in the asked unit, a date for "when", the asked year: a sentence without it cannot
    # be the answer, however close its words (the neighbouring figure is the most damaging one).
    rows = [j for j, c in enumerate(cands) if _type_ok(info, c)]
    for elsewhere, names_asked in _narrowings(info):
        if top not in rows and elsewhere(cands[top]):
            rows = [j for j in rows if names_asked(cands[j])]
    if rows and top not in rows:
        # The best sentence was not admissible: decide again on the best one that is, with the
        # features it had among all candidates (a weak sentence stays weak).
        _, again = reader.score(info, x[rows])
        confidence = float(again[0])
        if reader.refuses(info, x[rows], confidence):
            return [], confidence
    return [cands[j] for j in rows], confidence


def _narrowings(info: QuestionInfo) -> list[tuple[Callable[[Candidate], bool], Callable[[Candidate], bool]]]:
    """(the best evidence is about something else of an asked kind, a sentence names the asked
    one) for each kind the question pins down. When the best sentence was not admissible and is
    about something else, an answer must name the asked thing; it may not fall back to whatever
    sentence is left:

    - the asked attribute without a value for it (…的伤害频率 with no figure): an answer states
      that attribute's value, not the next figure at hand;
    - another of the counted things (第一套 for 第二套): an answer names the asked one;
    - another year: an answer is about the asked one, not a sentence naming no year at all.
    """
    out: list[tuple[Callable[[Candidate], bool], Callable[[Candidate], bool]]] = []
    attribute, asked, years = info.attribute, info.ordinals, set(info.years)
    if attribute:
        out.append((lambda c: attribute in c.norm, lambda c: attribute in c.norm))
    if asked:
        out.append((lambda c: _other_ordinal(asked, c.norm), lambda c: asked <= ordinals(c.norm)))
    if years:
        out.append((lambda c: bool(_years_of(c)), lambda c: bool(_years_of(c) & years)))
    return out


def evidence_excerpts(answer: Answer, index, best: int = 4, neighbours: int = 1) -> list[tuple[Hit, str]]:
    """What a generating backend reads: the reader's ``best`` sentences with ``neighbours``
    sentences either side, grouped by passage in rank order (a few hundred tokens, not five
    whole chunks: on 2 cores the local model reads ~90 tokens/s)."""
    chosen: dict[str, tuple[Hit, set[int]]] = {}
    for c in answer.evidence[:best]:
        hit, rows = chosen.setdefault(c.hit.chunk.chunk_id, (c.hit, set()))
        rows.update(range(c.index - neighbours, c.index + neighbours + 1))
    out = []
    for hit, rows in sorted(chosen.values(), key=lambda v: v[0].rank):
        pieces = index.pieces(index.position(hit.chunk))[0]
        keep = sorted(r for r in rows if 0 <= r < len(pieces))
        parts, prev = [], None
        for r in keep:
            if prev is not None and r != prev + 1:
                parts.append("……")
            parts.append(pieces[r].quote.strip())
            prev = r
        sep = "\n" if hit.chunk.kind == "table" else ""
        out.append((hit, sep.join(parts)))
    return out
