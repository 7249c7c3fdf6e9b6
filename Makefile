# wavegen entry points. Two commands set up and use a fresh clone:
#   make demo   install, then run the demo (analysis + resynthesis of generated audio, PNGs)
#   make test   install, then run the whole test suite
#
# The install step works inside an already active virtual environment (VIRTUAL_ENV set),
# or else creates ./.venv. It installs a CPU build of torch (torch==2.13.0) only when no
# torch imports, so a torch you already have (a CUDA build, say) is kept.

ifdef VIRTUAL_ENV
VENV := $(VIRTUAL_ENV)
else
VENV := $(CURDIR)/.venv
endif
PY := $(VENV)/bin/python
TORCH_CPU_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.wavegen-installed

.PHONY: install demo test bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	@$(PY) -c "import torch" 2>/dev/null \
		&& echo "keeping installed torch $$($(PY) -c 'import torch; print(torch.__version__)')" \
		|| $(PY) -m pip install $(TORCH_CPU_SPEC)
	$(PY) -m pip install -e ".[test]"
	@touch $(STAMP)

demo: install
	$(VENV)/bin/wavegen demo --out demo_out

test: install
	$(PY) -m pytest -q

bench: install
	$(PY) scripts/bench_spectral.py
	$(PY) scripts/bench_wavenet_sampling.py
	$(PY) scripts/bench_dataloader.py

clean:
	rm -rf demo_out bench_out .pytest_cache .hypothesis build *.egg-info
