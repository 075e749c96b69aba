# Two commands set everything up on a fresh clone:
#   make repro   install (first time) and run the whole pipeline on the default params
#   make test    install (first time), lint and run the test suite
VENV := .venv
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: install chromium ffmpeg repro test test-fast serve

$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(VENV)/bin/python || python3 -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q -r requirements.txt
	$(VENV)/bin/python -m pip install -q --no-deps -e .   # the svwhisper package and its `svwhisper` command
	touch $@

install: $(VENV)/.installed

# the browser test drives Debian's chromium; installed here when missing (apt-get, as root, as in CI)
chromium:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || \
	  { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	  echo "make: could not install chromium (needs apt-get as root): the browser test will fail (SVWHISPER_SKIP_BROWSER=1 skips it)"

repro: install
	dvc repro

# the exposure tests run with ffmpeg/ffprobe on PATH, as a Hugging Face Space has them (Gradio and pydub call them)
ffmpeg:
	@command -v ffmpeg >/dev/null && command -v ffprobe >/dev/null || \
	  { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg >/dev/null; } || \
	  echo "make: could not install ffmpeg (needs apt-get as root): the tests that need it are skipped, naming it"

test: install chromium ffmpeg
	ruff check .
	ruff format --check .
	python -m pytest

# the fast tier: unit tests and small stage runs, no pipeline runs (about a minute on 2 cores)
test-fast: install
	python -m pytest -m "not slow"

serve: install
	python app.py
