"""The web server: one FastAPI app with the JSON API, an OpenAI-compatible endpoint and the chat page.

Routes (all under ``settings.serve.root_path`` when the app sits behind a proxy at a sub-path)::

    POST /api/ask               question -> Answer.to_dict() (the CLI's JSON contract)
    POST /api/search            question -> ranked passages
    GET  /api/health            index version, model, chunk count, documents, backends
    POST /v1/chat/completions   OpenAI-compatible, stream and non-stream; extra field `citations`
    GET  /v1/models
    GET  /docs                  OpenAPI page
    GET  /gradio.js             script for embedding the page as a <gradio-app> web component
    /                           the Gradio chat page (rag.ui)

Access control (middleware, so every route and the page's own API calls are covered):
``RAG_API_TOKEN`` guards /api and /v1 with a bearer token; ``RAG_UI_USER``/``RAG_UI_PASSWORD``
guard the page with HTTP Basic login; a ``RAG_TRUSTED_USER_HEADER`` set by the intranet SSO proxy
is believed only from ``RAG_TRUSTED_PROXIES`` addresses and then admits to both. Configuring the
SSO header alone also closes both surfaces to requests that do not come through the proxy.

Errors are JSON ``{"error": {"message": <one Chinese line>, "type": ...}}`` with the right
status: 401 credentials, 422 bad input, 503 no index / model / backend, 504 past the request's
wall-clock budget (``RAG_REQUEST_TIMEOUT_S``), 500 (no traceback).

Cost bounds: question, history and k are capped (settings, 422 or cut), every text operation on
them is linear, and each /api/ask, /api/search and /v1/chat/completions request runs in the
thread pool under a :class:`~rag.budget.Deadline`: the server stops waiting at the deadline and
answers 504 (in a stream: an error event), while :func:`rag.answer.ask` stops at its next stage.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import ipaddress
import json
import logging
import re
import secrets
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from rag import __version__
from rag.answer import ask, clean_history, clean_question
from rag.answer.citations import format_pages
from rag.budget import Deadline
from rag.config import ServeSettings, Settings
from rag.errors import (
    BackendUnavailable,
    IndexMismatchError,
    IndexMissingError,
    InputError,
    ModelError,
    RagError,
    RequestTimeout,
)
from rag.retrieve import Filters, search
from rag.runtime import Runtime, load_runtime

log = logging.getLogger("rag.serve")

MODEL_NAME = "gongyun-rag"
RELOAD_CHECK_S = 2.0  # how often a request looks for a rebuilt index (one small file read)
KEEPALIVE_S = 5.0  # SSE comment interval while a slow backend is still answering
UI_CONCURRENCY = 4  # Gradio events served at once; one slow LLM answer must not block the page
PUBLIC_UI_PREFIXES = ("/assets/", "/static/", "/favicon.ico", "/gradio.js")  # frontend code, no data


def missing_index_message(index_dir: Path) -> str:
    return (
        f"索引尚未构建（{index_dir} 中没有可用索引）：请在服务器上运行 `rag index build data/`"
        "（或 `make index`），完成后无需重启，服务会自动加载。"
    )


# --------------------------------------------------------------------------------------------------
# The runtime, loaded lazily and swapped when the index is rebuilt


class RuntimeHolder:
    """Loads the runtime on first use and swaps in a rebuilt index in the background.

    Requests never wait for a reload: every ``RELOAD_CHECK_S`` seconds a request compares the
    live generation pointer with the loaded one and, if it moved, starts one background thread
    that loads the new generation; until it is ready, requests keep answering from the old one.
    """

    def __init__(self, settings: Settings, runtime: Runtime | None = None) -> None:
        self.settings = settings
        self._rt = runtime
        self._load_lock = threading.Lock()
        self._reload_lock = threading.Lock()
        self._next_check = 0.0

    def peek(self) -> Runtime | None:
        return self._rt

    def get(self) -> Runtime:
        """The live runtime; IndexMissingError (503) when nothing is built yet."""
        rt = self._rt
        if rt is None:
            with self._load_lock:
                if self._rt is None:
                    from rag.index import current_generation

                    if current_generation(self.settings.index.dir) is None:
                        # Checked before loading the model: a missing index costs no model load.
                        raise IndexMissingError(missing_index_message(self.settings.index.dir))
                    self._rt = load_runtime(self.settings)
                rt = self._rt
        else:
            self._maybe_reload(rt)
        return rt

    def _maybe_reload(self, rt: Runtime) -> None:
        now = time.monotonic()
        if now < self._next_check:
            return
        self._next_check = now + RELOAD_CHECK_S
        from rag.index import current_generation

        gen = current_generation(rt.settings.index.dir)
        if gen is None or gen == rt.index.path or not self._reload_lock.acquire(blocking=False):
            return
        threading.Thread(target=self._reload, args=(rt,), name="index-reload", daemon=True).start()

    def _reload(self, rt: Runtime) -> None:
        try:
            if rt.reload_if_changed():
                log.info("已切换到新索引 %s（%d 个段落）", rt.index.version, len(rt.index.chunks))
        except RagError as exc:
            log.warning("新索引无法加载，继续使用 %s：%s", rt.index.version, exc)
        except Exception:  # noqa: BLE001 - a failed reload must not take the server down
            log.exception("加载新索引失败，继续使用 %s", rt.index.version)
        finally:
            self._reload_lock.release()

    def warm_up(self) -> None:
        """Load model and index now (at server start) and log progress, instead of on the first question."""
        log.info("正在加载向量模型 %s 和索引 %s …", self.settings.embed.model, self.settings.index.dir)
        t0 = time.perf_counter()
        try:
            rt = self.get()
        except RagError as exc:
            log.warning("%s", exc)
            return
        except Exception:  # noqa: BLE001 - the page reports it again on use
            log.exception("加载失败")
            return
        log.info(
            "已就绪（%.1f 秒）：索引 %s，%d 个段落，回答方式：%s",
            time.perf_counter() - t0,
            rt.index.version,
            len(rt.index.chunks),
            "、".join(rt.available_backends()),
        )


# --------------------------------------------------------------------------------------------------
# Access control


class Access:
    """Decides who a request is, from the bearer token, Basic login or the trusted SSO header."""

    def __init__(self, serve: ServeSettings) -> None:
        self.serve = serve
        self._nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        self._names: set[str] = set()
        for p in serve.trusted_proxies:
            try:
                self._nets.append(ipaddress.ip_network(p.strip(), strict=False))
            except ValueError:
                self._names.add(p.strip())  # e.g. "localhost" or a unix-socket peer name
        self.api_protected = bool(serve.api_token or serve.trusted_user_header)
        self.ui_protected = bool((serve.ui_user and serve.ui_password) or serve.trusted_user_header)

    def is_trusted_proxy(self, host: str | None) -> bool:
        if not host:
            return False
        if host in self._names:
            return True
        try:
            addr = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(addr in net for net in self._nets)

    def sso_user(self, headers: Mapping[str, str], client_host: str | None) -> str | None:
        """The SSO user name, only when the header is configured and the peer is a trusted proxy."""
        name = self.serve.trusted_user_header
        if not name or not self.is_trusted_proxy(client_host):
            return None
        value = (headers.get(name) or "").strip()
        return value or None

    def bearer_ok(self, headers: Mapping[str, str]) -> bool:
        token = self.serve.api_token
        auth = headers.get("authorization") or ""
        scheme, _, given = auth.partition(" ")
        if not token or scheme.lower() != "bearer":
            return False
        # Header values arrive as latin-1 text; compare raw bytes so a UTF-8 token also works.
        return hmac.compare_digest(given.strip().encode("latin-1", "replace"), token.encode("utf-8"))

    def basic_user(self, headers: Mapping[str, str]) -> str | None:
        user, password = self.serve.ui_user, self.serve.ui_password
        auth = headers.get("authorization") or ""
        scheme, _, encoded = auth.partition(" ")
        if not (user and password) or scheme.lower() != "basic":
            return None
        try:
            given_user, _, given_pw = (
                base64.b64decode(encoded.strip(), validate=True).decode("utf-8").partition(":")
            )
        except (binascii.Error, UnicodeDecodeError):
            return None
        # Both compared in full (no early exit) so timing tells nothing about which one was wrong.
        ok_user = hmac.compare_digest(given_user.encode(), user.encode())
        ok_pw = hmac.compare_digest(given_pw.encode(), password.encode())
        return user if ok_user and ok_pw else None

    def user_of(self, headers: Mapping[str, str], client_host: str | None) -> str | None:
        """Who is asking (for feedback rows), whatever admitted them."""
        return self.sso_user(headers, client_host) or self.basic_user(headers)


def _route_path(scope: Scope) -> str:
    path: str = scope["path"]
    root = scope.get("root_path", "")
    if root and (path == root or path.startswith(root + "/")):
        path = path[len(root) :]
    return path or "/"


class AccessControl:
    """ASGI middleware applying :class:`Access` to every HTTP request and websocket."""

    def __init__(self, app: ASGIApp, access: Access) -> None:
        self.app = app
        self.access = access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        path = _route_path(scope)
        headers = Headers(scope=scope)
        client = scope.get("client")
        host = client[0] if client else None
        access = self.access
        if path in ("/api", "/v1") or path.startswith(("/api/", "/v1/")):
            if not access.api_protected or access.sso_user(headers, host) or access.bearer_ok(headers):
                await self.app(scope, receive, send)
                return
            await _deny(
                scope,
                receive,
                send,
                "未授权：缺少或错误的访问令牌，请在请求头中加入 Authorization: Bearer <令牌>。",
                'Bearer realm="gongyun-rag"',
            )
            return
        if path in ("/docs", "/openapi.json") or path.startswith(PUBLIC_UI_PREFIXES):
            await self.app(scope, receive, send)
            return
        if not access.ui_protected or access.sso_user(headers, host) or access.basic_user(headers):
            await self.app(scope, receive, send)
            return
        challenge = 'Basic realm="gongyun-rag", charset="UTF-8"' if access.serve.ui_user else None
        await _deny(
            scope, receive, send, "需要登录：请输入问答系统的用户名和密码（或经单点登录访问）。", challenge
        )


async def _deny(scope: Scope, receive: Receive, send: Send, message: str, challenge: str | None) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008})
        return
    headers = {"WWW-Authenticate": challenge} if challenge else {}
    response = JSONResponse(
        {"error": {"message": message, "type": "unauthorized"}}, status_code=401, headers=headers
    )
    await response(scope, receive, send)


class RootPath:
    """Serve under a sub-path whether or not the reverse proxy strips it.

    ``/qa/api/ask`` (prefix kept by the proxy) and ``/api/ask`` (prefix stripped) both reach
    ``/api/ask``, and ``scope["root_path"]`` tells Gradio and FastAPI the public prefix so the
    page's asset and API URLs resolve under it. A trusted proxy may instead announce the prefix
    per request with ``X-Forwarded-Prefix``.
    """

    def __init__(self, app: ASGIApp, root_path: str, access: Access) -> None:
        self.app = app
        self.root_path = _norm_prefix(root_path)
        self.access = access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            prefix = self.root_path
            client = scope.get("client")
            forwarded = Headers(scope=scope).get("x-forwarded-prefix")
            if forwarded is not None and self.access.is_trusted_proxy(client[0] if client else None):
                try:
                    prefix = _norm_prefix(forwarded)
                except RagError:
                    pass  # a malformed header is ignored rather than failing every request
            if prefix:
                scope = dict(scope)
                path = scope["path"]
                if not (path == prefix or path.startswith(prefix + "/")):
                    scope["path"] = prefix + path
                    scope["raw_path"] = prefix.encode() + scope.get("raw_path", path.encode())
                scope["root_path"] = prefix
        await self.app(scope, receive, send)


def _norm_prefix(p: str | None) -> str:
    p = (p or "").strip()
    if not p or p == "/":
        return ""
    if not re.fullmatch(r"/?[A-Za-z0-9._~\-/]+", p):
        raise RagError(f"root_path {p!r} 不是合法的路径前缀，应形如 /qa。")
    return "/" + p.strip("/")


# --------------------------------------------------------------------------------------------------
# Request and response models


class FiltersIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    doc: str | None = Field(None, description="文档标题或 id（子串匹配）")
    article: str | None = Field(None, description="文章标题中的文字")
    section: str | None = Field(None, description="栏目，如 调研、典型、实践")
    page: str | None = Field(None, description="印刷页码，如 5 或 封二")

    def to_filters(self) -> Filters:
        return Filters(doc=self.doc, article=self.article, section=self.section, page=self.page)


class AskRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"question": "第二届职工优秀创新成果交流活动是在哪个场馆办的？"}]},
    )

    question: str = Field(..., description="问题（中文）")
    backend: str | None = Field(None, description="extractive | llm | openai；默认按服务器配置")
    k: int | None = Field(None, description="检索段落数", ge=1)
    filters: FiltersIn | None = None
    history: list[tuple[str, str]] = Field(
        default_factory=list,
        description="此前的对话 [[问题, 回答], ...]，用于“那深圳呢？”之类的追问",
        max_length=50,
    )


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    question: str = Field(..., description="检索的问题或关键词")
    k: int | None = Field(None, ge=1)
    filters: FiltersIn | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        if not self.content:
            return ""
        return "".join(
            str(p.get("text", "")) for p in self.content if p.get("type") in ("text", "input_text")
        )


class ChatRequest(BaseModel):
    # OpenAI clients send more fields (temperature, max_tokens, user...); they are accepted and ignored.
    model_config = ConfigDict(extra="allow")

    model: str = MODEL_NAME
    messages: list[ChatMessage] = Field(..., min_length=1)
    stream: bool = False
    k: int | None = Field(None, ge=1, description="扩展字段：检索段落数")
    filters: FiltersIn | None = Field(None, description="扩展字段：检索范围")


# --------------------------------------------------------------------------------------------------
# Helpers


def _error(status: int, message: str, kind: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind}}, status_code=status)


def _status_of(exc: RagError) -> tuple[int, str]:
    if isinstance(exc, InputError):
        return 422, "invalid_request"
    if isinstance(exc, IndexMissingError | IndexMismatchError | ModelError | BackendUnavailable):
        return 503, "unavailable"
    if isinstance(exc, RequestTimeout):
        return 504, "timeout"
    return 500, "server_error"


def _validation_message(exc: RequestValidationError) -> str:
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return "请求体不是合法的 JSON。"
    if not errors:
        return "请求格式不正确。"
    e = errors[0]
    where = ".".join(str(p) for p in e.get("loc", ()) if p != "body") or "请求体"
    kind = e.get("type", "")
    if kind == "missing":
        return f"请求格式不正确：缺少字段 {where}。"
    if kind == "extra_forbidden":
        return f"请求格式不正确：不认识的字段 {where}。"
    return f"请求格式不正确：字段 {where} 的值无效（{e.get('msg', kind)}）。"


T = TypeVar("T")


def _consume(task: asyncio.Future[Any]) -> None:
    """Collect the outcome of work the server stopped waiting for, so it is not reported as lost."""
    if not task.cancelled() and task.exception() is not None:
        exc = task.exception()
        if not isinstance(exc, RagError):
            log.error("超时后结束的请求出错：%s: %s", type(exc).__name__, exc)


async def within_budget(deadline: Deadline, work: Callable[[], T]) -> T:
    """Run blocking ``work`` in the thread pool; at the deadline, raise RequestTimeout (504) at once.

    Cancelling a thread-pool call would only wait for the thread (it cannot be stopped from
    outside), so the call is left to finish on its own: ``work`` is given the same deadline and
    stops at its next stage, freeing its thread-pool slot soon after.
    """
    task = asyncio.ensure_future(run_in_threadpool(work))
    done, _ = await asyncio.wait({task}, timeout=max(0.0, deadline.remaining()))
    if task in done:
        return task.result()
    task.add_done_callback(_consume)
    raise deadline.error()


def _check_k(k: int | None, serve: ServeSettings) -> None:
    if k is not None and not 1 <= k <= serve.max_k:
        raise InputError(f"k 必须在 1 到 {serve.max_k} 之间。")


def passage_dict(hit: Any) -> dict[str, Any]:
    c = hit.chunk
    return {
        "rank": hit.rank,
        "chunk_id": c.chunk_id,
        "score": round(float(hit.score), 6),
        "dense_score": None if hit.dense_score is None else round(float(hit.dense_score), 6),
        "bm25_score": None if hit.bm25_score is None else round(float(hit.bm25_score), 6),
        "doc": c.doc,
        "article": c.article,
        "section": c.section,
        "pages": list(c.pages),
        "page_label": format_pages(c.pages),
        "text": c.text,
    }


def model_backends(rt: Runtime) -> dict[str, str]:
    """OpenAI model names -> answer backends: the default name plus one per available backend."""
    backends = rt.available_backends()
    default = rt.settings.answer.backend if rt.settings.answer.backend in backends else "extractive"
    return {MODEL_NAME: default, **{f"{MODEL_NAME}-{b}": b for b in backends}}


def chat_question(messages: list[ChatMessage], max_turns: int) -> tuple[str, list[tuple[str, str]]]:
    """The last user message is the question; earlier user/assistant pairs are the history.

    Only the messages that can make the last ``max_turns`` pairs are read (a client may send its
    whole conversation; older turns are dropped later anyway), so the work does not grow with it.
    """
    if messages[-1].role != "user":
        raise InputError("最后一条消息必须是用户的问题（role 为 user）。")
    history: list[tuple[str, str]] = []
    pending: str | None = None
    # Room for a system or tool message between the pairs too.
    for m in messages[:-1][-(4 * max_turns + 4) :]:
        if m.role == "user":
            pending = m.text()
        elif m.role == "assistant" and pending is not None:
            history.append((pending, m.text()))
            pending = None
    return messages[-1].text(), history


def _chunk(
    cid: str, created: int, model: str, delta: dict[str, Any], finish: str | None = None, **extra: Any
) -> str:
    body = {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        **extra,
    }
    return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"


# --------------------------------------------------------------------------------------------------
# The app


def create_app(settings: Settings, runtime: Runtime | None = None) -> FastAPI:
    """The whole server as one ASGI app; ``runtime`` is loaded on first use when None."""
    import gradio as gr

    from rag.ui import CITATION_JS, CSS, answer_pieces, build_ui

    serve = settings.serve

    def history_of(turns: list[tuple[str, str]]) -> list[tuple[str, str]]:
        return clean_history(turns, serve.max_history_turns, serve.max_history_chars)

    holder = RuntimeHolder(settings, runtime)
    access = Access(serve)
    app = FastAPI(
        title="《广东工运》智能问答 API",
        version=__version__,
        description='根据杂志原文回答问题并标注印刷页码。错误以 JSON 返回：{"error": {"message": ..., "type": ...}}。',
        docs_url="/docs",
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.state.holder = holder
    app.state.access = access

    def log_question(request: Request, route: str, question: str, backend: str | None) -> None:
        if serve.log_questions:  # opt-in: questions can be personal; credentials are never logged
            host = request.client.host if request.client else None
            user = access.user_of(request.headers, host) or "-"
            log.info("%s user=%s backend=%s: %s", route, user, backend or "默认", question)

    @app.exception_handler(RagError)
    async def _rag_error(request: Request, exc: RagError) -> JSONResponse:
        status, kind = _status_of(exc)
        if status >= 500:
            log.error("%s: %s", type(exc).__name__, exc)
        return _error(status, str(exc), kind)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(422, _validation_message(exc), "invalid_request")

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:
            # FastAPI's "error parsing the body" (e.g. bytes that are not UTF-8): malformed input.
            return _error(422, "请求体无法解析：应为 UTF-8 编码的 JSON。", "invalid_request")
        messages = {404: "未找到该接口。", 405: "该接口不支持此请求方法。"}
        message = messages.get(exc.status_code) or f"请求失败（HTTP {exc.status_code}）。"
        return JSONResponse(
            {"error": {"message": message, "type": "http_error"}},
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("未处理的错误：%s %s", request.method, request.url.path)
        return _error(500, "服务器内部错误，请稍后再试或联系管理员。", "server_error")

    @app.post("/api/ask", summary="提问：返回带页码引用的回答", tags=["api"])
    async def api_ask(body: AskRequest, request: Request) -> dict[str, Any]:
        deadline = Deadline.after(serve.request_timeout_s)
        question = clean_question(body.question, serve.max_question_chars)
        _check_k(body.k, serve)
        history = history_of(body.history)
        log_question(request, "/api/ask", question, body.backend)

        def work() -> dict[str, Any]:
            answer = ask(
                holder.get(),
                question,
                backend=body.backend,
                k=body.k,
                filters=body.filters.to_filters() if body.filters else None,
                history=history or None,
                qid=f"ask-{secrets.token_hex(6)}",
                deadline=deadline,
            )
            return answer.to_dict()

        return await within_budget(deadline, work)

    @app.post("/api/search", summary="检索：返回排序后的原文段落", tags=["api"])
    async def api_search(body: SearchRequest, request: Request) -> dict[str, Any]:
        deadline = Deadline.after(serve.request_timeout_s)
        question = clean_question(body.question, serve.max_question_chars)
        _check_k(body.k, serve)
        log_question(request, "/api/search", question, None)

        def work() -> dict[str, Any]:
            rt = holder.get()
            timings: dict[str, float] = {}
            index = rt.index
            hits = search(
                index,
                rt.embedder,
                question,
                rt.settings.retrieve,
                k=body.k,
                filters=body.filters.to_filters() if body.filters else None,
                timings=timings,
            )
            return {
                "question": question,
                "index_version": index.version,
                "passages": [passage_dict(h) for h in hits],
                "timings_ms": {k: round(v, 2) for k, v in timings.items()},
            }

        return await within_budget(deadline, work)

    @app.get("/api/health", summary="服务状态", tags=["api"])
    def api_health() -> JSONResponse:
        try:
            rt = holder.get()
        except RagError as exc:
            status, kind = _status_of(exc)
            return JSONResponse(
                {"status": "unavailable", "error": {"message": str(exc), "type": kind}}, status_code=status
            )
        index = rt.index
        docs = index.manifest.get("documents", {})
        return JSONResponse(
            {
                "status": "ok",
                "index_version": index.version,
                "model": index.manifest.get("model", {}).get("name"),
                "chunk_count": len(index.chunks),
                "documents": [
                    {
                        "id": doc_id,
                        "title": d.get("title"),
                        "chunks": d.get("chunks"),
                        "pages": d.get("pages", []),
                    }
                    for doc_id, d in docs.items()
                ],
                "backends": rt.available_backends(),
                "version": __version__,
            }
        )

    @app.get("/v1/models", summary="OpenAI 兼容：模型列表", tags=["openai"])
    def v1_models() -> dict[str, Any]:
        rt = holder.get()
        return {
            "object": "list",
            "data": [
                {"id": name, "object": "model", "created": 0, "owned_by": "gongyun-rag", "backend": backend}
                for name, backend in model_backends(rt).items()
            ],
        }

    @app.post("/v1/chat/completions", summary="OpenAI 兼容：对话补全（支持 stream）", tags=["openai"])
    async def v1_chat(body: ChatRequest, request: Request) -> Any:
        deadline = Deadline.after(serve.request_timeout_s)
        question, history = chat_question(body.messages, serve.max_history_turns)
        question = clean_question(question, serve.max_question_chars)
        history = history_of(history)
        _check_k(body.k, serve)
        rt = await within_budget(deadline, holder.get)
        models = model_backends(rt)
        if body.model not in models:
            raise InputError(f"未知的模型 {body.model!r}；可选：{'、'.join(models)}。")
        backend = models[body.model]
        log_question(request, "/v1/chat/completions", question, backend)
        filters = body.filters.to_filters() if body.filters else None
        cid = f"chatcmpl-{secrets.token_hex(12)}"
        created = int(time.time())
        cancelled = threading.Event()

        def on_token(_delta: str) -> None:
            # Tokens are not forwarded: the client gets the checked answer only. A client that
            # went away stops generation here, freeing the model for others.
            if cancelled.is_set():
                raise InputError("客户端已断开。")

        def run() -> Any:
            return ask(
                rt,
                question,
                backend=backend,
                k=body.k,
                filters=filters,
                history=history or None,
                on_token=on_token,
                qid=cid,
                deadline=deadline,
            )

        if not body.stream:
            answer = await within_budget(deadline, run)
            return {
                "id": cid,
                "object": "chat.completion",
                "created": created,
                "model": body.model,
                "system_fingerprint": rt.index.version,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": answer.answer},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
                "citations": [c.to_dict() for c in answer.citations],
                "refused": answer.refused,
                "note": answer.note,
            }

        async def events() -> AsyncIterator[str]:
            task = asyncio.ensure_future(run_in_threadpool(run))
            try:
                yield _chunk(cid, created, body.model, {"role": "assistant", "content": ""})
                timed_out = False
                while True:
                    done, _ = await asyncio.wait({task}, timeout=min(KEEPALIVE_S, max(0.0, deadline.remaining())))
                    if done:
                        break
                    if deadline.expired():  # the 200 is already sent: the 504's message goes in the stream
                        task.add_done_callback(_consume)
                        timed_out = True
                        break
                    yield ": keep-alive\n\n"  # SSE comment: keeps proxies from closing an idle stream
                try:
                    if timed_out:
                        raise deadline.error()
                    answer = task.result()
                except RagError as exc:
                    status, kind = _status_of(exc)
                    yield f"data: {json.dumps({'error': {'message': str(exc), 'type': kind}}, ensure_ascii=False)}\n\n"
                    return
                except Exception:  # noqa: BLE001 - the status line is already sent; report in-stream
                    log.exception("流式回答出错")
                    err = {
                        "error": {
                            "message": "服务器内部错误，请稍后再试或联系管理员。",
                            "type": "server_error",
                        }
                    }
                    yield f"data: {json.dumps(err, ensure_ascii=False)}\n\n"
                    return
                for piece in answer_pieces(answer.answer):
                    yield _chunk(cid, created, body.model, {"content": piece})
                yield _chunk(
                    cid,
                    created,
                    body.model,
                    {},
                    "stop",
                    citations=[c.to_dict() for c in answer.citations],
                    refused=answer.refused,
                )
                yield "data: [DONE]\n\n"
            finally:
                cancelled.set()

        return StreamingResponse(
            events(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    known = {getattr(r, "path", "") for r in app.routes}

    @app.api_route(
        "/api/{rest:path}", methods=["GET", "POST", "PUT", "DELETE", "PATCH"], include_in_schema=False
    )
    @app.api_route(
        "/v1/{rest:path}", methods=["GET", "POST", "PUT", "DELETE", "PATCH"], include_in_schema=False
    )
    def api_not_found(request: Request) -> JSONResponse:
        # Without this, unknown /api and /v1 paths would fall through to the page mounted at "/".
        if _route_path(request.scope) in known:
            return _error(405, "该接口不支持此请求方法。", "http_error")
        return _error(404, "未找到该接口；可用接口见 /docs。", "http_error")

    gradio_js = Path(gr.__file__).parent / "templates" / "frontend" / "gradio.js"

    @app.get("/gradio.js", include_in_schema=False)
    def gradio_script() -> PlainTextResponse:
        # Gradio's own loader (it imports ./assets/index-*.js, which defines <gradio-app>), served
        # from the installed package so embedding needs no CDN.
        return PlainTextResponse(
            gradio_js.read_text(encoding="utf-8"),
            media_type="text/javascript",
            headers={"Cache-Control": "no-cache"},
        )

    # Middleware, innermost first: access control sees the final path; CORS answers preflights
    # before credentials are asked for; the root-path fix runs before everything.
    app.add_middleware(AccessControl, access=access)
    origins = list(serve.cors_origins)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=origins,
        allow_credentials="*" not in origins,
        allow_methods=["GET", "POST", "OPTIONS"],
        allow_headers=["*"],
    )
    app.add_middleware(RootPath, root_path=serve.root_path, access=access)

    def user_of(request: gr.Request | None) -> str | None:
        if request is None:
            return None
        client = getattr(request, "client", None)
        host = getattr(client, "host", None) if client else None
        return access.user_of(dict(request.headers), host)

    demo = build_ui(settings, holder, user_of=user_of)
    demo.queue(default_concurrency_limit=UI_CONCURRENCY)
    gr.mount_gradio_app(
        app,
        demo,
        path="/",
        root_path=_norm_prefix(serve.root_path) or None,
        css=CSS,
        js=CITATION_JS,
        footer_links=["settings"],
        run_history=False,
        ssr_mode=False,
        mcp_server=False,
        show_error=True,
        # The page takes no files: without a limit Gradio's upload route would let anyone fill the disk.
        max_file_size="1kb",
    )
    return app


def run_server(settings: Settings) -> None:
    """Serve on ``settings.serve.host:port`` (under ``root_path``) until interrupted."""
    import uvicorn

    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    serve = settings.serve
    app = create_app(settings)
    prefix = _norm_prefix(serve.root_path)
    log.info(
        "问答页面：http://%s:%d%s/   接口文档：http://%s:%d%s/docs",
        serve.host,
        serve.port,
        prefix,
        serve.host,
        serve.port,
        prefix,
    )
    if serve.ui_user and not serve.api_token and not serve.trusted_user_header:
        log.warning("页面设置了登录，但 /api 与 /v1 没有令牌保护；如需保护请设置 RAG_API_TOKEN。")
    holder: RuntimeHolder = app.state.holder
    threading.Thread(target=holder.warm_up, name="warm-up", daemon=True).start()
    # proxy_headers=False: the peer address must stay the real TCP peer, because the SSO header
    # is trusted by that address; X-Forwarded-For from anyone would otherwise rewrite it.
    uvicorn.run(app, host=serve.host, port=serve.port, proxy_headers=False, timeout_graceful_shutdown=5)


__all__ = ["create_app", "run_server", "RuntimeHolder", "Access"]
