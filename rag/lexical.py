"""Text normalisation and the BM25 side of retrieval.

Both questions and passages are normalised the same way before matching: NFKC (full-width
digits/letters to half-width), lower case, Traditional -> Simplified (OpenCC), thousands
separators removed. The displayed text always stays the original.
"""

from __future__ import annotations

import json
import re
import tempfile
import threading
import unicodedata
from collections.abc import Sequence
from functools import cached_property
from importlib import resources
from pathlib import Path

import bm25s
import numpy as np
import opencc
import scipy.sparse as sp

_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}\b)")
# "word count tag" lines of jieba's dictionary whose tag marks a name: nr person, ns place,
# nt organisation, nz other proper noun (nrt/nrfg are kinds of nr).
_NAME_LINE = re.compile(r"^(\S+) \d+ (n[rstz])", re.MULTILINE)
_PUNCT_OR_SPACE = re.compile(r"[\s\W_]+", re.UNICODE)
# Spoken interrogatives and the written ones they stand for, longest first: "为啥说…早就有基础了"
# asks a reason as "为什么" does. Neither carries content.
SPOKEN_INTERROGATIVES: tuple[tuple[str, str], ...] = (
    ("为啥", "为什么"),
    ("干嘛", "为什么"),
    ("啥时候", "什么时候"),
    ("多会儿", "什么时候"),
    ("干啥", "做什么"),
    ("咋样", "怎样"),
    ("咋", "怎么"),
    ("啥", "什么"),
)
# Question scaffolding that carries no content; dropping it keeps BM25 from matching on it.
STOPWORDS = frozenset(
    """的 了 是 在 和 与 及 或 也 都 就 而 把 被 让 对 从 为 以 于 等 个 这 那 之 其 中 上 下
    有 没有 吗 呢 吧 啊 么 什么 哪 哪个 哪些 哪里 哪儿 哪位 谁 几 多少 怎么 怎样 如何 为什么 为何
    请问 一下 请 告诉 我 我们 你 你们 他们 它 这个 那个 这些 那些 这次 本刊 文章 一 次 呀 要 能
    会 可以 什么样 是否 还 又 即 但 并 该 所 着 过 地 得 这样 那么 方面 有没有 是不是 多 呀 号
    咋么 啥样""".split()
) | {spoken for spoken, _ in SPOKEN_INTERROGATIVES}


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


# The commonest Chinese surnames: an unknown two- or three-character word starting with one is
# most likely a person's name (jieba's dictionary knows few names; its HMM keeps them whole).
SURNAMES = frozenset(
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢"
    "姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤温欧"
)


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

    @cached_property
    def _name_kinds(self) -> dict[str, str]:
        """jieba's dictionary words that are names, with their kind (112k words, ~19 MB, ~0.5 s).

        The same tags ``jieba.posseg`` gives dictionary words, looked up instead of decoded: its
        HMM over unknown characters costs ~7 ms per character (15 s for 2,000 of 龘).
        """
        with self._jieba.get_dict_file() as f:
            data = f.read().decode("utf-8")
        return dict(_NAME_LINE.findall(data))

    def frequency(self, word: str) -> int:
        """``word``'s count in jieba's dictionary; 0: not in it (jieba's HMM made it up: often a name)."""
        return int(self._jieba.FREQ.get(word, 0) or 0)

    def known(self, word: str) -> bool:
        """Whether ``word`` is in jieba's dictionary."""
        return self.frequency(word) > 0

    def name_kind(self, word: str) -> str | None:
        """"ns" (place), "nt" (organisation), "nr" (person), "nz" (other name) or None."""
        return self._name_kinds.get(word)

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
        return self.expand(self.words(self.normalize(text)))

    def expand(self, words: list[str]) -> list[str]:
        """BM25 tokens from :meth:`words`' output: the words plus bigrams of long CJK words."""
        tokens = list(words)
        for w in words:
            if len(w) > 2 and _is_cjk(w):
                tokens.extend(w[i : i + 2] for i in range(len(w) - 1))
        return tokens


def whole_words(words: list[str]) -> list[str]:
    """:meth:`ChineseTokenizer.words` without the parts search mode adds before a long word.

    Search mode emits "总工", "工会", "总工会" before "市总工会"; text built from its output reads
    better (and embeds closer to the original) with the long word alone. One backward pass.
    """
    out: list[str] = []
    for w in reversed(words):
        if out and w in out[-1]:
            continue
        out.append(w)
    return out[::-1]


def _is_cjk(word: str) -> bool:
    return all("\u4e00" <= ch <= "\u9fff" for ch in word)


class BM25Index:
    """BM25 over token lists: bm25s computes the scores, queries take the exact top n.

    bm25s stores the BM25 score of every (term, chunk) pair in a sparse matrix with one column
    per term, so a query's score is a sum of columns. Summing every column of a common term is
    what made one query cost ~30 ms at a million chunks; :meth:`top` instead uses MaxScore
    (Turtle & Flood, 1995): the columns of rare, high-scoring terms are summed first, and once
    the n-th best partial score exceeds what all remaining terms could still add, only the chunks
    already in the running are looked up in the remaining columns. The result is the same top n
    as scoring everything (tests compare both), at a fraction of the work.

    The arrays can be saved and loaded memory-mapped, so starting a server does not re-tokenise
    or re-index the corpus.
    """

    # Below this many chunks summing every column is already fast and needs no bookkeeping.
    PRUNE_FROM = 20_000
    _FILES = ("bm25_data.npy", "bm25_indices.npy", "bm25_indptr.npy", "bm25_max.npy")
    _META = "bm25_vocab.json"

    def __init__(
        self,
        vocab: dict[str, int],
        data: np.ndarray,
        indices: np.ndarray,
        indptr: np.ndarray,
        size: int,
        max_impact: np.ndarray | None = None,
    ) -> None:
        self._vocab = vocab
        # Plain ndarray views of (possibly memory-mapped) arrays: slicing an np.memmap builds a
        # memmap object each time, which costs more than the scoring on a small index.
        self._data = np.asarray(data)  # float32 scores, column by column
        self._indices = np.asarray(indices)  # chunk ids, ascending within a column
        self._indptr = np.asarray(indptr)  # column t is data[indptr[t]:indptr[t + 1]]
        self.size = size
        self._max = np.asarray(max_impact) if max_impact is not None else _column_max(self._data, self._indptr)

    @classmethod
    def build(cls, corpus_tokens: Sequence[list[str]]) -> BM25Index:
        """Index token lists (one per chunk, in chunk order)."""
        if not corpus_tokens:  # an index whose last document was removed; bm25s needs one
            empty = np.zeros(0, dtype=np.float32)
            return cls({}, empty, np.zeros(0, dtype=np.int32), np.zeros(1, dtype=np.int64), 0)
        bm = bm25s.BM25()
        # bm25s refuses an empty document; a placeholder token keeps ids aligned.
        docs = [toks if toks else ["\u2400"] for toks in corpus_tokens]
        bm.index(docs, show_progress=False)
        n_terms = len(bm.scores["indptr"]) - 1
        m = sp.csc_matrix(
            (bm.scores["data"], bm.scores["indices"], bm.scores["indptr"]), shape=(len(docs), n_terms)
        )
        m.sort_indices()  # MaxScore looks chunks up by binary search within a column
        # bm25s adds an empty-string token of its own that no chunk contains; leave it out.
        vocab = {t: int(i) for t, i in bm.vocab_dict.items() if t and int(i) < n_terms}
        return cls(
            vocab,
            np.asarray(m.data, dtype=np.float32),
            np.asarray(m.indices, dtype=np.int32),
            np.asarray(m.indptr, dtype=np.int64),
            len(docs),
        )

    def save(self, directory: Path) -> list[str]:
        """Write the index into ``directory``; returns the file names written."""
        for name, arr in zip(self._FILES, (self._data, self._indices, self._indptr, self._max), strict=True):
            np.save(directory / name, arr)
        meta = {"size": self.size, "vocab": self._vocab}
        (directory / self._META).write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
        return [*self._FILES, self._META]

    @classmethod
    def files(cls) -> tuple[str, ...]:
        """The file names :meth:`save` writes."""
        return (*cls._FILES, cls._META)

    @classmethod
    def load(cls, directory: Path, mmap: bool = True) -> BM25Index:
        """Load a saved index; with ``mmap`` the arrays stay on disk and are paged in on use.

        A server does not use ``mmap``: a mapped file truncated under it kills the process with
        SIGBUS (rag.index reads the arrays itself, verified, and calls :meth:`from_saved`).
        """
        mode = "r" if mmap else None
        arrays = [np.load(directory / n, mmap_mode=mode) for n in cls._FILES]
        return cls.from_saved(arrays, (directory / cls._META).read_bytes())

    @classmethod
    def from_saved(cls, arrays: Sequence[np.ndarray], vocab_file: bytes) -> BM25Index:
        """An index from the arrays of :meth:`files` (in that order) and the vocabulary file's bytes."""
        data, indices, indptr, max_impact = arrays
        meta = json.loads(vocab_file.decode("utf-8"))
        return cls(meta["vocab"], data, indices, indptr, int(meta["size"]), max_impact)

    @property
    def nbytes(self) -> int:
        """Bytes of the score arrays (the vocabulary dict not included)."""
        return int(self._data.nbytes + self._indices.nbytes + self._indptr.nbytes + self._max.nbytes)

    def doc_freq(self, token: str) -> int:
        """How many chunks contain ``token``."""
        t = self._vocab.get(token)
        return 0 if t is None else int(self._indptr[t + 1] - self._indptr[t])

    def _term_ids(self, query_tokens: list[str]) -> list[int]:
        return [self._vocab[t] for t in dict.fromkeys(query_tokens) if t in self._vocab]

    def _column(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        a, b = int(self._indptr[t]), int(self._indptr[t + 1])
        return self._indices[a:b], self._data[a:b]

    def _sum_columns(self, terms: list[int]) -> np.ndarray:
        acc = np.zeros(self.size, dtype=np.float32)
        for t in terms:
            idx, val = self._column(t)
            acc[idx] += val  # ids are unique within a column
        return acc

    def scores(self, query_tokens: list[str]) -> np.ndarray:
        """BM25 score of every chunk, shape (n,); zeros when no token is known."""
        return self._sum_columns(self._term_ids(query_tokens)).astype(np.float32)

    def score_ids(self, query_tokens: list[str], ids: np.ndarray) -> np.ndarray:
        """BM25 scores of the chunks ``ids`` only (binary search in each query term's column)."""
        ids = np.asarray(ids, dtype=np.int64)
        out = np.zeros(len(ids), dtype=np.float64)
        for t in self._term_ids(query_tokens):
            _add_column(out, ids, *self._column(t))
        return out.astype(np.float32)

    def top(
        self, query_tokens: list[str], n: int, mask: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``n`` best-scoring chunks with a positive score, best first, and their scores.

        ``mask`` (bool, one per chunk) restricts the result to the chunks it allows. Ties are
        broken by chunk id, so the answer does not depend on the pruning.
        """
        terms = self._term_ids(query_tokens)
        if not terms or n <= 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        if self.size < self.PRUNE_FROM:
            acc = self._sum_columns(terms)
            if mask is not None:
                acc = np.where(mask, acc, 0.0)
            cand = np.flatnonzero(acc > 0)
            return _best(cand, acc[cand], n)
        return self._top_maxscore(terms, n, mask)

    def _top_maxscore(self, terms: list[int], n: int, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        # Highest possible contribution first: rare terms have short columns and high scores.
        terms = sorted(terms, key=lambda t: -float(self._max[t]))
        bound = np.cumsum([float(self._max[t]) for t in terms][::-1])[::-1]  # bound[i]: terms i.. at most
        acc = np.zeros(self.size, dtype=np.float32)
        theta = 0.0  # a lower bound of the final n-th best score: the n-th best partial score so far
        since_theta = self.size  # postings added since theta was computed
        best_seen = 0.0
        split = len(terms)
        for i, t in enumerate(terms):
            idx, val = self._column(t)
            acc[idx] += val
            since_theta += len(idx)
            best_seen = max(best_seen, float(acc[idx].max(initial=0.0)))
            rest = float(bound[i + 1]) if i + 1 < len(terms) else 0.0
            # Computing theta scans the running chunks: do it only when it can end this phase
            # and enough has been added since the last time to move it.
            if rest < best_seen and rest >= theta and since_theta >= self.size // 4:
                theta = max(theta, _nth_largest(acc[_in_running(acc, mask)], n))
                since_theta = 0
            if rest < theta or rest == 0.0:
                split = i + 1  # a chunk none of terms[:split] hits cannot reach the top n
                break
        cand = _in_running(acc, mask)
        part = acc[cand]
        for j in range(split, len(terms)):
            # Drop chunks that cannot reach the n-th best even with every remaining term.
            if len(part) > n and (j == split or len(part) < 64 * n or (j - split) % 4 == 0):
                theta = max(theta, _nth_largest(part, n))
                keep = part + float(bound[j]) >= theta
                cand, part = cand[keep], part[keep]
            col_ids, col_vals = self._column(terms[j])
            if len(cand) * 16 < len(col_ids):
                _add_column(part, cand, col_ids, col_vals)  # few chunks left: binary search
            else:
                # Many chunks still in the running: adding the whole column is cheaper than
                # searching it for each of them (acc is stale for non-candidates from here on).
                acc[col_ids] += col_vals
                part = acc[cand]
        return _best(cand, part, n)

    def __len__(self) -> int:
        return self.size


def _column_max(data: np.ndarray, indptr: np.ndarray) -> np.ndarray:
    """Largest score in each column (0 for an empty one)."""
    out = np.zeros(len(indptr) - 1, dtype=np.float32)
    nonempty = np.flatnonzero(np.diff(indptr) > 0)
    if len(nonempty):
        out[nonempty] = np.maximum.reduceat(np.asarray(data), np.asarray(indptr)[nonempty])
    return out


def _add_column(acc: np.ndarray, ids: np.ndarray, col_ids: np.ndarray, col_vals: np.ndarray) -> None:
    """``acc[k] += score of ids[k] in the column`` for the ids the column contains."""
    if not len(ids) or not len(col_ids):
        return
    pos = np.searchsorted(col_ids, ids)
    pos_c = np.minimum(pos, len(col_ids) - 1)
    found = col_ids[pos_c] == ids
    acc[found] += col_vals[pos_c[found]]


def _in_running(acc: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """Chunks with a partial score that ``mask`` allows, ascending (one linear scan: cheaper than
    merging the id lists of the columns added so far, which can hold millions of ids)."""
    ids = np.flatnonzero(acc > 0)
    return ids if mask is None else ids[mask[ids]]


def _nth_largest(values: np.ndarray, n: int) -> float:
    """The n-th largest value (0 when there are fewer than n)."""
    if len(values) < n:
        return 0.0
    return float(np.partition(values, len(values) - n)[len(values) - n])


def _best(ids: np.ndarray, scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The n highest (score, then lower id) among ``ids``, best first."""
    keep = scores > 0
    ids, scores = ids[keep], scores[keep]
    if len(ids) > n:
        part = np.argpartition(-scores, n - 1)[:n]
        # Everything tied with the n-th score must compete on id, not on partition order.
        cut = scores[part].min()
        part = np.flatnonzero(scores >= cut)
        ids, scores = ids[part], scores[part]
    order = np.lexsort((ids, -scores))[:n]
    return ids[order].astype(np.int64), scores[order].astype(np.float32)
