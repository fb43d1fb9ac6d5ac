"""The `rag eval` command (registered in rag/cli.py with ``app.command("eval")(eval_cmd)``).

Exit codes as in rag/cli.py: 2 for a user error (bad file, bad bound, missing index),
1 when the run finished but a ``--min``/``--max`` bound failed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from rag.config import Settings
from rag.errors import RagError


def _fail(message: str, code: int = 2) -> None:
    sys.stderr.write(f"错误：{message}\n")
    raise typer.Exit(code)


def eval_cmd(
    qa: Annotated[Path, typer.Argument(help="金标准题目 JSONL（eval/dev_qa.jsonl 的格式）")],
    out: Annotated[Path, typer.Option("--out", help="结果文件夹：metrics.json、results.jsonl、report.md、per_type.png")],
    backend: Annotated[str | None, typer.Option(help="extractive | llm | openai")] = None,
    k: Annotated[int | None, typer.Option("--k", help="给回答的检索段落数")] = None,
    min_: Annotated[
        list[str] | None,
        typer.Option("--min", help="下限，如 hit@5=0.9（可重复）；未达到则退出码为 1"),
    ] = None,
    max_: Annotated[
        list[str] | None,
        typer.Option("--max", help="上限，如 false_refusal_rate=0.1 或 p95_ms=800（可重复）"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="输出 JSON（总体、按题型、未达到的界限）")] = False,
) -> None:
    """Score the bot on a gold QA file: retrieval hit@k/MRR, page and answer accuracy, refusals, latency."""
    from tqdm import tqdm

    from rag.evaluate import METRICS, fmt, parse_bounds, run_eval
    from rag.runtime import load_runtime

    s = Settings()
    try:
        mins = parse_bounds(min_ or [])
        maxs = parse_bounds(max_ or [])
        sys.stderr.write(f"加载向量模型 {s.embed.model} 和索引 …\n")
        rt = load_runtime(s)
        bar = tqdm(desc="评测", unit="题", file=sys.stderr)

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.n = done
            bar.refresh()

        summary = run_eval(rt, qa, out, backend=backend, k=k, progress=progress)
        bar.close()
    except RagError as e:
        _fail(str(e))
    failed = summary.check(mins, maxs)
    if as_json:
        sys.stdout.write(
            json.dumps(
                {"overall": summary.overall, "by_type": summary.by_type, "failed_bounds": failed, "files": summary.files},
                ensure_ascii=False,
            )
            + "\n"
        )
    else:
        cols = [c for c in METRICS if c != "evidence_all@5"]
        width = max(len(t) for t in [*summary.by_type, "overall"]) + 2
        widths = [max(9, len(c) + 2) for c in cols]
        print("type".ljust(width) + "n".rjust(4) + "".join(c.rjust(w) for c, w in zip(cols, widths, strict=True)))
        for name, m in [*summary.by_type.items(), ("overall", summary.overall)]:
            cells = "".join(fmt(m.get(c), c).rjust(w) for c, w in zip(cols, widths, strict=True))
            print(name.ljust(width) + str(m["n"]).rjust(4) + cells)
        print(f"结果已写入 {out}（report.md 列出未通过的题目）")
    for f in failed:
        sys.stderr.write(f"未达到界限：{f}\n")
    if failed:
        raise typer.Exit(1)
