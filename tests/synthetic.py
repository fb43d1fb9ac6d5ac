"""A synthetic magazine issue laid out like the bundled one, but different in every detail.

Different masthead, sections, titles, page numbers, collection, units, continuation pair and
front/back matter, so a test on it shows that the TOC inference follows the layout rather
than the one real issue. ``make_issue`` returns the text and what a correct loader must find.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

_SUBJECTS = [
    "市总工会",
    "基层工会",
    "企业工会",
    "产业工会",
    "职工代表",
    "工会干部",
    "劳模工匠",
    "新就业形态劳动者",
]
_VERBS = ["推动", "完善", "探索", "建立", "落实", "深化", "拓展", "健全"]
_OBJECTS = [
    "职工服务阵地建设",
    "集体协商制度",
    "技能培训体系",
    "困难职工帮扶机制",
    "劳动争议调解",
    "安全生产监督",
    "职工文化活动",
    "民主管理制度",
]
_TAILS = ["取得明显成效", "受到职工欢迎", "形成了可复制的经验", "覆盖职工2.3万人次", "带动企业同步跟进"]


@dataclass(frozen=True)
class Expected:
    """What the loader must produce for one article of the synthetic issue."""

    title: str
    pages: tuple[str, ...]
    kind: str = "article"
    section: str | None = None
    unit: str | None = None
    author: str | None = None
    subtitle: str | None = None
    parent: str | None = None


@dataclass
class SyntheticIssue:
    text: str
    title: str
    expected: list[Expected]
    continuation_text: str  # a sentence that is printed on the jump page
    continuation_page: str
    continuation_owner: str  # title of the article the continuation belongs to
    host_title: str  # title of the article the continuation is printed inside
    table_caption: str
    table_header: str
    table_rows: list[str] = field(default_factory=list)


def _sentence(rng: random.Random, k: int) -> str:
    return (
        f"{rng.choice(_SUBJECTS)}{rng.choice(_VERBS)}{rng.choice(_OBJECTS)}，"
        f"第{k}项举措{rng.choice(_TAILS)}。"
    )


def _paragraphs(rng: random.Random, chars: int) -> list[str]:
    """Body paragraphs of roughly ``chars`` characters, each a few full sentences."""
    out: list[str] = []
    total, k = 0, 1
    while total < chars:
        para = "".join(_sentence(rng, k + i) for i in range(rng.randint(3, 6)))
        k += 6
        out.append(para)
        total += len(para)
    return out


PER_PAGE = 900  # characters of body text per printed page in the synthetic issue


def make_issue(seed: int = 7) -> SyntheticIssue:
    """Build the synthetic issue 《南粤职工》2024年第3期 and its expected structure."""
    rng = random.Random(seed)
    parts: list[str] = []

    def add(*blocks: str) -> None:
        parts.extend(blocks)

    # --- cover: teasers "栏目 Pnn" + titles --------------------------------------------------
    add("南粤职工", "2024.03", "广东省职工发展研究会主办", "内部交流资料")
    add("要闻 P03", "职工之家建设的\n三个抓手", "观察 P06", "“工会+法院”诉调对接")
    # --- inside cover ----------------------------------------------------------------------
    add(
        "\n\n春季职工运动会", "3月2日，全市春季职工运动会在体育中心开幕，来自86家单位的2000余名职工参加比赛。"
    )
    add("获奖单位", "某某电力公司\n某某港务集团")
    # --- 大事记 ------------------------------------------------------------------------------
    add("\n\n2024年3月大事记")
    add(
        "3月4日，研究会召开年度工作会议，部署全年重点任务。",
        "3月12日，职工法律服务月活动启动，现场解答咨询300余人次。",
    )
    add("3月20日，举办基层工会主席培训班，120名学员参训。")
    # --- masthead + TOC --------------------------------------------------------------------
    add(
        "\n\n《南粤职工》\n2024年第3期\n总第88期\n\n主 办 广东省职工发展研究会\n地 址 广州市某路1号\n电 话 020-12345678"
    )
    toc = [
        "目 录",
        "03 要闻",
        "- 03 职工之家建设的三个抓手\n——来自珠三角的调查",
        "06 “工会+法院”诉调对接：经验与启示",
        "09 基层",
        "- 09 2024年度基层工会创新实践案例",
        "09 职工服务类",
        "11 民主管理类",
        "13 观察",
        "- 13 平台用工中的劳动权益保障",
        "15 视窗",
        "- 15 春日里的劳动者 镜头下的坚守",
    ]
    add(*toc)

    expected: list[Expected] = [
        Expected("封面", ("封面",), "front"),
        Expected("封二", ("封二",), "front"),
        Expected("2024年3月大事记", ("大事记",), "front"),
        Expected("目录", ("目录",), "toc"),
    ]

    def body(pages: int, shrink: int = 0) -> list[str]:
        return _paragraphs(rng, PER_PAGE * pages - shrink)

    # --- 03-05 要闻 ----------------------------------------------------------------------------
    add("职工之家建设的\n三个抓手", "——来自珠三角的调查", "文 | 陈一鸣 刘晓")
    paras = body(3)
    table_caption = "表2 三市职工之家建设情况"
    table_header = "城市\t阵地数\t覆盖职工"
    table_rows = [f"城市{i}\t{10 + i * 3}\t{1000 + i * 137}" for i in range(1, 16)]
    add(*paras[:2], "\n\n", table_caption, "\n".join([table_header, *table_rows]), *paras[2:])
    expected.append(
        Expected(
            "职工之家建设的三个抓手",
            ("3", "4", "5"),
            section="要闻",
            author="陈一鸣 刘晓",
            subtitle="来自珠三角的调查",
        )
    )
    # --- 06-08 要闻: ends with a jump to page 14 ----------------------------------------------
    add("“工会+法院”诉调对接: 经验与启示", "文｜周敏")
    paras = body(3, shrink=250)
    add(*paras, "（下转第14页）", "\n\n\n图为调解现场。资料图片")
    owner = "“工会+法院”诉调对接：经验与启示"
    expected.append(Expected(owner, ("6", "7", "8", "14"), section="要闻", author="周敏"))
    # --- 09-12 基层: a collection with two sub-entries and three cases -------------------------
    collection = "2024年度基层工会创新实践案例"
    add("2024年度基层工会\n创新实践案例", "本刊从各地报送的案例中选取三个，供各级工会参考。")
    expected.append(Expected(collection, ("9", "10"), section="基层"))
    add("职工服务类", "深圳市宝安区总工会", "打造十五分钟职工服务圈")
    add(*body(1))
    expected.append(
        Expected(
            "打造十五分钟职工服务圈",
            ("9", "10"),
            section="基层",
            unit="深圳市宝安区总工会",
            parent="职工服务类",
        )
    )
    add("韶关市总工会", "困难职工帮扶“一户一策”")
    add(*body(1))
    expected.append(
        Expected(
            "困难职工帮扶“一户一策”", ("9", "10"), section="基层", unit="韶关市总工会", parent="职工服务类"
        )
    )
    add("民主管理类", "茂名石化分公司工会", "职代会提案“闭环”办理")
    add(*body(2))
    expected.append(
        Expected(
            "职代会提案“闭环”办理",
            ("11", "12"),
            section="基层",
            unit="茂名石化分公司工会",
            parent="民主管理类",
        )
    )
    # --- 13-14 观察: hosts the continuation at its end -----------------------------------------
    host = "平台用工中的劳动权益保障"
    add(host, "文 | 黄丽", *body(2, shrink=250), "作者单位 | 某某大学法学院")
    continuation = "调解员回访当事双方，确认协议已全部履行完毕。"
    add("（上接第8页）", continuation + "这一做法已在全省推广。")
    expected.append(Expected(host, ("13", "14"), section="观察", author="黄丽", unit="某某大学法学院"))
    # --- 15 视窗: a photo page, then the back cover ---------------------------------------------
    # a photo page: the two halves of its TOC title are printed apart, around the photos
    photo_page = body(1)
    add("春日里的劳动者", *photo_page[:2], "镜头下的坚守", *photo_page[2:])
    expected.append(Expected("春日里的劳动者 镜头下的坚守", ("15",), section="视窗"))
    add("\n\n\n\n", "封底摄影作品：晨光中的港口。摄影 | 李明")
    expected.append(Expected("封底", ("封底",), "back"))

    text = "\n\n".join(parts) + "\n"
    return SyntheticIssue(
        text=text,
        title="《南粤职工》2024年第3期",
        expected=expected,
        continuation_text=continuation,
        continuation_page="14",
        continuation_owner=owner,
        host_title=host,
        table_caption=table_caption,
        table_header=table_header,
        table_rows=table_rows,
    )
