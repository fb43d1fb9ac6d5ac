"""English questions over Chinese text: the reversed CC-CEDICT glossary and its use in retrieval.

The glossary tests read the real dictionary file shipped in the pinned wheel; the retrieval test
uses the real e5 model and a real BM25 index over a small issue.
"""

from __future__ import annotations

import pytest

from rag.crosslingual import (
    CEDICT_SHA256,
    Glossary,
    choose_translations,
    english_words,
    lexical_query,
    load_glossary,
    parse_cedict,
    pinyin_names,
    translate_terms,
    with_domain_terms,
)
from rag.retrieve import dense_input, lexical_text, query_translations, search
from tests.test_reader import issue_runtime

LINES = """# CC-CEDICT sample
調解 调解 [tiao2 jie3] /to mediate/to bring parties to an agreement/
閉幕式 闭幕式 [bi4 mu4 shi4] /closing ceremony/
證書 证书 [zheng4 shu1] /credentials/certificate/
廣州 广州 [Guang3 zhou1] /Guangzhou subprovincial city and capital of Guangdong/Canton/
勞動 劳动 [lao2 dong4] /work/toil/physical labor/CL:次[ci4]/
參加 参加 [can1 jia1] /to participate/to take part/to join/
證 证 [zheng4] /certificate/proof/
""".splitlines()


def test_the_dictionary_is_read_backwards() -> None:
    g = parse_cedict(LINES)
    assert g.senses["mediate"] == ("调解",)  # "to mediate": the infinitive's "to" dropped
    assert g.senses["closing ceremony"] == ("闭幕式",)
    assert g.senses["guangzhou"] == ("广州",)  # a proper name's description is not a sense
    assert "physical labor" in g.senses and not any(":" in k or "次" in k for k in g.senses)  # CL: skipped
    assert g.senses["certificate"] == ("证书",)  # single characters translate too much to search


def test_phrases_inflections_and_british_spelling() -> None:
    g = parse_cedict(LINES)
    keep = lambda w: True  # noqa: E731
    found = dict(translate_terms("Who presented the certificates at the closing ceremony?", g, keep))
    assert found == {"certificates": ["证书"], "closing ceremony": ["闭幕式"]}
    assert dict(translate_terms("How many took part?", g, keep)) == {"took part": ["参加"]}
    assert dict(translate_terms("physical labour", g, keep)) == {"physical labour": ["劳动"]}
    assert english_words("Hong Kong-Macao") == ["hong", "kong", "macao"]
    # a British -ise word is looked up the American way, inflected too
    g = with_domain_terms(g, ["organize\t主办"])
    assert dict(translate_terms("Who organised it?", g, keep)) == {"organised": ["主办"]}


def test_only_words_the_corpus_contains_are_searched() -> None:
    g = parse_cedict(LINES)
    assert lexical_query("mediate in Guangzhou", translate_terms("mediate in Guangzhou", g, lambda w: w != "广州")) == "调解"
    # Chinese written in the question itself is kept as it is
    assert lexical_query("Who edits 广东工运?", []) == "广东工运"


def test_the_reader_reads_the_translation_the_passages_use() -> None:
    pairs = [("union", ["工会", "联盟"]), ("certificate", ["证书"]), ("mediate", ["调解"])]
    # 联盟 is the dictionary's word too, but these passages say 工会; 调解 is not in them at all
    assert choose_translations("Which union gave certificates?", pairs, "区总工会颁发证书。工会") == "工会 证书"


def test_domain_terms_come_first() -> None:
    g = with_domain_terms(Glossary({"union": ("联盟",)}), ["# comment", "union\t工会"])
    assert g.senses["union"] == ("工会", "联盟")
    packaged = load_glossary()  # the pinned file, its sha256 checked on load
    assert len(CEDICT_SHA256) == 64 and packaged.senses["union"][0] == "工会"
    assert "闭幕式" in packaged.senses["closing ceremony"]


ISSUE = """--- 第 2 页 ---
技能竞赛闭幕

12月6日，全省网约配送员职业技能竞赛闭幕。省总工会副主席李四在闭幕式上为获奖选手颁发证书。

--- 第 3 页 ---
工会律师参与劳动争议调解

某区总工会聘请香港律师参与劳动争议三方调解，这在全国尚属首例。

--- 第 4 页 ---
职工疗休养

今年共组织职工疗休养活动12批次，参与职工800人次。

--- 第 5 页 ---
主 办 某省总工会
主 编 王小明
副 主 编 陈 东
校 对 李 华
传 真 020-12345678
地 址 某市东园路5号
"""


@pytest.fixture(scope="module")
def english_runtime(tmp_path_factory, embedder, model_cache_dir):
    return issue_runtime(ISSUE, "english-issue", tmp_path_factory, embedder, model_cache_dir)


def test_an_english_question_is_searched_in_chinese(english_runtime) -> None:
    rt = english_runtime
    q = "Who handed out the certificates at the closing ceremony?"
    lexical = lexical_text(q, query_translations(rt.index, q, rt.settings.retrieve))
    assert {"闭幕式", "证书"} <= set(lexical.split())
    assert dense_input(rt.index, q, rt.settings.retrieve, lexical).endswith(lexical)
    bm25_only = rt.settings.retrieve.model_copy(update={"mode": "bm25"})
    hits = search(rt.index, rt.embedder, q, bm25_only, k=1)
    assert hits and hits[0].chunk.pages == ("2",)
    hits = search(rt.index, rt.embedder, "Which union hired a Hong Kong lawyer for mediation?", bm25_only, k=1)
    assert hits and hits[0].chunk.pages == ("3",)
    # Switched off, BM25 reads the English words and finds nothing
    off = bm25_only.model_copy(update={"cross_lingual_glossary": False})
    assert search(rt.index, rt.embedder, q, off, k=1) == []


def test_an_english_question_about_the_masthead(english_runtime) -> None:
    from rag.answer import ask

    # The masthead prints its labels letter-spaced (主 编) and retrieval ranks its one-line
    # records low: "the editor-in-chief" and "the fax number" are still read there.
    a = ask(english_runtime, "Who is the editor-in-chief?")
    assert not a.refused and "王小明" in a.body and a.citations[0].pages == ("5",)
    a = ask(english_runtime, "What is the fax number?")
    assert not a.refused and "020-12345678" in a.body
    # a verb is not looked up in the masthead: "address" here is no 地址
    pairs = [("address", ["地址", "演讲"])]
    masthead = "主办某省总工会地址某市东园路5号"
    assert choose_translations("What was the mediation meant to address?", pairs, "调解", masthead) == ""
    assert choose_translations("What is the address of the union?", pairs, "调解", masthead) == "地址"


def test_an_english_date_is_searched_as_the_corpus_prints_it() -> None:
    from rag.crosslingual import chinese_dates

    assert chinese_dates("Where did he go on December 22 to visit workers?") == ["12月22日"]
    assert chinese_dates("What happened on 5 December 2025?") == ["2025年12月5日"]
    assert chinese_dates("What was held in Dec. 2025?") == ["2025年12月"]
    assert chinese_dates("May I ask who edits it?") == []


def test_a_chinese_name_in_pinyin_is_found_in_the_corpus() -> None:
    readings = {"程": {"cheng"}, "城": {"cheng"}, "朝": {"chao", "zhao"}, "龙": {"long"}, "郑": {"zheng"}, "辉": {"hui"}}
    g = Glossary({}, {ch: frozenset(r) for ch, r in readings.items()})
    corpus = "一批青年骨干脱颖而出，程朝龙获中国中铁五一劳动奖章。副主席郑辉带队赴英德。城朝龙"
    surnames = frozenset("程郑")  # 城 reads cheng too, but is no surname
    got = pinyin_names("What honour did Cheng Chaolong receive? Where did Hui Zheng go?", corpus, g, surnames)
    assert got == [("Cheng Chaolong", ["程朝龙"]), ("Hui Zheng", ["郑辉"])]
    assert pinyin_names("What did Wang Wei do?", corpus, g, surnames) == []


def test_the_dictionary_gives_the_readings_of_characters() -> None:
    readings = load_glossary().readings
    assert "cheng" in readings["程"] and "chao" in readings["朝"] and "lv" in readings["吕"]
