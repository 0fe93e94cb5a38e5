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
DATA_FLAGS = $(if $(DATA_IMAGES),--images $(DATA_IMAGES)) $(if $(DATA_VIDEOS),--videos $(DATA_VIDEOS))
OUT ?= runs/$(SCALE)/tokenizer
export OMP_NUM_THREADS ?= 2

.PHONY: setup test test-fast tokenizer bench tables tables-build lm-imagenet dit-imagenet latte-ucf clean help

help:
	@echo "make tokenizer   train OmniTokenizer (SCALE=tiny|small|paper; DATA_IMAGES=dir DATA_VIDEOS=dir for real datasets)"
	@echo "make test        run the test suite (make test-fast: without the slow end-to-end tests, under a minute)"
	@echo "make tables      the paper's Tables 1-10 with ours (SCALE=small default); runs what is missing"
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

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow" tests

tokenizer: $(STAMP)
	$(PY) -m tokenizer.train --scale $(SCALE) --out $(OUT) --results results/$(SCALE)/tokenizer.json $(DATA_FLAGS)

bench: $(STAMP)
	$(PY) bench/tokenizer_speed.py --out bench/out/tokenizer_speed.json

# ---- tables: every result is a file; a missing one triggers the run or evaluation that makes it. The list of
# experiments (which result files the tables read, which run starts from which) is eval/experiments.py.
RESULTS := results/$(SCALE)
RUNS := runs/$(SCALE)
# Feature-network weights (FID Inception-v3, FVD I3D, LPIPS VGG16): local files, else the normal download.
# Offline with none, the tiny/small scales fall back to fixed-seed random networks, labelled as such in
# every result and table; the paper scale never does.
ALLOW_RANDOM_FEATURES ?= $(if $(filter tiny small,$(SCALE)),1,0)
EVAL_FLAGS = --scale $(SCALE) $(if $(DATA_IMAGES),--images $(DATA_IMAGES)) $(if $(DATA_VIDEOS),--videos $(DATA_VIDEOS)) \
	$(if $(INCEPTION_WEIGHTS),--inception-weights $(INCEPTION_WEIGHTS)) $(if $(I3D_WEIGHTS),--i3d-weights $(I3D_WEIGHTS)) \
	$(if $(VGG16_WEIGHTS),--lpips-weights $(VGG16_WEIGHTS)) $(if $(filter 1,$(ALLOW_RANDOM_FEATURES)),--allow-random-features) \
	$(if $(filter paper,$(SCALE)),--resolution 256,--resolution 64)

$(RESULTS)/tokenizer.json: | $(STAMP)
	$(PY) -m tokenizer.train --scale $(SCALE) --out $(RUNS)/tokenizer --results $@ $(DATA_FLAGS)

$(RESULTS)/tokenizer_%.json: | $(STAMP)
	$(PY) -m tokenizer.train --scale $(SCALE) --variant $* --out $(RUNS)/tokenizer_$* --results $@ $(DATA_FLAGS)

# results made through pattern rules are kept, not deleted as intermediates
.PRECIOUS: $(RESULTS)/tokenizer_%.json $(RESULTS)/eval/%.json
.SECONDEXPANSION:
$(RESULTS)/eval/%.json: | $(RESULTS)/$$(firstword $$(subst /, ,$$*)).json
	$(PY) -m eval.tokenizer_eval --model $(RUNS)/$*/final --out $@ $(EVAL_FLAGS)

# The runs and evaluations are independent jobs, TABLES_JOBS at a time, the cores shared among them: on 2 cores,
# two 1-thread jobs finish ~1.3x sooner than one 2-thread job after another (small matrices scale poorly).
TABLES_JOBS ?= 2
TABLES_THREADS := $(shell n=$$(( $$(nproc) / $(TABLES_JOBS) )); echo $$(( n > 0 ? n : 1 )))
tables: $(STAMP)
	OMP_NUM_THREADS=$(TABLES_THREADS) $(MAKE) --no-print-directory -j$(TABLES_JOBS) tables-build SCALE=$(SCALE)

# TABLE_INPUTS and the order of runs (a run waits for the run whose stage it starts from), from eval/experiments.py
$(RESULTS)/experiments.mk: eval/experiments.py tokenizer/configs/$(SCALE).yaml | $(STAMP)
	@mkdir -p $(@D)
	$(PY) -m eval.experiments --scale $(SCALE) --make > $@.tmp && mv $@.tmp $@
ifeq ($(MAKECMDGOALS),tables-build)
include $(RESULTS)/experiments.mk
endif
tables-build: $(TABLE_INPUTS)
	$(PY) -m eval.tables --scale $(SCALE)

lm-imagenet:
	@echo "make lm-imagenet: the autoregressive generator (lm_generation/) has not landed yet." >&2; exit 2

dit-imagenet:
	@echo "make dit-imagenet: the DiT generator (diffusion_generation/) has not landed yet." >&2; exit 2

latte-ucf:
	@echo "make latte-ucf: the Latte generator (diffusion_generation/) has not landed yet." >&2; exit 2

clean:
	rm -rf $(VENV) runs bench/out
