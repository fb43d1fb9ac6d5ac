"""HTTP load on ``rag serve``: throughput, latency, errors and the server's memory.

The script indexes the magazine into a temp folder (``rag index build``), starts ``rag serve``
on 127.0.0.1 on a free port against it, waits until ``POST /api/ask`` answers, and then runs
`wrk <https://github.com/wg/wrk>`_ (a C load generator: it takes little CPU from the server on a
2-core machine) with a Lua script that POSTs the dev questions as JSON, round robin:
20 and 50 concurrent connections, 60 s each (``--quick``: 10 s). Every run is bounded in time
and only ever targets the loopback address.

Memory: the server's RSS after start-up, after one request, and its peak (VmHWM) over the
whole run, read from ``/proc``; target ≤ 1.5 GiB with the extractive backend (no LLM).

Needs ``wrk`` (``apt-get install -y wrk``). Run: ``python -m bench.web_load [--quick]``.
Results: ``bench/results/web_load.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from bench.common import (
    MAGAZINE,
    MODEL_CACHE,
    OFFLINE_ENV,
    PROJECT_ROOT,
    CpuMonitor,
    default_qa_path,
    load_dev_questions,
    log,
    markdown_table,
    peak_rss_mb,
    rss_mb,
    write_result,
)

HOST = "127.0.0.1"  # never anything but loopback
ASK_PATH = "/api/ask"
MEMORY_TARGET_MB = 1536.0

WRK_SCRIPT = r"""
-- POST the questions in %(questions)s round robin; print a JSON summary at the end.
local questions = {}
for line in io.lines("%(questions)s") do table.insert(questions, line) end
local counter = 0
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  errors_non2xx = 0
end

function request()
  counter = counter + 1
  local body = questions[(counter %% #questions) + 1]
  return wrk.format("POST", "%(path)s", {["Content-Type"] = "application/json"}, body)
end

function response(status, headers, body)
  if status ~= 200 then errors_non2xx = errors_non2xx + 1 end
end

function done(summary, latency, requests)
  local non2xx = 0
  for _, t in ipairs(threads) do non2xx = non2xx + (t:get("errors_non2xx") or 0) end
  io.write("WRK_JSON " .. string.format(
    '{"requests": %%d, "duration_us": %%d, "bytes": %%d, "connect": %%d, "read": %%d, "write": %%d, ' ..
    '"status": %%d, "timeout": %%d, "non200": %%d, "p50_us": %%d, "p90_us": %%d, "p95_us": %%d, ' ..
    '"p99_us": %%d, "max_us": %%d, "mean_us": %%f}\n',
    summary.requests, summary.duration, summary.bytes, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.status, summary.errors.timeout, non2xx,
    latency:percentile(50), latency:percentile(90), latency:percentile(95), latency:percentile(99),
    latency.max, latency.mean))
end
"""


def free_port() -> int:
    """A free TCP port on the loopback address."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def server_env(index_dir: Path) -> dict[str, str]:
    """Environment for the CLI: the temp index, the shared model cache, offline, no auth."""
    env = {**os.environ, **OFFLINE_ENV}
    env.update(
        RAG_INDEX_DIR=str(index_dir),
        RAG_EMBED_CACHE_DIR=str(MODEL_CACHE),
        RAG_FEEDBACK_DB=str(index_dir / "feedback.sqlite"),
    )
    env.pop("RAG_API_TOKEN", None)
    return env


def rag_command() -> list[str]:
    """The ``rag`` console script of this virtualenv (or ``python -m rag.cli``)."""
    rag = Path(sys.executable).parent / "rag"
    return [str(rag)] if rag.exists() else [sys.executable, "-m", "rag.cli"]


def post_json(url: str, payload: dict[str, Any], timeout: float = 60.0) -> tuple[int, dict[str, Any]]:
    """POST JSON, return (status, decoded JSON body)."""
    req = urllib.request.Request(
        url, data=json.dumps(payload, ensure_ascii=False).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - loopback only
        return resp.status, json.loads(resp.read())


def wait_ready(proc: subprocess.Popen[bytes], url: str, question: str, timeout_s: float) -> float:
    """Seconds until ``POST /api/ask`` first answers 200 (raises if the server dies or times out)."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout_s:
        if proc.poll() is not None:
            raise RuntimeError(f"`rag serve` exited with code {proc.returncode} before answering")
        try:
            status, _ = post_json(url, {"question": question}, timeout=30)
            if status == 200:
                return time.perf_counter() - t0
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass
        time.sleep(0.5)
    raise RuntimeError(f"`rag serve` did not answer {url} within {timeout_s:.0f} s")


def stop_server(proc: subprocess.Popen[bytes] | None, tmp: Path) -> str:
    """Stop the server started in its own session (SIGTERM, then SIGKILL after 20 s), delete its
    working folder ``tmp``, and return the tail of its log (``tmp/server.log``)."""
    if proc is not None and proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    server_log = tmp / "server.log"
    log_tail = server_log.read_text(errors="replace")[-2000:] if server_log.exists() else ""
    shutil.rmtree(tmp, ignore_errors=True)
    return log_tail


def run_wrk(url: str, script: Path, connections: int, seconds: int) -> dict[str, Any]:
    """One bounded wrk run; wrk's own numbers plus requests per second."""
    cmd = [
        "wrk", "-t", "1", "-c", str(connections), "-d", f"{seconds}s", "--timeout", "60s",
        "-s", str(script), url,
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 120, check=True)
    line = next(x for x in res.stdout.splitlines() if x.startswith("WRK_JSON "))
    out = json.loads(line.removeprefix("WRK_JSON "))
    out["rps"] = out["requests"] / (out["duration_us"] / 1e6)
    out["errors"] = out["connect"] + out["read"] + out["write"] + out["timeout"] + out["non200"]
    return out


def main() -> None:
    """Parse arguments, run the benchmark, print and write the result."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--qa", type=Path, default=default_qa_path(), help="dev questions (JSONL)")
    parser.add_argument("--quick", action="store_true", help="10 s per level instead of 60 s")
    parser.add_argument("--seconds", type=int, default=None, help="seconds per level (overrides --quick)")
    parser.add_argument("--connections", default="20,50", help="comma-separated concurrency levels")
    parser.add_argument("--name", default=None, help="result file name (default web_load[-quick])")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install -y wrk")
    seconds = args.seconds or (10 if args.quick else 60)
    levels = [int(x) for x in args.connections.split(",")]
    name = args.name or ("web_load-quick" if args.quick else "web_load")
    questions = [it.question for it in load_dev_questions(args.qa)]

    tmp = Path(tempfile.mkdtemp(prefix="bench-web-"))
    proc: subprocess.Popen[bytes] | None = None
    try:
        env = server_env(tmp / "index")
        log("indexing the magazine (rag index build)")
        subprocess.run(
            [*rag_command(), "index", "build", str(MAGAZINE)], env=env, cwd=PROJECT_ROOT, check=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=1800,
        )
        bodies = tmp / "bodies.jsonl"
        bodies.write_text("".join(json.dumps({"question": q}, ensure_ascii=False) + "\n" for q in questions), "utf-8")
        script = tmp / "post.lua"
        script.write_text(WRK_SCRIPT % {"questions": bodies, "path": ASK_PATH}, encoding="utf-8")

        port = free_port()
        url = f"http://{HOST}:{port}{ASK_PATH}"
        log(f"starting rag serve on {HOST}:{port}")
        proc = subprocess.Popen(
            [*rag_command(), "serve", "--host", HOST, "--port", str(port)], env=env, cwd=PROJECT_ROOT,
            stdout=subprocess.DEVNULL, stderr=(tmp / "server.log").open("wb"), start_new_session=True,
        )
        ready_s = wait_ready(proc, url, questions[0], timeout_s=300)
        rss_ready = rss_mb(proc.pid)
        log(f"server answered after {ready_s:.1f} s (RSS {rss_ready:.0f} MiB)")
        status, answer = post_json(url, {"question": questions[1]})
        if status != 200 or "answer" not in answer:
            raise RuntimeError(f"unexpected /api/ask response: {status} {str(answer)[:200]}")

        mon = CpuMonitor().start()
        mon.watch(proc.pid)
        runs = []
        for c in levels:
            log(f"wrk: {c} connections for {seconds} s")
            r = run_wrk(f"http://{HOST}:{port}{ASK_PATH}", script, c, seconds)
            r["connections"] = c
            r["rss_after"] = rss_mb(proc.pid)
            runs.append(r)
        mon.sample_watched()
        noise = mon.stop()
        peak = peak_rss_mb(proc.pid)
    finally:
        log_tail = stop_server(proc, tmp)

    rows = [
        [r["connections"], seconds, r["requests"], r["rps"], r["p50_us"] / 1000, r["p95_us"] / 1000,
         r["p99_us"] / 1000, r["max_us"] / 1000, r["errors"], r["rss_after"]]
        for r in runs
    ]
    table = markdown_table(
        ["connections", "s", "requests", "req/s", "p50 ms", "p95 ms", "p99 ms", "max ms", "errors", "RSS after MiB"],
        rows,
        digits=1,
    )
    errors = sum(r["errors"] for r in runs)
    mem_rows = [
        ["start → first 200 from /api/ask (s)", ready_s],
        ["RSS when ready (MiB)", rss_ready],
        ["peak RSS over the whole run, VmHWM (MiB)", peak],
        ["memory target ≤ 1.5 GiB", "met" if peak <= MEMORY_TARGET_MB else "MISSED"],
        ["errors (must be 0)", f"{errors} ({'met' if errors == 0 else 'MISSED'})"],
    ]
    sections = [
        f"`rag serve` (extractive backend) on {HOST}, magazine index, POST `{ASK_PATH}` with the "
        f"{len(questions)} dev questions round robin; wrk 1 thread, timeout 60 s. Errors = connect/read/write "
        "errors, timeouts and non-200 responses.",
        "## Load\n\n" + table,
        "## Server memory and start-up\n\n" + markdown_table(["measure", "value"], mem_rows, digits=1),
    ]
    if errors and log_tail:
        sections.append("Server log tail:\n\n```\n" + log_tail + "\n```")
    write_result(name, "Web load: rag serve under wrk", sections, noise=noise)


if __name__ == "__main__":
    main()
