"""Two-step questions: a role named in the question is first resolved to a name, then asked about.

"本刊编委会副主任12月5日出席了什么活动？" needs two facts: who the 编委会副主任 is (the masthead:
"编委会副主任 袁子雅") and what 袁子雅 did on 12月5日 (大事记). When a retrieved passage holds a
short *label + name* line whose label the question contains, and the question asks for more than
that line says, the label is replaced by the name and the question is retrieved again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rag.types import Hit

MAX_LINE_CHARS = 24  # a masthead or record line, not a sentence
_NAME = re.compile(r"^[\u4e00-\u9fff·]{2,6}$")
_REST = re.compile(r"[\u4e00-\u9fff\d]")


@dataclass(frozen=True)
class Bridge:
    """The label found in the question, the name it stands for, and the line that says so."""

    label: str
    name: str
    hit: Hit
    quote: str
    question: str  # the question with the label replaced by the name


def find_bridge(question_norm: str, question: str, hits: list[Hit], index) -> Bridge | None:
    """A label+name line among the hits' pieces that resolves a role in the question, if any."""
    best: Bridge | None = None
    for hit in hits:
        if hit.chunk.kind == "meta":
            continue
        for piece in index.pieces(index.position(hit.chunk))[0]:
            line = piece.norm
            if len(line) > MAX_LINE_CHARS or len(line) < 4:
                continue
            # the longest head of the line that the question contains is the label
            for cut in range(len(line) - 2, 1, -1):
                label, name = line[:cut], line[cut:]
                if label in question_norm and _NAME.match(name):
                    break
            else:
                continue
            if name in question_norm:
                continue  # the question already names them
            rest = question_norm.replace(label, "")
            if len(_REST.findall(rest)) < 6:
                continue  # nothing asked beyond the line itself: the one-step answer is right
            if best is None or len(label) > len(best.label):
                pos = question.find(label)
                rewritten = question.replace(label, name) if pos >= 0 else f"{name} {question}"
                best = Bridge(label, name, hit, piece.quote, rewritten)
    return best
