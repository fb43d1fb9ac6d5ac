"""The product's whole answer decision on the public reader data, not the fitted model alone.

    python eval/reader_decision.py --out eval/results/reader-decision.md

``eval/fit_reader.py`` reports the fitted scorer and its threshold (``ReaderModel.refuses``).
The extractive backend decides with more than that: ``rag.answer.extractive.decide`` also
refuses a role the best sentence's passage does not name, and keeps only sentences of the asked
kind (a count in the asked unit, a date for "when", the asked year and day, the asked place) before it
picks the best one. This script runs that decision over the same candidates (the gold paragraph
plus same-article distractors, ``fit_reader.build_examples``) with the shipped
``rag/resources/reader.json``, so "reader only" figures describe what a user gets. Nothing is
fitted here: calib is where a rule's false refusals may be looked at, test is only reported.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "eval"))

from fit_reader import Example, build_all, log, reader_metrics  # noqa: E402

from rag.answer.extractive import decide  # noqa: E402
from rag.answer.reader import ReaderModel, load_reader  # noqa: E402


def product_outcome(e: Example, reader: ReaderModel) -> tuple[bool, bool]:
    """(refused, the sentence answered with holds a reference answer) by the product's decision."""
    probs, answerable = reader.score(e.info, e.x)
    for c, p in zip(e.cands, probs, strict=True):
        c.prob = float(p)
    kept, _ = decide(e.info, e.cands, e.x, answerable, reader, None)
    if not kept:
        return True, False
    best = max(kept, key=lambda c: c.prob)
    return False, bool(e.y[next(j for j, c in enumerate(e.cands) if c is best)])


def report(figures: dict[str, dict[str, dict[str, dict[str, float]]]], reader: ReaderModel) -> list[str]:
    lines = [
        "# Reader on public data: the fitted model alone vs the product's whole decision",
        "",
        f"- reader data sha256 `{reader.meta.get('data_sha256', '')[:16]}…`, threshold {reader.threshold:.4f};"
        " candidates: the gold paragraph plus up to two paragraphs of the same article (`eval/fit_reader.py`)",
        "- model: `ReaderModel.refuses` on the best sentence; product: `rag.answer.extractive.decide`"
        " (the same threshold, plus the role rule and the asked kind / year / day / place of the sentence)",
        "- contains: answered (not refused) with a best sentence holding a reference answer",
        "",
    ]
    for split, by in figures.items():
        lines += [
            f"## {split}",
            "",
            "| slice | n | refused: model | refused: product | contains: model | contains: product |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for k, m in by["model"].items():
            p = by["product"][k]
            lines.append(
                f"| {k} | {m['n']} | {m['refused']:.1%} | {p['refused']:.1%} | {m['contains']:.1%} | {p['contains']:.1%} |"
            )
        lines.append("")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT / "eval" / "data")
    ap.add_argument("--out", type=Path, default=ROOT / "eval" / "results" / "reader-decision.md")
    ap.add_argument("--cache", type=Path, default=ROOT / ".cache")
    ap.add_argument("--splits", default="calib,test")
    # As eval/fit_reader.py fitted the shipped reader: the same sample and candidates.
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--context-sample", type=int, default=3)
    args = ap.parse_args(argv)

    reader = load_reader()
    splits = args.splits.split(",")
    ex = build_all(args, splits, keep_candidates=True)
    figures = {}
    for split in splits:
        figures[split] = {
            "model": reader_metrics(ex[split], reader),
            "product": reader_metrics(ex[split], reader, product_outcome),
        }
        log(f"{split}: {len(ex[split])} questions")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(report(figures, reader)) + "\n", encoding="utf-8")
    for split in splits:
        for key in ("public/answerable", "public/unanswerable", "rgb/noise", "rgb/answerable"):
            m, p = figures[split]["model"].get(key), figures[split]["product"].get(key)
            if m and p:
                log(f"{split} {key}: refused {m['refused']:.1%} -> {p['refused']:.1%}, contains {m['contains']:.1%} -> {p['contains']:.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
