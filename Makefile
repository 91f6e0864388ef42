# The two commands of the README. Both set up .venv themselves (Python >= 3.10 on PATH).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=
# Extra `covidct train` flags for the demo (tests/test_readme.py: --set epochs=2, the same path in seconds).
DEMO_ARGS ?=

.PHONY: demo test test-fast bench lock clean

$(BIN)/covidct: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

# The main job end to end on the embedded default: synthetic phantoms -> covid_ct/64 -> a short
# 64x64 run in runs/demo -> 16 synthetic PNGs in out/demo. No bucket, no cluster, no download.
demo: $(BIN)/covidct
	$(BIN)/covidct prepare --demo --config 64 --data-dir data/tfds
	$(BIN)/covidct train --preset demo --run runs/demo $(DEMO_ARGS)
	$(BIN)/covidct generate --run runs/demo --n 16 --out out/demo

# Every test, heavy ones included (what CI runs), one process per core (at most 4); tests/conftest.py
# asks for each module in one process (tests/test_grouping.py checks it is honoured).
XDIST ?= -n auto --maxprocesses 4 --dist loadgroup
test: $(BIN)/covidct
	$(BIN)/python -m pytest $(XDIST) $(PYTEST_ARGS)

# The quick loop: everything not marked heavy.
test-fast: $(BIN)/covidct
	$(BIN)/python -m pytest $(XDIST) -m 'not heavy' $(PYTEST_ARGS)

# The full benchmark (~35 min on 2 cores); BENCH_ARGS=--quick for the smoke run.
bench: $(BIN)/covidct
	$(BIN)/python -m bench --json runs/bench/bench.json $(BENCH_ARGS)

# Re-resolve requirements.lock (the image's pinned packages) after changing pyproject.toml's pins.
lock: $(BIN)/covidct
	$(BIN)/pip install --quiet --dry-run --ignore-installed --report .lock-report.json \
	  "tensorflow[and-cuda]==2.21.0" "ray[default,train,tune]==2.60.0" .
	$(BIN)/python .ci/lock.py .lock-report.json requirements.lock
	rm -f .lock-report.json

clean:
	rm -rf runs out data/tfds .pytest_cache
