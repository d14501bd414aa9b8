# Two commands do all set-up on a fresh machine: `make reproduce` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install reproduce reproduce-text reproduce-rl test clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip

# Reinstall when the dependency list changes.
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -e ".[external,peers]"
	touch $(STAMP)

install: $(STAMP)

# Main job on the embedded default data: suite, meta-dataset, benchmark, real-training comparison,
# every figure and figures/summary.md (each step resumes or reuses an identical earlier run in runs/).
reproduce: $(STAMP)
	$(PY) -m metahpo_utils reproduce

# The text domain's results (benchmark, real tuning, transfer across domains, figures/text/) from the
# committed text meta-dataset; add ARGS=--collect to collect it afresh first (about 40 min on 2 cores).
reproduce-text: $(STAMP)
	$(PY) -m metahpo_utils reproduce --domain text $(ARGS)

# The RL domain's results (benchmark, real tuning, figures/rl/) from the committed RL meta-dataset; add
# ARGS=--collect to collect it afresh first (about 67 minutes on 2 cores).
reproduce-rl: $(STAMP)
	$(PY) -m metahpo_utils reproduce --domain rl $(ARGS)

test: $(STAMP)
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) runs
