"""Build eval/magazine_heldout.jsonl from the hand-written items in this folder (a script).

    python eval/heldout_src/build.py [--out eval/magazine_heldout.jsonl]

The questions, answers, keywords and verbatim evidence are written by hand in
``answerable_a.py``, ``answerable_b.py`` and ``unanswerable.py``; this script only numbers
them and computes what the text decides (evidence line, article, printed pages, split) with
``magazine_sets.fill``, then runs ``magazine_sets.check`` and refuses to write a failing set.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent), str(HERE.parents[1])]

import answerable_a  # noqa: E402
import answerable_b  # noqa: E402
import magazine_sets as ms  # noqa: E402
import unanswerable  # noqa: E402


def records(text: str, chunks: list[dict]) -> list[dict]:
    out = []
    for q, a, kws, ev, typ, style, diff in answerable_a.ITEMS + answerable_b.ITEMS:
        out.append(ms.fill({"question": q, "answer": a, "answer_keywords": kws, "evidence": ev,
                            "type": typ, "difficulty": diff, "style": style}, text, chunks))
    for q, a, kws, ev, article, style, diff in answerable_b.PAGE_LOOKUPS:
        pages = sorted({p for c in chunks if c["article"] == article for p in c["pages"]}, key=ms._page_key)
        pages = [int(p) if str(p).isdigit() else p for p in pages]
        rec = {"question": q, "answer": a, "answer_keywords": kws, "evidence": ev, "type": "page_lookup",
               "difficulty": diff, "style": style, "article": article, "pages": pages, "page_estimate": pages[0]}
        out.append(ms.fill(rec, text, chunks))
    for q, article, style, diff, why in unanswerable.ITEMS:
        out.append(ms.fill({"question": q, "answer": "文中未提及", "evidence": "", "type": "unanswerable",
                            "difficulty": diff, "style": style, "article": article, "why_unanswerable": why},
                           text, chunks))
    keys = ["id", "question", "answer", "answer_keywords", "evidence", "evidence_line", "article", "pages",
            "page_estimate", "type", "difficulty", "style", "split", "why_unanswerable"]
    rows = []
    for i, r in enumerate(out, 1):
        r["id"] = f"ho{i:03d}"
        rows.append({k: r[k] for k in keys if k in r})
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=HERE.parent / "magazine_heldout.jsonl")
    args = ap.parse_args()
    text = ms.MAGAZINE.read_text(encoding="utf-8")
    chunks = ms.load_chunks(ms.MAGAZINE)
    rows = records(text, chunks)
    problems = ms.check(rows, text, chunks)
    for p in problems:
        print(p, file=sys.stderr)
    if problems:
        return 1
    args.out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    print(f"{len(rows)} records -> {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
