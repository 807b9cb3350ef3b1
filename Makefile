# The two commands of the README: `make lab` and `make test`. Both set themselves up.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: lab test install clean bench lint noloss

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

lab: $(STAMP)
	$(BIN)/labsim certs --out certs
	$(BIN)/labsim run hybrid-baseline

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check labsim tests --select E,F,W,I --ignore E501
	$(BIN)/mypy labsim

clean:
	rm -rf $(VENV) labsim-out

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_run.py

# No-loss load test of `labsim up` (faults, resets mid-DATA, a SIGTERM restart): make noloss MESSAGES=5000
MESSAGES ?= 3000
noloss: $(STAMP)
	$(BIN)/python benchmarks/noloss.py --messages $(MESSAGES)
