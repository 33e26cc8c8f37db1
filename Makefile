# Two entry points a newcomer needs: `make run` and `make test`.
# Both create the virtualenv on first use, so a fresh clone needs nothing else.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test install bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/paymentd serve

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadfile -q -p no:cacheprovider

clean:
	rm -rf $(VENV) .paymentd
