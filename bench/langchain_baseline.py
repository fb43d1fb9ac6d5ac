"""Our retrieval against a plain LangChain pipeline, same magazine, same model, same run.

LangChain side (the tutorial recipe): the magazine file's text →
``RecursiveCharacterTextSplitter(chunk_size=500, chunk_overlap=50)`` (the common tutorial
setting; its class defaults, 4000/200, are run too as a second row: such chunks exceed the
model's 512-token window and get truncated) → ``langchain_community`` ``FAISS.from_documents``
→ ``similarity_search(question, k=4)``. The embedding model is *our* model wrapped as a
LangChain ``Embeddings`` with the same prompts: ``embed_documents`` → ``encode_passages``, and
``embed_query`` → sentence-transformers' ``encode()``, which is what ``HuggingFaceEmbeddings``
(the usual stack) calls. Our ``encode_queries`` runs the same modules directly for a single
question (identical vectors, ~2 ms less set-up), so a third row gives LangChain that path too
(``similarity_search_by_vector`` on our query vector): it shows how much of the difference is the
embedding call and how much is the rest of each pipeline.

Our side: ``rag.index.build_index`` then ``rag.retrieve.search`` (k=5) and, for reference,
``rag.answer.ask`` (extractive).

Hit: some passage shares a common substring of ``min(len(evidence), 30)`` characters with some
evidence quote (``rag.evaluate``'s rule); unanswerable questions are left out. hit@4 and hit@5
are given for both sides so the comparison is also like for like.

Run: ``python -m bench.langchain_baseline``. Results: ``bench/results/langchain_baseline.md``.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from langchain_core.embeddings import Embeddings

from bench.common import (
    MAGAZINE,
    CpuMonitor,
    bench_settings,
    build_magazine_runtime,
    default_qa_path,
    evidence_hit,
    go_offline,
    load_bench_embedder,
    load_dev_questions,
    log,
    markdown_table,
    percentile,
    time_interleaved,
    write_result,
)

DIRECT = "LangChain 500/50 + our direct query embedding"


class ProjectEmbeddings(Embeddings):
    """Our embedder behind LangChain's ``Embeddings`` interface (same model, same prompts)."""

    def __init__(self, embedder: Any) -> None:
        self.embedder = embedder

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Passages through ``encode_passages`` (passage prompt)."""
        return self.embedder.encode_passages(list(texts)).tolist()

    def embed_query(self, text: str) -> list[float]:
        """A question through sentence-transformers' ``encode()``, as ``HuggingFaceEmbeddings`` does."""
        prepared = self.embedder.query_prompt + self.embedder._prep([text])[0]
        return self.embedder.model.encode([prepared], normalize_embeddings=True)[0].tolist()


def langchain_store(embedder: Any, chunk_size: int, overlap: int) -> tuple[Any, int, float]:
    """Split the magazine and index it in a LangChain FAISS store; (store, chunks, seconds)."""
    from langchain_community.vectorstores import FAISS
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    t0 = time.perf_counter()
    splitter = RecursiveCharacterTextSplitter(chunk_size=chunk_size, chunk_overlap=overlap)
    docs = splitter.create_documents([MAGAZINE.read_text(encoding="utf-8")], metadatas=[{"source": MAGAZINE.name}])
    store = FAISS.from_documents(docs, ProjectEmbeddings(embedder))
    return store, len(docs), time.perf_counter() - t0


def hit_rate(items: list[Any], passages_for: dict[str, list[str]], k: int) -> tuple[float, int]:
    """Share of answerable items with a hit in the first k passages; (rate, items counted)."""
    hits = [evidence_hit(it, passages_for[it.id][:k]) for it in items]
    counted = [h for h in hits if h is not None]
    return (sum(counted) / len(counted) if counted else float("nan")), len(counted)


def main() -> None:
    """Parse arguments, run the benchmark, print and write the result."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--qa", type=Path, default=default_qa_path(), help="dev questions (JSONL)")
    parser.add_argument("--repeats", type=int, default=5, help="timed passes over the questions")
    parser.add_argument("--name", default="langchain_baseline", help="result file name")
    args = parser.parse_args()
    go_offline()
    from rag.answer import ask
    from rag.retrieve import search

    items = load_dev_questions(args.qa)
    questions = [it.question for it in items]
    tmp = Path(tempfile.mkdtemp(prefix="bench-langchain-"))
    try:
        embedder = load_bench_embedder(bench_settings(tmp))
        embedder.encode_passages(["预热"])
        mon = CpuMonitor().start()
        log("our index")
        t0 = time.perf_counter()
        rt = build_magazine_runtime(tmp, embedder)
        ours_build = time.perf_counter() - t0
        log("LangChain stores")
        configs = [("LangChain 500/50", 500, 50), ("LangChain defaults 4000/200", 4000, 200)]
        stores = {label: langchain_store(embedder, size, overlap) for label, size, overlap in configs}

        # Rankings (top 5 everywhere; hit@4 is its prefix).
        ours_passages = {
            it.id: [h.chunk.text for h in search(rt.index, rt.embedder, it.question, rt.settings.retrieve, k=5)]
            for it in items
        }
        their_passages = {
            label: {it.id: [d.page_content for d in store.similarity_search(it.question, k=5)] for it in items}
            for label, (store, _, _) in stores.items()
        }

        log(f"timing: {args.repeats} x {len(questions)} questions per system")
        calls = {
            label: (lambda q, s=store: s.similarity_search(q, k=4)) for label, (store, _, _) in stores.items()
        }
        lc_store = stores["LangChain 500/50"][0]
        calls[DIRECT] = lambda q: lc_store.similarity_search_by_vector(embedder.encode_queries([q])[0].tolist(), k=4)
        calls["ours search"] = lambda q: search(rt.index, rt.embedder, q, rt.settings.retrieve, k=5)
        calls["ours ask"] = lambda q: ask(rt, q, backend="extractive")
        time_interleaved(questions, calls, 1)  # warm-up
        lat = {label: {"wall": w} for label, w in time_interleaved(questions, calls, args.repeats).items()}
        noise = mon.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    base = percentile(lat["LangChain 500/50"]["wall"], 50)
    rows: list[list[Any]] = []
    h4, n = hit_rate(items, ours_passages, 4)
    h5, _ = hit_rate(items, ours_passages, 5)
    for label, key in (("ours: rag.retrieve.search (hybrid)", "ours search"), ("ours: ask (extractive)", "ours ask")):
        p50 = percentile(lat[key]["wall"], 50)
        rows.append([label, len(rt.index.chunks), ours_build, h4, h5, p50, percentile(lat[key]["wall"], 95), p50 / base])
    for label, (_, n_chunks, build_s) in stores.items():
        t4, _ = hit_rate(items, their_passages[label], 4)
        t5, _ = hit_rate(items, their_passages[label], 5)
        p50 = percentile(lat[label]["wall"], 50)
        rows.append([f"{label}: FAISS similarity_search", n_chunks, build_s, t4, t5, p50,
                     percentile(lat[label]["wall"], 95), p50 / base])
        if label == "LangChain 500/50":
            p50 = percentile(lat[DIRECT]["wall"], 50)
            rows.append([f"{DIRECT}: FAISS similarity_search_by_vector", n_chunks, build_s, t4, t5, p50,
                         percentile(lat[DIRECT]["wall"], 95), p50 / base])
    table = markdown_table(
        ["system", "chunks", "index build s", "hit@4", "hit@5", "p50 ms", "p95 ms", "p50 / LangChain 500/50"],
        rows,
        digits=3,
    )
    lc4, _ = hit_rate(items, their_passages["LangChain 500/50"], 4)
    headline = (
        f"Headline: ours hit@5 = {h5:.3f} vs LangChain (500/50) hit@4 = {lc4:.3f} on {n} answerable questions; "
        f"our search p50 is {percentile(lat['ours search']['wall'], 50) / base:.2f}x LangChain's "
        f"({percentile(lat['ours search']['wall'], 50):.1f} vs {base:.1f} ms)."
    )
    per_item = [
        [it.id, it.type, evidence_hit(it, ours_passages[it.id][:5]), evidence_hit(it, their_passages["LangChain 500/50"][it.id][:4])]
        for it in items
        if it.evidence
    ]
    sections = [
        f"Questions: `{args.qa.name}` ({len(items)}, {n} answerable). Same process, same embedder object, same "
        f"questions; latency = {args.repeats} timed passes after a warm-up pass, one call at a time, the systems "
        "interleaved question by question (rotating which goes first) so that drift in machine speed hits all alike.",
        headline,
        "## Retrieval quality and latency\n\n" + table,
        "## Per question (ours hit@5, LangChain 500/50 hit@4)\n\n"
        + markdown_table(["id", "type", "ours", "LangChain"], per_item),
    ]
    write_result(args.name, "Baseline: plain LangChain RAG vs ours on the magazine", sections, noise=noise)


if __name__ == "__main__":
    main()
