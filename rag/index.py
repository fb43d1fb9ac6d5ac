"""The persistent index: chunk records, their vectors, a FAISS index and BM25 tokens.

Layout under ``settings.index.dir``::

    CURRENT                 name of the live generation (switched atomically)
    gen-<time>-<rand>/      manifest.json, chunks.jsonl, tokens.jsonl, vectors.npy, dense.faiss,
                            bm25_*.npy + bm25_vocab.json (the stored BM25 index)
    .lock                   held while a build writes

A build writes a whole new generation beside the live one and only then replaces
``CURRENT``, so a crash or Ctrl-C mid-build leaves the previous index usable. Unchanged
documents keep their vectors from the previous generation: adding next month's issue
embeds only that issue.

A generation is immutable once switched in: its files are made read-only and nothing rewrites
them; a repair is a new generation (`rag index build`, or `rag index restore` from a backup).
Loading reads every file once, into process memory, hashing the very bytes it parses, so what
is served is exactly what was verified, and nothing done to the files afterwards (a truncate,
a `cp` over them) can reach a running server: no file stays memory-mapped, so no SIGBUS.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import hashlib
import json
import math
import os
import re
import secrets
import shutil
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from rag import __version__
from rag.chunk import chunk_document
from rag.config import ChunkSettings, IndexSettings, Settings
from rag.errors import IndexMismatchError, IndexMissingError, RagError, os_reason, storage_error
from rag.ingest import IngestFailure, load_paths
from rag.lexical import BM25Index, ChineseTokenizer, TextNormalizer
from rag.support import Piece, chunk_pieces
from rag.types import Chunk, Document

# 2: the BM25 index is stored (it was rebuilt from tokens.jsonl on every load).
# 3: sentence vectors (pieces.npy, pieces_ptr.npy) for the reader.
FORMAT_VERSION = 3
# Bump when ingest/chunking logic changes in a way that alters chunks for the same settings.
# 3: chunks of PDFs carry their physical pages and where each page begins (``page_starts``).
CHUNKER_VERSION = 3
CURRENT = "CURRENT"
PIECE_FILES = ("pieces.npy", "pieces_ptr.npy")
FILES = ("chunks.jsonl", "tokens.jsonl", "vectors.npy", "dense.faiss", *BM25Index.files(), *PIECE_FILES)
MANIFEST = "manifest.json"
# Up to this many chunks the corpus's normalised text is held in memory and searched directly
# (corpus_has, names in pinyin); past it only the BM25 vocabulary is consulted.
MAX_TEXT_SCAN_CHUNKS = 20_000
READ_ONLY = 0o444  # generation files: a live generation is never rewritten in place
_BLOCK = 16 << 20  # read size when hashing and loading
REBUILD = "请运行 `rag index build data/` 重建，或用 `rag index restore <备份>` 从备份恢复。"
WRITE_FIX = "请把 RAG_INDEX_DIR 指向服务账户可写、空间足够的文件夹后重试；当前索引未受影响。"

# What a generation's files look like on disk: (name, inode, size, mtime_ns, ctime_ns) per file.
Signature = tuple[tuple[Any, ...], ...]

Progress = Callable[[str, int, int], None]


class EmbedderLike:  # documentation only: what the index needs of an embedder
    name: str
    fingerprint: str
    dim: int

    def encode_passages(self, texts: list[str], show_progress: bool = False) -> np.ndarray: ...


# A table-of-contents entry starts with its page number: "05 产业工人工资增长机制的困境与突破".
_PAGE_PREFIX = re.compile(r"^\s*(?:\d{1,3}|[封第][^\s]{0,3})\s*")

@dataclass
class LoadedIndex:
    """An index generation in memory, ready to search."""

    path: Path
    manifest: dict[str, Any]
    chunks: list[Chunk]
    vectors: np.ndarray  # (n, dim) float32, L2-normalised
    dense: faiss.Index
    bm25: BM25Index
    tokenizer: ChineseTokenizer
    _pieces: dict[int, tuple[list[Piece], str]] = field(default_factory=dict, repr=False)
    _article_pages: dict[tuple[str, str], tuple[str, ...]] | None = field(default=None, repr=False)
    _norms: dict[int, str] = field(default_factory=dict, repr=False)
    _article_norms: dict[tuple[str, str], str] = field(default_factory=dict, repr=False)
    _article_rows: dict[tuple[str, str], list[int]] | None = field(default=None, repr=False)
    _corpus_norm: str | None = field(default=None, repr=False)
    _corpus_squashed: str | None = field(default=None, repr=False)
    _titles: set[str] | None = field(default=None, repr=False)
    # What later stages derive once per generation (e.g. the masthead lines the bridge reads).
    derived: dict[str, Any] = field(default_factory=dict, repr=False)
    # Sentence vectors of every chunk's pieces (rows ``piece_ptr[i]:piece_ptr[i+1]`` are chunk i's),
    # stored at build time so that a question embeds only itself; None for in-memory indexes,
    # whose piece vectors are computed on first use and cached.
    piece_matrix: np.ndarray | None = None
    piece_ptr: np.ndarray | None = None
    _piece_vecs: dict[int, np.ndarray] = field(default_factory=dict, repr=False)
    _position: dict[str, int] | None = field(default=None, repr=False)

    @classmethod
    def in_memory(
        cls,
        chunks: list[Chunk],
        tokens: list[list[str]],
        vectors: np.ndarray,
        settings: IndexSettings,
        tokenizer: ChineseTokenizer | None = None,
        path: Path = Path("<memory>"),
    ) -> LoadedIndex:
        """An index built from records without writing a generation (benchmarks over many corpora)."""
        return cls(
            path=path,
            manifest={"chunk_count": len(chunks)},
            chunks=chunks,
            vectors=vectors,
            dense=make_dense_index(vectors, settings),
            bm25=BM25Index.build(tokens),
            tokenizer=tokenizer or ChineseTokenizer(),
        )

    @property
    def version(self) -> str:
        return self.path.name

    def idf(self, term: str) -> float:
        """Inverse document frequency of a normalised term over the chunks (high when unseen)."""
        n = len(self.chunks)
        return math.log((n + 1) / (self.bm25.doc_freq(term) + 0.5))

    def article_pages(self, chunk: Chunk) -> tuple[str, ...]:
        """All printed pages of the chunk's article, in reading order."""
        if self._article_pages is None:  # one pass over the chunks, not one per question
            table: dict[tuple[str, str], dict[str, None]] = {}
            for c in self.chunks:
                pages = table.setdefault((c.doc_id, c.article), {})
                for p in c.pages:
                    pages.setdefault(p, None)
            self._article_pages = {key: tuple(pages) for key, pages in table.items()}
        return self._article_pages.get((chunk.doc_id, chunk.article), chunk.pages)

    def prepare(self) -> None:
        """Build the per-generation lookups the answer layer would otherwise build on the first
        question that needs them (目录 titles, the corpus text for ``corpus_has``, article pages)."""
        if self.chunks:
            self.is_title_line("")
            self.corpus_has("")
            self.article_pages(self.chunks[0])

    def is_title_line(self, norm_text: str) -> bool:
        """Whether a normalised line is a 目录 entry: a page number, then some article's title."""
        if self._titles is None:
            self._titles = {self.tokenizer.normalize(c.article) for c in self.chunks if len(c.article) >= 4}
        prefix = _PAGE_PREFIX.match(norm_text)
        return bool(prefix and prefix.group(0).strip()) and norm_text[prefix.end() :].strip() in self._titles

    def corpus_has(
        self, norm_text: str, max_scan_chunks: int = MAX_TEXT_SCAN_CHUNKS, ignore_space: bool = False
    ) -> bool:
        """Whether any chunk contains ``norm_text`` (normalised), titles and units included.

        Up to ``max_scan_chunks`` chunks the text itself is searched (kept in memory once, a few
        MB for an issue); past that, each of its words must be in the BM25 vocabulary, so a
        million-chunk index never holds a second copy of its text. ``ignore_space``: line breaks
        and letter-spacing inside the phrase do not matter (a PDF wraps a quoted name).
        """
        if len(self.chunks) > max_scan_chunks:
            words = self.tokenizer(norm_text)
            return bool(words) and all(self.bm25.doc_freq(w) > 0 for w in words)
        if ignore_space:
            if self._corpus_squashed is None:
                self._corpus_squashed = "".join(self.corpus_text().split())
            return "".join(norm_text.split()) in self._corpus_squashed
        return norm_text in self.corpus_text()

    def corpus_text(self) -> str:
        """Every chunk's normalised text with its article and unit (built once, a few MB an issue)."""
        if self._corpus_norm is None:
            self._corpus_norm = "\n".join(
                self.tokenizer.normalize(f"{c.article} {c.unit or ''} {c.text}") for c in self.chunks
            )
        return self._corpus_norm

    def article_norm(self, chunk: Chunk, max_chunks: int = 40) -> str:
        """Normalised text of the chunk's whole article with its title and unit (cached); "" when
        the chunk has no article or the "article" is too long to be one (a corpus of snippets)."""
        if self._article_rows is None:
            rows: dict[tuple[str, str], list[int]] = {}
            for i, c in enumerate(self.chunks):
                rows.setdefault((c.doc_id, c.article), []).append(i)
            self._article_rows = rows
        key = (chunk.doc_id, chunk.article)
        got = self._article_norms.get(key)
        if got is None:
            rows_of = self._article_rows.get(key, [])
            if not chunk.article or len(rows_of) > max_chunks:
                got = ""
            else:
                head = self.tokenizer.normalize(f"{chunk.article} {chunk.unit or ''} {chunk.section or ''}")
                got = "\n".join([head, *(self.chunk_norm(i) for i in rows_of)])
            self._article_norms[key] = got
        return got

    def chunk_norm(self, i: int) -> str:
        """Normalised text of chunk ``i`` (for sentence chunks, its pieces' texts joined; cached)."""
        got = self._norms.get(i)
        if got is None:
            chunk = self.chunks[i]
            if chunk.kind == "meta":
                got = self.tokenizer.normalize(chunk.text)
            else:
                got = "\n".join(p.norm for p in self.pieces(i)[0])
            self._norms[i] = got
        return got

    def position(self, chunk: Chunk) -> int:
        """Row of ``chunk`` in this index (chunks are looked up by id; built once)."""
        return self.position_of(chunk.chunk_id)

    def position_of(self, chunk_id: str) -> int:
        """Row of the chunk with this id (a citation's ``chunk_id``)."""
        if self._position is None:
            self._position = {c.chunk_id: i for i, c in enumerate(self.chunks)}
        return self._position[chunk_id]

    def piece_vectors(self, i: int, embedder: EmbedderLike) -> np.ndarray:
        """e5 passage vectors of chunk ``i``'s pieces, ``(len(pieces(i)[0]), dim)`` float32.

        Read from the stored matrix when the generation has one whose rows match the pieces;
        otherwise encoded now and cached (benchmark indexes, or a generation built by an
        older version whose sentence splitting differs).
        """
        pieces = self.pieces(i)[0]
        if self.piece_matrix is not None and self.piece_ptr is not None:
            a, b = int(self.piece_ptr[i]), int(self.piece_ptr[i + 1])
            if b - a == len(pieces):
                return np.asarray(self.piece_matrix[a:b], dtype=np.float32)
        got = self._piece_vecs.get(i)
        if got is None:
            texts = [piece_text(p.shown, self.tokenizer.normalize) for p in pieces]
            got = (
                embedder.encode_passages(texts)
                if texts
                else np.zeros((0, self.vectors.shape[1]), dtype=np.float32)
            )
            self._piece_vecs[i] = got
        return got

    def pieces(self, i: int) -> tuple[list[Piece], str]:
        """Sentences/rows of chunk ``i`` with normalised text, and its normalised title (cached)."""
        got = self._pieces.get(i)
        if got is None:
            chunk = self.chunks[i]
            got = (chunk_pieces(chunk, self.tokenizer), self.tokenizer.normalize(chunk.article))
            self._pieces[i] = got  # a race only computes the same value twice
        return got


@dataclass
class BuildReport:
    """What a build/add/remove did."""

    changed: bool
    generation: str | None
    documents: list[str] = field(default_factory=list)
    embedded_chunks: int = 0
    reused_chunks: int = 0
    total_chunks: int = 0
    removed: list[str] = field(default_factory=list)
    failures: list[IngestFailure] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "changed": self.changed,
            "generation": self.generation,
            "documents": self.documents,
            "embedded_chunks": self.embedded_chunks,
            "reused_chunks": self.reused_chunks,
            "total_chunks": self.total_chunks,
            "removed": self.removed,
            "failures": [{"path": str(f.path), "error": f.message} for f in self.failures],
            "seconds": round(self.seconds, 2),
        }


def embedding_text(chunk: Chunk, normalizer: TextNormalizer) -> str:
    """The text embedded and BM25-indexed for a chunk: its article title gives it context.

    Traditional characters are mapped to Simplified so that a question in either script
    meets a passage in either script (the stored chunk text stays as printed).
    """
    text = chunk.text if chunk.kind == "meta" else f"{chunk.article}\n{chunk.text}"
    return normalizer.simplified(text)


def piece_text(shown: str, normalizer: TextNormalizer) -> str:
    """The text embedded for one sentence or table row (Traditional mapped to Simplified)."""
    return normalizer.simplified(shown)


def chunking_fingerprint(settings: ChunkSettings) -> str:
    payload = json.dumps({"v": CHUNKER_VERSION, **settings.model_dump(mode="json")}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(_BLOCK), b""):
            h.update(block)
    return h.hexdigest()


def current_generation(index_dir: Path) -> Path | None:
    """The live generation folder, or None when nothing has been built.

    An unreadable pointer raises IndexMismatchError (a build replaces it); a garbled one is None.
    """
    pointer = index_dir / CURRENT
    try:
        if not pointer.exists():
            return None
        name = pointer.read_text(encoding="utf-8", errors="replace").strip()
    except OSError as exc:
        raise IndexMismatchError(f"索引指针 {CURRENT} 无法读取：{os_reason(exc)}；{REBUILD}") from None
    if not re.fullmatch(r"gen-[0-9A-Za-z-]+", name):
        return None  # garbled pointer: treated as no index, so `rag index build` repairs it
    path = index_dir / name
    return path if path.is_dir() else None


def generation_signature(gen: Path) -> Signature:
    """What the generation's files look like on disk (inode, size, times), from a dozen ``stat``s.

    Cheap enough to take every few seconds; any rewrite, truncate, copy over, chmod or
    replacement of a file changes it, so a server re-verifies only when this changes.
    """
    out: list[tuple[Any, ...]] = [(gen.name,)]
    for fn in (MANIFEST, *FILES):
        try:
            st = (gen / fn).stat()
        except OSError as exc:
            out.append((fn, exc.errno))
            continue
        out.append((fn, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
    return tuple(out)


def read_manifest(index_dir: Path) -> dict[str, Any] | None:
    """The live generation's manifest as stored (not verified), or None when nothing is built."""
    gen = current_generation(index_dir)
    if gen is None or not (gen / MANIFEST).exists():
        return None
    return _parse_manifest(gen, strict=False)


def check_writable(index_dir: Path) -> None:
    """Raise StorageError now if a build could not write into ``index_dir`` (before a model loads)."""
    try:
        index_dir.mkdir(parents=True, exist_ok=True)
        with (index_dir / ".lock").open("a"):
            pass
        with tempfile.NamedTemporaryFile(dir=index_dir, prefix=".probe-"):
            pass
    except OSError as exc:
        raise storage_error(exc, "写入索引目录", index_dir, WRITE_FIX) from None


@contextlib.contextmanager
def _build_lock(index_dir: Path) -> Iterator[None]:
    check_writable(index_dir)
    try:
        fh = (index_dir / ".lock").open("w")
    except OSError as exc:
        raise storage_error(exc, "写入索引目录", index_dir, WRITE_FIX) from None
    with fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RagError(f"另一个索引构建正在进行（{index_dir}/.lock）；请等它结束后再试。") from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def make_dense_index(vectors: np.ndarray, settings: IndexSettings) -> faiss.Index:
    """Exact inner product below ``exact_threshold`` vectors, HNSW above it."""
    dim = vectors.shape[1]
    if len(vectors) < settings.exact_threshold:
        index: faiss.Index = faiss.IndexFlatIP(dim)
    else:
        index = faiss.IndexHNSWFlat(dim, settings.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = settings.hnsw_ef_construction
        index.hnsw.efSearch = settings.hnsw_ef_search
    if len(vectors):
        index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return index


# --------------------------------------------------------------------------------------------------
# Reading a generation: each file once, into memory, hashing the bytes that are parsed


def _damaged(gen: Path, fn: str) -> IndexMismatchError:
    return IndexMismatchError(f"索引文件 {fn}（{gen.name}）已损坏或被修改（校验和不符）；{REBUILD}")


def _unreadable(gen: Path, fn: str, exc: Exception) -> IndexMismatchError:
    if isinstance(exc, OSError) and exc.errno in (errno.EACCES, errno.EPERM):
        fix = "请让运行本程序的账户能读取索引文件夹，或用它运行 `rag index build data/` 重建。"
        return IndexMismatchError(f"索引文件 {fn}（{gen.name}）无法读取：{os_reason(exc)}；{fix}")
    reason = os_reason(exc) if isinstance(exc, OSError) else "内容无效"
    return IndexMismatchError(f"索引文件 {fn}（{gen.name}）无法读取：{reason}；{REBUILD}")


class _Reader:
    """Reads one generation's files, checking each against the manifest's sha256 (unless None).

    The arrays are read into private memory with ``readinto`` while hashing, so loading costs
    one pass over the disk and the served copy is the verified one; none stays memory-mapped.
    """

    def __init__(self, gen: Path, checksums: dict[str, str] | None) -> None:
        self.gen = gen
        self.checksums = checksums

    def _check(self, fn: str, digest: str) -> None:
        if self.checksums is not None and digest != self.checksums.get(fn):
            raise _damaged(self.gen, fn)

    def raw(self, fn: str) -> bytes:
        try:
            data = (self.gen / fn).read_bytes()
        except OSError as exc:
            raise _unreadable(self.gen, fn, exc) from None
        self._check(fn, hashlib.sha256(data).hexdigest())
        return data

    def lines(self, fn: str) -> list[Any]:
        """A JSON-lines file, one parsed value per non-empty line."""
        data = self.raw(fn)
        try:
            return [json.loads(line) for line in data.decode("utf-8").splitlines() if line.strip()]
        except ValueError as exc:
            raise _unreadable(self.gen, fn, exc) from None

    def array(self, fn: str) -> np.ndarray:
        try:
            with (self.gen / fn).open("rb") as f:
                arr, digest = _read_npy(f)
        except OSError as exc:
            raise _unreadable(self.gen, fn, exc) from None
        except ValueError:
            raise (_damaged if self.checksums is not None else _unreadable)(self.gen, fn) from None
        self._check(fn, digest)
        return arr

    def verify(self, fn: str) -> None:
        """Hash a file without keeping it."""
        try:
            digest = _sha256_file(self.gen / fn)
        except OSError as exc:
            raise _unreadable(self.gen, fn, exc) from None
        self._check(fn, digest)

    def dense(self, fn: str) -> faiss.Index:
        path = self.gen / fn
        if self.checksums is not None:
            self.verify(fn)
        try:
            # faiss copies the file into its own memory; a file changed after the hash is
            # caught by the size checks in load_generation or raises here.
            return faiss.read_index(str(path))
        except OSError as exc:
            raise _unreadable(self.gen, fn, exc) from None
        except RuntimeError as exc:
            raise _unreadable(self.gen, fn, exc) from None


def _read_npy(f: Any) -> tuple[np.ndarray, str]:
    """(array, sha256 of the whole file) from an open ``.npy`` file; ValueError if short or odd."""
    fmt = np.lib.format
    version = fmt.read_magic(f)
    if version == (1, 0):
        shape, fortran, dtype = fmt.read_array_header_1_0(f)
    elif version == (2, 0):
        shape, fortran, dtype = fmt.read_array_header_2_0(f)
    else:
        raise ValueError(f"unsupported .npy version {version}")
    if dtype.hasobject:
        raise ValueError("object arrays are never stored")  # and would need pickle
    header = f.tell()
    f.seek(0)
    h = hashlib.sha256(f.read(header))
    # Fortran order is the transpose of a C-ordered buffer of the reversed shape.
    buf = np.empty(shape[::-1] if fortran else shape, dtype=dtype)
    view = memoryview(buf.reshape(-1)).cast("B") if buf.size else memoryview(b"")
    got = 0
    while got < len(view):
        n = f.readinto(view[got : got + _BLOCK])
        if not n:
            raise ValueError("file shorter than its header says")
        h.update(view[got : got + n])
        got += n
    for block in iter(lambda: f.read(_BLOCK), b""):
        h.update(block)  # trailing bytes: none in a file np.save wrote, and they change the hash
    return (buf.T if fortran else buf), h.hexdigest()


def _parse_manifest(gen: Path, strict: bool = True) -> dict[str, Any]:
    """The generation's manifest, checked for shape and format version (not the files' hashes)."""
    try:
        manifest = json.loads((gen / MANIFEST).read_bytes().decode("utf-8"))
    except (OSError, ValueError) as exc:
        raise _unreadable(gen, MANIFEST, exc) from None
    if not strict and isinstance(manifest, dict):
        return manifest
    if isinstance(manifest, dict) and manifest.get("format_version") != FORMAT_VERSION:
        raise _format_error(manifest)
    if not isinstance(manifest, dict) or set(manifest.get("checksums") or {}) != set(FILES):
        raise IndexMismatchError(f"索引清单 {MANIFEST}（{gen.name}）不完整；{REBUILD}")
    return manifest


def _load_generation_records(gen: Path) -> tuple[dict[str, Any], list[Chunk], list[list[str]], np.ndarray]:
    """Manifest, chunks, tokens and vectors of a generation (what a build reuses), after checking
    every file: a generation with any damaged file is rebuilt, never kept by a no-op build."""
    manifest = _parse_manifest(gen)
    r = _Reader(gen, manifest["checksums"])
    try:
        chunks = [Chunk.from_dict(d) for d in r.lines("chunks.jsonl")]
    except (KeyError, TypeError, ValueError) as exc:
        raise _unreadable(gen, "chunks.jsonl", exc) from None
    tokens, vectors = r.lines("tokens.jsonl"), r.array("vectors.npy")
    for fn in FILES:
        if fn not in ("chunks.jsonl", "tokens.jsonl", "vectors.npy"):
            r.verify(fn)
    return manifest, chunks, tokens, vectors


# --------------------------------------------------------------------------------------------------
# Writing a generation


def _write_generation(
    index_dir: Path,
    settings: Settings,
    embedder: EmbedderLike,
    docs_meta: dict[str, dict[str, Any]],
    chunks: list[Chunk],
    tokens: list[list[str]],
    vectors: np.ndarray,
    pieces: tuple[np.ndarray, np.ndarray],
) -> Path:
    name = _new_name()
    tmp = index_dir / f".build-{name}"
    try:
        tmp.mkdir(parents=True)
        with (tmp / "chunks.jsonl").open("w", encoding="utf-8") as f:
            for c in chunks:
                f.write(json.dumps(c.to_dict(), ensure_ascii=False) + "\n")
        with (tmp / "tokens.jsonl").open("w", encoding="utf-8") as f:
            for t in tokens:
                f.write(json.dumps(t, ensure_ascii=False) + "\n")
        np.save(tmp / "vectors.npy", vectors.astype(np.float32, copy=False))
        np.save(tmp / "pieces.npy", pieces[0].astype(np.float16, copy=False))
        np.save(tmp / "pieces_ptr.npy", pieces[1].astype(np.int64, copy=False))
        dense = make_dense_index(vectors, settings.index)
        _write_faiss(dense, tmp / "dense.faiss")
        BM25Index.build(tokens).save(tmp)
        manifest = {
            "format_version": FORMAT_VERSION,
            "package_version": __version__,
            "built_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "model": {"name": embedder.name, "fingerprint": embedder.fingerprint, "dim": int(embedder.dim)},
            "chunking": {"fingerprint": chunking_fingerprint(settings.chunk), **settings.chunk.model_dump()},
            "index_type": type(dense).__name__,
            "chunk_count": len(chunks),
            "documents": docs_meta,
            "checksums": {fn: _sha256_file(tmp / fn) for fn in FILES},
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, ensure_ascii=False, indent=2), encoding="utf-8")
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)  # a full disk gets its space back at once
        raise storage_error(exc, "写入新索引", tmp, WRITE_FIX) from None
    return _publish(index_dir, tmp, name)


def _write_faiss(dense: faiss.Index, path: Path) -> None:
    try:
        faiss.write_index(dense, str(path))
    except RuntimeError:  # faiss reports a failed write as RuntimeError, without the errno
        full = shutil.disk_usage(path.parent).free < (1 << 20)
        raise OSError(errno.ENOSPC if full else errno.EIO, "faiss write failed", str(path)) from None


def _new_name() -> str:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
    return f"gen-{stamp}-{secrets.token_hex(3)}"


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _publish(index_dir: Path, tmp: Path, name: str) -> Path:
    """Make a finished build read-only and durable, then switch ``CURRENT`` to it (the atomic step)."""
    final = index_dir / name
    switched = False
    try:
        for fn in (*FILES, MANIFEST):
            _fsync(tmp / fn)
            (tmp / fn).chmod(READ_ONLY)  # immutable from now on: a repair is a new generation
        _fsync(tmp)
        os.replace(tmp, final)
        pointer_tmp = index_dir / f".{CURRENT}.tmp"
        pointer_tmp.write_text(name, encoding="utf-8")
        _fsync(pointer_tmp)
        os.replace(pointer_tmp, index_dir / CURRENT)  # the atomic switch
        switched = True
        _fsync(index_dir)
    except OSError as exc:
        if not switched:
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.rmtree(final, ignore_errors=True)
            raise storage_error(exc, "写入新索引", index_dir, WRITE_FIX) from None
        # Switched but the folder's fsync failed: the new generation is live; say nothing.
    _cleanup(index_dir, keep={name})
    return final


def _cleanup(index_dir: Path, keep: set[str]) -> None:
    """Remove dead generations and half-written builds; a reader of an old one holds it in memory."""
    for p in index_dir.iterdir():
        if p.is_dir() and (p.name.startswith(".build-") or p.name.startswith("gen-")) and p.name not in keep:
            shutil.rmtree(p, ignore_errors=True)


def _doc_meta(doc: Document, n_chunks: int) -> dict[str, Any]:
    return {
        "title": doc.title,
        "path": doc.path,
        # the page viewer reopens the file (a PDF) whatever the server's working folder
        "source": str(Path(doc.path).resolve()),
        "content_hash": doc.content_hash,
        "loader": doc.loader,
        "chunks": n_chunks,
        "pages": list(doc.pages),
        "articles": [a.title for a in doc.articles if a.kind == "article"],
        # pages to check by hand (e.g. a scan OCR read with low confidence): `rag index status`
        "warnings": list(doc.warnings),
    }


def _compatible(manifest: dict[str, Any] | None, settings: Settings, embedder: EmbedderLike) -> bool:
    return bool(
        manifest
        and manifest.get("format_version") == FORMAT_VERSION
        and manifest["model"]["fingerprint"] == embedder.fingerprint
        and manifest["chunking"]["fingerprint"] == chunking_fingerprint(settings.chunk)
    )


def _update(
    settings: Settings,
    embedder: EmbedderLike,
    new_docs: list[Document],
    keep_old: Callable[[str], bool],
    failures: list[IngestFailure],
    progress: Progress | None,
) -> BuildReport:
    import time

    t0 = time.perf_counter()
    index_dir = settings.index.dir
    with _build_lock(index_dir):
        try:
            gen = current_generation(index_dir)
        except IndexMismatchError:
            gen = None  # an unreadable pointer: the switch below replaces it
        old: tuple[dict[str, Any], list[Chunk], list[list[str]], np.ndarray] | None = None
        if gen is not None:
            try:
                old = _load_generation_records(gen)
            except IndexMismatchError:
                old = None  # unreadable or altered: rebuild everything
        if old is not None and not _compatible(old[0], settings, embedder):
            old = None
        old_docs: dict[str, dict[str, Any]] = old[0]["documents"] if old else {}

        new_ids = {d.doc_id for d in new_docs}
        unchanged = {
            d.doc_id for d in new_docs if old_docs.get(d.doc_id, {}).get("content_hash") == d.content_hash
        }
        kept_old = {i for i in old_docs if i not in new_ids and keep_old(i)}
        removed = sorted(i for i in old_docs if i not in new_ids and i not in kept_old)
        to_embed = [d for d in new_docs if d.doc_id not in unchanged]
        if old is not None and not to_embed and not removed:
            _cleanup(index_dir, keep={gen.name})  # what a killed build left behind
            return BuildReport(
                changed=False,
                generation=gen.name if gen else None,
                documents=sorted(old_docs),
                reused_chunks=len(old[1]),
                total_chunks=len(old[1]),
                failures=failures,
                seconds=time.perf_counter() - t0,
            )

        chunks: list[Chunk] = []
        tokens: list[list[str]] = []
        parts: list[np.ndarray] = []
        docs_meta: dict[str, dict[str, Any]] = {}
        reused = 0
        if old is not None:
            _, ochunks, otokens, ovecs = old
            keep_ids = unchanged | kept_old
            rows = [i for i, c in enumerate(ochunks) if c.doc_id in keep_ids]
            chunks.extend(ochunks[i] for i in rows)
            tokens.extend(otokens[i] for i in rows)
            if rows:
                parts.append(ovecs[rows])
            reused = len(rows)
            docs_meta.update({i: old_docs[i] for i in keep_ids})

        tokenizer = ChineseTokenizer()
        fresh: list[Chunk] = []
        for doc in to_embed:
            doc_chunks = chunk_document(doc, settings.chunk)
            fresh.extend(doc_chunks)
            docs_meta[doc.doc_id] = _doc_meta(doc, len(doc_chunks))
        if fresh:
            texts = [embedding_text(c, tokenizer.normalize) for c in fresh]
            if progress:
                progress("embed", 0, len(texts))
            vecs = _encode_in_batches(embedder, texts, settings.embed.batch_size * 8, progress)
            parts.append(vecs)
            chunks.extend(fresh)
            tokens.extend(tokenizer(t) for t in texts)
        vectors = np.concatenate(parts) if parts else np.zeros((0, embedder.dim), dtype=np.float32)
        old_pieces = _old_piece_vectors(gen, old[1]) if old is not None and gen is not None else {}
        piece_arrays = piece_vectors_for(chunks, old_pieces, embedder, tokenizer, settings, progress)
        final = _write_generation(index_dir, settings, embedder, docs_meta, chunks, tokens, vectors, piece_arrays)
        return BuildReport(
            changed=True,
            generation=final.name,
            documents=sorted(docs_meta),
            embedded_chunks=len(fresh),
            reused_chunks=reused,
            total_chunks=len(chunks),
            removed=removed,
            failures=failures,
            seconds=time.perf_counter() - t0,
        )


def _old_piece_vectors(gen: Path, chunks: list[Chunk]) -> dict[str, np.ndarray]:
    """Sentence vectors of the previous generation by chunk id (empty when it has none)."""
    try:
        matrix = np.load(gen / "pieces.npy")
        ptr = np.load(gen / "pieces_ptr.npy")
    except (OSError, ValueError):
        return {}
    if len(ptr) != len(chunks) + 1:
        return {}
    return {c.chunk_id: matrix[ptr[i] : ptr[i + 1]] for i, c in enumerate(chunks)}


def piece_vectors_for(
    chunks: list[Chunk],
    reuse: dict[str, np.ndarray],
    embedder: EmbedderLike,
    tokenizer: ChineseTokenizer,
    settings: Settings,
    progress: Progress | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The reader's sentence vectors for every chunk: ``(matrix, ptr)``, chunk i's rows being
    ``matrix[ptr[i]:ptr[i+1]]``. Vectors of unchanged chunks are taken from ``reuse``."""
    texts_of = [[piece_text(p.shown, tokenizer.normalize) for p in chunk_pieces(c, tokenizer)] for c in chunks]
    todo = [
        t
        for c, texts in zip(chunks, texts_of, strict=True)
        if len(reuse.get(c.chunk_id, ())) != len(texts)
        for t in texts
    ]
    fresh = iter(())
    if todo:
        if progress:
            progress("sentences", 0, len(todo))
        fresh = iter(_encode_in_batches(embedder, todo, settings.embed.batch_size * 8, progress, "sentences"))
    rows: list[np.ndarray] = []
    ptr = [0]
    for c, texts in zip(chunks, texts_of, strict=True):
        old = reuse.get(c.chunk_id)
        if old is not None and len(old) == len(texts):
            rows.extend(np.asarray(old, dtype=np.float32))
        else:
            rows.extend(next(fresh) for _ in texts)
        ptr.append(len(rows))
    dim = int(embedder.dim)
    matrix = np.stack(rows).astype(np.float32) if rows else np.zeros((0, dim), dtype=np.float32)
    return matrix, np.asarray(ptr, dtype=np.int64)


def _encode_in_batches(
    embedder: EmbedderLike, texts: list[str], step: int, progress: Progress | None, stage: str = "embed"
) -> np.ndarray:
    # Big slices keep the model's own length-sorted batching effective while still reporting progress.
    out = []
    for i in range(0, len(texts), step):
        out.append(embedder.encode_passages(texts[i : i + step]))
        if progress:
            progress(stage, min(i + step, len(texts)), len(texts))
    return np.concatenate(out).astype(np.float32, copy=False)


def build_index(
    paths: list[Path], settings: Settings, embedder: EmbedderLike, progress: Progress | None = None
) -> BuildReport:
    """Make the index hold exactly the documents under ``paths``; a no-op when nothing changed."""
    docs, failures = load_paths(paths)
    if not docs and not failures:
        raise RagError(
            f"在 {', '.join(map(str, paths))} 中没有找到可索引的文件（支持 .txt .md .pdf .docx）。"
        )
    return _update(settings, embedder, docs, keep_old=lambda _: False, failures=failures, progress=progress)


def add_documents(
    paths: list[Path], settings: Settings, embedder: EmbedderLike, progress: Progress | None = None
) -> BuildReport:
    """Add (or replace) the documents under ``paths``, keeping every other document as it is."""
    docs, failures = load_paths(paths)
    return _update(settings, embedder, docs, keep_old=lambda _: True, failures=failures, progress=progress)


def remove_document(doc_id: str, settings: Settings, embedder: EmbedderLike) -> BuildReport:
    """Remove one document (by id, as `rag index status` lists them) without re-embedding the rest."""
    manifest = read_manifest(settings.index.dir)
    if not manifest or doc_id not in manifest["documents"]:
        known = ", ".join(sorted(manifest["documents"])) if manifest else "（索引为空）"
        raise RagError(f"索引中没有文档 {doc_id!r}；现有文档：{known}")
    return _update(settings, embedder, [], keep_old=lambda i: i != doc_id, failures=[], progress=None)


def _format_error(manifest: dict[str, Any]) -> IndexMismatchError:
    return IndexMismatchError(
        f"索引格式版本 {manifest.get('format_version')} 与程序的 {FORMAT_VERSION} 不符（索引由旧版本构建）；"
        "请运行 `rag index build data/` 重建。"
    )


def verify_generation(gen: Path) -> dict[str, Any]:
    """The generation's manifest after hashing every file (IndexMismatchError naming the first bad one)."""
    manifest = _parse_manifest(gen)
    reader = _Reader(gen, manifest["checksums"])
    for fn in FILES:
        reader.verify(fn)
    return manifest


def check_embedder(manifest: dict[str, Any], embedder: EmbedderLike) -> None:
    """IndexMismatchError unless the generation was built with ``embedder``'s model."""
    if manifest["model"]["fingerprint"] != embedder.fingerprint:
        raise IndexMismatchError(
            f"索引由模型 {manifest['model']['name']} 构建，当前模型是 {embedder.name}（model fingerprint 不同）；"
            "请用相同的 RAG_EMBED_MODEL 查询，或运行 `rag index build data/` 重建。"
        )


def load_generation(
    gen: Path, settings: Settings, embedder: EmbedderLike | None = None, verify: bool = True
) -> LoadedIndex:
    """Load one generation into memory, every file read once and (with ``verify``) checked.

    Raises IndexMismatchError naming the file and the fix for anything unreadable, altered or
    inconsistent, and for another model's index when ``embedder`` is given.
    """
    manifest = _parse_manifest(gen)
    if embedder is not None:
        check_embedder(manifest, embedder)
    r = _Reader(gen, manifest["checksums"] if verify else None)
    try:
        chunks = [Chunk.from_dict(d) for d in r.lines("chunks.jsonl")]
    except (KeyError, TypeError, ValueError) as exc:
        raise _unreadable(gen, "chunks.jsonl", exc) from None
    if verify:
        r.verify("tokens.jsonl")  # only builds read it, but the generation is verified whole
    vectors = r.array("vectors.npy")
    dense = r.dense("dense.faiss")
    if isinstance(dense, faiss.IndexHNSWFlat):
        dense.hnsw.efSearch = settings.index.hnsw_ef_search
    *array_files, vocab_file = BM25Index.files()
    try:
        bm25 = BM25Index.from_saved([r.array(fn) for fn in array_files], r.raw(vocab_file))
    except (KeyError, TypeError, ValueError) as exc:
        raise _unreadable(gen, vocab_file, exc) from None
    piece_matrix = r.array("pieces.npy")
    piece_ptr = r.array("pieces_ptr.npy")
    if not (bm25.size == len(vectors) == dense.ntotal == len(chunks) == len(piece_ptr) - 1):
        raise IndexMismatchError(f"索引 {gen.name} 的各文件条数不一致；{REBUILD}")
    return LoadedIndex(
        path=gen,
        manifest=manifest,
        chunks=chunks,
        vectors=vectors,
        dense=dense,
        bm25=bm25,
        tokenizer=ChineseTokenizer(),
        piece_matrix=piece_matrix,
        piece_ptr=piece_ptr,
    )


def load_index(settings: Settings, embedder: EmbedderLike | None = None, verify: bool = True) -> LoadedIndex:
    """Load the live generation, checking format, checksums and (if given) the embedder."""
    index_dir = settings.index.dir
    gen = current_generation(index_dir)
    if gen is None:
        raise IndexMissingError(
            f"索引不存在（{index_dir}）；请先运行 `rag index build data/`（或 `make run`）。"
        )
    return load_generation(gen, settings, embedder, verify)


# --------------------------------------------------------------------------------------------------
# Restoring a backup: a new generation, verified, switched like a build


def restore_generation(source: Path, settings: Settings) -> BuildReport:
    """Make a verified copy of the backed-up generation ``source`` the live index.

    ``source`` is a generation folder (holding ``manifest.json``), an index folder (holding
    ``CURRENT``), or a ``.tar``/``.tar.gz``/``.tgz`` archive of either. Every file is checked
    against the backup's manifest while it is copied into a new generation; only then is
    ``CURRENT`` switched, so a bad backup changes nothing and a running server loads the
    restored index as it would a rebuilt one. No model is needed.
    """
    import time

    t0 = time.perf_counter()
    index_dir = settings.index.dir
    if not source.exists():
        raise RagError(f"备份 {source} 不存在；{_BACKUP_FORMS}")
    with _build_lock(index_dir):
        name = _new_name()
        tmp = index_dir / f".build-{name}"
        try:
            tmp.mkdir()
            src = _unpacked(source, tmp / ".unpacked")
            try:
                manifest = _parse_manifest(src)
                for fn in FILES:
                    if _copy_hashing(src / fn, tmp / fn) != manifest["checksums"][fn]:
                        raise _damaged(src, fn)
            except IndexMismatchError as exc:
                raise IndexMismatchError(f"备份 {source} 不可用，未作任何改动：{exc}") from None
            shutil.copyfile(src / MANIFEST, tmp / MANIFEST)
            shutil.rmtree(tmp / ".unpacked", ignore_errors=True)
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise storage_error(exc, "恢复索引", source, WRITE_FIX) from None
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        _publish(index_dir, tmp, name)
    return BuildReport(
        changed=True,
        generation=name,
        documents=sorted(manifest.get("documents") or {}),
        reused_chunks=int(manifest.get("chunk_count") or 0),
        total_chunks=int(manifest.get("chunk_count") or 0),
        seconds=time.perf_counter() - t0,
    )


_BACKUP_FORMS = "备份应是一个索引代文件夹（含 manifest.json）、索引文件夹（含 CURRENT）或它们的 .tar/.tar.gz 归档。"


def _unpacked(source: Path, scratch: Path) -> Path:
    """The generation folder inside ``source`` (a folder or an archive unpacked into ``scratch``)."""
    folder = source
    if source.is_file():
        try:
            with tarfile.open(source) as tf:
                tf.extractall(scratch, filter="data")  # no absolute paths, links out or devices
        except tarfile.TarError as exc:
            raise RagError(f"备份 {source} 无法解包（{exc}）；{_BACKUP_FORMS}") from None
        folder = scratch
    candidates = [folder]
    if folder.is_dir():
        candidates += sorted(p for p in folder.iterdir() if p.is_dir())
    for c in candidates:
        if (c / MANIFEST).is_file():
            return c
        if (c / CURRENT).is_file():
            gen = current_generation(c)
            if gen is not None:
                return gen
    raise RagError(f"{source} 中没有找到索引；{_BACKUP_FORMS}")


def _copy_hashing(src: Path, dst: Path) -> str:
    """Copy ``src`` to ``dst``; the sha256 of the bytes copied."""
    h = hashlib.sha256()
    with src.open("rb") as fi, dst.open("wb") as fo:
        for block in iter(lambda: fi.read(_BLOCK), b""):
            h.update(block)
            fo.write(block)
    return h.hexdigest()
