"""From a question to a cited answer: retrieve, then answer with the chosen backend."""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable

from rag.answer.bridge import find_bridge
from rag.answer.citations import make_citation
from rag.answer.extractive import answer_extractive, evidence_excerpts, refusal_answer, render
from rag.errors import InputError
from rag.retrieve import Filters, embed_query, search
from rag.runtime import Runtime
from rag.types import Answer, Hit

_FOLLOW_UP = re.compile(r"^(那|那么|这|它|他们|还有|另外|再|此外)|呢[？?]?$|^(那|这)个")
BACKENDS = ("extractive", "llm", "openai")
_MARKER = re.compile(r"\[(\d{1,3})\]")


def clean_question(question: object, max_chars: int) -> str:
    """Validate a question from any entry point; InputError says what is wrong."""
    if not isinstance(question, str):
        raise InputError("问题必须是文本。")
    q = "".join(ch for ch in question if ch in "\n\t" or ch.isprintable()).strip()
    if not q:
        raise InputError("问题不能为空，请输入要查询的内容。")
    if len(q) > max_chars:
        raise InputError(f"问题过长（{len(q)} 字），请控制在 {max_chars} 字以内。")
    return q


_NAMED = ("ns", "nt", "nr", "nz")


def retrieval_query(question: str, history: list[tuple[str, str]] | None) -> str:
    """A follow-up like 那深圳呢？ is retrieved together with the previous question.

    When the follow-up names a new place/organisation/person, the previous question's names of
    that kind are dropped, so 广州…做法？ + 那深圳呢？ asks about 深圳's 做法, not 广州's.
    """
    if not history:
        return question
    last_q = history[-1][0]
    if not (len(question) <= 12 or _FOLLOW_UP.search(question)):
        return question
    import jieba.posseg as pseg

    new_kinds = {p.flag[:2] for p in pseg.lcut(question) if p.flag[:2] in _NAMED}
    kept = "".join(p.word for p in pseg.lcut(last_q) if p.flag[:2] not in new_kinds)
    return f"{question} {kept}"


def _two_step(
    rt: Runtime,
    index,
    query: str,
    hits: list[Hit],
    first: Answer,
    k: int,
    filters: Filters | None,
    timings: dict[str, float],
) -> Answer:
    """Answer a question that names a role (本刊编委会副主任…) through the name it resolves to.

    One more retrieval at most; the two-step answer replaces the first only when it is at least as
    confident, and it cites the line that names the person as well as the fact about them.
    """
    if first.computed:
        return first
    bridge = find_bridge(index.tokenizer.normalize(query), query, hits, index)
    if bridge is None:
        return first
    s = rt.settings
    t0 = time.perf_counter()
    qvec = embed_query(index, rt.embedder, bridge.question)
    hits2 = search(index, rt.embedder, bridge.question, s.retrieve, k=k, filters=filters, qvec=qvec)
    second = answer_extractive(bridge.question, hits2, index, rt.embedder, qvec, s.answer, rt.reader)
    timings["two_step"] = (time.perf_counter() - t0) * 1000
    if second.refused or second.computed:
        return first
    if not first.refused and (second.confidence or 0.0) < (first.confidence or 0.0):
        return first
    head = make_citation(1, bridge.hit.chunk, bridge.quote)
    moved = [dataclasses.replace(c, n=c.n + 1) for c in second.citations]
    body = _MARKER.sub(lambda m: f"[{int(m.group(1)) + 1}]", second.body)
    body = f"{bridge.label}为{bridge.name}[1]。{body}"
    seen = {h.chunk.chunk_id for h in hits2}
    second.body = body
    second.citations = [head, *moved]
    second.answer = render(body, second.citations)
    second.passages = [*hits2, *(h for h in hits if h.chunk.chunk_id not in seen)]
    return second


def ask(
    rt: Runtime,
    question: str,
    *,
    backend: str | None = None,
    k: int | None = None,
    filters: Filters | None = None,
    history: list[tuple[str, str]] | None = None,
    on_token: Callable[[str], None] | None = None,
    on_draft: Callable[[Answer], None] | None = None,
    qid: str | None = None,
) -> Answer:
    """Answer one question; the JSON of the result is the contract of CLI, batch and API.

    ``on_token`` receives the text as it is produced (a generating backend's raw tokens, or the
    whole extractive answer at once). ``on_draft`` receives the extractive answer just before a
    generating backend is called: on 2 cores the local model takes 10-20 s to read its prompt,
    and a page can show the cited sentences meanwhile.
    """
    s = rt.settings
    question = clean_question(question, s.serve.max_question_chars)
    backend = backend or s.answer.backend
    if backend not in BACKENDS:
        raise InputError(f"未知的回答后端 {backend!r}；可选：{'、'.join(BACKENDS)}。")
    k = s.retrieve.k if k is None else k
    if not 1 <= k <= s.serve.max_k:
        raise InputError(f"k 必须在 1 到 {s.serve.max_k} 之间。")
    index = rt.index  # one reference for the whole request, even if a reload swaps it meanwhile
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    query = retrieval_query(question, history)
    qvec = embed_query(index, rt.embedder, query)
    timings["embed"] = (time.perf_counter() - t0) * 1000
    hits: list[Hit] = search(
        index, rt.embedder, query, s.retrieve, k=k, filters=filters, timings=timings, qvec=qvec
    )
    t1 = time.perf_counter()
    extractive = answer_extractive(query, hits, index, rt.embedder, qvec, s.answer, rt.reader)
    extractive = _two_step(rt, index, query, hits, extractive, k, filters, timings)
    extractive.question = question
    t2 = time.perf_counter()
    result = extractive
    generative = backend != "extractive"
    if generative and extractive.computed:
        # Comparing a table's rows or looking up an article's pages is done exactly here; a small
        # model gets it wrong in ways the citation check cannot see (every number it quotes is in
        # the table, just not the highest), so the worked-out answer stands.
        extractive.note = "该问题的答案由表格数值比较或目录页码直接得出，未经生成模型改写。"
    if generative and not extractive.computed and not extractive.refused and hits:
        from rag.answer.generate import focus_passages, generate_answer

        chat = rt.chat_backend(backend)
        if on_draft is not None:
            on_draft(extractive)
        llm_settings = s.llm if backend == "llm" else s.openai
        excerpts = None
        shown = hits
        if llm_settings.evidence_sentences and extractive.evidence:
            # The reader's best sentences with their neighbours: a prompt of a few hundred tokens.
            pairs = evidence_excerpts(
                extractive, index, llm_settings.evidence_sentences, llm_settings.evidence_neighbours
            )
            shown, excerpts = [h for h, _ in pairs], [t for _, t in pairs]
        elif llm_settings.excerpt_chars:
            shown = hits[: llm_settings.passages]
            excerpts = focus_passages(query, shown, index.tokenizer, index.idf, llm_settings.excerpt_chars)
        result = generate_answer(
            question,
            shown,
            chat,
            s.answer,
            llm_settings,
            fallback=lambda: extractive,
            on_token=on_token,
            history=history,
            excerpts=excerpts,
        )
    elif on_token is not None:
        on_token(result.answer)
    t3 = time.perf_counter()
    result.id = qid
    result.timings_ms = {
        **{k_: round(v, 2) for k_, v in timings.items()},
        "retrieve": (t1 - t0) * 1000,
        "answer": (t3 - t1) * 1000 if backend != "extractive" else (t2 - t1) * 1000,
        "total": (t3 - t0) * 1000,
    }
    return result


__all__ = ["ask", "answer_extractive", "refusal_answer", "clean_question", "retrieval_query"]
