# Two commands do everything on a fresh machine: `make run` and `make test`.
# Every install step lives here; each is idempotent and skipped when already done.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMPS := .stamps
OPENCODE_VERSIONS := 1.18.33 1.0.152
OPENCODE_BINS := $(foreach v,$(OPENCODE_VERSIONS),.opencode/$(v)/bin/opencode)
PYTEST_ARGS ?=

.PHONY: setup run test lint typecheck bench chaos demo clean

setup: $(STAMPS)/python $(OPENCODE_BINS) $(STAMPS)/debian

$(STAMPS)/python: pyproject.toml requirements/constraints.txt
	@echo "==> Python environment in $(VENV) (pinned by requirements/constraints.txt)"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check \
		-c requirements/constraints.txt -e '.[dev,bench]'
	@mkdir -p $(STAMPS) && touch $@

.opencode/%/bin/opencode:
	@echo "==> OpenCode $* from npm into .opencode/$*"
	@tools/install-opencode.sh $*

$(STAMPS)/debian: tools/ensure-debian-packages.sh
	@echo "==> Debian packages: ripgrep (OpenCode 1.0.x needs rg), chromium (browser tests)"
	@tools/ensure-debian-packages.sh rg:ripgrep chromium:chromium
	@mkdir -p $(STAMPS) && touch $@

run: setup
	@$(BIN)/openchamber

test: setup
	@$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: setup
	@$(BIN)/ruff check src tests bench
	@$(BIN)/ruff format --check src tests bench
	@$(BIN)/mypy

bench: setup
	@$(BIN)/python -m bench

# The chaos matrix (tests/chaos): every fault x both pinned versions x CHAOS_RUNS runs; the
# results go to .chaos/results.jsonl and docs/RELIABILITY.md is rendered from them.
CHAOS_RUNS ?= 10
chaos: setup
	@mkdir -p .chaos && rm -f .chaos/results.jsonl
	@OPENCHAMBER_CHAOS=full OPENCHAMBER_CHAOS_RUNS=$(CHAOS_RUNS) \
		OPENCHAMBER_CHAOS_RESULTS=.chaos/results.jsonl \
		$(BIN)/python -m pytest tests/chaos/test_chaos.py -m chaos -p no:cacheprovider $(PYTEST_ARGS); \
		status=$$?; $(BIN)/python -m tests.chaos.report; exit $$status

# A long run of the bridge under a steady stream of replies: RSS, fds, tasks, ring over time.
MINUTES ?= 30
.PHONY: soak
soak: setup
	@mkdir -p .chaos
	@$(BIN)/python -m tests.chaos.soak --minutes $(MINUTES)
	@$(BIN)/python -m tests.chaos.report

demo: setup
	@$(BIN)/openchamber demo

clean:
	rm -rf $(VENV) $(STAMPS) .opencode .pytest_cache .mypy_cache .ruff_cache
