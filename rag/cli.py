"""The `rag` command: a thin shell over the pipeline functions.

Library code raises RagError subclasses; only this module turns them into one-line
messages and exit codes (2 for a user error, 1 for a failed check such as `eval --min`).
Any ``OSError`` a command meets (permissions, a read-only or full disk, a file where a folder
should be) is a user error too: one `错误：…` line naming the path, exit 2, never a traceback.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

# Offline by default: nothing may reach the model hub, here or in an air-gapped intranet.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# OpenMP threads that spin-wait collapse on a busy 2-core box (a query took 2 s instead of 40 ms);
# passive waiting must be set before torch/faiss load.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import typer
from typer.core import TyperGroup

from rag.config import Settings
from rag.errors import RagError, storage_error

if TYPE_CHECKING:
    from rag.types import Answer


class OneLineErrors(TyperGroup):
    """Runs every command (sub-commands included) so that a RagError or an OSError it did not
    handle itself becomes one `错误：…` line and exit code 2."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            raise  # stdout closed by `| head`: not the user's error to report
        except RagError as e:
            _fail(str(e))
        except OSError as e:
            _fail(str(storage_error(e, "读写", e.filename or "文件", "请检查该路径的权限与磁盘空间后重试。")))


app = typer.Typer(
    cls=OneLineErrors, add_completion=False, no_args_is_help=True, help="《广东工运》问答：索引、检索、回答、评测与服务。"
)
index_app = typer.Typer(no_args_is_help=True, help="构建和维护索引。")
feedback_app = typer.Typer(no_args_is_help=True, help="用户反馈。")
app.add_typer(index_app, name="index")
app.add_typer(feedback_app, name="feedback")

JsonOpt = Annotated[bool, typer.Option("--json", help="输出 JSON（每行一个对象）")]


def _emit(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")


def _fail(message: str, code: int = 2) -> None:
    sys.stderr.write(f"错误：{message}\n")
    raise typer.Exit(code)


def _settings() -> Settings:
    return Settings()


class _Bar:
    """A tqdm bar on stderr driven by the index's progress callback."""

    def __init__(self, desc: str) -> None:
        self.desc = desc
        self.bar = None
        self.stage: str | None = None

    def __call__(self, stage: str, done: int, total: int) -> None:
        from tqdm import tqdm

        if _INTERRUPTED:
            raise KeyboardInterrupt

        if self.bar is not None and stage != self.stage:  # a new stage (chunks, then sentences)
            self.bar.close()
            self.bar = None
        if self.bar is None:
            desc = self.desc if stage == "embed" else f"{self.desc}（句向量）"
            unit = "块" if stage == "embed" else "句"
            self.bar = tqdm(total=total, desc=desc, unit=unit, file=sys.stderr)
            self.stage = stage
        self.bar.n = done
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _load_embedder(settings: Settings):
    from rag.embed import load_embedder

    sys.stderr.write(f"加载向量模型 {settings.embed.model} …\n")
    return load_embedder(settings.embed, for_questions=False)  # index commands embed passages only


def _report_build(report, as_json: bool) -> None:
    if as_json:
        _emit(report.to_dict())
        return
    for f in report.failures:
        sys.stderr.write(f"跳过 {f.path}：{f.message}\n")
    if not report.changed:
        print(f"索引已是最新（{report.total_chunks} 块，{len(report.documents)} 个文档，{report.generation}）。")
    else:
        print(
            f"索引已更新：{report.generation}；新嵌入 {report.embedded_chunks} 块，复用 {report.reused_chunks} 块，"
            f"共 {report.total_chunks} 块；文档：{', '.join(report.documents)}"
            + (f"；移除：{', '.join(report.removed)}" if report.removed else "")
            + f"（{report.seconds:.1f} 秒）"
        )


@index_app.command("build")
def index_build(
    paths: Annotated[list[Path] | None, typer.Argument(help="文件或文件夹；默认 data/")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Build the index for PATHS (default data/); a no-op when nothing changed."""
    from rag.index import build_index, check_writable

    s = _settings()
    try:
        check_writable(s.index.dir)  # in a second, not after the model has loaded
        embedder = _load_embedder(s)
        bar = _Bar("嵌入")
        try:
            report = build_index(paths or [s.data_dir], s, embedder, progress=bar)
        finally:
            bar.close()  # before an error line, not after it
    except RagError as e:
        _fail(str(e))
    _report_build(report, as_json)


@index_app.command("add")
def index_add(paths: Annotated[list[Path], typer.Argument(help="要加入的文件或文件夹")], as_json: JsonOpt = False) -> None:
    """Add or replace documents without re-embedding the ones already indexed."""
    from rag.index import add_documents, check_writable

    s = _settings()
    try:
        check_writable(s.index.dir)
        embedder = _load_embedder(s)
        bar = _Bar("嵌入")
        try:
            report = add_documents(paths, s, embedder, progress=bar)
        finally:
            bar.close()  # before an error line, not after it
    except RagError as e:
        _fail(str(e))
    _report_build(report, as_json)


@index_app.command("remove")
def index_remove(doc: Annotated[str, typer.Argument(help="文档 id（见 rag index status）")], as_json: JsonOpt = False) -> None:
    """Remove one document from the index."""
    from rag.index import check_writable, read_manifest, remove_document

    s = _settings()
    try:
        manifest = read_manifest(s.index.dir)
        if manifest is not None and doc in manifest.get("documents", {}):
            check_writable(s.index.dir)
        report = remove_document(doc, s, _load_embedder(s))
    except RagError as e:
        _fail(str(e))
    _report_build(report, as_json)


@index_app.command("restore")
def index_restore(
    source: Annotated[Path, typer.Argument(help="备份：索引代文件夹（含 manifest.json）、索引文件夹，或其 .tar/.tar.gz")],
    as_json: JsonOpt = False,
) -> None:
    """Make a backed-up index live again, as a new generation verified file by file (no model needed).

    A running server switches to it as after a rebuild. Back up the live generation with
    `tar czf index-backup.tgz -C index "$(cat index/CURRENT)"`; never copy files into index/gen-*.
    """
    from rag.index import restore_generation

    s = _settings()
    try:
        report = restore_generation(source, s)
    except RagError as e:
        _fail(str(e))
    if as_json:
        _emit(report.to_dict())
        return
    print(
        f"已从备份恢复为新索引 {report.generation}：{report.total_chunks} 块，文档：{', '.join(report.documents)}"
        f"（{report.seconds:.1f} 秒）；运行中的服务会自动切换。"
    )


@index_app.command("status")
def index_status(as_json: JsonOpt = False) -> None:
    """Show the live index: model, chunk count, documents."""
    from rag.index import read_manifest

    s = _settings()
    m = read_manifest(s.index.dir)
    if m is None:
        _fail(f"索引不存在（{s.index.dir}）；请运行 `rag index build data/`。")
    if as_json:
        _emit(m)
        return
    print(f"模型：{m['model']['name']}（维度 {m['model']['dim']}）  类型：{m['index_type']}  块数：{m['chunk_count']}")
    print(f"构建时间：{m['built_at']}")
    for doc_id, d in m["documents"].items():
        print(f"  {doc_id}: {d['title']}  {d['chunks']} 块  {d['path']}")
        for w in d.get("warnings", ()):
            print(f"    ⚠ {w}")


@app.command("chunks")
def chunks_cmd(
    paths: Annotated[list[Path] | None, typer.Argument(help="文件或文件夹；默认 data/")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Print the chunks that indexing would make (one JSON object per chunk with --json)."""
    from rag.answer.citations import format_pages
    from rag.chunk import chunk_document
    from rag.ingest import load_paths

    s = _settings()
    docs, failures = load_paths(paths or [s.data_dir])
    for f in failures:
        sys.stderr.write(f"跳过 {f.path}：{f.message}\n")
    for doc in docs:
        for c in chunk_document(doc, s.chunk):
            if as_json:
                _emit(c.to_dict())
            else:
                print(f"[{c.chunk_id}] {c.article} {format_pages(c.pages)} ({c.kind}, {len(c.text)} 字)")
                print("  " + c.text[:80].replace("\n", " ") + ("…" if len(c.text) > 80 else ""))
    if not docs:
        raise typer.Exit(2)


def _filters(doc: str | None, article: str | None, section: str | None, page: str | None):
    from rag.retrieve import Filters

    return Filters(doc=doc, article=article, section=section, page=page)


@app.command("search")
def search_cmd(
    question: str,
    k: Annotated[int, typer.Option("--k", help="返回段落数")] = 5,
    doc: Annotated[str | None, typer.Option(help="只在该文档中检索")] = None,
    article: Annotated[str | None, typer.Option(help="只在标题含此文字的文章中检索")] = None,
    section: Annotated[str | None, typer.Option(help="栏目，如 调研、典型")] = None,
    page: Annotated[str | None, typer.Option(help="印刷页码，如 5 或 封二")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Print the ranked passages for QUESTION with scores, article and page labels."""
    from rag.answer import clean_question
    from rag.answer.citations import format_pages
    from rag.retrieve import search
    from rag.runtime import load_runtime

    s = _settings()
    try:
        q = clean_question(question, s.serve.max_question_chars)
        if not 1 <= k <= s.serve.max_k:
            raise RagError(f"--k 必须在 1 到 {s.serve.max_k} 之间。")
        rt = load_runtime(s, for_questions=False)  # one question: the ONNX encoder would not pay off
        timings: dict[str, float] = {}
        hits = search(rt.index, rt.embedder, q, s.retrieve, k=k, filters=_filters(doc, article, section, page), timings=timings)
    except RagError as e:
        _fail(str(e))
    for h in hits:
        c = h.chunk
        if as_json:
            _emit(
                {
                    "rank": h.rank,
                    "score": round(h.score, 6),
                    "dense_score": h.dense_score,
                    "bm25_score": h.bm25_score,
                    **c.to_dict(),
                }
            )
        else:
            print(f"{h.rank}. [{h.score:.4f}] 《{c.article}》 {format_pages(c.pages)}  ({c.chunk_id})")
            print("   " + c.text[:120].replace("\n", " "))
    if not as_json:
        sys.stderr.write("耗时(ms)：" + ", ".join(f"{k_}={v:.1f}" for k_, v in timings.items()) + "\n")


@app.command("ask")
def ask_cmd(
    question: str,
    backend: Annotated[str | None, typer.Option(help="extractive | llm | openai")] = None,
    k: Annotated[int | None, typer.Option("--k", help="检索段落数")] = None,
    doc: Annotated[str | None, typer.Option(help="只在该文档中检索")] = None,
    article: Annotated[str | None, typer.Option(help="只在标题含此文字的文章中检索")] = None,
    section: Annotated[str | None, typer.Option(help="栏目")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Answer QUESTION with page citations (or say the magazine does not cover it)."""
    from rag.answer import ask
    from rag.runtime import load_runtime

    s = _settings()

    def show_draft(draft: Answer) -> None:
        # The local model reads its passages for 10-20 s on 2 cores; the cited sentences go to
        # stderr meanwhile, and stdout gets only the checked answer.
        sys.stderr.write(f"原文摘录（生成模型正在撰写回答，请稍候）：\n{draft.answer}\n\n")
        sys.stderr.flush()

    try:
        rt = load_runtime(s, for_questions=False)  # one question: the ONNX encoder would not pay off
        result = ask(
            rt,
            question,
            backend=backend,
            k=k,
            filters=_filters(doc, article, section, None),
            on_draft=None if as_json else show_draft,
        )
    except RagError as e:
        _fail(str(e))
    if as_json:
        _emit(result.to_dict())
    else:
        print(result.answer)
        if result.note:
            print(f"（{result.note}）")


@app.command("batch")
def batch_cmd(
    questions: Annotated[Path, typer.Argument(help="JSONL：每行至少有 id 和 question")],
    out: Annotated[Path, typer.Option("--out", help="输出 JSONL")],
    backend: Annotated[str | None, typer.Option(help="extractive | llm | openai")] = None,
    k: Annotated[int | None, typer.Option("--k")] = None,
) -> None:
    """Answer every line of QUESTIONS into OUT, in order; a bad line gets an `error` field."""
    from tqdm import tqdm

    from rag.answer import ask
    from rag.runtime import load_runtime

    s = _settings()
    try:
        lines = questions.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        _fail(f"无法读取 {questions}：{e}")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fh = out.open("w", encoding="utf-8")  # an unwritable --out fails now, not after loading
    except OSError as e:
        _fail(str(storage_error(e, "写入", out, "请换一个可写的 --out 路径。")))
    try:
        rt = load_runtime(s)
    except RagError as e:
        fh.close()
        _fail(str(e))
    failed = 0
    with fh:
        for n, line in enumerate(tqdm(lines, desc="回答", unit="题", file=sys.stderr), start=1):
            if not line.strip():
                continue
            row: dict[str, Any]
            qid: Any = None
            try:
                item = json.loads(line)
                if not isinstance(item, dict):
                    raise RagError("每行必须是 JSON 对象")
                qid = item.get("id", f"line{n}")
                row = ask(rt, item.get("question"), backend=backend, k=k, qid=str(qid)).to_dict()
            except (RagError, json.JSONDecodeError) as e:
                failed += 1
                row = {"id": qid if qid is not None else f"line{n}", "question": None, "error": str(e)}
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            fh.flush()
    sys.stderr.write(f"完成：{len(lines)} 行，其中 {failed} 行出错，结果在 {out}\n")


@app.command("serve")
def serve_cmd(
    host: Annotated[str | None, typer.Option(help="监听地址")] = None,
    port: Annotated[int | None, typer.Option(help="端口")] = None,
    root_path: Annotated[str | None, typer.Option("--root-path", help="反向代理下的子路径，如 /qa")] = None,
) -> None:
    """Serve the chat UI, /api/* and /v1/chat/completions."""
    from rag.serve import run_server

    s = _settings()
    if host:
        s.serve.host = host
    if port:
        s.serve.port = port
    if root_path is not None:
        s.serve.root_path = root_path
    try:
        run_server(s)
    except RagError as e:
        _fail(str(e))


def _register_eval() -> None:
    from rag.eval_cli import eval_cmd

    app.command("eval")(eval_cmd)


_register_eval()


@feedback_app.command("export")
def feedback_export(
    out: Annotated[Path | None, typer.Option("--out", help="输出 JSONL 文件；默认标准输出")] = None,
) -> None:
    """Export stored thumbs up/down feedback as JSONL (for eval/)."""
    from rag.feedback import export_jsonl

    s = _settings()
    try:
        n = export_jsonl(s.serve.feedback_db, out or sys.stdout)
    except RagError as e:
        _fail(str(e))
    sys.stderr.write(f"导出 {n} 条反馈。\n")


_INTERRUPTED = False


def _on_sigint(signum, frame) -> None:
    # Remembered as well as raised: a KeyboardInterrupt raised inside a finalizer (__del__) is
    # swallowed by Python, so the progress callback raises it again at the next step.
    global _INTERRUPTED
    _INTERRUPTED = True
    raise KeyboardInterrupt


def main() -> None:
    """Entry point of the `rag` console script."""
    import signal

    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _on_sigint)
    try:
        app()  # typer turns KeyboardInterrupt into exit code 130 itself
    except SystemExit as e:
        if e.code == 130:
            sys.stderr.write("已中断；之前的索引不受影响。\n")
            sys.stderr.flush()
            sys.stdout.flush()
            # Leave now: interpreter shutdown still runs finalizers (torch, tokenizer threads,
            # half-closed progress bars), and a KeyboardInterrupt surfacing there made Python
            # die by the signal (exit -2) instead of reporting 130. Nothing is left to save: the
            # new generation was not switched in, and the next build removes its leftovers.
            os._exit(130)
        raise


if __name__ == "__main__":
    main()
