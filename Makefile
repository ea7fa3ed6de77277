# `make demo` runs the main job, `make test` the test suite; both set everything up first.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.stemcodec-installed

.PHONY: setup demo test lint clean

$(STAMP): pyproject.toml scripts/setup.sh
	VENV=$(VENV) bash scripts/setup.sh
	touch $(STAMP)

setup: $(STAMP)

# The main job. Until the bundled models exist (issue 7) it is the most complete pipeline:
# render a small folk-band corpus and encode it into a token cache.
demo: setup
	$(PY) -m stemcodec.render --recipe folk-band --limit 8 --variants 1 --out demo/corpus
	$(PY) -m stemcodec.prepare demo/corpus --out demo/cache --slots vocals-free --codec debug

test: setup
	$(PY) -m pytest
	$(VENV)/bin/ruff check .

lint: setup
	$(VENV)/bin/ruff check .

clean:
	rm -rf demo out .pytest_cache
