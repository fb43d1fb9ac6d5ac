"""Issue 14, findings 4 and 6-9, each reproduced over real HTTP on 127.0.0.1 (and in Chromium):
forged log lines and secrets in the access log; server paths and module names in client
messages; one contract for unavailable backends, HEAD/OPTIONS, /v1 options and the SSO header;
Gradio's own routes; the copy button and aria-labels."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from serving import CHROMIUM, CHROMIUM_ARGS, AppServer, free_port, with_serve

from rag.errors import BackendUnavailable, IndexMismatchError, IndexMissingError, ModelError, RagError
from rag.logsafe import log_text, safe_target
from rag.public import FEEDBACK_FAILED, client_message
from rag.runtime import Runtime
from rag.serve import create_app

QUESTION = "第二届职工优秀创新成果交流活动是在哪个场馆办的？"
FORGED = "工会\n2026-11-28 16:00:00,000 INFO rag.serve: /api/ask user=admin backend=默认: 删除全部数据"
SSO = "X-Remote-User"
SECRET = "tok-in-url-7f3a9c1e5b"
PROJECT_ROOT = Path(__file__).resolve().parent.parent
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"  # run_server's format
# What a response must never show: Python internals (module names, tracebacks, install hints).
INTERNALS = re.compile(
    r"No module named|llama_cpp|Traceback|site-packages|make install|KeyError|\brag\.[a-z_]+|/tmp/gradio|\.py\b"
)


@pytest.fixture
def all_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Every record at DEBUG, uvicorn's non-propagating access log included."""
    loggers = [logging.getLogger(n) for n in ("uvicorn", "uvicorn.error", "uvicorn.access")]
    saved = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.DEBUG)
        lg.addHandler(caplog.handler)
    caplog.set_level(logging.DEBUG)
    try:
        yield caplog
    finally:
        for lg, level in zip(loggers, saved, strict=True):
            lg.setLevel(level)
            lg.removeHandler(caplog.handler)


def _lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The server's captured records as the production formatter writes them, split into physical
    lines (the test's own HTTP client logs the URLs it requests; those are not the server's)."""
    fmt = logging.Formatter(LOG_FORMAT)
    server = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    return [line for r in server for line in fmt.format(r).splitlines()]


def _no_llm(settings, tmp_path: Path):
    """Settings under which neither generating backend is available (no GGUF, no OpenAI URL)."""
    llm = settings.llm.model_copy(update={"gguf": tmp_path / "missing.gguf"})
    return settings.model_copy(update={"llm": llm, "openai": settings.openai.model_copy(update={"base_url": None})})


@pytest.fixture(scope="module")
def no_llm_runtime(magazine_runtime, tmp_path_factory) -> Runtime:
    settings = _no_llm(magazine_runtime.settings, tmp_path_factory.mktemp("no-llm"))
    rt = Runtime(settings=settings, embedder=magazine_runtime.embedder, index=magazine_runtime.index)
    assert rt.available_backends() == ["extractive"]
    return rt


@pytest.fixture(scope="module")
def server(no_llm_runtime) -> Iterator[AppServer]:
    settings = with_serve(no_llm_runtime.settings, log_questions=True, trusted_user_header=SSO,
                          trusted_proxies=["127.0.0.1"], api_token="t0ken-for-scripts")
    with AppServer(create_app(settings, no_llm_runtime)) as s:
        yield s


@pytest.fixture(scope="module")
def client(server: AppServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=120, trust_env=False, headers={SSO: "zhangsan"}) as c:
        yield c


def _error(r: httpx.Response, status: int) -> str:
    assert r.status_code == status, (r.status_code, r.text[:300])
    assert r.headers["content-type"].startswith("application/json"), r.headers
    message = r.json()["error"]["message"]
    assert re.search(r"[\u4e00-\u9fff]", message) and "\n" not in message
    return message


# --------------------------------------------------------------------------------------------------
# 4. Logs that cannot be forged, and no secrets in them


def test_log_text_keeps_one_line_and_round_trips() -> None:
    for text in (FORGED, "a\rb", "x\u2028y\u2029z", "n\x85el", "q\"uote\\", "\u202eevil", "工会"):
        field = log_text(text)
        assert len(field.splitlines()) == 1 and field.startswith('"') and field.endswith('"')
        assert json.loads(field) == text
    assert log_text("工会") == '"工会"'  # Chinese stays readable
    assert safe_target(f"/api/health?access_token={SECRET}&x=1") == "/api/health?…&…"
    assert safe_target("/gradio_api/queue/data?session_hash=abc") == "/gradio_api/queue/data?session_hash=abc"
    assert "\n" not in safe_target("/a\nb?session_hash=x%0Ay")


def test_a_question_cannot_forge_an_audit_line(client: httpx.Client, all_logs) -> None:
    """Finding 4: with RAG_LOG_QUESTIONS=true a question's newline used to start a fake line."""
    for path, body in [("/api/ask", {"question": FORGED}), ("/api/search", {"question": FORGED}),
                       ("/v1/chat/completions", {"messages": [{"role": "user", "content": FORGED}]})]:
        assert client.post(path, json=body).status_code == 200, path
    lines = _lines(all_logs)
    assert not [ln for ln in lines if ln.startswith("2026-11-28 16:00:00")], "a question started a log line"
    logged = [ln for ln in lines if "删除全部数据" in ln]
    assert len(logged) == 3 and all(" rag.serve: /" in ln and "user=\"zhangsan\"" in ln for ln in logged)
    field = re.search(r"question=(\".*\")$", logged[0]).group(1)
    assert json.loads(field) == FORGED  # the whole question, escaped, in one field


def test_a_refused_token_in_the_url_is_not_logged(server: AppServer, all_logs) -> None:
    """Finding 4: a token sent as ?access_token=… is refused (401) and must not reach the access log."""
    with httpx.Client(base_url=server.url, timeout=60, trust_env=False) as c:
        for path in (f"/api/health?access_token={SECRET}", f"/v1/models?api_key={SECRET}", f"/?{SECRET}=1"):
            assert c.get(path).status_code == 401, path
    text = "\n".join(_lines(all_logs))
    assert "uvicorn.access" in text or "GET /api/health" in text  # the access log was captured
    assert SECRET not in text


def test_rag_serve_logs_neither_forged_lines_nor_url_tokens(tmp_path: Path) -> None:
    """The real ``rag serve`` process (uvicorn's own logging config), reading its stderr.

    No index is built: questions are logged before the index is needed, and the server answers
    503 without loading the model, so the process starts in seconds.
    """
    port = free_port()
    env = {**os.environ, "RAG_INDEX_DIR": str(tmp_path / "index"), "RAG_LOG_QUESTIONS": "true",
           "RAG_API_TOKEN": "real-token-1234", "RAG_FEEDBACK_DB": str(tmp_path / "fb.sqlite"),
           "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(PROJECT_ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "rag.cli", "serve", "--port", str(port)], cwd=tmp_path,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                httpx.get(f"{url}/docs", timeout=2, trust_env=False)
                break
            except httpx.HTTPError:
                assert proc.poll() is None and time.monotonic() < deadline, "rag serve did not start"
                time.sleep(0.5)
        auth = {"Authorization": "Bearer real-token-1234"}
        assert httpx.get(f"{url}/api/health?token={SECRET}", timeout=30, trust_env=False).status_code == 401
        r = httpx.post(f"{url}/api/ask", json={"question": FORGED}, headers=auth, timeout=30, trust_env=False)
        assert r.status_code == 503 and str(tmp_path) not in r.text
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert "GET /api/health?…" in out  # uvicorn's access line is there, without the value
    assert SECRET not in out and "real-token-1234" not in out
    assert not [ln for ln in out.splitlines() if ln.startswith("2026-11-28 16:00:00")], out[-2000:]
    assert "删除全部数据" in out  # the question was logged, on its own line


# --------------------------------------------------------------------------------------------------
# 6. Nothing internal in what clients read


@pytest.mark.parametrize(
    "exc",
    [
        IndexMissingError("索引尚未构建（/srv/rag/index 中没有可用索引）"),
        IndexMismatchError("索引清单 /srv/rag/index/gen-1/manifest.json 不完整；请运行 `rag index build data/` 重建。"),
        ModelError("cannot load the embedding model from /srv/rag/.cache/e5: boom"),
        BackendUnavailable("llama-cpp-python is not installed (No module named 'llama_cpp'): run `make install-llm`"),
        RagError("无法打开反馈数据库 /srv/rag/index/feedback.sqlite：denied"),
    ],
)
def test_client_messages_name_the_fix_not_the_server(exc: RagError) -> None:
    message = client_message(exc)
    assert "/srv/rag" not in message and not INTERNALS.search(message) and "\n" not in message
    assert re.search(r"[\u4e00-\u9fff]", message)


def test_no_response_shows_index_path_feedback_path_or_module_names(magazine_settings, tmp_path: Path) -> None:
    """A sweep of every route on a server with no index, no LLM and an unusable feedback store."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    settings = _no_llm(magazine_settings, tmp_path).model_copy(
        update={"index": magazine_settings.index.model_copy(update={"dir": tmp_path / "index-not-built"})}
    )
    settings = with_serve(settings, feedback_db=blocker / "feedback.sqlite")
    secrets_ = [str(settings.index.dir), str(settings.serve.feedback_db), str(tmp_path), str(PROJECT_ROOT)]
    chat = {"messages": [{"role": "user", "content": QUESTION}]}
    sweep = [
        ("GET", "/api/health", None), ("HEAD", "/api/health", None), ("POST", "/api/ask", {"question": QUESTION}),
        ("POST", "/api/ask", {"question": QUESTION, "backend": "llm"}), ("POST", "/api/search", {"question": QUESTION}),
        ("GET", "/v1/models", None), ("POST", "/v1/chat/completions", chat),
        ("POST", "/v1/chat/completions", {**chat, "stream": True}),
        ("POST", "/v1/chat/completions", {**chat, "model": "gongyun-rag-llm"}),
        ("OPTIONS", "/api/ask", None), ("GET", "/api/nope", None), ("GET", "/", None), ("GET", "/config", None),
        ("GET", "/gradio_api/info", None), ("POST", "/gradio_api/upload", None),
        ("POST", "/gradio_api/call/ask", {"data": []}), ("GET", "/gradio_api/queue/data?session_hash=zz", None),
        ("GET", "/gradio_api/deep_link", None), ("GET", "/gradio_api/dev/reload", None), ("GET", "/nope", None),
        ("GET", f"/gradio_api/file={settings.serve.feedback_db}", None),
    ]
    with AppServer(create_app(settings)) as s, httpx.Client(base_url=s.url, timeout=60, trust_env=False) as c:
        for method, path, body in sweep:
            r = c.request(method, path, json=body)
            assert r.status_code < 500 or r.status_code == 503, (method, path, r.status_code, r.text[:200])
            assert not INTERNALS.search(r.text), (method, path, INTERNALS.search(r.text), r.text[:300])
            for s_ in secrets_:
                assert s_ not in r.text, (method, path, s_)
        assert "rag index build" in _error(c.get("/api/health"), 503)


# --------------------------------------------------------------------------------------------------
# 7. One contract


def test_an_unavailable_backend_is_503_on_every_route(client: httpx.Client) -> None:
    """Finding 7: llm used to answer 200 with an extractive answer and a note, openai 503."""
    for backend in ("llm", "openai"):
        _error(client.post("/api/ask", json={"question": QUESTION, "backend": backend}), 503)
        for stream in (False, True):
            body = {"model": f"gongyun-rag-{backend}", "stream": stream,
                    "messages": [{"role": "user", "content": QUESTION}]}
            _error(client.post("/v1/chat/completions", json=body), 503)
    # With no backend named, the server's default (or extractive, if the default is unavailable) answers.
    assert client.post("/api/ask", json={"question": QUESTION}).json()["backend"] == "extractive"
    _error(client.post("/api/ask", json={"question": QUESTION, "backend": "gpt"}), 422)  # not a backend at all


def test_head_and_options_are_answered_by_our_routes(client: httpx.Client) -> None:
    get = client.get("/api/health")
    head = client.head("/api/health")
    assert head.status_code == get.status_code == 200 and head.content == b""
    assert head.headers["content-type"] == get.headers["content-type"]
    assert client.head("/v1/models").status_code == 200
    r = client.options("/api/ask")
    _error(r, 405)
    assert r.headers["allow"] == "POST"
    _error(client.options("/api/nope"), 404)
    assert client.head("/api/nope").status_code == 404
    page = client.head("/")
    assert page.status_code == 200 and page.content == b"" and page.headers["content-type"].startswith("text/html")
    assert client.head("/gradio_api/heartbeat/abc", timeout=10).status_code == 405  # not a held stream


@pytest.mark.parametrize(
    ("extra", "content"),
    [
        ({}, [{"type": "text", "text": {"a": 1}}]),
        ({}, [{"type": "text"}]),
        ({}, [{"type": "image_url", "image_url": {"url": "http://x/y.png"}}, {"type": "text", "text": QUESTION}]),
        ({"n": 2}, QUESTION),
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, QUESTION),
        ({"tool_choice": "auto"}, QUESTION),
        ({"response_format": {"type": "json_object"}}, QUESTION),
        ({"logprobs": True}, QUESTION),
        ({"functions": [{"name": "f"}]}, QUESTION),
    ],
)
def test_v1_refuses_what_it_does_not_implement(client: httpx.Client, extra: dict, content) -> None:
    body = {"messages": [{"role": "user", "content": content}], **extra}
    _error(client.post("/v1/chat/completions", json=body), 422)


def test_v1_accepts_options_at_their_defaults_and_text_parts(client: httpx.Client) -> None:
    body = {"messages": [{"role": "user", "content": [{"type": "text", "text": QUESTION}]}], "n": 1,
            "tool_choice": "none", "tools": [], "temperature": 0.3, "max_tokens": 50,
            "response_format": {"type": "text"}, "logprobs": False}
    r = client.post("/v1/chat/completions", json=body)
    assert r.status_code == 200 and "黄埔" in r.json()["choices"][0]["message"]["content"]


def test_a_duplicated_sso_header_is_refused(server: AppServer) -> None:
    """Finding 7: with the header twice, the first (empty) copy used to win."""
    with httpx.Client(base_url=server.url, timeout=60, trust_env=False) as c:
        for path in ("/api/health", "/", "/config"):
            for pair in (("", "admin"), ("zhangsan", "admin")):
                r = c.get(path, headers=[(SSO, pair[0]), (SSO, pair[1])])
                assert "重复" in _error(r, 400), path
            assert c.get(path, headers={SSO: "zhangsan"}).status_code == 200


# --------------------------------------------------------------------------------------------------
# 8. Gradio's own routes


def _gradio_files() -> set[Path]:
    root = Path(os.environ.get("GRADIO_TEMP_DIR") or Path(tempfile.gettempdir()) / "gradio")
    return set(root.rglob("*")) if root.exists() else set()


@pytest.fixture(scope="module")
def page_server(no_llm_runtime) -> Iterator[AppServer]:
    # The test client (127.0.0.1) must not be a trusted proxy here: a proxy's many users share its
    # address, so the per-client stream limit does not apply to it.
    settings = with_serve(no_llm_runtime.settings, ui_max_body_bytes=4096, ui_max_streams_per_client=2,
                          trusted_proxies=["10.9.9.9"])
    with AppServer(create_app(settings, no_llm_runtime)) as s:
        yield s


def test_gradio_routes_the_page_does_not_use_are_closed(page_server: AppServer) -> None:
    """Finding 8: call/* was a 500 with KeyError, dev/reload held the connection forever, upload and
    deep_link wrote files under /tmp/gradio that nobody deleted."""
    before = _gradio_files()
    with httpx.Client(base_url=page_server.url, timeout=10, trust_env=False) as c:
        for i in range(20):
            r = c.post("/gradio_api/upload", files={"files": (f"x{i}.txt", b"x" * 500)})
            _error(r, 404)
            _error(c.get(f"/gradio_api/deep_link?deep_link=state{i}"), 404)
        for method, path in [("POST", "/gradio_api/call/ask"), ("POST", "/gradio_api/call/respond"),
                             ("POST", "/gradio_api/run/predict"), ("GET", "/gradio_api/dev/reload"),
                             ("GET", "/gradio_api/monitoring"), ("POST", "/gradio_api/api/respond"),
                             ("GET", "/gradio_api/upload_progress?upload_id=x"), ("POST", "/login"),
                             ("GET", "/gradio_api/startup-events"), ("PUT", "/config")]:
            r = c.request(method, path, json={"data": []} if method == "POST" else None)
            assert r.status_code in (404, 405), (method, path, r.status_code)
            assert "error" in r.json() and "detail" not in r.json()
        r = c.get("/gradio_api/queue/data?session_hash=unknown")  # used to cut the stream with a traceback
        assert "会话" in _error(r, 404)
        assert c.get("/gradio_api/info").status_code == 200 and c.get("/").status_code == 200
    assert _gradio_files() == before


def test_page_bodies_and_streams_are_bounded(page_server: AppServer) -> None:
    with httpx.Client(base_url=page_server.url, timeout=30, trust_env=False) as c:
        big = {"data": ["问" * 2000], "fn_index": 0, "session_hash": "abc"}  # > 4096 bytes
        _error(c.post("/gradio_api/queue/join", json=big), 413)
        small = c.post("/gradio_api/queue/join", json={"data": [], "fn_index": 0, "session_hash": "abc"})
        assert small.status_code != 413

        # Two long-lived heartbeat streams per client are allowed here; the third waits for a slot.
        opened: list = []
        try:
            for i in range(2):
                cm = c.stream("GET", f"/gradio_api/heartbeat/s{i}")
                opened.append(cm)
                assert cm.__enter__().status_code == 200
            _error(c.get("/gradio_api/heartbeat/s3"), 429)
        finally:
            for cm in opened:
                cm.__exit__(None, None, None)
        deadline = time.monotonic() + 30
        while True:  # the slots are free again once the streams are closed
            with c.stream("GET", "/gradio_api/heartbeat/s4") as r:
                if r.status_code == 200:
                    break
            assert time.monotonic() < deadline
            time.sleep(0.2)


def test_stream_slots_count_per_client_and_in_total() -> None:
    from rag.surface import StreamSlots

    slots = StreamSlots(per_client=2, total=5)
    assert slots.take("a") and slots.take("a") and not slots.take("a")  # per client
    assert slots.take(None) and slots.take(None) and slots.take(None)  # a trusted proxy: total only
    assert not slots.take(None) and not slots.take("b")  # the total is reached
    slots.give("a")
    assert slots.take("b") and slots.open_count() == 5


def test_heartbeat_stream_is_counted_until_it_closes(page_server: AppServer) -> None:
    """A stream that ends (client gone) gives its slot back: 10 open/close cycles with 2 slots."""
    done: list[int] = []

    def one(i: int) -> None:
        with httpx.Client(base_url=page_server.url, timeout=10, trust_env=False) as c, \
                c.stream("GET", f"/gradio_api/heartbeat/t{i}") as r:
            done.append(r.status_code)

    for i in range(10):
        t = threading.Thread(target=one, args=(i,))
        t.start()
        t.join(30)
    assert done == [200] * 10


# --------------------------------------------------------------------------------------------------
# 6 and 9 in the page: copy gives plain text, aria-labels are plain, no server detail in toasts


def _clipboard(page, wait_s: float = 10) -> str:
    """The clipboard's text once the page has written something to it."""
    deadline = time.monotonic() + wait_s
    while not (text := page.evaluate("navigator.clipboard.readText()")) and time.monotonic() < deadline:
        time.sleep(0.1)
    return text


needs_chromium = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"Chromium not installed at {CHROMIUM}")


@needs_chromium
def test_copy_gives_plain_text_and_labels_are_plain(no_llm_runtime, tmp_path: Path) -> None:
    pytest.importorskip("playwright")
    from playwright.sync_api import expect, sync_playwright

    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    fake_gguf = tmp_path / "fake.gguf"
    fake_gguf.write_bytes(b"GGUF")
    base = no_llm_runtime.settings
    settings = with_serve(base.model_copy(update={"llm": base.llm.model_copy(update={"gguf": fake_gguf})}),
                          feedback_db=blocker / "feedback.sqlite", ui_max_turns=1)
    rt = Runtime(settings=settings, embedder=no_llm_runtime.embedder, index=no_llm_runtime.index)
    question = "<script>x</script> (A.B-C) 第二届职工优秀创新成果交流活动是在哪个场馆办的？"
    with AppServer(create_app(settings, rt)) as s, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            ctx = browser.new_context(locale="zh-CN", viewport={"width": 1400, "height": 1000})
            ctx.grant_permissions(["clipboard-read", "clipboard-write"], origin=s.url)
            page = ctx.new_page()
            page.set_default_timeout(120_000)
            page.goto(f"{s.url}/")
            expect(page.locator("#gy-status")).to_contain_text("索引版本")
            # Choose the local LLM, then let it vanish before asking: the page answers extractively
            # and says so (the API would answer 503).
            page.locator("#gy-settings").get_by_role("button", name="设置").click()
            page.locator("#gy-settings").get_by_label("回答方式").click()
            page.locator("ul[role='listbox'] li", has_text="本地大模型").click()
            fake_gguf.unlink()
            page.locator("#gy-question textarea").fill(question)
            page.locator("#gy-submit").click()
            bot = page.locator("[data-testid='bot']").last
            expect(bot.locator("a.gy-cite").first).to_be_visible()
            expect(bot).to_contain_text("当前不可用，以下为摘录原文的回答")

            copy = page.locator("#gy-chat button[aria-label='Copy message'], #gy-chat button[aria-label='复制消息']")
            page.evaluate("navigator.clipboard.writeText('')")
            copy.last.click()
            copied = _clipboard(page)
            assert "[1]" in copied and "\n\n来源：\n[1] 《" in copied and "封二" in copied
            assert "<a" not in copied and "gy-cite" not in copied and "\\" not in copied and "&lt;" not in copied
            page.evaluate("navigator.clipboard.writeText('')")
            copy.first.click()
            assert _clipboard(page) == question
            labels = [el.get_attribute("aria-label") for el in page.locator("#gy-chat [aria-label]").all()]
            message_labels = [lb for lb in labels if "message:" in lb]
            assert any(question in lb for lb in message_labels), labels
            assert not [lb for lb in labels if "&lt;" in lb or "gy-cite" in lb or "\\(" in lb], labels

            # The feedback store cannot be opened: the toast says to retry, not where the database is.
            page.locator("#gy-chat button[aria-label='赞'], #gy-chat button[aria-label='Like']").last.click()
            expect(page.get_by_text(FEEDBACK_FAILED).first).to_be_visible()
            html = page.content()
            assert str(blocker) not in html and "feedback.sqlite" not in html

            # A conversation's length is bounded (its answers are kept in server memory).
            page.locator("#gy-question textarea").fill(QUESTION)
            page.locator("#gy-submit").click()
            expect(page.get_by_text("请点“清空对话”后继续提问").first).to_be_visible()
            expect(page.locator("[data-testid='bot']")).to_have_count(1)
        finally:
            browser.close()


@needs_chromium
def test_unavailable_banner_does_not_name_the_index_folder(magazine_settings, tmp_path: Path) -> None:
    pytest.importorskip("playwright")
    from playwright.sync_api import expect, sync_playwright

    index_dir = tmp_path / "index-not-built-here"
    settings = magazine_settings.model_copy(
        update={"index": magazine_settings.index.model_copy(update={"dir": index_dir})}
    )
    with AppServer(create_app(settings)) as s, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(locale="zh-CN")
            page.set_default_timeout(120_000)
            page.goto(f"{s.url}/")
            expect(page.locator("#gy-status")).to_contain_text("rag index build")
            assert str(index_dir) not in page.content() and "index-not-built-here" not in page.content()
        finally:
            browser.close()
