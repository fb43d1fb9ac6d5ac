"""The loaded state a process answers with: settings, embedder, index, answer backends.

Only this object holds state; every stage is a function that takes what it needs from it.
A server swaps in a rebuilt index atomically with ``reload_if_changed``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from rag.config import Settings
from rag.errors import BackendUnavailable
from rag.index import LoadedIndex, current_generation, load_index


@dataclass
class Runtime:
    settings: Settings
    embedder: Any
    index: LoadedIndex
    _backends: dict[str, Any] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

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

    def available_backends(self) -> list[str]:
        names = ["extractive"]
        try:
            from rag.answer import llm

            names += [b for b in llm.available_backends(self.settings) if b not in names]
        except Exception:  # noqa: BLE001 - an optional extra that fails to import is simply absent
            pass
        return names

    def reload_if_changed(self) -> bool:
        """Load a newer index generation if one was built; the swap is one reference assignment."""
        gen = current_generation(self.settings.index.dir)
        if gen is None or gen == self.index.path:
            return False
        new = load_index(self.settings, self.embedder)
        self.index = new
        return True


def load_runtime(settings: Settings) -> Runtime:
    """Load the embedding model and the live index (raises IndexMissingError if none)."""
    from rag.embed import load_embedder

    embedder = load_embedder(settings.embed)
    index = load_index(settings, embedder)
    index.tokenizer("工会")  # load jieba's dictionary now, not on the first question (1-2 s)
    index.tokenizer.name_kind("工会")  # and its table of names, which follow-up questions use
    return Runtime(settings=settings, embedder=embedder, index=index)
