"""The persistent index: chunk records, their vectors, a FAISS index and BM25 tokens.

Layout under ``settings.index.dir``::

    CURRENT                 name of the live generation (switched atomically)
    gen-<time>-<rand>/      manifest.json, chunks.jsonl, tokens.jsonl, vectors.npy, dense.faiss,
                            bm25_*.npy + bm25_vocab.json (the BM25 index, memory-mapped on load)
    .lock                   held while a build writes

A build writes a whole new generation beside the live one and only then replaces
``CURRENT``, so a crash or Ctrl-C mid-build leaves the previous index usable. Unchanged
documents keep their vectors from the previous generation: adding next month's issue
embeds only that issue.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import math
import os
import re
import secrets
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from rag import __version__
from rag.chunk import chunk_document
from rag.config import ChunkSettings, IndexSettings, Settings
from rag.errors import IndexMismatchError, IndexMissingError, RagError
from rag.ingest import IngestFailure, load_paths
from rag.lexical import BM25Index, ChineseTokenizer, TextNormalizer
from rag.support import Piece, chunk_pieces
from rag.types import Chunk, Document

# 2: the BM25 index is stored (it was rebuilt from tokens.jsonl on every load).
FORMAT_VERSION = 2
# Bump when ingest/chunking logic changes in a way that alters chunks for the same settings.
CHUNKER_VERSION = 2
CURRENT = "CURRENT"
FILES = ("chunks.jsonl", "tokens.jsonl", "vectors.npy", "dense.faiss", *BM25Index.files())

Progress = Callable[[str, int, int], None]


class EmbedderLike:  # documentation only: what the index needs of an embedder
    name: str
    fingerprint: str
    dim: int

    def encode_passages(self, texts: list[str], show_progress: bool = False) -> np.ndarray: ...


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


def chunking_fingerprint(settings: ChunkSettings) -> str:
    payload = json.dumps({"v": CHUNKER_VERSION, **settings.model_dump(mode="json")}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def current_generation(index_dir: Path) -> Path | None:
    """The live generation folder, or None when nothing has been built."""
    pointer = index_dir / CURRENT
    if not pointer.exists():
        return None
    name = pointer.read_text(encoding="utf-8", errors="replace").strip()
    if not re.fullmatch(r"gen-[0-9A-Za-z-]+", name):
        return None  # garbled pointer: treated as no index, so `rag index build` repairs it
    path = index_dir / name
    return path if path.is_dir() else None


def read_manifest(index_dir: Path) -> dict[str, Any] | None:
    gen = current_generation(index_dir)
    if gen is None or not (gen / "manifest.json").exists():
        return None
    return json.loads((gen / "manifest.json").read_text(encoding="utf-8"))


@contextlib.contextmanager
def _build_lock(index_dir: Path) -> Iterator[None]:
    index_dir.mkdir(parents=True, exist_ok=True)
    with (index_dir / ".lock").open("w") as fh:
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


def _read_chunks(gen: Path) -> list[Chunk]:
    with (gen / "chunks.jsonl").open(encoding="utf-8") as f:
        return [Chunk.from_dict(json.loads(line)) for line in f if line.strip()]


def _load_generation_records(gen: Path) -> tuple[dict[str, Any], list[Chunk], list[list[str]], np.ndarray]:
    manifest = json.loads((gen / "manifest.json").read_text(encoding="utf-8"))
    chunks = _read_chunks(gen)
    with (gen / "tokens.jsonl").open(encoding="utf-8") as f:
        tokens = [json.loads(line) for line in f if line.strip()]
    vectors = np.load(gen / "vectors.npy")
    return manifest, chunks, tokens, vectors


def _write_generation(
    index_dir: Path,
    settings: Settings,
    embedder: EmbedderLike,
    docs_meta: dict[str, dict[str, Any]],
    chunks: list[Chunk],
    tokens: list[list[str]],
    vectors: np.ndarray,
) -> Path:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
    name = f"gen-{stamp}-{secrets.token_hex(3)}"
    tmp = index_dir / f".build-{name}"
    tmp.mkdir(parents=True)
    with (tmp / "chunks.jsonl").open("w", encoding="utf-8") as f:
        for c in chunks:
            f.write(json.dumps(c.to_dict(), ensure_ascii=False) + "\n")
    with (tmp / "tokens.jsonl").open("w", encoding="utf-8") as f:
        for t in tokens:
            f.write(json.dumps(t, ensure_ascii=False) + "\n")
    np.save(tmp / "vectors.npy", vectors.astype(np.float32, copy=False))
    dense = make_dense_index(vectors, settings.index)
    faiss.write_index(dense, str(tmp / "dense.faiss"))
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
    (tmp / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=2), encoding="utf-8")
    for fn in (*FILES, "manifest.json"):
        with (tmp / fn).open("rb") as f:
            os.fsync(f.fileno())
    final = index_dir / name
    os.replace(tmp, final)
    pointer_tmp = index_dir / f".{CURRENT}.tmp"
    pointer_tmp.write_text(name, encoding="utf-8")
    with pointer_tmp.open("rb") as f:
        os.fsync(f.fileno())
    os.replace(pointer_tmp, index_dir / CURRENT)  # the atomic switch
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
        gen = current_generation(index_dir)
        old: tuple[dict[str, Any], list[Chunk], list[list[str]], np.ndarray] | None = None
        if gen is not None:
            try:
                _verified_manifest(gen)
                old = _load_generation_records(gen)
            except (OSError, ValueError, IndexMismatchError):
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
        final = _write_generation(index_dir, settings, embedder, docs_meta, chunks, tokens, vectors)
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


def _encode_in_batches(
    embedder: EmbedderLike, texts: list[str], step: int, progress: Progress | None
) -> np.ndarray:
    # Big slices keep the model's own length-sorted batching effective while still reporting progress.
    out = []
    for i in range(0, len(texts), step):
        out.append(embedder.encode_passages(texts[i : i + step]))
        if progress:
            progress("embed", min(i + step, len(texts)), len(texts))
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


def _verified_manifest(gen: Path) -> dict[str, Any]:
    """The generation's manifest after checking every file against its sha256 (IndexMismatchError if not)."""
    path = gen / "manifest.json"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise IndexMismatchError(
            f"索引清单 {path} 无法读取（{type(e).__name__}）；请运行 `rag index build data/` 重建。"
        ) from e
    if isinstance(manifest, dict) and manifest.get("format_version") != FORMAT_VERSION:
        raise _format_error(manifest)
    if not isinstance(manifest, dict) or set(manifest.get("checksums") or {}) != set(FILES):
        raise IndexMismatchError(f"索引清单 {path} 不完整；请运行 `rag index build data/` 重建。")
    for fn, expected in manifest["checksums"].items():
        if not (gen / fn).exists() or _sha256_file(gen / fn) != expected:
            raise IndexMismatchError(
                f"索引文件 {gen / fn} 已损坏或被修改（校验和不符）；请运行 `rag index build data/` 重建。"
            )
    return manifest


def load_index(settings: Settings, embedder: EmbedderLike | None = None, verify: bool = True) -> LoadedIndex:
    """Load the live generation, checking format, checksums and (if given) the embedder."""
    index_dir = settings.index.dir
    gen = current_generation(index_dir)
    if gen is None:
        raise IndexMissingError(
            f"索引不存在（{index_dir}）；请先运行 `rag index build data/`（或 `make run`）。"
        )
    manifest = (
        _verified_manifest(gen) if verify else json.loads((gen / "manifest.json").read_text(encoding="utf-8"))
    )
    if manifest.get("format_version") != FORMAT_VERSION:
        raise _format_error(manifest)
    if embedder is not None and manifest["model"]["fingerprint"] != embedder.fingerprint:
        raise IndexMismatchError(
            f"索引由模型 {manifest['model']['name']} 构建，当前模型是 {embedder.name}（model fingerprint 不同）；"
            "请用相同的 RAG_EMBED_MODEL 查询，或运行 `rag index build data/` 重建。"
        )
    chunks = _read_chunks(gen)
    vectors = np.load(gen / "vectors.npy")
    dense = faiss.read_index(str(gen / "dense.faiss"))
    if isinstance(dense, faiss.IndexHNSWFlat):
        dense.hnsw.efSearch = settings.index.hnsw_ef_search
    bm25 = BM25Index.load(gen)
    if bm25.size != len(chunks) or len(vectors) != len(chunks):
        raise IndexMismatchError(f"索引 {gen} 的各文件条数不一致；请运行 `rag index build data/` 重建。")
    return LoadedIndex(
        path=gen,
        manifest=manifest,
        chunks=chunks,
        vectors=vectors,
        dense=dense,
        bm25=bm25,
        tokenizer=ChineseTokenizer(),
    )
