"""Questions embedded with ONNX Runtime: the same e5 weights, about twice as fast for one short text.

A question is one text of 10-40 tokens. On the 2-core hosts torch spends ~40 ms on it, most of
it per-operator overhead rather than arithmetic; ONNX Runtime runs the same graph in ~17 ms
(`bench/results/latency.md`). Passages keep going through sentence-transformers (batched by
length, where torch is efficient), so the index and its fingerprint do not change.

The transformer is exported once from the loaded torch model into ``cache_dir/onnx/`` (named by
the model fingerprint; written to a temporary file and renamed, so concurrent starts are safe),
and every load checks that the ONNX vectors equal torch's on probe questions before using them:
a mismatch or a failed export logs one warning and leaves torch in charge.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

# Probe questions for the load-time check: Simplified, Traditional, English, digits, spaces
# (sentence-transformers keeps them as tokens), one long.
PROBES = (
    " 工会 会员\n",
    "龙岗开了几场新业态工会代表专场议事会？",
    "湛江鋼鐵安康盃競賽取得了什麼成效？",
    "Who is the editor-in-chief of the magazine?",
    "2024年中山市新一代信息技术行业从业人员工资同比增长21.1%，" * 4,
)
MIN_PROBE_COSINE = 0.99999  # float32 round-off only; anything lower is a different model


def supports(model: Any) -> bool:
    """Whether a SentenceTransformer is a plain transformer + mean pooling (+ normalise), the
    only shape this encoder reproduces."""
    mods = list(model)
    if not mods or not hasattr(mods[0], "auto_model"):
        return False
    if [type(m).__name__ for m in mods] not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]):
        return False
    config = mods[1].get_config_dict()
    mode = config.get("pooling_mode")  # sentence-transformers 5: one name; before: one flag per mode
    if mode is None:
        modes = [k for k, v in config.items() if k.startswith("pooling_mode_") and v]
        return modes == ["pooling_mode_mean_tokens"]
    return mode == "mean" or mode == ["mean"]


def _hidden_state_module(auto_model: Any) -> Any:
    """The transformer from its word vectors on, returning the last hidden state: what the export
    traces. The word-vector table (250k x 384, 80 % of e5-small's weights) stays out of the ONNX
    file: its rows are looked up in torch's own tensor, shared, so the encoder adds ~90 MB, not
    ~470 MB, and loads in a fraction of the time."""
    import torch

    class HiddenState(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, inputs_embeds: Any, attention_mask: Any) -> Any:
            return self.inner(inputs_embeds=inputs_embeds, attention_mask=attention_mask).last_hidden_state

    # eval() before the export: the exporter restores the wrapper's own mode afterwards, and a
    # new module's default (training) would switch dropout on in the shared model.
    return HiddenState(auto_model).eval()


def export(model: Any, path: Path) -> Path:
    """Export ``model``'s transformer to ``path`` (ONNX, dynamic batch and length)."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    # Two texts of different lengths: the traced graph must take the padding mask as data, not
    # freeze the all-ones shortcut a single unpadded text would take.
    sample = model.tokenizer(["query: 工会", "query: 职工代表大会的基本形式"], padding=True, return_tensors="pt")
    auto_model = model[0].auto_model
    words = auto_model.get_input_embeddings()(sample["input_ids"]).detach()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".part")
    os.close(fd)
    try:
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notes
            torch.onnx.export(
                _hidden_state_module(auto_model),
                (words, sample["attention_mask"]),
                tmp,
                input_names=["inputs_embeds", "attention_mask"],
                output_names=["last_hidden_state"],
                dynamic_axes={
                    "inputs_embeds": {0: "batch", 1: "tokens"},
                    "attention_mask": {0: "batch", 1: "tokens"},
                    "last_hidden_state": {0: "batch", 1: "tokens"},
                },
                opset_version=17,
                dynamo=False,
            )
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide it from a server running as another user
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


def _remove_stale_parts(folder: Path, older_than_s: float = 3600.0) -> None:
    """Half-written exports of processes that died mid-export (each is as big as the model)."""
    for part in folder.glob("*.part"):
        try:
            if time.time() - part.stat().st_mtime > older_than_s:
                part.unlink()
        except OSError:
            pass


class OnnxQueryEncoder:
    """Mean-pooled, L2-normalised vectors of a few short texts from an exported transformer.

    Not thread-safe on its own: the caller holds the lock that also guards the shared tokenizer.
    """

    def __init__(
        self, path: Path, tokenizer: Any, word_vectors: np.ndarray, max_tokens: int, threads: int | None = None
    ) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.tokenizer = tokenizer
        self.word_vectors = word_vectors  # (vocabulary, dim) float32, a view of torch's table
        self.max_tokens = max_tokens
        self.path = path

    def encode(self, texts: list[str]) -> np.ndarray:
        """float32 ``(len(texts), dim)`` rows, L2-normalised (texts already carry their prompt)."""
        enc = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_tokens, return_tensors="np"
        )
        mask = enc["attention_mask"].astype(np.int64)
        words = self.word_vectors[enc["input_ids"]]
        (hidden,) = self.session.run(None, {"inputs_embeds": words, "attention_mask": mask})
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)


def load(
    model: Any,
    cache_dir: Path,
    fingerprint: str,
    threads: int | None,
    reference: Callable[[list[str]], np.ndarray],
    prompt: str,
    lock: threading.Lock,
) -> OnnxQueryEncoder | None:
    """The ONNX encoder for ``model`` (exported on first use), or None when it cannot be used.

    ``reference(texts)`` embeds texts that already carry ``prompt`` with torch; the ONNX vectors
    must match it on :data:`PROBES`. ``lock`` guards the model and its tokenizer, which queries
    may be using meanwhile (this runs in a background thread).
    """
    if not supports(model):
        log.info("问题向量沿用 torch：模型结构不是 transformer + 平均池化")
        return None
    path = cache_dir / "onnx" / f"{fingerprint[:24]}-from-word-vectors.onnx"
    try:
        if not path.is_file():
            log.info("首次使用：把向量模型导出为 ONNX（约十秒，期间问题向量用 torch）→ %s", path)
            _remove_stale_parts(path.parent)
            with lock:
                export(model, path)
        table = model[0].auto_model.get_input_embeddings().weight.detach()
        word_vectors = table.numpy() if table.dtype.is_floating_point and table.dtype.itemsize == 4 else None
        if word_vectors is None:
            raise ValueError(f"word vectors are {table.dtype}, not float32")
        encoder = OnnxQueryEncoder(path, model.tokenizer, word_vectors, int(model.max_seq_length), threads)
        probes = [prompt + p for p in PROBES]
        with lock:
            got = encoder.encode(probes)
        want = reference(probes)
        worst = float(np.min(np.sum(got * want, axis=1)))
    except Exception as exc:  # noqa: BLE001 - any failure leaves the torch path, which works
        log.warning("问题向量沿用 torch（ONNX 不可用：%s）", str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        return None
    if worst < MIN_PROBE_COSINE:
        log.warning("问题向量沿用 torch：ONNX 向量与 torch 不一致（最低余弦 %.6f）", worst)
        return None
    return encoder
