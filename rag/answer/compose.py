"""Composing an answer by what was asked: one sentence for a fact, the passage's own list for a list.

A list, a "how" or a "why" is usually answered in the magazine by an enumeration: 一是…二是…,
（一）（二）, 1. 2., 首先/其次/最后, bullet lines, or clauses separated by ；. When the best
sentence opens or sits inside such an enumeration, every item becomes a bullet with its
citation; otherwise the best few sentences are given in reading order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rag.answer.question import chinese_numeral, numeral_value

# Families of item markers; items of one enumeration use one family.
_FAMILIES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("是", re.compile(r"(?:^|(?<=[。；;，,：:\n]))\s*([一二三四五六七八九十]是)")),
    ("括号", re.compile(r"(?:^|(?<=[。；;：:\n]))\s*([（(][一二三四五六七八九十]+[）)])")),
    ("数字括号", re.compile(r"(?:^|(?<=[。；;：:\n]))\s*([（(]\d{1,2}[）)])")),
    ("数字", re.compile(r"(?:^|(?<=\n))\s*(\d{1,2}[.、．](?!\d))")),
    ("序数", re.compile(r"(?:^|(?<=[。；;：:\n]))\s*(第[一二三四五六七八九十]+[，,、])")),
    ("首先", re.compile(r"(?:^|(?<=[。；;：:\n]))\s*(首先|其次|再次|然后|最后|此外)[，,]")),
    ("符号", re.compile(r"(?:^|(?<=\n))\s*([-•·●▪◆■])\s*")),
    # Lines that each open with a short label and a colon: "历史遗留问题积压：…".
    ("标签", re.compile(r"(?:^|(?<=\n))[ \t]*([^\n：:。，,；;！？]{2,14}[：:])(?=[^\n]{6,})")),
)
# A heading line between a lead sentence and its list: short, no sentence punctuation.
_HEADING = re.compile(r"[ \t]*[^\n。，,；;：:！？!?]{2,16}[ \t]*\n")
_BULLET_MARK = re.compile(r"^\s*[-•·●▪◆■]\s*")
_NEXT_HEADING = re.compile(r"\n[ \t]*[^\n。，,；;：:！？!?\-•·●]{2,16}[ \t]*\n")
_ITEM_END = re.compile(r"[。！？!?]|\n")
MAX_ITEM_CHARS = 160
MAX_ITEMS = 10


@dataclass(frozen=True)
class Item:
    """One enumerated item: its span in the chunk text."""

    start: int
    end: int
    text: str
    # The first sentence under a heading-like item ("（三）打造行业协商样本。" then "在水暖卫浴行业率先
    # 启动行业集体协商。"): what a how-question needs to see of it. "" for an item that is itself
    # a full statement.
    body: str = ""


_MARKER_NUMBER = re.compile(r"\d{1,2}|[一二三四五六七八九十]{1,3}")


def _ordinal(marker: str) -> int | None:
    """The number an item marker stands for (一是 -> 1, （3） -> 3, （十一） -> 11), None for
    unnumbered markers."""
    m = _MARKER_NUMBER.search(marker)
    return numeral_value(m.group(0)) if m else None


def _runs(starts: list[tuple[int, int | None]]) -> list[list[int]]:
    """Consecutive markers that count 1, 2, 3… (or carry no number), as runs of positions."""
    runs: list[list[int]] = []
    prev: int | None = None
    for pos, n in starts:
        follows = runs and (n is None or prev is None or n == prev + 1) and pos - runs[-1][-1] <= 800
        if follows:
            runs[-1].append(pos)
        else:
            runs.append([pos])
        prev = n
    return runs


def _items(text: str, run: list[int]) -> list[Item]:
    """The items whose markers start at ``run``: each up to its first sentence end (its heading),
    with the first sentence under it when that heading is short."""
    items = []
    for a, nxt in zip(run, [*run[1:], len(text)], strict=True):
        stop = _ITEM_END.search(text, a + 2, nxt)
        b = min(stop.end() if stop else nxt, a + MAX_ITEM_CHARS)
        piece = text[a:b].strip().rstrip("；;，,")
        if piece:
            body = _first_sentence(text, b, nxt) if len(piece) <= HEADING_ITEM_CHARS else ""
            items.append(Item(a, b, piece, body))
    return items


# An item heading this short ("一是订单培养，构建产教融合新模式。") names a measure without saying
# what was done; a longer item is a statement of its own.
HEADING_ITEM_CHARS = 40


def _first_sentence(text: str, start: int, stop: int) -> str:
    """The first sentence of ``text[start:stop]`` (past blank lines), or "" when it runs past
    ``MAX_ITEM_CHARS`` or is itself a short heading line."""
    m = _ITEM_END.search(text, start, stop)
    while m is not None and not text[start:m.start()].strip():
        start = m.end()  # blank lines between the heading and its text
        m = _ITEM_END.search(text, start, stop)
    end = m.end() if m is not None else stop
    sentence = text[start:end].strip()
    if not sentence or len(sentence) > MAX_ITEM_CHARS or _HEADING.fullmatch(sentence + "\n"):
        return ""
    return sentence


def enumeration(text: str, anchor: int, anchor_end: int) -> list[Item]:
    """The enumeration that the sentence at ``[anchor, anchor_end)`` opens or belongs to.

    Returns its items (at least two) in order, or ``[]`` when there is none near the sentence:
    the sentence must lie inside the enumeration or just before its first item (a lead such as
    "主要做法有："). Each item is shown up to its first sentence end: the item's own heading.
    """
    best: list[Item] = []
    for _family, pattern in _FAMILIES:
        marks = [(m.start(1), _ordinal(m.group(1))) for m in pattern.finditer(text)]
        for run in _runs(marks):
            if len(run) < 2 or not (anchor <= run[-1] + MAX_ITEM_CHARS and run[0] <= anchor_end + 120):
                continue
            items = _items(text, run)
            if len(items) > len(best):
                best = items[:MAX_ITEMS]
    return best


def list_after(text: str, end: int) -> tuple[str, list[Item]]:
    """The list that starts right after ``end`` (past blank lines and one heading line): what a
    lead sentence such as "……提供了宝贵的经验启示。" or a heading such as "针对问题" introduces.

    Its items are consecutive markers of one family up to the next heading line (the list after
    that heading answers something else). Returns the heading ("" when none) and the items.
    """
    pos = end
    title = ""
    while pos < len(text) and text[pos] in " \t\n":
        pos += 1
    heading = _HEADING.match(text, pos)
    if heading and not any(pattern.match(text, pos) for _family, pattern in _FAMILIES[:-1]):
        # (a short first item, "（一）坚持党建引领", is the list itself, not a heading over it)
        title = heading.group(0).strip()
        pos = heading.end()
        while pos < len(text) and text[pos] in " \t\n":
            pos += 1
    for _family, pattern in _FAMILIES:
        marks = [m.start(1) for m in pattern.finditer(text, pos)]
        if not marks or marks[0] - pos > 2:
            continue
        run = [marks[0]]
        for nxt in marks[1:]:
            if _NEXT_HEADING.search(text, run[-1], nxt) or nxt - run[-1] > 800:
                break
            run.append(nxt)
        items = _items(text, run)
        if len(items) >= 2:
            return title, items[:MAX_ITEMS]
    return title, []


def list_around(text: str, start: int) -> tuple[str, list[Item]]:
    """The headed list that the sentence at ``start`` is an item of (its heading within 800
    characters before it), or ``[]``."""
    heads = [m for m in _NEXT_HEADING.finditer(text, max(0, start - 800), start + 1) if m.end() <= start + 1]
    for head in reversed(heads[-2:]):
        title, items = list_after(text, head.start())
        if any(it.start <= start < it.end for it in items):
            return title, items
    return "", []


def headed_lists(text: str) -> list[tuple[str, list[Item]]]:
    """Every heading line of ``text`` that a list follows ("对策与建议" then （一）（二）…)."""
    out = []
    for head in _NEXT_HEADING.finditer("\n" + text):
        title, items = list_after(text, max(0, head.start()))
        if title and items:
            out.append((title, items))
    return out


def item_text(item: Item, with_body: bool = False) -> str:
    """An item as a bullet shows it: without its own bullet mark; ``with_body`` adds the first
    sentence under a heading-like item (for how-questions: the measure and what it did)."""
    text = _BULLET_MARK.sub("", item.text, count=1)
    if with_body and item.body:
        head = text.rstrip().rstrip("；;，,")
        text = f"{head}{'' if head[-1:] in '。！？!?：:' else '：'}{item.body}"
    return text


def clause_list(sentence: str) -> list[str]:
    """Clauses of one sentence separated by ；: the enumeration of a single long sentence."""
    parts = [p.strip() for p in re.split(r"[；;]", sentence) if p.strip()]
    return parts if len(parts) >= 3 and all(len(p) >= 6 for p in parts) else []


# A clause's items separated by 、 (the last one may be joined by 和/及/与): 同学习、同劳动、同管理.
_CLAUSE = re.compile(r"[^，,；;。！？!?：:（）()\n]+")
_LISTED = re.compile(r"、|(?:和|及|与|以及)(?=[^、]*$)")
_QUOTED_TERM = re.compile(r"[“「\"]([^”」\"\n]{2,8})[”」\"]")
MAX_NAMED_ITEM_CHARS = 10
# Words that lead into a clause's list without being part of its first item: （即同学习、同劳动…）.
_LEAD_IN = re.compile(r"\s*(?:即|如|包括|分别是|分别为|也就是|就是)")


def counted_items(text: str, count: int, morpheme: str, quoted_first: bool = False) -> list[Item]:
    """The ``count`` items a numbered formula names ("五同": 同学习、同劳动…; 三个"性": "政治性"
    "人民性" "科学性"): a clause listing exactly ``count`` short items that each contain
    ``morpheme``, or exactly ``count`` distinct quoted terms that begin or end with it, in reading
    order; ``quoted_first`` when the question quotes the morpheme itself (哪三个“性”). [] when the
    text has neither: a near miss is no answer to "哪五同"."""
    ways = (_quoted_items, _clause_items) if quoted_first else (_clause_items, _quoted_items)
    for way in ways:
        items = way(text, count, morpheme)
        if items:
            return items
    return []


COUNT_CLASSIFIERS = "个项条种家所类支批"
# Verbs that introduce a counted list ("组建A、B等5个班组", "包括A、B两项").
_LIST_VERB = re.compile(r"组建|建立|成立|设立|设置|开设|打造|培育|选树|推出|开展|建成|拥有|包括|包含|涵盖|覆盖|涉及|分别是|分别为")


# A quoted chain of items just before its count: “公司-项目部-班组”三级.
_QUOTED_CHAIN = re.compile(r"[“\"「]([^”\"」]{3,60})[”\"」]\s*$")
_CHAIN_SEPARATOR = re.compile(r"\s*[-—－–/／]\s*")


def counted_noun(noun: str, numeral: str = r"\d{1,2}|[一二三四五六七八九十]{1,3}") -> re.Pattern[str]:
    """``noun`` counted in print ("7个产业工人班组", "三级"): the number is group 1."""
    return re.compile(rf"({numeral})\s*[{COUNT_CLASSIFIERS}]?\s*{re.escape(noun)}")


def items_counted_before(text: str, count: int, noun: str) -> list[Item]:
    """The ``count`` items listed just before "等N个<noun>" ("组建深水围堰施工、栈桥施工、…、电工等7个
    产业工人班组", "建立“公司-项目部-班组”三级联动培训机制"), in reading order: a 、-separated run,
    or a quoted -separated chain, of exactly ``count`` items in the clause that ends there (N in
    digits or Chinese numerals). [] when there is none."""
    head = counted_noun(noun, rf"(?<!\d){count}(?!\d)|{chinese_numeral(count)}").pattern
    for m in re.finditer(rf"(?:等|共|这|以上)?\s*{head}", text):
        start = max(text.rfind(ch, 0, m.start()) for ch in "，,。；;：:\n") + 1
        items = _listed_items(text, start, m.start(), count)
        if items and all(len(it.text) <= 2 * MAX_NAMED_ITEM_CHARS for it in items):
            return items
    return []


def _listed_items(text: str, start: int, end: int, count: int) -> list[Item]:
    """Exactly ``count`` items of ``text[start:end]``: 、-separated, or a quoted chain; else []."""
    chain = _QUOTED_CHAIN.search(text, start, end)
    if chain is not None and len(_CHAIN_SEPARATOR.split(chain.group(1))) == count:
        start, end = chain.start(1), chain.end(1)
        parts = _CHAIN_SEPARATOR.split(chain.group(1))
    else:
        parts = text[start:end].split("、")
    if len(parts) != count or not all(p.strip() for p in parts):
        return []
    items, at = [], start
    for part in parts:
        begin = text.index(part, at)
        at = begin + len(part)
        items.append(Item(begin, at, text[begin:at].strip()))
    # The first item carries the clause's own verb ("组建深水围堰施工"): cut after it.
    first = items[0]
    cut = max((v.end() for v in _LIST_VERB.finditer(first.text)), default=0)
    if 0 < cut < len(first.text):
        items[0] = Item(first.start + cut, first.end, first.text[cut:])
    return items


def _clause_items(text: str, count: int, morpheme: str) -> list[Item]:
    for m in _CLAUSE.finditer(text):
        parts = _LISTED.split(m.group(0))
        if len(parts) != count:
            continue
        items, at = [], m.start()
        for part in parts:
            start = text.index(part, at)
            at = start + len(part)
            lead = _LEAD_IN.match(part) if not items else None
            if lead:
                start += lead.end()
            items.append(Item(start, at, text[start:at].strip()))
        # The first item may carry the clause's own words ("成果要有前瞻性、针对性"): cut it to the
        # others' length when what is cut off keeps the shared character.
        longest = max(len(it.text) for it in items[1:])
        head = items[0]
        if len(head.text) > longest and morpheme in head.text[-longest:]:
            items[0] = Item(head.end - longest, head.end, head.text[-longest:])
        sizes = [len(it.text) for it in items]
        # the items of one formula are alike: 同学习、同劳动 (not "智库的价值在于前瞻性、针对性")
        alike = 0 < min(sizes) and max(sizes) <= min(2 * min(sizes) + 1, MAX_NAMED_ITEM_CHARS)
        if alike and all(morpheme in it.text for it in items):
            return items
    return []


def _quoted_items(text: str, count: int, morpheme: str) -> list[Item]:
    quoted: dict[str, Item] = {}
    for m in _QUOTED_TERM.finditer(text):
        term = m.group(1)
        if (term.startswith(morpheme) or term.endswith(morpheme)) and term != morpheme and term not in quoted:
            quoted[term] = Item(m.start(1), m.end(1), term)
    return list(quoted.values()) if len(quoted) == count else []
