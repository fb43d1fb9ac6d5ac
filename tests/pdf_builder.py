"""A small magazine issue for the PDF tests, printed with the eval renderer.

The issue is written in the bundled .txt format (cover with teasers, 封二, 大事记, masthead and
目录, articles with bylines, a table, a continuation ``（下转第5页）``/``（上接第7页）``, 封底), so
the text loader gives the reference articles and ``eval/render_magazine_pdf.py`` prints it as
the real magazine is printed: A4, two columns, running header, footer page numbers.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]

_CITIES = ["广州", "深圳", "佛山", "东莞", "中山", "珠海", "江门", "湛江", "茂名", "肇庆", "惠州", "汕头"]
_TOPICS = ["技能培训", "集体协商", "职工书屋", "疗休养", "困难帮扶", "劳动竞赛", "安全生产", "新业态入会"]


def renderer() -> ModuleType:
    """The eval renderer, loaded from its file (``eval/`` is a script folder, not a package)."""
    spec = importlib.util.spec_from_file_location("render_magazine_pdf", ROOT / "eval" / "render_magazine_pdf.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up while the file runs
    spec.loader.exec_module(mod)
    return mod


def _para(seed: int, n: int) -> str:
    """A paragraph of ``n`` distinct sentences (numbers make every sentence unique)."""
    out = []
    for k in range(n):
        i = seed * 31 + k
        city, topic = _CITIES[i % len(_CITIES)], _TOPICS[(i // 3) % len(_TOPICS)]
        out.append(
            f"{city}市总工会围绕{topic}推出第{i + 1}项举措，覆盖企业{(i * 37) % 400 + 20}家、"
            f"职工{(i * 113) % 9000 + 500}人，相关经验已在全省推广。"
        )
    return "".join(out)


def issue_text() -> str:
    """The test issue as plain text, in the bundled magazine's format."""
    a1 = [_para(s, 4) for s in range(1, 9)]
    a2 = [_para(s, 4) for s in range(20, 25)]
    table = (
        "表1 部分行业技术工人月工资指导价位\n\n"
        "行业名称\t人才类型\t单位:元/月\t\t\n"
        "\t\t高位数\t中位数\t低位数\n"
        "电气机械制造业\t高技能人才\t8,997\t6,140\t5,038\n"
        "\t专业技术人才\t13,420\t7,472\t5,123\n"
        "金属制品业\t高技能人才\t8,884\t6,717\t4,608\n"
        "\t专业技术人才\t11,439\t7,892\t5,178\n"
    )
    english = (
        "The provincial federation publishes an English summary for international partners: "
        "representatives discussed internationalisation, occupational safety and collective "
        "bargaining arrangements with counterparts from Hong Kong and Macao, and agreed on "
        "a programme of exchanges for frontline workers in manufacturing and logistics."
    )
    parts = [
        "南粤工运\n\n2026.03\n\n广东省职工服务中心主办\n\n调研 P01\n\n推进职工服务阵地建设的实践与思考\n\n"
        "案例 P06\n\n职工书屋建设的新探索\n\n\n\n",
        "第三届职工技能大赛\n\n" + _para(50, 3) + "\n\n大赛设置十二个赛项，吸引全省选手参赛。\n\n\n\n",
        "2026年3月大事\n\n" + "\n\n".join(f"3月{d}日，" + _para(60 + d, 1) for d in (2, 5, 9, 12, 18)) + "\n\n\n\n",
        "《南粤工运》\n2026年第3期\n总第100期\n\n主 办 广东省职工服务中心\n编 辑 《南粤工运》编辑部\n\n"
        "目录\n\n01 调研\n\n- 01 推进职工服务阵地建设的实践与思考\n04 产业工人技能提升路径研究\n"
        "——基于珠三角的调查\n\n06 案例\n\n- 06 集体协商助力企业稳岗\n07 职工书屋建设的新探索\n\n",
        "推进职工服务阵地建设的实践与思考\n\n文 | 陈一鸣 李晓华\n\n" + a1[0] + "\n\n一、阵地建设\n\n"
        + "\n\n".join(a1[1:4]) + "\n\n" + english + "\n\n二、服务内容\n\n" + "\n\n".join(a1[4:]) + "\n\n",
        "产业工人技能提升路径研究\n\n——基于珠三角的调查\n\n文 | 王小明\n\n" + a2[0] + "\n\n" + a2[1] + "\n\n"
        + table + "\n" + "\n\n".join(a2[2:]) + "\n\n",
        "（上接第7页）\n\n" + _para(90, 3) + "\n\n作者单位 | 广东省职工服务中心\n\n",
        "集体协商助力企业稳岗\n\n文 | 赵六\n\n" + _para(30, 4) + "\n\n" + _para(31, 4) + "\n\n",
        "职工书屋建设的新探索\n\n文 | 孙七\n\n" + _para(40, 4) + "\n\n" + _para(41, 4) + "\n\n(下转第5页)\n\n\n\n\n\n",
        "职工书屋开放时间：每周二至周日。\n\n欢迎广大职工投稿。\n",
    ]
    return "".join(parts)


def write_issue(folder: Path) -> Path:
    path = folder / "nanyue-2026-03.txt"
    path.write_text(issue_text(), encoding="utf-8")
    return path


def render_issue(
    txt: Path,
    out: Path,
    page_labels: bool = False,
    raster: tuple[int, ...] = (),
    dpi: int = 200,
    style: str = "standard",
) -> tuple[Path, list[dict]]:
    """Print the issue to ``out``; returns (the PDF, per physical page: label and printed text).

    ``style="alt"`` is a second page design (justified columns, narrower gutter, the page
    number in a footer line ``南粤工运 2026.03 · 栏目 | 05``, no header on top); ``"bare"`` prints
    no header and no page numbers.
    """
    data, truth = renderer().render(txt, page_labels=page_labels, raster=raster, dpi=dpi, style=style)
    out.write_bytes(data)
    out.with_suffix(".truth.json").write_text(json.dumps(truth, ensure_ascii=False), encoding="utf-8")
    return out, truth
