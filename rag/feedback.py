"""Thumbs up/down feedback on answers, kept in a small SQLite file and exported as JSONL for eval/.

Several server threads (and several worker processes, if someone runs them) write at once, so:
the database runs in WAL mode (readers never block the writer), every connection waits up to
``BUSY_TIMEOUT_MS`` for a lock instead of failing, and each call opens and closes its own
connection (a sqlite3 connection must not be shared between threads). Writes take the write lock
up front (``BEGIN IMMEDIATE``) so two writers never deadlock upgrading a read lock.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import sqlite3
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, TextIO

from rag.errors import InputError, RagError

# Bumped when the table layout changes; a newer file is refused rather than misread.
SCHEMA_VERSION = 1
BUSY_TIMEOUT_MS = 30_000
MAX_COMMENT_CHARS = 2000

Rating = Literal["up", "down"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS feedback (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at    TEXT NOT NULL,
    rating        TEXT NOT NULL CHECK (rating IN ('up', 'down')),
    question      TEXT NOT NULL,
    answer        TEXT NOT NULL,
    citations     TEXT NOT NULL,
    comment       TEXT,
    backend       TEXT,
    index_version TEXT,
    user          TEXT
)
"""


@contextlib.contextmanager
def _connect(db: Path) -> Iterator[sqlite3.Connection]:
    """One connection per call, closed on exit; ``isolation_level=None`` so we control transactions."""
    try:
        db.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(db, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    except (OSError, sqlite3.Error) as exc:
        raise RagError(f"无法打开反馈数据库 {db}：{exc}；请检查 RAG_FEEDBACK_DB 和目录权限。") from exc
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        yield conn
    except sqlite3.Error as exc:
        raise RagError(f"反馈数据库 {db} 出错：{exc}") from exc
    finally:
        conn.close()


def _enable_wal(conn: sqlite3.Connection) -> None:
    """Switch the file to WAL once, retrying while another connection holds it.

    Changing the journal mode needs an exclusive lock and SQLite does not run the busy handler
    for it: with several writers opening a fresh file at once, one of them used to fail at once
    with "database is locked". WAL is a property of the file, so once any connection has set it
    the others only read it.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    delay = 0.005
    while True:
        if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal":
            return
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


def _ensure_schema(conn: sqlite3.Connection, db: Path) -> None:
    _enable_wal(conn)
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise RagError(
            f"反馈数据库 {db} 的格式版本为 {version}，本程序只认识 {SCHEMA_VERSION}；请升级程序或换一个 RAG_FEEDBACK_DB。"
        )
    if version < SCHEMA_VERSION:
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(_SCHEMA)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise


def _citations_json(citations: Sequence[Any]) -> str:
    """Citations as stored: a JSON list of dicts, whether given Citation records or dicts."""
    out = []
    for c in citations:
        out.append(c.to_dict() if hasattr(c, "to_dict") else dict(c))
    return json.dumps(out, ensure_ascii=False)


def record_feedback(
    db: Path,
    *,
    question: str,
    answer: str,
    citations: Sequence[Any],
    index_version: str | None,
    rating: Rating,
    comment: str | None,
    backend: str | None,
    user: str | None,
) -> int:
    """Store one rating of one answer and return its row id.

    Args:
        db: the SQLite file (created with its folder on first use).
        citations: ``Citation`` records or their ``to_dict()`` form.
        index_version: the index generation that produced the answer (``rt.index.version``),
            so a later eval can tell which build a complaint was about.
        rating: ``"up"`` or ``"down"``.
        comment: optional free text; empty strings are stored as NULL.
        user: who rated (login or SSO name), if known.
    """
    _check_rating(rating)
    comment = _clean_comment(comment)
    row = (
        dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        rating,
        question,
        answer,
        _citations_json(citations),
        comment,
        backend,
        index_version,
        user,
    )
    cur = _write(
        db,
        "INSERT INTO feedback (created_at, rating, question, answer, citations, comment, backend,"
        " index_version, user) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        row,
    )
    return int(cur.lastrowid or 0)


def update_comment(db: Path, feedback_id: int, comment: str | None) -> bool:
    """Attach (or replace) the comment of an earlier rating; False if that row does not exist.

    The UI records the thumb at once and lets the user add a comment afterwards.
    """
    cur = _write(db, "UPDATE feedback SET comment = ? WHERE id = ?", (_clean_comment(comment), int(feedback_id)))
    return cur.rowcount == 1


def change_rating(db: Path, feedback_id: int, rating: Rating) -> bool:
    """Turn an earlier thumb up into a thumb down or back; False if that row does not exist.

    One answer keeps one rating row however often its thumbs are clicked.
    """
    _check_rating(rating)
    return _write(db, "UPDATE feedback SET rating = ? WHERE id = ?", (rating, int(feedback_id))).rowcount == 1


def withdraw_feedback(db: Path, feedback_id: int) -> bool:
    """Delete a rating its author took back (unclicked the thumb); False if it was not there."""
    return _write(db, "DELETE FROM feedback WHERE id = ?", (int(feedback_id),)).rowcount == 1


def _write(db: Path, sql: str, params: tuple[Any, ...]) -> sqlite3.Cursor:
    """Run one statement in its own write transaction (``lastrowid``/``rowcount`` stay readable)."""
    with _connect(Path(db)) as conn:
        _ensure_schema(conn, Path(db))
        conn.execute("BEGIN IMMEDIATE")
        try:
            cur = conn.execute(sql, params)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return cur


def _check_rating(rating: str) -> None:
    if rating not in ("up", "down"):
        raise InputError(f"评价只能是 up 或 down，收到 {rating!r}。")


def _clean_comment(comment: str | None) -> str | None:
    if comment is None:
        return None
    comment = comment.strip()
    if len(comment) > MAX_COMMENT_CHARS:
        raise InputError(f"意见过长（{len(comment)} 字），请控制在 {MAX_COMMENT_CHARS} 字以内。")
    return comment or None


def iter_feedback(db: Path) -> Iterator[dict[str, Any]]:
    """All stored ratings, oldest first, as plain dicts (citations decoded)."""
    db = Path(db)
    if not db.exists():
        return
    with _connect(db) as conn:
        _ensure_schema(conn, db)
        conn.row_factory = sqlite3.Row
        for r in conn.execute("SELECT * FROM feedback ORDER BY id"):
            d = dict(r)
            d["citations"] = json.loads(d["citations"])
            yield d


def export_jsonl(db: Path, out: Path | TextIO) -> int:
    """Write every rating as one JSON object per line to ``out`` (a path or an open text stream).

    Returns the number of lines written; a missing database exports nothing (0), since no one
    has rated yet.
    """
    rows = list(iter_feedback(Path(db)))
    if isinstance(out, str | Path):
        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8") as fh:
            return _write_rows(rows, fh)
    return _write_rows(rows, out)


def _write_rows(rows: list[dict[str, Any]], fh: TextIO) -> int:
    for r in rows:
        fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    fh.flush()
    return len(rows)
