# One entry point for users and CI. Every target installs what it needs through .venv/.stamp,
# so a fresh clone needs no separate set-up step.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.stamp
SCALE ?= small
DATA_IMAGES ?=
DATA_VIDEOS ?=
OUT ?= runs/$(SCALE)/tokenizer
export OMP_NUM_THREADS ?= 2

.PHONY: setup test tokenizer bench tables lm-imagenet dit-imagenet latte-ucf clean help

help:
	@echo "make tokenizer   train OmniTokenizer (SCALE=tiny|small|paper; DATA_IMAGES=dir DATA_VIDEOS=dir for real datasets)"
	@echo "make test        run the test suite"
	@echo "make bench       run the speed/memory benchmarks (writes bench/out/*.json)"
	@echo "make setup       create .venv and install the project (other targets do this for you)"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q tests

tokenizer: $(STAMP)
	$(PY) -m tokenizer.train --scale $(SCALE) --out $(OUT) \
		$(if $(DATA_IMAGES),--images $(DATA_IMAGES)) $(if $(DATA_VIDEOS),--videos $(DATA_VIDEOS))

bench: $(STAMP)
	$(PY) bench/tokenizer_speed.py --out bench/out/tokenizer_speed.json

tables:
	@echo "make tables: the evaluation and table builder (issue 5) has not landed yet." >&2; exit 2

lm-imagenet:
	@echo "make lm-imagenet: the autoregressive generator (lm_generation/) has not landed yet." >&2; exit 2

dit-imagenet:
	@echo "make dit-imagenet: the DiT generator (diffusion_generation/) has not landed yet." >&2; exit 2

latte-ucf:
	@echo "make latte-ucf: the Latte generator (diffusion_generation/) has not landed yet." >&2; exit 2

clean:
	rm -rf $(VENV) runs bench/out
