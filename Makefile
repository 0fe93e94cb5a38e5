# One entry point for users and CI. Every target installs what it needs through .venv/.stamp,
# so a fresh clone needs no separate set-up step.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.stamp
SCALE ?= small
# Where runs and results live (their layout: shared/paths.py); every run folder below is named from RUNS
RUNS := runs/$(SCALE)
RESULTS := results/$(SCALE)
# The tokenizer run: `make tokenizer` trains it there; the generators read its VQ (joint/final) and VAE (kl/final).
# A fine-tuning run (INIT=, below) goes into a folder of its own, never the generators' default
TOKENIZER ?= $(RUNS)/$(if $(INIT),finetuned_tokenizer,tokenizer)
DATA_IMAGES ?=
DATA_VIDEOS ?=
DATA_FLAGS = $(if $(DATA_IMAGES),--images $(DATA_IMAGES)) $(if $(DATA_VIDEOS),--videos $(DATA_VIDEOS))
# Fine-tuning: INIT=a save_pretrained folder (or a public release .ckpt) the first stage trained starts from;
# STAGE=the one stage to train
INIT ?=
STAGE ?=
export OMP_NUM_THREADS ?= 2

.PHONY: setup test test-fast tokenizer bench dry-run gpu-check tables tables-build docs clean help

help:
	@echo "Each target says what it writes; [tracked] marks files under version control that it rewrites."
	@echo "make tokenizer   train OmniTokenizer (SCALE=tiny|small|paper; DATA_IMAGES=dir DATA_VIDEOS=dir for real datasets;"
	@echo "                 TOKENIZER=dir: the run folder, default $(TOKENIZER); INIT=folder|.ckpt: start from those weights,"
	@echo "                 fine-tuning them on DATA_IMAGES / DATA_VIDEOS (default folder runs/<scale>/finetuned_tokenizer);"
	@echo "                 STAGE=image|joint|kl: train that stage only)"
	@echo "                 writes $(TOKENIZER)/, results/<scale>/<the run folder's name>.json"
	@echo "make test        run the test suite (make test-fast: without the slow end-to-end tests, under a minute)"
	@echo "make tables      the paper's Tables 1-10 with ours (SCALE=small default; SEEDS=3 there); runs what is missing"
	@echo "                 writes $(RUNS)/, $(RESULTS)/; [tracked] TABLES.md, tables.json, tables.csv and"
	@echo "                 docs/evaluation.md's ablation-findings block"
	@echo "make bench       run the speed/memory benchmarks and the no-network code baselines: writes"
	@echo "                 bench/out/linear_codes.json; [tracked] $(SPEED)/*.json (the reports the pages are drawn"
	@echo "                 from) and the generated blocks of docs/speed.md (tokenizer speed; beside the release, DiT,"
	@echo "                 Latte, LlamaGen), docs/lm_generation.md (LM speed), docs/diffusion_generation.md (diffusion speed)"
	@echo "make dry-run     every paper target at its real shapes: steps, checkpoint, exact resume, sampling; loader"
	@echo "                 throughput; writes dry_run.json, data_throughput.json and the cost plan: at SCALE=paper"
	@echo "                 [tracked] docs/results/dry_run_paper/ and docs/cost_plan.md's blocks (on a GPU machine it"
	@echo "                 measures there), at another scale bench/out/ and bench/out/cost_plan_<scale>.md"
	@echo "make docs        rewrite every generated block of README.md and docs/*.md, and TABLES.md, from the result"
	@echo "                 files on disk ($(RESULTS)/, docs/results/), measuring nothing (bench/docs.py lists them);"
	@echo "                 stops naming any block whose result file is missing (KEEP_MISSING=1: leave those as they are)"
	@echo "                 [tracked] README.md, docs/*.md, TABLES.md, tables.json, tables.csv"
	@echo "make gpu-check   on a CUDA machine, at most 8 minutes: each paper dry-run target's step and MFU in bf16, the"
	@echo "                 training steps of DiT-B/2, Latte-B/2 and the LM at GPT-B eager and compiled, the LM's compiled"
	@echo "                 decode, the tokenizer on a 256² image and a 17-frame clip: writes bench/out/gpu_check.json"
	@echo "make lm-imagenet / lm-ucf / lm-k600   the autoregressive generator on the VQ codes: trained, sampled, evaluated"
	@echo "make dit-imagenet / latte-ucf         DiT / Latte on the VAE's latents: trained, sampled, evaluated"
	@echo "                 (a generator target makes results/<scale>/<name>.json if missing; DATA_IMAGES= / DATA_VIDEOS=;"
	@echo "                 TOKENIZER=dir: the tokenizer run it reads, trained there first where its model is missing)"
	@echo "                 writes $(RUNS)/, $(RESULTS)/"
	@echo "make setup       create .venv and install the project (other targets do this for you): writes .venv/"
	@echo "make clean       removes .venv/, the run folders and bench/out/"
	@echo "A generated block of a docs page records the scale, machine and precision it was measured at; one measured at"
	@echo "SCALE=paper is replaced by another scale's only when its command is given --force."

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
	$(PY) -m tokenizer.train --scale $(SCALE) --out $(TOKENIZER) --results $(RESULTS)/$(notdir $(TOKENIZER)).json $(DATA_FLAGS) \
		$(if $(INIT),--init $(INIT)) $(if $(STAGE),--stage $(STAGE))

# the benches' reports behind the docs pages' speed tables, kept beside the pages (make docs draws the tables from them)
SPEED := docs/results/speed
# the reference checkouts import timm (the extra `references`); a variable, as a comma inside $(if) would split it
REFERENCES_INSTALL := $(VENV)/bin/pip install --quiet -e '.[dev,references]'
bench: $(STAMP)
	$(if $(RELEASE_REPO)$(DIT_REPO)$(LATTE_REPO),$(REFERENCES_INSTALL))
	$(PY) -m bench.tokenizer_speed --out $(SPEED)/tokenizer_speed.json
	$(PY) -m bench.readme_speed --bench $(SPEED)/tokenizer_speed.json --readme docs/speed.md
	$(PY) -m bench.lm_speed --tokens-227m 256 --uncached-tokens 32 --train-batch-227m 1 --out $(SPEED)/lm_speed.json \
		--doc docs/lm_generation.md
	$(PY) -m bench.diffusion_speed --out $(SPEED)/diffusion_speed.json --doc docs/diffusion_generation.md
	$(PY) -m bench.reference_tokenizer $(if $(RELEASE_REPO),--release-repo $(RELEASE_REPO)) \
		--out $(SPEED)/reference_tokenizer.json --doc docs/speed.md
	$(PY) -m bench.reference_dit $(if $(DIT_REPO),--dit-repo $(DIT_REPO)) --out $(SPEED)/reference_dit.json \
		--doc docs/speed.md
	$(PY) -m bench.reference_latte $(if $(LATTE_REPO),--latte-repo $(LATTE_REPO)) --out $(SPEED)/reference_latte.json \
		--doc docs/speed.md
	$(PY) -m bench.reference_llamagen $(if $(LLAMAGEN_REPO),--llamagen-repo $(LLAMAGEN_REPO)) \
		--out $(SPEED)/reference_llamagen.json --doc docs/speed.md
	$(PY) -m bench.linear_codes --out bench/out/linear_codes.json

gpu-check: $(STAMP)
	bench/gpu_check.sh

# the paper's dry run is kept beside docs/cost_plan.md, whose tables are drawn from it; another scale's in bench/out
DRY_RUN := $(if $(filter paper,$(SCALE)),docs/results/dry_run_paper,bench/out)
dry-run: $(STAMP)
	$(PY) -m bench.dry_run --scale $(SCALE) --out $(DRY_RUN)/dry_run.json
	$(PY) -m bench.data_throughput --out $(DRY_RUN)/data_throughput.json
	$(PY) -m bench.cost_plan --dry-run $(DRY_RUN)/dry_run.json --data $(DRY_RUN)/data_throughput.json \
		$(if $(filter paper,$(SCALE)),--doc docs/cost_plan.md,--out bench/out/cost_plan_$(SCALE).md)

# every generated block of the pages, from the result files on disk; nothing is measured (the list: bench/docs.py)
docs: $(STAMP)
	$(PY) -m bench.docs --scale $(SCALE) --results $(dir $(RESULTS)) $(if $(KEEP_MISSING),--keep-missing)

# ---- tables: every result is a file; a missing one triggers the run or evaluation that makes it. The list of
# experiments (which result files the tables read, which run starts from which) is eval/experiments.py.
# Feature-network weights (FID Inception-v3, FVD I3D, LPIPS VGG16): local files, else the normal download.
# Offline with none, the tiny/small scales fall back to fixed-seed random networks, labelled as such in
# every result and table; the paper scale never does.
ALLOW_RANDOM_FEATURES ?= $(if $(filter tiny small,$(SCALE)),1,0)
EVAL_FLAGS = --scale $(SCALE) $(if $(DATA_IMAGES),--images $(DATA_IMAGES)) $(if $(DATA_VIDEOS),--videos $(DATA_VIDEOS)) \
	$(if $(INCEPTION_WEIGHTS),--inception-weights $(INCEPTION_WEIGHTS)) $(if $(I3D_WEIGHTS),--i3d-weights $(I3D_WEIGHTS)) \
	$(if $(VGG16_WEIGHTS),--lpips-weights $(VGG16_WEIGHTS)) $(if $(filter 1,$(ALLOW_RANDOM_FEATURES)),--allow-random-features) \
	$(if $(filter paper,$(SCALE)),--resolution 256,--resolution 64)

$(RESULTS)/tokenizer.json: | $(STAMP)
	$(PY) -m tokenizer.train --scale $(SCALE) --out $(TOKENIZER) --results $@ $(DATA_FLAGS)

# tokenizer_<variant>, tokenizer_seed<k>, tokenizer_<variant>_seed<k>: the run's name says its variant and seed
$(RESULTS)/tokenizer_%.json: | $(STAMP)
	$(PY) -m tokenizer.train --scale $(SCALE) --run tokenizer_$* --out $(RUNS)/tokenizer_$* --results $@ $(DATA_FLAGS)

# results made through pattern rules are kept, not deleted as intermediates
.PRECIOUS: $(RESULTS)/tokenizer_%.json $(RESULTS)/eval/%.json
.SECONDEXPANSION:
$(RESULTS)/eval/%.json: | $(RESULTS)/$$(firstword $$(subst /, ,$$*)).json
	$(PY) -m eval.tokenizer_eval --model $(RUNS)/$*/final --out $@ $(EVAL_FLAGS)

# The runs and evaluations are independent jobs, TABLES_JOBS at a time, the cores shared among them: on 2 cores,
# two 1-thread jobs finish ~1.3x sooner than one 2-thread job after another (small matrices scale poorly).
TABLES_JOBS ?= 2
TABLES_THREADS := $(shell n=$$(( $$(nproc) / $(TABLES_JOBS) )); echo $$(( n > 0 ? n : 1 )))
# Every tokenizer run of the tables is trained with SEEDS seeds (model init and data order; seed 0 is the run
# itself, seed k the run <run>_seed<k>); the tables show mean ± std and call a difference only beyond its noise.
# Default: 3 at small (~2 h 50 min on 2 cores from an empty checkout: docs/evaluation.md), 1 elsewhere (tiny has no
# ablations; paper runs are days).
SEEDS ?= $(if $(filter small,$(SCALE)),3,1)
tables: $(STAMP)
	OMP_NUM_THREADS=$(TABLES_THREADS) $(MAKE) --no-print-directory -j$(TABLES_JOBS) tables-build SCALE=$(SCALE) SEEDS=$(SEEDS)

# TABLE_INPUTS and the order of runs (a run waits for the run of its seed whose stage it starts from), from
# eval/experiments.py
EXPERIMENTS_MK := $(RESULTS)/experiments_seeds$(SEEDS).mk
$(EXPERIMENTS_MK): eval/experiments.py shared/paths.py tokenizer/configs/$(SCALE).yaml | $(STAMP)
	@mkdir -p $(@D)
	$(PY) -m eval.experiments --scale $(SCALE) --seeds $(SEEDS) --make > $@.tmp && mv $@.tmp $@
ifeq ($(MAKECMDGOALS),tables-build)
include $(EXPERIMENTS_MK)
endif
tables-build: $(TABLE_INPUTS)
	$(PY) -m eval.tables --scale $(SCALE) --seeds $(shell seq -s, 0 $$(($(SEEDS) - 1)))

# ---- generators: the tokenizer's VQ (the LM, lm_generation/) or VAE (DiT / Latte, diffusion_generation/) -> codes
# or latents -> training -> sampling (shared.sample_folders: one folder per guidance scale of the config's
# sample.guidance_scales, and samples.json) -> eval.sample_metrics, eval.class_consistency and eval.novelty (each
# sample's nearest training item) on every folder of samples.json -> eval.generation_report ->
# results/<scale>/<name>.json, the file the tables read (eval/experiments.py's GENERATION_ROWS: its table row and
# its target, the name with dashes). Every step resumes or reuses what a killed run left: run the same command again.
VQ_TOKENIZER ?= $(TOKENIZER)/joint/final
VAE ?= $(TOKENIZER)/kl/final
# a generator waits for the tokenizer's training (into TOKENIZER, the rule of $(RESULTS)/tokenizer.json) only where
# the model it reads is missing
TRAINED_IF_MISSING = $(if $(wildcard $(1)/config.json),,$(RESULTS)/tokenizer.json)
LM_SIZE ?=
IMAGES = $(or $(DATA_IMAGES),embedded)
VIDEOS = $(or $(DATA_VIDEOS),embedded)
# the LM's codes, a folder per data source and kind: <source>_images, <source>_clips, <source>_clips_val
IMAGE_CODES = $(RUNS)/codes/$(if $(DATA_IMAGES),$(notdir $(DATA_IMAGES)),embedded)_images
CLIP_CODES = $(RUNS)/codes/$(if $(DATA_VIDEOS),$(notdir $(DATA_VIDEOS)),embedded)_clips
# in a generator's recipe: its run folder and its evaluation folder, named after the result file it makes
RUN = $(RUNS)/$(basename $(@F))
EVAL = $(RESULTS)/eval/$(basename $(@F))
GEN_EVAL_FLAGS = --scale $(SCALE) $(if $(filter paper,$(SCALE)),--resolution 256,--resolution 64) \
	$(if $(INCEPTION_WEIGHTS),--inception-weights $(INCEPTION_WEIGHTS)) $(if $(I3D_WEIGHTS),--i3d-weights $(I3D_WEIGHTS)) \
	$(if $(filter 1,$(ALLOW_RANDOM_FEATURES)),--allow-random-features)
# the real items the samples are measured against: a split of DATA_IMAGES / DATA_VIDEOS, else the embedded data
IMAGE_REFERENCE = $(if $(DATA_IMAGES),--reference $(DATA_IMAGES) --split train,--reference embedded)
VIDEO_REFERENCE = $(if $(DATA_VIDEOS),--reference $(DATA_VIDEOS) --video-layout $(1) --split $(2),--reference embedded)
# FVD at small on 64 clips of each folder (an I3D pass costs about a second a clip on a CPU); every clip at paper
FVD_LIMIT = $(if $(filter paper,$(SCALE)),,--limit 64)
.PHONY: lm-imagenet lm-ucf lm-k600 dit-imagenet latte-ucf

# Table 3: the LM on the photos' VQ codes, class-conditional
lm-imagenet: $(RESULTS)/lm_imagenet.json
$(RESULTS)/lm_imagenet.json: | $(STAMP) $(call TRAINED_IF_MISSING,$(VQ_TOKENIZER))
	$(PY) -m lm_generation.extract_codes --tokenizer $(VQ_TOKENIZER) --images $(IMAGES) --scale $(SCALE) \
		--out $(IMAGE_CODES)
	$(PY) -m lm_generation.train --codes $(IMAGE_CODES) --scale $(SCALE) $(if $(LM_SIZE),--size $(LM_SIZE)) --out $(RUN)
	$(PY) -m lm_generation.sample --pipeline $(RUN)/final --scale $(SCALE) --out $(RUN)/samples
	$(PY) -m eval.sample_metrics --kind image --record $(RUN)/samples $(IMAGE_REFERENCE) $(GEN_EVAL_FLAGS) --out $(EVAL)
	$(PY) -m eval.class_consistency --kind image --record $(RUN)/samples --scale $(SCALE) --tokenizer $(VQ_TOKENIZER) \
		$(if $(DATA_IMAGES),--images $(DATA_IMAGES)) --out $(EVAL)/class_consistency.json
	$(PY) -m eval.novelty --record $(RUN)/samples --run $(RUN) --scale $(SCALE) --out $(EVAL)/novelty.json
	$(PY) -m eval.generation_report --run $(RUN) --metrics $(EVAL) --scale $(SCALE) --out $@

# Table 4: the LM on the clips' VQ codes, class-conditional (UCF-101's layout); FVD on 16 frames
lm-ucf: $(RESULTS)/lm_ucf.json
$(RESULTS)/lm_ucf.json: | $(STAMP) $(call TRAINED_IF_MISSING,$(VQ_TOKENIZER))
	$(PY) -m lm_generation.extract_codes --tokenizer $(VQ_TOKENIZER) --videos $(VIDEOS) \
		--set data.video_layout=ucf101 --scale $(SCALE) --out $(CLIP_CODES)
	$(PY) -m lm_generation.train --codes $(CLIP_CODES) --scale $(SCALE) $(if $(LM_SIZE),--size $(LM_SIZE)) --out $(RUN)
	$(PY) -m lm_generation.sample --pipeline $(RUN)/final --scale $(SCALE) --out $(RUN)/samples
	$(PY) -m eval.sample_metrics --kind video --record $(RUN)/samples --frames 16 $(FVD_LIMIT) \
		$(call VIDEO_REFERENCE,ucf101,train) $(GEN_EVAL_FLAGS) --out $(EVAL)
	$(PY) -m eval.class_consistency --kind video --record $(RUN)/samples --scale $(SCALE) --tokenizer $(VQ_TOKENIZER) \
		$(if $(DATA_VIDEOS),--videos $(DATA_VIDEOS) --video-layout ucf101) --out $(EVAL)/class_consistency.json
	$(PY) -m eval.novelty --record $(RUN)/samples --run $(RUN) --scale $(SCALE) --out $(EVAL)/novelty.json
	$(PY) -m eval.generation_report --run $(RUN) --metrics $(EVAL) --scale $(SCALE) --out $@

# Table 4: frame prediction, the LM continuing held-out clips from their first frames (unconditional: no judge);
# FVD on the 17 frames of the validation split's clips, and eval.frame_prediction's PSNR
lm-k600: $(RESULTS)/lm_k600.json
$(RESULTS)/lm_k600.json: | $(STAMP) $(call TRAINED_IF_MISSING,$(VQ_TOKENIZER))
	$(PY) -m lm_generation.extract_codes --tokenizer $(VQ_TOKENIZER) --videos $(VIDEOS) --split val \
		--set data.video_layout=classes --set data.flip=false --scale $(SCALE) --out $(CLIP_CODES)_val
	$(PY) -m lm_generation.extract_codes --tokenizer $(VQ_TOKENIZER) --videos $(VIDEOS) \
		--set data.video_layout=classes --scale $(SCALE) --out $(CLIP_CODES)
	$(PY) -m lm_generation.train --codes $(CLIP_CODES) --task frames --scale $(SCALE) \
		$(if $(LM_SIZE),--size $(LM_SIZE)) --out $(RUN)
	$(PY) -m lm_generation.sample --pipeline $(RUN)/final --scale $(SCALE) --codes $(CLIP_CODES)_val --out $(RUN)/samples
	$(PY) -m eval.frame_prediction --pipeline $(RUN)/final --videos $(VIDEOS) --video-layout classes --split val \
		--scale $(SCALE) --out $(EVAL)/frame_prediction.json
	$(PY) -m eval.sample_metrics --kind video --record $(RUN)/samples --frames 17 $(FVD_LIMIT) \
		$(call VIDEO_REFERENCE,classes,val) $(GEN_EVAL_FLAGS) --out $(EVAL)
	$(PY) -m eval.generation_report --run $(RUN) --metrics $(EVAL) --scale $(SCALE) --out $@

# Table 5: DiT on the photos' VAE latents, class-conditional
dit-imagenet: $(RESULTS)/dit_imagenet.json
$(RESULTS)/dit_imagenet.json: | $(STAMP) $(call TRAINED_IF_MISSING,$(VAE))
	$(PY) -m diffusion_generation.extract_latents --scale $(SCALE) --experiment dit --tokenizer $(VAE) \
		--out $(RUN)/latents $(if $(DATA_IMAGES),--set data.source=$(DATA_IMAGES))
	$(PY) -m diffusion_generation.train --scale $(SCALE) --experiment dit --latents $(RUN)/latents --out $(RUN)
	$(PY) -m diffusion_generation.sample --scale $(SCALE) --pipeline $(RUN)/final --out $(RUN)/samples
	$(PY) -m eval.sample_metrics --kind image --record $(RUN)/samples $(IMAGE_REFERENCE) $(GEN_EVAL_FLAGS) --out $(EVAL)
	$(PY) -m eval.class_consistency --kind image --record $(RUN)/samples --scale $(SCALE) --tokenizer $(VAE) \
		$(if $(DATA_IMAGES),--images $(DATA_IMAGES)) --out $(EVAL)/class_consistency.json
	$(PY) -m eval.novelty --record $(RUN)/samples --run $(RUN) --scale $(SCALE) --out $(EVAL)/novelty.json
	$(PY) -m eval.generation_report --run $(RUN) --metrics $(EVAL) --scale $(SCALE) --out $@

# Table 6: Latte on the clips' VAE latents, class-conditional (UCF-101's layout); FVD on 16 frames
latte-ucf: $(RESULTS)/latte_ucf.json
$(RESULTS)/latte_ucf.json: | $(STAMP) $(call TRAINED_IF_MISSING,$(VAE))
	$(PY) -m diffusion_generation.extract_latents --scale $(SCALE) --experiment latte --tokenizer $(VAE) \
		--out $(RUN)/latents $(if $(DATA_VIDEOS),--set data.source=$(DATA_VIDEOS))
	$(PY) -m diffusion_generation.train --scale $(SCALE) --experiment latte --latents $(RUN)/latents --out $(RUN)
	$(PY) -m diffusion_generation.sample --scale $(SCALE) --pipeline $(RUN)/final --out $(RUN)/samples
	$(PY) -m eval.sample_metrics --kind video --record $(RUN)/samples --frames 16 $(FVD_LIMIT) \
		$(call VIDEO_REFERENCE,ucf101,train) $(GEN_EVAL_FLAGS) --out $(EVAL)
	$(PY) -m eval.class_consistency --kind video --record $(RUN)/samples --scale $(SCALE) --tokenizer $(VAE) \
		$(if $(DATA_VIDEOS),--videos $(DATA_VIDEOS) --video-layout ucf101) --out $(EVAL)/class_consistency.json
	$(PY) -m eval.novelty --record $(RUN)/samples --run $(RUN) --scale $(SCALE) --out $(EVAL)/novelty.json
	$(PY) -m eval.generation_report --run $(RUN) --metrics $(EVAL) --scale $(SCALE) --out $@

clean:
	rm -rf $(VENV) runs bench/out
