# The two commands of the README:
#   make demo   set up .venv (first run only) and show the activations: a table and a plot
#   make test   set up .venv (first run only) and run the whole test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.actplug-installed
PLOT ?= actplug-activations.png

.PHONY: setup demo test lint clean

# PIP_FIND_LINKS is cleared because some machines point it at a CPU-only torch wheel for which no
# torchvision build exists (`import torchvision` then fails); the registry's torch works on CPUs too.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	env -u PIP_FIND_LINKS $(PY) -m pip install --quiet --upgrade pip
	env -u PIP_FIND_LINKS $(PY) -m pip install --quiet -e ".[dev]"
	$(PY) -c "import torchvision.ops, timm, transformers" || { \
		echo "set-up check failed: torchvision/timm do not import with the installed torch;"; \
		echo "delete $(VENV) and run 'make setup' again (see README, Troubleshooting)"; exit 1; }
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/actplug list
	$(VENV)/bin/actplug plot smu smu1 lpflu srelu ash pflu fpflu gish "smu:alpha=0.01,mu=2.5" --derivative -o $(PLOT)

test: $(STAMP)
	$(PY) -m pytest -n 2

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
