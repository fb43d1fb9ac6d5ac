"""Ingest: page inference from the 目录, explicit pages, PDFs, office files and bad files."""

from __future__ import annotations

import io
import json
import random
import re
from pathlib import Path

import pytest
from synthetic import make_issue  # tests/ is on sys.path (pytest rootdir-less "prepend" import mode)

from rag.chunk import chunk_document
from rag.config import ChunkSettings
from rag.errors import IngestError
from rag.ingest import IngestFailure, load_document, load_paths
from rag.ingest.text import label_pages, norm_title
from rag.types import Chunk, Document

PROJECT_ROOT = Path(__file__).resolve().parent.parent
MAGAZINE = PROJECT_ROOT / "data" / "guangdong-gongyun-2025-12.txt"
DEV_QA = PROJECT_ROOT / "eval" / "dev_qa.jsonl"


@pytest.fixture(scope="module")
def magazine() -> Document:
    return load_document(MAGAZINE)


@pytest.fixture(scope="module")
def magazine_chunks(magazine: Document) -> list[Chunk]:
    return chunk_document(magazine, ChunkSettings())


def _squash(s: str) -> str:
    return re.sub(r"\s+", "", s)


def _chunk_with(chunks: list[Chunk], needle: str) -> Chunk:
    hits = [c for c in chunks if c.kind != "meta" and _squash(needle) in _squash(c.text)]
    assert hits, f"no chunk holds {needle!r}"
    return hits[0]


# --- the bundled magazine ------------------------------------------------------------------------

# (title, section, unit, printed pages) of every numbered article, in reading order
MAGAZINE_ARTICLES = [
    ("创新粤港澳工会协同机制 促进大湾区融合发展", "调研", None, ("1", "2", "3", "4")),
    ("产业工人工资增长机制的困境与突破", "调研", None, ("5", "6", "7", "8")),
    ("全国工会重点工作创新案例(广东·2025年)", "典型", None, ("9", "10", "11")),
    ("创新“工会帮就业” 建设高质量充分就业服务体系", "典型", "广州市总工会", ("9", "10", "11")),
    ("践行普惠理念 推动职工互助保障高质量发展", "典型", "佛山市顺德区总工会", ("9", "10", "11")),
    ("多措激发协商活力 破解薪酬激励集体协商难题", "典型", "江门鹤山市总工会", ("12", "13")),
    ("前中后期全链条防控化解劳动领域风险隐患", "典型", "深圳市总工会", ("14",)),
    ("有效整合粤港澳工会资源 助力大湾区高质量发展", "典型", "广东省总工会", ("15",)),
    ("攻坚克难 创新完成工会资产确权", "典型", "广州市总工会", ("16", "13")),
    ("以新业态工会代表制践行全过程人民民主的龙岗探索", "实践", None, ("17", "18", "19")),
    ("从“体力型”到“技能型”", "实践", None, ("20", "21", "22", "23")),
    ("深化“安康护航”行动 构建企业安全发展新格局", "实践", "宝钢湛江钢铁有限公司", ("24", "25", "26")),
    ("建强“思想库” 赋能“主力军”", "案例", "肇庆市总工会", ("27",)),
    ("活动惠职工 共赴“百千万”", "镜头", None, ("28",)),
]


def test_magazine_title_and_loader(magazine: Document) -> None:
    assert magazine.title == "《广东工运》2025年第12期"
    assert magazine.loader == "text-toc"
    assert magazine.doc_id == "guangdong-gongyun-2025-12"
    assert len(magazine.content_hash) == 64


def test_magazine_articles_and_printed_ranges(magazine: Document) -> None:
    numbered = [a for a in magazine.articles if a.kind == "article"]
    got = [(a.title, a.section, a.unit, a.pages) for a in numbered]
    assert got == MAGAZINE_ARTICLES
    assert all(not s.exact for a in numbered for s in a.segments if len(s.pages) > 1)


@pytest.mark.parametrize("encoding", ["utf-8-sig", "gb18030"])
def test_magazine_survives_crlf_bom_and_gb18030(tmp_path: Path, magazine: Document, encoding: str) -> None:
    path = tmp_path / "issue.txt"
    path.write_bytes(MAGAZINE.read_text(encoding="utf-8").replace("\n", "\r\n").encode(encoding))
    doc = load_document(path)
    assert doc.title == magazine.title
    assert [(a.title, a.pages, a.kind) for a in doc.articles] == [
        (a.title, a.pages, a.kind) for a in magazine.articles
    ]


def test_magazine_metadata(magazine: Document) -> None:
    by_title = {a.title: a for a in magazine.articles}
    wages = by_title["产业工人工资增长机制的困境与突破"]
    assert wages.subtitle == "基于中山市的案例分析"
    assert wages.author == "欧慧娅 黄宝仪"
    assert by_title["以新业态工会代表制践行全过程人民民主的龙岗探索"].author == "林冷滢 杨飞 黄建添 李小红"
    assert by_title["建强“思想库” 赋能“主力军”"].subtitle == "论广东产改智库的时代使命与实践路径"
    case = by_title["创新“工会帮就业” 建设高质量充分就业服务体系"]
    assert case.parent == "工会维权服务提升建设工程"
    assert by_title["多措激发协商活力 破解薪酬激励集体协商难题"].parent == "劳动关系协商协调工作"


def test_magazine_chunks_stay_inside_their_article_range(
    magazine: Document, magazine_chunks: list[Chunk]
) -> None:
    pages = {a.title: set(a.pages) for a in magazine.articles}
    for c in magazine_chunks:
        assert set(c.pages) <= pages[c.article], c.chunk_id
        if c.article_kind == "article" and c.kind != "meta":
            assert all(p.isdigit() for p in c.pages)


def test_magazine_continuation_belongs_to_page16_article(
    magazine: Document, magazine_chunks: list[Chunk]
) -> None:
    c = _chunk_with(magazine_chunks, "一宗一策突破：对权属清晰、资料完备的")
    assert c.article == "攻坚克难 创新完成工会资产确权"
    assert c.pages == ("13",)
    # ...and it is not part of the article it is printed inside
    host = next(a for a in magazine.articles if a.title.startswith("多措激发协商活力"))
    at = magazine.text.index("一宗一策突破")
    assert not any(s.start <= at < s.end for s in host.segments)
    assert host.pages == ("12", "13")
    # the page-16 text before （下转第13页） stays on page 16
    assert _chunk_with(magazine_chunks, "历经12年接续努力").pages == ("16",)


@pytest.mark.parametrize(
    ("needle", "label"),
    [
        ("广东省总工会主办", "封面"),
        ("第二届广东省职工优秀创新成果交流活动在广州黄埔知识城国际会展中心举办", "封二"),
        ("新能源汽车动力电池材料有价金属综合回收技术及应用", "封二"),
        ("12月17日上午，省总工会党组成员、副主席郑辉在广州会见挪威总工会特别顾问", "大事记"),
        ("88岁的广东省劳动模范王伟文专程将3000元现金", "大事记"),
        ("编 委 会 副 主 任 袁子雅", "目录"),
        ("通车了！我们坐上了自己建的", "封底"),
    ],
)
def test_magazine_front_and_back_matter_labels(magazine_chunks: list[Chunk], needle: str, label: str) -> None:
    c = _chunk_with(magazine_chunks, needle)
    assert c.pages == (label,)
    assert c.article_kind in ("front", "toc", "back")


def test_magazine_unnumbered_matter_never_gets_a_number(magazine: Document) -> None:
    for a in magazine.articles:
        if a.kind != "article":
            assert not any(p.isdigit() for p in a.pages), a.title


@pytest.mark.skipif(not DEV_QA.exists(), reason="no dev questions in this checkout")
def test_magazine_pages_agree_with_gold_questions(magazine_chunks: list[Chunk]) -> None:
    """The chunk holding each gold evidence quote carries pages the gold answer accepts."""
    checked = 0
    for line in DEV_QA.read_text(encoding="utf-8").splitlines():
        item = json.loads(line)
        if item["type"] == "page_lookup":  # its evidence is the 目录 line that names the page
            continue
        quotes = item["evidence"] if isinstance(item["evidence"], list) else [item["evidence"]]
        gold = {str(p) for p in item["pages"]}
        for q in quotes:
            if not q:
                continue
            key = _squash(q)[:30]
            hits = [c for c in magazine_chunks if c.kind != "meta" and key in _squash(c.text)]
            assert hits, (item["id"], q[:30])
            assert any(set(c.pages) & gold for c in hits), (item["id"], [c.pages for c in hits], gold)
            checked += 1
    assert checked >= 20


# --- the synthetic issue --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> tuple[Document, object]:
    issue = make_issue()
    path = tmp_path_factory.mktemp("syn") / "nanyue-2024-03.txt"
    path.write_text(issue.text, encoding="utf-8")
    return load_document(path), issue


def test_synthetic_issue_structure(synthetic) -> None:  # type: ignore[no-untyped-def]
    doc, issue = synthetic
    assert doc.title == issue.title
    assert doc.loader == "text-toc"
    got = [(norm_title(a.title), a.pages, a.kind, a.section, a.unit, a.parent) for a in doc.articles]
    want = [(norm_title(e.title), e.pages, e.kind, e.section, e.unit, e.parent) for e in issue.expected]
    assert got == want
    by_title = {norm_title(a.title): a for a in doc.articles}
    for e in issue.expected:
        a = by_title[norm_title(e.title)]
        if e.author:
            assert a.author == e.author
        if e.subtitle:
            assert a.subtitle == e.subtitle


def test_synthetic_continuation(synthetic) -> None:  # type: ignore[no-untyped-def]
    doc, issue = synthetic
    chunks = chunk_document(doc, ChunkSettings(size=300, overlap=40))
    c = _chunk_with(chunks, issue.continuation_text)
    assert norm_title(c.article) == norm_title(issue.continuation_owner)
    assert c.pages == (issue.continuation_page,)
    host = next(a for a in doc.articles if a.title == issue.host_title)
    at = doc.text.index(issue.continuation_text)
    assert not any(s.start <= at < s.end for s in host.segments)


def test_synthetic_other_seed_still_parses(tmp_path: Path) -> None:
    issue = make_issue(seed=123)
    path = tmp_path / "other.txt"
    path.write_text(issue.text, encoding="utf-8")
    doc = load_document(path)
    assert [a.pages for a in doc.articles] == [e.pages for e in issue.expected]


# --- explicit page markers -----------------------------------------------------------------------


def test_page_markers_give_exact_pages(tmp_path: Path) -> None:
    text = (
        "--- 第 5 页 ---\n工会工作简报\n\n文 | 张三\n\n第一段讲职工服务。这一句跨过了页面"
        "\n=== page 6 ===\n的边界继续。第二页的内容在这里。\n"
        "--- 第 7 页 ---\n第三页只有一句话。\n"
    )
    path = tmp_path / "markers.txt"
    path.write_text(text, encoding="utf-8")
    doc = load_document(path)
    assert doc.loader == "text-markers"
    assert doc.pages == ("5", "6", "7")
    assert all(s.exact for a in doc.articles for s in a.segments)
    chunks = chunk_document(doc, ChunkSettings(size=200, overlap=0, meta_chunks=False))
    spanning = _chunk_with(chunks, "这一句跨过了页面的边界继续")
    assert spanning.pages[:2] == ("5", "6")
    assert "page" not in spanning.text and "第 6 页" not in spanning.text
    assert _chunk_with(chunks, "第三页只有一句话").pages[-1] == "7"


def test_form_feeds_use_printed_footer_numbers(tmp_path: Path) -> None:
    pages = [
        "封面文字\n本刊主办单位",
        "目录在此",
        "正文第一页。\n\n1",
        "正文第二页。\n\n2",
        "正文第三页。\n\n3",
    ]
    path = tmp_path / "ff.txt"
    path.write_text("\f".join(pages), encoding="utf-8")
    doc = load_document(path)
    assert doc.pages == ("封面", "封二", "1", "2", "3")


def test_label_pages_ignores_stray_numbers() -> None:
    # "2025" on page 3 disagrees with the offset the other footers share, so it is ignored;
    # the unnumbered first page gets the number the offset implies.
    texts = ["标题页", "正文\n3", "正文\n2025", "正文\n5"]
    assert label_pages(texts) == ["2", "3", "4", "5"]


def test_plain_text_without_toc_splits_at_bylines(tmp_path: Path) -> None:
    text = (
        "第一篇文章的标题\n\n文 | 李四\n\n正文一。正文一继续。\n\n"
        "第二篇文章\n——一个副题\n\n文｜王五\n\n正文二。\n"
    )
    path = tmp_path / "plain.txt"
    path.write_text(text, encoding="utf-8")
    doc = load_document(path)
    assert doc.loader == "text"
    assert [(a.title, a.author, a.subtitle) for a in doc.articles] == [
        ("第一篇文章的标题", "李四", None),
        ("第二篇文章", "王五", "一个副题"),
    ]


def test_gb18030_text_is_decoded(tmp_path: Path) -> None:
    path = tmp_path / "gbk.txt"
    path.write_bytes("工会简报\n\n职工服务的内容。\n".encode("gb18030"))
    doc = load_document(path)
    assert "职工服务" in doc.text


# --- PDFs ----------------------------------------------------------------------------------------


def _pdf(pages: list[list[str]], footer: list[str | None] | None = None) -> bytes:
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont
    from reportlab.pdfgen import canvas

    pdfmetrics.registerFont(UnicodeCIDFont("STSong-Light"))
    buf = io.BytesIO()
    c = canvas.Canvas(buf)
    for i, lines in enumerate(pages):
        c.setFont("STSong-Light", 12)
        for k, line in enumerate(lines):
            c.drawString(72, 760 - 18 * k, line)
        if footer and footer[i]:
            c.drawString(300, 30, footer[i])
        c.showPage()
    c.save()
    return buf.getvalue()


PDF_PAGES = [
    ["南粤职工 2024年第3期"],
    ["春季职工运动会在体育中心开幕。"],
    ["职工之家建设的三个抓手", "文 | 陈一鸣", "第一页讲阵地建设。"],
    ["第二页讲服务内容。"],
    ["第三页讲经验启示。"],
]


def test_pdf_page_labels(tmp_path: Path) -> None:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(_pdf(PDF_PAGES))))
    writer.set_page_label(0, 0, prefix="封面")
    writer.set_page_label(1, 1, prefix="封二")
    writer.set_page_label(2, 4, style="/D", start=1)
    path = tmp_path / "labelled.pdf"
    with path.open("wb") as f:
        writer.write(f)
    doc = load_document(path)
    assert doc.loader == "pdf"
    assert doc.pages == ("封面", "封二", "1", "2", "3")
    chunks = chunk_document(doc, ChunkSettings(size=100, overlap=0))
    assert _chunk_with(chunks, "第二页讲服务内容").pages == ("2",)
    assert _chunk_with(chunks, "春季职工运动会").pages == ("封二",)
    assert all(c.page_exact for c in chunks)


def test_pdf_labels_from_footers(tmp_path: Path) -> None:
    path = tmp_path / "footers.pdf"
    path.write_bytes(_pdf(PDF_PAGES, footer=[None, None, "1", "2", "3"]))
    doc = load_document(path)
    assert doc.pages == ("封面", "封二", "1", "2", "3")
    chunks = chunk_document(doc, ChunkSettings(size=100, overlap=0))
    assert _chunk_with(chunks, "第三页讲经验启示").pages == ("3",)


def test_pdf_without_labels_uses_physical_pages(tmp_path: Path) -> None:
    path = tmp_path / "plain.pdf"
    path.write_bytes(_pdf(PDF_PAGES))
    assert load_document(path).pages == ("1", "2", "3", "4", "5")


# --- Markdown and Word ---------------------------------------------------------------------------


def test_markdown_headings_make_articles_and_html_stays_text(tmp_path: Path) -> None:
    md = (
        "# 工会工作手册\n\n前言部分。\n\n## 第一章 入会\n\n文 | 赵六\n\n"
        "入会流程<script>alert(1)</script>很简单。\n\n```\n# not a heading\n```\n\n"
        "## 第二章 服务\n\n<b>服务</b>内容。\n"
    )
    path = tmp_path / "manual.md"
    path.write_text(md, encoding="utf-8")
    doc = load_document(path)
    assert doc.loader == "markdown"
    assert doc.title == "工会工作手册"
    assert [a.title for a in doc.articles] == ["工会工作手册", "第一章 入会", "第二章 服务"]
    assert doc.articles[1].author == "赵六"
    assert "<script>alert(1)</script>" in doc.text
    chunks = chunk_document(doc, ChunkSettings(size=200, overlap=0))
    assert "<b>服务</b>内容。" in _chunk_with(chunks, "<b>服务</b>").text


def _docx(path: Path) -> None:
    import docx
    from docx.enum.text import WD_BREAK

    d = docx.Document()
    d.add_heading("工会年报", level=0)
    d.add_heading("第一部分 组织建设", level=1)
    d.add_paragraph("全年新建基层工会120家。")
    d.add_paragraph("发展会员3000人。").add_run().add_break(WD_BREAK.PAGE)
    d.add_heading("第二部分 经费", level=1)
    table = d.add_table(rows=3, cols=2)
    for r, (a, b) in enumerate([("项目", "金额"), ("培训", "10"), ("帮扶", "20")]):
        table.cell(r, 0).text, table.cell(r, 1).text = a, b
    d.add_paragraph("经费使用规范。")
    d.save(str(path))


def test_docx_headings_pages_and_tables(tmp_path: Path) -> None:
    path = tmp_path / "report.docx"
    _docx(path)
    doc = load_document(path)
    assert doc.loader == "docx"
    assert doc.title == "工会年报"
    assert [a.title for a in doc.articles] == ["第一部分 组织建设", "第二部分 经费"]
    assert doc.articles[0].pages == ("1",)
    assert doc.articles[1].pages == ("2",)
    chunks = chunk_document(doc, ChunkSettings(size=200, overlap=0))
    table = [c for c in chunks if c.kind == "table"]
    assert table and "项目\t金额" in table[0].text and "帮扶\t20" in table[0].text


# --- bad files -----------------------------------------------------------------------------------


def _encrypted_pdf() -> bytes:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(_pdf(PDF_PAGES))))
    writer.encrypt(user_password="secret", owner_password="owner")
    buf = io.BytesIO()
    writer.write(buf)
    return buf.getvalue()


def _bad_files(folder: Path) -> dict[str, str]:
    """Write bad files; return {file name: a word its error message must contain}."""
    (folder / "empty.txt").write_bytes(b"")
    (folder / "empty.pdf").write_bytes(b"")
    (folder / "blank.md").write_text("  \n\n", encoding="utf-8")
    (folder / "corrupt.pdf").write_bytes(b"%PDF-1.7\n" + random.Random(1).randbytes(2000))
    (folder / "locked.pdf").write_bytes(_encrypted_pdf())
    (folder / "sheet.xls").write_bytes(b"\xd0\xcf\x11\xe0 not supported")
    (folder / "junk.txt").write_bytes(random.Random(2).randbytes(4096))
    (folder / "broken.docx").write_bytes(b"PK\x03\x04 not really a zip")
    return {
        "empty.txt": "empty",
        "empty.pdf": "empty",
        "blank.md": "empty",
        "corrupt.pdf": "PDF",
        "locked.pdf": "password",
        "sheet.xls": "unsupported",
        "junk.txt": "binary",
        "broken.docx": "Word",
    }


def test_bad_files_raise_ingest_error_naming_the_file(tmp_path: Path) -> None:
    for name, word in _bad_files(tmp_path).items():
        with pytest.raises(IngestError) as err:
            load_document(tmp_path / name)
        msg = str(err.value)
        assert name in msg and word.lower() in msg.lower(), msg
        assert "\n" not in msg


def test_folder_ingest_survives_bad_files(tmp_path: Path) -> None:
    bad = _bad_files(tmp_path)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "notes.md").write_text("# 笔记\n\n内容。\n", encoding="utf-8")
    (tmp_path / "good.txt").write_text("简报\n\n内容。\n", encoding="utf-8")
    (tmp_path / "labelled.pdf").write_bytes(_pdf(PDF_PAGES))
    _docx(tmp_path / "report.docx")
    (tmp_path / ".hidden.txt").write_text("ignored", encoding="utf-8")
    docs, failures = load_paths([tmp_path])
    assert sorted(d.doc_id for d in docs) == ["good", "labelled", "notes", "report"]
    assert all(isinstance(f, IngestFailure) for f in failures)
    assert sorted(Path(f.path).name for f in failures) == sorted(bad)
    assert all(Path(f.path).name in f.message for f in failures)


def test_duplicate_stems_get_distinct_ids(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "issue.txt").write_text("甲\n\n内容一。\n", encoding="utf-8")
    (tmp_path / "b" / "issue.md").write_text("# 乙\n\n内容二。\n", encoding="utf-8")
    docs, failures = load_paths([tmp_path])
    assert not failures
    ids = [d.doc_id for d in docs]
    assert len(set(ids)) == 2 and all(i.startswith("issue-") for i in ids)


def test_missing_file_is_an_ingest_error(tmp_path: Path) -> None:
    with pytest.raises(IngestError, match="nope.txt"):
        load_document(tmp_path / "nope.txt")
