"""Shared fixtures of both test folders (test/: the runtime, bench/test/: the harness).

An isolated ROS domain per run, the real data folder, small torch; the runtime's test
helpers (test/ros_helpers.py) importable from both folders.
"""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path

import pytest
from hypothesis import settings

# Give every test run its own DDS domain on localhost so parallel runs never hear each
# other; `make test` sets these too, this covers a bare `pytest` call.
os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(1, 100)))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

# Hypothesis (property-based fuzz tests, test/test_fuzz_*.py): `make test` runs the bounded,
# derandomized "ci" profile; `make fuzz` sets HYPOTHESIS_PROFILE=fuzz for a long run that
# keeps its example database (.hypothesis/) to replay what it found. No deadline: the
# machine is shared and small, a slow example is not a failure.
settings.register_profile("ci", max_examples=150, deadline=None, derandomize=True, database=None,
                          print_blob=True)
settings.register_profile("fuzz", max_examples=5000, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

PROJECT_ROOT = Path(__file__).resolve().parent
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"
# One set of ROS test helpers (ros_helpers) for the runtime's and the harness's tests.
sys.path.insert(0, str(PROJECT_ROOT / "test"))


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Run every test on one torch intra-op thread and restore the setting afterwards.

    The suite's tensors are tiny, and on a loaded 2-core machine (CI, or nodes spun in
    the same process) a second OpenMP thread spin-waits: rounds and forward passes
    measured 10-50x slower than with one. Tests that change it (CLIs' ``--threads``)
    do not leak their setting into the next test.
    """
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(autouse=True)
def ros_home(tmp_path_factory, monkeypatch) -> Path:
    """Give every test a ``ROS_HOME`` of its own (inherited by the nodes it starts in child processes).

    A trainer started with the default ``room_memory_dir`` keeps its room memory under
    ``$ROS_HOME``: a test must neither write into the user's ``~/.ros`` nor load the rooms
    another test learnt.
    """
    home = tmp_path_factory.mktemp("ros_home")
    monkeypatch.setenv("ROS_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Return ``../shared/data`` or skip the test with the reason."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real RGB-D recordings not present at {SHARED_DATA} (../shared/data beside the project)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def kitchen_dir(shared_data: Path) -> Path:
    """Return the 7-Scenes kitchen stream folder or skip."""
    path = shared_data / "7scenes_kitchen"
    if not path.is_dir():
        pytest.skip(f"7-Scenes kitchen stream missing at {path}")
    return path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A small untrained ``fast`` checkpoint (64x64 input) made here, so node tests are quick."""
    import torch

    from depth_estimator_ros import models

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "fast64.safetensors"
    models.save_checkpoint(path, models.build_model("fast", input_size=(64, 64)))
    return path
