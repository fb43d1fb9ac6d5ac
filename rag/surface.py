"""The Gradio mount reduced to what the chat page uses, with a bound on what that costs.

Gradio serves far more than the page needs: a programmatic API (``/gradio_api/call/*``,
``/run/*``, ``/api/*``), uploads into its temp folder, deep-link state files, a dev-mode reload
stream, monitoring and login routes. None of them is used by the page, and several were found to
misbehave when called directly (a 500 with a ``KeyError`` in the log, a connection held forever,
files written per request and never deleted). :class:`PageSurface` answers only an allow-list:

* the page and its code: ``/``, ``/config``, ``/theme.css``, ``/favicon.ico``, ``/manifest.json``,
  ``/robots.txt``, ``/static/*``, ``/assets/*``;
* the page's event protocol: ``POST /gradio_api/queue/join``, ``GET /gradio_api/queue/data``,
  ``GET /gradio_api/heartbeat/<session>``, ``POST /gradio_api/cancel`` and ``/reset``, and
  ``GET /gradio_api/info`` (the web component reads it).

Everything else under the mount gets our JSON 404/405. What remains is bounded:

* a POST body is read here, up to ``RAG_UI_MAX_BODY_BYTES``, before Gradio sees it (413 beyond);
* the page's long-lived streams (heartbeat and queue data) are counted per client and in total,
  ``RAG_UI_MAX_STREAMS_PER_CLIENT`` / ``RAG_UI_MAX_STREAMS`` (429 beyond); a stream's slot is
  freed the moment it closes;
* ``queue/data`` for a session the queue does not know answers a clean 404 instead of starting a
  stream that Gradio then aborts with a traceback.

Uploads are not served at all, so nothing is ever written under Gradio's temp folder; the number
of sessions whose state is kept in memory and the length of the event queue are set where the
page is mounted (``rag.serve``).
"""

from __future__ import annotations

import json
import re
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rag.config import ServeSettings

# Routes served by our FastAPI app itself, not by the Gradio mount.
# /page/: the chat page's copy of the page-viewer routes (behind the page login, see rag.pageview).
OWN_PREFIXES = ("/api/", "/v1/", "/docs/", "/page/")
OWN_PATHS = frozenset({"/api", "/v1", "/docs", "/openapi.json", "/gradio.js"})

_PAGE_GET = frozenset(
    {
        "/",
        "/config",
        "/config/",
        "/theme.css",
        "/favicon.ico",
        "/manifest.json",
        "/robots.txt",
        "/gradio_api/info",
        "/gradio_api/info/",
        "/gradio_api/queue/data",
    }
)
_PAGE_GET_PREFIXES = ("/static/", "/assets/")
_HEARTBEAT = re.compile(r"/gradio_api/heartbeat/[A-Za-z0-9_-]{1,64}")
_PAGE_POST = frozenset({"/gradio_api/queue/join", "/gradio_api/cancel", "/gradio_api/reset"})
_STREAMS = "/gradio_api/queue/data"


def route_path(scope: Scope) -> str:
    """The request's path below the app's root path (``/qa/api/ask`` -> ``/api/ask``)."""
    path: str = scope["path"]
    root = scope.get("root_path", "")
    if root and (path == root or path.startswith(root + "/")):
        path = path[len(root) :]
    return path or "/"


def is_own_route(path: str) -> bool:
    """True for the JSON API, the OpenAPI page and the web-component loader."""
    return path in OWN_PATHS or path.startswith(OWN_PREFIXES)


def is_page_stream(path: str) -> bool:
    """True for the page's long-lived event streams (heartbeat, queue data)."""
    return path == _STREAMS or bool(_HEARTBEAT.fullmatch(path))


def page_route(method: str, path: str) -> str | None:
    """Which kind of page route ``method path`` is: "get", "post", "stream"; None if not the page's."""
    if is_page_stream(path):
        return "stream" if method == "GET" else "wrong-method"
    if path in _PAGE_GET or path.startswith(_PAGE_GET_PREFIXES):
        return "get" if method in ("GET", "HEAD") else "wrong-method"
    if path in _PAGE_POST:
        return "post" if method == "POST" else "wrong-method"
    return None


async def _json(send: Send, status: int, message: str, kind: str, headers: dict[str, str] | None = None) -> None:
    body = json.dumps({"error": {"message": message, "type": kind}}, ensure_ascii=False).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class StreamSlots:
    """Counts open page streams per client and in total; thread-safe (the counts are tiny)."""

    def __init__(self, per_client: int, total: int) -> None:
        self.per_client = per_client
        self.total = total
        self._open: Counter[str] = Counter()
        self._lock = threading.Lock()

    def take(self, client: str | None) -> bool:
        """One more stream for ``client`` (None: counted in the total only), if a slot is free."""
        key = client or ""
        with self._lock:
            if sum(self._open.values()) >= self.total or (client and self._open[key] >= self.per_client):
                return False
            self._open[key] += 1
            return True

    def give(self, client: str | None) -> None:
        client = client or ""
        with self._lock:
            self._open[client] -= 1
            if self._open[client] <= 0:
                del self._open[client]

    def open_count(self) -> int:
        with self._lock:
            return sum(self._open.values())


class PageSurface:
    """ASGI middleware in front of the Gradio mount: allow-list, body limit, stream slots.

    Args:
        app: the app to protect (our FastAPI app with Gradio mounted at ``/``).
        serve: the limits (``ui_max_body_bytes``, ``ui_max_streams_per_client``, ``ui_max_streams``).
        sessions: returns the session ids the Gradio queue currently knows, or None if it cannot
            tell (then ``queue/data`` is passed through unchecked).
        client_key: who a request is for the per-client count: the SSO user behind a trusted
            proxy, else the peer address; None for a trusted proxy without an SSO user (many
            people share its address, so only the total applies).
    """

    def __init__(
        self,
        app: ASGIApp,
        serve: ServeSettings,
        sessions: Callable[[], Any],
        client_key: Callable[[Scope], str | None],
    ) -> None:
        self.app = app
        self.max_body = serve.ui_max_body_bytes
        self.slots = StreamSlots(serve.ui_max_streams_per_client, serve.ui_max_streams)
        self.sessions = sessions
        self.client_key = client_key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        path = route_path(scope)
        if is_own_route(path):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":  # the page's protocol is HTTP (SSE); no Gradio websocket is needed
            await send({"type": "websocket.close", "code": 1008})
            return
        method = scope["method"]
        kind = page_route(method, path)
        if kind is None:
            await _json(send, 404, "未找到该页面或接口；问答页面在 /，接口文档在 /docs。", "http_error")
        elif kind == "wrong-method":
            await _json(send, 405, "该接口不支持此请求方法。", "http_error")
        elif kind == "post":
            await self._post(scope, receive, send)
        elif kind == "stream":
            await self._stream(scope, receive, send, path)
        else:
            await self.app(scope, receive, send)

    async def _post(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Read the whole (small) body here so an endless or huge one never reaches Gradio."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                await _json(send, 413, f"请求体过大（上限 {self.max_body} 字节）。", "invalid_request")
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: wait for the disconnect, as a server would

        await self.app(scope, replay, send)

    async def _stream(self, scope: Scope, receive: Receive, send: Send, path: str) -> None:
        if path == _STREAMS:
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            session = (query.get("session_hash") or [""])[0]
            known = self.sessions()
            if not session or (known is not None and session not in known):
                await _json(send, 404, "会话不存在或已结束：请刷新问答页面后重新提问。", "http_error")
                return
        client = self.client_key(scope)
        if not self.slots.take(client):
            await _json(
                send, 429, "打开的问答页面连接过多：请关闭多余的页面后再试。", "rate_limited", {"Retry-After": "5"}
            )
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self.slots.give(client)


__all__ = ["PageSurface", "StreamSlots", "page_route", "is_own_route", "is_page_stream"]
