"""Hostile requests mixed with normal ones: do normal questions still answer in time?

The script indexes the magazine into a temp folder (``rag index build``), starts ``rag serve`` on
127.0.0.1 on a free port against it, and runs two phases of the same length with 20 clients
(keep-alive HTTP/1.1 connections, each sending its next request as soon as the last one is
answered):

* **all-normal**: 20 clients ask the dev questions (``POST /api/ask``) round robin;
* **mix**: 10 such clients, plus 5 sending long histories (50 turns of 2,000 characters to
  ``/api/ask``, 100 messages to ``/v1/chat/completions``, a follow-up as long as a question may
  be) and 5 sending rare characters (the issue's 2,000 × 龘 history and 1,000-character rare
  user turn, a question of random rare CJK characters at the length cap, a rare-character stream).

Reported: requests, errors (any non-200, a stream without ``[DONE]``, a connection error or a
timeout) and the latency of each kind; the verdict compares the p95 of the normal questions in
the mix with the p95 of the all-normal phase (target: within 2×, and 0 errors). Every request
goes to the loopback address only, and each phase is bounded in time.

Run: ``python -m bench.adversarial [--seconds 60] [--clients 20]``.
Results: ``bench/results/adversarial.md``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import (
    MAGAZINE,
    PROJECT_ROOT,
    CpuMonitor,
    default_qa_path,
    load_dev_questions,
    log,
    markdown_table,
    percentile,
    write_result,
)
from bench.web_load import HOST, free_port, rag_command, server_env, stop_server, wait_ready
from rag.config import Settings

TARGET_RATIO = 2.0
REQUEST_TIMEOUT_S = 120.0  # a client gives up (and counts an error) after this long

Request = tuple[str, str, dict[str, Any]]  # (label, path, JSON body)


# --------------------------------------------------------------------------------------------------
# The requests


def rare_text(rng: random.Random, n: int) -> str:
    """``n`` rare CJK characters: Extension A (U+3400-4DBF) and the end of the basic block."""
    return "".join(
        chr(rng.randint(0x3400, 0x4DBF) if rng.random() < 0.5 else rng.randint(0x9F00, 0x9FA5)) for _ in range(n)
    )


def normal_requests(questions: list[str]) -> list[Request]:
    return [("normal", "/api/ask", {"question": q}) for q in questions]


def long_history_requests(magazine: str, max_q: int) -> list[Request]:
    """The largest histories the API accepts (every turn far past the caps, which cut them), and a
    follow-up question of ``max_q`` characters, the longest the server accepts."""
    text = magazine.replace("\n", "")
    turns = [[text[i * 4000 : i * 4000 + 2000], text[i * 4000 + 2000 : i * 4000 + 4000]] for i in range(50)]
    messages = [{"role": r, "content": t} for q, a in turns for r, t in (("user", q), ("assistant", a))]
    return [
        ("long history /api/ask", "/api/ask", {"question": "那深圳呢？", "history": turns}),
        (
            "long history /v1",
            "/v1/chat/completions",
            {"messages": [*messages, {"role": "user", "content": "那深圳呢？"}]},
        ),
        ("longest follow-up /api/ask", "/api/ask", {"question": "那" + text[: max_q - 1], "history": turns[:3]}),
    ]


def rare_requests(rng: random.Random, max_q: int) -> list[Request]:
    """The issue's two reproductions, a question of rare characters, and a rare-character stream
    (questions of ``max_q`` characters, the longest the server accepts)."""
    rare_turn = [{"role": "user", "content": rare_text(rng, 1000)}, {"role": "assistant", "content": "x"}]
    return [
        ("龘 x2000 history /api/ask", "/api/ask", {"question": "那深圳呢？", "history": [["龘" * 2000, "x"]]}),
        ("rare 1,000 turn /v1", "/v1/chat/completions", {"messages": [*rare_turn, {"role": "user", "content": "那深圳呢？"}]}),
        ("longest rare question /api/ask", "/api/ask", {"question": rare_text(rng, max_q)}),
        (
            "rare 1,000 turn /v1 stream",
            "/v1/chat/completions",
            {"messages": [*rare_turn, {"role": "user", "content": "那" + rare_text(rng, max_q - 1)}], "stream": True},
        ),
    ]


# --------------------------------------------------------------------------------------------------
# Clients


@dataclass
class Sample:
    label: str
    ms: float
    ok: bool
    detail: str = ""


@dataclass
class Client:
    """One keep-alive connection sending ``requests`` round robin until ``stop_at``."""

    port: int
    requests: list[Request]
    offset: int
    samples: list[Sample] = field(default_factory=list)

    def _connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(HOST, self.port, timeout=REQUEST_TIMEOUT_S)

    def run(self, stop_at: float) -> None:
        conn = self._connect()
        i = self.offset
        while time.monotonic() < stop_at:
            label, path, body = self.requests[i % len(self.requests)]
            i += 1
            data = json.dumps(body, ensure_ascii=False).encode()
            t0 = time.perf_counter()
            try:
                conn.request("POST", path, body=data, headers={"Content-Type": "application/json"})
                resp = conn.getresponse()
                payload = resp.read()
                ok, detail = _judge(resp.status, payload, bool(body.get("stream")))
            except (OSError, http.client.HTTPException) as exc:
                ok, detail = False, f"{type(exc).__name__}: {exc}"
                conn.close()
                conn = self._connect()
            self.samples.append(Sample(label, (time.perf_counter() - t0) * 1000, ok, detail))
        conn.close()


def _judge(status: int, payload: bytes, stream: bool) -> tuple[bool, str]:
    """A 200 with an answer (or a stream ending in [DONE] without an error event)."""
    text = payload.decode("utf-8", "replace")
    if status != 200:
        return False, f"HTTP {status}: {text[:160]}"
    if stream:
        if '"error"' in text or "data: [DONE]" not in text:
            return False, f"stream: {text[-160:]}"
        return True, ""
    body = json.loads(text)
    if "answer" not in body and "choices" not in body:
        return False, f"no answer: {text[:160]}"
    return True, ""


def run_phase(port: int, groups: list[list[Request]], seconds: float) -> list[Sample]:
    """One client per entry of ``groups`` (its request list), all for ``seconds``; every sample."""
    clients = [Client(port, reqs, offset=i * 7) for i, reqs in enumerate(groups)]
    stop_at = time.monotonic() + seconds
    threads = [threading.Thread(target=c.run, args=(stop_at,), daemon=True) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=seconds + REQUEST_TIMEOUT_S + 10)
    return [s for c in clients for s in c.samples]


# --------------------------------------------------------------------------------------------------
# Report


def _rows(samples: list[Sample]) -> list[list[Any]]:
    by: dict[str, list[Sample]] = {}
    for s in samples:
        by.setdefault(s.label, []).append(s)
    rows = []
    for label, ss in by.items():
        ms = [s.ms for s in ss]
        rows.append(
            [label, len(ss), sum(not s.ok for s in ss), percentile(ms, 50), percentile(ms, 95), max(ms)]
        )
    return rows


def report(
    phases: dict[str, tuple[list[Sample], dict[str, float]]],
    seconds: float,
    clients: int,
    mix: dict[str, int],
    name: str,
    log_tail: str,
) -> None:
    base = [s.ms for s in phases["all-normal"][0] if s.label == "normal"]
    mixed = [s.ms for s in phases["mix"][0] if s.label == "normal"]
    ratio = percentile(mixed, 95) / percentile(base, 95)
    errors = sum(not s.ok for ss, _ in phases.values() for s in ss)
    headers = ["request", "n", "errors", "p50 ms", "p95 ms", "max ms"]
    sections = [
        f"`rag serve` (extractive backend, default caps and budget) on {HOST}, magazine index; "
        f"{clients} clients with keep-alive connections, each sending its next request when the last "
        f"is answered, {seconds:g} s per phase, both phases in one run against the same server. "
        f"Mix: {mix['normal']} normal clients (dev questions, `/api/ask`), {mix['long']} long-history "
        f"clients, {mix['rare']} rare-character clients. Errors = non-200, a stream without `[DONE]` "
        "or with an error event, connection errors and client timeouts "
        f"({REQUEST_TIMEOUT_S:g} s).",
    ]
    for phase, (samples, noise) in phases.items():
        busy = (
            f"CPU used by other processes during this phase: {noise['other_cpu_share']:.0%} of all cores; "
            f"load average {noise['load_before']:.2f} → {noise['load_after']:.2f}."
        )
        sections.append(f"## Phase: {phase}\n\n{busy}\n\n" + markdown_table(headers, _rows(samples), digits=1))
    verdict = [
        ["normal p95, all-normal phase (ms)", percentile(base, 95)],
        ["normal p95, mix phase (ms)", percentile(mixed, 95)],
        [f"ratio (target ≤ {TARGET_RATIO:g})", f"{ratio:.2f} ({'met' if ratio <= TARGET_RATIO else 'MISSED'})"],
        ["errors, both phases (target 0)", f"{errors} ({'met' if errors == 0 else 'MISSED'})"],
    ]
    sections.append("## Verdict\n\n" + markdown_table(["measure", "value"], verdict, digits=1))
    failed = [s for ss, _ in phases.values() for s in ss if not s.ok][:5]
    if failed:
        sections.append("First errors:\n\n" + "\n".join(f"- {s.label}: {s.detail}" for s in failed))
        if log_tail:
            sections.append("Server log tail:\n\n```\n" + log_tail + "\n```")
    noise = phases["mix"][1]
    write_result(name, "Adversarial mix: hostile requests beside normal questions", sections, noise=noise)


# --------------------------------------------------------------------------------------------------
# Main


def start_server(tmp: Path) -> tuple[subprocess.Popen[bytes], int]:
    env = server_env(tmp / "index")
    log("indexing the magazine (rag index build)")
    subprocess.run(
        [*rag_command(), "index", "build", str(MAGAZINE)], env=env, cwd=PROJECT_ROOT, check=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=1800,
    )
    port = free_port()
    log(f"starting rag serve on {HOST}:{port}")
    proc = subprocess.Popen(
        [*rag_command(), "serve", "--host", HOST, "--port", str(port)], env=env, cwd=PROJECT_ROOT,
        stdout=subprocess.DEVNULL, stderr=(tmp / "server.log").open("wb"), start_new_session=True,
    )
    return proc, port


def timed(mon_pid: int, phase: Callable[[], list[Sample]]) -> tuple[list[Sample], dict[str, float]]:
    mon = CpuMonitor().start()
    mon.watch(mon_pid)
    samples = phase()
    mon.sample_watched()
    return samples, mon.stop()


def main() -> None:
    """Parse arguments, run both phases, print and write the result."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--qa", type=Path, default=default_qa_path(), help="dev questions (JSONL)")
    parser.add_argument("--seconds", type=float, default=60.0, help="seconds per phase")
    parser.add_argument("--clients", type=int, default=20, help="concurrent clients (a multiple of 4)")
    parser.add_argument("--name", default="adversarial", help="result file name")
    args = parser.parse_args()
    questions = [it.question for it in load_dev_questions(args.qa)]
    rng = random.Random(14)
    max_q = Settings().serve.max_question_chars  # the server started below reads the same env
    normal = normal_requests(questions)
    long = long_history_requests(MAGAZINE.read_text(encoding="utf-8"), max_q)
    rare = rare_requests(rng, max_q)
    n_bad = args.clients // 4
    mix = {"normal": args.clients - 2 * n_bad, "long": n_bad, "rare": n_bad}

    tmp = Path(tempfile.mkdtemp(prefix="bench-adv-"))
    proc: subprocess.Popen[bytes] | None = None
    log_tail = ""
    try:
        proc, port = start_server(tmp)
        ready = wait_ready(proc, f"http://{HOST}:{port}/api/ask", questions[0], timeout_s=300)
        log(f"server answered after {ready:.1f} s; warming up")
        run_phase(port, [normal, long, rare], 5)
        phases: dict[str, tuple[list[Sample], dict[str, float]]] = {}
        log(f"phase all-normal: {args.clients} clients for {args.seconds:g} s")
        phases["all-normal"] = timed(proc.pid, lambda: run_phase(port, [normal] * args.clients, args.seconds))
        log(f"phase mix: {mix} for {args.seconds:g} s")
        groups = [normal] * mix["normal"] + [long] * mix["long"] + [rare] * mix["rare"]
        phases["mix"] = timed(proc.pid, lambda: run_phase(port, groups, args.seconds))
    finally:
        log_tail = stop_server(proc, tmp)
    report(phases, args.seconds, args.clients, mix, args.name, log_tail)


if __name__ == "__main__":
    main()
