"""Public Chinese QA benchmarks and the retrieval ablation (a script, not a test).

    python eval/benchmarks.py --shared ../shared/benchmarks --out eval/results \\
        [--datasets cmrc,drcd,xquad,rgb] [--limit N] [--no-ablation]

What it measures, with the project's own chunker, embedder, retriever and extractive reader:

* **CMRC 2018 dev, DRCD dev, XQuAD zh** (SQuAD layout): the corpus is every context of the
  file, each context one document (``doc_id`` = paragraph id) cut by ``rag.chunk`` into
  chunks; a retrieved chunk is a hit when it comes from the question's own paragraph.
  Recall@1/5/20 (the first hit within k) and MRR@10. Answers: the extractive backend over the
  top-k hits, scored with the official CMRC definitions (EM, character F1, punctuation
  removed, max over references). The extractive backend answers with whole sentences, so EM
  is near zero by construction and F1 is bounded by sentence length; "contains" (some
  reference occurs in the answer) shows whether the right sentence was found. "reader only"
  runs the same reader on the gold paragraph's chunks, separating reader from retriever.
  DRCD stays in Traditional Chinese: the index and the queries are mapped to Simplified for
  matching (``rag.lexical``), the answer is printed text, like the references.
* **RGB zh_refine**: corpus = every unique positive and negative passage; hit = a positive
  passage. Accuracy is RGB's ``checkanswer`` on the extractive answer. "noise only": for each
  query the corpus is only its negative passages, where the right behaviour is to refuse;
  "positives only" is the noise-free upper bound.
* **Published comparison**: the first 40 CMRC dev questions whose context is among the first
  211 contexts, with those 211 contexts as the corpus; recall@1 and @5.
* **Ablation**: dense only / BM25 only / hybrid x chunk sizes on the magazine dev set
  (``eval/dev_qa.jsonl`` through ``rag.evaluate.run_eval``) and on CMRC.

Chunk vectors are cached under ``.cache/bench/<dataset>-<hash>`` where the hash covers the
source file, the limit, the chunk settings and the model fingerprint; query vectors likewise.
Results: ``<out>/benchmarks.md`` and ``<out>/ablation.md`` (date, commit, settings) plus
``benchmarks.json``; with ``--limit N`` the names get a ``-limitN`` suffix.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

from rag.answer import ask  # noqa: E402
from rag.chunk import chunk_document  # noqa: E402
from rag.config import PROJECT_ROOT, ChunkSettings, IndexSettings, Settings  # noqa: E402
from rag.evaluate import (  # noqa: E402
    answer_body,
    cmrc_em,
    cmrc_f1,
    extract_span,
    git_commit,
    rgb_correct,
    run_eval,
)
from rag.index import LoadedIndex, build_index, chunking_fingerprint, embedding_text  # noqa: E402
from rag.lexical import ChineseTokenizer  # noqa: E402
from rag.retrieve import Filters, search  # noqa: E402
from rag.runtime import Runtime  # noqa: E402
from rag.types import Article, Chunk, Document, Hit, Segment  # noqa: E402

CACHE_VERSION = 1  # bump when the way benchmark corpora are turned into chunks changes
DATASETS: dict[str, tuple[str, str]] = {
    "cmrc": ("cmrc2018/cmrc2018_dev.json", "squad"),
    "drcd": ("drcd/DRCD_dev.json", "squad"),
    "xquad": ("xquad_zh/xquad.zh.json", "squad"),
    "rgb": ("rgb_zh/zh_refine.json", "rgb"),
}
NAMES = {"cmrc": "CMRC 2018 dev", "drcd": "DRCD dev (繁体)", "xquad": "XQuAD zh", "rgb": "RGB zh_refine"}
RECALL_KS = (1, 5, 20)
MRR_K = 10
DEPTH = 20
MODES = ("dense", "bm25", "hybrid")
MAGAZINE = PROJECT_ROOT / "data" / "guangdong-gongyun-2025-12.txt"
DEV_QA = PROJECT_ROOT / "eval" / "dev_qa.jsonl"


def log(msg: str) -> None:
    sys.stderr.write(f"[{time.strftime('%H:%M:%S')}] {msg}\n")
    sys.stderr.flush()


# ---------------------------------------------------------------------------------------------
# Datasets
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Passage:
    pid: str
    title: str
    text: str


@dataclass
class Query:
    qid: str
    question: str
    gold: frozenset[str]  # pids of relevant passages
    answers: list[Any]  # SQuAD: reference strings; RGB: the answer spec
    negatives: tuple[str, ...] = ()  # RGB: pids of the query's negative passages


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_squad(path: Path, limit: int | None = None) -> tuple[list[Passage], list[Query]]:
    """Contexts (first ``limit``) and the questions on them; pid = context number ``c00000``."""
    data = json.loads(path.read_text(encoding="utf-8"))
    passages: list[Passage] = []
    queries: list[Query] = []
    for art in data["data"]:
        for para in art["paragraphs"]:
            if limit is not None and len(passages) >= limit:
                return passages, queries
            pid = f"c{len(passages):05d}"
            passages.append(Passage(pid, str(art.get("title", "")), para["context"]))
            for qa in para["qas"]:
                refs = list(dict.fromkeys(a["text"] for a in qa["answers"] if a["text"].strip()))
                queries.append(Query(str(qa["id"]), qa["question"].strip(), frozenset({pid}), refs))
    return passages, queries


def load_rgb(path: Path, limit: int | None = None) -> tuple[list[Passage], list[Query]]:
    """Unique passages of the first ``limit`` queries; gold = the query's positives."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = rows[:limit] if limit else rows
    pid_of: dict[str, str] = {}
    passages: list[Passage] = []

    def pid(text: str) -> str:
        if text not in pid_of:
            pid_of[text] = f"r{len(pid_of):05d}"
            passages.append(Passage(pid_of[text], "", text))
        return pid_of[text]

    queries = []
    for r in rows:
        pos = frozenset(pid(t) for t in r["positive"] if t.strip())
        neg = tuple(pid(t) for t in r["negative"] if t.strip())
        queries.append(Query(str(r["id"]), r["query"].strip(), pos, list(r["answer"]), neg))
    return passages, queries


def load_dataset(name: str, shared: Path, limit: int | None) -> tuple[list[Passage], list[Query], Path]:
    rel, kind = DATASETS[name]
    path = shared / rel
    if not path.exists():
        raise SystemExit(f"没有找到 {path}；请用 --shared 指向 benchmarks 文件夹（含 cmrc2018/、drcd/ …）。")
    loader = load_squad if kind == "squad" else load_rgb
    passages, queries = loader(path, limit)
    return passages, queries, path


# ---------------------------------------------------------------------------------------------
# Corpus -> chunks -> an in-memory index (vectors cached)
# ---------------------------------------------------------------------------------------------


def passages_to_documents(passages: Sequence[Passage], corpus: str, titles: bool = False) -> list[Document]:
    """Each passage one Document with one Article (title = the passage's title when ``titles``)."""
    docs = []
    for p in passages:
        art = Article(title=p.title if titles else "", segments=(Segment(0, len(p.text), ("1",)),))
        docs.append(
            Document(
                doc_id=p.pid,
                title=corpus,
                path=f"{corpus}/{p.pid}",
                text=p.text,
                articles=(art,),
                content_hash=hashlib.sha256(p.text.encode()).hexdigest(),
                loader="text",
            )
        )
    return docs


def bench_chunk_settings(chunk: ChunkSettings) -> ChunkSettings:
    """The product's chunking, without the per-article meta chunk (a benchmark context has no
    title or page worth stating)."""
    return chunk.model_copy(update={"meta_chunks": False})


def _encode(embedder: Any, texts: list[str], what: str, passages: bool) -> np.ndarray:
    out = []
    step = 256
    with tqdm(total=len(texts), desc=what, unit="条", file=sys.stderr, mininterval=5) as bar:
        for i in range(0, len(texts), step):
            part = texts[i : i + step]
            out.append(embedder.encode_passages(part) if passages else embedder.encode_queries(part))
            bar.update(len(part))
    if not out:
        return np.zeros((0, int(embedder.dim)), dtype=np.float32)
    return np.concatenate(out).astype(np.float32, copy=False)


def corpus_index(
    name: str,
    passages: Sequence[Passage],
    source: Path,
    limit: int | None,
    settings: Settings,
    embedder: Any,
    cache_root: Path,
    titles: bool = False,
) -> Corpus:
    """Chunk and embed a benchmark corpus (or load it from the cache) into an in-memory index."""
    chunk_settings = bench_chunk_settings(settings.chunk)
    key = json.dumps(
        {
            "v": CACHE_VERSION,
            "source": _sha256(source),
            "limit": limit,
            "n": len(passages),
            "titles": titles,
            "chunking": chunking_fingerprint(chunk_settings),
            "model": embedder.fingerprint,
        },
        sort_keys=True,
    )
    folder = cache_root / f"{name}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"
    tokenizer = ChineseTokenizer()
    if (folder / "vectors.npy").exists():
        with (folder / "chunks.jsonl").open(encoding="utf-8") as f:
            chunks = [Chunk.from_dict(json.loads(line)) for line in f]
        with (folder / "tokens.jsonl").open(encoding="utf-8") as f:
            tokens = [json.loads(line) for line in f]
        vectors = np.load(folder / "vectors.npy")
        log(f"{name}: {len(chunks)} 块（缓存 {folder.name}）")
    else:
        chunks = [c for d in passages_to_documents(passages, name, titles) for c in chunk_document(d, chunk_settings)]
        texts = [embedding_text(c, tokenizer.normalize) for c in chunks]
        log(f"{name}: {len(passages)} 段 -> {len(chunks)} 块，嵌入中 …")
        vectors = _encode(embedder, texts, f"嵌入 {name}", passages=True)
        tokens = [tokenizer(t) for t in texts]
        tmp = folder.with_name(folder.name + ".tmp")
        tmp.mkdir(parents=True, exist_ok=True)
        with (tmp / "chunks.jsonl").open("w", encoding="utf-8") as f:
            for c in chunks:
                f.write(json.dumps(c.to_dict(), ensure_ascii=False) + "\n")
        with (tmp / "tokens.jsonl").open("w", encoding="utf-8") as f:
            for t in tokens:
                f.write(json.dumps(t, ensure_ascii=False) + "\n")
        np.save(tmp / "vectors.npy", vectors)
        (tmp / "key.json").write_text(key, encoding="utf-8")
        if folder.exists():
            import shutil

            shutil.rmtree(folder)
        tmp.rename(folder)
    return Corpus(LoadedIndex.in_memory(chunks, tokens, vectors, settings.index, tokenizer, path=folder), tokens)


@dataclass
class Corpus:
    """A benchmark index plus the token lists needed to carve sub-corpora out of it."""

    index: LoadedIndex
    tokens: list[list[str]]

    def subset(self, doc_ids: set[str] | frozenset[str] | Sequence[str], settings: IndexSettings) -> LoadedIndex:
        """An index over only the chunks of ``doc_ids`` (no re-embedding)."""
        keep = set(doc_ids)
        rows = [i for i, c in enumerate(self.index.chunks) if c.doc_id in keep]
        return LoadedIndex.in_memory(
            [self.index.chunks[i] for i in rows],
            [self.tokens[i] for i in rows],
            self.index.vectors[rows] if rows else np.zeros((0, self.index.vectors.shape[1]), np.float32),
            settings,
            self.index.tokenizer,
            path=self.index.path,
        )


class QueryCache:
    """The embedder, with query vectors computed once in batches (and cached on disk).

    ``rag.retrieve.search`` embeds one query per call; batching them first is ~5x faster.
    """

    def __init__(self, embedder: Any) -> None:
        self.embedder = embedder
        self.name = embedder.name
        self.fingerprint = embedder.fingerprint
        self.dim = embedder.dim
        self._vecs: dict[str, np.ndarray] = {}

    def prefill(self, texts: Sequence[str], cache_root: Path, label: str) -> None:
        todo = list(dict.fromkeys(t for t in texts if t not in self._vecs))
        if not todo:
            return
        h = hashlib.sha256(json.dumps([self.fingerprint, todo], ensure_ascii=False).encode()).hexdigest()[:12]
        path = cache_root / f"queries-{label}-{h}.npy"
        if path.exists():
            vecs = np.load(path)
        else:
            vecs = _encode(self.embedder, todo, f"问题 {label}", passages=False)
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, vecs)
        self._vecs.update(zip(todo, vecs, strict=True))

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        missing = [t for t in texts if t not in self._vecs]
        if missing:
            self._vecs.update(zip(missing, self.embedder.encode_queries(missing), strict=True))
        return np.stack([self._vecs[t] for t in texts])

    def encode_passages(self, texts: list[str], show_progress: bool = False) -> np.ndarray:
        return self.embedder.encode_passages(texts)


# ---------------------------------------------------------------------------------------------
# Measuring
# ---------------------------------------------------------------------------------------------


def first_gold_rank(hits: Sequence[Hit], gold: frozenset[str]) -> int | None:
    """1-based rank of the first chunk from a gold passage (the chunk overlaps the paragraph)."""
    for h in hits:
        if h.chunk.doc_id in gold:
            return h.rank
    return None


def retrieval_metrics(ranks: Sequence[int | None]) -> dict[str, float]:
    n = max(len(ranks), 1)
    out = {f"R@{k}": sum(1 for r in ranks if r is not None and r <= k) / n for k in RECALL_KS}
    out[f"MRR@{MRR_K}"] = sum(1.0 / r for r in ranks if r is not None and r <= MRR_K) / n
    return out


def _prediction(
    index: LoadedIndex, qcache: QueryCache, settings: Settings, question: str, filters: Filters | None = None
) -> tuple[str, bool]:
    """The product's answer (``rag.answer.ask``, extractive) over ``index``: text body, refused."""
    rt = Runtime(settings=settings, embedder=qcache, index=index)
    a = ask(rt, question, backend="extractive", k=settings.retrieve.k, filters=filters)
    return ("" if a.refused else answer_body(a.to_dict())), a.refused


def squad_answer_metrics(
    preds: Sequence[tuple[str, bool]], queries: Sequence[Query], tokenizer: ChineseTokenizer | None = None
) -> dict[str, float]:
    """CMRC EM/F1 of the sentence answers (and, with a tokenizer, of the heuristic span)."""
    n = max(len(queries), 1)
    em = f1 = contains = refused = span_em = span_f1 = 0.0
    for (pred, ref), q in zip(preds, queries, strict=True):
        em += cmrc_em(pred, q.answers)
        f1 += cmrc_f1(pred, q.answers)
        contains += any(a and a in pred for a in q.answers)
        refused += ref
        if tokenizer is not None and pred:
            span = extract_span(q.question, pred, tokenizer)
            span_em += cmrc_em(span, q.answers)
            span_f1 += cmrc_f1(span, q.answers)
    out = {"EM": em / n, "F1": f1 / n, "contains": contains / n, "refused": refused / n}
    if tokenizer is not None:
        out |= {"span_EM": span_em / n, "span_F1": span_f1 / n}
    return out


def run_queries(
    index: LoadedIndex,
    qcache: QueryCache,
    queries: Sequence[Query],
    settings: Settings,
    mode: str = "hybrid",
    answer: Callable[[Query], bool] | None = None,
    desc: str = "",
) -> tuple[list[int | None], list[tuple[str, bool]]]:
    """Search every query (depth 20) with ``mode``; answer with the top k when ``answer(q)``."""
    rs = settings.retrieve.model_copy(update={"mode": mode})
    sm = settings.model_copy(update={"retrieve": rs})
    ranks: list[int | None] = []
    preds: list[tuple[str, bool]] = []
    for q in tqdm(queries, desc=desc or mode, unit="题", file=sys.stderr, mininterval=10):
        hits = search(index, qcache, q.question, rs, k=max(DEPTH, settings.retrieve.k))
        ranks.append(first_gold_rank(hits, q.gold))
        if answer is not None and answer(q):
            preds.append(_prediction(index, qcache, sm, q.question))
    return ranks, preds


def reader_only(
    index: LoadedIndex, qcache: QueryCache, queries: Sequence[Query], settings: Settings
) -> list[tuple[str, bool]]:
    """The same ``ask``, restricted to the gold paragraph (a doc filter): the reader alone."""
    preds = []
    for q in tqdm(queries, desc="reader only", unit="题", file=sys.stderr, mininterval=10):
        (pid,) = q.gold
        preds.append(_prediction(index, qcache, settings, q.question, Filters(doc=pid)))
    return preds


@dataclass
class Result:
    """Numbers of one benchmark, for the tables and benchmarks.json."""

    dataset: str
    passages: int
    chunks: int
    questions: int
    retrieval: dict[str, float]
    answers: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


def bench_squad(
    name: str, shared: Path, limit: int | None, settings: Settings, qcache: QueryCache, cache_root: Path
) -> tuple[Result, Corpus, list[Passage], list[Query]]:
    t0 = time.perf_counter()
    passages, queries, source = load_dataset(name, shared, limit)
    corpus = corpus_index(name, passages, source, limit, settings, qcache.embedder, cache_root)
    qcache.prefill([corpus.index.tokenizer.normalize.simplified(q.question) for q in queries], cache_root, name)
    ranks, preds = run_queries(corpus.index, qcache, queries, settings, answer=lambda q: True, desc=name)
    tok = corpus.index.tokenizer
    oracle = squad_answer_metrics(reader_only(corpus.index, qcache, queries, settings), queries, tok)
    res = Result(
        dataset=NAMES[name],
        passages=len(passages),
        chunks=len(corpus.index.chunks),
        questions=len(queries),
        retrieval=retrieval_metrics(ranks),
        answers=squad_answer_metrics(preds, queries, tok),
        extra={"reader_only": oracle},
        seconds=time.perf_counter() - t0,
    )
    return res, corpus, passages, queries


def bench_rgb(shared: Path, limit: int | None, settings: Settings, qcache: QueryCache, cache_root: Path) -> Result:
    t0 = time.perf_counter()
    passages, queries, source = load_dataset("rgb", shared, limit)
    corpus = corpus_index("rgb", passages, source, limit, settings, qcache.embedder, cache_root)
    norm = corpus.index.tokenizer.normalize.simplified
    qcache.prefill([norm(q.question) for q in queries], cache_root, "rgb")
    k = settings.retrieve.k
    ranks: list[int | None] = []
    correct = refused = 0
    noise_refused = noise_correct = 0
    pos_correct = pos_refused = 0
    absent_refused = absent_found = 0
    all_ids = {p.pid for p in passages}
    for q in tqdm(queries, desc="rgb", unit="题", file=sys.stderr, mininterval=10):
        hits = search(corpus.index, qcache, q.question, settings.retrieve, k=max(DEPTH, k))
        ranks.append(first_gold_rank(hits, q.gold))
        pred, ref = _prediction(corpus.index, qcache, settings, q.question)
        correct += rgb_correct(q.answers, pred) if not ref else 0
        refused += ref
        # noise only: the query's negatives are the whole corpus; refusing is right
        noise = corpus.subset(set(q.negatives), settings.index)
        npred, nref = _prediction(noise, qcache, settings, q.question)
        noise_refused += nref
        noise_correct += (not nref) and rgb_correct(q.answers, npred)
        # the full corpus without the query's positives: the answer is absent from a realistically
        # sized knowledge base (its hard negatives are still there); refusing is right
        absent = corpus.subset(all_ids - q.gold, settings.index)
        apred, aref = _prediction(absent, qcache, settings, q.question)
        absent_refused += aref
        absent_found += (not aref) and rgb_correct(q.answers, apred)
        # positives only: the noise-free upper bound of the reader
        pos = corpus.subset(set(q.gold), settings.index)
        ppred, pref = _prediction(pos, qcache, settings, q.question)
        pos_correct += (not pref) and rgb_correct(q.answers, ppred)
        pos_refused += pref
    n = max(len(queries), 1)
    return Result(
        dataset=NAMES["rgb"],
        passages=len(passages),
        chunks=len(corpus.index.chunks),
        questions=len(queries),
        retrieval=retrieval_metrics(ranks),
        answers={"accuracy": correct / n, "refused": refused / n},
        extra={
            "noise_only": {"refused": noise_refused / n, "answer_found": noise_correct / n},
            "without_positives": {"refused": absent_refused / n, "answer_found": absent_found / n},
            "positives_only": {"accuracy": pos_correct / n, "refused": pos_refused / n},
        },
        seconds=time.perf_counter() - t0,
    )


def published_subset(
    corpus: Corpus, passages: Sequence[Passage], queries: Sequence[Query], settings: Settings, qcache: QueryCache
) -> dict[str, Any]:
    """First 40 CMRC dev questions whose context is among the first 211, corpus = those 211."""
    first = {p.pid for p in passages[:211]}
    qs = [q for q in queries if q.gold <= first][:40]
    sub = corpus.subset(first, settings.index)
    out: dict[str, Any] = {"contexts": len(first), "questions": len(qs), "chunks": len(sub.chunks)}
    for mode in MODES:
        ranks, _ = run_queries(sub, qcache, qs, settings, mode=mode, desc=f"published {mode}")
        m = retrieval_metrics(ranks)
        out[mode] = {"R@1": m["R@1"], "R@5": m["R@5"]}
    return out


# ---------------------------------------------------------------------------------------------
# Ablation
# ---------------------------------------------------------------------------------------------


def ablation_magazine(
    settings: Settings, embedder: Any, sizes: Sequence[int], cache_root: Path, out: Path
) -> list[dict[str, Any]]:
    """Chunk size x retrieval mode on the magazine dev set, through run_eval."""
    from rag.index import load_index
    from rag.runtime import Runtime

    rows = []
    for size in sizes:
        chunk = settings.chunk.model_copy(update={"size": size})
        s = settings.model_copy(
            update={"chunk": chunk, "index": settings.index.model_copy(update={"dir": cache_root / f"magazine-{size}"})}
        )
        t0 = time.perf_counter()
        build_index([MAGAZINE], s, embedder)
        index = load_index(s, embedder)
        build_s = time.perf_counter() - t0
        for mode in MODES:
            sm = s.model_copy(update={"retrieve": s.retrieve.model_copy(update={"mode": mode})})
            rt = Runtime(settings=sm, embedder=embedder, index=index)
            summ = run_eval(rt, DEV_QA, out / "magazine-ablation" / f"{size}-{mode}", chart=False)
            o = summ.overall
            rows.append(
                {
                    "size": size,
                    "mode": mode,
                    "questions": o["n"],
                    "chunks": len(index.chunks),
                    "hit@1": o["hit@1"],
                    "hit@5": o["hit@5"],
                    "mrr": o["mrr"],
                    "page_acc": o["page_acc"],
                    "answer_acc": o["answer_acc"],
                    "accuracy": o["accuracy"],
                    "index_seconds": build_s,
                }
            )
            log(f"magazine size={size} mode={mode}: hit@5={o['hit@5']:.3f} acc={o['accuracy']:.3f}")
    return rows


def ablation_squad(
    name: str, shared: Path, limit: int | None, settings: Settings, qcache: QueryCache, sizes: Sequence[int],
    cache_root: Path, answers: bool = False,
) -> list[dict[str, Any]]:
    """Chunk size x retrieval mode on a SQuAD-layout set: retrieval (and extractive F1 if ``answers``)."""
    passages, queries, source = load_dataset(name, shared, limit)
    rows = []
    for size in sizes:
        s = settings.model_copy(update={"chunk": settings.chunk.model_copy(update={"size": size})})
        corpus = corpus_index(name, passages, source, limit, s, qcache.embedder, cache_root)
        qcache.prefill([corpus.index.tokenizer.normalize.simplified(q.question) for q in queries], cache_root, name)
        for mode in MODES:
            ranks, preds = run_queries(
                corpus.index, qcache, queries, s, mode=mode, answer=(lambda q: True) if answers else None,
                desc=f"{name} {size} {mode}",
            )
            rows.append(
                {
                    "size": size,
                    "mode": mode,
                    "chunks": len(corpus.index.chunks),
                    **retrieval_metrics(ranks),
                    **(
                        {k: v for k, v in squad_answer_metrics(preds, queries).items() if k in ("F1", "contains")}
                        if answers
                        else {"F1": None, "contains": None}
                    ),
                }
            )
            log(f"{name} size={size} mode={mode}: R@5={rows[-1]['R@5']:.3f}")
    return rows


# ---------------------------------------------------------------------------------------------
# Reports
# ---------------------------------------------------------------------------------------------


def pct(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.1f}"


def table(head: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def header(title: str, settings: Settings, embedder: Any, args: argparse.Namespace) -> list[str]:
    s = settings
    return [
        f"# {title}",
        "",
        f"- date: {dt.datetime.now().astimezone().isoformat(timespec='seconds')}; commit: `{git_commit()}`",
        f"- machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        f"- embedder: {embedder.name} (fingerprint {str(embedder.fingerprint)[:16]}, dim {embedder.dim})",
        f"- chunking: size {s.chunk.size}, overlap {s.chunk.overlap} (meta chunks off for benchmark corpora)",
        "- retrieve: " + ", ".join(f"{k} {v}" for k, v in s.retrieve.model_dump(mode="json").items()),
        "- answer (extractive): "
        + ", ".join(f"{k} {v}" for k, v in s.answer.model_dump(mode="json").items() if k != "backend"),
        f"- command: `python eval/benchmarks.py {' '.join(sys.argv[1:])}`"
        + (f" (limit {args.limit} contexts / RGB queries)" if args.limit else ""),
        "",
    ]


def headline(results: Sequence[Result]) -> str:
    rows = []
    for r in results:
        a = r.answers
        rows.append(
            [
                r.dataset, r.passages, r.chunks, r.questions,
                pct(r.retrieval["R@1"]), pct(r.retrieval["R@5"]), pct(r.retrieval["R@20"]),
                pct(r.retrieval[f"MRR@{MRR_K}"]),
                pct(a.get("EM")), pct(a.get("F1")), pct(a.get("span_EM")), pct(a.get("span_F1")),
                pct(a.get("contains", a.get("accuracy"))), pct(a.get("refused")), f"{r.seconds:.0f}",
            ]
        )
    return table(
        ["dataset", "passages", "chunks", "questions", "R@1", "R@5", "R@20", "MRR@10", "EM", "F1",
         "span EM", "span F1", "contains / RGB acc", "refused", "seconds"],
        rows,
    )


def write_benchmarks(
    path: Path, results: list[Result], published: dict[str, Any] | None, settings: Settings, embedder: Any,
    args: argparse.Namespace,
) -> str:
    lines = header("Benchmarks: public Chinese QA sets", settings, embedder, args)
    lines += [
        f"All numbers are percentages. Retrieval: `rag.retrieve.search`, mode {settings.retrieve.mode} (e5-small +",
        "BM25, settings above); a hit is a chunk of the question's own paragraph (RGB: a positive passage).",
        "Answers: `rag.answer.ask` with the extractive backend over the top",
        f"{settings.retrieve.k} chunks, scored with the official CMRC 2018 EM / F1 (punctuation removed, max over",
        "references). The extractive backend returns whole sentences, so EM is ~0 by construction and F1 is",
        "limited by sentence length; `contains` = some reference answer occurs in the returned text.",
        "`span EM/F1` score a short span cut from the best sentence by `rag.evaluate.extract_span`, a lexical",
        "heuristic (no reading model is available offline), as a rough indication of span-level quality.",
        "",
        headline(results),
        "",
    ]
    squad = [r for r in results if "reader_only" in r.extra]
    if squad:
        lines += [
            "## Reader only (gold paragraph given, no retrieval)",
            "",
            table(
                ["dataset", "EM", "F1", "span EM", "span F1", "contains", "refused"],
                [[r.dataset, *(pct(r.extra["reader_only"].get(k))
                               for k in ("EM", "F1", "span_EM", "span_F1", "contains", "refused"))]
                 for r in squad],
            ),
            "",
        ]
    rgb = [r for r in results if "noise_only" in r.extra]
    for r in rgb:
        lines += [
            "## RGB zh_refine: noise robustness and refusal",
            "",
            table(
                ["setting", "corpus", "accuracy", "refused"],
                [
                    ["all passages (retrieval)", f"{r.passages} passages", pct(r.answers["accuracy"]),
                     pct(r.answers["refused"])],
                    ["positives only (noise rate 0)", "the query's positives", pct(r.extra["positives_only"]["accuracy"]),
                     pct(r.extra["positives_only"]["refused"])],
                    ["noise only (negatives only)", "the query's negatives",
                     f"{pct(r.extra['noise_only']['answer_found'])} (answer string found)",
                     f"**{pct(r.extra['noise_only']['refused'])}** (should be 100)"],
                    ["all passages except the query's positives", f"{r.passages} − positives",
                     f"{pct(r.extra['without_positives']['answer_found'])} (answer string found)",
                     f"**{pct(r.extra['without_positives']['refused'])}** (should be 100)"],
                ],
            ),
            "",
            "Accuracy is RGB's `checkanswer` (every answer string contained, lower-cased; a list element means",
            "any of its strings). In the last two settings no passage holds the answer, so refusing is correct.",
            "The per-query corpora of the middle rows are tiny (5–36 passages), which also changes the corpus",
            "statistics (idf) the reranker and the refusal use; the last row keeps a 7k-passage corpus.",
            "",
        ]
    if published:
        lines += [
            "## Published comparison (CMRC 2018 dev subset)",
            "",
            f"Corpus: the first {published['contexts']} contexts ({published['chunks']} chunks); "
            f"queries: the first {published['questions']} questions on them.",
            "",
            table(
                ["system", "R@1", "R@5"],
                [[f"this bot, {m}", pct(published[m]["R@1"]), pct(published[m]["R@5"])] for m in MODES]
                + [["Dify (published)", "—", "100"], ["FastGPT (published)", "95 (top-1)", "—"],
                   ["MaxKB (published)", "—", "92.5"], ["RAGFlow (published)", "—", "80"]],
            ),
            "",
            "The published figures come from a third-party comparison with its own chunking and settings;",
            "only the corpus and the questions are the same here.",
            "",
        ]
    text = "\n".join(lines)
    path.write_text(text, encoding="utf-8")
    return text


def write_ablation(
    path: Path, mag: list[dict[str, Any]], squad: dict[str, list[dict[str, Any]]], settings: Settings,
    embedder: Any, args: argparse.Namespace,
) -> str:
    lines = header("Ablation: retrieval mode x chunk size", settings, embedder, args)
    if mag:
        lines += [
            f"## Magazine dev set (`eval/dev_qa.jsonl`, {mag[0]['questions']} questions, rag.evaluate scoring)",
            "",
            table(
                ["chunk size", "mode", "chunks", "hit@1", "hit@5", "MRR@10", "page acc", "answer acc", "accuracy"],
                [[r["size"], r["mode"], r["chunks"], *(pct(r[k]) for k in
                  ("hit@1", "hit@5", "mrr", "page_acc", "answer_acc", "accuracy"))] for r in mag],
            ),
            "",
        ]
    for name, rows in squad.items():
        lines += [
            f"## {NAMES[name]}",
            "",
            table(
                ["chunk size", "mode", "chunks", "R@1", "R@5", "R@20", "MRR@10", "F1", "contains"],
                [[r["size"], r["mode"], r["chunks"], *(pct(r[k]) for k in
                  ("R@1", "R@5", "R@20", f"MRR@{MRR_K}", "F1", "contains"))] for r in rows],
            ),
            "",
        ]
    text = "\n".join(lines)
    path.write_text(text, encoding="utf-8")
    return text


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------


def prepare(args: argparse.Namespace, names: Sequence[str], sizes: Sequence[int], mag_sizes: Sequence[int],
            settings: Settings, qcache: QueryCache) -> None:
    """Embed everything a full run needs (the slow part), so scoring can be re-run cheaply."""
    abl = [n.strip() for n in args.ablation_datasets.split(",") if n.strip()] if not args.no_ablation else []
    jobs: list[tuple[str, int]] = [(n, settings.chunk.size) for n in names] if not args.ablation_only else []
    jobs += [(n, size) for n in abl if n in DATASETS for size in sizes if (n, size) not in jobs]
    # RGB (7,337 passages) last: everything else can be scored while it embeds.
    jobs.sort(key=lambda j: j[0] == "rgb")
    if "magazine" in abl:
        for size in mag_sizes:
            s = settings.model_copy(
                update={
                    "chunk": settings.chunk.model_copy(update={"size": size}),
                    "index": settings.index.model_copy(update={"dir": args.cache / f"magazine-{size}"}),
                }
            )
            build_index([MAGAZINE], s, qcache.embedder)
            log(f"magazine size={size}: index ready")
    for name, size in jobs:
        s = settings.model_copy(update={"chunk": settings.chunk.model_copy(update={"size": size})})
        passages, queries, source = load_dataset(name, args.shared, args.limit)
        corpus = corpus_index(name, passages, source, args.limit, s, qcache.embedder, args.cache)
        qcache.prefill([corpus.index.tokenizer.normalize.simplified(q.question) for q in queries], args.cache, name)


def _sizes(spec: str | None, default: set[int]) -> list[int]:
    return sorted({int(x) for x in spec.split(",") if x.strip()} if spec else default)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--shared", type=Path, default=PROJECT_ROOT.parent / "shared" / "benchmarks")
    p.add_argument("--out", type=Path, default=PROJECT_ROOT / "eval" / "results")
    p.add_argument("--datasets", default="cmrc,drcd,xquad,rgb", help="comma-separated: cmrc,drcd,xquad,rgb")
    p.add_argument("--limit", type=int, default=None, help="first N contexts (RGB: first N queries)")
    p.add_argument("--no-ablation", action="store_true", help="skip the mode x chunk-size ablation")
    p.add_argument("--ablation-only", action="store_true", help="run only the ablation")
    p.add_argument("--sizes", default=None, help="chunk sizes for the SQuAD-set ablation (default 250,<default>,600)")
    p.add_argument(
        "--magazine-sizes", default=None, help="chunk sizes for the magazine ablation (default 250,360,<default>,600)"
    )
    p.add_argument("--ablation-datasets", default="magazine,cmrc", help="magazine and/or SQuAD-layout sets")
    p.add_argument("--prepare", action="store_true", help="only embed and cache every corpus and query set, no scoring")
    p.add_argument("--ablation-answers", action="store_true", help="also score answers in the SQuAD ablation")
    p.add_argument("--cache", type=Path, default=PROJECT_ROOT / ".cache" / "bench")
    args = p.parse_args(argv)

    names = [n.strip() for n in args.datasets.split(",") if n.strip()]
    unknown = [n for n in names if n not in DATASETS]
    if unknown:
        p.error(f"unknown dataset(s) {unknown}; choose from {', '.join(DATASETS)}")
    settings = Settings()
    default = settings.chunk.size
    sizes = _sizes(args.sizes, {250, default, 600})
    mag_sizes = _sizes(args.magazine_sizes, {250, 360, default, 600})
    from rag.embed import load_embedder

    t_all = time.perf_counter()
    log(f"加载向量模型 {settings.embed.model} …")
    embedder = load_embedder(settings.embed)
    qcache = QueryCache(embedder)
    args.out.mkdir(parents=True, exist_ok=True)
    args.cache.mkdir(parents=True, exist_ok=True)
    suffix = f"-limit{args.limit}" if args.limit else ""
    report: dict[str, Any] = {"date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
                              "commit": git_commit(), "limit": args.limit, "settings": settings.model_dump(mode="json")}

    if args.prepare:
        prepare(args, names, sizes, mag_sizes, settings, qcache)
        log(f"缓存已就绪，用时 {time.perf_counter() - t_all:.0f} 秒")
        return 0

    if not args.ablation_only:
        results: list[Result] = []
        published = None
        for name in names:
            log(f"== {NAMES[name]}")
            if DATASETS[name][1] == "rgb":
                results.append(bench_rgb(args.shared, args.limit, settings, qcache, args.cache))
            else:
                res, corpus, passages, queries = bench_squad(name, args.shared, args.limit, settings, qcache, args.cache)
                results.append(res)
                if name == "cmrc":
                    published = published_subset(corpus, passages, queries, settings, qcache)
            log(f"{NAMES[name]}: {json.dumps(results[-1].retrieval)} {json.dumps(results[-1].answers)} "
                f"({results[-1].seconds:.0f} s)")
        md = write_benchmarks(args.out / f"benchmarks{suffix}.md", results, published, settings, embedder, args)
        report["results"] = [r.__dict__ for r in results]
        report["published_subset"] = published
        print(md.split("\n\n", 1)[1] if "\n\n" in md else md)

    if not args.no_ablation:
        abl = [n.strip() for n in args.ablation_datasets.split(",") if n.strip()]
        mag = ablation_magazine(settings, embedder, mag_sizes, args.cache, args.out) if "magazine" in abl else []
        squad = {
            n: ablation_squad(n, args.shared, args.limit, settings, qcache, sizes, args.cache, args.ablation_answers)
            for n in abl
            if n in DATASETS and DATASETS[n][1] == "squad"
        }
        md = write_ablation(args.out / f"ablation{suffix}.md", mag, squad, settings, embedder, args)
        report["ablation"] = {"magazine": mag, **squad}
        print(md)

    report["seconds"] = round(time.perf_counter() - t_all, 1)
    json_path = args.out / f"benchmarks{suffix}.json"
    if json_path.exists():  # keep the parts this run did not redo (e.g. the ablation with --no-ablation)
        try:
            report = {**json.loads(json_path.read_text(encoding="utf-8")), **report}
        except ValueError:
            pass
    json_path.write_text(
        json.dumps(report, ensure_ascii=False, indent=2, default=str), encoding="utf-8"
    )
    log(f"完成，用时 {report['seconds']} 秒；结果在 {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
