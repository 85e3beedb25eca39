# `make train` runs the default experiment and `make test` the test suite, each setting up the virtual
# environment first if needed (torch 2.13.0 before everything else, so no CUDA wheel is pulled).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
EXPERIMENT ?= checkpoints/VAE/exp.yml

.PHONY: setup train test lint bench clean demo

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -r requirements-dev.txt
	@# Accelerate's launcher warns about every value it had to guess unless a default config exists;
	@# this writes one (one process, this machine's GPUs or CPU) unless the user already has one.
	$(BIN)/accelerate config default
	touch $@

train: setup
	$(BIN)/accelerate launch --num_processes 1 --num_machines 1 --mixed_precision no --dynamo_backend no \
		trainer.py -opt $(EXPERIMENT)

test: setup
	$(BIN)/python -m pytest -q

# Stage 1 then stage 2 on the embedded data (PSFs ray-traced on the fly), then one report of both.
# Resuming from `latest` makes a second `make demo` continue (or just re-validate) instead of refusing.
demo: setup
	$(BIN)/python trainer.py -opt checkpoints/VAE/exp.yml experiment_key=demo path.resume_from_checkpoint=latest
	$(BIN)/python trainer.py -opt checkpoints/LDM/exp.yml experiment_key=demo path.resume_from_checkpoint=latest \
		vae.pretrained=experiments/VAE_PSF/demo/final/net_g
	$(BIN)/python scripts/demo_report.py --key demo

lint: setup
	$(BIN)/ruff check .

bench: setup
	$(BIN)/python bench/overhead.py

clean:
	rm -rf $(VENV) experiments
