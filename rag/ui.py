"""The chat page (Gradio Blocks): question box, streamed cited answers, sources panel, feedback.

Callbacks only wire widgets to the same functions the CLI and API use (``rag.answer.ask``,
``rag.feedback.record_feedback``); what is left here is presentation:

* every piece of document or user text is HTML-escaped (and Markdown-escaped inside chat
  bubbles) before it reaches the page, so a ``<script>`` in a scanned page or in a question
  shows as text and never runs;
* citation markers ``[n]`` become links ``#src-<turn>-<n>`` to entries of the sources panel; a
  small script (``CITATION_JS``) opens and scrolls to the entry, because Gradio renders chat
  links as new-tab links otherwise. For a PDF source the entry shows the printed page (rendered
  by the server, the quote marked) above the passage text, with a link to download that page.

The page does not hold a runtime itself: it asks a :class:`RuntimeSource` (the server's lazy
loader) on every request, so a rebuilt index or a late first build is picked up.
"""

from __future__ import annotations

import html
import logging
import queue
import re
import threading
from collections.abc import Callable
from typing import Any, Protocol

import gradio as gr

from rag.answer import ask, clean_question
from rag.answer.citations import format_pages, sources_block
from rag.budget import Deadline
from rag.config import Settings
from rag.errors import InputError, RagError
from rag.feedback import change_rating, record_feedback, update_comment, withdraw_feedback
from rag.logsafe import log_text
from rag.pageview import page_urls
from rag.public import FEEDBACK_FAILED, client_message
from rag.retrieve import Filters
from rag.runtime import Runtime
from rag.types import Answer, Citation

log = logging.getLogger(__name__)

BACKEND_LABELS = {
    "extractive": "摘录原文（默认，最快）",
    "llm": "本地大模型生成（较慢）",
    "openai": "内网大模型服务",
}
ALL = ""  # the "no filter" choice of the filter dropdowns
HISTORY_TURNS = 3  # earlier turns passed to ask() for follow-ups such as 那深圳呢？
SOURCES_TURNS = 10  # turns kept in the sources panel

_MARKER = re.compile(r"\[(\d{1,3})\]")
# Every ASCII character Markdown could read as syntax; '&' and ';' stay, they belong to entities.
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~>$<=:^\"'])")

CSS = """
#gy-sources { max-height: 72vh; overflow-y: auto !important; }  /* Gradio's .block sets overflow: visible */
#gy-sources .gy-empty { color: var(--body-text-color-subdued); }
#gy-sources details.gy-turn > summary { cursor: pointer; font-weight: 600; margin: .4em 0; }
#gy-sources .gy-src { border-left: 3px solid #b91c1c; padding: .35em .7em; margin: .5em 0;
  background: var(--background-fill-secondary); border-radius: 4px; transition: outline-color .3s; }
#gy-sources .gy-src > summary { cursor: pointer; }
#gy-sources .gy-n { color: #b91c1c; font-weight: 700; }
#gy-sources .gy-pages { font-weight: 600; }
#gy-sources .gy-doc { color: var(--body-text-color-subdued); font-size: .9em; }
#gy-sources .gy-text { white-space: pre-wrap; line-height: 1.7; margin-top: .4em; }
#gy-sources mark { background: #fde68a; color: inherit; padding: 0 .1em; }
#gy-sources .gy-flash { outline: 3px solid #f59e0b; }
#gy-sources details.gy-page { margin: .5em 0 .2em; }
#gy-sources details.gy-page > summary { cursor: pointer; color: #b91c1c; font-size: .92em; }
#gy-sources .gy-page img { display: block; width: 100%; margin-top: .4em; background: #fff;
  border: 1px solid var(--border-color-primary); box-shadow: 0 1px 4px rgba(0,0,0,.15); }
#gy-sources .gy-page img.gy-page-full { width: 70%; margin: .4em auto 0; }
#gy-sources .gy-page-links { font-size: .9em; margin-top: .3em; }
#gy-sources .gy-page-links a { color: #b91c1c; margin-right: 1em; }
a.gy-cite, #gy-chat a.gy-cite { color: #b91c1c !important; text-decoration: none; font-weight: 700; cursor: pointer; }
a.gy-cite:hover { text-decoration: underline; }
"""

# Runs once per page (Gradio calls it on load). Clicking a [n] marker opens its source entry
# (and the turn that holds it) and scrolls to it. Capture phase, so Gradio's own link handling
# (open in a new tab) never sees the click.
#
# It also gives copies and screen readers plain text. A chat message's value is our Markdown
# (escaped text, <a class="gy-cite"> links), and Gradio's copy buttons copy that value and put it
# in the bubble's aria-label. ``gyPlain`` undoes exactly what render_answer_md/escape_md/draft_md
# did (links -> [n], backslash escapes, &lt; &gt; &amp;, our bold headings and hard breaks), so the
# clipboard gets the answer with its [n] markers and 来源 lines; it is applied to every clipboard
# write of the page (navigator.clipboard, or the copy event of the execCommand fallback that
# Gradio uses on plain-http intranet hosts) and to every aria-label that holds message text.
CITATION_JS = r"""
() => {
  if (window.__gyCitations) return;
  window.__gyCitations = true;
  const find = (id) => {
    const roots = [document];
    document.querySelectorAll('gradio-app').forEach((a) => { if (a.shadowRoot) roots.push(a.shadowRoot); });
    for (const r of roots) {
      const el = r.querySelector('#' + CSS.escape(id));
      if (el) return el;
    }
    return null;
  };
  // Page images load only when shown. Their URLs are relative to the chat page's own address,
  // which is not the document's when the page is embedded as a <gradio-app> on another site.
  const base = (el) => {
    const host = el.closest('gradio-app') || (el.getRootNode() && el.getRootNode().host);
    const src = host && host.getAttribute && host.getAttribute('src');
    if (src) return new URL(src.endsWith('/') ? src : src + '/', document.baseURI).href;
    const root = window.gradio_config && window.gradio_config.root;
    return root ? (root.endsWith('/') ? root : root + '/') : document.baseURI;
  };
  const showPage = (box) => {
    box.querySelectorAll('img[data-src]').forEach((img) => {
      if (!img.getAttribute('src')) img.src = new URL(img.dataset.src, base(box)).href;
    });
    box.querySelectorAll('a[data-href]').forEach((a) => { a.href = new URL(a.dataset.href, base(box)).href; });
    box.open = true;
  };
  document.addEventListener('click', (ev) => {
    const path = ev.composedPath ? ev.composedPath() : [ev.target];
    const pageSummary = path.find((n) => n && n.tagName === 'SUMMARY' && n.parentElement
      && n.parentElement.classList.contains('gy-page'));
    if (pageSummary) {
      const box = pageSummary.parentElement;
      if (!box.open) { ev.preventDefault(); showPage(box); }
      return;
    }
    const a = path.find((n) => n && n.tagName === 'A' && (n.getAttribute('href') || '').startsWith('#src-'));
    if (!a) return;
    ev.preventDefault();
    ev.stopPropagation();
    const el = find(a.getAttribute('href').slice(1));
    if (!el) return;
    for (let p = el; p; p = p.parentElement) { if (p.tagName === 'DETAILS') p.open = true; }
    const pages = el.querySelectorAll('details.gy-page');
    pages.forEach(showPage);
    el.scrollIntoView({behavior: 'smooth', block: pages.length ? 'start' : 'center'});
    el.classList.add('gy-flash');
    setTimeout(() => el.classList.remove('gy-flash'), 2000);
  }, true);

  const plain = (t) => {
    if (typeof t !== 'string') return t;
    return t
      .replace(/<a class="gy-cite"[^>]*>(\[\d{1,3}\])<\/a>/g, '$1')
      .replace(/\*\*(原文摘录|模型回答)\*\*/g, '$1')
      .replace(/ {2}\n/g, '\n')
      .replace(/\\([\\`*_{}\[\]()#+\-.!|~>$<=:^"'])/g, '$1')
      .replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&');
  };
  window.gyPlain = plain;
  const clip = navigator.clipboard;
  if (clip && clip.writeText) {
    const write = clip.writeText.bind(clip);
    clip.writeText = (t) => write(plain(t));
  }
  document.addEventListener('copy', (ev) => {
    // Gradio's fallback copies from a temporary textarea it puts at left:-999999px.
    const el = document.activeElement;
    if (!el || el.tagName !== 'TEXTAREA' || el.style.left !== '-999999px' || !ev.clipboardData) return;
    ev.clipboardData.setData('text/plain', plain(el.value));
    ev.preventDefault();
  }, true);

  const labelled = new WeakMap();
  const fixLabel = (el) => {
    const v = el.getAttribute('aria-label');
    if (!v || labelled.get(el) === v) return;
    const p = plain(v);
    labelled.set(el, p);
    if (p !== v) el.setAttribute('aria-label', p);
  };
  const fixAll = (root) => root.querySelectorAll('[aria-label]').forEach(fixLabel);
  const watch = (root) => {
    new MutationObserver((records) => {
      for (const r of records) {
        if (r.type === 'attributes') fixLabel(r.target);
        else r.addedNodes.forEach((n) => { if (n.nodeType === 1) { fixLabel(n); fixAll(n); } });
      }
    }).observe(root, {subtree: true, childList: true, attributes: true, attributeFilter: ['aria-label']});
    fixAll(root);
  };
  watch(document);
  document.querySelectorAll('gradio-app').forEach((a) => { if (a.shadowRoot) watch(a.shadowRoot); });
}
"""


class RuntimeSource(Protocol):
    """What the page needs from the server: the runtime, loading it on first use."""

    def get(self) -> Runtime:
        """The live runtime; raises IndexMissingError (or another RagError) when unavailable."""
        ...

    def peek(self) -> Runtime | None:
        """The runtime if already loaded, without loading it."""
        ...


# --------------------------------------------------------------------------------------------------
# Rendering (pure functions, tested directly)


def escape_md(text: str) -> str:
    """Text shown literally inside a Markdown chat bubble: HTML-escaped, Markdown syntax disarmed."""
    return _MD_SPECIAL.sub(r"\\\1", html.escape(text, quote=False))


def sources_text(citations: list[dict[str, Any]]) -> str:
    """The 来源 lines of an answer, rendered from its citation records."""
    return sources_block([Citation(**{**c, "pages": tuple(c["pages"])}) for c in citations])


def _escape_md_lines(text: str) -> str:
    """:func:`escape_md`, keeping the answer's own ``- `` bullet lines as a Markdown list."""
    lines = []
    for line in text.split("\n"):
        bullet = line.startswith("- ")
        lines.append(("- " if bullet else "") + escape_md(line[2:] if bullet else line))
    return "\n".join(lines)


def render_answer_md(answer_text: str, cited: set[int], turn: int) -> str:
    """An answer as chat Markdown: text escaped, each known ``[n]`` a link to its source entry.

    A marker whose number is not among ``cited`` stays plain text (it points at nothing).
    """
    out: list[str] = []
    pos = 0
    for m in _MARKER.finditer(answer_text):
        out.append(_escape_md_lines(answer_text[pos : m.start()]))
        n = int(m.group(1))
        if n in cited:
            out.append(f'<a class="gy-cite" href="#src-{turn}-{n}" title="查看来源 {n}">[{n}]</a>')
        else:
            out.append(escape_md(m.group(0)))
        pos = m.end()
    out.append(_escape_md_lines(answer_text[pos:]))
    return "".join(out)


def highlight(text: str, quote: str) -> str:
    """The passage as HTML with the supporting quote wrapped in <mark>; everything escaped."""
    i = text.find(quote) if quote else -1
    if i < 0:
        return html.escape(text)
    j = i + len(quote)
    return f"{html.escape(text[:i])}<mark>{html.escape(quote)}</mark>{html.escape(text[j:])}"


def page_block(citation: dict[str, Any]) -> str:
    """For a citation of a PDF: the printed page (loaded when opened) with the quote marked, and
    links to open it full size and to download the page; "" for text sources.

    URLs are relative (``./page/...``) so they work under any root path; the page script
    resolves them against the chat page's address.
    """
    doc_id, index = citation.get("doc_id"), citation.get("page_index")
    if index is None or not doc_id:
        return ""
    urls = page_urls(str(doc_id), int(index), citation.get("quote"), ".")
    label = html.escape(format_pages(citation.get("pages") or []) or f"PDF 第{int(index) + 1}页")
    img, pdf = urls["page_image_url"], html.escape(urls["page_pdf_url"])
    focus = html.escape(img + ("&" if "?" in img else "?") + "focus=true")
    img = html.escape(img)
    return (
        f'<details class="gy-page"><summary>印刷页面（{label}）：引用句以黄色标出</summary>'
        f'<img class="gy-page-focus" data-src="{focus}" alt="{label}上引用句所在的位置">'
        f'<div class="gy-page-links"><a data-href="{img}" target="_blank" rel="noopener">查看整页大图</a>'
        f'<a data-href="{pdf}" download>下载此页（PDF）</a></div>'
        f'<img class="gy-page-full" data-src="{img}" alt="{label}整页，引用句以黄色标出"></details>'
    )


def turn_record(answer: dict[str, Any], index_version: str) -> dict[str, Any]:
    """What the session keeps of one answered question (enough for the panel and feedback)."""
    texts = {p["chunk_id"]: p for p in answer.get("passages", [])}
    return {
        "question": answer["question"],
        "answer": answer["answer"],
        "body": answer.get("body") or answer["answer"],
        "refused": answer["refused"],
        "backend": answer["backend"],
        "note": answer.get("note"),
        "citations": answer["citations"],
        "suggestions": answer.get("suggestions", []),
        "cited_passages": {
            c["chunk_id"]: texts[c["chunk_id"]] for c in answer["citations"] if c["chunk_id"] in texts
        },
        "index_version": index_version,
    }


def render_sources_html(turns: list[dict[str, Any]]) -> str:
    """The sources panel: for each turn (newest first), each cited passage with its article,
    printed page label(s) and the supporting quote marked. All document text is escaped."""
    if not turns:
        return '<div class="gy-empty">提问后，这里会列出回答引用的原文段落（文章标题、印刷页码，引用句以黄色标出）。</div>'
    parts: list[str] = []
    first = len(turns) - 1
    shown = list(enumerate(turns))[-SOURCES_TURNS:]
    for t, turn in reversed(shown):
        open_attr = " open" if t == first else ""
        parts.append(
            f'<details class="gy-turn" id="turn-{t + 1}"{open_attr}>'
            f"<summary>第{t + 1}问：{html.escape(turn['question'])}</summary>"
        )
        if not turn["citations"]:
            parts.append('<div class="gy-empty">资料中未找到可引用的内容。</div>')
            if turn.get("suggestions"):
                items = "".join(f"<li>{html.escape(s)}</li>" for s in turn["suggestions"])
                parts.append(f'<div class="gy-empty">最接近的文章：<ul>{items}</ul></div>')
        for c in turn["citations"]:
            passage = turn["cited_passages"].get(c["chunk_id"], {})
            text = passage.get("text", c["quote"])
            title = c["article"] if c["article"].startswith("《") else f"《{c['article']}》"
            parts.append(
                f'<details class="gy-src" id="src-{t + 1}-{int(c["n"])}" open><summary>'
                f'<span class="gy-n">[{int(c["n"])}]</span> {html.escape(title)} '
                f'<span class="gy-pages">{html.escape(format_pages(c["pages"]))}</span> '
                f'<span class="gy-doc">{html.escape(c["doc"])}</span></summary>'
                f'{page_block(c)}<div class="gy-text">{highlight(text, c["quote"])}</div></details>'
            )
        parts.append("</details>")
    return "".join(parts)


DRAFT_HEADING = "**原文摘录**（生成模型正在根据这些资料撰写回答，请稍候；先看原文摘录）：\n\n"
MODEL_DRAFT_HEADING = "\n\n---\n\n**模型回答**（生成中，引用核对后替换本条）：\n\n"


def draft_md(answer: Answer) -> str:
    """The extractive answer shown while a generating backend works: text and 来源 lines, plain."""
    body, sources = answer.body or answer.answer, sources_block(answer.citations)
    return DRAFT_HEADING + escape_md(body) + ("\n\n" + escape_md(sources).replace("\n", "  \n") if sources else "")


def answer_pieces(text: str) -> list[str]:
    """Split an answer into a few pieces for streaming: after each citation marker and line break.

    Joining the pieces gives the text back unchanged.
    """
    return [p for p in re.split(r"(?<=\])|(?<=\n)", text) if p]


# --------------------------------------------------------------------------------------------------
# Choices drawn from the index


def example_questions(rt: Runtime, n: int = 4) -> list[str]:
    """A few questions the magazine can answer, made from the index's own article records.

    Alternates "which page is 《title》 on" (answered from the article's page labels) with
    "what did <reporting unit> do" for articles that name one, over articles spread through the
    issue(s), so the examples follow whatever documents are indexed.
    """
    articles: dict[str, Any] = {}
    for c in rt.index.chunks:
        if c.article_kind == "article" and c.kind != "meta":
            articles.setdefault(c.article, c)
    if not articles:
        return []
    items = list(articles.values())
    step = max(1, len(items) // n)
    picked = items[::step][:n]
    out: list[str] = []
    used_units: set[str] = set()
    for i, c in enumerate(picked):
        if i % 2 == 1 and c.unit and c.unit not in used_units:
            used_units.add(c.unit)
            out.append(f"{c.unit}有哪些做法？")
        else:
            title = c.article.strip("《》")
            out.append(f"《{title}》刊登在第几页？")
    return out


def filter_choices(rt: Runtime) -> tuple[list[tuple[str, str]], list[tuple[str, str]], list[tuple[str, str]]]:
    """(documents, articles, sections) as dropdown choices, from the chunks' metadata."""
    docs: dict[str, str] = {}
    articles: dict[str, None] = {}
    sections: dict[str, None] = {}
    for c in rt.index.chunks:
        docs.setdefault(c.doc_id, c.doc)
        if c.article_kind == "article":
            articles.setdefault(c.article, None)
        if c.section:
            sections.setdefault(c.section, None)
    return (
        [("全部文档", ALL)] + [(title, doc_id) for doc_id, title in docs.items()],
        [("全部文章", ALL)] + [(a, a) for a in articles],
        [("全部栏目", ALL)] + [(s, s) for s in sections],
    )


def status_text(rt: Runtime) -> str:
    """The Markdown status line: documents, size and index version (titles shown literally)."""
    docs = {c.doc for c in rt.index.chunks}
    return (
        f"资料：{escape_md('、'.join(sorted(docs)))}　·　{len(rt.index.chunks)} 个段落　·　"
        f"索引版本 {escape_md(rt.index.version)}"
    )


# --------------------------------------------------------------------------------------------------
# The page


def build_ui(
    settings: Settings,
    runtimes: RuntimeSource,
    user_of: Callable[[gr.Request | None], str | None] | None = None,
) -> gr.Blocks:
    """The Blocks app. ``user_of`` names the signed-in user of a request (for feedback rows)."""
    serve = settings.serve
    max_examples = 4

    def who(request: gr.Request | None) -> str | None:
        if user_of is None:
            return None
        try:
            return user_of(request)
        except Exception:  # noqa: BLE001 - a name for a feedback row is never worth an error
            return None

    def on_load() -> tuple[Any, ...]:
        """Fill the status line, settings and examples from the live index (or say it is missing)."""
        try:
            rt = runtimes.get()
        except RagError as exc:
            hidden = [gr.update(visible=False) for _ in range(max_examples)]
            log.warning("页面无法加载索引：%s", exc)
            return (
                f"**服务暂不可用：** {escape_md(client_message(exc))}",
                gr.update(),
                gr.update(),
                gr.update(),
                gr.update(),
                *hidden,
            )
        docs, articles, sections = filter_choices(rt)
        backends = rt.available_backends()
        default = settings.answer.backend if settings.answer.backend in backends else "extractive"
        examples = example_questions(rt, max_examples)
        buttons = [
            gr.update(value=examples[i], visible=True) if i < len(examples) else gr.update(visible=False)
            for i in range(max_examples)
        ]
        return (
            status_text(rt),
            gr.update(choices=[(BACKEND_LABELS.get(b, b), b) for b in backends], value=default),
            gr.update(choices=docs, value=ALL),
            gr.update(choices=articles, value=ALL),
            gr.update(choices=sections, value=ALL),
            *buttons,
        )

    def respond(
        question: str,
        chat: list[dict[str, Any]],
        turns: list[dict[str, Any]],
        backend: str | None,
        k: float,
        doc: str | None,
        article: str | None,
        section: str | None,
        request: gr.Request,
    ):
        """Stream one answer into the chat; the sources panel follows when it is complete."""
        deadline = Deadline.after(serve.request_timeout_s)
        try:
            q = clean_question(question, serve.max_question_chars)
        except InputError as exc:
            raise gr.Error(str(exc)) from None
        if len(turns) >= serve.ui_max_turns:
            # A session's turns (answers with their passages) live in server memory: bounded per
            # session here, and the number of sessions by RAG_UI_MAX_SESSIONS.
            raise gr.Error(f"本次对话已有 {len(turns)} 问：请点“清空对话”后继续提问。")
        chat = [*chat, {"role": "user", "content": escape_md(q)}]
        loading = runtimes.peek() is None
        wait = "正在加载模型和索引（首次使用约需半分钟）…" if loading else "正在检索资料…"
        # The box is emptied once, here: later updates leave it alone, so a next question typed
        # while this answer streams is not wiped (each streamed piece used to clear it again).
        yield [*chat, {"role": "assistant", "content": wait}], turns, gr.update(), "", wait
        try:
            rt = runtimes.get()
        except RagError as exc:
            log.warning("页面提问无法回答：%s", exc)
            msg = f"无法回答：{client_message(exc)}"
            yield (
                [*chat, {"role": "assistant", "content": escape_md(msg)}],
                turns,
                gr.update(),
                gr.update(),
                escape_md(msg),
            )
            return

        # The dropdown lists only available backends, but the page's event API takes any value (and
        # a backend can vanish between page load and question): answer extractively, and say so.
        substitute = ""
        if backend and backend not in rt.available_backends():
            label = BACKEND_LABELS.get(backend, backend)
            substitute = f"所选回答方式“{label}”当前不可用，以下为摘录原文的回答。"
            backend = "extractive"
        history = [(t["question"], t.get("body") or t["answer"]) for t in turns[-HISTORY_TURNS:]]
        filters = Filters(doc=doc or None, article=article or None, section=section or None)
        tokens: queue.Queue[str] = queue.Queue()
        drafts: queue.Queue[Answer] = queue.Queue()
        result: dict[str, Any] = {}

        def work() -> None:
            try:
                result["answer"] = ask(
                    rt,
                    q,
                    backend=backend or None,
                    # The slider at its default means "not chosen": ask() then reads more passages
                    # for an English question (cross_lingual_k).
                    k=int(k) if k and int(k) != rt.settings.retrieve.k else None,
                    filters=filters,
                    history=history,
                    on_token=tokens.put,
                    on_draft=drafts.put,
                    deadline=deadline,
                )
            except RagError as exc:
                log.warning("页面提问无法回答：%s: %s", type(exc).__name__, exc)
                result["error"] = client_message(exc)
            except Exception:  # noqa: BLE001 - logged with its traceback; the user gets one line
                log.exception("回答出错")
                result["error"] = "服务器内部错误，请稍后再试或联系管理员。"

        worker = threading.Thread(target=work, name="ui-ask", daemon=True)
        worker.start()
        generating = backend not in (None, "", "extractive")
        streamed = ""
        draft = ""
        while worker.is_alive() or not tokens.empty() or not drafts.empty():
            if deadline.expired() and worker.is_alive():
                # The worker has the same deadline and stops at its next stage; the page need not wait.
                result.setdefault("error", str(deadline.error()))
                break
            try:
                # The extractive draft arrives first; the model's first token 10-20 s later.
                draft = draft_md(drafts.get_nowait())
            except queue.Empty:
                try:
                    streamed += tokens.get(timeout=0.2)
                except queue.Empty:
                    continue
            if generating:  # raw model text, replaced below by the checked answer
                bubble = draft + (f"{MODEL_DRAFT_HEADING}{escape_md(streamed)} ▌" if streamed else "")
                yield (
                    [*chat, {"role": "assistant", "content": bubble}],
                    turns,
                    gr.update(),
                    gr.update(),
                    "正在生成回答（引用核对后显示最终答案）…",
                )
        else:  # the loop ran out (no break): the worker is done
            worker.join()
        if "error" in result:
            msg = f"无法回答：{result['error']}"
            yield (
                [*chat, {"role": "assistant", "content": escape_md(msg)}],
                turns,
                gr.update(),
                gr.update(),
                escape_md(msg),
            )
            return

        answer = result["answer"].to_dict()
        if serve.log_questions:
            log.info(
                "界面提问 user=%s backend=%s question=%s",
                log_text(who(request) or "-"),
                log_text(answer["backend"]),
                log_text(q),
            )
        record = turn_record(answer, rt.index.version)
        turn_no = len(turns) + 1
        cited = {int(c["n"]) for c in answer["citations"]}
        body = answer.get("body") or answer["answer"]
        sources = sources_text(answer["citations"])
        # Stream the checked answer in a few pieces (extractive answers arrive all at once).
        shown = ""
        for piece in answer_pieces(body):
            shown += piece
            bubble = render_answer_md(shown, cited, turn_no)
            yield [*chat, {"role": "assistant", "content": bubble}], turns, gr.update(), gr.update(), "正在输出回答…"
        final = render_answer_md(body + (f"\n\n{sources}" if sources else ""), cited, turn_no)
        if answer.get("note"):
            final += "\n\n" + escape_md(f"（{answer['note']}）")
        if substitute:
            final = escape_md(f"（{substitute}）") + "\n\n" + final
        new_turns = [*turns, record]
        took = answer["timings_ms"].get("total", 0) / 1000
        status = f"已回答（{took:.1f} 秒，{len(cited)} 处引用）。点击答案中的 [n] 查看原文；可用回答下方的赞/踩按钮评价。"
        if answer["refused"]:
            status = "资料中未找到相关内容；右侧“来源”列出了最接近的文章。"
        if substitute:
            status = f"{substitute}{status}"
        yield (
            [*chat, {"role": "assistant", "content": final}],
            new_turns,
            render_sources_html(new_turns),
            gr.update(),
            status,
        )

    def on_like(
        chat: list[dict[str, Any]],
        turns: list[dict[str, Any]],
        comment: str,
        data: gr.LikeData,
        request: gr.Request,
    ) -> tuple[str, int | None, list[dict[str, Any]], Any]:
        """Store the thumb for the rated answer (with the comment box's text, if any).

        Each answer keeps one feedback row: clicking the other thumb changes its rating, and
        unclicking the thumb withdraws it. The comment box is emptied only when its text was
        stored here; otherwise it is left alone, so a comment typed meanwhile is not lost.
        """
        keep = gr.update()
        index = data.index if isinstance(data.index, int) else data.index[0]
        turn_i = sum(1 for m in chat[:index] if m.get("role") == "assistant")
        if not 0 <= turn_i < len(turns):
            return "这条消息不是已完成的回答，无法评价。", None, turns, keep
        t = turns[turn_i]
        previous = t.get("feedback_id")
        attached = bool(comment and comment.strip())
        if data.liked in (True, "Like"):
            rating: str | None = "up"
        elif data.liked in (False, "Dislike"):
            rating = "down"
        else:
            rating = None
        try:
            if rating is None:
                if previous:
                    withdraw_feedback(serve.feedback_db, previous)
                t["feedback_id"] = None
                return f"已撤回对第 {turn_i + 1} 问的评价。", None, turns, keep
            if previous and change_rating(serve.feedback_db, previous, rating):
                fid = previous
                if attached:
                    update_comment(serve.feedback_db, fid, comment)
            else:
                fid = record_feedback(
                    serve.feedback_db,
                    question=t["question"],
                    answer=t["answer"],
                    citations=t["citations"],
                    index_version=t["index_version"],
                    rating=rating,
                    comment=comment or None,
                    backend=t["backend"],
                    user=who(request),
                )
        except InputError as exc:
            raise gr.Error(str(exc)) from None
        except RagError as exc:
            log.error("评价未能保存：%s", exc)  # names the database; the page only says to retry
            raise gr.Error(FEEDBACK_FAILED) from None
        t["feedback_id"] = fid
        thumb = "赞" if rating == "up" else "踩"
        extra = "（已附意见）" if attached else "；可在上方填写意见后点“提交意见”补充"
        status = f"已记录对第 {turn_i + 1} 问的评价：{thumb}（编号 {fid}）{extra}。"
        return status, fid, turns, ("" if attached else keep)

    def on_comment(comment: str, feedback_id: int | None) -> tuple[str, str]:
        if not feedback_id:
            return "请先用回答下方的赞/踩按钮评价，再提交意见。", comment
        if not (comment and comment.strip()):
            return "意见为空：请先在上方填写意见，再点“提交意见”。", comment
        try:
            ok = update_comment(serve.feedback_db, int(feedback_id), comment)
        except InputError as exc:
            raise gr.Error(str(exc)) from None
        except RagError as exc:
            log.error("意见未能保存：%s", exc)
            raise gr.Error(FEEDBACK_FAILED) from None
        return ("意见已保存，谢谢！" if ok else "找不到这条评价。"), ""

    with gr.Blocks(title="《广东工运》智能问答", fill_width=False) as demo:
        turns_state = gr.State([])
        feedback_id = gr.State(None)
        gr.Markdown(
            "# 《广东工运》智能问答\n"
            "根据杂志原文回答问题，每句话都标注**印刷页码**；点击答案中的 [1] 等标号可查看原文。"
            "资料中没有的内容会如实回答“资料中未找到相关内容”。"
        )
        status = gr.Markdown("正在加载模型和索引…", elem_id="gy-status")
        with gr.Row(equal_height=False):
            with gr.Column(scale=3, min_width=360):
                chatbot = gr.Chatbot(
                    label="问答",
                    elem_id="gy-chat",
                    height=520,
                    latex_delimiters=[],
                    buttons=["copy", "copy_all"],
                    feedback_options=("Like", "Dislike"),
                    placeholder="请在下方输入问题，或点击示例问题。",
                )
                with gr.Row():
                    question = gr.Textbox(
                        label="问题",
                        placeholder="例如：第二届职工优秀创新成果交流活动是在哪个场馆办的？",
                        lines=1,
                        max_lines=4,
                        scale=5,
                        elem_id="gy-question",
                        max_length=serve.max_question_chars,
                    )
                    submit = gr.Button("提交", variant="primary", scale=1, elem_id="gy-submit")
                gr.Markdown("**示例问题**（点击即可提问）：")
                with gr.Row():
                    example_buttons = [
                        gr.Button(visible=False, size="sm", elem_classes=["gy-example"])
                        for _ in range(max_examples)
                    ]
                with gr.Row():
                    comment = gr.Textbox(
                        label="对回答的意见（可选）",
                        placeholder="点赞/踩之前填写会一并提交；之后填写请点“提交意见”。",
                        scale=5,
                        max_length=2000,
                        elem_id="gy-comment",
                    )
                    comment_btn = gr.Button("提交意见", scale=1, elem_id="gy-comment-submit")
                feedback_status = gr.Markdown("", elem_id="gy-feedback-status")
                clear = gr.Button("清空对话", variant="secondary", size="sm")
            with gr.Column(scale=2, min_width=300):
                gr.Markdown("### 来源")
                sources = gr.HTML(render_sources_html([]), elem_id="gy-sources")
                with gr.Accordion("设置", open=False, elem_id="gy-settings"):
                    backend = gr.Dropdown(
                        label="回答方式",
                        choices=[(BACKEND_LABELS["extractive"], "extractive")],
                        value="extractive",
                        interactive=True,
                    )
                    k = gr.Slider(
                        label="检索段落数",
                        minimum=1,
                        maximum=serve.max_k,
                        step=1,
                        value=min(settings.retrieve.k, serve.max_k),
                    )
                    doc = gr.Dropdown(label="文档", choices=[("全部文档", ALL)], value=ALL)
                    article = gr.Dropdown(label="文章", choices=[("全部文章", ALL)], value=ALL)
                    section = gr.Dropdown(label="栏目", choices=[("全部栏目", ALL)], value=ALL)
        gr.Markdown(
            '<span style="font-size:.85em">接口文档：<a href="docs" target="_blank">/docs</a>　'
            "（/api/ask、/api/search、/v1/chat/completions）</span>"
        )

        inputs = [question, chatbot, turns_state, backend, k, doc, article, section]
        outputs = [chatbot, turns_state, sources, question, status]
        demo.load(on_load, None, [status, backend, doc, article, section, *example_buttons])
        submit.click(respond, inputs, outputs)
        question.submit(respond, inputs, outputs)
        for b in example_buttons:
            b.click(lambda text: text, b, question).then(respond, inputs, outputs)
        chatbot.like(
            on_like, [chatbot, turns_state, comment], [feedback_status, feedback_id, turns_state, comment]
        )
        comment_btn.click(on_comment, [comment, feedback_id], [feedback_status, comment])
        clear.click(
            lambda: ([], [], render_sources_html([]), ""),
            None,
            [chatbot, turns_state, sources, feedback_status],
        )
        # The chat's own trash button clears the bubbles; the turns and sources must go with them.
        chatbot.clear(
            lambda: ([], render_sources_html([]), ""), None, [turns_state, sources, feedback_status]
        )
    return demo
