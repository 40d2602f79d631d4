"""The main job of ``make demo``: a recorded RGB-D session replayed through the live pipeline.

What a user would do on a robot, end to end, with real processes and real DDS:

1. a base model: the checkpoint shipped with the package (``fast`` with an ImageNet
   MobileNetV2 encoder trained on real rooms, never on the kitchen), used at once;
   ``--retrain`` pretrains one on synthetic rooms instead (a few minutes, then reused);
2. a rosbag2 of an RGB-D stream on the Kinect driver's topics: the real 7-Scenes
   kitchen (Kinect v1) when ``../shared/data`` is beside the project, otherwise a
   synthetic room the base model has never seen;
3. the ``live`` process (estimator + online trainer) started twice, once with
   ``adaptation_enabled:=true`` and once with ``false``; the bag is played into it
   with its recorded timing, and every predicted depth image that comes back is
   scored against the sensor depth of its frame (test, then train: a frame reaches
   the trainer at the same moment as the estimator, so it is predicted before the
   network ever trained on it);
4. a report: ``report.json`` (metrics over time windows for both runs, rates,
   weight versions) and ``report.png`` (RMSE, AbsRel and delta1 over time, with and
   without adaptation, and sample panels RGB | sensor depth | frozen | adapted).
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from depth_estimator_ros import models
from depth_estimator_ros.atomic import write_json
from depth_estimator_bench.common import KITCHEN
from depth_estimator_bench.roshelpers import NodeProcess, RosClient, set_bench_domain, stamp_ns, wait_until
from depth_estimator_ros.data import open_source
from depth_estimator_ros.data.frame import Frame
from depth_estimator_ros.learning.losses import valid_mask
from depth_estimator_ros.learning.metrics import POOLED_METRICS, compute_metrics, pool_frame_metrics, window_metrics
from depth_estimator_ros.parameters import KINECT_TOPICS
from depth_estimator_ros.ros import codec
from depth_estimator_ros.ros.pairing import StampPairer

__all__ = ["DemoRun", "default_data", "ensure_base_checkpoint", "ensure_bag", "play_through_live", "run_demo"]

SYNTHETIC_FALLBACK = "synthetic:seed=1234,frames=450,width=320,height=240"
PRETRAIN_DATA = "synthetic:seed=0,frames=2000,width=320,height=240,rooms=400"  # demo --retrain
LIVE_MODULE = "depth_estimator_ros.ros.live"
# The bag's topics are the Kinect driver's, which are the live process's defaults.
RGB_TOPIC = KINECT_TOPICS["image"]
SENSOR_DEPTH_TOPIC = KINECT_TOPICS["depth"]
SAMPLE_FRACTIONS = (0.1, 0.5, 0.9)  # where in the stream the sample panels are taken


def default_data() -> str:
    """Return the demo's stream: the real kitchen when present, else an unseen synthetic room."""
    return str(KITCHEN) if KITCHEN.is_dir() else SYNTHETIC_FALLBACK


def ensure_base_checkpoint(path: Path, *, minutes: float, data: str = PRETRAIN_DATA, progress: bool = True) -> Path:
    """Return ``path``, pretraining ``fast`` on synthetic rooms for ``minutes`` first if it is missing.

    This is the product's base recipe before the shipped checkpoint (``demo --retrain``):
    MobileNetV3-Small from random weights at 72x96, synthetic rooms only, trained with
    :func:`depth_estimator_ros.learning.trainer.fit` (its logs go to ``<path stem>_training/``
    beside ``path``).

    Args:
        path: the checkpoint to return (written atomically when missing).
        minutes: wall-clock budget of the pretraining.
        data: frame source to pretrain on (``data.open_source`` spec).
        progress: show progress bars.
    """
    if path.is_file():
        return path
    import torch

    from depth_estimator_ros.data.collection import open_training_sources, split_sources
    from depth_estimator_ros.learning.trainer import TrainConfig, fit

    seed = 0
    torch.manual_seed(seed)
    # 72x96 input: on a 2-core CPU the live pipeline then fits several adaptation rounds
    # into a 30 s stream; many rooms with few frames each generalise better than a few
    # long walks. Nothing else runs yet, so training gets every core.
    torch.set_num_threads(os.cpu_count() or 1)
    model = models.build_model("fast", backbone="mobilenet_v3_small", input_size=(72, 96))
    train, val, _test, _split = split_sources(open_training_sources([data]), (0.8, 0.1, 0.1), seed)
    if val is None:
        raise ValueError(f"{data}: no validation frames to pretrain with")
    config = TrainConfig(epochs=50, minutes=minutes, seed=seed, progress=progress)
    result = fit(model, train, val, path.parent / (path.stem + "_training"), config,
                 provenance={"data": [data], "trainer": "depth_estimator_bench.demo.ensure_base_checkpoint"})
    # ``fit`` leaves the best weights in ``model``; keep the provenance its checkpoint recorded.
    models.save_checkpoint(path, model, provenance=models.load_checkpoint(result.checkpoint)[1]["provenance"])
    return path


def _resized(frame: Frame, width: int, height: int) -> Frame:
    import cv2

    if frame.rgb.shape[:2] == (height, width):
        return frame
    depth = None if frame.depth is None else cv2.resize(frame.depth, (width, height), interpolation=cv2.INTER_NEAREST)
    return Frame(
        rgb=cv2.resize(frame.rgb, (width, height), interpolation=cv2.INTER_AREA),
        depth=depth,
        stamp=frame.stamp,
        intrinsics=None if frame.intrinsics is None else frame.intrinsics.scaled(width, height),
        name=frame.name,
    )


def ensure_bag(path: Path, data: str, *, rate_hz: float, every: int, width: int, height: int) -> Path:
    """Return the rosbag2 at ``path``, writing it from ``data`` first if it is missing.

    Args:
        path: bag folder.
        data: frame source spec (see :func:`depth_estimator_ros.data.open_source`).
        rate_hz: playback rate the bag is stamped at (sensor rate / ``every``).
        every: keep every Nth frame of the source.
        width, height: image size in the bag (the source is resized, depth by nearest neighbour).
    """
    from depth_estimator_ros.data.rosbag import write_bag

    if (path / "metadata.yaml").is_file():
        return path
    source = open_source(data)
    frames = (_resized(source[i], width, height) for i in range(0, len(source), every))
    write_bag(path, frames, rate_hz=rate_hz, depth_encoding="16UC1")
    return path


@dataclass
class DemoRun:
    """Per-frame results of one playback through the live process."""

    adapt: bool
    stamps: list[float] = field(default_factory=list)  # seconds from the first frame
    metrics: list[dict[str, float]] = field(default_factory=list)
    samples: dict[int, dict[str, np.ndarray]] = field(default_factory=dict)  # frame index -> arrays
    frames_played: int = 0
    duration_s: float = 0.0  # stream time of the bag: frames x frame period
    predictions_received: int = 0  # depth images the estimator published that reached us
    sensor_received: int = 0  # sensor depth images of the bag that reached us
    weights_versions: list[tuple[float, int]] = field(default_factory=list)  # (s, version)
    wall_s: float = 0.0

    def rows(self) -> list[dict[str, float]]:
        """Return each scored depth image's metrics with its stream time ``t`` (s)."""
        return [{**m, "t": s} for s, m in zip(self.stamps, self.metrics)]

    def window_metrics(self, window_s: float) -> list[dict[str, Any]]:
        """Return RMSE / AbsRel / delta1 pooled over the pixels of consecutive ``window_s`` windows.

        The same definition ``adapt_eval`` reports (:func:`learning.metrics.window_metrics
        <depth_estimator_ros.learning.metrics.window_metrics>`).
        """
        return window_metrics(self.rows(), window_s, self.duration_s)

    def summary(self) -> dict[str, Any]:
        """Return the run's totals: frames, rates, metrics pooled over the whole stream and its second half."""
        rows = self.rows()
        overall = pool_frame_metrics(rows)
        late = pool_frame_metrics([r for r in rows if r["t"] >= self.duration_s / 2])

        def finite(value: float) -> float | None:
            return float(value) if np.isfinite(value) else None

        return {
            "adaptation": self.adapt,
            "frames_played": self.frames_played,
            "depth_images_received": self.predictions_received,
            "sensor_depth_received": self.sensor_received,
            "depth_images_scored": len(self.metrics),
            "depth_rate_hz": len(self.metrics) / self.wall_s if self.wall_s else None,
            "weights_versions": self.weights_versions[-1][1] if self.weights_versions else 0,
            **{key: finite(overall[key]) for key in POOLED_METRICS},
            **{f"second_half_{key}": finite(late[key]) for key in POOLED_METRICS},
        }


class _Scorer:
    """Pair each predicted depth with its frame's sensor depth and score it (subscription callbacks)."""

    def __init__(self, run: DemoRun, *, min_depth: float, max_depth: float, t0_ns: int, sample_at: set[int],
                 rgb_stamps: list[int]) -> None:
        self.run = run
        self.min_depth, self.max_depth = min_depth, max_depth
        self.t0_ns = t0_ns
        self.index_of = {s: i for i, s in enumerate(rgb_stamps)}
        self.sample_at = sample_at
        self.pairer: StampPairer[Any] = StampPairer(tolerance=0.02, queue_size=60)
        self.rgb: dict[int, Any] = {}
        self.lock = threading.Lock()

    def on_prediction(self, msg: Any) -> None:
        self.run.predictions_received += 1
        self._add(stamp_ns(msg.header.stamp), msg, is_prediction=True)

    def on_sensor(self, msg: Any) -> None:
        self.run.sensor_received += 1
        self._add(stamp_ns(msg.header.stamp), msg, is_prediction=False)

    def on_rgb(self, msg: Any) -> None:
        stamp = stamp_ns(msg.header.stamp)
        if self.index_of.get(stamp) in self.sample_at:
            with self.lock:
                self.rgb[stamp] = codec.image_to_rgb(msg).copy()

    def _add(self, stamp: int, msg: Any, *, is_prediction: bool) -> None:
        with self.lock:
            add = self.pairer.add_rgb if is_prediction else self.pairer.add_depth
            pair = add(stamp / 1e9, msg)
        if pair is not None:
            self._score(pair.rgb, pair.depth)

    def _score(self, prediction_msg: Any, sensor_msg: Any) -> None:
        stamp = stamp_ns(prediction_msg.header.stamp)
        pred = codec.image_to_depth(prediction_msg)
        target = codec.image_to_depth(sensor_msg)
        if pred.shape != target.shape:
            import cv2

            pred = cv2.resize(pred, target.shape[::-1], interpolation=cv2.INTER_LINEAR)
        valid = valid_mask(target, self.min_depth, self.max_depth) & np.isfinite(pred)
        metrics = compute_metrics(np.nan_to_num(pred), target, valid)
        index = self.index_of.get(stamp)
        with self.lock:
            self.run.stamps.append((stamp - self.t0_ns) / 1e9)
            self.run.metrics.append(metrics)
            if index in self.sample_at:
                self.run.samples[index] = {"pred": pred.copy(), "target": target.copy(), "rgb": self.rgb.pop(stamp, None)}


def play_through_live(bag: Path, checkpoint: Path, *, adapt: bool, log_path: Path, timeout: float = 600.0) -> DemoRun:
    """Start ``live``, play ``bag`` into it at its recorded rate, and score every depth image it publishes."""
    from sensor_msgs.msg import Image
    from std_msgs.msg import UInt32

    from depth_estimator_ros.data.rosbag import iter_raw_messages
    from depth_estimator_ros.ros.bag_player import BagPlayer

    meta = models.load_checkpoint(checkpoint)[1]
    rgb_stamps = _rgb_stamps(bag)
    period_s = (rgb_stamps[-1] - rgb_stamps[0]) / 1e9 / (len(rgb_stamps) - 1) if len(rgb_stamps) > 1 else 0.0
    run = DemoRun(adapt=adapt, frames_played=len(rgb_stamps), duration_s=len(rgb_stamps) * period_s)
    sample_at = {int(f * (len(rgb_stamps) - 1)) for f in SAMPLE_FRACTIONS}
    scorer = _Scorer(run, min_depth=meta["min_depth"], max_depth=meta["max_depth"], t0_ns=rgb_stamps[0],
                     sample_at=sample_at, rgb_stamps=rgb_stamps)
    parameters = {
        "checkpoint": str(checkpoint),
        "device": "cpu",
        "adaptation_enabled": adapt,
        "sensor_scale": adapt,  # off: the base model's own depth
        "max_future_stamp": 0.0,  # recorded stamps, whatever today's clock says
        # The bag player publishes reliably; a reliable subscription then loses no
        # image in transport (best effort loses many large ones, see README).
        "image_reliability": "reliable",
    }
    with NodeProcess(LIVE_MODULE, parameters, log_path) as live, RosClient("demo_player") as client:
        node = client.node
        node.create_subscription(Image, "/depth/image", scorer.on_prediction, 10)
        node.create_subscription(Image, SENSOR_DEPTH_TOPIC, scorer.on_sensor, 30)
        node.create_subscription(Image, RGB_TOPIC, scorer.on_rgb, 30)
        start = time.monotonic()
        node.create_subscription(
            UInt32, "/online_trainer/weights_version",
            lambda m: run.weights_versions.append((time.monotonic() - start, int(m.data))), 10,
        )
        if not wait_until(lambda: live.check_alive() or node.count_publishers("/depth/image") > 0, 120.0, interval=0.1):
            raise RuntimeError(f"the live process did not come up within 120 s; log {log_path}:\n{live.log_tail()}")
        start = time.monotonic()
        # Estimator, trainer and this scorer read the images; trainer and scorer the sensor depth.
        player = BagPlayer(node, rate=1.0, wait_for_subscribers=30.0,
                           expected_subscribers={RGB_TOPIC: 3, SENSOR_DEPTH_TOPIC: 2})
        if not player.play(iter_raw_messages(bag)):
            raise RuntimeError("bag playback was interrupted")
        played = time.monotonic()
        # The last frames are still in flight: wait until each played frame is answered or dropped.
        wait_until(lambda: len(run.metrics) >= len(rgb_stamps) or time.monotonic() - played > 5.0, timeout)
        run.wall_s = time.monotonic() - start
        live.check_alive()
    return run


def _rgb_stamps(bag: Path) -> list[int]:
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import Image

    from depth_estimator_ros.data.rosbag import iter_raw_messages

    stamps = []
    for _topic, _type, _t, raw in iter_raw_messages(bag, topics=[RGB_TOPIC]):
        stamps.append(stamp_ns(deserialize_message(raw, Image).header.stamp))
    if not stamps:
        raise RuntimeError(f"{bag}: no {RGB_TOPIC} messages")
    return stamps


def _plot(runs: list[DemoRun], path: Path, *, window_s: float, max_depth: float, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = sorted(set().union(*(r.samples for r in runs)))
    fig = plt.figure(figsize=(15, 4.2 + 2.6 * len(samples)), constrained_layout=True)
    grid = fig.add_gridspec(1 + len(samples), 4, height_ratios=[1.6] + [1.0] * len(samples))
    curves = (("rmse", "RMSE (m)", slice(0, 1)), ("abs_rel", "AbsRel", slice(1, 2)), ("delta1", "δ<1.25", slice(2, 4)))
    for key, label, columns in curves:
        ax = fig.add_subplot(grid[0, columns])
        for run in runs:
            rows = run.window_metrics(window_s)
            ax.plot([(r["t0"] + r["t1"]) / 2 for r in rows], [r[key] for r in rows], marker="o",
                    label="adaptation on" if run.adapt else "adaptation off (frozen)")
        ax.set_xlabel("stream time (s)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    by_mode = {run.adapt: run for run in runs}
    for row, index in enumerate(samples, start=1):
        frozen, adapted = by_mode.get(False), by_mode.get(True)
        ref = (adapted or frozen).samples.get(index) or (frozen or adapted).samples.get(index)
        panels = [("RGB", ref.get("rgb")), ("sensor depth", ref["target"]),
                  ("frozen", frozen.samples.get(index, {}).get("pred") if frozen else None),
                  ("adapted", adapted.samples.get(index, {}).get("pred") if adapted else None)]
        for col, (label, image) in enumerate(panels):
            ax = fig.add_subplot(grid[row, col])
            ax.axis("off")
            ax.set_title(f"frame {index}: {label}", fontsize=9)
            if image is None:
                continue
            if image.ndim == 3:
                ax.imshow(image)
            else:
                ax.imshow(image, cmap="turbo", vmin=0.0, vmax=min(max_depth, float(np.nanmax(ref["target"])) + 0.5))
    fig.suptitle(title)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def run_demo(out_dir: Path, *, data: str | None = None, checkpoint: Path | None = None,
             retrain: bool = False, pretrain_minutes: float = 4.0, pretrain_data: str = PRETRAIN_DATA,
             every: int = 2, sensor_rate_hz: float = 30.0,
             width: int = 320, height: int = 240, window_s: float = 3.0, progress: bool = True) -> dict[str, Any]:
    """Run the demo end to end and write ``report.json`` and ``report.png`` into ``out_dir``.

    Args:
        out_dir: output folder (the bag and the live processes' logs go there too).
        data: frame source of the stream (default: :func:`default_data`).
        checkpoint: base model; default the shipped one (``models.SHIPPED_CHECKPOINT``).
        retrain: use ``<out_dir>/../pretrained/fast_synthetic.safetensors`` instead,
            pretrained for ``pretrain_minutes`` on ``pretrain_data`` when missing.
        every: keep every Nth frame of the source (a 30 Hz stream played at 15 Hz).
        sensor_rate_hz: the source's own frame rate.
        width, height: image size of the bag.
        window_s: width of the time windows of the report, seconds of stream time; every
            metric is pooled over the pixels of its window or half, as ``adapt_eval`` does.

    Returns:
        The report (also written as JSON).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    domain = set_bench_domain()
    data = data or default_data()
    if retrain:
        checkpoint = ensure_base_checkpoint(
            Path(checkpoint) if checkpoint else out_dir.parent / "pretrained" / "fast_synthetic.safetensors",
            minutes=pretrain_minutes, data=pretrain_data, progress=progress,
        )
    else:
        checkpoint = models.resolve_checkpoint(checkpoint or models.DEFAULT_CHECKPOINT)
    rate_hz = sensor_rate_hz / every
    bag = ensure_bag(out_dir / f"bag_{Path(data).name.replace(':', '_')[:40]}_{width}x{height}_{rate_hz:g}hz",
                     data, rate_hz=rate_hz, every=every, width=width, height=height)
    runs = []
    for adapt in (True, False):
        print(f"[demo] playing {bag.name} through `live` with adaptation {'on' if adapt else 'off'} ...", flush=True)
        runs.append(play_through_live(bag, checkpoint, adapt=adapt, log_path=out_dir / f"live_adapt_{adapt}.log"))
    max_depth = models.load_checkpoint(checkpoint)[1]["max_depth"]
    report = {
        "data": data,
        "bag": str(bag),
        "checkpoint": str(checkpoint),
        "rate_hz": rate_hz,
        "image_size": [width, height],
        "ros_domain_id": domain,
        "cpu_count": os.cpu_count(),
        "runs": {("adapted" if r.adapt else "frozen"): {**r.summary(), "windows": r.window_metrics(window_s)}
                 for r in runs},
    }
    adapted, frozen = report["runs"]["adapted"], report["runs"]["frozen"]
    if adapted["second_half_rmse"] and frozen["second_half_rmse"]:
        report["second_half_rmse_ratio"] = adapted["second_half_rmse"] / frozen["second_half_rmse"]
    write_json(out_dir / "report.json", report)
    _plot(runs, out_dir / "report.png", window_s=window_s, max_depth=max_depth,
          title=f"{Path(data).name}: live pipeline, adaptation on vs off ({rate_hz:g} Hz, {width}x{height})")
    return report
