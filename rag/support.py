"""How well a passage supports a question, lexically: shared by reranking, answers and refusal.

A question is reduced to its content terms (jieba words, weighted by length) and content
bigrams; a passage piece (a sentence, or a table row with its header) supports the question
to the degree it contains them. Cheap enough to score every candidate passage per query.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from rag.lexical import ChineseTokenizer
from rag.types import Chunk

_SENTENCE = re.compile(r"[^。！？；!?;\n]*(?:[。！？；!?;]+[”’」』）)]*|\n|$)")
_NUMBER_CELL = re.compile(r"[\d,.%]+")
_NUMERIC_Q = re.compile(
    r"多少|几[个名项场次人家年月天位条种件宗批期届所倍成]|比例|百分之|涨幅|增长了|下降了|增幅|降幅|占比|金额|数量|多高|多大"
)
_WHEN_Q = re.compile(r"什么时候|何时|哪天|哪一天|哪几天|几月|几号|日期|时间")
_HOW_Q = re.compile(r"怎么|怎样|如何|为什么|为何|原因|办法|经验")
_QUOTED = re.compile(r"[“\"「『]([^”\"」』]{1,20})[”\"」』]")
_LIST_Q = re.compile(r"哪些|哪几|哪[二三四五六七八九十]|几[个项条点方面]|包括|分别|有什么|做法|措施|举措")
_PAGE_Q = re.compile(r"第几页|哪一页|哪页|几页|页码|什么页|哪个页|在哪一?期|刊登在|登在哪")
_MEASURE_Q = re.compile(r"(?:多少|(?<!哪)几)(个|名|人|场|宗|项|次|家|所|条|件|批|期|届|位|天|年|元|倍|座|户|篇|本|支|台|辆|种|类|处|间|块|平方米|公里|小时)")
# A question counting 名 is answered by a count in 人 or 位 too.
_MEASURE_ALIASES = {"名": "名人位", "人": "名人位", "位": "名人位", "个": "个项家所"}
_NUM = r"[\d一二三四五六七八九十百千万两]+(?:\.\d+)?\s*(?:余|多)?\s*"
UNSEEN_TERM_SHARE = 0.35
# "这本", "上一年": pointers to the context, never the subject of a question.
_DEICTIC = re.compile(r"^(这|那|该|本|上一|下一|前一|今|去|明)")
_WHO_FOCUS = re.compile(r"([^，,。？?！!\s的之]{2,12})是谁")
DIGIT = re.compile(r"\d|[一二三四五六七八九十百千万亿两]+[个名项场次人家年月日天位条种件宗批期届所家次倍%]")
DATE = re.compile(r"\d{1,4}年|\d{1,2}月|\d{1,2}日|[一二三四五六七八九十]+月")


@dataclass(frozen=True)
class Piece:
    """A sentence or table row of a chunk: shown text, verbatim quote, position, normalised text."""

    start: int
    shown: str
    quote: str
    norm: str


def split_sentences(text: str) -> list[tuple[int, str]]:
    """Sentences with their start offsets; closing quotes stay with their sentence."""
    out = []
    for m in _SENTENCE.finditer(text):
        s = m.group(0)
        if s.strip():
            out.append((m.start() + len(s) - len(s.lstrip()), s.strip()))
    return out


def table_rows(text: str) -> list[tuple[int, str, str]]:
    """Rows of a tab-separated table chunk as (offset, readable row, raw row).

    The readable row names each value by its column ("高位数 27,539") after the caption, so
    a row read alone still says what its numbers are. Empty leading cells are filled from the
    row above: the extraction of a merged cell leaves it only on the first row of its group.
    """
    caption = ""
    header: list[list[str]] = []
    rows: list[tuple[int, str, str]] = []
    prev: list[str] = []
    pos = 0
    for line in text.split("\n"):
        start = pos
        pos += len(line) + 1
        if not line.strip():
            continue
        cells = line.split("\t")
        if not any(_NUMBER_CELL.fullmatch(c.strip()) for c in cells):
            if not rows:
                if len(cells) == 1 and not header:
                    caption = line.strip()
                else:
                    header.append(cells)
            continue
        filled = [c if c.strip() or i >= len(prev) else prev[i] for i, c in enumerate(cells)]
        prev = filled
        names = [""] * len(filled)
        for h in header:
            for i, c in enumerate(h[: len(filled)]):
                if c.strip():
                    names[i] = c.strip()
        labels = [c.strip() for c in filled if c.strip() and not _NUMBER_CELL.fullmatch(c.strip())]
        values = [
            f"{names[i]} {c.strip()}".strip() for i, c in enumerate(filled) if _NUMBER_CELL.fullmatch(c.strip())
        ]
        shown = (f"{caption}：" if caption else "") + " ".join(labels) + "：" + "，".join(values)
        rows.append((start, shown, line.strip()))
    return rows


def chunk_pieces(chunk: Chunk, tokenizer: ChineseTokenizer) -> list[Piece]:
    """The answerable pieces of a chunk (none for metadata chunks)."""
    if chunk.kind == "meta":
        return []
    if chunk.kind == "table":
        raw = table_rows(chunk.text)
    else:
        raw = [(start, s, s) for start, s in split_sentences(chunk.text)]
    return [Piece(start, shown, quote, tokenizer.normalize(shown)) for start, shown, quote in raw]


class QuestionProfile:
    """What a question asks for, from its wording: content terms and the expected answer type."""

    def __init__(
        self, question: str, tokenizer: ChineseTokenizer, idf: Callable[[str], float] | None = None
    ) -> None:
        self.norm = tokenizer.normalize(question)
        words = list(dict.fromkeys(tokenizer.words(self.norm)))
        # With corpus statistics a rare term (or one the corpus never uses) weighs most: a passage
        # that lacks it does not answer the question, however many common words it shares.
        self.terms = {w: _term_weight(w) * (idf(w) if idf else 1.0) for w in words}
        self.unseen: list[str] = []  # heavy terms the corpus never uses: the magazine doesn't cover them
        self.total = sum(self.terms.values()) or 1.0
        if idf is not None:
            ceiling = idf("\u2400")  # the idf of a term no chunk contains
            self.unseen = [
                w
                for w, wt in self.terms.items()
                if idf(w) >= ceiling and wt / self.total >= UNSEEN_TERM_SHARE and not _DEICTIC.match(w)
            ]
        content = "".join(words)
        self.bigrams = {content[i : i + 2] for i in range(len(content) - 1)}
        self.numeric = bool(_NUMERIC_Q.search(question))
        # "多少名/几场…": the answer must count in that measure word, not just hold any number.
        measures = "".join(_MEASURE_ALIASES.get(m, m) for m in _MEASURE_Q.findall(question))
        self.count_pattern = (
            re.compile(_NUM + "(?:" + "|".join(map(re.escape, dict.fromkeys(measures))) + ")") if measures else None
        )
        who = _WHO_FOCUS.search(self.norm)
        # "X是谁": whoever the passage names must be X (the champion, the chairman), not merely nearby.
        self.who_focus = re.sub(r"^(请问|那么|那|这|该)", "", who.group(1)) if who else None
        self.when = bool(_WHEN_Q.search(question))
        self.listing = bool(_LIST_Q.search(question))
        self.page = bool(_PAGE_Q.search(question))
        self.how = bool(_HOW_Q.search(question))
        # A quoted fragment (哪三个“性”) asks for the passage's own quoted terms that contain it.
        self.quoted = [q for q in _QUOTED.findall(self.norm) if q.strip()]

    def coverage(self, norm_text: str) -> float:
        """Share of the question's weighted content terms (and bigrams) found in the text, in [0, 1]."""
        got = sum(w for t, w in self.terms.items() if t in norm_text)
        lex = got / self.total
        if self.bigrams:
            bi = sum(1 for b in self.bigrams if b in norm_text) / len(self.bigrams)
            lex = 0.7 * lex + 0.3 * bi
        return lex

    @property
    def has_constraint(self) -> bool:
        """Whether an answer must show a specific kind of fact (a count in a unit, a named role)."""
        return self.count_pattern is not None or bool(self.who_focus)

    def satisfies(self, piece: Piece) -> bool:
        """Whether the piece holds the kind of fact the question demands (see has_constraint)."""
        if self.count_pattern is not None and not self.count_pattern.search(piece.shown):
            return False
        return not (self.who_focus and self.who_focus not in piece.norm)

    def piece_score(self, piece: Piece, title_norm: str) -> tuple[float, float]:
        """(coverage, score) of one piece; the score adds answer-type evidence."""
        # The article title is context for the sentence, but counts less than the sentence itself.
        cov = max(self.coverage(piece.norm), 0.85 * self.coverage(piece.norm + title_norm))
        score = cov
        if self.count_pattern is not None:
            score += 0.15 if self.count_pattern.search(piece.shown) else -0.3
        elif self.numeric:
            score += 0.12 if DIGIT.search(piece.shown) else -0.15
        if self.when:
            score += 0.1 if DATE.search(piece.shown) else -0.1
        if self.quoted:
            inner = _QUOTED.findall(piece.norm)
            if any(q in term and q != term for q in self.quoted for term in inner):
                score += 0.25
        return cov, score


def _term_weight(word: str) -> float:
    if word.isdigit():
        return 2.0
    return {1: 0.3, 2: 1.0, 3: 1.6}.get(len(word), 2.0)
