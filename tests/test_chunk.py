"""Chunk invariants: article-bounded, offsets real, pages exact to the text, tables intact."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from synthetic import make_issue  # tests/ is on sys.path (pytest "prepend" import mode)

from rag.chunk import TABLE_SIZE_FACTOR, chunk_document, pages_text
from rag.config import ChunkSettings
from rag.ingest import load_document
from rag.ingest.text import is_folio_line, is_marker_line
from rag.types import Chunk, Document

PROJECT_ROOT = Path(__file__).resolve().parent.parent
MAGAZINE = PROJECT_ROOT / "data" / "guangdong-gongyun-2025-12.txt"
STOPS = "。！？!?…；;"
CLOSERS = "”’」』》）)\"'"

MARKED = (
    "--- 第 3 页 ---\n工会简报\n\n文 | 张三\n\n"
    + "职工服务阵地建设持续推进，覆盖面不断扩大。" * 6
    + "这一句话从第三页开始"
    + "\n--- 第 4 页 ---\n"
    + "在第四页结束。"
    + "基层工会组织建设稳步加强，会员人数持续增长。" * 8
    + "\n--- 第 5 页 ---\n第二篇\n\n文 | 李四\n\n"
    + "集体协商制度不断完善。" * 5
    + "\n"
)


@pytest.fixture(scope="module")
def docs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Document]:
    folder = tmp_path_factory.mktemp("chunkdocs")
    (folder / "synthetic.txt").write_text(make_issue().text, encoding="utf-8")
    (folder / "marked.txt").write_text(MARKED, encoding="utf-8")
    return {
        "magazine": load_document(MAGAZINE),
        "synthetic": load_document(folder / "synthetic.txt"),
        "marked": load_document(folder / "marked.txt"),
    }


SETTINGS = [ChunkSettings(), ChunkSettings(size=200, overlap=40), ChunkSettings(size=500, overlap=0)]


def _squash(s: str) -> str:
    return re.sub(r"\s+", "", s)


def _source(doc: Document, c: Chunk) -> str:
    """The chunk's source span without page markers and printed page numbers."""
    lines = re.split(r"[\n\f]", doc.text[c.start : c.end])
    return "\n".join(ln for ln in lines if not is_marker_line(ln) and not is_folio_line(ln))


def _article_of(doc: Document, c: Chunk):  # type: ignore[no-untyped-def]
    return doc.articles[int(c.chunk_id.split(":")[1])]


@pytest.mark.parametrize("name", ["magazine", "synthetic", "marked"])
@pytest.mark.parametrize("settings", SETTINGS, ids=lambda s: f"size{s.size}")
def test_chunks_stay_inside_one_article_and_offsets_are_real(
    docs: dict[str, Document], name: str, settings: ChunkSettings
) -> None:
    doc = docs[name]
    for c in chunk_document(doc, settings):
        art = _article_of(doc, c)
        assert c.article == art.title and c.doc == doc.title and c.doc_id == doc.doc_id
        assert c.section == art.section and c.unit == art.unit and c.author == art.author
        assert c.article_kind == art.kind
        assert 0 <= c.start <= c.end <= len(doc.text)
        if c.kind == "meta":
            continue
        # inside its own article's segments...
        assert any(s.start <= c.start < s.end for s in art.segments), c.chunk_id
        assert any(s.start < c.end <= s.end for s in art.segments), c.chunk_id
        # ...and overlapping no other article's text
        for other in doc.articles:
            if other is not art:
                assert not any(s.start < c.end and s.end > c.start for s in other.segments), (
                    c.chunk_id,
                    other.title,
                )
        if c.kind == "body":
            assert _squash(_source(doc, c)) == _squash(c.text), c.chunk_id
        else:
            for row in c.text.split("\n"):
                assert row in doc.text
        # pages: exactly those of the segments the span overlaps
        hit = [s for s in art.segments if s.start < c.end and s.end > c.start]
        assert set(c.pages) == {p for s in hit for p in s.pages}


@pytest.mark.parametrize("name", ["magazine", "synthetic", "marked"])
@pytest.mark.parametrize("settings", SETTINGS, ids=lambda s: f"size{s.size}")
def test_no_chunk_ends_mid_sentence(docs: dict[str, Document], name: str, settings: ChunkSettings) -> None:
    doc = docs[name]
    for c in chunk_document(doc, settings):
        if c.kind != "body":
            continue
        after = doc.text[c.end : c.end + 1]
        ends_sentence = c.text.rstrip(CLOSERS)[-1:] in STOPS
        ends_line = after in ("", "\n", "\f")
        one_long_sentence = not any(ch in STOPS for ch in c.text[:-1])
        assert ends_sentence or ends_line or one_long_sentence, (c.chunk_id, c.text[-30:])


@pytest.mark.parametrize("name", ["magazine", "synthetic", "marked"])
@pytest.mark.parametrize("settings", SETTINGS, ids=lambda s: f"size{s.size}")
def test_chunk_sizes(docs: dict[str, Document], name: str, settings: ChunkSettings) -> None:
    for c in chunk_document(docs[name], settings):
        if c.kind == "body":
            assert 0 < len(c.text) <= settings.size * 1.25, c.chunk_id


def test_ids_unique_readable_and_stable(docs: dict[str, Document]) -> None:
    for doc in docs.values():
        a = chunk_document(doc, ChunkSettings())
        b = chunk_document(doc, ChunkSettings())
        assert [c.to_dict() for c in a] == [c.to_dict() for c in b]
        ids = [c.chunk_id for c in a]
        assert len(ids) == len(set(ids))
        assert all(re.fullmatch(rf"{re.escape(doc.doc_id)}:\d{{3}}:\d{{3}}", i) for i in ids)
        assert [Chunk.from_dict(c.to_dict()) for c in a] == a


def test_magazine_table_is_kept_whole_with_header_repeated(docs: dict[str, Document]) -> None:
    doc = docs["magazine"]
    # Small enough settings force a split (a table may take TABLE_SIZE_FACTOR chunk sizes).
    tables = [c for c in chunk_document(doc, ChunkSettings(size=150, overlap=0)) if c.kind == "table"]
    assert len(tables) >= 2
    whole = [c for c in chunk_document(doc, ChunkSettings()) if c.kind == "table"]
    assert len(whole) == 1 and "27,539" in whole[0].text and "4,226" in whole[0].text
    for c in tables:
        lines = c.text.split("\n")
        assert lines[0] == "表1 中山市部分紧缺适用型人才相关行业工资指导价位"
        assert lines[1].startswith("行业名称\t人才类型")
        assert "高位数\t中位数\t低位数" in lines[2]
        assert c.pages == ("5", "6", "7", "8")
        # a group of rows for one industry is never split
        assert not lines[3].startswith("\t")
    rows = [r for c in tables for r in c.text.split("\n")[3:]]
    assert len(rows) == 18 and len(set(rows)) == 18
    assert any("计算机、通信和其他电子设备制造业\t企业经营管理人才\t27,539" in r for r in rows)


def test_synthetic_table_split_by_rows(docs: dict[str, Document]) -> None:
    issue = make_issue()
    tables = [
        c for c in chunk_document(docs["synthetic"], ChunkSettings(size=50, overlap=0)) if c.kind == "table"
    ]
    assert len(tables) >= 2
    for c in tables:
        assert c.text.startswith(f"{issue.table_caption}\n{issue.table_header}\n")
        assert len(c.text) <= TABLE_SIZE_FACTOR * 50 or len(c.text.split("\n")) == 3
    rows = [r for c in tables for r in c.text.split("\n")[2:]]
    assert rows == issue.table_rows


def test_inferred_pages_are_marked_inexact(docs: dict[str, Document]) -> None:
    chunks = chunk_document(docs["magazine"], ChunkSettings())
    numbered = [c for c in chunks if c.article_kind == "article" and c.kind != "meta"]
    assert numbered and all(not c.page_exact for c in numbered if len(c.pages) > 1)
    continuation = [c for c in numbered if c.pages == ("13",) and c.article.startswith("攻坚克难")]
    assert continuation and all(c.page_exact for c in continuation)


def test_page_break_inside_a_sentence_lists_both_pages(docs: dict[str, Document]) -> None:
    chunks = chunk_document(docs["marked"], ChunkSettings(size=200, overlap=0, meta_chunks=False))
    crossing = [c for c in chunks if "这一句话从第三页开始在第四页结束。" in c.text]
    assert len(crossing) == 1 and crossing[0].pages == ("3", "4") and crossing[0].page_exact
    assert all(set(c.pages) <= {"3", "4", "5"} for c in chunks)
    assert [c.pages for c in chunks if c.article == "第二篇"] == [("5",)]
    # everything else names one page
    assert sum(len(c.pages) > 1 for c in chunks) == 1


def test_meta_chunks(docs: dict[str, Document]) -> None:
    doc = docs["magazine"]
    chunks = chunk_document(doc, ChunkSettings())
    metas = [c for c in chunks if c.kind == "meta"]
    assert len(metas) == len(doc.articles)
    asset = next(c for c in metas if c.article == "攻坚克难 创新完成工会资产确权")
    assert asset.pages == ("16", "13")
    for word in [
        "《广东工运》2025年第12期",
        "典型",
        "《攻坚克难 创新完成工会资产确权》",
        "广州市总工会",
        "第13、16页",
    ]:
        assert word in asset.text
    wages = next(c for c in metas if c.article == "产业工人工资增长机制的困境与突破")
    assert "作者：欧慧娅 黄宝仪" in wages.text and "副题：基于中山市的案例分析" in wages.text
    assert doc.text[wages.start : wages.end] == "产业工人工资增长机制的困境与突破"
    cover = next(c for c in metas if c.article == "封面")
    assert cover.pages == ("封面",) and "封面" in cover.text
    assert not [c for c in chunk_document(doc, ChunkSettings(meta_chunks=False)) if c.kind == "meta"]


def test_pages_text() -> None:
    assert pages_text(("16", "13")) == "第13、16页"
    assert pages_text(("5", "6", "7")) == "第5、6、7页"
    assert pages_text(("封二",)) == "封二"
