# Two commands set everything up on a fresh clone:
#   make repro   install (first time) and run the whole pipeline on the default params
#   make test    install (first time), lint and run the test suite
VENV := .venv
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: install repro test serve

$(VENV)/.installed: requirements.txt
	test -x $(VENV)/bin/python || python3 -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q -r requirements.txt
	touch $@

install: $(VENV)/.installed

repro: install
	dvc repro

test: install
	ruff check .
	ruff format --check .
	python -m pytest

serve: install
	python app.py
