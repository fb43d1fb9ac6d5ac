"""Check (and complete) magazine question sets written in the dev schema (a script).

    python eval/magazine_sets.py check eval/magazine_heldout.jsonl eval/magazine_dev_unanswerable.jsonl
    python eval/magazine_sets.py fill draft.jsonl --out eval/magazine_heldout.jsonl
    python eval/magazine_sets.py swaps ../shared/eval/seed_dev_qa.jsonl > /tmp/swap-candidates.jsonl

``check`` verifies what a hand-written set can get wrong: every evidence string occurs verbatim
in the magazine text (whitespace-insensitive), every answer keyword occurs in the evidence
(after the scoring normalisation of ``../shared/eval/README.md``), ``evidence_line`` is the
line of the first quote, the pages are among those of the chunks holding the evidence, and
unanswerable items carry no evidence, keywords or pages.

``swaps`` runs the reader-data generator (``reader_data.swap_questions``) over the answerable
questions of a set: the context is the text of the articles holding the evidence and the
replacement values come from the magazine itself. Its output is candidates only: on one
magazine the name tags are noisy, so ``magazine_dev_unanswerable.jsonl`` keeps the candidates
(and the table row/column swaps the generator cannot make) that a reading of the magazine
showed to be truly unanswerable.

``fill`` computes ``evidence_line``, ``article``, ``pages`` and ``page_estimate`` from the
chunks that indexing makes (``rag.chunk``), so page labels are the product's own, and sets
``split`` by article (``TUNE_ARTICLES``: about 40 % of the questions; the rest is ``test``).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import unicodedata
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAGAZINE = ROOT / "data" / "guangdong-gongyun-2025-12.txt"
TYPES = {"factoid", "numeric", "paraphrase", "list", "why_how", "multi_hop", "unanswerable", "page_lookup"}
STYLES = {"plain", "colloquial", "typo", "traditional", "english"}
# Articles whose questions form the "tune" split (about 40 % of the held-out set); every
# other article is "test". Split by article so no passage is tuned on and tested on.
TUNE_ARTICLES = (
    "目录",
    "封面",
    "封二",
    "2025年12月之声",
    "创新粤港澳工会协同机制 促进大湾区融合发展",
    "践行普惠理念 推动职工互助保障高质量发展",
    "攻坚克难 创新完成工会资产确权",
    "从“体力型”到“技能型”",
)


def squash(text: str) -> str:
    """Whitespace removed: the evidence match is whitespace-insensitive."""
    return re.sub(r"\s+", "", text)


def norm(text: str) -> str:
    """The scoring normalisation: no whitespace or thousands separators, half-width forms."""
    text = unicodedata.normalize("NFKC", text)
    return re.sub(r"(?<=\d),(?=\d{3})", "", squash(text))


def locate(evidence: str, text: str) -> int:
    """Offset in `text` where `evidence` starts (whitespace-insensitive), or -1.

    An exact match wins: without spaces "17 以新业态…" also matches the cover's "P17 以新业态…".
    """
    exact = text.find(evidence)
    if exact >= 0:
        return exact
    keep = [i for i, ch in enumerate(text) if not ch.isspace()]
    pos = "".join(text[i] for i in keep).find(squash(evidence))
    return keep[pos] if pos >= 0 else -1


def load_chunks(text_path: Path) -> list[dict]:
    """The body chunks indexing makes of the magazine, as dicts (article, pages, start, end)."""
    from rag.chunk import chunk_document
    from rag.config import Settings
    from rag.ingest import load_paths

    settings = Settings()
    docs, failures = load_paths([text_path])
    if failures or not docs:
        raise SystemExit(f"错误：无法读取 {text_path}")
    return [c.to_dict() for c in chunk_document(docs[0], settings.chunk) if c.kind != "meta"]


def evidence_list(rec: dict) -> list[str]:
    ev = rec.get("evidence") or []
    return [ev] if isinstance(ev, str) else list(ev)


def chunks_at(offset: int, length: int, chunks: Sequence[dict]) -> list[dict]:
    return [c for c in chunks if c["start"] < offset + length and offset < c["end"]]


def _page_key(p: object) -> tuple:
    return (0, int(p)) if str(p).isdigit() else (1, str(p))


def fill(rec: dict, text: str, chunks: Sequence[dict]) -> dict:
    """The record with evidence_line, article, pages, page_estimate and split computed."""
    out = dict(rec)
    evs = evidence_list(rec)
    if evs:
        pages: list = []
        articles: list[str] = []
        for i, ev in enumerate(evs):
            off = locate(ev, text)
            if off < 0:
                out.setdefault("evidence_line", None)
                continue  # check() reports it, with every other problem of the set
            if i == 0:
                out["evidence_line"] = text.count("\n", 0, off) + 1
            for c in chunks_at(off, len(squash(ev)), chunks):
                if c["article"] not in articles:
                    articles.append(c["article"])
                pages += [p for p in c["pages"] if p not in pages]
        pages = [int(p) if str(p).isdigit() else p for p in pages]
        out["article"] = rec.get("article") or " / ".join(articles)
        out["pages"] = rec.get("pages") or sorted(pages, key=_page_key)
        out["page_estimate"] = rec.get("page_estimate", out["pages"][0] if out["pages"] else None)
    else:
        out.update(answer_keywords=[], evidence="", evidence_line=None, pages=[], page_estimate=None)
        out.setdefault("answer", "文中未提及")
    first_article = (out.get("article") or "").split(" / ")[0]
    out.setdefault("split", "tune" if first_article in TUNE_ARTICLES else "test")
    return out


def check(records: Sequence[dict], text: str, chunks: Sequence[dict]) -> list[str]:
    """Problems found in a set; [] when every record holds."""
    problems = []
    lines = text.split("\n")
    seen = set()
    for rec in records:
        rid = rec.get("id", "?")
        if rid in seen:
            problems.append(f"{rid}: duplicate id")
        seen.add(rid)
        for key in ("question", "answer", "answer_keywords", "evidence", "article", "pages", "type"):
            if key not in rec:
                problems.append(f"{rid}: missing {key}")
        if rec.get("type") not in TYPES:
            problems.append(f"{rid}: bad type {rec.get('type')}")
        if "style" in rec and rec["style"] not in STYLES:
            problems.append(f"{rid}: bad style {rec['style']}")
        evs = evidence_list(rec)
        if rec.get("type") == "unanswerable":
            if evs or rec.get("answer_keywords") or rec.get("pages"):
                problems.append(f"{rid}: unanswerable item with evidence, keywords or pages")
            continue
        if not evs or not rec.get("answer_keywords"):
            problems.append(f"{rid}: answerable item without evidence or keywords")
            continue
        offsets = [locate(ev, text) for ev in evs]
        for ev, off in zip(evs, offsets, strict=True):
            if off < 0:
                problems.append(f"{rid}: evidence not in the text: {ev[:40]}")
        joined = norm("".join(evs))
        for kw in rec["answer_keywords"]:
            if norm(kw) not in joined:
                problems.append(f"{rid}: keyword {kw!r} not in the evidence")
        if offsets[0] >= 0:
            line = rec.get("evidence_line")
            first = squash(evs[0])[:10]
            if not line or first not in squash("".join(lines[line - 1: line + 4])):
                problems.append(f"{rid}: evidence_line {line} does not hold the first quote")
            allowed = {str(p) for off, ev in zip(offsets, evs, strict=True) if off >= 0
                       for c in chunks_at(off, len(squash(ev)), chunks) for p in c["pages"]}
            if rec.get("type") != "page_lookup" and not {str(p) for p in rec["pages"]} & allowed:
                problems.append(f"{rid}: pages {rec['pages']} not among the evidence's {sorted(allowed)}")
    return problems


def swap_candidates(records: Sequence[dict], text: str, chunks: Sequence[dict], tries: int = 30) -> list[dict]:
    """Every distinct swap the generator offers for each answerable record (seeds 0..tries-1)."""
    import random
    from collections import Counter

    import reader_data as rd

    rec = rd.Recogniser()
    pools = rd.build_pools([rd.Paragraph("magazine", "m", "m", text)], rec)
    pools = {k: Counter({v: max(n, rd.MIN_NAME_COUNT) for v, n in c.items()}) for k, c in pools.items()}
    out = []
    for r in records:
        if r.get("type") == "unanswerable":
            continue
        articles = {c["article"] for ev in evidence_list(r) if (off := locate(ev, text)) >= 0
                    for c in chunks_at(off, len(squash(ev)), chunks)}
        context = "".join(c["text"] for c in chunks if c["article"] in articles)
        seen = set()
        for seed in range(tries):
            for q, m, new in rd.swap_questions(r["question"], context, r.get("answer_keywords") or [],
                                               pools, rec, random.Random(seed), max_swaps=len(rd.SWAP_ORDER)):
                if q not in seen:
                    seen.add(q)
                    out.append({"generated_from": r["id"], "question": q,
                                "swap": {"kind": m.kind, "old": m.text, "new": new}})
    return out


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=["check", "fill", "swaps"])
    ap.add_argument("files", nargs="+", type=Path)
    ap.add_argument("--text", type=Path, default=MAGAZINE, help="the magazine text file")
    ap.add_argument("--out", type=Path, help="fill: where to write the completed set")
    args = ap.parse_args(argv)
    text = args.text.read_text(encoding="utf-8")
    chunks = load_chunks(args.text)
    if args.command == "swaps":
        sys.path.insert(0, str(Path(__file__).parent))
        rows = swap_candidates([r for f in args.files for r in read_jsonl(f)], text, chunks)
        sys.stdout.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        return 0
    if args.command == "fill":
        rows = [fill(r, text, chunks) for f in args.files for r in read_jsonl(f)]
        out = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        (args.out.write_text(out, encoding="utf-8") if args.out else sys.stdout.write(out))
        return 0
    bad = 0
    for f in args.files:
        rows = read_jsonl(f)
        problems = check(rows, text, chunks)
        bad += len(problems)
        for p in problems:
            print(f"{f.name}: {p}")
        print(f"{f.name}: {len(rows)} records, {len(problems)} problems", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
