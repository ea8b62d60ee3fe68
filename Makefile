# The two set-up commands: `make demo` and `make test`. Both install what they need
# (a venv at .venv with `vend`, Node.js 24 from PyPI, the CDK CLI from npm) and are safe
# to run again: the install step reruns only when a dependency pin changes.

VENV    := .venv
BIN     := $(CURDIR)/$(VENV)/bin
PYTHON  ?= python3
STAMP   := $(VENV)/.installed
export PATH := $(BIN):$(CURDIR)/node_modules/.bin:$(PATH)

.PHONY: install demo test lint bench bench-synth bench-scale clean chromium

$(STAMP): pyproject.toml constraints.txt package.json package-lock.json
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	$(BIN)/npm ci --no-audit --no-fund --loglevel=error
	# Byte-compile vend's own modules once: with PYTHONDONTWRITEBYTECODE set (usual in CI
	# images) every vend command would compile them again (~0.1 s per command).
	$(BIN)/python -m compileall -q app.py baseline stacks scripts
	touch $(STAMP)

install: $(STAMP)

# The HTML drift report is checked in a real browser: Debian's Chromium, installed once
# when missing (CI machines start without it; needs root or sudo).
chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" -eq 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

demo: install
	$(BIN)/vend demo

# pytest exits 5 when it collected no tests: that is a failure, not a pass.
test: install chromium
	$(BIN)/python -m pytest -n 2 --dist loadfile -q; code=$$?; \
	if [ $$code -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; exit $$code

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

# Benchmarks (README, "Benchmarks"): minutes each; not part of the tests.
bench-synth: install
	$(BIN)/python bench/synth_bench.py --clients 1000 --runs 3

bench-scale: install
	$(BIN)/python bench/scale_bench.py --clients 1000 --runs 3

bench: install
	$(BIN)/python bench/deploy_bench.py --clients 200

clean:
	rm -rf $(VENV) node_modules cdk.out
