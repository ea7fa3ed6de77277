# `make demo` runs the main job, `make test` the test suite; both set everything up first.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.stemcodec-installed

.PHONY: setup demo pipeline-demo test lint clean

$(STAMP): pyproject.toml scripts/setup.sh
	VENV=$(VENV) bash scripts/setup.sh
	touch $(STAMP)

setup: $(STAMP)

# The main job: four stems and their mix from the bundled default model (offline, CPU), and
# a solo piano from the single-instrument model.
demo: setup
	$(PY) -m stemcodec.generate --slots vocals-free:4 --out demo/vocals-free-4
	$(PY) -m stemcodec.generate --slots solo-piano --out demo/solo-piano

# The data pipeline on its own: render a small folk-band corpus into exact stems and encode it
# into a token cache with the bundled mini codec.
pipeline-demo: setup
	$(PY) -m stemcodec.render --recipe folk-band --limit 8 --variants 1 --out demo/corpus
	$(PY) -m stemcodec.prepare demo/corpus --out demo/cache --slots vocals-free --codec mini

test: setup
	$(PY) -m pytest
	$(VENV)/bin/ruff check .

lint: setup
	$(VENV)/bin/ruff check .

clean:
	rm -rf demo out .pytest_cache
