# The two commands of the README: `make lab` and `make test`. Both set themselves up.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: lab test install clean bench lint fuzz noloss

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

# The SMTP fuzz of tests/test_fuzz_smtp.py, longer: `make fuzz LABSIM_FUZZ_SESSIONS=5000 LABSIM_FUZZ_SEED=7`.
LABSIM_FUZZ_SESSIONS ?= 3000
LABSIM_FUZZ_SEED ?= 20261129
fuzz: $(STAMP)
	LABSIM_FUZZ_SESSIONS=$(LABSIM_FUZZ_SESSIONS) LABSIM_FUZZ_SEED=$(LABSIM_FUZZ_SEED) \
		$(BIN)/python -m pytest -q -s -p no:cacheprovider tests/test_fuzz_smtp.py

lint: $(STAMP)
	$(BIN)/ruff check labsim tests --select E,F,W,I --ignore E501
	$(BIN)/mypy labsim

clean:
	rm -rf $(VENV) labsim-out

# `make bench`: tables, not timed tests; benchmarks/README.md says what each figure is and its target.
BENCH_STAMP := $(VENV)/.bench-installed
$(BENCH_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[test,bench]'
	touch $(BENCH_STAMP)

# Scale runs (wall, peak RSS, evidence size per amount of mail): `make bench BENCH_SIZES=1000,10000,50000`.
BENCH_SIZES ?= 1000,10000
bench: $(BENCH_STAMP)
	$(BIN)/python benchmarks/bench_run.py
	$(BIN)/python benchmarks/bench_hop.py
	$(BIN)/python benchmarks/bench_startup.py
	$(BIN)/python benchmarks/bench_scale.py --sizes $(BENCH_SIZES)
	$(BIN)/python benchmarks/bench_generate.py --days 1 --mailboxes 500

# No-loss load test of `labsim up` (faults, resets mid-DATA, a SIGTERM restart): make noloss MESSAGES=5000
MESSAGES ?= 3000
noloss: $(STAMP)
	$(BIN)/python benchmarks/noloss.py --messages $(MESSAGES)
