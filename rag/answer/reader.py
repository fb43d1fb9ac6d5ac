"""The reader: which sentence of the retrieved passages answers the question, and how sure it is.

Every candidate sentence (or table row with its header) of the top passages gets a feature
vector: the e5 similarity of question and sentence (sentence vectors are stored with the index),
lexical coverage, agreement with the question's constraints (years, dates, numbers, quoted
terms, names), answer-type evidence (a count in the asked unit, a date, a place…) and where it
sits in the ranking. A logistic model fitted on public Chinese QA data plus generated
unanswerable questions (``eval/fit_reader.py``) turns the vector into a probability that the
sentence holds the answer; the best candidate's calibrated probability (``confidence`` in the
JSON) and the anchor rule (a year, day, edition or unknown place of the question that no retrieved
article names) make the one answerability decision, ``ReaderModel.refuses``.

The fitted parameters live in ``rag/resources/reader.json``: plain numbers (no pickle), a
format version, the feature names in order, and the sha256 of the data they were fitted on.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from rag.answer.question import QuestionInfo
from rag.errors import RagError
from rag.types import Hit

FORMAT_VERSION = 2

# Digits, a Chinese numeral with a magnitude (三千, 四千六百), or a numeral with a measure word.
HAS_NUMBER = re.compile(
    r"\d|[一二三四五六七八九十两][十百千万亿]"
    r"|[一二三四五六七八九十百千万亿两]+(?:个|名|项|场|次|人|家|年|月|天|位|条|种|件|宗|批|期|届|所|倍|成|元|份|本"
    r"|册|台|辆|篇|处|座|户|支|间|块|张|套|吨|亩|米|斤|岁|周|轮|%)"
    r"|分之|一半|半数|过半|翻番"
)
HAS_DATE = re.compile(r"\d{1,4}年|\d{1,2}月|\d{1,2}[日号]|[一二三四五六七八九十]+月|上旬|中旬|下旬|春节|元旦|国庆")
_HAS_PLACE = re.compile(r"[\u4e00-\u9fff]{1,8}(?:省|市|区|县|镇|乡|村|街道|路|街|馆|中心|广场|公园|港|湾|岛|山|江|河|湖|国|州)")
_HAS_AGENT = re.compile(
    r"书记|主席|部长|局长|主任|经理|董事长|院长|校长|教授|同志|先生|女士|师傅|委员|会长|厅长|市长|省长|总统|国王|皇帝"
    r"|工会|协会|委员会|公司|集团|单位|部门|局|厅|办公室|政府|学会|大学|学院|组织|机构|队|团"
)
_HEADLINE = re.compile(r"^(——|—|文\s*[|｜]|作者单位|摄影|图\s*[|｜]|资料图片)")
# Any 19xx/20xx number, 年 or not: the fitted year_conflict features were computed with this
# pattern, so it changes only with a refit (answer filters use question.PRINTED_YEAR).
_YEAR_IN = re.compile(r"(?<!\d)((?:19|20)\d{2})(?!\d)")
_QUOTED_IN = re.compile(r"[“\"「『]([^”\"」』]{1,20})[”\"」』]")

# The order of the model's inputs; reader.json records it and loading checks it.
FEATURES: tuple[str, ...] = (
    "cos",
    "cos_gap",
    "cos_rank_inv",
    "chunk_cos",
    "chunk_cos_gap",
    "hit_rank_inv",
    "cov",
    "cov_title",
    "cov_gap",
    "cov_context",
    "n_constraints",
    "cons_piece",
    "cons_context",
    "cons_missing",
    "year_conflict",
    "year_conflict_piece",
    "anchor_missing",
    "number_match",
    "count_unit_match",
    "count_noun_match",
    "when_match",
    "who_match",
    "where_match",
    "quoted_match",
    "unseen_share",
    "len_log",
    "is_table",
    "headline",
    "novelty",
    "q_number",
    "q_when",
    "q_who",
    "q_where",
    "q_broad",
)
# For questions in a Latin-script language only the cross-lingual signals mean anything, and
# only relatively: an English question's cosine with Chinese text is lower across the board.
DENSE_FEATURES: tuple[str, ...] = (
    "cos_gap",
    "cos_rank_inv",
    "chunk_cos_gap",
    "hit_rank_inv",
    "number_match",
    "when_match",
    "len_log",
    "is_table",
)


@dataclass
class Candidate:
    """One sentence or table row that could answer, with what the features need."""

    text: str  # as shown (a table row is prefixed with its caption and column names)
    quote: str  # verbatim substring of the chunk text
    start: int  # offset in the chunk text, to keep reading order
    norm: str  # normalised text
    vec: np.ndarray  # e5 passage vector of the sentence, L2-normalised
    title_norm: str  # the article title, normalised
    context_norm: str  # the whole chunk plus title, unit and section, normalised
    rank: int  # the passage's rank among the retrieved hits (1-based)
    chunk_cos: float  # cosine of question and the passage
    kind: str = "body"
    # Where the question's anchors may be found: the passage's whole article ("" = its context).
    article_norm: str = ""
    hit: Hit | None = None
    index: int = 0  # position of the sentence within its chunk's pieces
    passage: str = ""  # the raw text ``start`` is an offset into (the chunk's, or a paragraph's)
    paragraph_norm: str = ""  # its paragraph, normalised ("" = the passage is one paragraph)
    prob: float = 0.0


def _sign(applies: bool, present: bool) -> float:
    return 0.0 if not applies else (1.0 if present else -1.0)


def _share(items: list[str], text: str) -> float:
    return 1.0 if not items else sum(1 for c in items if c in text) / len(items)


def featurize(info: QuestionInfo, qvec: np.ndarray, cands: list[Candidate]) -> np.ndarray:
    """The (n_candidates, len(FEATURES)) feature matrix of ``cands`` for one question."""
    if not cands:
        return np.zeros((0, len(FEATURES)), dtype=np.float32)
    prof = info.profile
    cos = np.array([float(c.vec @ qvec) for c in cands], dtype=np.float64)
    chunk_cos = np.array([c.chunk_cos for c in cands], dtype=np.float64)
    order = np.argsort(-cos, kind="stable")
    cos_rank = np.empty(len(cands))
    cos_rank[order] = np.arange(1, len(cands) + 1)
    covs = [prof.coverage(c.norm) for c in cands]
    cov_title = [prof.piece_coverage(_PieceView(c.norm), c.title_norm) for c in cands]  # type: ignore[arg-type]
    best_title = max(cov_title)
    unseen_w = sum(prof.terms.get(w, 0.0) for w in prof.unseen) / prof.total
    kind = info.answer_type
    rows = []
    context_cache: dict[str, tuple[float, float, float, float]] = {}
    for j, c in enumerate(cands):
        ctx = context_cache.get(c.context_norm + c.article_norm)
        if ctx is None:
            in_ctx = _share(info.constraints, c.context_norm)
            missing = float(any(x not in c.context_norm for x in info.constraints))
            conflict = _year_conflict(info.years, c.context_norm)
            where = c.article_norm or c.context_norm
            absent = sum(1 for a in info.anchors if not a.search(where)) / max(len(info.anchors), 1)
            ctx = (prof.coverage(c.context_norm), in_ctx, missing, conflict, absent)
            context_cache[c.context_norm + c.article_norm] = ctx
        cov_ctx, cons_ctx, cons_missing, year_conflict, anchor_missing = ctx
        text = c.text
        novel = sum(1 for ch in c.norm if ch not in info.norm) / max(len(c.norm), 1)
        inner = _QUOTED_IN.findall(c.norm)
        quoted = any(q in t and q != t for q in info.quoted for t in inner)
        rows.append(
            [
                cos[j],
                cos[j] - cos.max(),
                1.0 / cos_rank[j],
                chunk_cos[j],
                chunk_cos[j] - chunk_cos.max(),
                1.0 / c.rank,
                covs[j],
                cov_title[j],
                cov_title[j] - best_title,
                cov_ctx,
                min(len(info.constraints), 3) / 3.0,
                _share(info.constraints, c.norm),
                cons_ctx,
                cons_missing,
                year_conflict,
                _year_conflict(info.years, c.norm),
                anchor_missing,
                _sign(kind == "number", bool(HAS_NUMBER.search(text))),
                _sign(info.count_pattern is not None, bool(info.count_pattern and info.count_pattern.search(text))),
                _sign(info.count_noun is not None, bool(info.count_noun and _noun_near(info.count_noun, c.norm))),
                _sign(kind == "when", bool(HAS_DATE.search(text))),
                _sign(kind == "who", bool(_HAS_AGENT.search(text))),
                _sign(kind == "where", bool(_HAS_PLACE.search(text))),
                float(quoted),
                unseen_w,
                math.log1p(len(c.norm)) / 5.0,
                float(c.kind == "table"),
                float(bool(_HEADLINE.match(text)) or (len(c.norm) >= 4 and c.norm in c.title_norm)),
                novel,
                float(kind == "number"),
                float(kind == "when"),
                float(kind == "who"),
                float(kind == "where"),
                float(info.broad),
            ]
        )
    return np.asarray(rows, dtype=np.float32)


def _year_conflict(years: list[str], text: str) -> float:
    """1 when ``text`` names years and none of the question's: it is about another year."""
    if not years:
        return 0.0
    named = set(_YEAR_IN.findall(text))
    return float(bool(named) and not any(y in named for y in years))


def anchors_missing(info: QuestionInfo, x: np.ndarray) -> bool:
    """Some anchor of the question (year, day, place, edition) is in no candidate's passage."""
    return bool(info.anchors) and len(x) > 0 and float(x[:, FEATURES.index("anchor_missing")].min()) > 0


def _noun_near(noun: str, text: str) -> bool:
    """The counted noun (or its head: its last 2-4 characters) occurs in the sentence."""
    if noun in text:
        return True
    return any(noun[-n:] in text for n in (4, 3, 2) if len(noun) > n)


@dataclass(frozen=True)
class _PieceView:
    norm: str


@dataclass
class LogisticModel:
    """Standardise, then a logistic regression: what ``reader.json`` stores per model."""

    features: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float

    def logits(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.mean) / self.scale) @ self.coef + self.intercept

    def to_dict(self) -> dict[str, Any]:
        return {
            "features": list(self.features),
            "mean": [round(float(v), 6) for v in self.mean],
            "scale": [round(float(v), 6) for v in self.scale],
            "coef": [round(float(v), 6) for v in self.coef],
            "intercept": round(float(self.intercept), 6),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LogisticModel:
        return cls(
            features=tuple(d["features"]),
            mean=np.asarray(d["mean"], dtype=np.float64),
            scale=np.asarray(d["scale"], dtype=np.float64),
            coef=np.asarray(d["coef"], dtype=np.float64),
            intercept=float(d["intercept"]),
        )


# What the answerability decision reads: the sentence scores and the best sentence's evidence.
QUESTION_FEATURES: tuple[str, ...] = (
    "top_score",
    "score_gap",
    "best_cos",
    "best_chunk_cos",
    "best_cov",
    "best_cov_title",
    "best_cons_piece",
    "best_cons_context",
    "best_cons_missing",
    "best_year_conflict",
    "best_year_conflict_piece",
    "min_anchor_missing",
    "best_number_match",
    "best_count_unit_match",
    "best_count_noun_match",
    "best_when_match",
    "best_who_match",
    "best_where_match",
    "any_context_complete",
    "max_cos",
    "max_cov",
    "unseen_share",
    "n_constraints",
)
_BEST = {f"best_{f}": FEATURES.index(f) for f in FEATURES}


def question_features(x: np.ndarray, z: np.ndarray) -> np.ndarray:
    """The answerability inputs of one question from its candidates' features ``x`` and scores ``z``."""
    order = np.argsort(-z, kind="stable")
    top = int(order[0])
    gap = float(z[top] - z[order[1]]) if len(z) > 1 else 5.0
    row = []
    for name in QUESTION_FEATURES:
        if name == "top_score":
            row.append(float(z[top]))
        elif name == "score_gap":
            row.append(min(gap, 5.0))
        elif name in _BEST:
            row.append(float(x[top, _BEST[name]]))
        elif name == "any_context_complete":
            row.append(float((x[:, FEATURES.index("cons_missing")] == 0).any()))
        elif name == "min_anchor_missing":
            row.append(float(x[:, FEATURES.index("anchor_missing")].min()))
        elif name == "max_cos":
            row.append(float(x[:, FEATURES.index("cos")].max()))
        elif name == "max_cov":
            row.append(float(x[:, FEATURES.index("cov_title")].max()))
        else:
            row.append(float(x[top, FEATURES.index(name)]))
    return np.asarray(row, dtype=np.float64)


@dataclass
class TreeEnsemble:
    """Gradient-boosted regression trees (scikit-learn's HistGradientBoosting), as plain arrays.

    A sample goes left at a node when ``x[feature] <= threshold``; its logit is ``baseline`` plus
    the value of the leaf it reaches in every tree.
    """

    features: tuple[str, ...]
    baseline: float
    trees: list[dict[str, np.ndarray]]

    def __post_init__(self) -> None:
        # All trees as one padded (n_trees, max_nodes) table, walked together: a Python loop per
        # tree cost ~15 ms a question for 250 trees; one numpy step per depth level costs ~1 ms.
        width = max((len(t["feature"]) for t in self.trees), default=1)

        def table(key: str, dtype: Any, fill: Any) -> np.ndarray:
            out = np.full((len(self.trees), width), fill, dtype=dtype)
            for i, t in enumerate(self.trees):
                out[i, : len(t[key])] = t[key]
            return out

        self._feature = table("feature", np.int64, 0)
        self._threshold = table("threshold", np.float64, 0.0)
        self._left = table("left", np.int64, 0)
        self._right = table("right", np.int64, 0)
        self._leaf = table("leaf", bool, True)
        self._value = table("value", np.float64, 0.0)
        self._depth = max((int(t["depth"]) for t in self.trees), default=0)

    def logits(self, x: np.ndarray) -> np.ndarray:
        n, n_trees = len(x), len(self.trees)
        if n == 0 or n_trees == 0:
            return np.full(n, self.baseline, dtype=np.float64)
        trees = np.arange(n_trees)[None, :]
        rows = np.arange(n)[:, None]
        node = np.zeros((n, n_trees), dtype=np.int64)
        for _ in range(self._depth):
            leaf = self._leaf[trees, node]
            if leaf.all():
                break
            go_left = x[rows, self._feature[trees, node]] <= self._threshold[trees, node]
            nxt = np.where(go_left, self._left[trees, node], self._right[trees, node])
            node = np.where(leaf, node, nxt)
        return self.baseline + self._value[trees, node].sum(axis=1)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "trees",
            "features": list(self.features),
            "baseline": round(float(self.baseline), 6),
            "trees": [
                {
                    "feature": t["feature"].tolist(),
                    "threshold": [round(float(v), 6) for v in t["threshold"]],
                    "left": t["left"].tolist(),
                    "right": t["right"].tolist(),
                    "leaf": t["leaf"].astype(int).tolist(),
                    "value": [round(float(v), 6) for v in t["value"]],
                    "depth": int(t["depth"]),
                }
                for t in self.trees
            ],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TreeEnsemble:
        trees = [
            {
                "feature": np.asarray(t["feature"], dtype=np.int64),
                "threshold": np.asarray(t["threshold"], dtype=np.float64),
                "left": np.asarray(t["left"], dtype=np.int64),
                "right": np.asarray(t["right"], dtype=np.int64),
                "leaf": np.asarray(t["leaf"], dtype=bool),
                "value": np.asarray(t["value"], dtype=np.float64),
                "depth": int(t["depth"]),
            }
            for t in d["trees"]
        ]
        return cls(tuple(d["features"]), float(d["baseline"]), trees)


def _model_from_dict(d: dict[str, Any]) -> LogisticModel | TreeEnsemble:
    return TreeEnsemble.from_dict(d) if d.get("kind") == "trees" else LogisticModel.from_dict(d)


@dataclass
class ReaderModel:
    """Sentence scorers (full and dense-only) and the answerability model over their output."""

    full: LogisticModel | TreeEnsemble
    dense: LogisticModel
    answerable: LogisticModel  # over QUESTION_FEATURES
    calibration: dict[str, tuple[float, float]]  # "dense": (a, b) of sigmoid(a * top logit + b)
    threshold: float  # refuse below this calibrated probability
    meta: dict[str, Any]
    # Refuse when a year, day, place or edition of the question is in none of the passages: on
    # the public train split such questions are answerable 4.6 % of the time (33 of 713).
    anchor_rule: bool = True

    def refuses(self, info: QuestionInfo, x: np.ndarray, confidence: float) -> bool:
        """The one answerability decision: too unsure, or about a year/place/edition the
        passages never name."""
        return confidence < self.threshold or (self.anchor_rule and anchors_missing(info, x))

    def score(self, info: QuestionInfo, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per candidate: (sentence probability, calibrated answerability of the question).

        The answerability is one number per question (the same in every row), decided from the
        best sentence and the evidence around it.
        """
        if info.latin:
            cols = [FEATURES.index(f) for f in self.dense.features]
            z = self.dense.logits(x[:, cols].astype(np.float64))
            a, b = self.calibration["dense"]
            return _sigmoid(z), np.full(len(z), float(_sigmoid(np.array([a * z.max() + b]))[0]))
        cols = [FEATURES.index(f) for f in self.full.features]
        z = self.full.logits(x[:, cols].astype(np.float64))
        qcols = [QUESTION_FEATURES.index(f) for f in self.answerable.features]
        q = question_features(x, z)[None, qcols]
        p = float(_sigmoid(self.answerable.logits(q))[0])
        return _sigmoid(z), np.full(len(z), p)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "full": self.full.to_dict(),
            "dense": self.dense.to_dict(),
            "answerable": self.answerable.to_dict(),
            "calibration": {k: [round(a, 6), round(b, 6)] for k, (a, b) in self.calibration.items()},
            "threshold": round(self.threshold, 6),
            "anchor_rule": self.anchor_rule,
            "meta": self.meta,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "reader.json") -> ReaderModel:
        if d.get("format_version") != FORMAT_VERSION:
            raise RagError(
                f"{source}: reader format {d.get('format_version')!r}, expected {FORMAT_VERSION}; "
                "refit it with `python eval/fit_reader.py`"
            )
        for part, known in (("full", FEATURES), ("dense", FEATURES), ("answerable", QUESTION_FEATURES)):
            unknown = [f for f in d[part]["features"] if f not in known]
            if unknown:
                raise RagError(f"{source}: unknown features {unknown}; refit it with `python eval/fit_reader.py`")
        return cls(
            full=_model_from_dict(d["full"]),
            dense=LogisticModel.from_dict(d["dense"]),
            answerable=LogisticModel.from_dict(d["answerable"]),
            calibration={k: (float(v[0]), float(v[1])) for k, v in d["calibration"].items()},
            threshold=float(d["threshold"]),
            meta=dict(d.get("meta", {})),
            anchor_rule=bool(d.get("anchor_rule", False)),
        )


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -40, 40)))


def default_model_path() -> Path:
    """Where the packaged, fitted reader lives."""
    with resources.as_file(resources.files("rag") / "resources" / "reader.json") as p:
        return Path(p)


def load_reader(path: Path | None = None) -> ReaderModel:
    """Load fitted reader parameters (the packaged ones by default)."""
    path = path or default_model_path()
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise RagError(f"{path}: cannot read the reader parameters ({e}); reinstall or refit them") from e
    return ReaderModel.from_dict(data, str(path))
