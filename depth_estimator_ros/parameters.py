"""The parameters of the ``depth_estimator`` and ``online_trainer`` nodes: one table.

Every parameter is one :class:`ParameterSpec` row of :data:`PARAMETERS`: its name, type,
default, range or choices, whether it can change at run time (*live*) or is read-only
after start-up, a description (what ``ros2 param describe`` shows) and the node(s) that
declare it. Everything else is produced from this table:

- the ROS ``ParameterDescriptor`` s and the declared defaults (``ros/params.py``);
- the field defaults and the validation of :class:`~depth_estimator_ros.adaptation.AdaptationConfig`
  (rows with a ``field``), and the engine's live fields;
- the documentation is checked against it: ``config/live.yaml`` and the README's node
  reference tables must list every parameter with the same default (``test/test_parameters.py``).

To add a parameter, add its row here; the test then names what ``config/live.yaml`` and
the README lack. A node reads it with ``values[name]`` after ``declare_parameters`` and, if
it is live, applies changes in its post-set callback.

Plain data: this module imports nothing of the package and neither rclpy nor torch, so
every layer may import it (the bag player too, without loading torch). The vocabularies of
the string parameters are defined here and imported by the code that acts on them
(``models.SCOPES``, ``learning.onnx_backend.BACKENDS``, ``learning.device.DEVICE_CHOICES``,
``ros.qos.IMAGE_RELIABILITY``). ``arch`` is checked by the model registry
(``models.ARCHITECTURES``), which this module cannot import without torch.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any


__all__ = [
    "ESTIMATOR",
    "TRAINER",
    "BOTH",
    "KINDS",
    "SCOPES",
    "BACKENDS",
    "DEVICE_CHOICES",
    "IMAGE_RELIABILITY",
    "DEPTH_OUTPUT_ENCODINGS",
    "DEFAULT_CHECKPOINT_DIR",
    "DEFAULT_ROOM_MEMORY_DIR",
    "ROOM_MEMORY_OFF",
    "room_memory_folder",
    "KINECT_TOPICS",
    "ParameterSpec",
    "PARAMETERS",
    "parameter",
    "node_parameters",
    "node_defaults",
    "engine_parameters",
    "first_problem",
    "live_config_path",
    "load_defaults",
]

#: Node names (the sections of ``config/live.yaml``).
ESTIMATOR = "depth_estimator"
TRAINER = "online_trainer"
BOTH: tuple[str, ...] = (ESTIMATOR, TRAINER)

#: Parameter types, as the README's node reference writes them.
KINDS: tuple[str, ...] = ("bool", "int", "double", "string", "int[2]")

#: Which parameters a training round may change (``scope``; ``DepthModel.set_trainable``).
SCOPES: tuple[str, ...] = ("default", "decoder", "decoder+tail", "all")
#: Inference backends (the estimator's ``backend``; ``learning.Predictor``).
BACKENDS: tuple[str, ...] = ("torch", "onnxruntime", "auto")
#: Device names (``device``); ``learning.device.resolve_device`` also takes ``cuda:N``.
DEVICE_CHOICES: tuple[str, ...] = ("auto", "cpu", "cuda")
#: Values of the ``image_reliability`` parameter (QoS reliability of the camera subscriptions).
IMAGE_RELIABILITY: tuple[str, ...] = ("best_effort", "reliable")
#: Values of the nodes' ``rgb_transport`` parameter (image_transport's plugin names).
RGB_TRANSPORTS: tuple[str, ...] = ("raw", "compressed")
#: Values of the estimator's ``depth_encoding`` parameter.
DEPTH_OUTPUT_ENCODINGS: tuple[str, ...] = ("32FC1", "16UC1")
#: The nodes' relative input topics -> a Kinect (openni/freenect) driver's topics: the
#: default remaps of ``live`` and ``live.launch.py`` (``depth`` is the trainer's sensor
#: input; the estimator's ``sensor_depth`` is remapped to the same topic) and the topics
#: bags are written and read with (``data.rosbag``).
KINECT_TOPICS: dict[str, str] = {
    "image": "/camera/rgb/image_color",
    "depth": "/camera/depth_registered/image_raw",
    "camera_info": "/camera/rgb/camera_info",
}
#: Where the trainer's ``~/save`` writes when ``checkpoint_dir`` is empty.
DEFAULT_CHECKPOINT_DIR = Path("~/.ros/depth_estimator_ros/checkpoints")
#: Where the trainer keeps its room memory when ``room_memory_dir`` is empty, under
#: ``$ROS_HOME`` (``~/.ros`` when unset, as for the ROS logs).
DEFAULT_ROOM_MEMORY_DIR = Path("$ROS_HOME/depth_estimator_ros/rooms")
#: The ``room_memory_dir`` value that turns persistence off.
ROOM_MEMORY_OFF = "none"


def room_memory_folder(value: str) -> Path | None:
    """Return the folder ``room_memory_dir`` names (``~`` expanded), or None for :data:`ROOM_MEMORY_OFF`.

    ``""`` is :data:`DEFAULT_ROOM_MEMORY_DIR` with ``$ROS_HOME`` resolved (``~/.ros`` when unset).
    """
    if value == ROOM_MEMORY_OFF:
        return None
    if not value:
        home = os.environ.get("ROS_HOME") or "~/.ros"
        return Path(home).expanduser() / DEFAULT_ROOM_MEMORY_DIR.relative_to("$ROS_HOME")
    return Path(value).expanduser()


@dataclass(frozen=True)
class ParameterSpec:
    """One node parameter: what it is, its default, the values it takes, who declares it.

    Attributes:
        name: the ROS parameter name.
        kind: one of :data:`KINDS`; ``double`` defaults are floats, so ROS types them double.
        default: the value a node declares when nothing overrides it.
        nodes: the node names that declare it (:data:`ESTIMATOR`, :data:`TRAINER`).
        description: one line for ``ros2 param describe``, with the unit.
        live: may change at run time (``ros2 param set``); read-only after start-up otherwise.
        low, high: range of an ``int`` or ``double``; ``None`` = unbounded on that side.
        low_open, high_open: that end is excluded (a ROS range is closed: the descriptor
            gets the closed range, the set-parameters callback refuses the end itself).
        choices: the only values a ``string`` takes (empty = free text).
        unit: ``s``, ``m`` or ``""``, shown with the type in the README.
        field: the :class:`~depth_estimator_ros.adaptation.AdaptationConfig` field this
            parameter sets, if any.
    """

    name: str
    kind: str
    default: Any
    nodes: tuple[str, ...]
    description: str
    live: bool = False
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[str, ...] = ()
    unit: str = ""
    field: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"{self.name}: kind must be one of {KINDS}, got {self.kind!r}")
        problem = self.problem(self.default)
        if problem or (self.kind == "double" and not isinstance(self.default, float)):
            raise ValueError(f"{self.name}: default {self.default!r} does not fit its own row ({problem or 'a float'})")

    @property
    def range_text(self) -> str:
        """Return the range as ``[low, high]`` / ``(low, high]`` ..., or ``""`` without one."""
        if self.low is None and self.high is None:
            return ""
        low = -math.inf if self.low is None else self.low
        high = math.inf if self.high is None else self.high
        opening = "(" if self.low_open or self.low is None else "["
        closing = ")" if self.high_open or self.high is None else "]"
        return f"{opening}{low}, {high}{closing}"

    @property
    def constraints(self) -> str:
        """Return the constraints in words (``ros2 param describe``'s additional constraints)."""
        if self.choices:
            return "one of " + ", ".join(self.choices)
        if self.kind == "int[2]":
            return "[H, W] integers"
        return f"in {self.range_text}" if self.range_text else ""

    def problem(self, value: Any, *, name: str | None = None) -> str:
        """Return why ``value`` does not fit this row (type, range, choices), or ``""``.

        Args:
            value: a parameter value (for an ``int[2]``, any sequence of two integers).
            name: the name to use in the message (default: the parameter's).
        """
        name = name or self.name
        if self.kind == "bool":
            return "" if isinstance(value, bool) else f"{name} must be a bool, got {value!r}"
        if self.kind == "string":
            if not isinstance(value, str):
                return f"{name} must be a string, got {value!r}"
            if self.choices and value not in self.choices:
                return f"{name} must be one of {', '.join(self.choices)}, got {value!r}"
            return ""
        if self.kind == "int[2]":
            ok = isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 2
            if ok and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
                return ""
            return f"{name} must be [H, W] integers, got {value!r}"
        if self.kind == "int":
            ok = isinstance(value, int) and not isinstance(value, bool) and self._in_range(value)
            if ok:
                return ""
            if self.high is None:
                return f"{name} must be an integer >= {self.low}, got {value!r}"
            return f"{name} must be an integer in {self.range_text}, got {value!r}"
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(float(value))
        if ok and self._in_range(float(value)):
            return ""
        return f"{name} must be a finite number in {self.range_text}, got {value!r}"

    def _in_range(self, value: float) -> bool:
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)


_P = ParameterSpec
_E, _T = (ESTIMATOR,), (TRAINER,)

# One row per parameter, in the order of config/live.yaml: shared, estimator, trainer.
# Adding a parameter: one row here (then the test names the config/live.yaml line and the README row to add).
PARAMETERS: tuple[ParameterSpec, ...] = (
    # -- shared by both nodes: they must start from the same base model
    _P("arch", "string", "fast", BOTH, "model architecture (a models.ARCHITECTURES name)"),
    _P("checkpoint", "string", "default", BOTH,
       "base model checkpoint (.safetensors); default = the shipped base model; empty = untrained weights"),
    _P("input_size", "int[2]", [0, 0], BOTH, "[H, W] model input in pixels without a checkpoint; [0, 0] = the "
       "architecture's default"),
    _P("device", "string", "auto", BOTH, f"torch device: {' | '.join(DEVICE_CHOICES)} | cuda:N"),
    _P("torch_threads", "int", 0, BOTH, "torch intra-op threads; 0 = half the CPUs", low=0, high=256),
    _P("image_reliability", "string", "best_effort", BOTH,
       "QoS reliability of the camera subscriptions: best_effort (matches any camera) or reliable (reliable "
       "cameras only; far fewer lost large images)", choices=IMAGE_RELIABILITY),
    _P("rgb_transport", "string", "raw", BOTH,
       "colour input: raw (sensor_msgs/Image on image) or compressed (sensor_msgs/CompressedImage, JPEG or PNG, "
       "on <image>/compressed as image_transport's compressed plugin publishes it)", choices=RGB_TRANSPORTS),
    _P("max_pixels", "int", 4194304, BOTH, "images with more pixels are refused before decoding", live=True,
       low=1, high=2**31 - 1),
    _P("max_future_stamp", "double", 5.0, BOTH, "seconds a stamp may be ahead of the clock; 0 = no check",
       live=True, low=0.0, high=3600.0, unit="s"),
    _P("time_reset_threshold", "double", 3.0, BOTH,
       "a stamp this many seconds back is a time reset (so is a jump back to the timeline's first stamp); other "
       "steps back are dropped", live=True, low=0.001, high=1e9, unit="s"),
    _P("log_throttle_sec", "double", 5.0, BOTH, "seconds between log lines of one drop reason", live=True,
       low=0.0, high=3600.0, unit="s"),
    _P("diagnostics_period", "double", 1.0, BOTH, "seconds between /diagnostics messages (and the trainer's "
       "numeric topics)", low=0.05, high=60.0, unit="s"),
    # -- depth_estimator
    _P("backend", "string", "auto", _E, "inference backend: torch | onnxruntime | auto (onnxruntime when it "
       "imports and the model exports, else torch; the log says which and why)", choices=BACKENDS),
    _P("trt_cache_dir", "string", "", _E,
       "TensorRT engine cache folder (onnxruntime-gpu with TensorRT on CUDA); empty = no cache"),
    _P("depth_encoding", "string", "32FC1", _E, "encoding of depth: 32FC1 (metres, NaN invalid) or 16UC1 "
       "(millimetres, 0 invalid, half the bytes)", live=True, choices=DEPTH_OUTPUT_ENCODINGS),
    _P("publish_points", "bool", False, _E, "publish depth/points when camera_info is known", live=True),
    _P("points_stride", "int", 2, _E, "keep every Nth pixel per direction in depth/points", live=True,
       low=1, high=64),
    _P("colormap_min_depth", "double", 0.0, _E, "metres at the first colour of depth/colored", live=True,
       low=0.0, high=1000.0, unit="m"),
    _P("colormap_max_depth", "double", 10.0, _E, "metres at the last colour of depth/colored", live=True,
       low=0.0, high=1000.0, unit="m"),
    _P("max_payload_bytes", "int", 0, _E, "weight payloads larger than this are refused before they are parsed; "
       "0 = 1.1 x a full payload of the model + 1 MiB", live=True, low=0, high=2**31 - 1),
    _P("publish_filled", "bool", True, _E, "subscribe to sensor_depth (registered sensor depth) and publish "
       "depth/filled and depth/filled_mask, computed only while subscribed"),
    _P("filled_sync_tolerance", "double", 0.02, _E, "largest stamp difference between a colour frame and the "
       "sensor depth depth/filled is made from, seconds", live=True, low=1e-6, high=1.0, unit="s"),
    _P("room_recognition", "bool", False, _E, "subscribe to the trainer's rooms and put the room recognised by "
       "appearance (or the base) in force; for an estimator without a trainer with sensor depth (a second robot, "
       "the sensor gone)"),
    _P("recognition_period", "int", 10, _E, "frames between two appearance descriptors of room_recognition",
       live=True, low=1, high=100000),
    _P("recognition_hold", "double", 10.0, _E, "seconds after a weights payload during which room_recognition "
       "changes nothing (a trainer with sensor depth judges better)", live=True, low=0.0, high=86400.0, unit="s"),
    # -- online_trainer: the node's own
    _P("adaptation_enabled", "bool", True, _T, "run training rounds (frames are still buffered when false)",
       live=True, field="enabled"),
    _P("sync_tolerance", "double", 0.02, _T, "largest RGB/depth stamp difference of a pair, seconds", live=True,
       low=1e-6, high=1.0, unit="s"),
    _P("sync_queue_size", "int", 10, _T, "unpaired messages kept per topic", low=1, high=1000),
    _P("checkpoint_dir", "string", "", _T, f"directory ~/save writes to; empty = {DEFAULT_CHECKPOINT_DIR}",
       live=True),
    _P("room_memory_dir", "string", "", _T, "folder the room memory is loaded from at start and saved to; "
       f"empty = {DEFAULT_ROOM_MEMORY_DIR} (ROS_HOME defaults to ~/.ros); '{ROOM_MEMORY_OFF}' = not persisted"),
    _P("room_save_period", "double", 10.0, _T, "least seconds between two background saves of the changed rooms; "
       "0 = only at shutdown and on ~/rooms/save", low=0.0, high=3600.0, unit="s"),
    _P("base_data", "string", "", _T, "frame source of base-domain frames replayed to limit forgetting "
       "(data.open_source spec); empty = none"),
    # -- online_trainer: the adaptation engine (AdaptationConfig fields of the same name)
    _P("buffer_capacity", "int", 256, _T, "frames in the replay buffer", low=2, high=100000,
       field="buffer_capacity"),
    _P("recent_fraction", "double", 0.5, _T, "share of the buffer kept as the most recent frames", low=0.0,
       high=1.0, low_open=True, field="recent_fraction"),
    _P("min_new_frames", "int", 8, _T, "new frames that trigger a round", live=True, low=2, high=100000,
       field="min_new_frames"),
    _P("max_new_frames", "int", 12, _T, "most new frames one round trains on", live=True, low=2, high=100000,
       field="max_new_frames"),
    _P("batch_size", "int", 4, _T, "frames per mini-batch", live=True, low=1, high=1024, field="batch_size"),
    _P("epochs_per_round", "int", 3, _T, "passes over a round's frames", live=True, low=1, high=1000,
       field="epochs_per_round"),
    _P("lr", "double", 0.001, _T, "AdamW learning rate", live=True, low=0.0, low_open=True, field="lr"),
    _P("weight_decay", "double", 0.0, _T, "AdamW decoupled weight decay", live=True, low=0.0, high=10.0,
       field="weight_decay"),
    _P("scope", "string", "decoder", _T, "trainable parameters: " + " | ".join(SCOPES), live=True,
       choices=SCOPES, field="scope"),
    _P("grad_clip", "double", 1.0, _T, "max global gradient norm; 0 = no clipping", live=True, low=0.0,
       high=1e6, field="grad_clip"),
    _P("holdout_frames", "int", 2, _T, "newest frames of a round kept out to judge it", live=True, low=1,
       high=1000, field="holdout_frames"),
    _P("accept_tolerance", "double", 0.05, _T, "accept a round with held-out RMSE <= (1 + this) x before",
       live=True, low=0.0, high=100.0, field="accept_tolerance"),
    _P("base_guard", "double", 0.0, _T, "revert to the base weights when, over the last base_guard_rounds "
       "rounds' held-out frames, the weights in force scored an RMSE > (1 + this) x the base's; 0 = off",
       live=True, low=0.0, high=100.0, field="base_guard"),
    _P("base_guard_rounds", "int", 8, _T, "rounds the base guard sums its held-out RMSEs over", live=True,
       low=1, high=1000, field="base_guard_rounds"),
    _P("select_best", "bool", True, _T, "test, then train: each round first scores the weights in force, the "
       "base and the remembered rooms on its new frames and trains from the best", live=True,
       field="select_best"),
    _P("select_margin", "double", 0.05, _T, "evidence a candidate needs to replace the weights in force: its "
       "summed log RMSE advantage over rounds, less a drift of this/2 per round (this/4 for the base)", live=True,
       low=0.0, high=0.9, field="select_margin"),
    _P("max_rooms", "int", 8, _T, "rooms the room memory keeps (least recently used forgotten first); 0 = none",
       low=0, high=1000, field="max_rooms"),
    _P("subsample", "int", 1, _T, "offer every Nth pair to the buffer", low=1, high=1000, field="subsample"),
    _P("duplicate_threshold", "double", 1.0, _T, "mean RGB difference (0-255) of a still-camera duplicate; "
       "0 = off", low=0.0, high=255.0, field="duplicate_threshold"),
    _P("min_valid_fraction", "double", 0.1, _T, "least share of valid depth pixels of a kept frame", low=0.0,
       high=1.0, field="min_valid_fraction"),
    _P("replay_ratio", "double", 1.0, _T, "replayed older frames per new training frame", live=True, low=0.0,
       high=16.0, field="replay_ratio"),
    _P("anchor_weight", "double", 0.0, _T, "L2-SP pull toward the base weights", live=True, low=0.0, high=1e6,
       field="anchor_weight"),
    _P("base_replay_fraction", "double", 0.5, _T, "share of each mini-batch drawn from base_data frames",
       live=True, low=0.0, high=1.0, high_open=True, field="base_replay_fraction"),
    _P("train_size", "int[2]", [0, 0], _T, "[H, W] frames are stored and trained at; [0, 0] = model input size",
       field="train_size"),
    _P("freeze_bn", "bool", True, _T, "keep BatchNorm statistics fixed during rounds", live=True,
       field="freeze_bn"),
    _P("feature_cache", "bool", True, _T, "keep the frozen encoder's features of stored frames (decoder-only "
       "rounds skip the encoder)", live=True, field="feature_cache"),
)

_BY_NAME: dict[str, ParameterSpec] = {p.name: p for p in PARAMETERS}
if len(_BY_NAME) != len(PARAMETERS):
    raise ValueError("depth_estimator_ros.parameters: a parameter name appears twice in PARAMETERS")


def parameter(name: str) -> ParameterSpec:
    """Return the row of parameter ``name``.

    Raises:
        KeyError: no such parameter (the message lists them).
    """
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"no parameter {name!r}; parameters: {sorted(_BY_NAME)}") from None


def node_parameters(node: str) -> tuple[ParameterSpec, ...]:
    """Return the rows of every parameter ``node`` (:data:`ESTIMATOR` or :data:`TRAINER`) declares."""
    if node not in BOTH:
        raise ValueError(f"node must be one of {BOTH}, got {node!r}")
    return tuple(p for p in PARAMETERS if node in p.nodes)


def node_defaults(node: str) -> dict[str, Any]:
    """Return ``{name: default}`` of the parameters of ``node`` (lists copied)."""
    return {p.name: list(p.default) if isinstance(p.default, list) else p.default for p in node_parameters(node)}


def engine_parameters() -> tuple[ParameterSpec, ...]:
    """Return the rows that set an ``AdaptationConfig`` field, in table order."""
    return tuple(p for p in PARAMETERS if p.field is not None)


def first_problem(values: Mapping[str, Any]) -> str:
    """Return why the first unfit value of ``{name: value}`` does not fit its row, or ``""``.

    Names that are not in the table are ignored (they are not this package's).
    """
    for name, value in values.items():
        spec = _BY_NAME.get(name)
        problem = spec.problem(value) if spec is not None else ""
        if problem:
            return problem
    return ""


# ------------------------------------------------------------------ config/live.yaml
_CONFIG = Path("config") / "live.yaml"
_PACKAGE = "depth_estimator_ros"


def live_config_path() -> Path:
    """Return the path of ``config/live.yaml``: the source tree's, else the installed share dir's.

    Raises:
        FileNotFoundError: neither exists.
    """
    source = Path(__file__).resolve().parents[1] / _CONFIG
    if source.is_file():
        return source
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

        installed = Path(get_package_share_directory(_PACKAGE)) / _CONFIG
    except (ImportError, PackageNotFoundError, ValueError) as exc:
        raise FileNotFoundError(f"{_CONFIG} not found at {source} and no installed {_PACKAGE} share: {exc}") from exc
    if not installed.is_file():
        raise FileNotFoundError(f"{_CONFIG} not found at {source} nor {installed}")
    return installed


@lru_cache(maxsize=8)
def _read(path: Path, mtime_ns: int) -> dict[str, Any]:
    import yaml

    with open(path, encoding="utf-8") as stream:
        content = yaml.safe_load(stream)
    if not isinstance(content, dict):
        raise ValueError(f"{path}: expected a mapping of node names to ros__parameters")
    return content


def load_defaults(node_name: str, path: Path | str | None = None) -> dict[str, Any]:
    """Return the parameter values a parameters file gives ``node_name``.

    Args:
        node_name: the node's name, e.g. ``"depth_estimator"``.
        path: a parameters file; :func:`live_config_path` when ``None``.

    Returns:
        ``{name: value}`` from the file's ``/**`` section updated with the node's section.

    Raises:
        FileNotFoundError: no file.
        ValueError: the file has no section for ``node_name``.
    """
    path = (live_config_path() if path is None else Path(path)).resolve()
    content = _read(path, os.stat(path).st_mtime_ns)
    if node_name not in content:
        raise ValueError(f"{path} has no section for node {node_name!r}; sections: {sorted(content)}")
    values: dict[str, Any] = {}
    for section in ("/**", node_name):
        values.update((content.get(section) or {}).get("ros__parameters") or {})
    return values
