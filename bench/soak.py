"""Soak test: ``rag serve`` under steady concurrent load for minutes; errors must stay at zero
and the server's memory flat.

The script indexes the magazine into a temp folder (``rag index build``; or uses
``--index-dir``), starts ``rag serve`` on 127.0.0.1 on a free port, waits until ``POST /api/ask``
answers, then runs ``--clients`` threads (default 30), each with its own keep-alive connection,
POSTing the dev questions (``eval/dev_qa.jsonl``) round robin for ``--duration`` seconds
(default 300). A request counts as an error if it fails to connect, times out
(``--timeout``), or answers anything but 200 with an ``answer``. Every 5 s the server's RSS is
read from ``/proc``. Everything is bounded by count and time and targets loopback only.

Reports: requests, errors (by kind), throughput, latency p50/p95/p99/max, RSS first/last/max
and the drift over the run, per-minute throughput. Exit code 1 if any request failed.

Run: ``python -m bench.soak [--duration 300] [--clients 30]``. Result: ``bench/results/soak.md``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.common import (
    MAGAZINE,
    MODEL_CACHE,
    OFFLINE_ENV,
    PROJECT_ROOT,
    CpuMonitor,
    default_qa_path,
    log,
    markdown_table,
    rss_mb,
    summarize,
    write_result,
)

HOST = "127.0.0.1"  # never anything but loopback
SAMPLE_EVERY_S = 5.0


@dataclass
class Sample:
    start: float  # seconds since the load began
    latency: float  # seconds
    error: str | None  # None for a good answer


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def load_questions(path: Path) -> list[str]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            q = json.loads(line).get("question")
            if isinstance(q, str) and q.strip():
                out.append(q)
    if not out:
        raise SystemExit(f"no questions in {path}")
    return out


def rag_command() -> list[str]:
    rag = Path(sys.executable).parent / "rag"
    return [str(rag)] if rag.exists() else [sys.executable, "-m", "rag.cli"]


def server_env(index_dir: Path, feedback_db: Path) -> dict[str, str]:
    env = {**os.environ, **OFFLINE_ENV}
    env.update(RAG_INDEX_DIR=str(index_dir), RAG_EMBED_CACHE_DIR=str(MODEL_CACHE), RAG_FEEDBACK_DB=str(feedback_db))
    for k in ("RAG_API_TOKEN", "RAG_UI_USER", "RAG_UI_PASSWORD", "RAG_TRUSTED_USER_HEADER", "RAG_ROOT_PATH"):
        env.pop(k, None)
    return env


def wait_ready(proc: subprocess.Popen, base: str, question: str, timeout_s: float) -> float:
    t0 = time.monotonic()
    with httpx.Client(base_url=base, timeout=60, trust_env=False) as c:
        while time.monotonic() - t0 < timeout_s:
            if proc.poll() is not None:
                raise RuntimeError(f"`rag serve` exited with code {proc.returncode} before answering")
            try:
                if c.post("/api/ask", json={"question": question}).status_code == 200:
                    return time.monotonic() - t0
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
    raise RuntimeError(f"`rag serve` did not answer within {timeout_s:.0f} s")


def client_loop(base: str, questions: list[str], offset: int, t0: float, deadline: float, timeout_s: float,
                out: list[Sample], lock: threading.Lock) -> None:
    """One user: ask, wait for the answer, ask the next question, until the deadline."""
    mine: list[Sample] = []
    with httpx.Client(base_url=base, timeout=timeout_s, trust_env=False) as c:
        for q in itertools.islice(itertools.cycle(questions), offset, None):
            start = time.monotonic()
            if start >= deadline:
                break
            error: str | None = None
            try:
                r = c.post("/api/ask", json={"question": q})
                if r.status_code != 200:
                    error = f"HTTP {r.status_code}"
                elif not isinstance(r.json().get("answer"), str):
                    error = "no answer field"
            except httpx.TimeoutException:
                error = "timeout"
            except httpx.HTTPError as e:
                error = type(e).__name__
            except ValueError:
                error = "invalid JSON"
            mine.append(Sample(start - t0, time.monotonic() - start, error))
    with lock:
        out.extend(mine)


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)  # its own session: only the server and its children
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=300.0, help="seconds of load (default 300)")
    parser.add_argument("--clients", type=int, default=30, help="concurrent clients (default 30)")
    parser.add_argument("--timeout", type=float, default=120.0, help="per-request timeout in seconds")
    parser.add_argument("--qa", type=Path, default=default_qa_path(), help="questions (JSONL with 'question')")
    parser.add_argument("--index-dir", type=Path, default=None,
                        help="serve this built index instead of indexing the magazine into a temp folder")
    parser.add_argument("--name", default="soak", help="result file name under bench/results/ (default soak)")
    args = parser.parse_args()
    if not 1 <= args.clients <= 500 or not 1 <= args.duration <= 24 * 3600:
        parser.error("--clients must be 1..500 and --duration 1..86400")
    questions = load_questions(args.qa)

    tmp = Path(tempfile.mkdtemp(prefix="bench-soak-"))
    proc: subprocess.Popen | None = None
    try:
        index_dir = args.index_dir or tmp / "index"
        env = server_env(index_dir, tmp / "feedback.sqlite")
        if args.index_dir is None:
            log("indexing the magazine into a temp folder (rag index build)")
            subprocess.run([*rag_command(), "index", "build", str(MAGAZINE)], env=env, cwd=PROJECT_ROOT, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=3600)
        port = free_port()
        base = f"http://{HOST}:{port}"
        log(f"starting rag serve on {base}")
        server_log = tmp / "server.log"
        with server_log.open("wb") as logf:
            proc = subprocess.Popen([*rag_command(), "serve", "--host", HOST, "--port", str(port)], env=env,
                                    cwd=PROJECT_ROOT, stdout=logf, stderr=subprocess.STDOUT, start_new_session=True)
        ready_s = wait_ready(proc, base, questions[0], timeout_s=600)
        log(f"server ready after {ready_s:.1f} s, RSS {rss_mb(proc.pid):.0f} MiB; "
            f"{args.clients} clients for {args.duration:.0f} s")

        rss: list[tuple[float, float]] = []
        samples: list[Sample] = []
        lock = threading.Lock()
        mon = CpuMonitor().start()
        mon.watch(proc.pid)
        t0 = time.monotonic()
        deadline = t0 + args.duration
        threads = [
            threading.Thread(target=client_loop, daemon=True,
                             args=(base, questions, i, t0, deadline, args.timeout, samples, lock))
            for i in range(args.clients)
        ]
        for t in threads:
            t.start()
        next_sample = t0
        while any(t.is_alive() for t in threads):
            now = time.monotonic()
            if now >= next_sample:
                if proc.poll() is not None:
                    log(f"server died with code {proc.returncode}")
                    break
                rss.append((now - t0, rss_mb(proc.pid)))
                if len(rss) % 12 == 1:
                    log(f"t={now - t0:5.0f} s  RSS {rss[-1][1]:.0f} MiB")
                next_sample += SAMPLE_EVERY_S
            time.sleep(0.2)
        for t in threads:
            t.join(args.timeout + 10)
        elapsed = time.monotonic() - t0
        if proc.poll() is None:
            rss.append((elapsed, rss_mb(proc.pid)))
        mon.sample_watched()
        noise = mon.stop()
    finally:
        if proc is not None:
            stop_server(proc)
        shutil.rmtree(tmp, ignore_errors=True)

    lat = [s.latency * 1000 for s in samples if s.error is None]
    errors = Counter(s.error for s in samples if s.error is not None)
    n, n_err = len(samples), sum(errors.values())
    stats = summarize(lat) if lat else {k: float("nan") for k in ("n", "mean", "p50", "p95", "p99", "max")}
    mem = [m for _, m in rss]
    minutes = Counter(int(s.start // 60) for s in samples if s.error is None and s.start < args.duration)

    summary = markdown_table(
        ["clients", "duration s", "requests", "errors", "req/s", "p50 ms", "p95 ms", "p99 ms", "max ms"],
        [[args.clients, round(elapsed, 1), n, n_err, n / elapsed if elapsed else 0.0,
          stats["p50"], stats["p95"], stats["p99"], stats["max"]]],
    )
    # The first minute is warm-up (caches, worker threads); flat memory means no growth after it.
    warm = next((m for t, m in rss if t >= 60), mem[-1] if mem else float("nan"))
    memory = markdown_table(
        ["RSS first MiB", "RSS at 60 s MiB", "RSS last MiB", "RSS max MiB", "growth after 60 s MiB", "samples"],
        [[mem[0], warm, mem[-1], max(mem), mem[-1] - warm, len(mem)]] if mem else [["–"] * 5 + [0]],
    )
    span = min(elapsed, args.duration)
    per_minute = markdown_table(["minute", "answers", "answers/s"],
                                [[m + 1, c, c / max(1.0, min(60.0, span - 60 * m))] for m, c in sorted(minutes.items())])
    rss_rows = [[round(t, 1), m] for t, m in rss[:: max(1, len(rss) // 12)]]
    if rss and rss_rows[-1][0] != round(rss[-1][0], 1):
        rss_rows.append([round(rss[-1][0], 1), rss[-1][1]])
    rss_table = markdown_table(["t s", "RSS MiB"], rss_rows)
    error_text = "none" if not errors else ", ".join(f"{k}: {v}" for k, v in errors.most_common())
    sections = [
        f"`rag serve` (extractive backend) on {HOST}, {args.clients} concurrent clients, each POSTing "
        f"`/api/ask` with the {len(questions)} dev questions round robin for {args.duration:.0f} s "
        f"(per-request timeout {args.timeout:.0f} s). Server ready {ready_s:.1f} s after start.",
        "## Throughput and latency\n\n" + summary,
        f"Errors: {error_text}.",
        "## Server memory (RSS)\n\n" + memory,
        "RSS over the run:\n\n" + rss_table,
        "## Answers per minute\n\n" + per_minute,
        "Latency is what a user waits with this many colleagues asking at once: on 2 cores the "
        "server answers one question at a time per core, so p50 grows with the number of clients "
        "while throughput stays flat.",
    ]
    write_result(args.name, "Soak: rag serve under steady load", sections, noise)
    if n_err:
        sys.exit(1)


if __name__ == "__main__":
    main()
