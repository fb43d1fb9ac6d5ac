"""What a client may read about a server-side failure: the fix, never the server's insides.

The library's errors are written for the person who runs the server (``rag index build`` names
the index folder, the LLM loader names the missing Python module and ``make install-llm``). A
browser or API client should get one Chinese line that says what to do, and nothing that maps
the server: no folder or file path, no module name, no internal URL. :func:`client_message`
chooses that line by the error's class; the detail stays in the server log (the API's error
handler and the page log it).

Errors whose class is not known here (a new subclass) pass through :func:`scrub`, which cuts
absolute paths, URLs and Python module references, so a future message cannot leak by default.
"""

from __future__ import annotations

import re

from rag.errors import (
    BackendUnavailable,
    IndexMismatchError,
    IndexMissingError,
    InputError,
    ModelError,
    RagError,
)

INDEX_MISSING = (
    "索引尚未构建：请管理员在服务器上运行 `rag index build data/`（或 `make index`），"
    "完成后无需重启，服务会自动加载。"
)
INDEX_BROKEN = (
    "索引暂不可用（与当前模型或设置不一致，或文件已损坏）：请管理员运行 `rag index build data/` "
    "重建索引，详情见服务器日志。"
)
MODEL_BROKEN = "模型暂无法加载：请管理员查看服务器日志并按提示修复。"
BACKEND_DOWN = (
    "所选回答方式当前不可用：请改用“摘录原文”（extractive，见 /api/health 的 backends），"
    "或请管理员查看服务器日志。"
)
SERVER_ERROR = "服务器内部错误，请稍后再试或联系管理员。"
FEEDBACK_FAILED = "评价暂未保存：请稍后再试；如持续失败，请联系管理员（详情见服务器日志）。"

_PATH = re.compile(r"(?<![\w.:/])(?:~|\.{1,2})?/(?:[^\s/'\"`，。；：（）()]+/)*[^\s/'\"`，。；：（）()]*")
_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://\S+", re.IGNORECASE)
_MODULE = re.compile(r"No module named\s+\S+|\bmodule\s+'[^']+'|\b[a-z_][a-z0-9_]*\.[a-z_][a-z0-9_.]*\b(?=[:(])")


def scrub(text: str) -> str:
    """``text`` without absolute/relative paths, URLs or Python module references (each becomes …)."""
    text = _URL.sub("…", text)
    text = _MODULE.sub("…", text)
    return _PATH.sub(lambda m: m.group() if m.group() in ("/", "/docs") else "…", text)


def client_message(exc: RagError) -> str:
    """The one line a client sees for ``exc``: what to do, with no server detail."""
    if isinstance(exc, InputError):
        return str(exc)  # about the client's own request; it names the field and the valid values
    if isinstance(exc, IndexMissingError):
        return INDEX_MISSING
    if isinstance(exc, IndexMismatchError):
        return INDEX_BROKEN
    if isinstance(exc, ModelError):
        return MODEL_BROKEN
    if isinstance(exc, BackendUnavailable) and type(exc).__name__ != "GenerationTimeout":
        return BACKEND_DOWN
    if type(exc) is RagError:
        return SERVER_ERROR
    return scrub(str(exc))


__all__ = ["client_message", "scrub", "FEEDBACK_FAILED", "SERVER_ERROR", "BACKEND_DOWN"]
