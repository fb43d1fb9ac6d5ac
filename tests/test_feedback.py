"""The feedback store: concurrent writers lose nothing, export round-trips, bad input is refused."""

from __future__ import annotations

import io
import json
import sqlite3
import threading
from pathlib import Path

import pytest

from rag.errors import InputError, RagError
from rag.feedback import (
    SCHEMA_VERSION,
    change_rating,
    export_jsonl,
    iter_feedback,
    record_feedback,
    update_comment,
    withdraw_feedback,
)
from rag.types import Citation

CITATION = Citation(
    n=1,
    doc="《广东工运》2025年第12期",
    article="封二",
    pages=("封二",),
    quote="第二届广东省职工优秀创新成果交流活动在广州黄埔知识城国际会展中心举办。",
    chunk_id="doc:001:002",
)


def _record(db: Path, i: int, **kw) -> int:
    args = {
        "question": f"问题{i}",
        "answer": f"回答{i}[1]",
        "citations": [CITATION],
        "index_version": "gen-test",
        "rating": "up" if i % 2 else "down",
        "comment": None,
        "backend": "extractive",
        "user": None,
    }
    args.update(kw)
    return record_feedback(db, **args)


def test_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    db = tmp_path / "sub" / "feedback.sqlite"
    n_threads, per_thread = 8, 25
    errors: list[BaseException] = []
    ids: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(n_threads)

    def writer(t: int) -> None:
        try:
            start.wait()  # all threads hit the empty file at once, schema creation included
            for j in range(per_thread):
                rid = _record(db, t * 1000 + j, user=f"u{t}")
                with lock:
                    ids.append(rid)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(n_threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    assert len(set(ids)) == n_threads * per_thread
    rows = list(iter_feedback(db))
    assert len(rows) == n_threads * per_thread
    assert {r["question"] for r in rows} == {
        f"问题{t * 1000 + j}" for t in range(n_threads) for j in range(per_thread)
    }
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_export_round_trip(tmp_path: Path) -> None:
    db = tmp_path / "feedback.sqlite"
    first = _record(db, 1, comment="  很有用  ", user="张三")
    second = _record(db, 2, question="含<script>alert(1)</script>的问题")
    assert update_comment(db, second, "页码不对")
    assert not update_comment(db, 9999, "不存在")

    buf = io.StringIO()
    assert export_jsonl(db, buf) == 2
    rows = [json.loads(line) for line in buf.getvalue().splitlines()]
    assert [r["id"] for r in rows] == [first, second]
    assert rows[0]["comment"] == "很有用" and rows[0]["user"] == "张三" and rows[0]["rating"] == "up"
    assert rows[1]["comment"] == "页码不对" and rows[1]["rating"] == "down"
    assert rows[1]["question"] == "含<script>alert(1)</script>的问题"
    assert rows[0]["citations"] == [CITATION.to_dict()]
    assert rows[0]["index_version"] == "gen-test" and rows[0]["backend"] == "extractive"

    out = tmp_path / "out" / "feedback.jsonl"
    assert export_jsonl(db, out) == 2
    assert [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()] == rows


def test_missing_database_exports_nothing(tmp_path: Path) -> None:
    buf = io.StringIO()
    assert export_jsonl(tmp_path / "none.sqlite", buf) == 0
    assert buf.getvalue() == ""


def test_bad_rating_and_comment_are_input_errors(tmp_path: Path) -> None:
    db = tmp_path / "feedback.sqlite"
    with pytest.raises(InputError):
        _record(db, 1, rating="meh")
    with pytest.raises(InputError):
        _record(db, 1, comment="长" * 5000)


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "feedback.sqlite"
    with sqlite3.connect(db) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(RagError, match="格式版本"):
        _record(db, 1)


def test_a_rating_can_be_changed_and_withdrawn(tmp_path: Path) -> None:
    db = tmp_path / "feedback.sqlite"
    rid = _record(db, 1, comment="有用")
    other = _record(db, 2)
    assert change_rating(db, rid, "down")
    assert [(r["id"], r["rating"], r["comment"]) for r in iter_feedback(db)][0] == (rid, "down", "有用")
    with pytest.raises(InputError):
        change_rating(db, rid, "meh")  # type: ignore[arg-type]
    assert withdraw_feedback(db, rid)
    assert [r["id"] for r in iter_feedback(db)] == [other]
    assert not withdraw_feedback(db, rid) and not change_rating(db, rid, "up")
