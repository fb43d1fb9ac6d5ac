"""The HTTP API over real HTTP on 127.0.0.1: answers, search, health, OpenAI compatibility,
sub-path serving, access control, errors, escaping and hot index swaps."""

from __future__ import annotations

import base64
import concurrent.futures
import json
import logging
import re
import time
from pathlib import Path

import httpx
import openai
import pytest
from serving import EVIL_DOC, AppServer, PrefixProxy, tiny_runtime, with_serve

from rag.answer import ask
from rag.serve import create_app
from rag.ui import render_answer_md, render_sources_html, turn_record

QUESTION = "第二届职工优秀创新成果交流活动是在哪个场馆办的？"
TOKEN = "s3cret-token-0123456789"
API_ROUTES = [
    ("GET", "/api/health", None),
    ("POST", "/api/ask", {"question": QUESTION}),
    ("POST", "/api/search", {"question": QUESTION}),
    ("GET", "/v1/models", None),
    (
        "POST",
        "/v1/chat/completions",
        {"model": "gongyun-rag", "messages": [{"role": "user", "content": QUESTION}]},
    ),
]
CJK = re.compile(r"[\u4e00-\u9fff]")


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def _assert_json_error(r: httpx.Response, status: int) -> str:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert "Traceback" not in r.text
    message = r.json()["error"]["message"]
    assert CJK.search(message) and "\n" not in message  # one Chinese line
    return message


@pytest.fixture(scope="module")
def server(magazine_settings, magazine_runtime):
    with AppServer(create_app(magazine_settings, magazine_runtime)) as s:
        yield s


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=120) as c:
        yield c


@pytest.fixture(scope="module")
def printed_pages(magazine_runtime) -> set[str]:
    return {p for c in magazine_runtime.index.chunks for p in c.pages}


# --------------------------------------------------------------------------------------------------
# Answers, search, health


def test_ask_returns_cited_answer_with_printed_pages(client, printed_pages) -> None:
    r = client.post("/api/ask", json={"question": QUESTION})
    assert r.status_code == 200, r.text
    d = r.json()
    assert set(d) >= {"id", "question", "answer", "refused", "citations", "passages", "backend", "timings_ms"}
    assert not d["refused"] and "黄埔知识城国际会展中心" in d["answer"] and "[1]" in d["answer"]
    assert d["citations"] and d["citations"][0]["pages"] == ["封二"]
    passages = {p["chunk_id"]: p for p in d["passages"]}
    for c in d["citations"]:
        assert set(c["pages"]) <= printed_pages  # labels as printed: 封二, 5, 24 ... not PDF indexes
        assert c["quote"] and c["quote"] in passages[c["chunk_id"]]["text"]


def test_ask_with_filters_and_k(client) -> None:
    r = client.post(
        "/api/ask",
        json={
            "question": "湛江钢铁2024年的违章总量比上一年下降了多少？",
            "k": 3,
            "filters": {"section": "实践"},
        },
    )
    assert r.status_code == 200, r.text
    d = r.json()
    assert len(d["passages"]) <= 3
    assert "82.66%" in d["answer"]


def test_follow_up_history_is_used(client) -> None:
    first = "龙岗开了几场新业态工会代表专场议事会？"
    alone = client.post("/api/ask", json={"question": "那深圳呢？"}).json()
    follow = client.post("/api/ask", json={"question": "那深圳呢？", "history": [[first, "8场"]]}).json()
    assert [p["chunk_id"] for p in alone["passages"]] != [p["chunk_id"] for p in follow["passages"]]


def test_search_returns_ranked_passages(client, printed_pages) -> None:
    r = client.post("/api/search", json={"question": "安全日历 推送渠道", "k": 4})
    assert r.status_code == 200, r.text
    d = r.json()
    assert [p["rank"] for p in d["passages"]] == [1, 2, 3, 4]
    scores = [p["score"] for p in d["passages"]]
    assert scores == sorted(scores, reverse=True)
    for p in d["passages"]:
        assert p["text"] and set(p["pages"]) <= printed_pages and p["page_label"]
    only = client.post(
        "/api/search", json={"question": "工会", "k": 5, "filters": {"section": "典型"}}
    ).json()
    assert only["passages"] and all(p["section"] == "典型" for p in only["passages"])


def test_health(client, magazine_runtime) -> None:
    d = client.get("/api/health").json()
    assert d["status"] == "ok"
    assert d["index_version"] == magazine_runtime.index.version
    assert d["chunk_count"] == len(magazine_runtime.index.chunks)
    assert d["model"] and "e5" in d["model"]
    assert d["documents"][0]["title"] == "《广东工运》2025年第12期"
    assert "extractive" in d["backends"]


def test_parallel_requests_are_all_answered(server) -> None:
    questions = [
        QUESTION,
        "龙岗开了几场新业态工会代表专场议事会？",
        "湛江钢铁的《安全日历》是通过什么渠道每天推送的？",
    ]

    def one(q: str) -> int:
        with httpx.Client(base_url=server.url, timeout=120) as c:
            return c.post("/api/ask", json={"question": q}).status_code

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        assert list(pool.map(one, questions * 2)) == [200] * 6


def test_unknown_api_paths_and_methods_are_json(client) -> None:
    _assert_json_error(client.get("/api/nope"), 404)
    _assert_json_error(client.post("/v1/embeddings", json={}), 404)
    _assert_json_error(client.get("/api/ask"), 405)


def test_openapi_docs(client) -> None:
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/api/ask", "/api/search", "/api/health", "/v1/chat/completions", "/v1/models"} <= set(paths)


# --------------------------------------------------------------------------------------------------
# OpenAI-compatible endpoint, called with the openai client


@pytest.fixture(scope="module")
def oai(server):
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=120)


def test_openai_chat_non_stream(oai) -> None:
    resp = oai.chat.completions.create(model="gongyun-rag", messages=[{"role": "user", "content": QUESTION}])
    text = resp.choices[0].message.content
    assert "黄埔知识城国际会展中心" in text and "[1]" in text and "来源" in text
    citations = resp.model_extra["citations"]
    assert citations[0]["pages"] == ["封二"] and citations[0]["quote"]
    assert resp.choices[0].finish_reason == "stop"


def test_openai_chat_stream(oai) -> None:
    stream = oai.chat.completions.create(
        model="gongyun-rag", messages=[{"role": "user", "content": QUESTION}], stream=True
    )
    pieces, citations = [], None
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
        if (chunk.model_extra or {}).get("citations") is not None:
            citations = chunk.model_extra["citations"]
    text = "".join(pieces)
    assert len(pieces) > 1  # delivered in pieces, not one blob
    assert "黄埔知识城国际会展中心" in text and "[1]" in text
    assert citations and citations[0]["pages"] == ["封二"]
    full = oai.chat.completions.create(model="gongyun-rag", messages=[{"role": "user", "content": QUESTION}])
    assert text == full.choices[0].message.content


def test_openai_stream_keepalive_comments_are_ignored_by_clients(oai, monkeypatch) -> None:
    import rag.serve

    monkeypatch.setattr(rag.serve, "KEEPALIVE_S", 0.001)  # a comment before every piece of work
    stream = oai.chat.completions.create(
        model="gongyun-rag", messages=[{"role": "user", "content": QUESTION}], stream=True
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert "黄埔知识城国际会展中心" in text


def test_openai_history_and_models(oai) -> None:
    ids = [m.id for m in oai.models.list()]
    assert "gongyun-rag" in ids and "gongyun-rag-extractive" in ids
    resp = oai.chat.completions.create(
        model="gongyun-rag-extractive",
        messages=[
            {"role": "system", "content": "你是助手"},
            {"role": "user", "content": "龙岗开了几场新业态工会代表专场议事会？"},
            {"role": "assistant", "content": "8场"},
            {"role": "user", "content": "那深圳呢？"},
        ],
    )
    assert resp.choices[0].message.content
    with pytest.raises(openai.UnprocessableEntityError):
        oai.chat.completions.create(model="gpt-99", messages=[{"role": "user", "content": QUESTION}])


# --------------------------------------------------------------------------------------------------
# Errors


@pytest.mark.parametrize(
    "route, body",
    [
        ("/api/ask", {"question": ""}),
        ("/api/ask", {"question": "   \n\t "}),
        ("/api/ask", {"question": "问" * 2001}),
        ("/api/ask", {"question": 123}),
        ("/api/ask", {"question": QUESTION, "k": "many"}),
        ("/api/ask", {"question": QUESTION, "k": 10_000}),
        ("/api/ask", {"question": QUESTION, "filters": {"page": ["5"]}}),
        ("/api/ask", {"question": QUESTION, "history": [["only one"]]}),
        ("/api/ask", {"question": QUESTION, "backend": "gpt-99"}),
        ("/api/ask", {"question": QUESTION, "surprise": 1}),
        ("/api/ask", {}),
        ("/api/ask", ["not", "an", "object"]),
        ("/api/search", {"question": " "}),
        ("/v1/chat/completions", {"messages": []}),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": ""}]}),
        ("/v1/chat/completions", {"messages": [{"role": "assistant", "content": "你好"}]}),
        ("/v1/chat/completions", {"messages": [{"role": "wizard", "content": "你好"}]}),
    ],
)
def test_bad_requests_are_422_json(client, route: str, body: object) -> None:
    _assert_json_error(client.post(route, json=body), 422)


def test_malformed_json_is_422(client) -> None:
    r = client.post(
        "/api/ask", content=b'{"question": "\xe5\x93', headers={"content-type": "application/json"}
    )
    assert "JSON" in _assert_json_error(r, 422)
    r = client.post("/api/ask", content=b'{"question": ', headers={"content-type": "application/json"})
    assert "JSON" in _assert_json_error(r, 422)
    r = client.post(
        "/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"}
    )
    _assert_json_error(r, 422)


def test_unexpected_error_is_500_json_without_traceback(magazine_settings, magazine_runtime) -> None:
    from rag.runtime import Runtime

    class BrokenEmbedder:
        name, fingerprint, dim = "broken", "broken", 384

        def encode_queries(self, texts):
            raise RuntimeError("boom: secret internals")

    rt = Runtime(settings=magazine_settings, embedder=BrokenEmbedder(), index=magazine_runtime.index)
    with AppServer(create_app(magazine_settings, rt)) as s:
        r = httpx.post(f"{s.url}/api/ask", json={"question": QUESTION}, timeout=60)
    assert "secret internals" not in r.text
    _assert_json_error(r, 500)


def test_missing_index_is_503_with_how_to_build(magazine_settings, tmp_path: Path) -> None:
    from rag.config import IndexSettings

    settings = magazine_settings.model_copy(update={"index": IndexSettings(dir=tmp_path / "empty-index")})
    with AppServer(create_app(settings)) as s, httpx.Client(base_url=s.url, timeout=60) as c:
        for method, path, body in API_ROUTES:
            r = c.request(method, path, json=body)
            assert "rag index build" in _assert_json_error(r, 503)
        assert c.get("/api/health").json()["status"] == "unavailable"
        assert c.get("/").status_code == 200  # the page still loads and shows the message (browser test)


# --------------------------------------------------------------------------------------------------
# Access control, CORS and logging


@pytest.fixture(scope="module")
def locked(magazine_settings, magazine_runtime):
    settings = with_serve(
        magazine_settings,
        api_token=TOKEN,
        ui_user="gonghui",
        ui_password="密码pw",
        trusted_user_header="X-Remote-User",
        trusted_proxies=["10.9.9.9", "192.168.0.0/16"],  # the test client (127.0.0.1) is not a proxy
        cors_origins=["http://intranet.example"],
        log_questions=True,
    )
    with AppServer(create_app(settings, magazine_runtime)) as s:
        yield s


def test_token_required_on_every_api_route(locked) -> None:
    with httpx.Client(base_url=locked.url, timeout=120) as c:
        for method, path, body in API_ROUTES:
            for headers in (
                {},
                _bearer("wrong"),
                _bearer(TOKEN + "x"),
                {"Authorization": TOKEN},
                _basic("gonghui", "密码pw"),
            ):
                r = c.request(method, path, json=body, headers=headers)
                _assert_json_error(r, 401)
                assert r.headers["www-authenticate"].startswith("Bearer")
            r = c.request(method, path, json=body, headers=_bearer(TOKEN))
            assert r.status_code == 200, (path, r.text)


def test_openai_client_with_token(locked) -> None:
    good = openai.OpenAI(base_url=f"{locked.url}/v1", api_key=TOKEN, max_retries=0, timeout=120)
    assert good.chat.completions.create(model="gongyun-rag", messages=[{"role": "user", "content": QUESTION}])
    bad = openai.OpenAI(base_url=f"{locked.url}/v1", api_key="nope", max_retries=0, timeout=120)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()


def test_ui_basic_login(locked) -> None:
    with httpx.Client(base_url=locked.url, timeout=60) as c:
        r = c.get("/")
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Basic")
        assert c.get("/", headers=_basic("gonghui", "wrong")).status_code == 401
        assert c.get("/config", headers=_basic("gonghui", "wrong")).status_code == 401
        assert c.get("/", headers=_bearer(TOKEN)).status_code == 401  # the API token is not a UI login
        r = c.get("/", headers=_basic("gonghui", "密码pw"))
        assert r.status_code == 200 and "<html" in r.text.lower()


def test_trusted_header_from_untrusted_address_is_ignored(locked) -> None:
    sso = {"X-Remote-User": "zhangsan"}
    with httpx.Client(base_url=locked.url, timeout=60) as c:
        _assert_json_error(c.get("/api/health", headers=sso), 401)
        assert c.get("/", headers=sso).status_code == 401
        # Nor can a client claim to be the proxy through X-Forwarded-For.
        assert c.get("/api/health", headers={**sso, "X-Forwarded-For": "10.9.9.9"}).status_code == 401


def test_trusted_header_from_trusted_proxy_admits(magazine_settings, magazine_runtime) -> None:
    settings = with_serve(
        magazine_settings,
        api_token=TOKEN,
        ui_user="a",
        ui_password="b",
        trusted_user_header="X-Remote-User",
        trusted_proxies=["127.0.0.1"],
    )
    with (
        AppServer(create_app(settings, magazine_runtime)) as s,
        httpx.Client(base_url=s.url, timeout=120) as c,
    ):
        sso = {"X-Remote-User": "zhangsan"}
        assert c.get("/api/health", headers=sso).status_code == 200
        assert c.post("/api/ask", json={"question": QUESTION}, headers=sso).status_code == 200
        assert c.get("/", headers=sso).status_code == 200
        assert c.get("/api/health", headers={"X-Remote-User": ""}).status_code == 401  # empty name
        assert c.get("/api/health").status_code == 401  # SSO configured: no header, no entry


def test_cors_closed_by_default_and_open_to_configured_origins(server, locked) -> None:
    preflight = {
        "Origin": "http://intranet.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type",
    }
    r = httpx.options(f"{server.url}/api/ask", headers=preflight)
    assert "access-control-allow-origin" not in r.headers
    r = httpx.options(f"{locked.url}/api/ask", headers=preflight)
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "http://intranet.example"
    r = httpx.options(f"{locked.url}/api/ask", headers={**preflight, "Origin": "http://evil.example"})
    assert r.headers.get("access-control-allow-origin") != "http://evil.example"


def test_questions_logged_only_when_enabled_and_never_tokens(server, locked, caplog) -> None:
    caplog.set_level(logging.INFO, logger="rag.serve")
    marker = "日志测试：龙岗开了几场新业态工会代表专场议事会？"
    httpx.post(f"{server.url}/api/search", json={"question": marker}, timeout=120)
    assert marker not in caplog.text  # log_questions is off by default
    r = httpx.post(f"{locked.url}/api/search", json={"question": marker}, headers=_bearer(TOKEN), timeout=120)
    assert r.status_code == 200
    assert marker in caplog.text and TOKEN not in caplog.text


# --------------------------------------------------------------------------------------------------
# Serving under a sub-path behind a reverse proxy


def test_root_path_behind_prefix_stripping_proxy(magazine_settings, magazine_runtime) -> None:
    settings = with_serve(magazine_settings, root_path="/qa")
    with AppServer(create_app(settings, magazine_runtime)) as s, PrefixProxy(s.port, "/qa") as proxy:
        with httpx.Client(timeout=120) as c:
            page = c.get(f"{proxy.url}/")
            assert page.status_code == 200
            config = json.loads(re.search(r"window\.gradio_config = (\{.*?\});</script>", page.text).group(1))
            assert config["root"] == proxy.url  # the page's API and asset URLs are built from this
            assets = re.findall(r'(?:src|href)="(\./assets/[^"]+|/[^"]*assets/[^"]+)"', page.text)
            assert assets
            for a in assets:  # relative to the page URL /qa/, so under the prefix
                url = httpx.URL(f"{proxy.url}/").join(a)
                assert str(url).startswith(proxy.url + "/")
                assert c.get(url).status_code == 200, url
            assert c.get(f"{proxy.url}/config").json()["root"] == proxy.url
            assert c.get(f"{proxy.url}/gradio.js").status_code == 200
            assert c.get(f"{proxy.url}/api/health").json()["status"] == "ok"
            r = c.post(f"{proxy.url}/api/ask", json={"question": QUESTION})
            assert r.status_code == 200 and r.json()["citations"]
            docs = c.get(f"{proxy.url}/docs")
            assert docs.status_code == 200 and "/qa/openapi.json" in docs.text
            assert c.get(f"{proxy.url}/openapi.json").status_code == 200
            # A proxy that keeps the prefix works too, and so does direct access on the bare paths.
            assert c.get(f"{s.url}/qa/api/health").json()["status"] == "ok"
            assert c.get(f"{s.url}/api/health").json()["status"] == "ok"


def test_forwarded_prefix_from_trusted_proxy(server) -> None:
    page = httpx.get(f"{server.url}/", headers={"X-Forwarded-Prefix": "/intra/qa"}, timeout=60)
    config = json.loads(re.search(r"window\.gradio_config = (\{.*?\});</script>", page.text).group(1))
    assert config["root"] == f"{server.url}/intra/qa"


# --------------------------------------------------------------------------------------------------
# Hostile text is escaped; the index is swapped without dropping requests


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, embedder, magazine_settings):
    return tiny_runtime(tmp_path_factory.mktemp("tiny"), embedder, magazine_settings)


def test_html_in_passages_and_questions_is_escaped(tiny) -> None:
    questions = ["某区总工会今年新建了多少家职工书屋？", "书屋配备了多少册图书？<script>alert(3)</script>"]
    turns = [turn_record(ask(tiny, q).to_dict(), tiny.index.version) for q in questions]
    assert any("<script>" in p["text"] for t in turns for p in t["cited_passages"].values())
    page = render_sources_html(turns)
    assert (
        "<script" not in page and "<img" not in page and "onerror=" not in page.replace("onerror=&quot;", "")
    )
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;script&gt;alert(3)&lt;/script&gt;" in page  # the question, in the turn heading
    assert "<mark>某区总工会今年新建职工书屋12家。</mark>" in page
    assert turns[0]["citations"]
    for t in turns:
        md = render_answer_md(t["answer"], {c["n"] for c in t["citations"]}, 1)
        assert "<script" not in md and "<img" not in md
        if t["citations"]:
            assert '<a class="gy-cite" href="#src-1-1"' in md


def test_answer_markdown_is_literal_except_citation_links() -> None:
    md = render_answer_md("<script>alert(1)</script>共12家[1]，见[9]。**粗体** $$x$$ [链接](javascript:x)", {1}, 2)
    assert "<script" not in md and "&lt;script&gt;" in md
    assert md.count("<a ") == 1 and '<a class="gy-cite" href="#src-2-1"' in md  # [9] cites nothing
    assert "\\*\\*" in md and "\\$\\$" in md and "\\]\\(javascript" in md


def test_api_returns_hostile_text_as_json_only(tiny) -> None:
    with AppServer(create_app(tiny.settings, tiny)) as s:
        r = httpx.post(f"{s.url}/api/search", json={"question": "职工书屋"}, timeout=120)
    assert r.headers["content-type"].startswith("application/json")
    assert any("<script>alert(1)</script>" in p["text"] for p in r.json()["passages"])


def test_rebuilt_index_is_swapped_in_without_dropping_requests(tmp_path, embedder, magazine_settings) -> None:
    from rag.index import add_documents

    rt = tiny_runtime(tmp_path, embedder, magazine_settings)
    old = rt.index.version
    extra = tmp_path / "more"
    extra.mkdir()
    (extra / "news.md").write_text(
        EVIL_DOC.replace("职工书屋建设情况", "职工食堂改造").replace("书屋", "食堂"), encoding="utf-8"
    )
    with AppServer(create_app(rt.settings, rt)) as s, httpx.Client(base_url=s.url, timeout=120) as c:
        assert c.get("/api/health").json()["index_version"] == old
        add_documents([extra], rt.settings, embedder)
        statuses, version = [], old
        deadline = time.monotonic() + 60
        while version == old and time.monotonic() < deadline:
            statuses.append(c.post("/api/search", json={"question": "职工食堂"}).status_code)
            version = c.get("/api/health").json()["index_version"]
            time.sleep(0.2)
        assert version != old
        assert set(statuses) == {200}
        titles = {
            p["article"] for p in c.post("/api/search", json={"question": "职工食堂改造"}).json()["passages"]
        }
        assert "职工食堂改造" in titles
