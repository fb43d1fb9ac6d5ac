"""The loaded state a process answers with: settings, embedder, index, answer backends.

Only this object holds state; every stage is a function that takes what it needs from it.
A server swaps in a rebuilt index by assigning ``index`` (rag.serve.RuntimeHolder).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rag.config import Settings
from rag.errors import BackendUnavailable
from rag.index import LoadedIndex, check_embedder, load_index

BACKENDS_TTL_S = 60.0  # how long the list of usable answer backends is reused


@dataclass
class Runtime:
    settings: Settings
    embedder: Any
    index: LoadedIndex
    _backends: dict[str, Any] = field(default_factory=dict)
    _reader: Any = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _available: tuple[float, tuple[Any, ...], list[str]] | None = field(default=None, repr=False)

    def chat_backend(self, name: str) -> Any:
        """The generated-answer backend ``name`` ("llm" or "openai"), created once."""
        with self._lock:
            if name not in self._backends:
                try:
                    from rag.answer import llm
                except ImportError as exc:  # pragma: no cover - the module ships with the package
                    raise BackendUnavailable(f"生成式后端不可用：{exc}") from exc
                if name == "llm":
                    self._backends[name] = llm.LlamaCppBackend(self.settings.llm, self.settings.embed.cache_dir)
                elif name == "openai":
                    if not self.settings.openai.base_url:
                        raise BackendUnavailable("未配置 OpenAI 兼容服务：请设置 RAG_OPENAI_BASE_URL。")
                    self._backends[name] = llm.OpenAICompatBackend(self.settings.openai)
                else:
                    raise BackendUnavailable(f"未知的回答后端 {name!r}；可选：extractive、llm、openai。")
            return self._backends[name]

    @property
    def reader(self) -> Any:
        """The fitted sentence scorer (:class:`rag.answer.reader.ReaderModel`), loaded once."""
        if self._reader is None:
            from rag.answer.reader import load_reader

            self._reader = load_reader(self.settings.answer.reader)
        return self._reader

    def available_backends(self) -> list[str]:
        """The answer backends usable here; remembered for ``BACKENDS_TTL_S``, because finding the
        local model's files scans the installed packages (~50 ms), too slow for every health check."""
        gguf = self.settings.llm.gguf
        # A configured model file that appears or disappears changes the answer at once (one stat).
        key = (self.settings.openai.base_url, gguf, gguf is not None and Path(gguf).expanduser().is_file())
        now = time.monotonic()
        cached = self._available
        if cached is not None and cached[1] == key and now - cached[0] < BACKENDS_TTL_S:
            return list(cached[2])
        names = ["extractive"]
        try:
            from rag.answer import llm

            names += [b for b in llm.available_backends(self.settings) if b not in names]
        except Exception:  # noqa: BLE001 - an optional extra that fails to import is simply absent
            pass
        self._available = (now, key, names)
        return list(names)



def load_runtime(settings: Settings, for_questions: bool = True) -> Runtime:
    """Load the live index and the embedding model (raises IndexMissingError if no index).

    The index comes first: a missing, damaged or unreadable one is reported in a second,
    not after the model has loaded. ``for_questions``: also load the faster question encoder
    (worth it for many questions, not for one).
    """
    from rag.embed import load_embedder

    index = load_index(settings)
    embedder = load_embedder(settings.embed, for_questions=for_questions)
    check_embedder(index.manifest, embedder)
    index.tokenizer("工会")  # load jieba's dictionary now, not on the first question (1-2 s)
    index.tokenizer.name_kind("工会")  # and its table of names, which follow-up questions use
    return Runtime(settings=settings, embedder=embedder, index=index)
