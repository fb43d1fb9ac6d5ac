"""Reader data from public Chinese QA sets, with generated unanswerable questions (a script).

    python eval/reader_data.py --shared ../shared [--out eval/data] [--max-answerable 1500]

Builds one JSONL record per question from CMRC 2018 dev, DRCD dev (Traditional, kept as is)
and XQuAD zh::

    {"id", "source", "split", "context_id", "title", "question", "context",
     "answers": [reference strings], "answer_starts": [offsets, -1 = not a span],
     "unanswerable": null | kind, "swap": null | {"kind", "old", "new"}, "original_id"}

Unanswerable questions are generated in the SQuAD 2.0 manner, so that a refusal decision can
be fitted and tested on data nobody tuned by hand:

* ``swap_<kind>``: one constraint of the question (year, date, number, ordinal, place, person,
  organisation) is replaced by another value of the same kind drawn from the same source and
  split, such that the new value does not occur in the (unchanged) context. Only constraints
  that the context itself mentions are swapped: a constraint the context never states is not
  what ties the question to its answer, and swapping it could leave the question answerable.
  Recognisers are general: regexes for years, dates, numbers with units and ordinals, and
  jieba.posseg (ns/nr/nt) plus a list of place names for the rest.
* ``other_paragraph``: the question paired with a same-topic paragraph (another paragraph of
  the same article, else the nearest paragraph of the split by shared character bigrams) that
  contains none of the reference answers.
* ``noise`` (RGB zh_refine, split by query): the question with news passages about its own event
  that do not give the answer: the near-topic noise a real corpus is full of. Its answerable
  records carry two such passages as ``distractors``.

Splits are by article (hash of source + title), never by question: ``train`` / ``calib`` /
``test`` = 60 / 20 / 20, so no article and no context appears in two splits. Output:
``<out>/reader-{train,calib,test}.jsonl.gz`` (deterministic gzip) and ``<out>/README.md`` with
the counts and the sha256 of every file.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import random
import re
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

SOURCES: dict[str, str] = {
    "cmrc": "benchmarks/cmrc2018/cmrc2018_dev.json",
    "drcd": "benchmarks/drcd/DRCD_dev.json",
    "xquad": "benchmarks/xquad_zh/xquad.zh.json",
}
RGB_PATH = "benchmarks/rgb_zh/zh_refine.json"
SPLITS = ("train", "calib", "test")
KINDS = ("year", "date", "number", "ordinal", "place", "person", "organisation")

_CN_NUM = "零〇一二三四五六七八九十百千两"
_YEAR = re.compile(r"(?<![\d.])([12]\d{3})\s*年(?!代)")
_DATE = re.compile(rf"(?<![\d.{_CN_NUM}])([\d{_CN_NUM}]{{1,3}})月(?:([\d{_CN_NUM}]{{1,3}})[日号])?")
_ORDINAL = re.compile(rf"第([\d{_CN_NUM}]+)([届次个名位章季代任期部集条款节级场轮号版天年回批])?")
_UNITS = (
    "平方公里|平方米|公里|千米|厘米|毫米|米|公顷|公斤|千克|克|吨|亿元|万元|元|美元|英镑|欧元|"
    "人次|人|名|个|岁|年|天|日|小时|分钟|秒|次|场|座|种|家|所|部|项|首|本|集|度|%|％|倍|层|户|"
    "张|台|架|艘|辆|条|位|支|队|周|届|件|篇|页|株|头|只|英里|英尺|码|磅|美分|分"
)
_NUMBER = re.compile(rf"(?<![\d.])(\d+(?:\.\d+)?)\s*(万|亿|千)?\s*({_UNITS})(?!代)")
# Places jieba does not always tag ns: provinces, large cities, countries and regions.
PLACES = tuple(
    """北京 天津 上海 重庆 河北 山西 辽宁 吉林 黑龙江 江苏 浙江 安徽 福建 江西 山东 河南 湖北 湖南
    广东 海南 四川 贵州 云南 陕西 甘肃 青海 台湾 内蒙古 广西 西藏 宁夏 新疆 香港 澳门 广州 深圳
    珠海 汕头 佛山 韶关 湛江 肇庆 江门 茂名 惠州 梅州 汕尾 河源 阳江 清远 东莞 中山 潮州 揭阳 云浮
    南京 杭州 苏州 武汉 成都 西安 长沙 郑州 济南 青岛 大连 沈阳 哈尔滨 长春 厦门 福州 南昌 合肥 昆明
    贵阳 南宁 兰州 太原 石家庄 呼和浩特 乌鲁木齐 拉萨 西宁 银川 海口 台北 高雄 台中 台南 新竹
    中国 日本 韩国 朝鲜 美国 英国 法国 德国 俄罗斯 意大利 西班牙 葡萄牙 荷兰 比利时 瑞士 瑞典 挪威
    丹麦 芬兰 波兰 奥地利 希腊 土耳其 印度 巴基斯坦 泰国 越南 新加坡 马来西亚 印度尼西亚 菲律宾
    澳大利亚 新西兰 加拿大 墨西哥 巴西 阿根廷 埃及 南非 伊朗 伊拉克 以色列 蒙古 欧洲 亚洲 非洲
    北美 南美 大洋洲 伦敦 巴黎 柏林 东京 纽约 华盛顿 洛杉矶 芝加哥 罗马 莫斯科""".split()
)
_POS_KIND = {"ns": "place", "nr": "person", "nt": "organisation"}


@dataclass(frozen=True)
class Mention:
    """One constraint found in a text: its kind, surface form, span and (numbers) unit."""

    kind: str
    text: str
    start: int
    end: int
    key: str = ""  # what a replacement must share: the unit of a number, the suffix of an ordinal


@dataclass
class Paragraph:
    """One context of a SQuAD-layout file with its questions."""

    source: str
    title: str
    context_id: str
    context: str
    qas: list[dict] = field(default_factory=list)
    split: str = ""


class Recogniser:
    """Finds constraints in Simplified or Traditional text (tagged through OpenCC t2s)."""

    def __init__(self) -> None:
        import jieba
        import jieba.posseg
        import opencc

        jieba.setLogLevel(60)
        self._tok = jieba.posseg.POSTokenizer(jieba.Tokenizer())
        self._t2s = opencc.OpenCC("t2s")
        self._places = re.compile("|".join(sorted(PLACES, key=len, reverse=True)))

    def simplified(self, text: str) -> str:
        return self._t2s.convert(text)

    def mentions(self, text: str) -> list[Mention]:
        """Every year, date, number, ordinal, place, person and organisation, no overlaps."""
        found: list[Mention] = []
        taken = [False] * len(text)

        def add(kind: str, start: int, end: int, key: str = "") -> None:
            if end <= start or any(taken[start:end]):
                return
            for i in range(start, end):
                taken[i] = True
            found.append(Mention(kind, text[start:end], start, end, key))

        for m in _YEAR.finditer(text):
            add("year", m.start(), m.end())
        for m in _DATE.finditer(text):
            add("date", m.start(), m.end(), "md" if m.group(2) else "m")
        for m in _ORDINAL.finditer(text):
            add("ordinal", m.start(), m.end(), m.group(2) or "")
        for m in _NUMBER.finditer(text):
            add("number", m.start(), m.end(), (m.group(2) or "") + m.group(3))
        simple = self.simplified(text)
        aligned = len(simple) == len(text)  # t2s is almost always character for character
        tag_text = simple if aligned else text
        pos = 0
        for word, flag in self._tok.cut(tag_text):
            start, pos = pos, pos + len(word)
            kind = _POS_KIND.get(flag[:2])
            if kind and len(word) >= 2 and not word.isascii():
                add(kind, start, pos, flag[:2])
        for m in self._places.finditer(tag_text):
            add("place", m.start(), m.end(), "ns")
        found.sort(key=lambda x: x.start)
        return found


def load_squad(path: Path, source: str) -> list[Paragraph]:
    """The paragraphs of a SQuAD-layout file, each with its questions and reference answers."""
    data = json.loads(path.read_text(encoding="utf-8"))
    out: list[Paragraph] = []
    for article in data["data"]:
        title = article["title"]
        for j, para in enumerate(article["paragraphs"]):
            pid = para.get("id") or f"{title}-{j}"
            p = Paragraph(source, title, f"{source}:{pid}", para["context"])
            for qa in para["qas"]:
                answers, starts = [], []
                for a in qa["answers"]:
                    text = a["text"].strip()
                    if text and text not in answers:
                        answers.append(text)
                        starts.append(_span_start(para["context"], text, a.get("answer_start", -1)))
                if answers:
                    p.qas.append({"id": qa["id"], "question": qa["question"].strip(),
                                  "answers": answers, "answer_starts": starts})
            out.append(p)
    return out


def _span_start(context: str, text: str, given: int) -> int:
    """The occurrence of `text` nearest the annotated offset (CMRC has a few off by 1-2), or -1."""
    if given >= 0 and context.startswith(text, given):
        return given
    found = [m.start() for m in re.finditer(re.escape(text), context)]
    return min(found, key=lambda i: abs(i - given)) if found else -1


def split_of(source: str, title: str) -> str:
    """train / calib / test = 60 / 20 / 20 by a stable hash of the article, never the question."""
    h = int(hashlib.sha256(f"{source}\x00{title}".encode()).hexdigest()[:8], 16) % 100
    return "train" if h < 60 else "calib" if h < 80 else "test"


def build_pools(paragraphs: Iterable[Paragraph], rec: Recogniser) -> dict[tuple, Counter]:
    """Values of each kind seen in a set of contexts and questions, keyed by (kind, key).

    Replacements come from here, so a swapped question reads like one of the corpus: a year the
    corpus mentions, a place of the same source's script (Traditional for DRCD)...
    """
    counts: dict[tuple, Counter] = defaultdict(Counter)
    for p in paragraphs:
        texts = [p.context] + [q["question"] for q in p.qas]
        for text in texts:
            for m in rec.mentions(text):
                counts[(m.kind, _pool_key(m))][m.text] += 1
    # A name goes to the kind jieba gives it most often (纳粹德国 is a place, not a person).
    names = [(k, "") for k in ("place", "person", "organisation")]
    for key in names:
        for value in list(counts.get(key, ())):
            if any(counts.get(o, {}).get(value, 0) > counts[key][value] for o in names if o != key):
                del counts[key][value]
    return dict(counts)


def _pool_key(m: Mention) -> str:
    # Places, persons and organisations are pooled per kind; numbers per unit: "30人" is
    # swapped for "45人", never for "45米".
    return m.key if m.kind == "number" else ""


# jieba's ns/nr/nt tags on a single occurrence are noisy ("上市" as a place); a name counts
# when the corpus tags it so at least twice, or when it is in the place list.
MIN_NAME_COUNT = 2
_BAD_NAME = re.compile(r"^[了的在是和与及或年月日第之其这那一二三四五六七八九十上下]|[的了]$")


# Common nouns jieba tags as places: swapping 英国 for 外国 leaves the question answerable.
GENERIC_NAMES = frozenset(
    """外国 国外 王国 建国 全国 各国 本国 中外 国内 海外 大城市 城市 首都 地区 各地 当地 本地 全省 全市
    外地 内地 异地 两岸 三地 中原 西方 东方 南方 北方 天下 世界 全球 国际 古城 古国 帝国 共和国
    小国 大国 东西 巴士 长度 山洞 边境 境内 境外 市区 郊区 山区 农村 乡村""".split()
)
_RANGE_BEFORE = re.compile(r"[至到\-—–~∼、]\s*$")
_RANGE_AFTER = re.compile(r"^\s*[至到\-—–~∼、]")


def _trusted_name(value: str, pool: Counter, rec: Recogniser) -> bool:
    simple = rec.simplified(value)
    if simple in GENERIC_NAMES:
        return False
    if simple in PLACES:
        return True
    return pool.get(value, 0) >= MIN_NAME_COUNT and not _BAD_NAME.search(value)


_CN_DIGIT = {c: i for i, c in enumerate("零一二三四五六七八九")} | {"〇": 0, "两": 2}


def cn_to_int(text: str) -> int | None:
    """Arabic or Chinese numerals up to 99 (十, 二十三, 两), or None."""
    if text.isdigit():
        return int(text)
    if text and all(c in _CN_DIGIT for c in text):
        return int("".join(str(_CN_DIGIT[c]) for c in text))
    m = re.fullmatch(r"([一二三四五六七八九两]?)十([一二三四五六七八九]?)", text)
    if m:
        return (_CN_DIGIT[m.group(1)] if m.group(1) else 1) * 10 + (_CN_DIGIT[m.group(2)] if m.group(2) else 0)
    return None


def int_to_cn(n: int) -> str:
    digits = "零一二三四五六七八九"
    if n < 10:
        return digits[n]
    tens, ones = divmod(n, 10)
    return ("" if tens == 1 else digits[tens]) + "十" + (digits[ones] if ones else "")


def _render(n: int, like: str) -> str:
    """n written in the same script as `like` (Arabic or Chinese numerals)."""
    return str(n) if like.isdigit() else int_to_cn(n)


def _shifted(m: Mention) -> list[str]:
    """Ordinals and dates swapped by shifting their number (第三届 -> 第四届, 8月 -> 9月).

    The corpus rarely holds the same ordinal or date twice, so neighbouring values are made
    rather than drawn; the script of the numerals is kept, so 第一 never becomes 第1.
    """
    if m.kind == "ordinal":
        g = _ORDINAL.fullmatch(m.text)
        n = cn_to_int(g.group(1)) if g else None
        if not g or n is None or n > 99:
            return []
        return [f"第{_render(k, g.group(1))}{g.group(2) or ''}"
                for k in (n + 1, n - 1, n + 2, n - 2, n + 3) if k >= 1]
    g = _DATE.fullmatch(m.text)
    if not g:
        return []
    month = cn_to_int(g.group(1))
    if month is None or not 1 <= month <= 12:
        return []
    tail = m.text[g.end(1):]
    out = [_render(k, g.group(1)) + tail for k in (month + 1, month - 1, month + 2, month - 2) if 1 <= k <= 12]
    day = cn_to_int(g.group(2)) if g.group(2) else None
    if day is not None:
        head = m.text[: g.start(2)]
        out += [head + _render(k, g.group(2)) + m.text[g.end(2):] for k in (day + 1, day - 1, day + 3) if 1 <= k <= 28]
    return out


def _number_value(text: str) -> float | None:
    m = re.search(r"(\d+(?:\.\d+)?)", text)
    return float(m.group(1)) if m else None


def _absent(value: str, kind: str, context: str, context_simple: str, rec: Recogniser) -> bool:
    """True when the context does not mention the value in any obvious form."""
    if value in context or rec.simplified(value) in context_simple:
        return False
    if kind in ("year", "number"):
        digits = re.search(r"\d+(?:\.\d+)?", value)
        if digits and re.search(rf"(?<![\d.]){re.escape(digits.group(0))}(?![\d.])", context):
            return False  # "1998" without its 年, "30" in "30余人"
    if kind in ("ordinal", "date"):
        nums = re.findall(rf"[\d{_CN_NUM}]+", value)
        alt = value
        for n in nums:  # the other script: 第三届 is also written 第3届
            k = cn_to_int(n)
            if k is not None:
                alt = alt.replace(n, str(k) if not n.isdigit() else int_to_cn(k), 1)
        if alt in context or rec.simplified(alt) in context_simple:
            return False
    core = re.sub(r"(省|市|县|区|国|州|镇|村|岛|山|河|湖)$", "", rec.simplified(value))
    return not (kind == "place" and len(core) >= 2 and core in context_simple)


def _candidates(m: Mention, pool: Counter, context: str, context_simple: str,
                rec: Recogniser, rng: random.Random) -> list[str]:
    """Replacement values for a mention, the most tempting (closest) first."""
    if m.kind in ("ordinal", "date"):
        values = _shifted(m)
    elif m.kind in ("place", "person", "organisation"):
        values = [v for v in pool if _trusted_name(v, pool, rec)]
        rng.shuffle(values)
        # same suffix (市/省/大学/公司) and length first: 佛山市 for 中山市
        values.sort(key=lambda v: (v[-1] != m.text[-1], abs(len(v) - len(m.text))))
    else:
        old = _number_value(m.text)
        values = sorted(pool)
        rng.shuffle(values)
        values.sort(key=lambda v: abs((_number_value(v) or 1e9) - old) / max(abs(old), 1.0))
    out = []
    for v in values:
        if v == m.text or v in m.text or m.text in v:
            continue
        if m.kind in ("year", "number") and (_number_value(v) == _number_value(m.text)
                                             or ("." in v) != ("." in m.text)):
            continue  # a different value written the same way: 30人 -> 45人, not 2.64人
        if _absent(v, m.kind, context, context_simple, rec):
            out.append(v)
        if len(out) >= 4:
            break
    return out


# Kinds in the order swaps are made when a question offers several: the rare and most
# damaging ones (a year or number the passage does not give) first, noisy name tags last.
SWAP_ORDER = ("year", "number", "date", "ordinal", "organisation", "place", "person")


def _usable_swaps(question: str, context: str, answers: Sequence[str], pools: dict[tuple, Counter],
                  rec: Recogniser, rng: random.Random) -> list[tuple[Mention, list[str]]]:
    """Mentions of the question that can be swapped, each with its replacement values.

    Only constraints that the context states (so the swap really breaks the link between
    question and answer) and that are not part of a reference answer qualify.
    """
    context_simple = rec.simplified(context)
    usable: list[tuple[Mention, list[str]]] = []
    for m in rec.mentions(question):
        if m.text not in context or any(m.text in a or a in m.text for a in answers):
            continue
        if m.kind in ("year", "number", "date", "ordinal") and (
                _RANGE_BEFORE.search(question[: m.start]) or _RANGE_AFTER.match(question[m.end:])):
            continue  # one end of a range or list: "1936年至1948年" still points at the same answer
        pool = pools.get((m.kind, _pool_key(m)), Counter())
        if m.kind in ("place", "person", "organisation") and not _trusted_name(m.text, pool, rec):
            continue
        cands = _candidates(m, pool, context, context_simple, rec, rng)
        if cands:
            usable.append((m, cands))
    return usable


def _apply(question: str, m: Mention, cands: Sequence[str], rng: random.Random) -> tuple[str, Mention, str]:
    new = rng.choice(list(cands[:3]))  # near values first: 2023 for 2024 tempts a reader most
    # Every occurrence: "日本仿效中国…中国的科举" with one 中国 left still asks about 中国.
    return question.replace(m.text, new), m, new


def swap_question(question: str, context: str, answers: Sequence[str], pools: dict[tuple, Counter],
                  rec: Recogniser, rng: random.Random) -> tuple[str, Mention, str] | None:
    """The question with one constraint (of a kind drawn at random) replaced by a value the
    context lacks, or None when nothing qualifies."""
    usable = _usable_swaps(question, context, answers, pools, rec, rng)
    if not usable:
        return None
    kind = rng.choice(sorted({m.kind for m, _ in usable}))  # kinds evenly, not mentions
    m, cands = rng.choice([u for u in usable if u[0].kind == kind])
    return _apply(question, m, cands, rng)


def swap_questions(question: str, context: str, answers: Sequence[str], pools: dict[tuple, Counter],
                   rec: Recogniser, rng: random.Random, max_swaps: int = 2) -> list[tuple[str, Mention, str]]:
    """Up to `max_swaps` swapped questions, one per kind, rare kinds first (SWAP_ORDER)."""
    usable = _usable_swaps(question, context, answers, pools, rec, rng)
    kinds = sorted({m.kind for m, _ in usable}, key=SWAP_ORDER.index)[:max_swaps]
    return [_apply(question, *rng.choice([u for u in usable if u[0].kind == k]), rng) for k in kinds]


def bigrams(text: str) -> set[str]:
    text = re.sub(r"[\s\W_]+", "", text)
    return {text[i: i + 2] for i in range(len(text) - 1)}


def other_paragraph(qa: dict, home: Paragraph, same_article: Sequence[Paragraph],
                    neighbours: Sequence[Paragraph], rec: Recogniser) -> Paragraph | None:
    """A same-topic paragraph that lacks every reference answer, most question-like first."""
    answers = [rec.simplified(a) for a in qa["answers"]]
    qgrams = bigrams(rec.simplified(qa["question"]))

    def lacks(p: Paragraph) -> bool:
        simple = rec.simplified(p.context)
        return p is not home and not any(a in simple for a in answers)

    for group in (same_article, neighbours):
        cands = [p for p in group if lacks(p)]
        if cands:
            return max(cands, key=lambda p: len(qgrams & bigrams(rec.simplified(p.context))))
    return None


def nearest_paragraphs(paragraphs: Sequence[Paragraph], k: int = 8) -> dict[str, list[Paragraph]]:
    """For each paragraph, the k nearest others of the same split by char-bigram TF-IDF cosine."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    out: dict[str, list[Paragraph]] = {}
    by_split: dict[str, list[Paragraph]] = defaultdict(list)
    for p in paragraphs:
        by_split[p.split].append(p)
    for group in by_split.values():
        vec = TfidfVectorizer(analyzer="char", ngram_range=(2, 2), min_df=2, sublinear_tf=True)
        x = vec.fit_transform([p.context for p in group])
        sims = (x @ x.T).toarray()
        for i, p in enumerate(group):
            sims[i, i] = -1.0
            order = sims[i].argsort()[::-1][:k]
            out[p.context_id] = [group[j] for j in order]
    return out


def record(p: Paragraph, qa: dict, *, rid: str, question: str, unanswerable: str | None,
           swap: dict | None = None, context: Paragraph | None = None) -> dict:
    ctx = context or p
    answerable = unanswerable is None
    return {
        "id": rid, "source": p.source, "split": p.split, "context_id": ctx.context_id,
        "title": ctx.title, "question": question, "context": ctx.context,
        "answers": list(qa["answers"]),
        "answer_starts": list(qa["answer_starts"]) if answerable else [],
        "unanswerable": unanswerable, "swap": swap, "original_id": qa["id"],
    }


def generate(paragraphs: Sequence[Paragraph], rec: Recogniser, *, max_answerable: int,
             seed: int, max_swaps: int = 2) -> list[dict]:
    """Answerable records (sampled per source and split) and their generated unanswerables."""
    for p in paragraphs:
        p.split = split_of(p.source, p.title)
    pools = {
        (src, split): build_pools([p for p in paragraphs if (p.source, p.split) == (src, split)], rec)
        for src in {p.source for p in paragraphs} for split in SPLITS
    }
    articles: dict[tuple, list[Paragraph]] = defaultdict(list)
    for p in paragraphs:
        articles[(p.source, p.title)].append(p)
    neighbours = nearest_paragraphs(paragraphs)
    rng = random.Random(seed)
    out: list[dict] = []
    for src in sorted({p.source for p in paragraphs}):
        for split in SPLITS:
            items = [(p, qa) for p in paragraphs if (p.source, p.split) == (src, split) for qa in p.qas]
            if len(items) > max_answerable:
                items = rng.sample(items, max_answerable)
                items.sort(key=lambda x: (x[0].context_id, x[1]["id"]))
            for p, qa in items:
                out.append(record(p, qa, rid=f"{src}:{qa['id']}", question=qa["question"],
                                  unanswerable=None))
                for q2, m, new in swap_questions(qa["question"], p.context, qa["answers"],
                                                 pools[(src, split)], rec, rng, max_swaps=max_swaps):
                    out.append(record(p, qa, rid=f"{src}:{qa['id']}:swap-{m.kind}", question=q2,
                                      unanswerable=f"swap_{m.kind}",
                                      swap={"kind": m.kind, "old": m.text, "new": new}))
                other = other_paragraph(qa, p, articles[(src, p.title)],
                                        neighbours.get(p.context_id, []), rec)
                if other:
                    out.append(record(p, qa, rid=f"{src}:{qa['id']}:para", question=qa["question"],
                                      unanswerable="other_paragraph", context=other))
    return out


def rgb_split(query_id: int) -> str:
    """RGB by query: the first 100 are what ``eval/benchmarks.py --limit 100`` reports, so they
    are test; 100-249 train, 250-299 calib."""
    return "test" if query_id < 100 else ("calib" if query_id >= 250 else "train")


def _rgb_answers(spec: Sequence) -> list[str]:
    """Every alternative of every element of an RGB answer spec, as strings."""
    out: list[str] = []
    for element in spec:
        out.extend([str(element)] if isinstance(element, str) else [str(a) for a in element])
    return [a for a in dict.fromkeys(out) if a.strip()]


def rgb_records(path: Path, seed: int, per_query: int = 2) -> list[dict]:
    """Near-topic noise, the kind the SQuAD-style sets lack: RGB zh news passages.

    Per query, up to ``per_query`` answerable records (a positive passage, two of the query's
    negatives as distractors) and as many ``noise`` records (three negatives that name none of
    the answers: the question shares their entities and years, but they do not answer it).
    """
    rng = random.Random(seed)
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    out: list[dict] = []
    for row in rows:
        qid, question = int(row["id"]), row["query"].strip()
        answers = _rgb_answers(row["answer"])
        pos = [t for t in row["positive"] if t.strip()]
        neg = [t for t in row["negative"] if t.strip() and not any(a.lower() in t.lower() for a in answers)]
        base = {"source": "rgb", "split": rgb_split(qid), "title": "", "question": question,
                "answers": answers, "swap": None, "original_id": str(qid)}
        for i, text in enumerate(pos[:per_query]):
            out.append(base | {"id": f"rgb:{qid}:pos{i}", "context_id": f"rgb{qid}p{i}", "context": text,
                               "answer_starts": [-1] * len(answers), "unanswerable": None,
                               "distractors": rng.sample(neg, min(2, len(neg)))})
        for i in range(min(per_query, len(neg) // 3)):
            group = neg[3 * i: 3 * i + 3]
            out.append(base | {"id": f"rgb:{qid}:noise{i}", "context_id": f"rgb{qid}n{i}", "context": group[0],
                               "answer_starts": [], "unanswerable": "noise", "distractors": group[1:]})
    return out


_SENTENCE_END = re.compile(r"(?<=[。！？；!?;])|\n+")


def label_sentences(record: dict, split=None) -> list[tuple[str, bool]]:
    """The record's context cut into sentences, each labelled "holds a reference answer".

    Every label is False for an unanswerable record: after a swap the answer span is still in
    the context, but it no longer answers the question. Pass the product's own sentence
    splitter as `split` so the labels match what the scorer will see; the default cuts after
    。！？； and at line breaks.
    """
    cut = split or (lambda text: [s for s in _SENTENCE_END.split(text) if s and s.strip()])
    answerable = record["unanswerable"] is None
    return [(s, answerable and any(a in s for a in record["answers"])) for s in cut(record["context"])]


def write_gzip_jsonl(path: Path, rows: Iterable[dict]) -> None:
    """Byte-for-byte reproducible gzip (no file name, mtime 0), so the data hash is stable."""
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=9) as gz:
        for r in rows:
            gz.write((json.dumps(r, ensure_ascii=False) + "\n").encode("utf-8"))
    path.write_bytes(buf.getvalue())


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def readme(rows: Sequence[dict], files: Sequence[Path], args: argparse.Namespace) -> str:
    """The counts per split, source and kind, and the hash of every file."""
    kinds = ["answerable"] + [f"swap_{k}" for k in KINDS] + ["other_paragraph", "noise"]
    count = Counter((r["split"], r["source"], r["unanswerable"] or "answerable") for r in rows)
    lines = [
        "# Reader data (generated; do not edit by hand)",
        "",
        "Built by `python eval/reader_data.py --shared ../shared --max-answerable "
        f"{args.max_answerable} --seed {args.seed} --max-swaps {args.max_swaps}` from CMRC 2018 dev, DRCD dev (Traditional, kept as",
        "is) and XQuAD zh (see `../shared/benchmarks/*/SOURCE.md`; CC BY-SA: this derived data is",
        "shared alike under the same licences). The script's docstring describes the record layout,",
        "the generated unanswerables and the split (by article: no article or context is in two",
        "splits). Fit on `train`, choose thresholds on `calib`, report on `test`.",
        "",
        "Records: `id`, `source` (cmrc/drcd/xquad), `split`, `context_id`, `title`, `question`,",
        "`context`, `answers` (all distinct references), `answer_starts` (offsets of the answers in",
        "the context, -1 = not a span; empty for unanswerables), `unanswerable` (null or the kind",
        "below), `swap` (`{kind, old, new}` for swaps), `original_id` (the source question id).",
        "`reader_data.label_sentences(record, split)` labels the context's sentences.",
        "",
        "- `answerable`: the question with its own paragraph (up to "
        f"{args.max_answerable} per source and split, seed {args.seed}).",
        "- `swap_<kind>`: one constraint the context states (year, date, number with its unit,",
        "  ordinal, place, person, organisation) replaced everywhere in the question by another value",
        "  of the same kind from the same source and split that the context lacks (also in the other",
        "  script / without its unit); near values first (2023 for 2024, 第四届 for 第三届); the",
        "  context is unchanged. At most "
        f"{args.max_swaps} per question, one per kind, rare kinds first.",
        "- `other_paragraph`: the question with another paragraph of its article (DRCD, XQuAD) or",
        "  the nearest paragraph of its split by char-bigram TF-IDF (CMRC: one paragraph per",
        "  article) that contains none of the references.",
        "",
        "Caveats: names come from jieba.posseg tags (ns/nr/nt; kept when tagged so at least twice",
        "in the split, or in the place list), so a quarter or so of name swaps read oddly",
        "(`矢蓝田瞳`); they remain unanswerable from their context. Table row/column swaps do not",
        "apply here (no tables). `other_paragraph` checks only that no reference string occurs in",
        "the paired paragraph, as SQuAD 2.0's generators did.",
        "- `noise` (source `rgb`, RGB zh_refine, CC BY-NC-SA): the query with three of its negative",
        "  news passages that name none of its answers; its answerable records are a positive",
        "  passage with two negatives as `distractors`. Split by query: 0-99 test (what",
        "  `eval/benchmarks.py --limit 100` reports), 100-249 train, 250-299 calib.",
        "",
        "| split | source | " + " | ".join(kinds) + " | total |",
        "|---|---|" + "---:|" * (len(kinds) + 1),
    ]
    for split in SPLITS:
        for src in sorted({r["source"] for r in rows}):
            cells = [count[(split, src, k)] for k in kinds]
            lines.append(f"| {split} | {src} | " + " | ".join(map(str, cells)) + f" | {sum(cells)} |")
    lines += ["", "| file | records | sha256 |", "|---|---:|---|"]
    for f in files:
        n = sum(1 for r in rows if f.name == f"reader-{r['split']}.jsonl.gz")
        lines.append(f"| `{f.name}` | {n} | `{sha256(f)}` |")
    both = hashlib.sha256("".join(sha256(f) for f in files).encode()).hexdigest()
    lines += ["", f"Data hash (sha256 of the three files' sha256 in split order): `{both}`", ""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", type=Path, default=Path("../shared"), help="the shared data folder")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "data")
    ap.add_argument("--max-answerable", type=int, default=1500, help="per source and split")
    ap.add_argument("--seed", type=int, default=12)
    ap.add_argument("--max-swaps", type=int, default=2, help="swapped questions per question, one per kind")
    ap.add_argument("--sources", default=",".join(SOURCES))
    ap.add_argument("--no-rgb", action="store_true", help="without the RGB zh near-topic noise records")
    args = ap.parse_args(argv)
    rec = Recogniser()
    paragraphs: list[Paragraph] = []
    for src in args.sources.split(","):
        path = args.shared / SOURCES[src]
        if not path.is_file():
            print(f"错误：找不到 {path}；请用 --shared 指向共享数据目录", file=sys.stderr)
            return 2
        paragraphs += load_squad(path, src)
    rows = generate(paragraphs, rec, max_answerable=args.max_answerable, seed=args.seed,
                    max_swaps=args.max_swaps)
    if not args.no_rgb:
        rgb = args.shared / RGB_PATH
        if not rgb.is_file():
            print(f"错误：找不到 {rgb}；请用 --shared 指向共享数据目录，或加 --no-rgb", file=sys.stderr)
            return 2
        rows += rgb_records(rgb, args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    files = []
    for split in SPLITS:
        f = args.out / f"reader-{split}.jsonl.gz"
        write_gzip_jsonl(f, (r for r in rows if r["split"] == split))
        files.append(f)
    (args.out / "README.md").write_text(readme(rows, files, args), encoding="utf-8")
    print(json.dumps({"records": len(rows), "files": [str(f) for f in files]}, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
