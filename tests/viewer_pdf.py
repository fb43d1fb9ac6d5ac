"""A small magazine PDF for the page-viewer tests, built with reportlab (STSong-Light, which
extracts exactly), and a runtime that indexes it with the real model.

Physical pages: 0 封面 (no number), 1 封二, 2-4 printed 1-3 in the footer. The article's lines
wrap mid-sentence as a column does, and one sentence runs over from printed page 1 to page 2,
so a chunk covers two pages while each quote lies on one.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

PAGES: list[list[str]] = [
    ["南粤职工", "2024年第3期"],
    ["春季职工运动会在市体育中心开幕，", "全市四十支代表队参赛。"],
    [
        "职工之家建设的三个抓手",
        "文 | 陈一鸣",
        "今年全市新建职工之家一百二十家，覆盖",
        "职工三万五千人。阵地建设方面，各区总工会共投入专项经费",
    ],
    [
        "八百万元用于场地改造。服务内容方面，新",
        "建的职工书屋配备图书四千六百册，全天向",
        "职工开放。",
        "",
        "此外，各区总工会还在职工之家设立法律",
        "援助窗口和心理咨询室，组织律师和心理咨",
        "询师定期坐班，为职工提供免费咨询服务。",
        "全年共接待职工来访一千三百余人次，调处",
        "劳动争议八十六件，帮助职工追回欠薪二百",
        "余万元。",
        "",
        "职工之家还开设了技能培训课堂，围绕电工、",
        "焊工、育婴师等工种开展培训四十二期，参",
        "训职工两千一百人次，其中三百余人取得职",
        "业资格证书。",
    ],
    [
        "经验启示方面，关键在于把服务送到一线，",
        "让职工找得到、用得上。",
        "",
        "下一步，市总工会将推动职工之家向产业园",
        "区和新就业形态劳动者集中的商圈延伸，力",
        "争明年覆盖职工五万人以上。",
    ],
]
FOOTERS: list[str | None] = [None, None, "1", "2", "3"]
# (question, the sentence that answers it, its 0-based physical page, its printed label)
COVERAGE = ("今年全市新建的职工之家覆盖多少职工？", "今年全市新建职工之家一百二十家，覆盖职工三万五千人。", 2, "1")
BOOKS = ("新建的职工书屋配备了多少册图书？", "新建的职工书屋配备图书四千六百册，全天向职工开放。", 3, "2")
NOTE_MD = """# 工会简讯

--- 第 9 页 ---

## 劳模工作室

全市劳模和工匠人才创新工作室已达二百一十家，今年新认定三十家。
"""
MD_QUESTION = "全市劳模和工匠人才创新工作室有多少家？"


def build_pdf(pages: list[list[str]] = PAGES, footers: list[str | None] = FOOTERS) -> bytes:
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont
    from reportlab.pdfgen import canvas

    pdfmetrics.registerFont(UnicodeCIDFont("STSong-Light"))
    buf = io.BytesIO()
    c = canvas.Canvas(buf)
    for i, lines in enumerate(pages):
        c.setFont("STSong-Light", 14)
        for k, line in enumerate(lines):
            c.drawString(72, 760 - 22 * k, line)
        if footers[i]:
            c.setFont("STSong-Light", 10)
            c.drawString(297, 30, footers[i])
        c.showPage()
    c.save()
    return buf.getvalue()


def pdf_runtime(folder: Path, embedder: Any, base_settings: Any, with_text_doc: bool = True) -> Any:
    """A runtime over ``docs/nanyue.pdf`` (and a Markdown note, a text source) under ``folder``."""
    from rag.config import IndexSettings
    from rag.index import build_index, load_index
    from rag.runtime import Runtime

    docs = folder / "docs"
    docs.mkdir(parents=True, exist_ok=True)
    (docs / "nanyue.pdf").write_bytes(build_pdf())
    if with_text_doc:
        (docs / "note.md").write_text(NOTE_MD, encoding="utf-8")
    settings = base_settings.model_copy(
        update={
            "data_dir": docs,
            "index": IndexSettings(dir=folder / "index"),
            "serve": base_settings.serve.model_copy(update={"feedback_db": folder / "feedback.sqlite"}),
        }
    )
    build_index([docs], settings, embedder)
    return Runtime(settings=settings, embedder=embedder, index=load_index(settings, embedder))
