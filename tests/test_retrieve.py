"""Hybrid retrieval on the bundled magazine with the real model."""

from __future__ import annotations

from rag.retrieve import Filters, search


def _search(rt, q: str, k: int = 5, **kw):
    return search(rt.index, rt.embedder, q, rt.settings.retrieve, k=k, **kw)


def test_finds_the_passage_for_an_everyday_question(magazine_runtime) -> None:
    hits = _search(magazine_runtime, "第二届职工优秀创新成果交流活动在哪个场馆举办？")
    assert any("黄埔知识城国际会展中心" in h.chunk.text for h in hits[:3])
    assert [h.rank for h in hits] == list(range(1, len(hits) + 1))
    assert all(h.score > 0 for h in hits)


def test_traditional_question_finds_simplified_text(magazine_runtime) -> None:
    hits = _search(magazine_runtime, "第二屆職工優秀創新成果交流活動在哪個場館舉辦？")
    assert any("黄埔知识城国际会展中心" in h.chunk.text for h in hits[:3])


def test_table_cell_comes_with_its_header(magazine_runtime) -> None:
    hits = _search(magazine_runtime, "食品制造业专业技术人才的工资低位数是多少？")
    tables = [h for h in hits if h.chunk.kind == "table"]
    assert tables, "the 表1 chunk should be retrieved"
    text = tables[0].chunk.text
    assert "食品制造业" in text and "低位数" in text and "表1" in text


def test_page_lookup_question_finds_the_article(magazine_runtime) -> None:
    hits = _search(magazine_runtime, "湛江钢铁安康杯竞赛的文章在第几页？")
    assert any("安康" in h.chunk.article for h in hits[:3])


def test_filters_restrict_results(magazine_runtime) -> None:
    hits = _search(magazine_runtime, "工会", k=10, filters=Filters(section="典型"))
    assert hits and all(h.chunk.section == "典型" for h in hits)
    hits = _search(magazine_runtime, "工会", k=10, filters=Filters(page="24"))
    assert hits and all("24" in h.chunk.pages for h in hits)
    assert _search(magazine_runtime, "工会", filters=Filters(article="不存在的文章标题")) == []


def test_modes_and_timings(magazine_runtime) -> None:
    s = magazine_runtime.settings.retrieve.model_copy()
    timings: dict[str, float] = {}
    for mode in ("dense", "bm25", "hybrid"):
        s.mode = mode
        hits = search(magazine_runtime.index, magazine_runtime.embedder, "龙岗新业态工会代表", s, k=5, timings=timings)
        assert hits
    assert {"embed", "dense", "bm25", "fusion"} <= set(timings)


def test_rerank_support_per_chunk_equals_scoring_every_sentence(magazine_runtime) -> None:
    # The rerank's shortcut (terms looked up once per chunk, title and seam counted apart) must
    # give what scoring each sentence with its title gives, on every chunk of the magazine.
    from rag.support import QuestionProfile

    index = magazine_runtime.index
    questions = ["深圳全年调解劳动争议案件多少宗？", "表1 行业 工资 高位数最高", "工会", "港澳青年创业 平台"]
    for q in questions:
        profile = QuestionProfile(q, index.tokenizer, index.idf)
        for i, chunk in enumerate(index.chunks):
            if chunk.kind == "meta":
                continue
            pieces, title = index.pieces(i)
            want = max((profile.piece_coverage(p, title) for p in pieces), default=0.0)
            assert abs(profile.best_piece_coverage(pieces, title, index.chunk_norm(i)) - want) < 1e-12


def test_bounded_rerank_gives_the_same_top_k_as_scoring_every_candidate(magazine_runtime, monkeypatch) -> None:
    # The rerank skips candidates that provably cannot reach the top k; turning the bound off
    # (an infinite bound makes every candidate worth scoring) must not change any result.
    from rag import support

    questions = [
        "深圳全年调解劳动争议案件多少宗？",
        "表1的六个行业中，哪个行业企业经营管理人才的工资高位数最高？",
        "港澳年轻人想到内地来创业，工会这边有什么平台能提供支持？",
        "本期在第几页讲了产业工人工资？",
        "工会",
    ]
    cases = [(q, k) for q in questions for k in (1, 5)]

    def ranking(q: str, k: int) -> list[tuple[str, float]]:
        return [(h.chunk.chunk_id, h.score) for h in _search(magazine_runtime, q, k=k)]

    bounded = {case: ranking(*case) for case in cases}
    real = support.QuestionProfile.chunk_terms

    def unbounded(self, title_norm, chunk_norm):
        terms = real(self, title_norm, chunk_norm)
        terms.bound = float("inf")
        return terms

    monkeypatch.setattr(support.QuestionProfile, "chunk_terms", unbounded)
    for case in cases:
        assert ranking(*case) == bounded[case], case


def test_a_latin_script_question_is_embedded_whole() -> None:
    from rag.config import RetrieveSettings
    from rag.retrieve import dense_text, latin_script

    s = RetrieveSettings(dense_query_chars=64)
    english = "Which provincial departments co-organised the second Guangdong workers' innovation exchange event?"
    assert latin_script(english) and not latin_script("龙岗区有多少个新业态工会代表？")
    assert dense_text(english, s) == english  # 99 characters: about 25 tokens
    chinese = "龙" * 100
    assert dense_text(chinese, s) == "龙" * 64
