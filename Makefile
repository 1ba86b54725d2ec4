# vitbench: `make demo` and `make test` each build the environment (.venv) on first use.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
VB     := $(VENV)/bin/vitbench
STAMP  := $(VENV)/.vitbench-installed

.PHONY: demo test test-all lint bench zoo clean-venv

$(STAMP): pyproject.toml
	@test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
	# torch and torchvision in one resolution, so pip picks a matching pair (never the CPU-only local wheel
	# next to a CUDA torchvision: see docs/installation.md)
	$(PY) -m pip install --quiet -e '.[test]' 2>&1 | grep -v "^WARNING: Location" || true
	$(PY) scripts/check_install.py
	@touch $(STAMP)

demo: $(STAMP)
	$(VB) demo

test: $(STAMP)
	$(PY) -m pytest -q

test-all: $(STAMP)
	$(PY) -m pytest -q -m "slow or not slow"

# ruff's rules and exceptions live in pyproject.toml ([tool.ruff])
lint: $(STAMP)
	$(PY) -m ruff check vitbench tests

bench: $(STAMP)
	$(PY) benchmarks/bench_autoattack.py
	$(PY) benchmarks/bench_pgd_sweep.py
	OMP_NUM_THREADS=1 $(PY) benchmarks/bench_corruptions.py --threads 1
	OMP_NUM_THREADS=1 $(PY) benchmarks/bench_workers.py

# Retrain the bundled zoo into vitbench/zoo/weights and model_zoo.yaml (30 minutes here while other jobs shared
# the 2 cores).
# digits-sized light augmentation: random crops of 80-100% of the image, no flips (digits are not symmetric),
# no colour jitter (grey strokes on black)
ZOO_ARGS := --zoo vitbench/zoo/model_zoo.yaml --weights-dir vitbench/zoo/weights --force \
            --set rrc_scale=[0.8,1.0] --set color_jitter=0
VIT_ARGS := --arch vit_tiny_patch16_224 --arch-arg img_size=32 --arch-arg patch_size=8 --arch-arg depth=4 \
            --arch-arg embed_dim=64 --arch-arg num_heads=4
zoo: $(STAMP)
	rm -rf runs/zoo
	$(VB) train standard $(VIT_ARGS) --epochs 30 --out runs/zoo/digits-vit.standard --register digits-vit.standard $(ZOO_ARGS)
	$(VB) train light-recipe $(VIT_ARGS) --epochs 60 --set keep_epoch_checkpoints=true --set checkpoint_every=15 --out runs/zoo/digits-vit.light --register digits-vit.light $(ZOO_ARGS)
	$(VB) train standard --arch test_resnet --epochs 15 --out runs/zoo/digits-resnet.standard --register digits-resnet.standard $(ZOO_ARGS)
	$(VB) train light-recipe --arch test_resnet --epochs 30 --set eps_warmup_epochs=10 --set weight_decay=0.05 --out runs/zoo/digits-resnet.light --register digits-resnet.light $(ZOO_ARGS)

clean-venv:
	rm -rf $(VENV)
