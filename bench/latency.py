"""Latency benchmark: warm ``search`` and ``ask`` (extractive) on the magazine, and cold start.

Warm: the magazine is indexed into a temp folder, the runtime is loaded once, one pass over
the dev questions warms caches, then ``--repeats`` passes are timed. Every stage that the
library reports in ``timings`` (query embedding, dense search, BM25, fusion, rerank, answer
composition...) gets its own p50/p95/p99, beside the wall time of the call.

Two more warm passes time ``search`` with FAISS and numpy's BLAS limited to one thread, and
with torch (the query embedding) on one thread: one request is one short query, and on a busy
2-core machine spinning OpenMP threads can cost far more than they bring. Run it once more
with ``OMP_WAIT_POLICY=PASSIVE`` in the environment to see the other remedy.

Cold: ``rag ask QUESTION --json`` in a fresh process against the same index, from process
start to the answer on stdout; plus a child process that times each start-up stage.

Run: ``python -m bench.latency`` (a few minutes). Results: ``bench/results/latency.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.common import (
    MODEL_CACHE,
    OFFLINE_ENV,
    PROJECT_ROOT,
    CpuMonitor,
    bench_settings,
    build_magazine_runtime,
    default_qa_path,
    go_offline,
    load_bench_embedder,
    load_dev_questions,
    log,
    markdown_table,
    peak_rss_mb,
    percentile,
    summarize,
    time_calls,
    write_result,
)

STAGE_ORDER = ("embed", "dense", "bm25", "fusion", "rerank", "retrieve", "answer", "total")
# ask: issue 12's "warm extractive ask p50 <= 50 ms on the magazine" (was 150 before the reader).
TARGETS_MS = {"search": 50.0, "ask": 50.0}


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the query embedding (torch) on ``n`` threads for the duration."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextmanager
def single_thread_search() -> Iterator[None]:
    """FAISS OpenMP and numpy BLAS on one thread (torch, which embeds the query, is untouched)."""
    import faiss
    from threadpoolctl import threadpool_limits

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        with threadpool_limits(limits=1, user_api="blas"):
            yield
    finally:
        faiss.omp_set_num_threads(before)


def stage_rows(label: str, samples: dict[str, list[float]]) -> list[list[Any]]:
    """One table row per stage, in pipeline order, then the wall time of the whole call."""
    keys = [k for k in STAGE_ORDER if k in samples] + sorted(k for k in samples if k not in STAGE_ORDER and k != "wall")
    rows = []
    for k in [*keys, "wall"]:
        s = summarize(samples[k])
        rows.append([label, k, s["p50"], s["p95"], s["p99"], s["mean"], s["n"]])
    return rows


def cold_start(index_dir: Path, question: str, runs: int) -> list[float]:
    """Seconds from spawning ``rag ask QUESTION --json`` to its answer line on stdout."""
    rag = Path(sys.executable).parent / "rag"
    cmd = [str(rag)] if rag.exists() else [sys.executable, "-m", "rag.cli"]
    env = {**os.environ, **OFFLINE_ENV, "RAG_INDEX_DIR": str(index_dir), "RAG_EMBED_CACHE_DIR": str(MODEL_CACHE)}
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [*cmd, "ask", question, "--json"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
            cwd=PROJECT_ROOT, text=True,
        )
        assert proc.stdout is not None
        line = proc.stdout.readline()
        elapsed = time.perf_counter() - t0
        proc.wait(timeout=120)
        if proc.returncode != 0 or not line.strip():
            raise RuntimeError(f"`rag ask` failed with exit code {proc.returncode}")
        json.loads(line)
        out.append(elapsed)
    return out


def cold_breakdown(index_dir: Path, question: str) -> dict[str, float]:
    """Start-up stages timed inside a fresh child process (this script with ``--child``)."""
    env = {**os.environ, **OFFLINE_ENV}
    t0 = time.perf_counter()
    res = subprocess.run(
        [sys.executable, "-m", "bench.latency", "--child", str(index_dir), "--child-question", question],
        capture_output=True, text=True, env=env, cwd=PROJECT_ROOT, check=True, timeout=300,
    )
    stages = json.loads(res.stdout.strip().splitlines()[-1])
    stages["process total (spawn → exit; the rest is interpreter start-up and exit)"] = time.perf_counter() - t0
    return stages


def _child(index_dir: Path, question: str) -> None:
    """The child side of :func:`cold_breakdown`: prints one JSON object of seconds per stage."""
    go_offline()
    stages: dict[str, float] = {}
    t = time.perf_counter()
    from rag.answer import ask
    from rag.index import load_index
    from rag.runtime import Runtime

    stages["import rag (answer, index, runtime)"] = time.perf_counter() - t
    settings = bench_settings(index_dir)
    t = time.perf_counter()
    embedder = load_bench_embedder(settings)
    stages["load embedding model"] = time.perf_counter() - t
    t = time.perf_counter()
    index = load_index(settings, embedder)
    stages["load index (checksums, memory-mapped BM25)"] = time.perf_counter() - t
    rt = Runtime(settings=settings, embedder=embedder, index=index)
    t = time.perf_counter()
    ask(rt, question, backend="extractive")
    stages["first ask"] = time.perf_counter() - t
    t = time.perf_counter()
    ask(rt, question, backend="extractive")
    stages["second ask (same question)"] = time.perf_counter() - t
    stages["in-process total to first answer"] = sum(
        v for k, v in stages.items() if not k.startswith("second")
    )
    stages["peak RSS MiB"] = peak_rss_mb()
    print(json.dumps(stages))


def main() -> None:
    """Parse arguments, run the benchmark, print and write the result."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--qa", type=Path, default=default_qa_path(), help="dev questions (JSONL)")
    parser.add_argument("--repeats", type=int, default=5, help="timed passes over the questions")
    parser.add_argument("--cold-runs", type=int, default=3, help="cold `rag ask` processes (0: skip)")
    parser.add_argument("--name", default="latency", help="result file name")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--child-question", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.child_question)
        return

    go_offline()
    from rag.answer import ask
    from rag.retrieve import search

    items = load_dev_questions(args.qa)
    questions = [it.question for it in items]
    tmp = Path(tempfile.mkdtemp(prefix="bench-latency-"))
    try:
        log("loading the model and indexing the magazine")
        t0 = time.perf_counter()
        settings = bench_settings(tmp)
        embedder = load_bench_embedder(settings)
        t_model = time.perf_counter() - t0
        t0 = time.perf_counter()
        rt = build_magazine_runtime(tmp, embedder)
        t_index = time.perf_counter() - t0
        n_chunks = len(rt.index.chunks)
        index_type = type(rt.index.dense).__name__
        ready = getattr(embedder, "query_encoder_ready", None)
        if ready is not None:
            ready.join()  # the ONNX question encoder loads in the background: time what serves
        encoder = "ONNX Runtime" if getattr(embedder, "query_encoder", None) is not None else "torch"

        def do_search(q: str) -> dict[str, float]:
            timings: dict[str, float] = {}
            search(rt.index, rt.embedder, q, rt.settings.retrieve, timings=timings)
            return timings

        def do_ask(q: str) -> dict[str, float]:
            return dict(ask(rt, q, backend="extractive").timings_ms)

        mon = CpuMonitor().start()
        log("warm-up pass")
        first_search = time_calls(questions, do_search, 1)
        first_ask = time_calls(questions, do_ask, 1)
        log(f"timing search and ask: {args.repeats} x {len(questions)} questions")
        search_s = time_calls(questions, do_search, args.repeats)
        ask_s = time_calls(questions, do_ask, args.repeats)
        with single_thread_search():
            search_1t = time_calls(questions, do_search, args.repeats)
        with torch_threads(1):
            time_calls(questions[:3], do_search, 1)
            search_torch1 = time_calls(questions, do_search, args.repeats)
        noise = mon.stop()

        cold: list[float] = []
        breakdown: dict[str, float] = {}
        if args.cold_runs:
            log(f"cold start: {args.cold_runs} x `rag ask`")
            cold = cold_start(tmp, questions[0], args.cold_runs)
            breakdown = cold_breakdown(tmp, questions[0])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    headers = ["call", "stage", "p50 ms", "p95 ms", "p99 ms", "mean ms", "n"]
    table = markdown_table(
        headers,
        stage_rows("search", search_s) + stage_rows("ask (extractive)", ask_s)
        + stage_rows("search, FAISS+BLAS 1 thread", search_1t)
        + stage_rows("search, torch 1 thread", search_torch1),
        digits=2,
    )
    first_rows = [
        ["search", percentile(first_search["wall"], 50), percentile(first_search["wall"], 95),
         percentile(search_s["wall"], 50)],
        ["ask (extractive)", percentile(first_ask["wall"], 50), percentile(first_ask["wall"], 95),
         percentile(ask_s["wall"], 50)],
    ]
    verdict_rows = []
    for label, samples, key in (("search", search_s, "search"), ("ask (extractive)", ask_s, "ask")):
        p50 = percentile(samples["wall"], 50)
        verdict_rows.append([label, p50, TARGETS_MS[key], "met" if p50 <= TARGETS_MS[key] else "MISSED"])
    sections = [
        f"Magazine index: {n_chunks} chunks, {index_type}; questions embedded with {encoder}; "
        f"model load {t_model:.1f} s, index build "
        f"{t_index:.1f} s. Questions: {len(questions)} from `{args.qa.name}`, {args.repeats} timed passes after "
        "one warm-up pass; one call at a time. `wall` is the time of the whole call as the caller sees it; "
        "the stages are the library's own `timings` (ask's `retrieve` covers embed..rerank).",
        "## Warm latency\n\n" + table,
        "## First pass on a fresh index (lazy per-chunk caches, jieba warm-up) vs warm\n\n"
        + markdown_table(["call", "first-pass p50 ms", "first-pass p95 ms", "warm p50 ms"], first_rows, digits=2),
        "## Targets (p50 of the whole call, 2 cores)\n\n"
        + markdown_table(["call", "p50 ms", "target ms", "verdict"], verdict_rows),
    ]
    if cold:
        cold_rows = [[f"`rag ask` run {i + 1}", v] for i, v in enumerate(cold)]
        cold_rows.append(["`rag ask` median", percentile(cold, 50)])
        sections.append(
            "## Cold start (process start → first answer on stdout, seconds)\n\n"
            + markdown_table(["run", "s"], cold_rows, digits=2)
        )
        sections.append(
            "Start-up stages in a fresh child process (seconds; RSS in MiB):\n\n"
            + markdown_table(["stage", "value"], [[k, v] for k, v in breakdown.items()], digits=2)
        )
    write_result(args.name, "Latency: warm search/ask and cold start on the magazine", sections, noise=noise)


if __name__ == "__main__":
    main()
