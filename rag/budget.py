"""A request's wall-clock budget: one deadline, checked between stages, turned into a 504.

Python cannot stop a thread from outside, so the budget is enforced twice: the server stops
*waiting* for a request's thread at the deadline and answers 504 at once (rag.serve), and
:func:`rag.answer.ask` checks the same deadline between its stages and shortens a generating
backend's timeout to what is left, so the thread itself ends soon after instead of running on.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from rag.errors import RequestTimeout


def timeout_message(seconds: float) -> str:
    """The one-line message of a request cut at its budget: what happened and what to do."""
    return (
        f"请求处理超过 {seconds:g} 秒，已中止：请缩短问题或对话历史后重试；"
        "若简短的问题也超时，说明服务器正忙，请稍后再试或联系管理员（RAG_REQUEST_TIMEOUT_S）。"
    )


@dataclass(frozen=True)
class Deadline:
    """``seconds`` of budget ending at ``at`` (``time.monotonic()`` clock)."""

    seconds: float
    at: float

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        """A budget of ``seconds`` starting now."""
        return cls(seconds, time.monotonic() + seconds)

    def remaining(self) -> float:
        """Seconds left (negative once past)."""
        return self.at - time.monotonic()

    def expired(self) -> bool:
        return self.remaining() <= 0

    def error(self) -> RequestTimeout:
        return RequestTimeout(timeout_message(self.seconds))

    def check(self) -> None:
        """Raise :class:`RequestTimeout` once the budget is spent."""
        if self.expired():
            raise self.error()
