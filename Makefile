# The two commands of the README: `make demo` and `make test`. Both build .venv from scratch when needed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# No model or dataset is fetched from the Hub at run time: everything the demo and tests use is local.
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
PYTEST_ARGS ?=

.PHONY: demo test docs quality style install system-deps bench clean

install: $(STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV)

# torch first and pinned: 2.13.0 is the local CPU build; an unpinned torch pulls GBs of CUDA wheels.
# open_clip_torch only ships the real CLIP BPE vocabulary the tests use: installed without its deps (it wants
# torchvision) and never imported.
$(STAMP): setup.cfg pyproject.toml | $(PY)
	@$(MAKE) --no-print-directory system-deps
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[video,demo,test,dev,docs]"
	$(PY) -m pip install -q --no-deps open_clip_torch==3.3.0
	touch $(STAMP)

# torchcodec (datasets.Video) needs the system FFmpeg libraries; PyAV bundles its own. The Space app's test looks at
# the page with a headless Chromium.
SYSTEM_PACKAGES := ffmpeg chromium
system-deps:
	@missing=; for p in $(SYSTEM_PACKAGES); do command -v $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	[ -n "$$missing" ] || exit 0; \
	if ! command -v apt-get >/dev/null 2>&1; then echo "missing:$$missing: install them with your package manager"; exit 0; fi; \
	SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	echo "Installing$$missing with apt-get"; \
	$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null

# `make demo` runs offline on tiny random-weight models; naming real models (any of CAPTIONER, SCORER, FUSER,
# EMBEDDER, TEXT_EMBEDDER) lets them download from the Hub.
DEMO_MODELS := $(if $(CAPTIONER),--captioner $(CAPTIONER)) $(if $(SCORER),--scorer $(SCORER)) \
	$(if $(FUSER),--fuser $(FUSER)) $(if $(EMBEDDER),--embedder $(EMBEDDER)) \
	$(if $(TEXT_EMBEDDER),--text-embedder $(TEXT_EMBEDDER))

demo: $(STAMP)
	$(if $(strip $(DEMO_MODELS)),,$(OFFLINE)) $(PY) demo.py $(DEMO_MODELS)

test: $(STAMP)
	$(OFFLINE) $(PY) -m pytest $(PYTEST_ARGS)

# The documentation site, built strictly into site/ (a broken link, reference or docstring fails the build); the command
# reference is generated from the parsers by docs/hooks/commands.py. tests/test_docs.py builds it too.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(OFFLINE) $(PY) -m mkdocs build --strict

quality: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

style: $(STAMP)
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

# Every benchmark, one after the other (about 15 minutes on 2 cores): each prints its table of ratios and its targets
# with ok / MISSED, and exits 1 when one is missed. All of them run; then the command fails if any missed or failed.
BENCHMARKS := bench_metric bench_evaluate bench_token_counts bench_dataset bench_generation bench_caption bench_encode bench_endpoint
bench: $(STAMP)
	$(PY) -m pip install -q -e ".[bench]"
	@failed=; for b in $(BENCHMARKS); do echo "== benchmarks/$$b.py"; \
		$(OFFLINE) $(PY) benchmarks/$$b.py || failed="$$failed $$b"; done; \
	if [ -n "$$failed" ]; then echo "make bench: a target missed (or the run failed) in:$$failed"; exit 1; fi

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .cache site
