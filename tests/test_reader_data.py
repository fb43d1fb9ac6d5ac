"""The reader-data generator on a few inline records (no ../shared needed)."""

from __future__ import annotations

import random
import sys
from collections import Counter
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "eval"))
import reader_data as rd  # noqa: E402


@pytest.fixture(scope="module")
def rec() -> rd.Recogniser:
    return rd.Recogniser()


def _paragraphs() -> list[rd.Paragraph]:
    """Twelve small articles (two paragraphs each) so that the hash split uses every split."""
    cities = ["中山", "佛山", "广州", "深圳", "珠海", "东莞", "惠州", "江门", "湛江", "汕头", "韶关", "肇庆"]
    out = []
    for i, city in enumerate(cities):
        year = 2014 + i
        title = f"{city}市工会工作{i}"
        ctx1 = (f"{year}年，{city}市总工会举办第{i + 1}届职工技能大赛，共有{300 + 10 * i}名职工参赛。"
                f"大赛于{year}年5月12日在{city}市体育馆开幕，张伟主持开幕式。")
        ctx2 = f"{city}市总工会还开展了送温暖活动，走访困难职工家庭，发放慰问金。"
        p1 = rd.Paragraph("toy", title, f"toy:{i}-0", ctx1)
        p1.qas = [
            {"id": f"q{i}a", "question": f"{year}年{city}市总工会举办的技能大赛有多少名职工参赛？",
             "answers": [f"{300 + 10 * i}名"], "answer_starts": [ctx1.find(f"{300 + 10 * i}名")]},
            {"id": f"q{i}b", "question": f"{city}市第{i + 1}届职工技能大赛在哪里开幕？",
             "answers": [f"{city}市体育馆"], "answer_starts": [ctx1.find(f"{city}市体育馆")]},
        ]
        out += [p1, rd.Paragraph("toy", title, f"toy:{i}-1", ctx2)]
    return out


def test_split_by_article_never_by_question(rec: rd.Recogniser) -> None:
    rows = rd.generate(_paragraphs(), rec, max_answerable=100, seed=1)
    splits_of_context: dict[str, set[str]] = {}
    splits_of_title: dict[str, set[str]] = {}
    for r in rows:
        splits_of_context.setdefault(r["context_id"], set()).add(r["split"])
        splits_of_title.setdefault(r["title"], set()).add(r["split"])
    assert all(len(s) == 1 for s in splits_of_context.values())
    assert all(len(s) == 1 for s in splits_of_title.values())
    assert len({r["split"] for r in rows}) >= 2  # the toy titles do spread over splits
    assert Counter(r["unanswerable"] is None for r in rows)[True] == 24


def test_generated_unanswerables_lack_the_constraint_or_the_answer(rec: rd.Recogniser) -> None:
    rows = rd.generate(_paragraphs(), rec, max_answerable=100, seed=1)
    by_id = {r["id"]: r for r in rows if r["unanswerable"] is None}
    swaps = [r for r in rows if r["swap"]]
    paras = [r for r in rows if r["unanswerable"] == "other_paragraph"]
    assert swaps and paras
    for r in swaps:
        orig = by_id[f"toy:{r['original_id']}"]
        old, new = r["swap"]["old"], r["swap"]["new"]
        assert old != new and old in orig["question"] and old in orig["context"]
        assert new in r["question"] and new not in r["context"]
        assert r["question"] == orig["question"].replace(old, new) and old not in r["question"]
        assert r["context"] == orig["context"]  # the swap keeps the original context
        assert r["unanswerable"] == f"swap_{r['swap']['kind']}"
    for r in paras:
        assert r["context_id"] != by_id[f"toy:{r['original_id']}"]["context_id"]
        assert not any(a in r["context"] for a in r["answers"])


def test_swap_keeps_the_kind_and_the_script(rec: rd.Recogniser) -> None:
    context = "2024年，中山市总工会举办第三届职工技能大赛，共有300名职工参赛。"
    pools = rd.build_pools([rd.Paragraph("toy", "t", "c", "2023年佛山市举办比赛，佛山市有450名职工。佛山市、江门市")], rec)
    rng = random.Random(0)
    seen = {}
    for _ in range(60):
        out = rd.swap_question("2024年中山市第三届职工技能大赛有多少名职工参赛？", context, ["300名"], pools, rec, rng)
        assert out is not None
        question, mention, new = out
        seen[mention.kind] = new
        assert new not in context and mention.text in context
    assert seen.get("year") == "2023年"
    assert seen.get("ordinal") in {"第四届", "第二届", "第五届", "第一届", "第六届"}  # Chinese numerals kept
    assert seen.get("place", "佛山市") in {"佛山市", "江门市", "佛山", "江门"}


def test_nothing_to_swap_when_the_context_does_not_state_the_constraint(rec: rd.Recogniser) -> None:
    pools = rd.build_pools([rd.Paragraph("toy", "t", "c", "2023年佛山市举办比赛。")], rec)
    out = rd.swap_question("2024年的比赛有多少人参加？", "比赛共有300人参加。", ["300人"], pools, rec,
                           random.Random(0))
    assert out is None


def test_chinese_numerals() -> None:
    assert [rd.cn_to_int(s) for s in ("三", "十", "十二", "二十三", "两", "12", "二〇〇八")] == [
        3, 10, 12, 23, 2, 12, 2008]
    assert [rd.int_to_cn(n) for n in (3, 10, 12, 23)] == ["三", "十", "十二", "二十三"]


def test_committed_magazine_sets_hold() -> None:
    """Every evidence quote is verbatim in the magazine, every keyword in its evidence."""
    import magazine_sets as ms

    text = ms.MAGAZINE.read_text(encoding="utf-8")
    chunks = ms.load_chunks(ms.MAGAZINE)
    root = Path(__file__).resolve().parents[1] / "eval"
    for name in ("magazine_heldout.jsonl", "magazine_dev_unanswerable.jsonl"):
        rows = ms.read_jsonl(root / name)
        assert rows and ms.check(rows, text, chunks) == []
    bad = {"id": "x", "question": "q", "answer": "a", "answer_keywords": ["不存在的词"], "type": "factoid",
           "evidence": "主 编 张英姿", "evidence_line": 165, "article": "目录", "pages": ["目录"]}
    assert any("keyword" in p for p in ms.check([bad], text, chunks))
    assert ms.locate("主编张英姿", text) == ms.locate("主 编 张英姿", text) > 0


def test_sentence_labels_follow_answerability() -> None:
    rec = {"context": "中山市总工会举办技能大赛。共有300名职工参赛！大赛在体育馆开幕。", "answers": ["300名"],
           "unanswerable": None}
    assert rd.label_sentences(rec) == [("中山市总工会举办技能大赛。", False), ("共有300名职工参赛！", True),
                                       ("大赛在体育馆开幕。", False)]
    assert not any(label for _, label in rd.label_sentences({**rec, "unanswerable": "swap_year"}))


def test_no_swap_of_a_range_end_or_a_generic_place(rec: rd.Recogniser) -> None:
    context = "1936年至1945年，陆军总司令部是德意志国防军陆军部队的最高指挥机构，英国曾派员考察。"
    pools = rd.build_pools([rd.Paragraph("toy", "t", "c", "1948年、1950年外国、外国，法国、法国")], rec)
    for seed in range(20):
        out = rd.swap_question("1936年至1945年间，英国考察了哪个部队的指挥机构？", context, ["德意志国防军陆军部队"],
                               pools, rec, random.Random(seed))
        assert out is None or (out[1].kind == "place" and out[2] != "外国")


def test_span_start_prefers_the_annotated_occurrence() -> None:
    ctx = "300名职工参赛，其中300名来自中山。"
    assert rd._span_start(ctx, "300名", 11) == 11
    assert rd._span_start(ctx, "300名", 12) == 11  # off by one, as a few CMRC offsets are
    assert rd._span_start(ctx, "300名", -1) == 0
    assert rd._span_start(ctx, "400名", 0) == -1


def test_rgb_noise_records_hold_no_answer(tmp_path: Path) -> None:
    import json

    rows = [
        {"id": i, "query": f"第{i}届大赛冠军是谁", "answer": [["张三", "张 三"]],
         "positive": [f"第{i}届大赛冠军是张三。", f"张三夺得第{i}届冠军。"],
         "negative": [f"第{i}届大赛在广州举行。", "去年张三获亚军。", f"第{i}届共有300人参赛。",
                      f"第{i}届大赛设十个项目。", f"第{i}届大赛由工会主办。"]}
        for i in (5, 120, 260)
    ]
    path = tmp_path / "zh_refine.json"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    out = rd.rgb_records(path, seed=1)
    assert {r["split"] for r in out} == {"test", "train", "calib"}  # by query: 0-99, 100-249, 250-
    noise = [r for r in out if r["unanswerable"] == "noise"]
    assert noise and all("张三" not in t for r in noise for t in [r["context"], *r["distractors"]])
    answerable = [r for r in out if r["unanswerable"] is None]
    assert all("张三" in r["context"] and len(r["distractors"]) == 2 for r in answerable)
    assert answerable[0]["answers"] == ["张三", "张 三"]
