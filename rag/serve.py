"""The web server: one FastAPI app with the JSON API, an OpenAI-compatible endpoint and the chat page.

Routes (all under ``settings.serve.root_path`` when the app sits behind a proxy at a sub-path)::

    POST /api/ask               question -> Answer.to_dict() (the CLI's JSON contract)
    POST /api/search            question -> ranked passages
    GET  /api/health            status (ok/degraded/loading/unavailable), index version, model,
                                chunk count, documents, backends; never waits for a load
    GET  /api/page/{doc}/{i}.png   a cited PDF page with the quote marked (.pdf: the page alone)
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
status: 400 a duplicated SSO header, 401 credentials, 404/405 (OPTIONS included; HEAD is answered
as GET), 422 bad input or an unimplemented /v1 option, 503 no index / model / a requested backend
not available here, 504 past the request's wall-clock budget (``RAG_REQUEST_TIMEOUT_S``), 500 (no
traceback). Client messages name the fix, never a server path or a module (``rag.public``); details
go to the log, where client text is an escaped field (``rag.logsafe``). Gradio's own routes are
reduced to what the page uses (``rag.surface``).

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
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rag import __version__
from rag.answer import BACKENDS, ask, clean_history, clean_question
from rag.answer.citations import format_pages
from rag.budget import Deadline
from rag.config import ServeSettings, Settings
from rag.crosslingual import load_glossary
from rag.errors import (
    BackendUnavailable,
    IndexMismatchError,
    IndexMissingError,
    InputError,
    ModelError,
    RagError,
    RequestTimeout,
)
from rag.index import (
    LoadedIndex,
    Signature,
    check_embedder,
    current_generation,
    generation_signature,
    load_generation,
    verify_generation,
)
from rag.logsafe import escape_raw, install_request_log_filter, log_text
from rag.public import client_message
from rag.retrieve import Filters, search
from rag.runtime import Runtime
from rag.surface import PageSurface, is_page_stream, route_path

log = logging.getLogger("rag.serve")

MODEL_NAME = "gongyun-rag"
CATCH_ALL_METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]
RELOAD_CHECK_S = 2.0  # how often a request looks for a rebuilt or altered index (a read and a few stats)
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


def _load_glossary_quietly() -> None:
    try:
        load_glossary()
    except RagError as exc:  # reported again to the English question that needs it
        log.warning("%s", exc)


class RuntimeHolder:
    """The server's runtime: loaded once, watched, and swapped when the index is rebuilt.

    Requests never hash files or wait for a reload. Every ``RELOAD_CHECK_S`` seconds a request
    or health check reads the ``CURRENT`` pointer and ``stat``s the live generation's files
    (microseconds), and hands anything slow to one background thread:

    * ``CURRENT`` moved to a generation not known to be broken: it is loaded, verified and
      swapped in; requests keep answering from the old one meanwhile.
    * the live generation's files changed on disk (a truncate, a ``cp`` over them): they are
      verified again. Requests keep answering from the copy verified at load, which lives in
      memory (nothing is memory-mapped, so no change on disk can crash the process); if the
      files no longer verify, health reports "degraded" with the fix.
    * a generation that fails is remembered with its files' signature and not tried again
      until its files change: a broken index costs one verification, not one per request.
    """

    def __init__(self, settings: Settings, runtime: Runtime | None = None) -> None:
        self.settings = settings
        self._rt = runtime
        self._embedder = runtime.embedder if runtime is not None else None
        self._load_lock = threading.Lock()  # the first load (index, then model)
        self._model_lock = threading.Lock()
        self._worker = threading.Lock()  # one background load or verification at a time
        self._next_check = 0.0
        # (generation folder, its signature when verified); (folder, signature, error) once it fails
        self._live: tuple[Path, Signature | None] | None = None
        self._live_damage: tuple[Path, Signature, RagError] | None = None
        self._failed: tuple[str, Signature, RagError] | None = None  # the last generation that failed
        self._spare: tuple[str, Signature, LoadedIndex] | None = None  # verified, waiting for the model
        if runtime is not None:
            self._live = (runtime.index.path, _signature(runtime.index.path))

    def peek(self) -> Runtime | None:
        return self._rt

    def get(self) -> Runtime:
        """The live runtime; IndexMissingError (503) when nothing is built yet."""
        rt = self._rt
        if rt is None:
            return self._load_first()
        self._watch(rt)
        return rt

    def _load_first(self) -> Runtime:
        with self._load_lock:
            if self._rt is None:
                index_dir = self.settings.index.dir
                gen = current_generation(index_dir)
                if gen is None:
                    # Checked before loading the model: a missing index costs no model load.
                    raise IndexMissingError(missing_index_message(index_dir))
                index = self._load(gen)
                self._rt = Runtime(settings=self.settings, embedder=self._ensure_embedder(), index=index)
            return self._rt

    def _ensure_embedder(self) -> Any:
        with self._model_lock:
            if self._embedder is None:
                from rag.embed import load_embedder

                self._embedder = load_embedder(self.settings.embed)
            return self._embedder

    def _known_failure(self, gen: Path) -> RagError | None:
        failed = self._failed
        if failed is not None and failed[0] == gen.name and failed[1] == generation_signature(gen):
            return type(failed[2])(str(failed[2]))  # a fresh exception: the remembered verdict
        return None

    def _load(self, gen: Path) -> LoadedIndex:
        """Load and verify ``gen`` (index first: a broken one costs no model load), or raise the
        remembered error of an earlier attempt when its files have not changed since."""
        known = self._known_failure(gen)
        if known is not None:
            raise known
        sig = generation_signature(gen)
        spare = self._spare
        try:
            if spare is not None and spare[0] == gen.name and spare[1] == sig:
                index = spare[2]  # verified by an attempt that then failed to load the model
            else:
                index = load_generation(gen, self.settings)
                self._spare = (gen.name, sig, index)
            check_embedder(index.manifest, self._ensure_embedder())
        except IndexMismatchError as exc:
            self._failed, self._spare = (gen.name, sig, exc), None
            raise
        self._spare = None
        index.tokenizer("工会")  # load jieba's dictionary now, not on the first question (1-2 s)
        self._live, self._live_damage = (gen, sig), None
        return index

    def _watch(self, rt: Runtime) -> None:
        now = time.monotonic()
        if now < self._next_check:
            return
        self._next_check = now + RELOAD_CHECK_S
        try:
            gen = current_generation(self.settings.index.dir)
        except RagError:
            return  # an unreadable pointer: keep serving; health reports it
        live = self._live
        if gen is not None and gen != rt.index.path:
            if self._known_failure(gen) is None:
                self._in_background(self._reload, rt, gen)
            return
        if live is None or live[0] != rt.index.path:
            return  # a swap is in progress
        sig = _signature(rt.index.path)
        damage = self._live_damage
        if sig != live[1] and not (damage is not None and damage[0] == live[0] and damage[1] == sig):
            self._in_background(self._reverify, rt, sig)

    def _in_background(self, job: Callable[..., None], *args: Any) -> None:
        if not self._worker.acquire(blocking=False):
            return  # one job at a time; the next check starts the next one

        def run() -> None:
            try:
                job(*args)
            except Exception:  # noqa: BLE001 - a failed background job must not take the server down
                log.exception("索引后台任务失败")
            finally:
                self._worker.release()

        threading.Thread(target=run, name="index-watch", daemon=True).start()

    def _reload(self, rt: Runtime, gen: Path) -> None:
        try:
            index = self._load(gen)
        except RagError as exc:
            log.warning("新索引无法加载，继续使用 %s：%s", rt.index.version, exc)
            return
        rt.index = index  # the swap: one reference assignment
        log.info("已切换到新索引 %s（%d 个段落）", rt.index.version, len(rt.index.chunks))

    def _reverify(self, rt: Runtime, sig: Signature | None) -> None:
        path = rt.index.path
        try:
            verify_generation(path)
        except RagError as exc:
            if rt.index.path == path and sig is not None:
                self._live_damage = (path, sig, exc)
                log.warning("磁盘上的当前索引已被改动或损坏，继续使用加载时校验过的内存副本：%s", exc)
            return
        if rt.index.path == path:
            self._live, self._live_damage = (path, sig), None
            log.info("当前索引 %s 的文件属性有变化，内容校验仍然通过。", path.name)

    def state(self) -> tuple[str, Runtime | None, RagError | None, list[dict[str, str]]]:
        """(status, runtime, error, problems) for /api/health, without waiting or hashing.

        status is "ok", "degraded" (answering, with problems to fix), "loading" or "unavailable"
        (error says why). Costs a pointer read and a dozen ``stat``s.
        """
        rt = self._rt
        if rt is None:
            return self._state_unloaded()
        self._watch(rt)
        problems: list[dict[str, str]] = []
        damage = self._live_damage
        if damage is not None and damage[0] == rt.index.path:
            problems.append({"type": "index_damaged", "message": f"重启后将无法加载：{damage[2]}"})
        try:
            gen = current_generation(self.settings.index.dir)
        except RagError as exc:
            problems.append({"type": "index_pointer", "message": str(exc)})
            gen = None
        failed = self._failed
        if gen is not None and gen != rt.index.path and failed is not None and failed[0] == gen.name:
            problems.append(
                {"type": "new_index_rejected", "message": f"新索引 {gen.name} 无法加载，继续使用 {rt.index.version}：{failed[2]}"}
            )
        return ("degraded" if problems else "ok"), rt, None, problems

    def _state_unloaded(self) -> tuple[str, Runtime | None, RagError | None, list[dict[str, str]]]:
        if self._load_lock.locked():
            return "loading", None, None, []
        try:
            gen = current_generation(self.settings.index.dir)
            if gen is None:
                raise IndexMissingError(missing_index_message(self.settings.index.dir))
            known = self._known_failure(gen)
            if known is not None:
                raise known
        except RagError as exc:
            return "unavailable", None, exc, []
        self._in_background(self._try_load)  # a lazily created app: load now, report "loading"
        return "loading", None, None, []

    def _try_load(self) -> None:
        try:
            self.get()
        except RagError:
            pass  # remembered; requests and health report it

    def warm_up(self) -> None:
        """Load model and index now (at server start) and log progress, instead of on the first question."""
        log.info("正在加载向量模型 %s 和索引 %s …", self.settings.embed.model, self.settings.index.dir)
        t0 = time.perf_counter()
        try:
            rt = self.get()
            rt.index.prepare()
            if rt.settings.retrieve.cross_lingual_glossary:
                # The English->Chinese glossary (~2 s to read) loads beside the first questions,
                # not in front of them: only an English question needs it.
                threading.Thread(target=_load_glossary_quietly, name="glossary", daemon=True).start()
        except RagError as exc:
            log.warning("%s", exc)
            try:
                self._ensure_embedder()  # ready for when the index is repaired
            except Exception:  # noqa: BLE001 - reported again on use
                log.exception("加载向量模型失败")
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


def _signature(path: Path) -> Signature | None:
    return generation_signature(path) if path.is_dir() else None  # None: an in-memory test index


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
        if not name or not self.is_trusted_proxy(client_host) or self.sso_header_repeated(headers):
            return None
        value = (headers.get(name) or "").strip()
        return value or None

    def sso_header_repeated(self, headers: Mapping[str, str]) -> bool:
        """True when the SSO header arrives more than once: the proxy appended instead of replacing.

        Which copy is the real user is then unknowable (the first one may be the client's own, even
        empty), so the request is refused rather than guessed.
        """
        name = self.serve.trusted_user_header
        getlist = getattr(headers, "getlist", None)
        return bool(name and getlist is not None and len(getlist(name)) > 1)

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


class AccessControl:
    """ASGI middleware applying :class:`Access` to every HTTP request and websocket."""

    def __init__(self, app: ASGIApp, access: Access) -> None:
        self.app = app
        self.access = access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        path = route_path(scope)
        headers = Headers(scope=scope)
        client = scope.get("client")
        host = client[0] if client else None
        access = self.access
        if access.sso_header_repeated(headers) and access.is_trusted_proxy(host):
            message = "单点登录请求头重复出现：请让代理覆盖（而不是追加）该请求头后重试。"
            await _deny(scope, receive, send, message, None, status=400, kind="invalid_request")
            return
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


async def _deny(
    scope: Scope,
    receive: Receive,
    send: Send,
    message: str,
    challenge: str | None,
    status: int = 401,
    kind: str = "unauthorized",
) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008})
        return
    headers = {"WWW-Authenticate": challenge} if challenge else {}
    response = JSONResponse({"error": {"message": message, "type": kind}}, status_code=status, headers=headers)
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


class HeadAsGet:
    """``HEAD`` is answered like ``GET`` (same status and headers), without a body.

    FastAPI and Gradio routes list GET only, so without this ``HEAD /api/health`` fell through to
    the page's mount and came back as Gradio's ``{"detail": "Not Found"}``; a monitor may probe
    it. The page's long-lived streams are excluded (a HEAD there is a 405, not a held connection).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD" or is_page_stream(route_path(scope)):
            await self.app(scope, receive, send)
            return

        async def send_headers_only(message: Message) -> None:
            if message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return  # drop streamed body parts; the last (empty) one ends the response
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, send_headers_only)


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


TEXT_PARTS = ("text", "input_text")
# OpenAI options this endpoint does not implement; each is refused (422) unless set to its default.
UNSUPPORTED_OPTIONS = frozenset(
    {
        "n",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "functions",
        "function_call",
        "response_format",
        "logprobs",
        "top_logprobs",
        "audio",
        "modalities",
        "prediction",
        "web_search_options",
    }
)


def _harmless_option(name: str, value: Any) -> bool:
    """True when an unsupported option is sent with the value that means "not used"."""
    if value is None or value is False or value == [] or value == {}:
        return True
    if name == "n":
        return value == 1
    if name == "tool_choice":
        return value == "none"
    if name == "response_format":
        return isinstance(value, dict) and value.get("type") == "text"
    if name == "modalities":
        return value == ["text"]
    return False


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None

    @field_validator("content")
    @classmethod
    def _text_parts_only(cls, content: str | list[dict[str, Any]] | None) -> Any:
        # Only text is answered; an image or a part whose text is not a string is refused, not
        # silently dropped or turned into "{'a': 1}".
        for i, part in enumerate(content if isinstance(content, list) else [], start=1):
            if part.get("type") not in TEXT_PARTS:
                raise ValueError(f"消息内容第 {i} 段的类型 {str(part.get('type'))[:40]!r} 不受支持：只接受文本（type 为 text）")
            if not isinstance(part.get("text"), str):
                raise ValueError(f"消息内容第 {i} 段的 text 必须是字符串")
        return content

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        if not self.content:
            return ""
        return "".join(p["text"] for p in self.content)


class ChatRequest(BaseModel):
    # OpenAI clients send more fields (temperature, max_tokens, user...); they are accepted and ignored.
    model_config = ConfigDict(extra="allow")

    model: str = MODEL_NAME
    messages: list[ChatMessage] = Field(..., min_length=1)
    stream: bool = False
    k: int | None = Field(None, ge=1, description="扩展字段：检索段落数")
    filters: FiltersIn | None = Field(None, description="扩展字段：检索范围")

    @model_validator(mode="after")
    def _refuse_unimplemented(self) -> ChatRequest:
        # Options that change what the client expects back (several choices, tool calls, JSON
        # output, log-probabilities...) are refused rather than silently ignored; sampling knobs
        # such as temperature or max_tokens are ignored (the server's RAG_LLM_* settings apply).
        for name, value in (self.model_extra or {}).items():
            if name in UNSUPPORTED_OPTIONS and not _harmless_option(name, value):
                raise ValueError(f"不支持的选项 {name}：本服务每次只返回一条带引用的文本回答")
        return self


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
    if kind == "value_error" and e.get("ctx", {}).get("error"):
        return f"请求格式不正确：{where}：{e['ctx']['error']}。"
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


def usable_backend(rt: Runtime, requested: str | None) -> str:
    """The backend to answer with: ``requested``, or the configured default, or extractive.

    One contract on every route: a backend asked for by name that is not available here
    (not installed, not configured) is a 503, never a quiet extractive answer; with no backend
    named, the configured default is used when available and the extractive one otherwise (the
    answer's ``backend`` field says which). A name that is no backend at all is the client's
    mistake (422, from ``ask``).
    """
    available = rt.available_backends()
    if requested is None:
        default = rt.settings.answer.backend
        return default if default in available else "extractive"
    if requested in BACKENDS and requested not in available:
        raise BackendUnavailable(f"回答方式 {requested} 在本服务器上不可用（可用：{'、'.join(available)}）。")
    return requested


def model_label(name: str | None) -> str | None:
    """The embedding model's name for clients: a local folder is shown by its last part only."""
    return Path(name).name if name and ("/" in name or "\\" in name) else name


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
            # Client text as quoted, escaped fields: a question cannot start a forged log line.
            log.info(
                "%s user=%s backend=%s question=%s", route, log_text(user), log_text(backend or "默认"), log_text(question)
            )

    @app.exception_handler(RagError)
    async def _rag_error(request: Request, exc: RagError) -> JSONResponse:
        status, kind = _status_of(exc)
        if status >= 500:
            log.error("%s %s -> %s: %s", request.method, escape_raw(request.url.path), type(exc).__name__, exc)
        return _error(status, client_message(exc), kind)

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
        log.exception("未处理的错误：%s %s", request.method, escape_raw(request.url.path))
        return _error(500, "服务器内部错误，请稍后再试或联系管理员。", "server_error")

    @app.post("/api/ask", summary="提问：返回带页码引用的回答", tags=["api"])
    async def api_ask(body: AskRequest, request: Request) -> dict[str, Any]:
        deadline = Deadline.after(serve.request_timeout_s)
        question = clean_question(body.question, serve.max_question_chars)
        _check_k(body.k, serve)
        history = history_of(body.history)
        log_question(request, "/api/ask", question, body.backend)

        def work() -> dict[str, Any]:
            rt = holder.get()
            answer = ask(
                rt,
                question,
                backend=usable_backend(rt, body.backend),
                k=body.k,
                filters=body.filters.to_filters() if body.filters else None,
                history=history or None,
                qid=f"ask-{secrets.token_hex(6)}",
                deadline=deadline,
            )
            out = answer.to_dict()
            out["citations"] = citation_page_urls(out["citations"], _api_base(request))  # the page viewer
            return out

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
    async def api_health() -> JSONResponse:
        # On the event loop, not the thread pool: it waits for nothing (no load, no hashing), so
        # it answers in milliseconds even while every worker thread is busy or the index is broken.
        status, rt, error, problems = holder.state()
        if rt is None:
            code, kind = _status_of(error) if error is not None else (503, "unavailable")
            message = client_message(error) if error is not None else "正在加载向量模型和索引，请稍候。"
            return JSONResponse({"status": status, "error": {"message": message, "type": kind}}, status_code=code)
        index = rt.index
        docs = index.manifest.get("documents", {})
        return JSONResponse(
            {
                "status": status,
                "index_version": index.version,
                "model": model_label(index.manifest.get("model", {}).get("name")),
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
                "problems": problems,
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
            if body.model in {f"{MODEL_NAME}-{b}" for b in BACKENDS}:
                usable_backend(rt, body.model.removeprefix(f"{MODEL_NAME}-"))  # raises the 503
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
                "citations": citation_page_urls([c.to_dict() for c in answer.citations], _api_base(request)),
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
                    if status >= 500:
                        log.error("流式回答失败：%s: %s", type(exc).__name__, exc)
                    err = {"error": {"message": client_message(exc), "type": kind}}
                    yield f"data: {json.dumps(err, ensure_ascii=False)}\n\n"
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
                    citations=citation_page_urls([c.to_dict() for c in answer.citations], _api_base(request)),
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

    add_page_routes(app, holder)

    known = {getattr(r, "path", "") for r in app.routes}

    @app.api_route("/api/{rest:path}", methods=CATCH_ALL_METHODS, include_in_schema=False)
    @app.api_route("/v1/{rest:path}", methods=CATCH_ALL_METHODS, include_in_schema=False)
    def api_not_found(request: Request) -> JSONResponse:
        # Without this, unknown /api and /v1 paths (and OPTIONS on known ones) would fall through
        # to the page mounted at "/" and get Gradio's {"detail": ...} instead of our error shape.
        path = route_path(request.scope)
        if path in known:
            allow = sorted({m for r in app.routes if getattr(r, "path", "") == path for m in getattr(r, "methods", ())})
            response = _error(405, "该接口不支持此请求方法。", "http_error")
            response.headers["Allow"] = ", ".join([*allow, "HEAD"] if "GET" in allow else allow)
            return response
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

    def user_of(request: gr.Request | None) -> str | None:
        if request is None:
            return None
        client = getattr(request, "client", None)
        host = getattr(client, "host", None) if client else None
        return access.user_of(dict(request.headers), host)

    demo = build_ui(settings, holder, user_of=user_of)
    demo.queue(default_concurrency_limit=UI_CONCURRENCY, max_size=serve.ui_queue_size)
    demo.state_session_capacity = serve.ui_max_sessions  # oldest page sessions' state is dropped beyond

    def page_sessions() -> Any:
        queue = getattr(demo, "_queue", None)
        return getattr(queue, "pending_messages_per_session", None)

    def stream_client(scope: Scope) -> str | None:
        client = scope.get("client")
        host = client[0] if client else "-"
        user = access.sso_user(Headers(scope=scope), host)
        if user:
            return f"user:{user}"
        # Behind a trusted proxy everyone shares its address: only the total applies there.
        return None if access.is_trusted_proxy(host) else host

    # Middleware, innermost first: the page's Gradio surface is reduced to what the page uses;
    # access control sees the final path; CORS answers preflights before credentials are asked
    # for; HEAD on the API is answered as GET; the root-path fix runs before everything.
    app.add_middleware(PageSurface, serve=serve, sessions=page_sessions, client_key=stream_client)
    app.add_middleware(AccessControl, access=access)
    origins = list(serve.cors_origins)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=origins,
        allow_credentials="*" not in origins,
        allow_methods=["GET", "POST", "OPTIONS"],
        allow_headers=["*"],
    )
    app.add_middleware(HeadAsGet)
    app.add_middleware(RootPath, root_path=serve.root_path, access=access)
    install_request_log_filter()  # uvicorn's access log: no query-string secrets, no forged lines

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
        # Only our gr.Error lines reach the page; any other exception's text (paths, module names)
        # stays in the log.
        show_error=False,
        # The page takes no files and PageSurface closes the upload route; this limit is a second guard.
        max_file_size="1kb",
    )
    return app


# --------------------------------------------------------------------------------------------------
# The printed page beside the answer (rag.pageview)
#
# GET /api/page/{doc_id}/{page_index}.png?quote=…   the page with the quote marked (API clients);
#                                                   &focus=true: only the lines around it
# GET /api/page/{doc_id}/{page_index}.pdf           that page alone, to download
# GET /page/{doc_id}/{page_index}.png|.pdf          the same for the chat page (<img> cannot send a
#                                                   bearer token; these sit behind the page login)
# Both pairs pass through AccessControl like every other route. ``page_index`` is 0-based (the
# citations' ``page_index``); the document must be a PDF of the live index.


def citation_page_urls(citations: list[dict[str, Any]], base: str) -> list[dict[str, Any]]:
    """Citation dicts with ``page_image_url`` / ``page_pdf_url`` (None for text sources)."""
    from rag.pageview import page_urls

    out = []
    for c in citations:
        c = dict(c)
        if c.get("page_index") is not None and c.get("doc_id"):
            c.update(page_urls(c["doc_id"], int(c["page_index"]), c.get("quote"), base))
        else:
            c.update(page_image_url=None, page_pdf_url=None)
        out.append(c)
    return out


def _api_base(request: Request) -> str:
    return f"{request.scope.get('root_path', '')}/api"


def add_page_routes(app: FastAPI, holder: RuntimeHolder) -> None:
    from fastapi import Query
    from fastapi.responses import Response

    from rag.errors import NotFoundError
    from rag.pageview import MAX_QUOTE_CHARS, PageViewer, cache_dir_of

    viewer = PageViewer()
    app.state.page_viewer = viewer
    quote_param = Query(None, max_length=MAX_QUOTE_CHARS, description="要标出的引用句（原文）")
    focus_param = Query(False, description="只返回引用句附近（所在栏及上下几行），便于在侧栏中阅读")

    def page_png(
        doc_id: str, page_index: int, quote: str | None = quote_param, focus: bool = focus_param
    ) -> Response:
        index = holder.get().index
        try:
            data, match = viewer.png(index.manifest, cache_dir_of(index.path), doc_id, page_index, quote, focus)
        except NotFoundError as exc:
            return _error(404, str(exc), "not_found")
        # private: the page may be behind a login; short: a rebuilt index may change the page
        headers = {"Cache-Control": "private, max-age=600", "X-Quote-Match": match}
        return Response(data, media_type="image/png", headers=headers)

    def page_pdf(doc_id: str, page_index: int) -> Response:
        from urllib.parse import quote as urlquote

        index = holder.get().index
        try:
            data, name = viewer.pdf(index.manifest, cache_dir_of(index.path), doc_id, page_index)
        except NotFoundError as exc:
            return _error(404, str(exc), "not_found")
        headers = {
            "Cache-Control": "private, max-age=600",
            "Content-Disposition": f"attachment; filename=\"page-{page_index + 1}.pdf\"; "
            f"filename*=UTF-8''{urlquote(name, safe='')}",
        }
        return Response(data, media_type="application/pdf", headers=headers)

    formats = (
        ("png", page_png, "引用页面：PDF 原页图像，引用句以黄色标出", "image/png"),
        ("pdf", page_pdf, "引用页面：下载该页（单页 PDF）", "application/pdf"),
    )
    for prefix, tags, schema in (("/api", ["api"], True), ("", ["page"], False)):
        for ext, handler, summary, media in formats:
            app.add_api_route(
                prefix + "/page/{doc_id}/{page_index:int}." + ext,
                handler,
                methods=["GET"],
                summary=summary,
                tags=tags,
                include_in_schema=schema,
                response_class=Response,
                response_model=None,
                responses={200: {"content": {media: {}}}, 404: {"description": "没有该文档或页"}},
            )


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
