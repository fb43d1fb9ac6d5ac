"""Two-step questions: a role named in the question is first resolved to a name, then asked about.

"本刊编委会副主任12月5日出席了什么活动？" needs two facts: who the 编委会副主任 is (the masthead:
"编委会副主任 袁子雅") and what 袁子雅 did on 12月5日 (大事记). When a retrieved passage holds a
short *label + name* line whose label the question contains, and the question asks for more than
that line says, the label is replaced by the name and the question is retrieved again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rag.answer.question import MONTH_DAY, PRINTED_YEAR
from rag.types import Hit

MAX_LINE_CHARS = 40  # a masthead or record line, not a sentence
_NAME = re.compile(r"^[\u4e00-\u9fff·]{2,6}$")
_REST = re.compile(r"[\u4e00-\u9fff\d]")
# "主 编 张英姿", "编委会副主任 袁子雅", "投稿信箱 gdgy1720@163.com", "地址：广州市…": a label of 2-8
# characters, letter-spaced or not, then a separator and the value.
_SPACED = re.compile(r"^((?:[\u4e00-\u9fff] )+[\u4e00-\u9fff])(?: (.+))?$")
_LABEL_WORD = re.compile(r"[\u4e00-\u9fff]{1,4}")
_CJK_START = re.compile(r"[\u4e00-\u9fff]")
_PLAIN = re.compile(r"^([\u4e00-\u9fff]{2,8})\s*[\s:：|｜]\s*(\S.{0,30})$")


def label_values(shown: str) -> list[tuple[str, str]]:
    """A masthead-style line as [(label, value)]; [] for any other line.

    In a letter-spaced line ("主 编 张英姿", "编 委 会 成 员 张祖耀 姚文军") the label is every
    single spaced character before the value; a line spaced throughout is a heading, not a record.
    """
    text = shown.strip()
    if len(text) > MAX_LINE_CHARS or "。" in text or "，" in text:
        return []
    spaced = _SPACED.match(text)
    if spaced:
        label, value = spaced.group(1).replace(" ", ""), (spaced.group(2) or "").strip()
        head, _, rest = value.partition(" ")
        if rest and _LABEL_WORD.fullmatch(head) and not _CJK_START.match(rest):
            # "印 刷 日期 2025年12月30日": a word printed unspaced still belongs to the label when
            # a date, number or address follows it ("编 委 会 成 员 张祖耀 姚文军" lists names)
            label, value = label + head, rest.strip()
        return [(label, value)] if value else []
    plain = _PLAIN.match(text)
    return [(plain.group(1), plain.group(2).strip())] if plain else []


def label_value(shown: str) -> tuple[str, str] | None:
    """The (label, value) of a masthead-style line, or None."""
    found = label_values(shown)
    return found[0] if found else None


@dataclass(frozen=True)
class RecordEntry:
    """One label with its whole value: the label line plus the lines that continue it."""

    label: str
    value: str  # as printed, one line per printed line; "" = a letter-spaced line
    quote: str  # verbatim from the label line to the last continuation line
    start: int


_ALL_SPACED = re.compile(r"^(?:[\u4e00-\u9fff] ){2,}[\u4e00-\u9fff]$")


def record_entries(pieces: list, text: str) -> list[RecordEntry]:
    """The label-value lines of a chunk's ``pieces``, each with its continuation lines.

    A masthead prints a long value on the next lines without repeating the label ("编 委 会 成 员
    张祖耀 姚文军" then "张英姿"; "发 送 中华全国总工会" then one recipient a line): a short line
    without a label of its own, in the same block (no blank line before it), continues the entry.
    A line letter-spaced throughout ("副 主 编 潘 潮") is an entry whose label and value only the
    question can tell apart (``split_spaced``).
    """
    out: list[RecordEntry] = []
    firsts: list[RecordEntry] = []  # the entries as their own line gives them
    prev_end = -1
    for piece in pieces:
        shown = piece.shown.strip()
        found = label_values(shown)
        end = piece.start + len(piece.quote)
        if found:
            label, value = found[0]
            out.append(RecordEntry(label, value, piece.quote, piece.start))
            firsts.append(out[-1])
        elif _ALL_SPACED.match(shown) and prev_end >= 0:
            out.append(RecordEntry(shown.replace(" ", ""), "", piece.quote, piece.start))
            firsts.append(out[-1])
        elif (
            out
            and out[-1].value
            and prev_end >= 0
            and "\n\n" not in text[prev_end : piece.start]
            and 0 < len(shown) <= MAX_LINE_CHARS
            and not any(p in shown for p in "。，；：:")
        ):
            last = out[-1]
            out[-1] = RecordEntry(last.label, f"{last.value}\n{shown}", text[last.start : end], last.start)
        else:
            prev_end = -1
            continue
        prev_end = end
    # Only a block of record lines (a masthead) runs a value on: a lone "label value" line is
    # often a title ("全国工会重点工作 创新案例"), and the line after it is not its value.
    return out if sum(1 for e in firsts if e.value) >= MIN_RECORD_LINES else firsts


def _per_chunk(index, name: str, pos: int, build):
    """``build(pos)`` for chunk ``pos``, computed once per index generation (``index.derived``)."""
    cache = index.derived.setdefault(name, {})
    found = cache.get(pos)
    if found is None:
        found = cache[pos] = build(pos)
    return found


def chunk_records(index, chunk) -> list[RecordEntry]:
    """``record_entries`` of an indexed chunk."""
    return _per_chunk(index, "record_entries", index.position(chunk),
                      lambda pos: record_entries(index.pieces(pos)[0], chunk.text))


def _label_lines(index, pos: int) -> list[tuple[str, str, str]]:
    """(label, value, quote) of every label-value line of indexed chunk ``pos``."""
    return _per_chunk(index, "label_lines", pos, lambda p: [
        (label, value, piece.quote) for piece in index.pieces(p)[0] for label, value in label_values(piece.shown)
    ])


def split_spaced(joined: str, question_norm: str) -> tuple[str, str] | None:
    """A letter-spaced record line ("副主编潘潮") cut by the question: the longest head of at least
    two characters that the question names is the label, the 1-4 characters left the value."""
    for cut in range(len(joined) - 1, 1, -1):
        if joined[:cut] in question_norm and 1 <= len(joined) - cut <= 4:
            return joined[:cut], joined[cut:]
    return None


def display_value(value: str) -> str:
    """A record value as a reader writes it: names "张祖耀 姚文军" (and on the next line "张英姿")
    -> "张祖耀、姚文军、张英姿"; the letter-spaced "潘 潮" -> "潘潮"; one item a line, items that
    hold a 、 themselves -> joined by "；"."""
    lines = [line.strip() for line in value.split("\n") if line.strip()]
    if len(lines) > 1 and any("、" in line for line in lines):
        return "；".join(display_value(line) for line in lines)
    parts = value.split()
    if len(parts) > 1 and all(_CJK_NAME.match(x) for x in parts):
        if all(len(x) == 1 for x in parts):
            return "".join(parts)
        if all(len(x) >= 2 for x in parts):
            return "、".join(parts)
    return " ".join(parts)


def _common_at(a: str, b: str) -> tuple[int, int]:
    """(length, last offset in ``b``) of the longest common substring of two short strings."""
    best, at = 0, -1
    for i in range(len(a)):
        for j in range(i + best + 1, len(a) + 1):
            if a[i:j] in b:
                best, at = j - i, b.rfind(a[i:j])
            else:
                break
    return best, at


_DIGIT = re.compile(r"\d")
_CJK_NAME = re.compile(r"^[\u4e00-\u9fff· ]{1,12}$")
_NAME_LIST = re.compile(r"^[\u4e00-\u9fff·]{2,6}(?:、[\u4e00-\u9fff·]{2,6})*$")
_PLACE = re.compile(r"[省市区县镇乡村路街道巷号楼室]")


def _fits(answer_type: str, value: str) -> float:
    """How well a line's value is the kind of thing asked (a number, a date, a name)."""
    if answer_type == "number":
        # A year in a heading ("创新案例 (广东·2025年)") or a date (印刷日期) is not the count or
        # amount asked for.
        return 0.5 if _DIGIT.search(MONTH_DAY.sub("", PRINTED_YEAR.sub("", value))) else -1.0
    if answer_type == "when":
        return 0.5 if _DIGIT.search(value) else -1.0
    if answer_type == "who":
        return 0.5 if _CJK_NAME.match(value) or _NAME_LIST.match(value) or "公司" in value or "会" in value else 0.0
    if answer_type == "where":
        return 0.5 if _PLACE.search(value) else -0.5
    return 0.0


def record_line(
    question_norm: str,
    hits: list[Hit],
    index,
    answer_type: str = "other",
    count_pattern: re.Pattern[str] | None = None,
    listing: bool = False,
) -> tuple[Hit, str, str, str] | None:
    """The masthead-style line whose label the question asks about: (hit, quote, label, value).

    ``count_pattern``: a count question's unit (多少本 -> 本); a value without it is no answer.
    ``listing``: the question asks for several things; only a value of several items answers it.
    The corpus's masthead blocks are searched too when the question names a label whole and asks
    little else ("印数是多少"): retrieval ranks such one-line records poorly."""
    best: tuple[float, tuple[Hit, str, str, str]] | None = None
    seen = {h.chunk.chunk_id for h in hits}
    extra = [h for h in record_hits(index) if h.chunk.chunk_id not in seen]
    for hit in [*hits, *extra]:
        if hit.chunk.kind != "body":
            continue
        retrieved = hit.chunk.chunk_id in seen
        for entry in chunk_records(index, hit.chunk):
            label, value = entry.label, entry.value
            if not value:
                cut = split_spaced(index.tokenizer.normalize(label), question_norm)
                if cut is None:
                    continue
                label, value = cut
            value = display_value(value)
            norm_label = index.tokenizer.normalize(label)
            shared, at = _common_at(norm_label, question_norm)
            if shared < 2 or shared < 0.5 * len(norm_label) or value in question_norm:
                continue
            if not _asks_record(question_norm, question_norm[at : at + shared], norm_label, retrieved):
                continue
            if count_pattern is not None and not count_pattern.search(value):
                continue
            if listing and len(re.split(r"[、\s]+", value)) < 2:
                continue
            # The attribute asked is the head of the question's noun phrase, which Chinese puts
            # last ("编辑部的地址"): of two labels matched equally, the later one.
            late = 0.001 * at / max(len(question_norm), 1)
            score = shared / len(norm_label) + 0.01 * shared + _fits(answer_type, value) + late
            if score < 0.5:
                continue
            if best is None or score > best[0]:
                best = (score, (hit, entry.quote, label, value))
    return best[1] if best else None


# Words that refer to the publication itself (本期是总第几期, 这期杂志印了多少本).
ABOUT_ISSUE = re.compile(r"本期|这期|该期|本刊|该刊|这本|杂志|刊物|期刊|\bthis issue\b|\bmagazine\b")
_MAGAZINE = re.compile(r"《[^》]{1,30}》|" + ABOUT_ISSUE.pattern)
_ASKING = re.compile(r"是|的|有|为|给|在|了|吗|呢|哪些|哪个|哪里|哪|什么|多少|谁|几|一共|共")
MAX_REST_RETRIEVED = 8  # more than this asked besides the label: not a question about one record line
MAX_REST_MASTHEAD = 4


def _rest(question_norm: str, label: str) -> int:
    """How much the question asks besides the label, the publication and the question words."""
    rest = _ASKING.sub("", _MAGAZINE.sub("", question_norm.replace(label, "")))
    return len(_REST.findall(rest))


def _asks_record(question_norm: str, matched: str, label: str, retrieved: bool) -> bool:
    """The question is about this record line: it names the label (``matched``: the part of it
    the question names) and asks little besides ("印数是多少", "本刊主编是谁"; not "编委会副主任12月5日
    出席了什么活动", which is two-step). A line retrieval did not bring must be named whole."""
    if retrieved:
        return _rest(question_norm, matched) <= MAX_REST_RETRIEVED
    return matched == label and _rest(question_norm, label) <= MAX_REST_MASTHEAD


MIN_RECORD_LINES = 3  # a masthead is a block of record lines; one "地址：…" line is not


def record_hits(index) -> list[Hit]:
    """The corpus's masthead-like chunks (several label-value lines), as hits: a role named in a
    question ("本刊编委会副主任") is resolved there even when retrieval did not bring them."""
    found = index.derived.get("record_hits")
    if found is None:
        found = []
        for i, chunk in enumerate(index.chunks):
            if chunk.kind != "body":
                continue
            lines = sum(1 for piece in index.pieces(i)[0] if label_values(piece.shown))
            if lines >= MIN_RECORD_LINES:
                found.append(Hit(chunk=chunk, score=0.0, rank=len(found) + 1))
        index.derived["record_hits"] = found
    return found


def masthead_text(index) -> str:
    """The masthead blocks' text, normalised, with all spacing removed (letter-spaced labels, 主 编,
    read as the words they spell): once per index generation."""
    found = index.derived.get("masthead_text")
    if found is None:
        joined = index.tokenizer.normalize("\n".join(h.chunk.text for h in record_hits(index)))
        found = index.derived["masthead_text"] = "".join(joined.split())
    return found


def record_by_unit(question_norm: str, count_pattern: re.Pattern[str] | None, index) -> tuple[Hit, str, str, str] | None:
    """A count about the issue itself answered by the one masthead value in the asked unit: "这期杂志
    一共印了多少本" names no label (印数), but only 印数's value is counted in 本. None when the
    question is not about the issue, asks no unit, or two values share it."""
    if count_pattern is None or not ABOUT_ISSUE.search(question_norm):
        return None
    found = [
        (hit, entry.quote, entry.label, display_value(entry.value))
        for hit in record_hits(index)
        for entry in chunk_records(index, hit.chunk)
        if entry.value and count_pattern.search(entry.value)
    ]
    return found[0] if len(found) == 1 else None


@dataclass(frozen=True)
class Bridge:
    """The label found in the question, the name it stands for, and the line that says so."""

    label: str
    name: str
    hit: Hit
    quote: str
    question: str  # the question with the label replaced by the name


def find_bridge(question_norm: str, question: str, hits: list[Hit], index) -> Bridge | None:
    """A label+name line among the hits' pieces that resolves a role in the question, if any."""
    best: Bridge | None = None
    for hit in hits:
        if hit.chunk.kind != "body":
            continue
        for raw_label, raw_name, quote in _label_lines(index, index.position(hit.chunk)):
            label, name = index.tokenizer.normalize(raw_label), display_value(raw_name)
            if len(label) < 3 or label not in question_norm or not _NAME.match(name):
                continue  # also a list of names ("张祖耀、姚文军"): a role of several people
            if name in question_norm:
                continue  # the question already names them
            if len(_REST.findall(question_norm.replace(label, ""))) < 6:
                continue  # nothing asked beyond the line itself: the one-step answer is right
            if best is None or len(label) > len(best.label):
                rewritten = question.replace(raw_label, name) if raw_label in question else f"{name} {question}"
                best = Bridge(label, name, hit, quote, rewritten)
    return best
