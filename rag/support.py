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
UNSEEN_TERM_SHARE = 0.35
# "这本", "上一年": pointers to the context, never the subject of a question.
_DEICTIC = re.compile(r"^(这|那|该|本|上一|下一|前一|今|去|明)")
# Spaces between Chinese characters are layout, not words ("主 编 张英姿" in a masthead, a PDF's
# letter-spaced headings): matching ignores them.
_CJK_GAP = re.compile(r"(?<=[\u4e00-\u9fff])\s+(?=[\u4e00-\u9fff])")


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
    return [Piece(start, shown, quote, _CJK_GAP.sub("", tokenizer.normalize(shown))) for start, shown, quote in raw]


@dataclass
class ChunkTerms:
    """The question's terms a chunk contains, and a bound on any of its sentences' coverage."""

    in_chunk: list[tuple[str, float]]
    bigrams_in_chunk: list[str]
    base_w: float  # weight of title terms the chunk lacks (count for every sentence with the title)
    base_b: int
    bound: float  # >= best_piece_coverage of the chunk


class QuestionProfile:
    """What a question asks for, from its wording: content terms and the expected answer type."""

    def __init__(
        self, question: str, tokenizer: ChineseTokenizer, idf: Callable[[str], float] | None = None
    ) -> None:
        self.norm = tokenizer.normalize(question)
        self.words = tokenizer.words(self.norm)  # in order, repeats kept: tokenizer.expand() takes it
        words = list(dict.fromkeys(self.words))
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
        self._longest = max((len(t) for t in [*self.terms, *self.bigrams]), default=0)
        self._title_hits: dict[str, tuple[set[str], set[str]]] = {}
        self._seam_hits: dict[str, tuple[list[tuple[str, float]], list[str]]] = {}

    def coverage(self, norm_text: str) -> float:
        """Share of the question's weighted content terms (and bigrams) found in the text, in [0, 1]."""
        got = sum(w for t, w in self.terms.items() if t in norm_text)
        return self._combine(got, sum(1 for b in self.bigrams if b in norm_text))

    def _combine(self, term_weight: float, bigram_hits: int) -> float:
        lex = term_weight / self.total
        if self.bigrams:
            lex = 0.7 * lex + 0.3 * bigram_hits / len(self.bigrams)
        return lex

    def chunk_terms(self, title_norm: str, chunk_norm: str) -> ChunkTerms:
        """What of the question a chunk can match (``chunk_norm``: all its pieces' normalised text),
        with an upper bound of :meth:`best_piece_coverage` for it."""
        title_terms, title_bigrams = self._title_sets(title_norm)
        # Shares that do not depend on the sentence: title terms the chunk lacks.
        in_chunk: list[tuple[str, float]] = []
        base_w = chunk_w = 0.0
        for t, w in self.terms.items():
            if t in chunk_norm:
                in_chunk.append((t, w))
                chunk_w += w
            elif t in title_terms:
                base_w += w
        bi_in_chunk: list[str] = []
        base_b = 0
        for b in self.bigrams:
            if b in chunk_norm:
                bi_in_chunk.append(b)
            elif b in title_bigrams:
                base_b += 1
        seam_terms, seam_bigrams = self._seam_sets(title_norm)
        # Every sentence's terms are among the chunk's; with the title, among those, the title's and
        # the ones that may cross the seam.
        joint_w = chunk_w + base_w + sum(w for t, w in seam_terms if t not in chunk_norm)
        joint_b = len(bi_in_chunk) + base_b + sum(1 for b in seam_bigrams if b not in chunk_norm)
        bound = max(self._combine(chunk_w, len(bi_in_chunk)), 0.85 * self._combine(joint_w, joint_b))
        return ChunkTerms(in_chunk, bi_in_chunk, base_w, base_b, bound + 1e-9)

    def best_piece_coverage(
        self, pieces: list[Piece], title_norm: str, chunk_norm: str, terms: ChunkTerms | None = None
    ) -> float:
        """The best of ``pieces``' coverages: max(coverage(piece), 0.85 x coverage(piece + title)).

        ``chunk_norm`` holds every piece's normalised text. Only the terms the chunk contains are
        looked up in each sentence; the title's share is counted once; a term can only cross the
        seam between sentence and title if its tail starts the title, which few do.
        """
        ct = terms or self.chunk_terms(title_norm, chunk_norm)
        title_terms, title_bigrams = self._title_sets(title_norm)
        seam_terms, seam_bigrams = self._seam_sets(title_norm)
        k = self._longest - 1
        head = title_norm[:k]
        n_bi = len(self.bigrams) or 1
        best = 0.0
        for piece in pieces:
            text = piece.norm
            own_w, joint_w = 0.0, ct.base_w
            for t, w in ct.in_chunk:
                if t in text:
                    own_w += w
                    joint_w += w
                elif t in title_terms:
                    joint_w += w
            own_b, joint_b = 0, ct.base_b
            for b in ct.bigrams_in_chunk:
                if b in text:
                    own_b += 1
                    joint_b += 1
                elif b in title_bigrams:
                    joint_b += 1
            if seam_terms or seam_bigrams:
                seam = text[-k:] + head
                joint_w += sum(w for t, w in seam_terms if t not in text and t in seam)
                joint_b += sum(1 for b in seam_bigrams if b not in text and b in seam)
            if self.bigrams:  # _combine, inlined: this loop runs for every sentence of 30 chunks
                own = 0.7 * (own_w / self.total) + 0.3 * own_b / n_bi
                joint = 0.7 * (joint_w / self.total) + 0.3 * joint_b / n_bi
            else:
                own, joint = own_w / self.total, joint_w / self.total
            if own > best:
                best = own
            if 0.85 * joint > best:
                best = 0.85 * joint
        return best

    def _seam_sets(self, title: str) -> tuple[list[tuple[str, float]], list[str]]:
        """Terms and bigrams absent from ``title`` whose tail starts it (cached per title)."""
        got = self._seam_hits.get(title)
        if got is None:
            title_terms, title_bigrams = self._title_sets(title)
            head = title[: self._longest - 1]
            got = (
                [(t, w) for t, w in self.terms.items() if t not in title_terms and _may_cross(t, head)],
                [b for b in self.bigrams if b not in title_bigrams and _may_cross(b, head)],
            )
            self._seam_hits[title] = got
        return got

    def _title_sets(self, title: str) -> tuple[set[str], set[str]]:
        cache = self._title_hits.get(title)
        if cache is None:
            cache = ({t for t in self.terms if t in title}, {b for b in self.bigrams if b in title})
            self._title_hits[title] = cache
        return cache

    def piece_coverage(self, piece: Piece, title_norm: str) -> float:
        """Coverage of one piece, its article title counting less than the sentence itself."""
        return self.best_piece_coverage([piece], title_norm, piece.norm)


def _may_cross(term: str, title_head: str) -> bool:
    """Whether ``term`` could occur across a sentence's end and a title starting with ``title_head``."""
    first = title_head[:1]
    if not first or first not in term[1:]:  # the title's first character must end a split of the term
        return False
    return any(title_head.startswith(term[j:]) for j in range(1, len(term)))


def _term_weight(word: str) -> float:
    if word.isdigit():
        return 2.0
    return {1: 0.3, 2: 1.0, 3: 1.6}.get(len(word), 2.0)
