# pip mode: everything runs from .venv, created and filled from requirements.txt on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
OUT ?= out
# Each test run gets its own ROS domain, discovery limited to this machine.
TEST_DOMAIN := $(shell $(PYTHON) -c "import random; print(random.randint(1, 100))")

.PHONY: demo test bench install clean

$(STAMP): requirements.txt setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST $(VENV)/bin/demo --out $(OUT)/demo

test: $(STAMP)
	ROS_DOMAIN_ID=$(TEST_DOMAIN) ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST $(PY) -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST $(VENV)/bin/bench --out $(OUT)/bench $(BENCH_ARGS)

clean:
	rm -rf $(OUT) .pytest_cache build *.egg-info
