# `make train` runs the default experiment and `make test` the test suite, each setting up the virtual
# environment first if needed (torch 2.13.0 before everything else, so no CUDA wheel is pulled).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
EXPERIMENT ?= checkpoints/example/denoise.yml

.PHONY: setup train test lint bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

train: setup
	$(BIN)/accelerate launch --num_processes 1 --num_machines 1 --mixed_precision no --dynamo_backend no \
		trainer.py -opt $(EXPERIMENT)

test: setup
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check .

bench: setup
	$(BIN)/python bench/overhead.py

clean:
	rm -rf $(VENV) experiments
