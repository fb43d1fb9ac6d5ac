"""Loaders: files → :class:`rag.types.Document` (text + articles with printed page labels).

``load_document`` reads one file and raises :class:`rag.errors.IngestError` with a one-line,
actionable message when it cannot; ``load_paths`` reads files and folders and collects those
errors as :class:`IngestFailure` records so one bad file never stops the rest.

Supported: ``.txt`` (page markers, or pages inferred from the issue's 目录), ``.pdf``,
``.md`` / ``.markdown`` and ``.docx``.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from rag.errors import IngestError
from rag.types import Document

from .office import load_docx, load_markdown
from .pdf import load_pdf
from .text import load_text

__all__ = ["SUPPORTED_SUFFIXES", "IngestFailure", "load_document", "load_paths"]

Loader = Callable[[Path, bytes, str, str], Document]

_LOADERS: dict[str, Loader] = {
    ".txt": load_text,
    ".text": load_text,
    ".md": load_markdown,
    ".markdown": load_markdown,
    ".docx": load_docx,
    ".pdf": load_pdf,
}
SUPPORTED_SUFFIXES: tuple[str, ...] = tuple(_LOADERS)


@dataclass(frozen=True)
class IngestFailure:
    """A file that could not be loaded, and why (a one-line message naming the file)."""

    path: str
    message: str


def load_document(path: Path) -> Document:
    """Load one file into a Document.

    Args:
        path: a ``.txt``, ``.md``, ``.docx`` or ``.pdf`` file.

    Returns:
        The Document; ``doc_id`` is the file stem, ``content_hash`` the sha256 of the bytes.

    Raises:
        IngestError: unsupported extension, unreadable, empty, undecodable, encrypted or
            corrupt file. The message names the file and what to do.
    """
    path = Path(path)
    loader = _LOADERS.get(path.suffix.lower())
    if loader is None:
        raise IngestError(
            f"{path}: unsupported file type {path.suffix or '(no extension)'!r}; "
            f"convert it to one of {', '.join(SUPPORTED_SUFFIXES)}"
        )
    try:
        raw = path.read_bytes()
    except IsADirectoryError as e:
        raise IngestError(f"{path}: is a folder; pass it to load_paths to ingest its files") from e
    except OSError as e:
        raise IngestError(
            f"{path}: cannot read the file ({e.strerror or e}); check it exists and is readable"
        ) from e
    if not raw:
        raise IngestError(f"{path}: the file is empty (0 bytes); re-export it or remove it from the folder")
    digest = hashlib.sha256(raw).hexdigest()
    return loader(path, raw, path.stem, digest)


def _expand(paths: Iterable[Path]) -> list[Path]:
    files: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            # hidden files and folders (.git, .DS_Store...) are never documents
            files.extend(
                f
                for f in sorted(p.rglob("*"))
                if f.is_file() and not any(part.startswith(".") for part in f.relative_to(p).parts)
            )
        else:
            files.append(p)
    return files


def _one_line(message: str) -> str:
    """A file name may hold line breaks; a failure message is one line whatever the name."""
    return message.replace("\r", "\\r").replace("\n", "\\n")


def load_paths(paths: list[Path]) -> tuple[list[Document], list[IngestFailure]]:
    """Load files and folders (recursively), collecting failures instead of stopping.

    Every file found in a folder is attempted, so unsupported files show up as failures the
    user can see rather than vanishing silently. Documents sharing a file stem get the first
    8 hex digits of their content hash appended to ``doc_id`` so ids stay unique and stable.

    Returns:
        (documents in path order, failures in path order)
    """
    docs: list[Document] = []
    failures: list[IngestFailure] = []
    seen: set[Path] = set()
    for f in _expand(paths):
        key = f.resolve()
        if key in seen:
            continue
        seen.add(key)
        try:
            docs.append(load_document(f))
        except IngestError as e:
            failures.append(IngestFailure(str(f), _one_line(str(e))))
        except Exception as e:  # noqa: BLE001 - a loader bug on one file must not stop the batch
            failures.append(
                IngestFailure(str(f), _one_line(f"{f}: unexpected error while loading ({type(e).__name__}: {e})"))
            )
    counts: dict[str, int] = {}
    for d in docs:
        counts[d.doc_id] = counts.get(d.doc_id, 0) + 1
    docs = [
        dataclasses.replace(d, doc_id=f"{d.doc_id}-{d.content_hash[:8]}") if counts[d.doc_id] > 1 else d
        for d in docs
    ]
    return docs, failures
