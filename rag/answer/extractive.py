"""The default backend: answer with the passages' own sentences, each cited, or refuse.

It never writes a word the magazine did not print: it picks sentences (or table rows with
their header) that cover the question's content words, so numbers, names and lists come
through verbatim. The same support score decides refusal.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rag.answer.citations import format_pages, make_citation, sources_block
from rag.config import AnswerSettings
from rag.lexical import ChineseTokenizer
from rag.types import Answer, Chunk, Citation, Hit

REFUSAL = "资料中未找到相关内容。"

_SENTENCE_END = re.compile(r"[^。！？；!?;\n]*(?:[。！？；!?;]+[”’」』）)]*|\n|$)")
_DIGIT = re.compile(r"\d|[一二三四五六七八九十百千万亿两]+[个名项场次人家年月日天位条种件宗批期届所家次倍%]")
_DATE = re.compile(r"\d{1,4}年|\d{1,2}月|\d{1,2}日|[一二三四五六七八九十]+月")
_NUMERIC_Q = re.compile(r"多少|几[个名项场次人家年月天位条种件宗批期届所倍成]|比例|百分之|涨幅|增长了|下降了|增幅|降幅|占比|金额|数量|多高|多大")
_WHEN_Q = re.compile(r"什么时候|何时|哪天|哪一天|哪几天|几月|几号|日期|时间")
_LIST_Q = re.compile(r"哪些|哪几|哪[二三四五六七八九十]|几[个项条点方面]|包括|分别|有什么|做法|措施|举措")
_PAGE_Q = re.compile(r"第几页|哪一页|哪页|几页|页码|什么页|哪个页|在哪一?期|刊登在|登在哪")
_ROW_FIELD = re.compile(r"\t+")


@dataclass
class Candidate:
    hit: Hit
    text: str  # as shown (table rows: header + row)
    quote: str  # verbatim substring of the chunk text
    start: int  # position in the chunk, to keep reading order
    coverage: float
    score: float


def split_sentences(text: str) -> list[tuple[int, str]]:
    """Sentences with their start offsets; closing quotes stay with their sentence."""
    out = []
    for m in _SENTENCE_END.finditer(text):
        s = m.group(0)
        if s.strip():
            out.append((m.start() + len(s) - len(s.lstrip()), s.strip()))
    return out


def table_rows(text: str) -> list[tuple[int, str, str]]:
    """Rows of a tab-separated table chunk, each prefixed with the caption/header lines.

    Empty leading cells are filled from the row above: the extraction of a merged cell
    leaves it only on the first row of its group.
    """
    lines = text.split("\n")
    header: list[str] = []
    rows: list[tuple[int, str, str]] = []
    prev: list[str] = []
    pos = 0
    for line in lines:
        start = pos
        pos += len(line) + 1
        if not line.strip():
            continue
        cells = _ROW_FIELD.split(line.strip("\n"))
        has_number = any(re.fullmatch(r"[\d,.%]+", c.strip()) for c in cells)
        if not has_number and not rows:
            header.append(" ".join(c for c in cells if c.strip()))
            continue
        filled = [c if c.strip() or i >= len(prev) else prev[i] for i, c in enumerate(cells)]
        prev = filled
        shown = "｜".join(header) + "｜" + " ".join(c for c in filled if c.strip())
        rows.append((start, shown, line.strip()))
    return rows


class QuestionProfile:
    """What a question asks for, from its wording: content terms and the expected answer type."""

    def __init__(self, question: str, tokenizer: ChineseTokenizer) -> None:
        self.norm = tokenizer.normalize(question)
        words = list(dict.fromkeys(tokenizer.words(self.norm)))
        self.terms = {w: _term_weight(w) for w in words}
        self.total = sum(self.terms.values()) or 1.0
        content = "".join(words)
        self.bigrams = {content[i : i + 2] for i in range(len(content) - 1)}
        self.numeric = bool(_NUMERIC_Q.search(question))
        self.when = bool(_WHEN_Q.search(question))
        self.listing = bool(_LIST_Q.search(question))
        self.page = bool(_PAGE_Q.search(question))

    def coverage(self, norm_text: str) -> float:
        got = sum(w for t, w in self.terms.items() if t in norm_text)
        lex = got / self.total
        if self.bigrams:
            bi = sum(1 for b in self.bigrams if b in norm_text) / len(self.bigrams)
            lex = 0.7 * lex + 0.3 * bi
        return lex


def _term_weight(word: str) -> float:
    if word.isdigit():
        return 2.0
    return {1: 0.3, 2: 1.0, 3: 1.6}.get(len(word), 2.0)


def _candidates(profile: QuestionProfile, hits: list[Hit], tokenizer: ChineseTokenizer) -> list[Candidate]:
    cands: list[Candidate] = []
    for hit in hits:
        chunk = hit.chunk
        if chunk.kind == "meta":
            continue
        if chunk.kind == "table":
            pieces = table_rows(chunk.text)
        else:
            pieces = [(start, s, s) for start, s in split_sentences(chunk.text)]
        title_norm = tokenizer.normalize(chunk.article)
        for start, text, quote in pieces:
            norm = tokenizer.normalize(text)
            if len(norm) < 4:
                continue
            # The article title counts as context for the sentence, but less than the sentence itself.
            cov = max(profile.coverage(norm), 0.85 * profile.coverage(norm + title_norm))
            score = cov + 0.06 / hit.rank
            if profile.numeric:
                score += 0.12 if _DIGIT.search(text) else -0.15
            if profile.when:
                score += 0.1 if _DATE.search(text) else -0.1
            cands.append(Candidate(hit, text, quote, start, cov, score))
    return cands


def support_score(question: str, hits: list[Hit], tokenizer: ChineseTokenizer) -> float:
    """How well the best passage sentence covers the question, in [0, ~1.2]; the refusal signal."""
    profile = QuestionProfile(question, tokenizer)
    cands = _candidates(profile, hits, tokenizer)
    return max((c.score for c in cands), default=0.0)


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


def _page_answer(profile: QuestionProfile, hits: list[Hit], tokenizer: ChineseTokenizer) -> tuple[str, Chunk] | None:
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
    title = c.article if c.article.startswith("《") else f"《{c.article}》"
    return f"{title}刊登在{c.doc}{format_pages(c.pages)}。", c


def answer_extractive(
    question: str, hits: list[Hit], tokenizer: ChineseTokenizer, settings: AnswerSettings
) -> Answer:
    """Compose a short cited answer from the hits' sentences, or refuse when none supports it."""
    profile = QuestionProfile(question, tokenizer)
    cands = _candidates(profile, hits, tokenizer)
    best = max(cands, key=lambda c: c.score, default=None)
    if best is None or best.score < settings.refusal_threshold:
        if profile.page and hits and best is not None and best.coverage >= settings.refusal_threshold * 0.8:
            pass  # a page question about an existing article: answered below from its metadata
        else:
            return refusal_answer(question, hits)

    if profile.page:
        found = _page_answer(profile, hits, tokenizer)
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
            )

    limit = settings.max_sentences + (2 if profile.listing else 0)
    floor = best.score * (0.72 if profile.listing else 0.8)
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
    )


