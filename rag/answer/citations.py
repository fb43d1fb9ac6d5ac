"""Turning chunk records into citation labels the reader can check against the printed magazine."""

from __future__ import annotations

from rag.types import Chunk, Citation


def format_pages(pages: tuple[str, ...] | list[str]) -> str:
    """Printed labels as a reader writes them: 第6页, 第5–8页, 第16、13页, 封二."""
    pages = list(pages)
    if not pages:
        return ""
    numeric = [p for p in pages if p.isdigit()]
    named = [p for p in pages if not p.isdigit()]
    parts: list[str] = []
    if numeric:
        nums = [int(p) for p in numeric]
        if len(nums) > 2 and nums == list(range(nums[0], nums[0] + len(nums))):
            parts.append(f"第{nums[0]}–{nums[-1]}页")
        else:
            parts.append("第" + "、".join(numeric) + "页")
    parts.extend(named)
    return "，".join(parts)


def citation_label(doc: str, article: str, pages: tuple[str, ...] | list[str]) -> str:
    """〔《标题》第6页〕 — the article title and printed page(s) of a cited passage."""
    where = format_pages(pages)
    title = article if article.startswith("《") else f"《{article}》"
    return f"〔{doc} {title} {where}〕" if doc else f"〔{title} {where}〕"


def make_citation(n: int, chunk: Chunk, quote: str, focus: str | None = None) -> Citation:
    """A citation of ``quote`` (a verbatim piece of ``chunk.text``).

    For a source with exact physical pages (PDF) the citation names the page(s) the quote
    itself was printed on and ``page_index`` the first of them (what the page viewer shows),
    not every page the chunk touches; otherwise the chunk's pages. ``focus``: the part of the
    quote that answers (the asked count or date); a sentence printed across a page break is
    then cited on the page that prints that part.
    """
    pages, page_index = tuple(chunk.pages), None
    at = chunk.text.find(quote) if quote else -1
    own = chunk.pages_of(at, at + len(quote)) if at >= 0 else ()
    inner = quote.find(focus) if focus and len(own) > 1 else -1
    if inner >= 0:
        own = chunk.pages_of(at + inner, at + inner + len(focus or "")) or own
    if own:
        pages, page_index = tuple(dict.fromkeys(label for _, label in own)), own[0][0]
    elif chunk.physical:
        page_index = chunk.physical[0]  # a meta chunk: the page its article starts on
    return Citation(
        n=n,
        doc=chunk.doc,
        article=chunk.article,
        pages=pages,
        quote=quote,
        chunk_id=chunk.chunk_id,
        doc_id=chunk.doc_id,
        page_index=page_index,
    )


def sources_block(citations: list[Citation]) -> str:
    """The 来源 lines appended to an answer text: one per citation number."""
    if not citations:
        return ""
    lines = ["来源："]
    for c in citations:
        title = c.article if c.article.startswith("《") else f"《{c.article}》"
        lines.append(f"[{c.n}] {c.doc}{title}，{format_pages(c.pages)}")
    return "\n".join(lines)
