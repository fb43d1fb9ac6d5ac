"""Extractive answers: cited, verbatim, page-labelled, or an honest refusal."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from serving import free_port

from rag.answer import ask, retrieval_query
from rag.answer.citations import format_pages
from rag.answer.extractive import REFUSAL
from rag.errors import InputError
from rag.lexical import ChineseTokenizer


def test_answer_is_cited_with_printed_pages(magazine_runtime) -> None:
    a = ask(magazine_runtime, "第二届职工优秀创新成果交流活动是在哪个场馆办的？")
    assert not a.refused
    assert "黄埔知识城国际会展中心" in a.answer
    assert "[1]" in a.answer
    assert a.citations and a.citations[0].pages == ("封二",)
    by_id = {h.chunk.chunk_id: h.chunk for h in a.passages}
    for c in a.citations:
        assert c.quote and c.quote in by_id[c.chunk_id].text  # quotes are verbatim


def test_numbers_come_through_verbatim(magazine_runtime) -> None:
    a = ask(magazine_runtime, "湛江钢铁2024年的违章总量比上一年下降了多少？")
    assert "82.66%" in a.answer
    assert set(a.citations[0].pages) <= {"24", "25", "26"}


def test_out_of_scope_question_is_refused(magazine_runtime) -> None:
    a = ask(magazine_runtime, "2022年世界杯足球赛的冠军是哪个国家？")
    assert a.refused and a.answer.startswith(REFUSAL) and a.citations == []


def test_output_contract(magazine_runtime) -> None:
    d = ask(magazine_runtime, "龙岗开了几场新业态工会代表专场议事会？", qid="x1").to_dict()
    assert d["id"] == "x1" and d["backend"] == "extractive"
    assert set(d) >= {"question", "answer", "refused", "citations", "passages", "timings_ms"}
    assert {"retrieve", "answer", "total"} <= set(d["timings_ms"])
    assert all(isinstance(p, str) for c in d["citations"] for p in c["pages"])
    json.dumps(d, ensure_ascii=False)


def test_bad_questions_are_input_errors(magazine_runtime) -> None:
    for q in ["", "   ", "问" * 5000]:
        with pytest.raises(InputError):
            ask(magazine_runtime, q)
    with pytest.raises(InputError):
        ask(magazine_runtime, "工会", backend="gpt-99")


def test_follow_up_uses_previous_turn() -> None:
    history = [("广州市总工会在就业帮扶上有什么做法？", "…")]
    tok = ChineseTokenizer()
    follow = retrieval_query("那深圳呢？", history, tok)
    assert "深圳" in follow and "广州" not in follow and "就业" in follow
    assert retrieval_query("湛江钢铁的安全日历是通过什么渠道推送的？", history, tok).startswith("湛江")


def test_page_formats() -> None:
    assert format_pages(("5", "6", "7", "8")) == "第5–8页"
    assert format_pages(("16", "13")) == "第16、13页"
    assert format_pages(("封二",)) == "封二"


def test_batch_keeps_going_past_a_bad_line(magazine_settings, magazine_runtime, tmp_path: Path) -> None:
    src = tmp_path / "q.jsonl"
    src.write_text(
        "\n".join(
            [
                json.dumps({"id": "q1", "question": "湛江钢铁的《安全日历》是通过什么渠道每天推送的？"}, ensure_ascii=False),
                "{not json",
                json.dumps({"id": "q3", "question": ""}, ensure_ascii=False),
                json.dumps({"id": "q4", "question": "龙岗开了几场新业态工会代表专场议事会？"}, ensure_ascii=False),
            ]
        ),
        encoding="utf-8",
    )
    out = tmp_path / "a.jsonl"
    env = {
        **os.environ,
        "RAG_INDEX_DIR": str(magazine_settings.index.dir),
        "RAG_EMBED_CACHE_DIR": str(magazine_settings.embed.cache_dir),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "rag.cli", "batch", str(src), "--out", str(out)],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in rows] == ["q1", "line2", "q3", "q4"]
    assert "error" in rows[1] and "error" in rows[2]
    assert "安全湛钢" in rows[0]["answer"] and not rows[3]["refused"]


@contextlib.contextmanager
def _openai_backend(rt, backend):
    """The runtime's "openai" chat backend replaced by ``backend`` for the block."""
    saved = dict(rt._backends)
    rt._backends["openai"] = backend
    try:
        yield
    finally:
        rt._backends.clear()
        rt._backends.update(saved)


class _MustNotBeCalled:
    """A chat backend that fails the test if a question reaches it."""

    name = "openai"

    def stream(self, messages, **kwargs):
        raise AssertionError("a worked-out answer must not be handed to the model")


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("表1的六个行业中，哪个行业企业经营管理人才的工资高位数最高？是多少？", "27,539"),
        ("《创新粤港澳工会协同机制 促进大湾区融合发展》在第几页？", "第1–4页"),
    ],
)
def test_worked_out_answers_are_not_rewritten_by_a_model(magazine_runtime, question: str, expected: str) -> None:
    with _openai_backend(magazine_runtime, _MustNotBeCalled()):
        ans = ask(magazine_runtime, question, backend="openai")
    assert ans.backend == "extractive" and not ans.refused and ans.note
    assert expected in ans.answer and ans.citations


class _RecordingBackend:
    """A chat backend that notes when it is called and replies with a cited sentence.

    Stands in for a model only to check the order of callbacks; the real model is tested in
    test_llm.py and the page with it in test_ui_browser.py.
    """

    name = "openai"

    def __init__(self, events: list[str], reply: str) -> None:
        self.events, self.reply = events, reply

    def stream(self, messages, **kwargs):
        self.events.append("model")
        yield self.reply


def test_draft_is_the_extractive_answer_given_before_the_model_runs(magazine_runtime) -> None:
    question = "湛江钢铁2024年的违章总量比上一年下降了多少？"
    extractive = ask(magazine_runtime, question)
    events: list[str] = []
    drafts = []
    with _openai_backend(magazine_runtime, _RecordingBackend(events, extractive.answer.split("\n\n")[0])):
        ans = ask(
            magazine_runtime,
            question,
            backend="openai",
            on_draft=lambda a: (events.append("draft"), drafts.append(a)),
            on_token=lambda t: events.append("token"),
        )
    assert events[:3] == ["draft", "model", "token"]
    assert [d.answer for d in drafts] == [extractive.answer] and drafts[0].citations
    assert ans.backend == "openai" and ans.citations
    # Extractive answers and refusals have no draft: they are the answer.
    got: list[object] = []
    ask(magazine_runtime, question, on_draft=got.append)
    with _openai_backend(magazine_runtime, _MustNotBeCalled()):
        ask(magazine_runtime, "2022年世界杯足球赛的冠军是哪个国家？", backend="openai", on_draft=got.append)
    assert got == []


def test_cli_shows_the_draft_on_stderr_while_a_model_answers(magazine_settings, magazine_runtime) -> None:
    # An OpenAI-compatible server that is down (a closed loopback port): the CLI shows the draft,
    # the model call fails fast, and stdout gets the extractive answer with a note.
    port = free_port()
    env = {
        **os.environ,
        "RAG_INDEX_DIR": str(magazine_settings.index.dir),
        "RAG_EMBED_CACHE_DIR": str(magazine_settings.embed.cache_dir),
        "RAG_OPENAI_BASE_URL": f"http://127.0.0.1:{port}/v1",
        "RAG_OPENAI_TIMEOUT_S": "5",
    }
    question = "湛江钢铁2024年的违章总量比上一年下降了多少？"
    proc = subprocess.run(
        [sys.executable, "-m", "rag.cli", "ask", question, "--backend", "openai"],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    expected = ask(magazine_runtime, question).answer
    assert f"原文摘录（生成模型正在撰写回答，请稍候）：\n{expected}" in proc.stderr
    assert proc.stdout.startswith(expected) and "摘录式回答" in proc.stdout
    assert "原文摘录" not in proc.stdout
    as_json = subprocess.run(
        [sys.executable, "-m", "rag.cli", "ask", question, "--backend", "openai", "--json"],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert as_json.returncode == 0 and "原文摘录" not in as_json.stderr
    assert json.loads(as_json.stdout)["answer"] == expected
