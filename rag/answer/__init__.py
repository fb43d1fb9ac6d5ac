"""From a question to a cited answer: retrieve, then answer with the chosen backend."""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable

from rag.answer.bridge import ABOUT_ISSUE, find_bridge, masthead_text, record_hits
from rag.answer.citations import make_citation
from rag.answer.extractive import answer_extractive, evidence_excerpts, refusal_answer, render
from rag.budget import Deadline
from rag.crosslingual import choose_translations
from rag.errors import InputError
from rag.lexical import ChineseTokenizer, whole_words
from rag.retrieve import Filters, embed_query, latin_script, lexical_text, query_translations, search
from rag.runtime import Runtime
from rag.types import Answer, Hit

# A generated answer must stop this long before the request's deadline: the citation check and
# the response still need the time.
GENERATION_MARGIN_S = 2.0
# What a follow-up borrows from the previous question: a real one has under 12 content words
# in under 60 characters (the dev set: at most 41); past these bounds a history "question" is only cost.
FOLLOW_UP_CHARS = 120
FOLLOW_UP_WORDS = 16
_FOLLOW_UP = re.compile(r"^(那|那么|这|它|他们|还有|另外|再|此外)|呢[？?]?$|^(那|这)个")
BACKENDS = ("extractive", "llm", "openai")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
_MARKER = re.compile(r"\[(\d{1,3})\]")


def clean_question(question: object, max_chars: int) -> str:
    """Validate a question from any entry point; InputError says what is wrong."""
    if not isinstance(question, str):
        raise InputError("问题必须是文本。")
    # Terminal colour codes pasted with a question ("\x1b[31m") are markup, not words.
    q = _ANSI.sub("", question)
    q = "".join(ch for ch in q if ch in "\n\t" or ch.isprintable()).strip()
    if not q:
        raise InputError("问题不能为空，请输入要查询的内容。")
    if len(q) > max_chars:
        raise InputError(f"问题过长（{len(q)} 字），请控制在 {max_chars} 字以内。")
    return q


def clean_history(history: list[tuple[str, str]] | None, max_turns: int, max_chars: int) -> list[tuple[str, str]]:
    """Earlier turns, as untrusted as the question: only the last ``max_turns``, each side stripped of
    unprintable characters (lone surrogates included) and cut to ``max_chars``, so a megabyte of
    "history" costs no more than a short question. Turns without a question are dropped."""

    def clean(text: object) -> str:
        if not isinstance(text, str):
            return ""
        # Cut before cleaning (2x: unprintables may go), so the work is bounded by max_chars too.
        kept = "".join(ch for ch in text[: max_chars * 2] if ch in "\n\t" or ch.isprintable())
        return kept.strip()[:max_chars]

    if not history or max_turns <= 0:
        return []
    out = [(clean(q), clean(a)) for q, a in history[-max_turns:]]
    return [(q, a) for q, a in out if q]


def retrieval_query(question: str, history: list[tuple[str, str]] | None, tokenizer: ChineseTokenizer) -> str:
    """A follow-up like 那深圳呢？ is retrieved together with the previous question.

    When the follow-up names a new place/organisation/person, the previous question's names of
    that kind are dropped, so 广州…做法？ + 那深圳呢？ asks about 深圳's 做法, not 广州's.

    Bounded and linear: the tokenizer's own words (one jieba pass, as BM25 makes) over the first
    ``FOLLOW_UP_CHARS`` of each side, a dictionary lookup of their kind, at most
    ``FOLLOW_UP_WORDS`` words added. ``jieba.posseg``, used here before, decodes unknown characters
    with an HMM at ~7 ms per character: 2,000 × 龘 in a history held a server for 50 s.
    """
    if not history:
        return question
    if not (len(question) <= 12 or _FOLLOW_UP.search(question)):
        return question
    norm = tokenizer.normalize
    new_kinds = {tokenizer.name_kind(w) for w in tokenizer.words(norm(question[:FOLLOW_UP_CHARS]))} - {None}
    previous = whole_words(tokenizer.words(norm(history[-1][0][:FOLLOW_UP_CHARS])))
    kept = [w for w in dict.fromkeys(previous) if tokenizer.name_kind(w) not in new_kinds]
    return f"{question} {' '.join(kept[:FOLLOW_UP_WORDS])}"


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
    if first.computed and first.confidence is not None:
        return first  # a table's extreme or an article's pages: worked out, final
    norm = index.tokenizer.normalize(query)
    bridge = find_bridge(norm, query, hits, index) or find_bridge(norm, query, record_hits(index), index)
    if bridge is None:
        return first
    s = rt.settings
    t0 = time.perf_counter()
    qvec = embed_query(index, rt.embedder, bridge.question, s.retrieve)
    hits2 = search(index, rt.embedder, bridge.question, s.retrieve, k=k, filters=filters, qvec=qvec)
    second = answer_extractive(bridge.question, hits2, index, rt.embedder, qvec, s.answer, rt.reader)
    timings["two_step"] = (time.perf_counter() - t0) * 1000
    if second.refused or second.computed:
        return first
    if not first.refused and not first.computed and (second.confidence or 0.0) < (first.confidence or 0.0):
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
    deadline: Deadline | None = None,
) -> Answer:
    """Answer one question; the JSON of the result is the contract of CLI, batch and API.

    ``on_token`` receives the text as it is produced (a generating backend's raw tokens, or the
    whole extractive answer at once). ``on_draft`` receives the extractive answer just before a
    generating backend is called: on 2 cores the local model takes 10-20 s to read its prompt,
    and a page can show the cited sentences meanwhile.

    ``history`` is cut to the ``serve.max_history_*`` caps here, whoever calls. With a
    ``deadline``, RequestTimeout is raised between stages once it has passed, and a generating
    backend gets at most the time left (minus a margin for the citation check), falling back to
    the extractive answer rather than running past the budget.
    """
    s = rt.settings
    question = clean_question(question, s.serve.max_question_chars)
    backend = backend or s.answer.backend
    if backend not in BACKENDS:
        raise InputError(f"未知的回答后端 {backend!r}；可选：{'、'.join(BACKENDS)}。")
    if k is None:
        k = s.retrieve.k
        if latin_script(question):
            k = min(max(k, s.retrieve.cross_lingual_k), s.serve.max_k)
    if not 1 <= k <= s.serve.max_k:
        raise InputError(f"k 必须在 1 到 {s.serve.max_k} 之间。")
    history = clean_history(history, s.serve.max_history_turns, s.serve.max_history_chars) or None
    check = deadline.check if deadline is not None else _no_deadline
    index = rt.index  # one reference for the whole request, even if a reload swaps it meanwhile
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    check()
    query = retrieval_query(question, history, index.tokenizer)
    translations = query_translations(index, query, s.retrieve)
    lexical = lexical_text(query, translations)
    qvec = embed_query(index, rt.embedder, query, s.retrieve, lexical=lexical)
    timings["embed"] = (time.perf_counter() - t0) * 1000
    hits: list[Hit] = search(
        index, rt.embedder, query, s.retrieve, k=k, filters=filters, timings=timings, qvec=qvec, lexical=lexical
    )
    t1 = time.perf_counter()
    check()
    translated = None
    if translations and hits:
        # Letter-spaced labels (主 编) count as the word they spell.
        passages = "".join(index.tokenizer.normalize("\n".join(h.chunk.text for h in hits)).split())
        about_issue = ABOUT_ISSUE.search(query.lower()) is not None
        translated = choose_translations(query, translations, passages, masthead_text(index), about_issue) or None
    extractive = answer_extractive(query, hits, index, rt.embedder, qvec, s.answer, rt.reader, translated=translated)
    extractive = _two_step(rt, index, query, hits, extractive, k, filters, timings)
    extractive.question = question
    t2 = time.perf_counter()
    check()
    result = extractive
    generative = backend != "extractive"
    if generative and extractive.computed:
        # Comparing a table's rows or looking up an article's pages is done exactly here; a small
        # model gets it wrong in ways the citation check cannot see (every number it quotes is in
        # the table, just not the highest), so the worked-out answer stands.
        extractive.note = "该问题的答案由表格数值比较或目录页码直接得出，未经生成模型改写。"
    llm_settings = s.llm if backend == "llm" else s.openai
    if generative and deadline is not None:
        left = deadline.remaining() - GENERATION_MARGIN_S
        if left < 1.0 and not extractive.computed and not extractive.refused and hits:
            generative = False
            extractive.note = "本次请求的时间预算已基本用完，以下为摘录式回答，未经生成模型改写。"
        llm_settings = llm_settings.model_copy(update={"timeout_s": max(1.0, min(llm_settings.timeout_s, left))})
    if generative and not extractive.computed and not extractive.refused and hits:
        from rag.answer.generate import focus_passages, generate_answer

        chat = rt.chat_backend(backend)
        if on_draft is not None:
            on_draft(extractive)
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


def _no_deadline() -> None:
    return None


__all__ = ["ask", "answer_extractive", "refusal_answer", "clean_question", "clean_history", "retrieval_query"]
