"""Shared fixtures: an isolated ROS domain per run, the real data folder, small torch."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
from hypothesis import settings

# Give every test run its own DDS domain on localhost so parallel runs never hear each
# other; `make test` sets these too, this covers a bare `pytest` call.
os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(1, 100)))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

# hypothesis profiles: "default" bounded for `make test`, "fuzz" long for `make fuzz`
# (HYPOTHESIS_PROFILE=fuzz). No deadline: a loaded 2-core machine makes single examples slow.
settings.register_profile("default", max_examples=150, deadline=None)
settings.register_profile("fuzz", max_examples=20_000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"


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
