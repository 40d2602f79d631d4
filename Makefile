# pip mode: everything runs from .venv, created and filled from requirements.txt on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
OUT ?= out
# Each test run gets its own ROS domain, discovery limited to this machine.
TEST_DOMAIN := $(shell $(PYTHON) -c "import random; print(random.randint(1, 100))")

.PHONY: demo test lint fuzz bench install clean params

# The runtime package (.) and, beside it, the measurement harness (bench/: benchmarks,
# prequential and tour evaluation, demo), each an editable install of its own.
$(STAMP): requirements.txt setup.py bench/setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e . -e bench
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST $(VENV)/bin/demo --out $(OUT)/demo

# The ROS 2 distro path (launch files, launch_testing, the ros2 CLI, colcon) where the Jazzy
# launch stack is beside the project: installed into .venv once, then `make test` builds the
# package the colcon way and runs the suite with `colcon test` (test/distro_ci.sh).
# Without it the suite runs with pytest and the distro tests skip with the reason.
ROS2_JAZZY := ../shared/ros2_jazzy
DISTRO_STAMP := $(VENV)/.ros2_jazzy-installed

$(DISTRO_STAMP): $(STAMP) $(ROS2_JAZZY)/install
	$(ROS2_JAZZY)/install $(PY)
	$(PY) -m pip install --quiet 'colcon-common-extensions>=0.3,<0.4'
	touch $(DISTRO_STAMP)

# config/live.yaml and docs/NODES.md's parameter tables are generated from the one table,
# depth_estimator_ros/parameters.py; run this after changing it (test_parameters.py checks).
params: $(STAMP)
	$(PY) -m depth_estimator_ros.parameters_doc --write

# The lint gate: ruff (pinned in requirements.txt) with the rules chosen in ruff.toml.
# `make test` runs it first, on both paths below.
lint: $(STAMP)
	$(VENV)/bin/ruff check --no-cache .

ifneq ($(wildcard $(ROS2_JAZZY)/install),)
test: lint $(DISTRO_STAMP)
	ROS_DOMAIN_ID=$(TEST_DOMAIN) ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST test/distro_ci.sh $(PY) $(PYTEST_ARGS)
else
test: lint $(STAMP)
	ROS_DOMAIN_ID=$(TEST_DOMAIN) ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST $(PY) -m pytest $(PYTEST_ARGS)
endif

# Property-based fuzzing (hypothesis) with the long profile (test/conftest.py): the same fuzz
# tests `make test` runs with a bounded number of examples, 5000 examples each here.
fuzz: $(STAMP)
	HYPOTHESIS_PROFILE=fuzz ROS_DOMAIN_ID=$(TEST_DOMAIN) ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST \
		$(PY) -m pytest test/test_fuzz_*.py $(PYTEST_ARGS)

bench: $(STAMP)
	ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST $(VENV)/bin/bench --out $(OUT)/bench $(BENCH_ARGS)

clean:
	rm -rf $(OUT) .pytest_cache build *.egg-info
