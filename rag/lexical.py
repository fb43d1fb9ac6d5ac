"""Text normalisation and the BM25 side of retrieval.

Both questions and passages are normalised the same way before matching: NFKC (full-width
digits/letters to half-width), lower case, Traditional -> Simplified (OpenCC), thousands
separators removed. The displayed text always stays the original.
"""

from __future__ import annotations

import re
import tempfile
import threading
import unicodedata
from collections.abc import Sequence
from functools import cached_property
from importlib import resources

import bm25s
import numpy as np
import opencc

_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}\b)")
_PUNCT_OR_SPACE = re.compile(r"[\s\W_]+", re.UNICODE)
# Question scaffolding that carries no content; dropping it keeps BM25 from matching on it.
STOPWORDS = frozenset(
    """的 了 是 在 和 与 及 或 也 都 就 而 把 被 让 对 从 为 以 于 等 个 这 那 之 其 中 上 下
    有 没有 吗 呢 吧 啊 么 什么 哪 哪个 哪些 哪里 哪儿 哪位 谁 几 多少 怎么 怎样 如何 为什么 为何
    请问 一下 请 告诉 我 我们 你 你们 他们 它 这个 那个 这些 那些 这次 本刊 文章 一 次 呀 要 能
    会 可以 什么样 是否 还 又 即 但 并 该 所 着 过 地 得 这样 那么 方面 有没有 是不是 多 呀 号""".split()
)


class TextNormalizer:
    """NFKC + lower case + Traditional->Simplified; thread-safe (OpenCC objects are not)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._t2s = opencc.OpenCC("t2s")

    def simplified(self, text: str) -> str:
        """Traditional -> Simplified only: what the embedding model sees on both sides."""
        with self._lock:
            return self._t2s.convert(text)

    def __call__(self, text: str) -> str:
        text = unicodedata.normalize("NFKC", text).lower()
        text = _THOUSANDS.sub("", text)
        with self._lock:
            return self._t2s.convert(text)


class ChineseTokenizer:
    """jieba (search mode) over normalised text, with the union-domain user dictionary.

    Tokens are jieba words plus the character bigrams of every CJK word longer than two
    characters, so a paraphrase that shares part of a compound still matches.
    """

    def __init__(self, normalizer: TextNormalizer | None = None) -> None:
        self.normalize = normalizer or TextNormalizer()
        self._lock = threading.Lock()

    @cached_property
    def _jieba(self):  # loaded on first use: about a second
        import jieba

        tok = jieba.Tokenizer()
        tok.tmp_dir = tempfile.gettempdir()
        with resources.as_file(resources.files("rag") / "resources" / "union_terms.txt") as path:
            tok.load_userdict(str(path))
        tok.initialize()
        return tok

    def words(self, text: str) -> list[str]:
        """Content words of already-normalised text (stopwords and punctuation dropped)."""
        jb = self._jieba
        with self._lock:
            raw = jb.lcut_for_search(text)
        out = []
        for w in raw:
            w = w.strip()
            if not w or w in STOPWORDS or _PUNCT_OR_SPACE.fullmatch(w):
                continue
            out.append(w)
        return out

    def __call__(self, text: str) -> list[str]:
        norm = self.normalize(text)
        words = self.words(norm)
        tokens = list(words)
        for w in words:
            if len(w) > 2 and _is_cjk(w):
                tokens.extend(w[i : i + 2] for i in range(len(w) - 1))
        return tokens


def _is_cjk(word: str) -> bool:
    return all("\u4e00" <= ch <= "\u9fff" for ch in word)


class BM25Index:
    """BM25 over token lists (bm25s sparse matrices); scores every chunk for a query."""

    def __init__(self, corpus_tokens: Sequence[list[str]]) -> None:
        self._bm25 = bm25s.BM25()
        # bm25s refuses an empty document; a placeholder token keeps ids aligned.
        docs = [toks if toks else ["\u2400"] for toks in corpus_tokens]
        self._bm25.index(docs, show_progress=False)
        self._vocab = self._bm25.vocab_dict
        self.size = len(docs)

    def scores(self, query_tokens: list[str]) -> np.ndarray:
        """BM25 score of every document, shape (n,); zeros when no token is known."""
        known = [t for t in dict.fromkeys(query_tokens) if t in self._vocab]
        if not known:
            return np.zeros(self.size, dtype=np.float32)
        return np.asarray(self._bm25.get_scores(known), dtype=np.float32)
