"""What a question asks for: its answer type and the constraints an answer must agree with.

The reader's features are computed against this analysis. Everything here is general
wording of Chinese (and English) questions — interrogatives, measure words, dates, names —
never phrases of particular questions; the weights that turn it into a decision are fitted
on data (``rag/answer/reader.py``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from rag.lexical import SPOKEN_INTERROGATIVES, SURNAMES, ChineseTokenizer, whole_words
from rag.retrieve import latin_script
from rag.support import QuestionProfile

AnswerType = Literal["number", "when", "who", "where", "list", "how", "page", "other"]

_NUMBER_Q = re.compile(
    r"多少|(?<!哪)几[个名项场次人家年月天位条种件宗批期届所倍成岁元万亿%]|比例|百分之|百分比|涨幅|增长了|下降了|增幅|降幅"
    r"|占比|金额|数量|多高|多大|多长|多久|多远|多重|几成|几倍|how many|how much|what percentage|what proportion"
)
_WHEN_Q = re.compile(
    r"什么时候|何时|哪天|哪一天|哪几天|哪年|哪一年|几月|几号|哪个月|日期|什么时间|when|what year|which year|what date"
)
def standard_interrogatives(text: str) -> str:
    """``text`` with its spoken interrogatives written as the standard ones (为啥 -> 为什么), so
    that the patterns below, written for the standard ones, type it."""
    for spoken, written in SPOKEN_INTERROGATIVES:
        text = text.replace(spoken, written)
    return text


# A why-question naming a date or an amount (为什么还能延长食品的最佳食用日期) asks a reason.
_WHY_Q = re.compile(r"为什么|为何|\bwhy\b")
_WHO_Q = re.compile(r"谁|哪位|哪个人|哪些人|何人|什么人|哪个单位|哪家|哪个部门|哪个组织|哪个机构|\bwho\b|\bwhose\b|which organi[sz]ation")
_WHERE_Q = re.compile(r"哪里|哪儿|何处|什么地方|哪个地方|在哪|哪个城市|哪个省|哪个市|哪个区|哪个县|哪座|\bwhere\b|which city")
_LIST_Q = re.compile(
    r"哪些|哪几|哪[二三四五六七八九十]|几[个项条点方面类种大]|包括|分别|有什么|做法|措施|举措|内容|方面"
    r"|\bwhat are\b|\bwhich\b.*\bare\b|\blist\b|\bmeasures\b|\bsteps\b"
)
_HOW_Q = re.compile(
    r"怎么|怎样|如何|为什么|为何|原因|办法|经验|成效|效果|意义|作用|运作|机制|\bhow\b|\bwhy\b|what did .* do"
)
# A query typed as a noun phrase, search-engine style ("寺庙踩踏事故死亡人数", "春运开始时间",
# "首趟班列的起点"): no interrogative, but its last noun says what kind of answer it wants.
_TERSE_TYPES: tuple[tuple[AnswerType, re.Pattern[str]], ...] = (
    ("number", re.compile(
        r"(?:人数|数量|总数|数目|金额|票房|吞吐量|产量|销量|交付量|增长率|增速|增幅|涨幅|降幅|占比|比例|票数|得票率|"
        r"价格|市值|营收|收入|人口|面积|规模|年龄)$"
    )),
    ("when", re.compile(r"(?:时间|日期|年份|时候|开幕式?时间|起止时间)$")),
    ("where", re.compile(r"(?:地点|地址|举办地|所在地|起点|终点|位置|场馆|场地|目的地|发源地)$")),
    ("who", re.compile(
        r"(?:冠军|亚军|季军|得主|获得者|获奖者|主演|导演|作者|编剧|主席|总统|总理|首相|董事长|总经理|创始人|发言人|"
        r"主持人|负责人|主编|社长)$"
    )),
)
_PAGE_Q = re.compile(r"第几页|哪一页|哪页|几页|页码|什么页|哪个页|刊登在|登在哪|\bwhich page\b|\bwhat page\b")
# 多少名/几场: the measure word the answer's count must use (名 is also answered by 人, 位).
_MEASURE_Q = re.compile(
    r"(?:多少|(?<!哪)几)(个|名|人|场|宗|项|次|家|所|条|件|批|期|届|位|天|年|元|钱|倍|座|户|篇|本|册|份|套|张|支|台|辆|种|类|处|间|块|平方米|公里|小时|万元|亿元|万人|岁)"
)
# 多少钱 is answered in 元 (万元 and 亿元 end in 元 too).
# 个 is the general classifier: 多少个注安师 is answered by "122人".
_MEASURE_ALIASES = {"名": "名人位", "人": "名人位", "位": "名人位", "个": "个项家所支名人位", "钱": "元"}
# A count asked as an attribute (参保人数是多少, 企业家数有多少) is answered in that attribute's unit.
_COUNTED_ATTRIBUTE = re.compile(r"(人数|人次|家数|户数|次数|场次|篇数|件数|宗数)(?:是|为|有|达|共|约)?(?:多少|几)")
_ATTRIBUTE_UNITS = {
    "人数": "名人位", "人次": "人", "家数": "家", "户数": "户", "次数": "次", "场次": "场", "篇数": "篇",
    "件数": "件", "宗数": "宗",
}
# A dimension asked (多长, 多远, 多久) is answered in one of its units: "广州海心桥有多长" is not
# answered by the year it opened.
_DIMENSION_Q = re.compile(r"多长时间|(?:期|时间|时长|学制|年限)(?:是|有|为)?多长|多长|多远|多高|多重|多久")
_DURATION = r"年|个月|月|周|天|日|小时|分钟|秒"
_DIMENSION_UNITS = {
    "多长时间": _DURATION,
    "多久": _DURATION,
    "多长": r"米|公尺|公里|千米|厘米|公分|毫米|英里|英尺|码|海里",
    "多远": r"公里|千米|米|公尺|英里|海里|光年",
    "多高": r"米|公尺|层|厘米|公分|英尺",
    "多重": r"吨|公斤|千克|斤|克|磅|盎司",
}
_NUM = r"[\d一二三四五六七八九十百千万亿两〇零]+(?:\.\d+)?\s*(?:万|亿)?\s*(?:余|多)?\s*"
# An amount of money asked without a measure word (月薪是多少, 投入资金多少) is answered in a currency.
_MONEY_Q = re.compile(
    r"(?:工资|薪酬|薪资|月薪|年薪|收入|金额|资金|经费|奖金|费用|价格|价位|补贴|慰问金|造价|票价|成本|预算|营收|利润)"
    r"(?:标准|水平)?(?:是|为|有|达|共|约)?(?:多少|几)(?![个名人场宗项次家所条件批期届位天年倍座户篇本册份])"
)
_MONEY = re.compile(r"[\d一二三四五六七八九十百千万两〇零.]\s*(?:余|多)?\s*(?:万|亿|千|百)?\s*(?:[美港欧日澳台]?元|圆|英?镑|美金|块钱)|[$￥¥€£]\s*\d")
_RATE_Q = re.compile(r"增幅|涨幅|降幅|比例|占比|百分之|百分比|增长率|增速|percentage|proportion")
_RATE = re.compile(r"\d\s*(?:\.\d+)?\s*[%％]|百分之|[一二三四五六七八九十\d]\s*成|倍|个百分点|[一二三四五六七八九十]分之|一半|半数|过半")
# The noun a count is about: 有多少个【新业态工会代表】？
_COUNT_NOUN = re.compile(r"(?:多少|几)[个名人场宗项次家所条件批期届位种类篇座户支台]?([^，,。？?！!\s的]{2,12})")
# The role a who-question asks to fill: 竞赛的【冠军】是谁？ 谁是本刊【社长】？ (是谁 closing the clause:
# in 是谁创立的 the words before it are the subject, not a role).
_ROLE_Q = re.compile(r"([^，,。？?！!\s]{2,12}?)(?:分别)?(?:是|为)(?:谁|哪位|何人|什么人|哪个人)(?:呢|啊|呀)?(?:[？?！!。，,]|$)")
_ROLE_Q_FIRST = re.compile(r"谁是([^，,。？?！!\s]{2,12})")
_GENERIC_ROLES = frozenset("人 人员 人士 单位 对象 主人 负责人 成员 代表 嘉宾".split())
_YEAR = re.compile(r"(?<!\d)((?:19|20)\d{2})(?:年|\b)")  # in a question: 2023年, "in 2023"
# A year as the magazine prints one (2025年): "2000本" is a count, not a year.
PRINTED_YEAR = re.compile(r"(?<!\d)((?:19|20)\d{2})(?=年)")
# A day as printed: 12月5日, 12月5号 (a range "12月3—4日" is its first day).
MONTH_DAY = re.compile(r"(?<!\d)(\d{1,2})月(\d{1,2})[日号]")
# 号 after a number is a day, unless it numbers a thing: 13号线, 3号楼, 2号机组, 1号文件.
_NUMBERED = "线楼院房室机舱门桥台位码文"
_DAY_MARK = rf"(?:日|号(?![{_NUMBERED}]))"
# 13号线, 3号楼: a number naming a thing, not a day (for patterns that would read it as one).
NUMBERED_THING = re.compile(rf"\d+号(?=[{_NUMBERED}])")
_DATE = re.compile(r"\d{1,2}月(?:\d{1,2}" + _DAY_MARK + r")?|(?<!\d)\d{1,2}" + _DAY_MARK)
_NUMBER = re.compile(r"(?<![\d.])\d+(?:\.\d+)?%?")
_ORDINAL = re.compile(r"第[一二三四五六七八九十百\d]+[届次期批轮个项名]")
# The ordinals that name one edition of something (第三届, 第6期, 第六次会议); 第一次 is also "for
# the first time", so 次 counts from the second.
_EDITION = re.compile(r"第([一二三四五六七八九十\d]+)([届期批轮])|第(?!一次|1次)([一二三四五六七八九十\d]+)(次)")
_CN_DIGITS = "零一二三四五六七八九"
_DAY = re.compile(r"(?:(\d{1,2})月)?(\d{1,2})" + _DAY_MARK + r"|(\d{1,2})月")
_QUOTED = re.compile(r"[“\"「『《]([^”\"」』》]{1,24})[”\"」』》]")
_CJK_RUN = re.compile(r"[\u4e00-\u9fff]{2,}")
_MARKUP = re.compile(r"<(script|style)\b.*?</\1\s*>|<[^<>]{1,200}>", re.S | re.I)
_NAMED_FLAGS = ("ns", "nr", "nt", "nz")
# Words jieba's dictionary tags as names that name no one place, person or organisation.
# The common nouns among the dictionary's 200 most frequent place tags (东西 "thing", 太阳, 大桥)
# and the compass areas (东北, 西南: regions too vague to hold a source to) are no place either:
# "什么东西" made 东西 a place no answering article names.
_GENERIC_NAMES = frozenset(
    "中国 全国 国家 我国 工会 职工 广东 广东省 城市 长度 新建 外国 国外 海外 当地 本地 "
    "东西 平原 爱国 英雄 朝廷 太阳 哥哥 海洋 湖泊 大桥 高原 上市 建国 美丽 山区 江湖 大街 王国 开国 "
    "共和国 城镇 阿哥 庆典 南路 深度 山脉 回国 治安 大国 新鲜 古城 海峡 河口 冰川 山水 长大 "
    "南北".split()
)
# A jieba dictionary count below this is a rare word (清远 44, 海珠 11; 工业 26775, 城区 1517).
RARE_WORD = 100
# Function characters jieba's HMM glues to a surname-like character (曾于, 史上, 王是, 陈以): no name.
_NOT_IN_NAME = frozenset("于是以在有时上约前后等的了为和与及被把对从向由而将都也就又还才所其此之何曾今氏")
_CJK_WORD = re.compile(r"[\u4e00-\u9fff]{2,3}")
# A name right before a title ("12月17日许平坚副主席"): the date glued to it can split it for jieba.
_NAME_BEFORE_TITLE = re.compile(
    r"([\u4e00-\u9fff]{2,3}?)(?=(?:常务)?副?(?:主席|书记|部长|局长|主任|厅长|市长|省长|区长|县长|经理|董事长|院长|校长|"
    r"教授|同志|先生|女士|师傅))"
)
# A question ending in the value it asks for: 湛江钢铁2024年的【伤害频率】是多少？
_ASKS_VALUE = re.compile(r"(?:是|为|有|达到?|约|大概|大约)?(?:多少|几何)[？?。!！\s]*$")
# An ordinal and what it counts: 第三种, 第二套, 第十大, 第24个.
_ORDINAL_OF = re.compile(r"第([一二三四五六七八九十\d]{1,3})([^\s\d一二三四五六七八九十、，,。；;：:])")
# 两国, 三省: a count of places, not a place.
_COUNTED = re.compile(r"^[\d一二两三四五六七八九十几多数各]")


@dataclass
class QuestionInfo:
    """A question analysed once per request; the reader's features read from it."""

    text: str
    norm: str
    profile: QuestionProfile
    answer_type: AnswerType
    listing: bool
    how: bool
    page: bool
    latin: bool  # written in a Latin-script language: lexical features carry nothing
    constraints: list[str] = field(default_factory=list)  # normalised strings an answer must agree with
    years: list[str] = field(default_factory=list)
    days: list[tuple[str, str]] = field(default_factory=list)  # (month, day) of every 12月5日 named
    # The question's anchors: its years, days, places and editions. A source that names none of
    # them is about another year, place or edition (the most tempting wrong answer).
    anchors: list[re.Pattern[str]] = field(default_factory=list)
    count_pattern: re.Pattern[str] | None = None
    count_noun: str | None = None
    role: str | None = None  # the role a who-question asks to fill (冠军, 社长)
    quoted: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)  # the places, people and organisations it names
    places: list[str] = field(default_factory=list)  # the names among them that are places
    persons: list[str] = field(default_factory=list)  # the people it names (黄宁生, 许平坚)
    # Amounts the question states as a condition (超过1万元的占多少: 10000 元), as (value, unit).
    quantities: list[tuple[float, str]] = field(default_factory=list)
    # The attribute a number question ends by asking the value of (伤害频率是多少 -> 频率).
    attribute: str | None = None
    ordinals: frozenset[tuple[int, str]] = frozenset()  # 第二套 -> (2, "套")
    # A compound name's own words (广州市政府 -> 广州, 市政府): a source stating each of them
    # names it too.
    name_parts: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def missing_persons(self, text: str) -> list[str]:
        """The question's people that normalised ``text`` never names; one character of a
        three-character name may differ (叶奕峰 asked, 叶奕锋 printed: a typo, not another person)."""
        out = []
        for name in self.persons:
            if name in text:
                continue
            if len(name) == 3 and re.search(f"{name[:2]}.|{name[0]}.{name[2]}|.{name[1:]}", text):
                continue
            out.append(name)
        return out

    def unnamed_in(self, text: str) -> bool:
        """Whether normalised ``text`` (an article) leaves out a person or place the question names."""
        return bool(self.missing_persons(text) or self.missing_names(text, self.places))

    def missing_names(self, text: str, names: list[str] | None = None) -> list[str]:
        """Those of ``names`` (default: every name of the question) that normalised ``text`` never states."""
        out = []
        for name in self.names if names is None else names:
            parts = self.name_parts.get(name, ())
            if name not in text and not (parts and all(p in text for p in parts)):
                out.append(name)
        return out

    @property
    def broad(self) -> bool:
        """Lists, how and why: answered by several sentences or an enumeration."""
        return (self.listing or self.how) and self.answer_type not in ("number", "when", "page")


def _noun_phrase(norm: str) -> str:
    return norm.rstrip("?？!！。. ")


def _terse_type(norm: str) -> AnswerType:
    """The answer type of a question typed as a noun phrase ("春运开始时间"), else "other"."""
    phrase = _noun_phrase(norm)
    for kind, pattern in _TERSE_TYPES:
        if pattern.search(phrase):
            return kind
    return "other"


def _role(norm: str, tokenizer: ChineseTokenizer, terse: bool) -> str | None:
    """The head word of the role a who-question asks to fill, or None (generic: 负责人, 人员);
    ``terse``: the question is a noun phrase ending in the role ("春节档首日票房冠军")."""
    m = _ROLE_Q.search(norm) or _ROLE_Q_FIRST.search(norm)
    if m is None and not terse:
        return None
    phrase = m.group(1) if m is not None else _noun_phrase(norm)
    words = [w for w in whole_words(tokenizer.words(phrase)) if len(w) >= 2]
    return words[-1] if words and words[-1] not in _GENERIC_ROLES else None


def _named_entities(words: list[str], tokenizer: ChineseTokenizer) -> list[str]:
    """Place, person and organisation names among the question's words (jieba's dictionary tags).

    A dictionary lookup per word, not ``jieba.posseg``: posseg is slow on rare characters, and a
    question's cost must stay linear in its length.
    """
    out = []
    for w in whole_words(words):
        kind = tokenizer.name_kind(w)
        if len(w) >= 2 and kind is not None and kind[:2] in _NAMED_FLAGS and w not in _GENERIC_NAMES:
            if not (kind.startswith("ns") and _COUNTED.match(w)):
                out.append(w)
    return out


def _day_pattern(m: re.Match[str]) -> str:
    """A date of the question as a pattern: 24号 also matches 24日, 12月3日 also 12月3—4日."""
    month, day, month_only = m.group(1), m.group(2), m.group(3)
    if month_only:
        return rf"(?<!\d){month_only}月"
    head = rf"(?<!\d){month}月" if month else r"(?<!\d)"
    return head + rf"0?{day}(?:[日号]|\s*[至到—\-－~～、])"


def numeral_value(text: str) -> int | None:
    """1-99 written in digits or Chinese numerals (6, 六, 十五, 二十三), else None."""
    if text.isdigit():
        return int(text)
    if not text or any(ch not in _CN_DIGITS + "十" for ch in text):
        return None
    if "十" not in text:
        return _CN_DIGITS.index(text) if len(text) == 1 else None
    tens, _, ones = text.partition("十")
    if len(tens) > 1 or len(ones) > 1:
        return None
    return (_CN_DIGITS.index(tens) if tens else 1) * 10 + (_CN_DIGITS.index(ones) if ones else 0)


def chinese_numeral(n: int) -> str:
    """1-99 in Chinese numerals: 6 -> 六, 15 -> 十五, 23 -> 二十三."""
    tens, ones = divmod(n, 10)
    head = "" if tens == 0 else ("十" if tens == 1 else _CN_DIGITS[tens] + "十")
    return head + (_CN_DIGITS[ones] if ones or not tens else "")


def _edition_pattern(m: re.Match[str]) -> str:
    """第六次 also matches 第6次 (and back): the same edition, in either script of numerals."""
    number, unit = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
    n = numeral_value(number)
    if n is None or not 0 < n < 100:
        return re.escape(m.group(0))
    return rf"第(?:{n}|{chinese_numeral(n)})(?![\d一二三四五六七八九十]){unit}"


def anchor_patterns(norm: str, places: list[str]) -> list[re.Pattern[str]]:
    """The years, days, places and editions of a normalised question, as patterns to look for."""
    pats = [rf"(?<!\d){y}(?!\d)" for y in dict.fromkeys(_YEAR.findall(norm))]
    pats += [_day_pattern(m) for m in _DAY.finditer(norm)]
    pats += [_edition_pattern(m) for m in _EDITION.finditer(norm)]
    pats += [re.escape(p) for p in places]
    return [re.compile(p) for p in dict.fromkeys(pats)]


def _persons(norm: str, words: list[str], tokenizer: ChineseTokenizer) -> list[str]:
    """People the question names: words jieba's dictionary does not know, shaped like a name.

    (The dictionary's own person tags are no help: it tags 顺德, 荣誉 and 马拉松 as names.)"""
    def name_like(w: str) -> bool:
        return w[0] in SURNAMES and not any(ch in _NOT_IN_NAME for ch in w[1:]) and not tokenizer.known(w)

    found = [w for w in whole_words(words) if _CJK_WORD.fullmatch(w) and name_like(w)]
    found += [m.group(1) for m in _NAME_BEFORE_TITLE.finditer(norm) if name_like(m.group(1))]
    return list(dict.fromkeys(found))


# An amount written in digits with its unit: 1万元, 30人, 5.5公里, 20% (not a year, a date or a
# rank: 第15名).
QUANTITY = re.compile(
    r"(?<![\d.第])(\d+(?:\.\d+)?)\s*(万|亿)?\s*(元|人|名|个|家|项|次|岁|天|米|公里|吨|亩|平方米|%)"
)


_MAGNITUDE = {"万": 1e4, "亿": 1e8}
_SAME_UNIT = {"名": "人"}  # 30名 and 30人 are the same count


def ordinals(text: str) -> frozenset[tuple[int, str]]:
    """(value, what it counts) of every ordinal in ``text``: 第三种 and 第3种 -> (3, "种")."""
    out = set()
    for m in _ORDINAL_OF.finditer(text):
        n = numeral_value(m.group(1))
        if n is not None:
            out.add((n, m.group(2)))
    return frozenset(out)


def _count_pattern(question: str, norm: str, low: str, kind: AnswerType) -> re.Pattern[str] | None:
    """What a figure answering the question looks like, when the question says: a count in its
    measure word (多少名 -> N名/N人) or counted attribute (参保人数是多少), a dimension in one of
    its units (多长 -> N米), a rate, an amount of money; None when it says nothing of the kind."""
    measures = "".join(_MEASURE_ALIASES.get(m, m) for m in _MEASURE_Q.findall(question))
    if measures:
        return re.compile(_NUM + "(?:" + "|".join(map(re.escape, dict.fromkeys(measures))) + ")")
    counted = _COUNTED_ATTRIBUTE.search(norm)
    if counted:  # 参保人数是多少: a count of people, or the attribute's own figure without its unit
        units = "|".join(map(re.escape, dict.fromkeys(_ATTRIBUTE_UNITS[counted.group(1)])))
        return re.compile(f"{_NUM}(?:{units})|{counted.group(1)}(?:为|是|达到?|约|超过?|突破|共)?\\s*\\d")
    dimension = _DIMENSION_Q.search(norm) if kind == "number" else None
    if dimension:
        asked = dimension.group(0)
        if asked != "多长" and asked.endswith("多长"):
            asked = "多长时间"  # a period's length is a time: 任期多长, 假期有多长
        return re.compile(_NUM + "(?:" + _DIMENSION_UNITS[asked] + ")")
    if _RATE_Q.search(low):
        return _RATE  # a rate is answered by a percentage, 几成, 几倍 or percentage points
    if kind == "number" and _MONEY_Q.search(norm):
        return _MONEY
    return None


def _asked_attribute(norm: str, words: list[str], kind: AnswerType) -> str | None:
    """The attribute a number question ends by asking the value of (伤害频率是多少 -> 频率)."""
    m = _ASKS_VALUE.search(norm) if kind == "number" else None
    if m is None:
        return None
    before = [w for w in whole_words(words) if len(w) >= 2 and w in norm[: m.start()]]
    return before[-1] if before else None


def quantities(text: str) -> list[tuple[float, str]]:
    """(value, unit) of every amount in normalised ``text``: 1万元 -> (10000.0, "元")."""
    return [
        (float(m.group(1)) * _MAGNITUDE.get(m.group(2) or "", 1.0), _SAME_UNIT.get(m.group(3), m.group(3)))
        for m in QUANTITY.finditer(text)
    ]


_ADMIN_UNITS = "省市区县镇"


_CJK_NAME = re.compile(r"[\u4e00-\u9fff]{2,4}")


def is_proper_name(word: str, tokenizer: ChineseTokenizer) -> bool:
    """A place, person or organisation name: tagged as one by the dictionary, or a rare word."""
    if len(word) < 2 or word in _GENERIC_NAMES:
        return False
    kind = tokenizer.name_kind(word) or ""
    return kind[:2] in ("ns", "nr", "nt") or (
        _CJK_NAME.fullmatch(word) is not None and tokenizer.frequency(word) < RARE_WORD
    )


def _places(
    norm: str, words: list[str], tokenizer: ChineseTokenizer, corpus_has: Callable[[str], bool] | None = None
) -> list[str]:
    """Places the question names: jieba's place names, and a rare word followed by an administrative
    unit, in the question or anywhere in the corpus (清远市, 海珠区, 茂名市: the dictionary tags them
    清远 "clear and far", or not at all; 工业区, 社区 and 城区 are common words). So "惠州鹅城茂名"
    names 茂名 as a place because the magazine prints 茂名市 elsewhere."""
    out = []
    for w in whole_words(words):
        if len(w) < 2 or w in _GENERIC_NAMES or _COUNTED.match(w):
            continue
        if (tokenizer.name_kind(w) or "").startswith("ns"):
            out.append(w)
        elif (
            _CJK_WORD.fullmatch(w)
            and tokenizer.frequency(w) < RARE_WORD
            and (
                re.search(re.escape(w) + f"[{_ADMIN_UNITS}]", norm)
                or (corpus_has is not None and any(corpus_has(w + unit) for unit in _ADMIN_UNITS))
            )
        ):
            out.append(w)
    return out


def analyze_question(
    question: str,
    tokenizer: ChineseTokenizer,
    idf: Callable[[str], float] | None = None,
    corpus_has: Callable[[str], bool] | None = None,
    translated: str | None = None,
) -> QuestionInfo:
    """Answer type, constraints and the lexical profile of ``question``.

    ``translated``: for an English question, the Chinese words it translates to in the passages
    retrieved (``rag.crosslingual.choose_translations``); its lexical profile is built from them,
    so it is read with the same features as a Chinese question.

    ``corpus_has(text)``: whether the corpus contains a normalised string anywhere (places it
    names are not anchors); without it every place of the question is one.
    """
    # Markup pasted into a question (a tag, a script) asks nothing: its numbers are no constraint.
    question = _MARKUP.sub(" ", question).strip() or question
    latin = latin_script(question)
    glossed = latin and bool(translated)
    profile = QuestionProfile(translated if glossed else question, tokenizer, idf)
    norm = profile.norm
    low = standard_interrogatives(question.lower())
    page = bool(_PAGE_Q.search(low))
    listing = bool(_LIST_Q.search(low))
    how = bool(_HOW_Q.search(low))
    terse = False  # typed as a noun phrase, no interrogative ("春运开始时间")
    if page:
        kind: AnswerType = "page"
    elif _NUMBER_Q.search(low) and not _WHY_Q.search(low):
        kind = "number"
    elif _WHEN_Q.search(low) and not _WHY_Q.search(low):
        kind = "when"
    elif _WHO_Q.search(low):
        kind = "who"
    elif _WHERE_Q.search(low):
        kind = "where"
    elif listing:
        kind = "list"
    elif how:
        kind = "how"
    else:
        kind = _terse_type(norm)
        terse = kind != "other"
    years = list(dict.fromkeys(_YEAR.findall(norm)))
    constraints: list[str] = []
    constraints += [f"{y}" for y in years]
    constraints += _DATE.findall(norm)
    constraints += _ORDINAL.findall(norm)
    constraints += [n for n in _NUMBER.findall(norm) if n not in years and len(n) <= 8]
    quoted = [q for q in _QUOTED.findall(norm) if q.strip()]
    constraints += quoted
    names = [] if latin else _named_entities(profile.words, tokenizer)
    constraints += names
    constraints = list(dict.fromkeys(c for c in constraints if c.strip()))
    if latin:
        # A Chinese name written into an English question ("the Ele.me (饿了么) union") was copied
        # from somewhere: it is quoted, and a corpus that never prints it does not answer.
        quoted += [tokenizer.normalize(run) for run in _CJK_RUN.findall(question)]
    count_pattern = _count_pattern(question, norm, low, kind)
    noun = _COUNT_NOUN.search(norm)
    # A place is an anchor only when the corpus never names it: jieba's dictionary tags common
    # words as places too (新建, 城市), and a place the corpus does use is left to the reader's
    # features, which weigh it against the rest of the evidence.
    named_places = [] if latin else _places(norm, profile.words, tokenizer, corpus_has)
    places = [w for w in named_places if not corpus_has(w)] if corpus_has is not None else named_places
    anchors = anchor_patterns(norm, places)
    all_names = list(dict.fromkeys([*names, *named_places]))
    parts = {n: tuple(w for w in tokenizer.words(n) if len(w) >= 2 and w != n) for n in all_names}
    return QuestionInfo(
        text=question,
        norm=norm,
        profile=profile,
        answer_type=kind,
        listing=listing,
        how=how,
        page=page,
        latin=latin and not glossed,
        constraints=constraints,
        years=years,
        days=list(dict.fromkeys(MONTH_DAY.findall(norm))),
        anchors=anchors,
        count_pattern=count_pattern,
        count_noun=noun.group(1) if noun and kind == "number" else None,
        role=_role(norm, tokenizer, terse) if kind == "who" and not latin else None,
        quoted=quoted,
        names=all_names,
        places=named_places,
        persons=[] if latin else _persons(norm, profile.words, tokenizer),
        quantities=quantities(norm),
        attribute=_asked_attribute(norm, profile.words, kind),
        ordinals=ordinals(norm),
        name_parts=parts,
    )
