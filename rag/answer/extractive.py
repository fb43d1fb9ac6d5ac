"""The default backend: answer with the passages' own sentences, each cited, or refuse.

It never writes a word the magazine did not print: it picks sentences (or table rows with
their header) that cover the question's content words, so numbers, names and lists come
through verbatim. The same support score decides refusal.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from rag.answer.citations import format_pages, make_citation, sources_block
from rag.config import AnswerSettings
from rag.lexical import ChineseTokenizer
from rag.support import QuestionProfile, chunk_pieces
from rag.types import Answer, Chunk, Citation, Hit

REFUSAL = "资料中未找到相关内容。"
MIN_CONSTRAINED_COVERAGE = 0.2
_HEADLINE = re.compile(r"^(——|—|文\s*[|｜]|作者单位|摄影|图\s*[|｜]|资料图片)")


@dataclass
class Candidate:
    hit: Hit
    text: str  # as shown (table rows: header + row)
    quote: str  # verbatim substring of the chunk text
    start: int  # position in the chunk, to keep reading order
    coverage: float
    score: float
    satisfied: bool = True


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


def support_score(best: float, hits: list[Hit], settings: AnswerSettings) -> float:
    """The refusal signal: the best sentence's lexical support, moved by the top passage's cosine.

    Neither alone separates answerable from unanswerable questions well (paraphrases share
    few words; near-misses share many), so both count; the constants are calibrated on data.
    """
    dense = max((h.dense_score for h in hits if h.dense_score is not None), default=None)
    if dense is None:
        return best
    return best + settings.refusal_dense_weight * (dense - settings.refusal_dense_center)


def _candidates(profile: QuestionProfile, hits: list[Hit], tokenizer: ChineseTokenizer) -> list[Candidate]:
    cands: list[Candidate] = []
    for hit in hits:
        title_norm = tokenizer.normalize(hit.chunk.article)
        for piece in chunk_pieces(hit.chunk, tokenizer):
            # Headlines, subtitles and bylines restate the question's words but answer nothing.
            if (
                len(piece.norm) < 4
                or piece.norm in title_norm
                or (_HEADLINE.match(piece.shown) and len(piece.shown) < 40)
            ):
                continue
            cov, score = profile.piece_score(piece, title_norm)
            cands.append(
                Candidate(
                    hit, piece.shown, piece.quote, piece.start, cov, score + 0.06 / hit.rank, profile.satisfies(piece)
                )
            )
    return cands


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


def answer_extractive(
    question: str,
    hits: list[Hit],
    tokenizer: ChineseTokenizer,
    settings: AnswerSettings,
    idf: Callable[[str], float] | None = None,
    article_pages: Callable[[Chunk], tuple[str, ...]] | None = None,
) -> Answer:
    """Compose a short cited answer from the hits' sentences, or refuse when none supports it.

    ``idf`` (corpus statistics) sharpens the support score; ``article_pages`` gives the whole
    printed range of a chunk's article for "which page" questions.
    """
    profile = QuestionProfile(question, tokenizer, idf)
    cands = _candidates(profile, hits, tokenizer)
    if profile.has_constraint and not profile.page:
        # A count or a named person is asked for: only a sentence that holds one can answer.
        # It must also be about the question's subject: not far below the best-matching sentence.
        floor = max(MIN_CONSTRAINED_COVERAGE, 0.35 * max((c.coverage for c in cands), default=0.0))
        cands = [c for c in cands if c.satisfied and c.coverage >= floor]
    best = max(cands, key=lambda c: c.score, default=None)
    if profile.unseen and not profile.page:
        return refusal_answer(question, hits)
    if best is None or support_score(best.score, hits, settings) < settings.refusal_threshold:
        return refusal_answer(question, hits)

    if profile.page:
        found = _page_answer(profile, hits, tokenizer, article_pages)
        if found is not None:
            text, chunk = found
            quote = chunk.text.split("\n")[0][:120]
            cit = make_citation(1, chunk, quote)
            return Answer(
                question=question,
                answer=f"{text}[1]\n\n{sources_block([cit])}",
                refused=False,
                citations=[cit],
                passages=hits,
                backend="extractive",
                computed=True,
            )

    table = _table_superlative(question, profile, hits, tokenizer)
    computed = table is not None
    if table is not None:
        sentence, hit, raw = table
        best = Candidate(hit, sentence, raw, -1, best.coverage, best.score + 1.0)
        cands.append(best)

    # Lists and "how/why" answers span several sentences; a fact is one sentence.
    broad = profile.listing or profile.how
    limit = settings.max_sentences + (2 if profile.listing else 1 if profile.how else 0)
    floor = best.score * (0.7 if broad else 0.8)
    chosen = [best]
    for c in sorted(cands, key=lambda c: -c.score):
        if len(chosen) >= limit:
            break
        if c is best or c.score < floor or any(c.text == o.text for o in chosen):
            continue
        chosen.append(c)
    # Read like the magazine: by passage rank, then position in the passage.
    chosen.sort(key=lambda c: (c.hit.rank, c.start))

    citations: list[Citation] = []
    number_of: dict[str, int] = {}
    parts: list[str] = []
    quotes: dict[str, list[str]] = {}
    for c in chosen:
        cid = c.hit.chunk.chunk_id
        if cid not in number_of:
            number_of[cid] = len(number_of) + 1
            quotes[cid] = []
        quotes[cid].append(c.quote)
        sentence = c.text if re.search(r"[。！？；!?;”’」』）)]$", c.text) else c.text + "。"
        if c.hit.chunk.kind == "table" and c is not best:
            continue  # other rows add noise once the table question is answered
        parts.append(f"{sentence}[{number_of[cid]}]")
    for c in chosen:
        cid = c.hit.chunk.chunk_id
        n = number_of[cid]
        if len(citations) < n:
            citations.append(make_citation(n, c.hit.chunk, quotes[cid][0]))
    text = "".join(parts) + "\n\n" + sources_block(citations)
    return Answer(
        question=question,
        answer=text,
        refused=False,
        citations=citations,
        passages=hits,
        backend="extractive",
        computed=computed,
    )


