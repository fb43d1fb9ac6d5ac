"""BM25 top-n with MaxScore pruning must equal scoring every chunk; saved indexes load identically."""

from __future__ import annotations

import numpy as np
import pytest

from rag.lexical import BM25Index


def _zipf_corpus(n_docs: int, vocab: int, seed: int) -> list[list[str]]:
    # Zipf-like term frequencies: a few terms in almost every chunk, a long tail of rare ones,
    # which is the case pruning has to get right.
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, vocab + 1) ** 1.1
    weights /= weights.sum()
    lengths = rng.integers(0, 60, n_docs)
    return [[f"t{t}" for t in rng.choice(vocab, size=int(k), p=weights)] for k in lengths]


def _exhaustive(bm: BM25Index, query: list[str], n: int, mask: np.ndarray | None = None):
    scores = bm.scores(query).astype(np.float64)
    if mask is not None:
        scores = np.where(mask, scores, 0.0)
    ids = np.flatnonzero(scores > 0)
    order = np.lexsort((ids, -scores[ids]))[:n]
    return ids[order], scores[ids][order]


@pytest.fixture(scope="module")
def pruned_index() -> BM25Index:
    bm = BM25Index.build(_zipf_corpus(3000, 400, seed=1))
    bm.PRUNE_FROM = 0  # force the MaxScore path on a small corpus (instance attribute)
    return bm


@pytest.mark.parametrize("seed", range(40))
def test_maxscore_top_equals_exhaustive(pruned_index: BM25Index, seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    # Queries mix common and rare terms, repeat terms, and include unknown ones.
    query = [f"t{t}" for t in rng.integers(0, 420, rng.integers(1, 25))] + ["未知词"]
    n = int(rng.choice([1, 5, 50, 400]))
    mask = rng.random(pruned_index.size) < 0.5 if seed % 3 == 0 else None
    got_ids, got_s = pruned_index.top(query, n, mask)
    want_ids, want_s = _exhaustive(pruned_index, query, n, mask)
    np.testing.assert_allclose(got_s, want_s, rtol=1e-5)
    # Ids may differ only where scores tie within float error.
    differ = got_ids != want_ids
    assert np.allclose(got_s[differ], want_s[differ], rtol=1e-5)
    if mask is not None:
        assert mask[got_ids].all()


def test_score_ids_matches_full_scores(pruned_index: BM25Index) -> None:
    query = ["t0", "t3", "t250", "t399"]
    ids = np.array([0, 5, 17, 2999, 1234])
    np.testing.assert_allclose(pruned_index.score_ids(query, ids), pruned_index.scores(query)[ids], rtol=1e-6)


def test_unknown_and_empty_queries() -> None:
    bm = BM25Index.build([["工会", "职工"], [], ["劳模"]])
    ids, scores = bm.top(["不存在"], 5)
    assert len(ids) == 0 and len(scores) == 0
    assert bm.top([], 5)[0].size == 0
    assert bm.scores(["不存在"]).tolist() == [0.0, 0.0, 0.0]
    assert bm.top(["劳模"], 5)[0].tolist() == [2]
    assert bm.doc_freq("工会") == 1 and bm.doc_freq("不存在") == 0


def test_save_and_load_memory_mapped(tmp_path, pruned_index: BM25Index) -> None:
    names = pruned_index.save(tmp_path)
    assert set(names) == set(BM25Index.files())
    loaded = BM25Index.load(tmp_path, mmap=True)
    assert isinstance(loaded._data.base, np.memmap) or not loaded._data.flags.owndata  # on disk, paged in
    query = ["t1", "t7", "t300"]
    loaded.PRUNE_FROM = 0
    np.testing.assert_array_equal(loaded.top(query, 20)[0], pruned_index.top(query, 20)[0])
    assert loaded.doc_freq("t1") == pruned_index.doc_freq("t1")


def test_scores_equal_bm25s_reference() -> None:
    import bm25s

    corpus = _zipf_corpus(500, 120, seed=7)
    ref = bm25s.BM25()
    ref.index([d if d else ["\u2400"] for d in corpus], show_progress=False)
    ours = BM25Index.build(corpus)
    for query in (["t0", "t5"], ["t99", "t3", "t3"], ["t119"]):
        known = [t for t in dict.fromkeys(query) if t in ref.vocab_dict]
        np.testing.assert_allclose(ours.scores(query), ref.get_scores(known), rtol=1e-6)


def test_empty_index_saves_loads_and_finds_nothing(tmp_path) -> None:
    bm = BM25Index.build([])  # what removing the last document leaves
    bm.save(tmp_path)
    loaded = BM25Index.load(tmp_path)
    assert loaded.size == 0 and loaded.top(["工会"], 5)[0].size == 0 and loaded.doc_freq("工会") == 0
