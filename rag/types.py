"""Plain records passed between the pipeline stages.

Document -> Article (with Segments carrying printed page labels) -> Chunk -> Hit -> Answer.
All offsets are character offsets into ``Document.text`` (the source text as loaded).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

ArticleKind = Literal["article", "front", "back", "toc"]
ChunkKind = Literal["body", "table", "meta"]


@dataclass(frozen=True)
class Segment:
    """A contiguous piece of source text that lies on known printed page(s).

    ``pages`` holds one label when the page is known exactly (PDF, page markers), or the
    article's whole printed range when only the range is known (TOC inference); then
    ``exact`` is False.
    """

    start: int
    end: int
    pages: tuple[str, ...]
    exact: bool = True
    # 0-based page of the source file (a PDF) this text was printed on; None for sources
    # without physical pages (plain text, Markdown, Word).
    physical: int | None = None


@dataclass(frozen=True)
class Article:
    """One article (or front/back matter block) of a document, in reading order."""

    title: str
    segments: tuple[Segment, ...]
    kind: ArticleKind = "article"
    section: str | None = None  # 栏目: 调研/典型/实践/案例/镜头
    author: str | None = None  # from the byline "文 | 欧慧娅 黄宝仪"
    unit: str | None = None  # the reporting unit of a case write-up, e.g. 广州市总工会
    subtitle: str | None = None
    parent: str | None = None  # title of the enclosing article for a case inside a collection

    @property
    def pages(self) -> tuple[str, ...]:
        """Printed page labels of the article, de-duplicated, in reading order."""
        seen: dict[str, None] = {}
        for seg in self.segments:
            for p in seg.pages:
                seen.setdefault(p, None)
        return tuple(seen)


@dataclass(frozen=True)
class Document:
    """A loaded document: its full text plus the article/page structure over it."""

    doc_id: str  # stable id, e.g. the file stem
    title: str  # display title, e.g. 《广东工运》2025年第12期
    path: str
    text: str
    articles: tuple[Article, ...]
    content_hash: str  # sha256 of the raw file bytes
    loader: str  # "text-toc" | "text-markers" | "pdf" | "markdown" | "docx" | "text"
    # problems a reader should check, one line each (e.g. a scanned page OCR read with low
    # confidence); shown by `rag index status`
    warnings: tuple[str, ...] = ()

    @property
    def pages(self) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for art in self.articles:
            for p in art.pages:
                seen.setdefault(p, None)
        return tuple(seen)


@dataclass(frozen=True)
class Chunk:
    """A retrievable piece of one article, labelled with the printed pages of its text."""

    chunk_id: str
    doc: str  # Document.title
    doc_id: str
    article: str
    pages: tuple[str, ...]
    text: str
    start: int
    end: int
    section: str | None = None
    unit: str | None = None
    author: str | None = None
    kind: ChunkKind = "body"
    page_exact: bool = True
    article_kind: ArticleKind = "article"
    # 0-based source-file pages (PDF) the text lies on, in reading order; () for text sources.
    physical: tuple[int, ...] = ()
    # Where each source page's text begins in ``text``: (offset in text, 0-based physical page,
    # printed label), in text order; () when pages are not exact. A citation uses it to name
    # the page of its own sentence rather than every page the chunk touches.
    page_starts: tuple[tuple[int, int, str], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["pages"] = list(self.pages)
        d["physical"] = list(self.physical)
        d["page_starts"] = [list(p) for p in self.page_starts]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Chunk:
        d = dict(d)
        d["pages"] = tuple(d["pages"])
        d["physical"] = tuple(d.get("physical", ()))
        d["page_starts"] = tuple((int(o), int(p), str(label)) for o, p, label in d.get("page_starts", ()))
        return cls(**d)

    def pages_of(self, start: int, end: int) -> tuple[tuple[int, str], ...]:
        """(physical page, printed label) of each page that ``text[start:end]`` lies on.

        Empty when the chunk has no exact source pages (text sources, meta chunks).
        """
        out: list[tuple[int, str]] = []
        for k, (offset, page, label) in enumerate(self.page_starts):
            nxt = self.page_starts[k + 1][0] if k + 1 < len(self.page_starts) else len(self.text)
            if offset < max(end, start + 1) and nxt > start and (page, label) not in out:
                out.append((page, label))
        return tuple(out)


@dataclass(frozen=True)
class Hit:
    """A retrieved chunk with its fused score and the per-retriever evidence."""

    chunk: Chunk
    score: float
    rank: int
    dense_score: float | None = None
    bm25_score: float | None = None


@dataclass(frozen=True)
class Citation:
    n: int
    doc: str
    article: str
    pages: tuple[str, ...]
    quote: str
    chunk_id: str
    doc_id: str = ""
    # 0-based page of the source PDF on which the quote was printed (None for text sources):
    # what the page viewer renders.
    page_index: int | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["pages"] = list(self.pages)
        return d


@dataclass
class Answer:
    """The output contract shared by the CLI, batch, eval and the web API."""

    question: str
    answer: str
    refused: bool
    citations: list[Citation]
    passages: list[Hit]
    backend: str
    timings_ms: dict[str, float] = field(default_factory=dict)
    id: str | None = None
    note: str | None = None
    suggestions: list[str] = field(default_factory=list)
    # Set by the extractive backend when the answer was worked out (the highest row of a table,
    # an article's printed page range) rather than quoted; not part of the JSON contract.
    computed: bool = False
    # The answer without its 来源 block: sentences with [n] markers. ``answer`` is this plus the
    # rendered sources; edges that show citations their own way (the page) use ``body``.
    body: str = ""
    # The reader's calibrated probability that the passages answer the question (None when no
    # reader decision was made, e.g. an empty index).
    confidence: float | None = None
    # The reader's scored candidates (rag.answer.reader.Candidate), best first; what a generating
    # backend is shown. Not part of the JSON contract.
    evidence: list[Any] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "question": self.question,
            "answer": self.answer,
            "body": self.body or self.answer,
            "refused": self.refused,
            "confidence": None if self.confidence is None else round(float(self.confidence), 4),
            "citations": [c.to_dict() for c in self.citations],
            "passages": [
                {
                    "rank": h.rank,
                    "chunk_id": h.chunk.chunk_id,
                    "score": round(float(h.score), 6),
                    "doc": h.chunk.doc,
                    "article": h.chunk.article,
                    "pages": list(h.chunk.pages),
                    "text": h.chunk.text,
                }
                for h in self.passages
            ],
            "backend": self.backend,
            "timings_ms": {k: round(v, 2) for k, v in self.timings_ms.items()},
            "note": self.note,
            "suggestions": self.suggestions,
        }
