"""Log lines that client text cannot forge, and request logs that never hold a secret.

Two rules, because log files are read by people and parsed by tools that split on line breaks:

* **Client text is a quoted field.** A question, a user name or a request path is written as one
  JSON string literal (:func:`log_text`): line breaks, control characters, the Unicode line and
  paragraph separators and bidi overrides become ``\\n``/``\\u2028``… escapes, so
  ``"工会\\n2026-11-28 … INFO rag.serve: /api/ask user=admin"`` stays inside one line and one field.
* **A request target keeps no query values** except the few the page needs to be debuggable
  (:func:`safe_target`): a token pasted into ``?access_token=…`` is refused by the server and is
  not written to uvicorn's access log either. :class:`RequestLogFilter` applies both to uvicorn's
  own loggers, whose lines we do not format ourselves.
"""

from __future__ import annotations

import json
import logging
import re
from urllib.parse import parse_qsl

# What json.dumps leaves as is but a terminal or a log viewer may treat as a line break or a
# reordering of the line: C1 controls (NEL \x85), DEL, zero-width and bidi controls, LS/PS, BOM.
_UNSAFE = re.compile(r"[\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff\ufff9-\ufffb]")
_UNSAFE_RAW = re.compile(r"[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff\ufff9-\ufffb]")
# Query parameters the page uses; their values are session ids and cache busters, not secrets.
KEPT_QUERY_KEYS = frozenset({"session_hash", "v", "fn_index", "__theme"})
_TARGET_CHARS = 400  # a request target longer than this is cut in the log


def _u_escape(m: re.Match[str]) -> str:
    return f"\\u{ord(m.group()):04x}"


def log_text(value: object) -> str:
    """``value`` as one JSON string literal with every line-breaking or invisible character escaped.

    Chinese stays readable (no ``\\uXXXX`` for ordinary characters); ``"`` and ``\\`` are escaped,
    so the field cannot be closed early either.
    """
    return _UNSAFE.sub(_u_escape, json.dumps(str(value), ensure_ascii=False))


def escape_raw(text: str) -> str:
    """``text`` with control and invisible characters escaped, unquoted (for request paths)."""
    return _UNSAFE_RAW.sub(_u_escape, text.replace("\\", "\\\\"))


def safe_target(target: str) -> str:
    """A request target (path and query) fit for a log line: no secrets, no line breaks.

    Query values are kept only for :data:`KEPT_QUERY_KEYS`; every other pair is replaced by ``…``
    (its name too: a client may put a token where a name belongs).
    """
    path, sep, query = target.partition("?")
    out = escape_raw(path)
    if sep:
        pairs = []
        for key, value in parse_qsl(query, keep_blank_values=True):
            pairs.append(f"{key}={escape_raw(value)}" if key in KEPT_QUERY_KEYS else "…")
        out += "?" + "&".join(pairs)
    if len(out) > _TARGET_CHARS:
        out = out[:_TARGET_CHARS] + "…"
    return out


class RequestLogFilter(logging.Filter):
    """Rewrites uvicorn's access and error records: request targets through :func:`safe_target`.

    uvicorn formats ``'%s - "%s %s HTTP/%s" %d'`` with the decoded path and the raw query (and
    ``'%s - "WebSocket %s" …'`` for websockets); any string argument that starts with ``/`` is a
    request target. The filter never drops a record.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and args:
            record.args = tuple(
                safe_target(a) if isinstance(a, str) and a.startswith("/") else a for a in args
            )
        return True


def install_request_log_filter() -> None:
    """Attach :class:`RequestLogFilter` to uvicorn's loggers once per process.

    Filters live on the logger, and ``logging.config.dictConfig`` (which uvicorn runs at start)
    replaces handlers but keeps a logger's filters, so installing before ``uvicorn.run`` holds.
    """
    for name in ("uvicorn.access", "uvicorn.error"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RequestLogFilter) for f in logger.filters):
            logger.addFilter(RequestLogFilter())


__all__ = ["log_text", "safe_target", "escape_raw", "RequestLogFilter", "install_request_log_filter"]
