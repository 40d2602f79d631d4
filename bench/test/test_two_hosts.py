"""The separate mode across two hosts: estimator and trainer in two network namespaces, UDP between them.

The robot namespace runs ``depth_estimator`` and a camera (an RGB-D stream for the
trainer and a fixed probe image for the estimator, ``benchmarks.two_hosts``); the
workstation namespace runs ``online_trainer``. They share nothing but a veth pair, so
the trainer's images and the estimator's weights cross it as UDP datagrams (the veth's
byte counters are checked). Skipped with the reason where namespaces cannot be created
(not root, no iproute2): found by trying. Needs no GPU; each case takes ~20-40 s.
"""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ros_helpers import FAST_ROUNDS

from depth_estimator_ros import models
from depth_estimator_ros.adaptation.payload import import_payload
from depth_estimator_bench.netns import NamespaceError, TwoHosts
from depth_estimator_bench.two_hosts import trainer_idle_version, run_case
from depth_estimator_ros.learning.predictor import Predictor
from depth_estimator_ros.ros.large_messages import LOSSY_LINK_PROFILE

SOURCE = "synthetic:seed=0,frames=20,width=32,height=24"  # 2 + 2 datagrams a pair: some pass 15 % loss


@pytest.fixture
def hosts():
    """Two fresh namespaces joined by a veth pair, removed afterwards whatever happened."""
    hosts = TwoHosts("dt")
    try:
        hosts.open()
    except NamespaceError as exc:
        pytest.skip(f"two network namespaces cannot be created here: {exc}")
    try:
        yield hosts
    finally:
        hosts.close()
    assert hosts.robot.namespace not in _namespaces() and hosts.workstation.namespace not in _namespaces()


def _namespaces() -> str:
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout


def test_a_setup_failing_half_way_removes_what_it_created():
    hosts = TwoHosts("dt")
    # an interface name longer than the kernel's 15 characters: refused after both namespaces exist
    hosts.robot = dataclasses.replace(hosts.robot, device="x" * 20)
    with pytest.raises(NamespaceError) as failure:
        hosts.open()
    if "create the veth pair" not in str(failure.value):
        pytest.skip(f"two network namespaces cannot be created here: {failure.value}")
    assert "x" * 20 in str(failure.value)  # the message names the command that failed
    assert hosts.robot.namespace not in _namespaces() and hosts.workstation.namespace not in _namespaces()


def test_the_trainer_counts_as_settled_only_after_three_idle_statuses_after_the_stop():
    idle = {"round_in_progress": "False", "version": 4.0, "rounds_run": 5.0, "frames_offered": 40.0}
    busy = {**idle, "round_in_progress": "True"}
    assert trainer_idle_version({"trainer": [(t, idle) for t in (9.0, 11.0, 12.0)]}, after=10.0) is None  # one early
    assert trainer_idle_version({"trainer": [(t, idle) for t in (11.0, 12.0, 13.0)]}, after=10.0) == (4,)
    assert trainer_idle_version({"trainer": [(11.0, idle), (12.0, busy), (13.0, idle)]}, after=10.0) is None
    later = {**idle, "frames_offered": 41.0}  # a frame still came in: a round may follow
    assert trainer_idle_version({"trainer": [(11.0, idle), (12.0, idle), (13.0, later)]}, after=10.0) is None
    assert trainer_idle_version({"trainer": [(t, {**idle, "version": 0.0}) for t in (11, 12, 13)]}, after=10) == (0,)


def _run(hosts: TwoHosts, tmp_path: Path, checkpoint: Path, **kwargs: Any) -> dict[str, Any]:
    # Generous deadlines: the three processes start torch on a shared 2-core machine; the
    # conditions, not the time, end each phase.
    return run_case(
        hosts, tmp_path, checkpoint=str(checkpoint), data=SOURCE, frames=20, rate_hz=15.0,
        stream_timeout_s=120.0, start_timeout_s=120.0, converge_timeout_s=120.0,
        estimator_params={"backend": "torch"}, trainer_params=FAST_ROUNDS, **kwargs,
    )


def _assert_converged_over_udp(result: dict[str, Any], min_versions: int) -> None:
    assert result["exit_codes"] == {"camera": 0, "trainer": 0, "estimator": 0}, result["files"]
    assert not result["tracebacks"], f"tracebacks in the logs of {result['tracebacks']}: {result['files']}"
    assert not result["bad_payloads"]
    published = {int(v) for v in result["published"]}
    assert len(published) >= min_versions, f"only {sorted(published)} published in {result['stream_s']} s"
    in_force = {int(v) for v in result["in_force"]}
    assert in_force and in_force <= published, (in_force, published)  # the trainer's versions reached the robot
    assert result["converged"], result.get("converge_error")
    assert result["final_version"] == max(published) == max(in_force) == result["estimator_version"], (
        result["final_version"], sorted(published), sorted(in_force))
    # every payload the robot received came through the veth: no shared memory between the namespaces
    assert result["link_bytes"]["robot_received"] >= result["payload_bytes_seen"] > 0


def _assert_depth_computed_with(result: dict[str, Any], checkpoint: Path, version: int) -> None:
    """The estimator's last probe depth equals the prediction with ``version``'s weights, not the base's."""
    camera_dir = Path(result["files"]["camera_dir"])
    rgb = np.load(camera_dir / "probe_rgb.npy")
    last_digest = result["camera"]["depth"][-1][2]
    with np.load(camera_dir / "depth_outputs.npz") as outputs:
        depth = outputs[last_digest]
    model, _ = models.load_checkpoint(checkpoint, arch="fast")
    base = Predictor(model).predict(rgb)
    payload = Path(result["camera"]["weights"][str(version)]["path"]).read_bytes()
    assert import_payload(model, payload) == version
    expected = Predictor(model).predict(rgb)
    assert np.nanmax(np.abs(expected - base)) > 1e-4, "the version does not change the probe's depth"
    np.testing.assert_allclose(depth, expected, rtol=1e-5, atol=1e-6)


def test_weights_cross_the_link_over_udp_and_the_estimator_computes_depth_with_them(hosts, checkpoint, tmp_path):
    result = _run(hosts, tmp_path, checkpoint, min_versions=2)
    _assert_converged_over_udp(result, min_versions=2)
    assert result["loss"] == "none"
    assert result["stream"]["pairs_at_trainer"] > 0
    _assert_depth_computed_with(result, checkpoint, result["final_version"])


def test_with_packet_loss_nothing_crashes_and_the_estimator_converges_to_the_latest_version(
    hosts, checkpoint, tmp_path
):
    # netem (15 % loss, 20 ms delay) where the kernel has it, else random loss alone (the result says which)
    try:
        hosts.add_loss(15.0, delay_ms=20.0)
    except NamespaceError as exc:
        pytest.skip(f"packet loss cannot be emulated here: {exc}")
    # the package's profile for lossy links on both sides (with 64 KiB datagrams no payload gets through)
    result = _run(hosts, tmp_path, checkpoint, min_versions=3, profile=LOSSY_LINK_PROFILE)
    print(f"link: {result['loss']}; RGB-D pairs at the trainer {result['stream']}; "
          f"converged in {result['converge_s']} s")
    assert "15%" in result["loss"]
    _assert_converged_over_udp(result, min_versions=3)
    assert result["stream"]["lost_fraction"] > 0.0  # the loss was real
    _assert_depth_computed_with(result, checkpoint, result["final_version"])
