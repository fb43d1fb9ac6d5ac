"""Hybrid retrieval: dense (e5 + FAISS) and BM25 (jieba), fused, then a lexical rerank.

Fusion is either a weighted sum of per-query normalised scores (default: measured better
on the magazine, where BM25 is much stronger than the small e5 model) or weighted
reciprocal rank fusion. The rerank adds, for the best fused candidates, how well their
best sentence covers the question's content words.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass

import faiss
import numpy as np

from rag.config import RetrieveSettings
from rag.crosslingual import lexical_query, load_glossary, pinyin_names, translate_terms
from rag.errors import RagError
from rag.index import MAX_TEXT_SCAN_CHUNKS, LoadedIndex
from rag.lexical import SURNAMES
from rag.support import ChunkTerms, QuestionProfile
from rag.types import Chunk, Hit

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Filters:
    """Optional restrictions; each matches a substring of the chunk's field (page: exact label)."""

    doc: str | None = None
    article: str | None = None
    section: str | None = None
    page: str | None = None

    def is_empty(self) -> bool:
        return not (self.doc or self.article or self.section or self.page)

    def accepts(self, chunk: Chunk) -> bool:
        if self.doc and self.doc not in chunk.doc and self.doc != chunk.doc_id:
            return False
        if self.article and self.article not in chunk.article:
            return False
        if self.section and self.section != (chunk.section or ""):
            return False
        return not (self.page and self.page not in chunk.pages)


def _top(scores: np.ndarray, n: int) -> np.ndarray:
    """Indices of the n highest scores, best first (ties by index, for determinism)."""
    n = min(n, len(scores))
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    part = np.argpartition(-scores, n - 1)[:n]
    return part[np.lexsort((part, -scores[part]))]


def dense_scores(
    index: LoadedIndex, qvec: np.ndarray, n: int, mask: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Top-n chunk ids and cosine scores for one normalised query vector."""
    if isinstance(index.dense, faiss.IndexFlat):
        # Exact search over a small matrix: one matrix-vector product, and filters are free.
        scores = index.vectors @ qvec
        if mask is not None:
            scores = np.where(mask, scores, -np.inf)
        ids = _top(scores, n)
        ids = ids[np.isfinite(scores[ids])]
        return ids, scores[ids]
    params = None
    if mask is not None:
        sel = faiss.IDSelectorBatch(np.flatnonzero(mask).astype(np.int64))
        params = faiss.SearchParametersHNSW(sel=sel, efSearch=max(index.dense.hnsw.efSearch, n))
    d, i = index.dense.search(qvec[None, :].astype(np.float32), n, params=params)
    keep = i[0] >= 0
    return i[0][keep], d[0][keep]


def _fuse(
    settings: RetrieveSettings,
    dense_ids: np.ndarray,
    dense_s: np.ndarray,
    bm_ids: np.ndarray,
    bm_s: np.ndarray,
) -> dict[int, float]:
    fused: dict[int, float] = {}
    if settings.fusion == "rrf":
        for rank, i in enumerate(dense_ids):
            fused[int(i)] = fused.get(int(i), 0.0) + settings.dense_weight / (settings.rrf_k + rank + 1)
        for rank, i in enumerate(bm_ids):
            fused[int(i)] = fused.get(int(i), 0.0) + settings.bm25_weight / (settings.rrf_k + rank + 1)
        # Put RRF on a 0..1-ish scale so the rerank weight means the same in both modes.
        top = max(fused.values(), default=1.0)
        return {i: v / top for i, v in fused.items()}
    # Score fusion: cosine min-max scaled over the candidates (e5 scores are bunched),
    # BM25 divided by the best score of this query.
    if len(dense_s):
        lo, hi = float(dense_s.min()), float(dense_s.max())
        span = hi - lo if hi > lo else 1.0
        for i, s in zip(dense_ids, dense_s, strict=True):
            fused[int(i)] = settings.dense_weight * (float(s) - lo) / span
    if len(bm_ids):
        best = float(bm_s[0]) or 1.0
        for i, s in zip(bm_ids, bm_s, strict=True):
            fused[int(i)] = fused.get(int(i), 0.0) + settings.bm25_weight * float(s) / best
    return fused


def _rerank(
    index: LoadedIndex, profile: QuestionProfile, fused: dict[int, float], settings: RetrieveSettings, k: int
) -> None:
    """Add ``rerank_weight`` x the best sentence's coverage to the top ``rerank_depth`` candidates.

    Only the final top ``k`` matter, so candidates are scored in order of the most they could
    reach (fused score + weight x an upper bound from the chunk as a whole); once k candidates
    are scored and the next one's bound is below the k-th, the rest cannot enter the top k and
    keep their fused score. The top k is the same as scoring all of them.
    """
    w = settings.rerank_weight
    pending: list[tuple[float, int, ChunkTerms]] = []
    finals: list[float] = []
    for i, f in sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))[: settings.rerank_depth]:
        if index.chunks[i].kind == "meta":
            fused[i] += w * 0.8 * profile.coverage(index.chunk_norm(i))
            finals.append(fused[i])
            continue
        terms = profile.chunk_terms(index.pieces(i)[1], index.chunk_norm(i))
        pending.append((f + w * terms.bound, i, terms))
    pending.sort(key=lambda x: (-x[0], x[1]))
    for reach, i, terms in pending:
        if len(finals) >= k and reach < sorted(finals, reverse=True)[k - 1]:
            break
        pieces, title_norm = index.pieces(i)
        fused[i] += w * profile.best_piece_coverage(pieces, title_norm, index.chunk_norm(i), terms)
        finals.append(fused[i])


_LATIN = re.compile(r"[A-Za-z]")
_CJK = re.compile(r"[\u4e00-\u9fff]")


def latin_script(text: str) -> bool:
    """Written mostly in Latin letters (an English question over a Chinese corpus)."""
    return len(_LATIN.findall(text)) > 2 * len(_CJK.findall(text))


def dense_text(query: str, settings: RetrieveSettings) -> str:
    """What the embedding model reads of ``query``: ``dense_query_chars`` characters, four times
    as many for Latin script (about four letters per token, so the same cost in tokens)."""
    return query[: settings.dense_query_chars * (4 if latin_script(query) else 1)]


def query_translations(index: LoadedIndex, query: str, settings: RetrieveSettings) -> list[tuple[str, list[str]]]:
    """For an English question, its phrases with the Chinese words of the corpus they translate
    (``rag.crosslingual``); [] for any other question or with the glossary switched off."""
    if not settings.cross_lingual_glossary or not latin_script(query):
        return []

    def keep(word: str) -> bool:
        return index.corpus_has(index.tokenizer.normalize(word), ignore_space=True)

    try:
        glossary = load_glossary()
    except RagError as exc:  # a broken install degrades English retrieval, it does not fail it
        log.warning("%s", exc)
        return []
    pairs = translate_terms(query, glossary, keep)
    if len(index.chunks) <= MAX_TEXT_SCAN_CHUNKS:
        # Chinese names written in pinyin ("Cheng Chaolong"), looked for in the corpus text itself,
        # which is held only as long as corpus_has holds it
        pairs += pinyin_names(query, index.corpus_text(), glossary, SURNAMES)
    return pairs


def lexical_text(query: str, translations: list[tuple[str, list[str]]]) -> str:
    """What BM25 and the rerank read of ``query``: the query itself, or for an English question
    the Chinese words its phrases translate (:func:`query_translations`)."""
    return (lexical_query(query, translations) or query) if translations else query


def dense_input(index: LoadedIndex, query: str, settings: RetrieveSettings, lexical: str | None = None) -> str:
    """What the embedding model reads: the capped query, Traditional mapped to Simplified, and for
    an English question its Chinese translations after it. e5 places "English + 中文词" nearer the
    Chinese passages than the English alone: on English renderings of held-out magazine
    questions answers with every keyword rose from 32 % to 52 % (``eval/magazine_eval.py``)."""
    text = dense_text(query, settings)
    if lexical and lexical != query:
        text = f"{text} {lexical[: settings.dense_query_chars]}"
    return index.tokenizer.normalize.simplified(text)


def embed_query(
    index: LoadedIndex, embedder, query: str, settings: RetrieveSettings, lexical: str | None = None
) -> np.ndarray:
    """The query's e5 vector, as :func:`search` computes it (see :func:`dense_input`)."""
    return embedder.encode_queries([dense_input(index, query, settings, lexical)])[0]


def search(
    index: LoadedIndex,
    embedder,
    query: str,
    settings: RetrieveSettings,
    k: int | None = None,
    filters: Filters | None = None,
    timings: dict[str, float] | None = None,
    qvec: np.ndarray | None = None,
    lexical: str | None = None,
) -> list[Hit]:
    """Rank chunks for ``query``; ``timings`` (ms) gets embed/dense/bm25/fusion entries.

    ``qvec``: the query's vector when the caller has it already (see :func:`embed_query`);
    ``lexical``: what BM25 reads, when the caller has it already (see :func:`lexical_text`).
    """
    k = k or settings.k
    t = timings if timings is not None else {}
    mask = None
    if filters is not None and not filters.is_empty():
        mask = np.fromiter((filters.accepts(c) for c in index.chunks), dtype=bool, count=len(index.chunks))
        if not mask.any():
            return []
    n_cand = max(settings.candidates, k)
    if lexical is None:
        lexical = lexical_text(query, query_translations(index, query, settings))

    dense_ids = np.zeros(0, dtype=np.int64)
    dense_s = np.zeros(0, dtype=np.float32)
    if settings.mode in ("hybrid", "dense") and settings.dense_weight > 0:
        t0 = time.perf_counter()
        if qvec is None:
            qvec = embedder.encode_queries([dense_input(index, query, settings, lexical)])[0]
        t1 = time.perf_counter()
        dense_ids, dense_s = dense_scores(index, qvec, n_cand, mask)
        t2 = time.perf_counter()
        t.setdefault("embed", (t1 - t0) * 1000)
        t["dense"] = (t2 - t1) * 1000

    bm_ids = np.zeros(0, dtype=np.int64)
    bm_s = np.zeros(0, dtype=np.float32)
    use_bm25 = settings.mode in ("hybrid", "bm25") and settings.bm25_weight > 0
    query_tokens: list[str] = []
    use_rerank = settings.rerank_weight > 0 and settings.rerank_depth > 0
    profile = None
    if use_bm25:
        t0 = time.perf_counter()
        # One jieba pass serves BM25 and the rerank.
        profile = QuestionProfile(lexical, index.tokenizer, index.idf)
        query_tokens = index.tokenizer.expand(profile.words)
        bm_ids, bm_s = index.bm25.top(query_tokens, n_cand, mask)
        t["bm25"] = (time.perf_counter() - t0) * 1000

    t0 = time.perf_counter()
    fused = _fuse(settings, dense_ids, dense_s, bm_ids, bm_s)
    t["fusion"] = (time.perf_counter() - t0) * 1000
    if use_rerank and fused:
        t0 = time.perf_counter()
        if profile is None:
            profile = QuestionProfile(lexical, index.tokenizer, index.idf)
        _rerank(index, profile, fused, settings, k)
        t["rerank"] = (time.perf_counter() - t0) * 1000
    dense_of = {int(i): float(s) for i, s in zip(dense_ids, dense_s, strict=True)}
    order = sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
    bm25_of: dict[int, float] = {}
    if use_bm25 and order:
        bm25_of = dict(zip(bm_ids.tolist(), bm_s.tolist(), strict=True))
        missing = np.array([i for i, _ in order if i not in bm25_of], dtype=np.int64)
        if len(missing):  # hits that only the dense side found
            scores = index.bm25.score_ids(query_tokens, missing)
            bm25_of.update(zip(missing.tolist(), scores.tolist(), strict=True))
    return [
        Hit(
            chunk=index.chunks[i],
            score=s,
            rank=r + 1,
            dense_score=dense_of.get(i),
            bm25_score=bm25_of.get(i) if use_bm25 else None,
        )
        for r, (i, s) in enumerate(order)
    ]
