# wavegen entry points. Two commands set up and use a fresh clone:
#   make demo   install, then run the demo (analysis + resynthesis of generated audio, PNGs)
#   make test   install with the test extras, then run the whole test suite
#
# The install steps work inside an already active virtual environment (VIRTUAL_ENV set),
# or else create ./.venv. They install a CPU build of torch (torch==2.13.0) only when no
# torch imports, so a torch you already have (a CUDA build, say) is kept.
#
#   make install        wavegen and its runtime dependencies only (what `demo` and `bench` use)
#   make install-test   the above plus the test extras: pytest, hypothesis and triton, whose
#                       kernels the tests run under TRITON_INTERPRET=1 (about 1 GB; a CPU-only
#                       machine that only runs the demo never downloads it)
#
# Each step leaves a stamp file in the environment and runs again when pyproject.toml changes.

ifdef VIRTUAL_ENV
VENV := $(VIRTUAL_ENV)
else
VENV := $(CURDIR)/.venv
endif
PY := $(VENV)/bin/python
TORCH_CPU_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.wavegen-installed
TEST_STAMP := $(VENV)/.wavegen-installed-test

.PHONY: install install-test demo test bench clean

install: $(STAMP)

install-test: $(TEST_STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	@$(PY) -c "import torch" 2>/dev/null \
		&& echo "keeping installed torch $$($(PY) -c 'import torch; print(torch.__version__)')" \
		|| $(PY) -m pip install $(TORCH_CPU_SPEC)
	$(PY) -m pip install -e .
	@touch $(STAMP)

$(TEST_STAMP): pyproject.toml $(STAMP)
	$(PY) -m pip install -e ".[test]"
	@touch $(TEST_STAMP)

demo: install
	$(VENV)/bin/wavegen demo --out demo_out

test: install-test
	$(PY) -m pytest -q

bench: install
	$(PY) scripts/bench_spectral.py
	$(PY) scripts/bench_wavenet_sampling.py
	$(PY) scripts/bench_dataloader.py

clean:
	rm -rf demo_out bench_out .pytest_cache .hypothesis build *.egg-info
