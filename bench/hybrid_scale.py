"""Hybrid search end to end at scale: ``rag.retrieve.search`` over 1M synthetic chunks.

``bench.scale`` times the dense and BM25 parts on their own. This script builds one
``LoadedIndex`` with both (the product's ``make_dense_index``: HNSW above ``exact_threshold``
with the default M/efConstruction/efSearch, and ``BM25Index``) over the same synthetic corpus
and times the real ``search`` call: question embedding, dense, BM25, fusion and rerank.

* Chunk texts are the synthetic BM25 token lists of ``bench.scale.TokenModel`` joined into
  sentences of 12-30 tokens ending in "。", so the rerank splits and scores real-looking pieces.
* Chunk vectors are ``bench.scale.clustered_vectors`` (the model cannot embed 1M chunks here
  in reasonable time: about 12 chunks/s).
* Questions are the dev questions. Each one is embedded by the real model, so the embedding
  cost is real, and then the returned vector is swapped for a held-out query vector of the
  synthetic space, so the dense search runs where the corpus vectors live.

Run: ``python -m bench.hybrid_scale`` (about 6 min and 15 GB peak at 1M on 2 cores); ``--sizes
100000`` for a quick run. Results: ``bench/results/hybrid_scale.md``.
"""

from __future__ import annotations

import argparse
import gc
import time
from pathlib import Path

import numpy as np

from bench.common import (
    CpuMonitor,
    bench_settings,
    default_qa_path,
    load_bench_embedder,
    load_dev_questions,
    log,
    markdown_table,
    peak_rss_mb,
    rss_mb,
    summarize,
    time_calls,
    wait_until_quiet,
    write_result,
)
from bench.scale import SpaceParams, TokenModel, clustered_vectors, search_threads

STAGES = ("embed", "dense", "bm25", "fusion", "rerank", "wall")


class SwappedVectorEmbedder:
    """Embeds questions with the real model, then answers with the synthetic vector assigned to each."""

    def __init__(self, real, vectors: dict[str, np.ndarray]) -> None:
        self.real = real
        self.vectors = vectors

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        self.real.encode_queries(texts)  # the real cost of embedding the question
        return np.vstack([self.vectors[t] for t in texts])


def synthetic_chunks(tokens: list[list[str]], seed: int = 0) -> list:
    """Chunk records whose text is each token list cut into sentences ending in "。"."""
    from rag.types import Chunk

    rng = np.random.default_rng(seed)
    chunks = []
    for i, toks in enumerate(tokens):
        cuts = np.cumsum(rng.integers(12, 31, len(toks) // 12 + 1))
        parts, a = [], 0
        for b in cuts.tolist():
            if a >= len(toks):
                break
            parts.append("".join(toks[a:b]) + "。")
            a = b
        text = "".join(parts)
        chunks.append(
            Chunk(
                chunk_id=f"syn:{i:07d}", doc="合成语料", doc_id="syn", article=f"合成文章 {i // 8}",
                pages=(str(1 + (i // 8) % 60),), text=text, start=0, end=len(text),
            )
        )
    return chunks


def bench_size(
    n: int, model: TokenModel, embedder, questions: list[str], args: argparse.Namespace, noise: list[dict]
) -> list[list]:
    """Build the hybrid index over n synthetic chunks and time ``search`` on the dev questions.

    The timed part waits for a quiet machine; its CPU noise is appended to ``noise``.
    """
    from rag.config import RetrieveSettings
    from rag.index import LoadedIndex
    from rag.retrieve import search

    settings = bench_settings(Path("/nonexistent"))
    log(f"n={n:,}: generating tokens, texts and vectors")
    tokens = model.corpus(n, seed=n)
    chunks = synthetic_chunks(tokens, seed=n)
    base, qvecs = clustered_vectors(n, len(questions), SpaceParams(), seed=n)
    log(f"n={n:,}: building the index (HNSW M={settings.index.hnsw_m} efC={settings.index.hnsw_ef_construction},"
        f" BM25)")
    rss0 = rss_mb()
    t0 = time.perf_counter()
    index = LoadedIndex.in_memory(chunks, tokens, base, settings.index)
    build_s = time.perf_counter() - t0
    del tokens
    gc.collect()
    index_kind = type(index.dense).__name__
    swapped = SwappedVectorEmbedder(embedder, dict(zip(questions, qvecs, strict=True)))
    retrieve = RetrieveSettings()

    def call(q: str) -> dict[str, float]:
        t: dict[str, float] = {}
        search(index, swapped, q, retrieve, timings=t)
        return t

    wait_until_quiet()
    log(f"n={n:,}: first pass (lazy per-chunk caches), then {args.repeats} timed passes")
    mon = CpuMonitor().start()
    with search_threads(args.query_threads):
        first = time_calls(questions, call, 1)
        warm = time_calls(questions, call, args.repeats)
    noise.append(mon.stop())
    rows = []
    for label, samples in (("first pass", first), ("warm", warm)):
        for stage in STAGES:
            if stage in samples:
                s = summarize(samples[stage])
                rows.append([f"{n:,}", index_kind, label, stage, s["p50"], s["p95"], s["p99"], len(samples[stage])])
    log(f"n={n:,}: build {build_s:.0f} s, RSS {rss_mb():.0f} MiB (Δ {rss_mb() - rss0:.0f})")
    rows.append([f"{n:,}", index_kind, f"build {build_s:.0f} s; process RSS {rss_mb() / 1024:.1f} GiB", "", "", "",
                 "", ""])
    return rows  # the index goes with this frame


def main() -> None:
    """Parse arguments, run the benchmark, print and write the result."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000000", help="comma-separated corpus sizes")
    parser.add_argument("--repeats", type=int, default=5, help="timed passes over the dev questions")
    parser.add_argument("--qa", type=Path, default=default_qa_path(), help="dev questions")
    parser.add_argument(
        "--query-threads", type=lambda s: None if s == "default" else int(s), default=None,
        help="FAISS/BLAS threads while timing queries (default: the libraries' own setting, as the app runs)",
    )
    parser.add_argument("--name", default="hybrid_scale", help="result file name")
    args = parser.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]

    embedder = load_bench_embedder(bench_settings(Path("/nonexistent")))
    questions = [item.question for item in load_dev_questions(args.qa)]
    log("tokenising the magazine for the BM25 vocabulary")
    model = TokenModel.from_magazine(args.qa)
    t_start = time.perf_counter()
    rows: list[list] = []
    noises: list[dict] = []
    for n in sizes:
        rows += bench_size(n, model, embedder, questions, args, noises)
    # The header reports the noisiest timed part (builds are not timed against anything).
    noise = max(noises, key=lambda d: d["other_cpu_share"])
    table = markdown_table(
        ["chunks", "dense index", "pass", "stage", "p50 ms", "p95 ms", "p99 ms", "n"], rows,
        digits=[0, 0, 0, 0, 2, 2, 2, 0],
    )
    write_result(
        args.name,
        "Hybrid search end to end on synthetic corpora",
        [
            f"`rag.retrieve.search` with the default settings on one `LoadedIndex` holding both the dense index "
            f"(`make_dense_index`, default `IndexSettings`) and BM25, over synthetic chunks; "
            f"{len(questions)} dev questions, one call at a time, {args.repeats} timed passes after a first pass. "
            f"`embed` is the real model embedding the question; the dense search then uses a synthetic query "
            f"vector (see the script's docstring). `wall` is the whole call. Peak RSS {peak_rss_mb() / 1024:.1f} GiB "
            f"(the BM25 build dominates). Total run time {time.perf_counter() - t_start:.0f} s.",
            "## search()\n\n" + table,
        ],
        noise=noise,
    )


if __name__ == "__main__":
    main()
