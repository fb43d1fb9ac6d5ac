"""Two-step questions: a role named in the question is first resolved to a name, then asked about.

"本刊编委会副主任12月5日出席了什么活动？" needs two facts: who the 编委会副主任 is (the masthead:
"编委会副主任 袁子雅") and what 袁子雅 did on 12月5日 (大事记). When a retrieved passage holds a
short *label + name* line whose label the question contains, and the question asks for more than
that line says, the label is replaced by the name and the question is retrieved again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rag.types import Hit

MAX_LINE_CHARS = 40  # a masthead or record line, not a sentence
_NAME = re.compile(r"^[\u4e00-\u9fff·]{2,6}$")
_REST = re.compile(r"[\u4e00-\u9fff\d]")
# "主 编 张英姿", "编委会副主任 袁子雅", "投稿信箱 gdgy1720@163.com", "地址：广州市…": a label of 2-8
# characters, letter-spaced or not, then a separator and the value.
_SPACED = re.compile(r"^((?:[\u4e00-\u9fff] )+[\u4e00-\u9fff])(?: (.+))?$")
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
        value = (spaced.group(2) or "").strip()
        return [(spaced.group(1).replace(" ", ""), value)] if value else []
    plain = _PLAIN.match(text)
    return [(plain.group(1), plain.group(2).strip())] if plain else []


def label_value(shown: str) -> tuple[str, str] | None:
    """The (label, value) of a masthead-style line, or None."""
    found = label_values(shown)
    return found[0] if found else None


def _common(a: str, b: str) -> int:
    """Length of the longest common substring of two short strings."""
    best = 0
    for i in range(len(a)):
        for j in range(i + best + 1, len(a) + 1):
            if a[i:j] in b:
                best = j - i
            else:
                break
    return best


_DIGIT = re.compile(r"\d")
_YEAR = re.compile(r"(?<!\d)(?:19|20)\d{2}年?(?!\d)")
_CJK_NAME = re.compile(r"^[\u4e00-\u9fff· ]{2,12}$")


def _fits(answer_type: str, value: str) -> float:
    """How well a line's value is the kind of thing asked (a number, a date, a name)."""
    if answer_type == "number":
        # A year in a heading ("创新案例 (广东·2025年)") is not the count or amount asked for.
        return 0.5 if _DIGIT.search(_YEAR.sub("", value)) else -1.0
    if answer_type == "when":
        return 0.5 if _DIGIT.search(value) else -1.0
    if answer_type == "who":
        return 0.5 if _CJK_NAME.match(value) or "公司" in value or "会" in value else 0.0
    return 0.0


def record_line(
    question_norm: str,
    hits: list[Hit],
    index,
    answer_type: str = "other",
    count_pattern: re.Pattern[str] | None = None,
) -> tuple[Hit, str, str, str] | None:
    """The masthead-style line whose label the question asks about: (hit, quote, label, value).

    ``count_pattern``: a count question's unit (多少本 -> 本); a value without it is no answer."""
    best: tuple[float, tuple[Hit, str, str, str]] | None = None
    for hit in hits:
        if hit.chunk.kind != "body":
            continue
        for piece in index.pieces(index.position(hit.chunk))[0]:
            for label, value in label_values(piece.shown):
                norm_label = index.tokenizer.normalize(label)
                shared = _common(norm_label, question_norm)
                if shared < 2 or shared < 0.5 * len(norm_label) or value in question_norm:
                    continue
                if count_pattern is not None and not count_pattern.search(value):
                    continue
                score = shared / len(norm_label) + 0.01 * shared + _fits(answer_type, value)
                if score < 0.5:
                    continue
                if best is None or score > best[0]:
                    best = (score, (hit, piece.quote, label, value))
    return best[1] if best else None


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
        for piece in index.pieces(index.position(hit.chunk))[0]:
            for raw_label, raw_name in label_values(piece.shown):
                label, name = index.tokenizer.normalize(raw_label), raw_name.replace(" ", "")
                if len(label) < 3 or label not in question_norm or not _NAME.match(name):
                    continue
                if name in question_norm:
                    continue  # the question already names them
                if len(_REST.findall(question_norm.replace(label, ""))) < 6:
                    continue  # nothing asked beyond the line itself: the one-step answer is right
                if best is None or len(label) > len(best.label):
                    rewritten = question.replace(raw_label, name) if raw_label in question else f"{name} {question}"
                    best = Bridge(label, name, hit, piece.quote, rewritten)
    return best
