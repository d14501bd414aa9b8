# Two commands do all set-up on a fresh machine: `make reproduce` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install reproduce test clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip

# Reinstall when the dependency list changes.
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -e ".[external,peers]"
	touch $(STAMP)

install: $(STAMP)

# Main job on the embedded default data: build the default suite, collect its meta-dataset.
reproduce: $(STAMP)
	$(PY) -m metahpo_utils reproduce

test: $(STAMP)
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) runs
