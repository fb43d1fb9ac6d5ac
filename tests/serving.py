"""Helpers for the HTTP and browser tests: real servers on 127.0.0.1 in background threads.

* :class:`AppServer` runs an ASGI app under uvicorn on a free loopback port.
* :class:`PrefixProxy` is a tiny reverse proxy that serves a backend under ``/qa`` and strips the
  prefix, as ``location /qa/ { proxy_pass http://backend/; }`` does in nginx.
* :class:`StaticSite` serves a few HTML files, to embed the chat page from another origin.
* :func:`tiny_runtime` indexes a one-page document (with hostile HTML in it) with the real model.
"""

from __future__ import annotations

import http.client
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import uvicorn

ENV = {"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
CHROMIUM = "/usr/lib/chromium/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]

EVIL_DOC = """# 恶意测试文档

--- 第 7 页 ---

## 职工书屋建设情况

某区总工会今年新建职工书屋12家。<script>alert(1)</script>书屋配备图书3000册，<img src=x onerror="alert(2)">全天向职工开放。
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AppServer:
    """uvicorn serving ``app`` on 127.0.0.1 in a daemon thread; ``url`` has no trailing slash."""

    def __init__(self, app: Any, port: int | None = None) -> None:
        self.port = port or free_port()
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", proxy_headers=False, lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name=f"uvicorn-{self.port}", daemon=True)
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> AppServer:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # close-delimited responses: SSE streams pass through as they come
    backend: tuple[str, int]
    prefix: str

    def log_message(self, *args: object) -> None:  # keep test output quiet
        pass

    def _forward(self) -> None:
        if not (self.path == self.prefix or self.path.startswith(self.prefix + "/")):
            self.send_error(404, "outside the proxied prefix")
            return
        path = self.path[len(self.prefix) :] or "/"
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "keep-alive")}
        headers["X-Forwarded-Host"] = self.headers.get("Host", "")
        headers["X-Forwarded-Proto"] = "http"
        conn = http.client.HTTPConnection(*self.backend, timeout=120)
        conn.request(self.command, path, body=body, headers=headers)
        resp = conn.getresponse()
        self.send_response(resp.status, resp.reason)
        for k, v in resp.getheaders():
            if k.lower() not in ("transfer-encoding", "connection", "content-length", "keep-alive"):
                self.send_header(k, v)
        self.send_header("Connection", "close")
        self.end_headers()
        try:
            while True:
                data = resp.read1(65536)
                if not data:
                    break
                self.wfile.write(data)
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the browser closed a stream (page closed): normal for SSE
        finally:
            conn.close()

    do_GET = do_POST = do_PUT = do_DELETE = do_OPTIONS = do_HEAD = _forward


class PrefixProxy:
    """Serves ``http://127.0.0.1:<port>/qa/...`` from ``backend_port`` with the prefix stripped."""

    def __init__(self, backend_port: int, prefix: str = "/qa") -> None:
        handler = type(
            "Handler", (_ProxyHandler,), {"backend": ("127.0.0.1", backend_port), "prefix": prefix}
        )
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}{prefix}"

    def __enter__(self) -> PrefixProxy:
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class StaticSite:
    """Serves ``pages`` ({path: html}) on a loopback port: the intranet page that embeds the chat."""

    def __init__(self, pages: dict[str, str], port: int | None = None) -> None:
        store = {p: html.encode() for p, html in pages.items()}

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                body = store.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port or 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> StaticSite:
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def with_serve(settings: Any, **serve: Any) -> Any:
    """A copy of ``settings`` with some ServeSettings fields replaced."""
    return settings.model_copy(update={"serve": settings.serve.model_copy(update=serve)})


def tiny_runtime(folder: Path, embedder: Any, base_settings: Any) -> Any:
    """A runtime over a one-article Markdown document containing <script> and onerror HTML."""
    from rag.config import IndexSettings
    from rag.index import build_index, load_index
    from rag.runtime import Runtime

    docs = folder / "docs"
    docs.mkdir(parents=True, exist_ok=True)
    (docs / "evil.md").write_text(EVIL_DOC, encoding="utf-8")
    settings = base_settings.model_copy(
        update={
            "data_dir": docs,
            "index": IndexSettings(dir=folder / "index"),
            "serve": base_settings.serve.model_copy(update={"feedback_db": folder / "feedback.sqlite"}),
        }
    )
    build_index([docs], settings, embedder)
    return Runtime(settings=settings, embedder=embedder, index=load_index(settings, embedder))
