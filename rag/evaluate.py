"""Batch evaluation: the team's scoreboard for a gold QA file (library; never prints).

A QA file is JSON Lines in the seed schema (``eval/dev_qa.jsonl``, documented in
``../shared/eval/README.md``): ``id, question, answer, answer_keywords, evidence, article,
pages, page_estimate, type, difficulty``. :func:`run_eval` answers every question with
:func:`rag.answer.ask`, scores it and writes four files to the output folder:

``metrics.json``   overall, per ``type`` and per ``difficulty`` metrics, plus run metadata
``results.jsonl``  one line per question: pass/fail per metric, the answer, its citations
``report.md``      the tables and every failing question with what was expected and what we got
``per_type.png``   a bar chart of the per-type scores

Scoring (the README's conventions; where it leaves a choice open, the choice is stated here):

* **retrieval hit@1, hit@5, MRR@10** (answerable items only): a passage "contains" the
  evidence when both, after :func:`normalize_evidence` (NFKC, lower case, whitespace,
  thousands separators and markdown ``*`` removed), share a common substring of at least
  ``min(len(evidence), 30)`` characters. Checking *some* 30-character window rather than the
  whole quote makes a long quote that a chunk boundary cuts still count. When ``evidence`` is
  a list (support in several places), a passage counts if it contains **any** of the quotes;
  ``evidence_all@5`` (every quote somewhere in the top 5) is reported beside it for the
  multi-hop items. The ranking is a separate :func:`rag.retrieve.search` with
  ``k=max(10, k)`` and the runtime's retrieve settings; its top k is the same list the answer
  saw (fusion is a stable sort over the same candidates), so the retrieval numbers do not
  depend on the ``k`` the answer is given.
* **page accuracy** (answerable items): the union of the citations' page labels intersects
  the gold ``pages``. Gold pages may be ints, our labels are strings: numeric labels compare
  as integers. If the gold pages include unnumbered matter (封面, 封二, 大事记, 目录, 封底),
  any non-numeric cited label counts. A refusal cites nothing and so fails.
* **answer accuracy** (answerable items): the answer is not a refusal and every
  ``answer_keywords`` item occurs in the answer text, both sides passed through
  :func:`normalize_text` (NFKC maps full-width digits and punctuation to half-width; lower
  case; whitespace and thousands separators removed). The text compared is the answer body:
  the appended ``来源：`` block and the ``[n]`` markers are dropped, so a page number or a
  title in the source list cannot satisfy a keyword. For ``page_lookup`` items the answer is
  right when the cited pages or the pages the text states (``第16页``, ``第5–8页``,
  ``第16、13页``, ``封二``) match the gold pages by the page rule above.
* **refusal accuracy**: share of unanswerable items answered with ``refused: true``;
  **false-refusal rate**: share of answerable items refused.
* **accuracy**: the end-to-end pass per question (answer accuracy for answerable items,
  refusal for unanswerable ones), averaged over all items.
* **latency p50/p95** from ``timings_ms.total`` (retrieval + answer, model already loaded).

A metric with no item to score (e.g. refusal accuracy on a file without unanswerable items)
is ``None``, shown as ``—``.

The SQuAD-style answer metrics used by ``eval/benchmarks.py`` live here too:
:func:`cmrc_em` / :func:`cmrc_f1` (the official CMRC 2018 script's definitions) and
:func:`rgb_correct` (RGB's ``checkanswer``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
import subprocess
import time
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rag.config import PROJECT_ROOT
from rag.errors import InputError, RagError

UNANSWERABLE = "unanswerable"
PAGE_LOOKUP = "page_lookup"
UNNUMBERED = ("封面", "封二", "封三", "封底", "目录", "大事记")
RETRIEVAL_K = 10  # ranking depth for MRR@10
EVIDENCE_MIN_CHARS = 30

#: Every aggregated metric, in report order. Rates are in [0, 1]; latencies in milliseconds.
METRICS: tuple[str, ...] = (
    "hit@1",
    "hit@5",
    "mrr",
    "evidence_all@5",
    "page_acc",
    "answer_acc",
    "refusal_acc",
    "false_refusal_rate",
    "accuracy",
    "p50_ms",
    "p95_ms",
)
LOWER_IS_BETTER = frozenset({"false_refusal_rate", "p50_ms", "p95_ms"})
_LABELS = {
    "hit@1": "hit@1",
    "hit@5": "hit@5",
    "mrr": "MRR@10",
    "evidence_all@5": "全部证据@5",
    "page_acc": "页码准确率",
    "answer_acc": "答案准确率",
    "refusal_acc": "拒答准确率",
    "false_refusal_rate": "误拒率",
    "accuracy": "总体正确率",
    "p50_ms": "p50 (ms)",
    "p95_ms": "p95 (ms)",
}

_WS = re.compile(r"\s+")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_MARKERS = re.compile(r"\[\d{1,2}\]")
_PAGE_LIST = re.compile(
    r"(?:第\s*)?(\d{1,4}(?:\s*(?:[、,，和及与至到~～\-–—]|以及)\s*\d{1,4})*)\s*页"
)
_PAGE_P = re.compile(r"(?<![A-Za-z])[Pp]\.?\s*(\d{1,4})(?!\d)")
_RANGE = re.compile(r"(\d{1,4})(?:\s*[至到~～\-–—]\s*(\d{1,4}))?")


# ---------------------------------------------------------------------------------------------
# Gold QA files
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QAItem:
    """One gold question in the seed schema; ``pages`` are kept as labels (str)."""

    id: str
    question: str
    answer: str = ""
    answer_keywords: tuple[str, ...] = ()
    evidence: tuple[str, ...] = ()
    article: str = ""
    pages: tuple[str, ...] = ()
    page_estimate: str | None = None
    type: str = "factoid"
    difficulty: str = ""
    style: str = ""  # how the question is worded: plain, colloquial, typo, traditional, english

    @property
    def answerable(self) -> bool:
        return self.type != UNANSWERABLE

    def expected(self) -> dict[str, Any]:
        return {
            "answer": self.answer,
            "answer_keywords": list(self.answer_keywords),
            "pages": list(self.pages),
            "article": self.article,
            "evidence": list(self.evidence),
        }


def _strings(value: Any, what: str, where: str) -> tuple[str, ...]:
    if value is None or value == "":
        return ()
    if isinstance(value, str | int):
        return (str(value),)
    if isinstance(value, list) and all(isinstance(v, str | int) for v in value):
        return tuple(str(v) for v in value if str(v) != "")
    raise InputError(f"{where}：字段 {what} 应为字符串或字符串列表，实际是 {type(value).__name__}。")


def load_qa(path: Path) -> list[QAItem]:
    """Read a QA file in the seed schema (JSON Lines; blank lines skipped).

    Raises:
        InputError: the file is missing or unreadable, or a line is not a JSON object with
            at least ``id`` and ``question`` (the message names the file and line).
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"无法读取评测文件 {path}：{e}") from e
    items: list[QAItem] = []
    seen: set[str] = set()
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        try:
            d = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(f"{where} 不是合法的 JSON：{e.msg}") from e
        if not isinstance(d, dict) or not d.get("question") or not d.get("id"):
            raise InputError(f"{where}：每行必须是含 id 和 question 的 JSON 对象。")
        qid = str(d["id"])
        if qid in seen:
            raise InputError(f"{where}：id {qid!r} 重复。")
        seen.add(qid)
        estimate = d.get("page_estimate")
        items.append(
            QAItem(
                id=qid,
                question=str(d["question"]),
                answer=str(d.get("answer") or ""),
                answer_keywords=_strings(d.get("answer_keywords"), "answer_keywords", where),
                evidence=_strings(d.get("evidence"), "evidence", where),
                article=str(d.get("article") or ""),
                pages=_strings(d.get("pages"), "pages", where),
                page_estimate=None if estimate is None else str(estimate),
                type=str(d.get("type") or "factoid"),
                difficulty=str(d.get("difficulty") or ""),
                style=str(d.get("style") or ""),
            )
        )
    if not items:
        raise InputError(f"评测文件 {path} 中没有题目。")
    return items


# ---------------------------------------------------------------------------------------------
# Metric functions (pure)
# ---------------------------------------------------------------------------------------------


def normalize_text(text: str) -> str:
    """Canonical form for keyword matching: NFKC (full-width -> half-width), lower case,
    no whitespace, no thousands separators (``２７，５３９`` -> ``27539``)."""
    s = unicodedata.normalize("NFKC", text).lower()
    s = _WS.sub("", s)
    return _THOUSANDS.sub("", s)


def normalize_evidence(text: str) -> str:
    """:func:`normalize_text` plus markdown emphasis removed (the magazine text has ``**``)."""
    return normalize_text(text).replace("*", "")


def answer_body(answer: Mapping[str, Any]) -> str:
    """The answer's own words (``body``: no 来源 block) without ``[n]`` markers or bold marks.

    Answers written before ``body`` existed are taken whole: nothing parses rendered text back.
    """
    body = str(answer.get("body") or answer.get("answer") or "")
    return _MARKERS.sub("", body).replace("**", "").strip()


def keywords_found(keywords: Iterable[str], text: str) -> tuple[bool, list[str]]:
    """Whether every keyword occurs in ``text`` after normalisation, and the missing ones."""
    norm = normalize_text(text)
    missing = [k for k in keywords if normalize_text(k) not in norm]
    return not missing, missing


def contains_evidence(evidence: str, passage: str, min_chars: int = EVIDENCE_MIN_CHARS) -> bool:
    """True when passage and evidence share a common substring of ``min(len(evidence), min_chars)``
    characters after :func:`normalize_evidence`.

    Looking for any window of that length (rather than the whole quote) keeps a long quote
    that a chunk boundary splits countable in whichever chunk holds 30 characters of it.
    """
    ev = normalize_evidence(evidence)
    if not ev:
        return False
    text = normalize_evidence(passage)
    n = min(len(ev), min_chars)
    return any(ev[i : i + n] in text for i in range(len(ev) - n + 1))


def evidence_rank(
    evidence: Sequence[str], passages: Sequence[str], min_chars: int = EVIDENCE_MIN_CHARS
) -> int | None:
    """1-based rank of the first passage containing any of the evidence quotes, or None."""
    for rank, p in enumerate(passages, start=1):
        if any(contains_evidence(e, p, min_chars) for e in evidence):
            return rank
    return None


def all_evidence_found(
    evidence: Sequence[str], passages: Sequence[str], min_chars: int = EVIDENCE_MIN_CHARS
) -> bool:
    """Every evidence quote is contained in at least one of ``passages``."""
    return bool(evidence) and all(any(contains_evidence(e, p, min_chars) for p in passages) for e in evidence)


def page_label(label: str | int) -> str:
    """A page label in canonical form: ``5``, ``"05"``, ``"第5页"``, ``"P5"`` -> ``"5"``."""
    s = unicodedata.normalize("NFKC", str(label)).strip()
    m = re.fullmatch(r"(?:第|[Pp]\.?)?\s*(\d+)\s*页?", s)
    return str(int(m.group(1))) if m else s


def pages_match(got: Iterable[str | int], gold: Iterable[str | int]) -> bool:
    """Do the pages we cited/stated intersect the gold pages?

    Numeric labels compare as integers (gold ``16`` == our ``"16"``); when the gold pages
    include unnumbered matter (封二, 大事记, ...) any non-numeric label we give counts.
    """
    gold_labels = {page_label(g) for g in gold}
    gold_nums = {g for g in gold_labels if g.isdigit()}
    gold_named = any(g and not g.isdigit() for g in gold_labels)
    for p in got:
        label = page_label(p)
        if label.isdigit():
            if label in gold_nums:
                return True
        elif label and gold_named:
            return True
    return False


def stated_pages(text: str) -> list[str]:
    """Page labels an answer states in words: ``第16页``, ``第5–8页`` (expanded), ``第16、13页``,
    ``P16``, and unnumbered labels such as ``封二``."""
    text = unicodedata.normalize("NFKC", text)
    out: dict[str, None] = {}
    for m in _PAGE_LIST.finditer(text):
        for r in _RANGE.finditer(m.group(1)):
            a = int(r.group(1))
            b = int(r.group(2)) if r.group(2) else a
            if a <= b <= a + 60:
                for p in range(a, b + 1):
                    out.setdefault(str(p), None)
            else:
                out.setdefault(str(a), None)
    for m in _PAGE_P.finditer(text):
        out.setdefault(str(int(m.group(1))), None)
    for label in UNNUMBERED:
        if label in text:
            out.setdefault(label, None)
    return list(out)


def cited_pages(citations: Sequence[Mapping[str, Any]]) -> list[str]:
    """The union of the citations' page labels, in order."""
    seen: dict[str, None] = {}
    for c in citations:
        for p in c.get("pages", []):
            seen.setdefault(str(p), None)
    return list(seen)


def answer_correct(item: QAItem, answer: Mapping[str, Any]) -> tuple[bool, list[str]]:
    """Answer accuracy of one answerable item, and the keywords that were missing.

    ``answer`` is an ``Answer.to_dict()``. A refusal is never correct for an answerable item.
    """
    if answer.get("refused"):
        return False, list(item.answer_keywords)
    body = answer_body(answer)
    if item.type == PAGE_LOOKUP:
        ok = pages_match(cited_pages(answer.get("citations", [])) + stated_pages(body), item.pages)
        return ok, [] if ok else list(item.pages)
    return keywords_found(item.answer_keywords, body)


# -- SQuAD-style answer metrics (CMRC 2018 official definitions) -------------------------------

# The official script's punctuation list. Its "……" entry is two characters and so never
# matches the single characters it is compared with; "…" is therefore not removed, as there.
_CMRC_PUNCT = frozenset("-:_*^/\\~`+=，。：？！“”；’《》·、「」（）－～『』")
_CMRC_CJK = re.compile(r"[\u4e00-\u9fa5]")
_NON_CJK_TOKEN = re.compile(r"\w+(?:[.,'’]\w+)*|[^\w\s]")


def cmrc_segments(text: str, remove_punct: bool = True) -> list[str]:
    """The official ``mixed_segmentation``: each CJK character (and listed punctuation) is one
    token; other runs are word-tokenised (a regex stand-in for ``nltk.word_tokenize``, which
    agrees on digits and plain words)."""
    text = text.lower().strip()
    out: list[str] = []
    buf = ""
    for ch in text:
        if remove_punct and ch in _CMRC_PUNCT:
            continue
        if _CMRC_CJK.match(ch) or ch in _CMRC_PUNCT:
            if buf:
                out.extend(_NON_CJK_TOKEN.findall(buf))
                buf = ""
            out.append(ch)
        else:
            buf += ch
    if buf:
        out.extend(_NON_CJK_TOKEN.findall(buf))
    return out


def _longest_common_run(a: Sequence[str], b: Sequence[str]) -> int:
    best = 0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0] * (len(b) + 1)
        for j, y in enumerate(b):
            if x == y:
                cur[j + 1] = prev[j] + 1
                if cur[j + 1] > best:
                    best = cur[j + 1]
        prev = cur
    return best


def cmrc_f1(prediction: str, references: Sequence[str]) -> float:
    """CMRC 2018 F1 in [0, 1]: precision/recall from the longest common run of segments
    (punctuation removed), maximised over the references."""
    pred = cmrc_segments(prediction)
    best = 0.0
    for ref in references:
        gold = cmrc_segments(ref)
        if not pred or not gold:
            continue
        lcs = _longest_common_run(gold, pred)
        if lcs == 0:
            continue
        p, r = lcs / len(pred), lcs / len(gold)
        best = max(best, 2 * p * r / (p + r))
    return best


def _cmrc_strip(text: str) -> str:
    return "".join(ch for ch in text.lower().strip() if ch not in _CMRC_PUNCT)


def cmrc_em(prediction: str, references: Sequence[str]) -> float:
    """CMRC 2018 exact match (1.0 or 0.0): equal after lower-casing and removing punctuation."""
    pred = _cmrc_strip(prediction)
    return 1.0 if any(_cmrc_strip(r) == pred for r in references) else 0.0


def rgb_correct(answer_spec: Sequence[str | Sequence[str]], prediction: str) -> bool:
    """RGB's ``checkanswer``: every element must occur (lower-cased substring); an element that
    is a list is satisfied by any one of its strings."""
    pred = prediction.lower()
    for element in answer_spec:
        if isinstance(element, str):
            if element.lower() not in pred:
                return False
        elif not any(str(alt).lower() in pred for alt in element):
            return False
    return True


# -- a span from a sentence answer (benchmarks only) ------------------------------------------

_SPAN_SENTENCE = re.compile(r"[^。！？；!?;\n]+[。！？；!?;]*")
_SPAN_BREAK = frozenset("，,；;：:。！？!?、（）()“”‘’\"《》「」『』【】[] \t\n")
_SPAN_TRIM = "的是了在和与及为由被将对从以于"
_SPAN_NUMERIC_Q = re.compile(r"多少|几[个名项场次人家年月天位条种件宗批期届所倍成岁]|哪一?年|比例|百分之|金额|数量|多[高大长重远久]")
_SPAN_WHEN_Q = re.compile(r"什么时候|何时|哪一?天|哪一?年|几月|几号|日期|时间|年代|时期")
_SPAN_DIGIT = re.compile(r"\d|[一二三四五六七八九十百千万亿两]+[个名项场次人家年月日天位条种件宗批期届所次倍%岁]")
_SPAN_DATE = re.compile(r"\d{1,4}年|\d{1,2}月|\d{1,2}日|[一二三四五六七八九十]+月|世纪|朝|代")


def _char_normalised(text: str, tokenizer: Any) -> str:
    """NFKC + lower + Simplified, one output character per input character (positions kept)."""
    chars = []
    for ch in text:
        n = unicodedata.normalize("NFKC", ch).lower()
        chars.append(n[:1] or ch)
    joined = "".join(chars)
    simplified = tokenizer.normalize.simplified(joined)
    return simplified if len(simplified) == len(joined) else joined


def extract_span(question: str, text: str, tokenizer: Any) -> str:
    """A short answer span out of a sentence-level answer, by a lexical heuristic (no model).

    The sentence that best covers the question's content words (and has a number or a date
    when the question asks for one) is chosen; the question's words are masked in it and the
    remaining runs between punctuation are candidate spans, preferred when close to the
    masked words, of a plausible length and of the asked type (a number keeps its unit).
    Used only to report span-level EM/F1 on SQuAD-style benchmarks; the product keeps its
    cited sentences. Returns ``text`` unchanged when nothing better is found.

    Args:
        question: the question.
        text: the answer body (sentences, no 来源 block).
        tokenizer: a :class:`rag.lexical.ChineseTokenizer`.
    """
    words = [w for w in dict.fromkeys(tokenizer.words(tokenizer.normalize(question)))]
    if not words or not text.strip():
        return text
    numeric = bool(_SPAN_NUMERIC_Q.search(question))
    when = bool(_SPAN_WHEN_Q.search(question))
    weight = {w: (2.0 if w.isdigit() else {1: 0.3, 2: 1.0, 3: 1.6}.get(len(w), 2.0)) for w in words}
    total = sum(weight.values())

    def sentence_score(sent: str) -> float:
        norm = tokenizer.normalize(sent)
        score = sum(v for w, v in weight.items() if w in norm) / total
        if numeric:
            score += 0.12 if _SPAN_DIGIT.search(sent) else -0.15
        if when:
            score += 0.1 if _SPAN_DATE.search(sent) else -0.1
        return score

    sentences = [m.group(0) for m in _SPAN_SENTENCE.finditer(text) if m.group(0).strip()]
    if not sentences:
        return text
    best = max(sentences, key=sentence_score)
    norm = _char_normalised(best, tokenizer)
    covered = [False] * len(best)
    word_at: dict[int, int] = {}  # start -> length of a question word occurrence
    for w in words:
        at = norm.find(w)
        while at >= 0:
            covered[at : at + len(w)] = [True] * len(w)
            word_at[at] = max(word_at.get(at, 0), len(w))
            at = norm.find(w, at + 1)
    runs: list[tuple[int, int]] = []
    start = None
    for i, ch in enumerate(best):
        if covered[i] or ch in _SPAN_BREAK:
            if start is not None:
                runs.append((start, i))
                start = None
        elif start is None:
            start = i
    if start is not None:
        runs.append((start, len(best)))
    anchors = [i for i, c in enumerate(covered) if c]
    scored: list[tuple[float, int, str]] = []
    for a, b in runs:
        if (numeric or when) and best[b - 1].isdigit() and 0 < word_at.get(b, 0) <= 2:
            b += word_at[b]  # keep the unit the question itself names (亿元, 公里, 年) after the number
        span = best[a:b].strip().strip(_SPAN_TRIM)
        if not span or all(ch in _SPAN_TRIM for ch in span):
            continue
        dist = min((min(abs(i - a), abs(i - (b - 1))) for i in anchors), default=50)
        score = -0.05 * dist + 0.05 * min(len(span), 8) - (0.3 if len(span) > 25 else 0.0)
        if numeric:
            score += 0.5 if _SPAN_DIGIT.search(span) else -0.3
        if when:
            score += 0.5 if _SPAN_DATE.search(span) else -0.3
        scored.append((score, -a, span))
    return max(scored)[2] if scored else best


# ---------------------------------------------------------------------------------------------
# Scoring one question, aggregating many
# ---------------------------------------------------------------------------------------------


def score_item(item: QAItem, answer: Mapping[str, Any], ranked_texts: Sequence[str]) -> dict[str, Any]:
    """Per-question metrics: pass/fail (bool) or None where the metric does not apply.

    Args:
        item: the gold question.
        answer: ``Answer.to_dict()`` of our answer.
        ranked_texts: texts of the retrieved passages, best first (at least 5 for hit@5).
    """
    refused = bool(answer.get("refused"))
    if not item.answerable:
        return {
            "evidence_rank": None,
            "hit@1": None,
            "hit@5": None,
            "rr": None,
            "evidence_all@5": None,
            "page": None,
            "answer": None,
            "missing_keywords": [],
            "refused": refused,
            "refusal_ok": refused,
            "false_refusal": None,
            "correct": refused,
        }
    rank = evidence_rank(item.evidence, ranked_texts[:RETRIEVAL_K]) if item.evidence else None
    ok, missing = answer_correct(item, answer)
    has_ev = bool(item.evidence)
    return {
        "evidence_rank": rank,
        "hit@1": (rank == 1) if has_ev else None,
        "hit@5": (rank is not None and rank <= 5) if has_ev else None,
        "rr": (1.0 / rank if rank else 0.0) if has_ev else None,
        "evidence_all@5": all_evidence_found(item.evidence, ranked_texts[:5]) if has_ev else None,
        "page": pages_match(cited_pages(answer.get("citations", [])), item.pages) if item.pages else None,
        "answer": ok,
        "missing_keywords": missing,
        "refused": refused,
        "refusal_ok": None,
        "false_refusal": refused,
        "correct": ok,
    }


def _mean(values: Iterable[Any]) -> float | None:
    vals = [float(v) for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None


def aggregate(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Mean of each per-question metric over the records it applies to, plus latency p50/p95."""
    m = [r["metrics"] for r in records]
    lat = [float(r["latency_ms"]) for r in records if r.get("latency_ms") is not None]
    return {
        "n": len(records),
        "n_answerable": sum(1 for x in m if x["refusal_ok"] is None),
        "n_unanswerable": sum(1 for x in m if x["refusal_ok"] is not None),
        "hit@1": _mean(x["hit@1"] for x in m),
        "hit@5": _mean(x["hit@5"] for x in m),
        "mrr": _mean(x["rr"] for x in m),
        "evidence_all@5": _mean(x["evidence_all@5"] for x in m),
        "page_acc": _mean(x["page"] for x in m),
        "answer_acc": _mean(x["answer"] for x in m),
        "refusal_acc": _mean(x["refusal_ok"] for x in m),
        "false_refusal_rate": _mean(x["false_refusal"] for x in m),
        "accuracy": _mean(x["correct"] for x in m),
        "p50_ms": float(np.percentile(lat, 50)) if lat else None,
        "p95_ms": float(np.percentile(lat, 95)) if lat else None,
    }


def _group(records: Sequence[Mapping[str, Any]], key: str) -> dict[str, dict[str, Any]]:
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for r in records:
        groups.setdefault(str(r.get(key) or "—"), []).append(r)
    return {k: aggregate(v) for k, v in groups.items()}


# ---------------------------------------------------------------------------------------------
# Bounds (`rag eval --min hit@5=0.9 --max p95_ms=800`)
# ---------------------------------------------------------------------------------------------


def parse_bounds(specs: Iterable[str]) -> dict[str, float]:
    """``["hit@5=0.9", "page_acc=0.85"]`` -> ``{"hit@5": 0.9, ...}``.

    Raises:
        InputError: a spec is not ``metric=number`` or names an unknown metric.
    """
    out: dict[str, float] = {}
    for spec in specs:
        name, sep, value = spec.partition("=")
        name = name.strip()
        if not sep:
            raise InputError(f"界限 {spec!r} 应写成 指标=数值，例如 hit@5=0.9。")
        if name not in METRICS:
            raise InputError(f"未知的指标 {name!r}；可选：{', '.join(METRICS)}。")
        try:
            out[name] = float(value)
        except ValueError:
            raise InputError(f"界限 {spec!r} 的数值 {value!r} 不是数字。") from None
    return out


def check_bounds(
    metrics: Mapping[str, Any], mins: Mapping[str, float] | None = None, maxs: Mapping[str, float] | None = None
) -> list[str]:
    """Human-readable descriptions of every bound the metrics fail (empty list: all pass)."""
    failed: list[str] = []
    for name, bound in (mins or {}).items():
        v = metrics.get(name)
        if v is None:
            failed.append(f"{name}：本次评测没有可计算的题目（要求 ≥ {bound:g}）")
        elif v < bound:
            failed.append(f"{name} = {v:.4g} < {bound:g}")
    for name, bound in (maxs or {}).items():
        v = metrics.get(name)
        if v is None:
            failed.append(f"{name}：本次评测没有可计算的题目（要求 ≤ {bound:g}）")
        elif v > bound:
            failed.append(f"{name} = {v:.4g} > {bound:g}")
    return failed


# ---------------------------------------------------------------------------------------------
# Running an evaluation
# ---------------------------------------------------------------------------------------------


@dataclass
class EvalSummary:
    """What :func:`run_eval` measured; ``files`` maps kind -> path of what it wrote."""

    overall: dict[str, Any]
    by_type: dict[str, dict[str, Any]]
    by_difficulty: dict[str, dict[str, Any]]
    records: list[dict[str, Any]]
    meta: dict[str, Any]
    files: dict[str, str] = field(default_factory=dict)
    by_style: dict[str, dict[str, Any]] = field(default_factory=dict)

    def failures(self) -> list[dict[str, Any]]:
        """Records that fail any metric that applies to them."""
        return [r for r in self.records if r["failed"]]

    def check(self, mins: Mapping[str, float] | None = None, maxs: Mapping[str, float] | None = None) -> list[str]:
        """The failed bounds on the overall metrics (see :func:`check_bounds`)."""
        return check_bounds(self.overall, mins, maxs)

    def to_dict(self) -> dict[str, Any]:
        return {
            "meta": self.meta,
            "overall": self.overall,
            "by_type": self.by_type,
            "by_difficulty": self.by_difficulty,
            "by_style": self.by_style,
            "files": self.files,
        }


def git_commit(root: Path = PROJECT_ROOT) -> str:
    """Short commit of the working tree, ``+dirty`` when it has uncommitted changes."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (sha or "unknown") + ("+dirty" if dirty else "")


def _failed_metrics(m: Mapping[str, Any]) -> list[str]:
    checks = {
        "hit@5": m["hit@5"],
        "page": m["page"],
        "answer": m["answer"],
        "refusal": m["refusal_ok"],
    }
    return [name for name, ok in checks.items() if ok is False]


class _QueryMemo:
    """The runtime's embedder, remembering the last query's vectors.

    Each question is retrieved twice (once inside ``ask``, once to depth 10 for MRR); the
    second search reuses the vector, so the eval costs one model call per question and the
    latency ``ask`` reports is unaffected.
    """

    def __init__(self, embedder: Any) -> None:
        self._embedder = embedder
        self._last: tuple[tuple[str, ...], Any] | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._embedder, name)

    def encode_queries(self, texts: list[str]) -> Any:
        key = tuple(texts)
        if self._last is None or self._last[0] != key:
            self._last = (key, self._embedder.encode_queries(texts))
        return self._last[1]


def evaluate_item(rt: Any, item: QAItem, backend: str | None = None, k: int | None = None) -> dict[str, Any]:
    """Answer one gold question with the runtime and score it; the ``results.jsonl`` record.

    A question the pipeline rejects (InputError) is recorded with an ``error`` and fails.
    """
    from rag.answer import ask
    from rag.retrieve import search

    s = rt.settings
    depth = max(RETRIEVAL_K, k or s.retrieve.k)
    error = None
    try:
        answer = ask(rt, item.question, backend=backend, k=k, qid=item.id).to_dict()
    except InputError as e:
        error = str(e)
        answer = {"answer": "", "refused": False, "citations": [], "passages": [], "timings_ms": {}}
    hits = search(rt.index, rt.embedder, item.question, s.retrieve, k=depth) if not error else []
    ranked = [h.chunk.text for h in hits]
    metrics = score_item(item, answer, ranked)
    body = answer_body(answer)
    return {
        "id": item.id,
        "type": item.type,
        "difficulty": item.difficulty,
        "style": item.style,
        "question": item.question,
        "expected": item.expected(),
        "answer": answer.get("answer", ""),
        "body": answer.get("body", ""),
        "confidence": answer.get("confidence"),
        "refused": bool(answer.get("refused")),
        "citations": [
            {k_: c.get(k_) for k_ in ("n", "article", "pages", "quote", "chunk_id")}
            for c in answer.get("citations", [])
        ],
        "cited_pages": cited_pages(answer.get("citations", [])),
        "stated_pages": stated_pages(body),
        "retrieved": [
            {"rank": h.rank, "chunk_id": h.chunk.chunk_id, "article": h.chunk.article, "pages": list(h.chunk.pages)}
            for h in hits
        ],
        "metrics": metrics,
        "failed": _failed_metrics(metrics) + (["error"] if error else []),
        "latency_ms": answer.get("timings_ms", {}).get("total"),
        "timings_ms": answer.get("timings_ms", {}),
        "backend": answer.get("backend", backend),
        "error": error,
    }


def _run_meta(rt: Any, qa_path: Path, backend: str | None, k: int | None) -> dict[str, Any]:
    s = rt.settings
    manifest = getattr(rt.index, "manifest", {}) or {}
    return {
        "qa_file": str(qa_path),
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "commit": git_commit(),
        "backend": backend or s.answer.backend,
        "k": k or s.retrieve.k,
        "index_generation": getattr(rt.index, "version", None),
        "model": manifest.get("model"),
        "chunking": {k_: v for k_, v in s.chunk.model_dump().items()},
        "retrieve": s.retrieve.model_dump(),
        "answer": s.answer.model_dump(mode="json"),
    }


def run_eval(
    rt: Any,
    qa_path: Path,
    out_dir: Path | None,
    backend: str | None = None,
    k: int | None = None,
    *,
    progress: Callable[[int, int], None] | None = None,
    chart: bool = True,
) -> EvalSummary:
    """Answer and score every question of ``qa_path``; write the four files to ``out_dir``.

    Args:
        rt: a loaded :class:`rag.runtime.Runtime`.
        qa_path: gold QA file in the seed schema.
        out_dir: folder for metrics.json, results.jsonl, report.md and per_type.png
            (created; ``None`` writes nothing).
        backend: answer backend (default: the settings' backend).
        k: passages given to the answer (default: ``settings.retrieve.k``).
        progress: called as ``progress(done, total)`` after each question.
        chart: draw per_type.png.

    Raises:
        InputError: the QA file is unreadable or malformed, or ``backend``/``k`` is invalid.
        RagError: a backend is unavailable (raised by the first question).
    """
    from rag.answer import BACKENDS

    if backend is not None and backend not in BACKENDS:
        raise InputError(f"未知的回答后端 {backend!r}；可选：{'、'.join(BACKENDS)}。")
    max_k = rt.settings.serve.max_k
    if k is not None and not 1 <= k <= max_k:
        raise InputError(f"k 必须在 1 到 {max_k} 之间（收到 {k}）。")
    qa_path = Path(qa_path)
    items = load_qa(qa_path)
    t0 = time.perf_counter()
    # Same index, settings and answer backends; only the query vectors are remembered.
    ert = dataclasses.replace(rt, embedder=_QueryMemo(rt.embedder)) if dataclasses.is_dataclass(rt) else rt
    records: list[dict[str, Any]] = []
    for i, item in enumerate(items, start=1):
        records.append(evaluate_item(ert, item, backend=backend, k=k))
        if progress is not None:
            progress(i, len(items))
    meta = _run_meta(rt, qa_path, backend, k)
    meta["seconds"] = round(time.perf_counter() - t0, 2)
    summary = EvalSummary(
        overall=aggregate(records),
        by_type=_group(records, "type"),
        by_difficulty=_group(records, "difficulty"),
        by_style=_group([r for r in records if r.get("style")], "style"),
        records=records,
        meta=meta,
    )
    if out_dir is not None:
        write_outputs(summary, Path(out_dir), chart=chart)
    return summary


# ---------------------------------------------------------------------------------------------
# Writing the results
# ---------------------------------------------------------------------------------------------


def fmt(value: Any, name: str = "") -> str:
    """A metric for a table: rates as percentages, latencies in ms, None as —."""
    if value is None:
        return "—"
    if name.endswith("_ms"):
        return f"{value:.0f}"
    if isinstance(value, float):
        return f"{100 * value:.1f}%"
    return str(value)


def metrics_table(rows: Mapping[str, Mapping[str, Any]], columns: Sequence[str] = METRICS, first: str = "") -> str:
    """A markdown table: one row per key of ``rows``, one column per metric (plus n)."""
    head = [first, "n", *(_LABELS.get(c, c) for c in columns)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, m in rows.items():
        lines.append("| " + " | ".join([name, str(m.get("n", "")), *(fmt(m.get(c), c) for c in columns)]) + " |")
    return "\n".join(lines)


def _clip(text: str, n: int = 240) -> str:
    text = text.replace("\n", " ").strip()
    return text if len(text) <= n else text[:n] + "…"


def render_report(summary: EvalSummary) -> str:
    """report.md: run metadata, overall / per-type / per-difficulty tables, every failure."""
    m = summary.meta
    out = [
        "# 评测报告",
        "",
        f"- 题目文件：`{m['qa_file']}`（{summary.overall['n']} 题，其中可回答 {summary.overall['n_answerable']}、"
        f"不可回答 {summary.overall['n_unanswerable']}）",
        f"- 时间：{m['date']}；代码版本：`{m['commit']}`；用时 {m['seconds']} 秒",
        f"- 回答后端：{m['backend']}；k = {m['k']}；检索模式：{m['retrieve'].get('mode')}；"
        f"分块：{m['chunking'].get('size')} 字 / 重叠 {m['chunking'].get('overlap')}",
        f"- 索引：{m.get('index_generation')}；模型：{(m.get('model') or {}).get('name')}",
        "",
        "## 总体",
        "",
        metrics_table({"全部": summary.overall}),
        "",
        "## 按题型",
        "",
        metrics_table(summary.by_type, first="type"),
        "",
        "## 按难度",
        "",
        metrics_table(summary.by_difficulty, first="difficulty"),
        "",
        *(["## 按问法", "", metrics_table(summary.by_style, first="style"), ""] if summary.by_style else []),
        "指标说明：hit@k / MRR@10 / 页码 / 答案只计可回答题；拒答准确率只计不可回答题；"
        "总体正确率 = 可回答题答案正确、不可回答题正确拒答。",
        "",
    ]
    fails = summary.failures()
    out += [f"## 未通过的题目（{len(fails)}）", ""]
    if not fails:
        out.append("全部通过。")
    for r in fails:
        e = r["expected"]
        metrics = r["metrics"]
        rank = metrics.get("evidence_rank")
        got_pages = "、".join(r["cited_pages"]) or "（无引用）"
        out += [
            f"### {r['id']}（{r['type']}，{r['difficulty'] or '—'}）未通过：{'、'.join(r['failed'])}",
            "",
            f"- 问题：{r['question']}",
            f"- 期望：{e['answer']}；关键词：{'、'.join(e['answer_keywords']) or '—'}；"
            f"页码：{'、'.join(e['pages']) or '—'}；文章：{e['article'] or '—'}",
            f"- 得到：{'（拒答）' if r['refused'] else ''}{_clip(answer_body(r))}",
            f"- 引用页码：{got_pages}；文中所述页码：{'、'.join(r['stated_pages']) or '—'}",
        ]
        if metrics.get("missing_keywords"):
            out.append(f"- 缺少关键词：{'、'.join(metrics['missing_keywords'])}")
        if r["expected"]["evidence"]:
            out.append(f"- 证据所在名次：{rank if rank else f'前 {RETRIEVAL_K} 名中没有'}")
        if r.get("error"):
            out.append(f"- 错误：{r['error']}")
        out.append("")
    return "\n".join(out)


def cjk_font_path() -> str | None:
    """A font file that renders Chinese, or None (the chart then uses plain labels)."""
    from matplotlib import font_manager

    preferred = Path("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc")
    if preferred.exists():
        return str(preferred)
    for f in font_manager.findSystemFonts():
        name = Path(f).name.lower()
        if any(k in name for k in ("wqy", "notosanscjk", "notoserifcjk", "simhei", "droidsansfallback", "sourcehan")):
            return f
    return None


def plot_per_type(summary: EvalSummary, path: Path) -> Path:
    """Grouped bars per question type (and overall): hit@5, page accuracy, accuracy.

    Uses matplotlib's Agg canvas directly (no global backend switch) and a CJK font when one
    is installed; without one the title falls back to English.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.font_manager import FontProperties

    font_path = cjk_font_path()
    font = FontProperties(fname=font_path) if font_path else None
    names = ["hit@5", "page_acc", "accuracy"]
    labels = (
        ["检索 hit@5", "页码准确率", "正确率（含拒答）"] if font else ["retrieval hit@5", "page accuracy", "accuracy"]
    )
    groups = {**summary.by_type, "overall": summary.overall}
    x = np.arange(len(groups))
    width = 0.8 / len(names)
    fig = Figure(figsize=(max(7.0, 1.1 * len(groups) + 2), 4.2), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for j, (name, label) in enumerate(zip(names, labels, strict=True)):
        vals = [groups[g].get(name) for g in groups]
        heights = [100 * v if v is not None else 0.0 for v in vals]
        bars = ax.bar(x + (j - (len(names) - 1) / 2) * width, heights, width, label=label)
        for b, v in zip(bars, vals, strict=True):
            if v is None:
                ax.text(b.get_x() + b.get_width() / 2, 1, "–", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(x)
    ax.set_xticklabels([f"{g}\n(n={groups[g]['n']})" for g in groups], fontsize=8)
    ax.set_ylim(0, 118)
    ax.set_ylabel("%")
    title = "各题型得分" if font else "Scores per question type"
    ax.set_title(f"{title} — {summary.meta.get('backend')}, k={summary.meta.get('k')}", fontproperties=font)
    ax.legend(prop=font, fontsize=8, loc="upper center", ncol=len(names), frameon=False)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    return path


def write_outputs(summary: EvalSummary, out_dir: Path, chart: bool = True) -> dict[str, str]:
    """Write metrics.json, results.jsonl, report.md (and per_type.png) into ``out_dir``."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        files = {
            "metrics": out_dir / "metrics.json",
            "results": out_dir / "results.jsonl",
            "report": out_dir / "report.md",
        }
        if chart:
            files["chart"] = out_dir / "per_type.png"
        summary.files = {k: str(v) for k, v in files.items()}
        files["metrics"].write_text(json.dumps(summary.to_dict(), ensure_ascii=False, indent=2), encoding="utf-8")
        with files["results"].open("w", encoding="utf-8") as f:
            for r in summary.records:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        files["report"].write_text(render_report(summary), encoding="utf-8")
        if chart:
            plot_per_type(summary, files["chart"])
    except OSError as e:
        raise RagError(f"无法写入评测结果到 {out_dir}：{e}") from e
    return summary.files
