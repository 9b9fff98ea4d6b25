# Two commands set everything up on a fresh machine: `make book` and `make test`.
# Everything runs offline on the embedded model; nothing here touches the Hugging Face Hub.

# bash with pipefail: an install that fails stops make, even piped through the warning filter.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.sdprobe-installed
BUILD  := _build/html

# Offline and reproducible: no Hub. Progress bars stay on for people (make rerun, make toy) and
# off where output is committed or compared (make execute, make test).
# ONLINE=1 (for make rerun with a paper preset on a machine that reaches the Hub) lets the weights
# download; every other target, and CI, stays offline.
ONLINE ?=
export HF_HUB_OFFLINE := $(if $(ONLINE),0,1)
export TRANSFORMERS_OFFLINE := $(if $(ONLINE),0,1)
export HF_HUB_DISABLE_TELEMETRY := 1
export PYTHONHASHSEED := 0
execute test check: export TQDM_DISABLE := 1
execute test check: export SDPROBE_PROGRESS := 0
# One torch thread wherever outputs are written or compared: float sums can round differently
# with another thread count, and nbval compares printed numbers to their last digit.
execute test check: export OMP_NUM_THREADS := 1
# Pinned arithmetic: the notebook runner (make execute, make rerun) and pytest (make test, nbval's
# kernels) cap torch, oneDNN, MKL and NumPy at AVX2 (ATEN_CPU_CAPABILITY, DNNL_MAX_CPU_ISA,
# MKL_CBWR, NPY_DISABLE_CPU_FEATURES), so the committed outputs' digits come out on any x86-64
# processor; lib/sdprobe/arithmetic.py sets them and says why. ARITHMETIC=native lifts the pin.
ARITHMETIC ?= avx2
export SDPROBE_ARITHMETIC := $(ARITHMETIC)
export PYDEVD_DISABLE_FILE_VALIDATION := 1

NOTEBOOKS ?= all
PRESETS   ?= default

.PHONY: install book execute html test check chromium lab rerun toy clean help

help:
	@echo "make book   install, execute every notebook on the toy model, build the HTML book into $(BUILD)"
	@echo "make test   install, build the book from committed outputs, run the library, notebook and page tests"
	@echo "make check  the developers' quick loop: the library tests without notebooks, pages, Ray or training"
	@echo "make lab    open the notebooks in JupyterLab, on the project's kernel (.venv, pinned arithmetic)"
	@echo "make rerun  NOTEBOOKS='00 01' PRESETS='default paper' [RAY=local|ADDRESS] [ONLINE=1]  batch papermill reruns into runs/"
	@echo "            (any target: ARITHMETIC=native lifts the pinned AVX2 arithmetic; faster, other last digits)"
	@echo "make toy    retrain the embedded toy model from scratch into data/models/toy (CPU, several hours; resumable)"

# torch first and pinned, so the resolver never reaches for a newer CUDA build. daam 0.2.0, the
# reference the heat-map tests compare against, pins an old diffusers: it comes without its
# dependencies (those it imports are in the test extra). pip byte-compiles on one core, so it
# installs without compiling and compileall then does it once on every core (passing over, as pip
# does, the few files written for a newer Python).
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip 2>&1 | (grep -v "^WARNING: Location" || true)
	$(BIN)/python -m pip install -q --no-compile torch==2.13.0 2>&1 | (grep -v "^WARNING: Location" || true)
	$(BIN)/python -m pip install -q --no-compile -e ".[book,test]" 2>&1 | (grep -v "^WARNING: Location" || true)
	$(BIN)/python -m pip install -q --no-compile --no-deps daam==0.2.0 2>&1 | (grep -v "^WARNING: Location" || true)
	$(BIN)/python -m compileall -q -j 0 $(VENV)/lib > /dev/null || true
	$(BIN)/python -c "import torch, diffusers, transformers, sdprobe, daam; assert torch.__version__.startswith('2.13.0'), torch.__version__"
	touch $(STAMP)

install: $(STAMP)

execute: install
	$(BIN)/python -m sdprobe.book.runs book --notebooks $(NOTEBOOKS)

html: install
	rm -rf _build/.doctrees
	$(BIN)/jupyter-book build . --warningiserror --nitpick --keep-going --builder html

book: execute html
	@echo "The book is in $(BUILD)/index.html"

# Debian's Chromium for the page checks, and CJK fonts so that the Japanese titles of the sources
# render as text, not boxes; installed once, as root or through sudo.
chromium:
	@{ test -x /usr/bin/chromium && fc-list 2>/dev/null | grep -qi "Noto Sans CJK"; } || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -q && $$SUDO apt-get install -y -q chromium fonts-noto-cjk; }

# JupyterLab on the project's kernel: the .venv's Python, registered as "sdprobe" with the pinned
# arithmetic and offline Hub in its environment, so a cell run by hand prints the book's digits.
# jupytext pairs each .ipynb with its .py on save. Committed outputs still come from make execute.
LAB_PORT ?= 8888
lab: install
	$(BIN)/python -m pip install -q "jupyterlab>=4" 2>&1 | (grep -v "^WARNING: Location" || true)
	$(BIN)/python -m sdprobe.book.lab $(VENV)
	$(BIN)/jupyter lab --port=$(LAB_PORT) --notebook-dir=. --ServerApp.default_url=/lab/tree/notebooks \
	  --KernelSpecManager.allowed_kernelspecs=sdprobe --MappingKernelManager.default_kernel_name=sdprobe

# Two pytest workers, one torch thread each: the toy's small tensors keep two threads of one
# process half idle, so two processes get through the notebooks and tests about 1.5x faster.
# Each notebook stays on one worker (--dist loadfile): nbval runs its cells in order.
# Everything: -m "" lifts pyproject's quick-loop filter (no slow tests), --nbval re-executes each
# committed notebook, the long notebooks first so that the two workers finish together.
NBVAL := --nbval --nbval-current-env --nbval-cell-timeout=900 --nbval-sanitize-with=tests/nbval_sanitize.cfg
test: install chromium html
	$(BIN)/python -m pytest -n 2 --dist loadfile -m "" $(NBVAL) notebooks tests

# The developers' quick loop: the library tests only (no notebooks, pages, Ray or training).
check: install
	$(BIN)/python -m pytest -n 2 --dist loadfile

# RAY=local starts a Ray cluster on this machine; RAY=<address> joins one (see book/cluster.md).
RAY ?=
rerun: install
	$(BIN)/python -m sdprobe.book.runs batch --notebooks $(NOTEBOOKS) --presets $(PRESETS) \
	  $(if $(RAY),--ray $(if $(filter local,$(RAY)),,$(RAY)),)

# Deterministic from seeds; checkpoints in .toytrain/ make an interrupted run resume.
toy: install
	$(BIN)/python -m sdprobe.toy.train
	$(BIN)/python -m sdprobe.toy.evaluate
	$(BIN)/python -m sdprobe.toy.card

clean:
	rm -rf _build runs
