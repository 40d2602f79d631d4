"""Write and read RGB-D rosbag2 recordings without ROS, with the ``rosbags`` package.

A bag written by :func:`write_bag` holds, per frame:

- ``sensor_msgs/msg/Image`` rgb8 on the colour topic, or with ``rgb_compression``
  ``sensor_msgs/msg/CompressedImage`` (JPEG or PNG) on ``<colour topic>/compressed``, as
  image_transport's ``compressed`` plugin publishes it,
- ``sensor_msgs/msg/Image`` depth (16UC1 millimetres, 0 invalid, or 32FC1 metres,
  NaN invalid) on the depth topic, stamped a few milliseconds after the colour
  image as with a Kinect's two free-running cameras,
- ``sensor_msgs/msg/CameraInfo`` of the colour camera (when the frame has intrinsics).

The metadata is rosbag2 version 8 (read by Jazzy and later) with offered QoS
profiles (reliable, volatile, keep-last 10), so ``ros2 bag play`` replays it on a
distro and both reliable and best-effort subscribers receive it. Messages are
serialised with the ROS 2 Jazzy type definitions (CDR), so
``rclpy.serialization.deserialize_message`` reads the raw bytes from
:func:`iter_raw_messages` directly.

:class:`BagSource` reads such a bag (or any bag with colour and depth
``sensor_msgs/msg/Image`` topics) back as frames, pairing colour and depth by
header stamp within a tolerance; it does not read compressed colour.
"""

from __future__ import annotations

import os
import shutil
import struct
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2 import Reader, ReaderError, StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from depth_estimator_ros.data.base import DataError, FrameSource, associate
from depth_estimator_ros.data.compressed import COMPRESSED_CONTAINERS, encode_compressed_rgb
from depth_estimator_ros.data.frame import Frame, Intrinsics
from depth_estimator_ros.data.image_encoding import (
    DEPTH_ENCODINGS,
    IMAGE_ENCODINGS,
    ImageDecodeError,
    decode_depth,
    decode_image,
    encode_depth,
    encode_rgb,
)
from depth_estimator_ros.parameters import KINECT_TOPICS

__all__ = [
    "STORAGES",
    "DEFAULT_RGB_TOPIC",
    "DEFAULT_DEPTH_TOPIC",
    "DEFAULT_INFO_TOPIC",
    "write_bag",
    "bag_folder",
    "iter_raw_messages",
    "BagSource",
]

STORAGES: tuple[str, ...] = ("sqlite3", "mcap")
DEFAULT_RGB_TOPIC = KINECT_TOPICS["image"]
DEFAULT_DEPTH_TOPIC = KINECT_TOPICS["depth"]
DEFAULT_INFO_TOPIC = KINECT_TOPICS["camera_info"]
IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_TYPE = "sensor_msgs/msg/CompressedImage"
INFO_TYPE = "sensor_msgs/msg/CameraInfo"

_TYPESTORE = get_typestore(Stores.ROS2_JAZZY)
_INFINITE = QosTime(9223372036, 854775807)  # RMW_DURATION_INFINITE as rosbag2 writes it
_OFFERED_QOS = Qos(
    history=QosHistory.KEEP_LAST,
    depth=10,
    reliability=QosReliability.RELIABLE,
    durability=QosDurability.VOLATILE,
    deadline=_INFINITE,
    lifespan=_INFINITE,
    liveliness=QosLiveliness.AUTOMATIC,
    liveliness_lease_duration=_INFINITE,
    avoid_ros_namespace_conventions=False,
)
_RECEIVE_LATENCY_NS = 2_000_000  # recorder receive time = header stamp + 2 ms


def _stamp_msg(stamp_ns: int):
    # Integer nanoseconds end to end: float seconds since the epoch lose ~100 ns.
    sec, nanosec = divmod(int(stamp_ns), 1_000_000_000)
    return _TYPESTORE.types["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec)


def _header(stamp_ns: int, frame_id: str):
    return _TYPESTORE.types["std_msgs/msg/Header"](stamp=_stamp_msg(stamp_ns), frame_id=frame_id)


def _image_msg(stamp_ns: int, frame_id: str, height: int, width: int, encoding: str, step: int, data: bytes):
    return _TYPESTORE.types[IMAGE_TYPE](
        header=_header(stamp_ns, frame_id),
        height=height,
        width=width,
        encoding=encoding,
        is_bigendian=0,
        step=step,
        data=np.frombuffer(data, dtype=np.uint8),
    )


def _compressed_msg(stamp_ns: int, frame_id: str, fmt: str, data: bytes):
    return _TYPESTORE.types[COMPRESSED_TYPE](
        header=_header(stamp_ns, frame_id), format=fmt, data=np.frombuffer(data, dtype=np.uint8)
    )


def _info_msg(stamp_ns: int, frame_id: str, k: Intrinsics):
    roi = _TYPESTORE.types["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    return _TYPESTORE.types[INFO_TYPE](
        header=_header(stamp_ns, frame_id),
        height=k.height,
        width=k.width,
        distortion_model="plumb_bob",
        d=np.zeros(5, np.float64),
        k=np.array([k.fx, 0, k.cx, 0, k.fy, k.cy, 0, 0, 1], np.float64),
        r=np.eye(3, dtype=np.float64).reshape(-1),
        p=np.array([k.fx, 0, k.cx, 0, 0, k.fy, k.cy, 0, 0, 0, 1, 0], np.float64),
        binning_x=0,
        binning_y=0,
        roi=roi,
    )


@dataclass(frozen=True)
class _BagLayout:
    """How :func:`write_bag` records the parts of a frame: topics, frame ids, encodings."""

    rgb_topic: str  # with rgb_compression: <rgb_topic>/compressed
    depth_topic: str
    info_topic: str
    rgb_frame_id: str
    depth_frame_id: str
    depth_encoding: str
    depth_stamp_offset_ns: int
    rgb_compression: str | None
    jpeg_quality: int

    @property
    def rgb_type(self) -> str:
        """Return the colour topic's message type."""
        return IMAGE_TYPE if self.rgb_compression is None else COMPRESSED_TYPE

    def topics(self) -> tuple[tuple[str, str], ...]:
        """Return ``(topic, message type)`` of the bag's three connections."""
        return (self.rgb_topic, self.rgb_type), (self.depth_topic, IMAGE_TYPE), (self.info_topic, INFO_TYPE)

    def messages(self, frame: Frame, stamp: int) -> list[tuple[str, int, object, str]]:
        """Return ``(topic, stamp ns, message, type)`` of ``frame`` with its colour stamped ``stamp`` ns."""
        if self.rgb_compression is None:
            h, w = frame.rgb.shape[:2]
            step, data = encode_rgb(frame.rgb, "rgb8")
            rgb_msg = _image_msg(stamp, self.rgb_frame_id, h, w, "rgb8", step, data)
        else:
            fmt, data = encode_compressed_rgb(frame.rgb, self.rgb_compression, quality=self.jpeg_quality)
            rgb_msg = _compressed_msg(stamp, self.rgb_frame_id, fmt, data)
        messages = [(self.rgb_topic, stamp, rgb_msg, self.rgb_type)]
        if frame.intrinsics is not None:
            messages.append((self.info_topic, stamp, _info_msg(stamp, self.rgb_frame_id, frame.intrinsics), INFO_TYPE))
        if frame.depth is not None:
            dh, dw = frame.depth.shape
            depth_stamp = stamp + self.depth_stamp_offset_ns
            step, data = encode_depth(frame.depth, self.depth_encoding)
            msg = _image_msg(depth_stamp, self.depth_frame_id, dh, dw, self.depth_encoding, step, data)
            messages.append((self.depth_topic, depth_stamp, msg, IMAGE_TYPE))
        return messages


def _check_write_options(
    storage: str, depth_encoding: str, rate_hz: float | None, rgb_compression: str | None, jpeg_quality: int
) -> None:
    """Raise ``ValueError`` naming the allowed values when a :func:`write_bag` option is refused."""
    if storage not in STORAGES:
        raise ValueError(f"unknown storage {storage!r}; expected one of {', '.join(STORAGES)}")
    if depth_encoding not in ("16UC1", "32FC1"):
        raise ValueError(f"unsupported depth_encoding {depth_encoding!r}; expected 16UC1 or 32FC1")
    if rate_hz is not None and not rate_hz > 0:
        raise ValueError(f"rate_hz must be > 0 or None, got {rate_hz}")
    if rgb_compression is not None and rgb_compression not in COMPRESSED_CONTAINERS:
        raise ValueError(
            f"rgb_compression must be None or one of {', '.join(COMPRESSED_CONTAINERS)}, got {rgb_compression!r}"
        )
    if not 1 <= jpeg_quality <= 100:
        raise ValueError(f"jpeg_quality must be 1-100, got {jpeg_quality}")


def _stamped(frames: Iterable[Frame], start_ns: int, rate_hz: float | None) -> Iterator[tuple[Frame, int]]:
    """Yield each frame with the stamp of its colour image, integer nanoseconds.

    Frame ``i`` is stamped ``start_ns + i / rate_hz``; with ``rate_hz=None`` the frames keep
    their own spacing, the first at ``start_ns``.

    Raises:
        DataError: with ``rate_hz=None``, a frame stamped before the previous one.
    """
    first_stamp = previous = None
    for count, frame in enumerate(frames):
        if rate_hz is None:
            if previous is not None and frame.stamp < previous:
                raise DataError(f"{frame.name}: stamp {frame.stamp} s goes back from {previous} s")
            first_stamp = frame.stamp if first_stamp is None else first_stamp
            previous = frame.stamp
            yield frame, start_ns + int(round((frame.stamp - first_stamp) * 1e9))
        else:
            yield frame, start_ns + int(round(count * 1e9 / rate_hz))


def _record(bag: Path, plugin: StoragePlugin, layout: _BagLayout, stamped: Iterable[tuple[Frame, int]]) -> int:
    """Write the ``stamped`` frames into a new bag folder ``bag``; return how many."""
    count = 0
    writer = Writer(bag, version=8, storage_plugin=plugin)
    writer.open()
    try:
        connections = {
            topic: writer.add_connection(topic, msgtype, typestore=_TYPESTORE, offered_qos_profiles=[_OFFERED_QOS])
            for topic, msgtype in layout.topics()
        }
        for frame, stamp in stamped:
            for topic, stamp_ns, msg, msgtype in layout.messages(frame, stamp):
                raw = _TYPESTORE.serialize_cdr(msg, msgtype)
                writer.write(connections[topic], stamp_ns + _RECEIVE_LATENCY_NS, raw)
            count += 1
    finally:
        writer.close()
    return count


def _write_atomically(path: Path, storage: str, layout: _BagLayout, stamped: Iterable[tuple[Frame, int]]) -> int:
    """Record the ``stamped`` frames into a temporary folder beside ``path``, then rename it into place.

    An existing bag at ``path`` is replaced only once the new one is complete.

    Returns:
        Number of frames written.

    Raises:
        DataError: no frames.
    """
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        count = _record(staging / path.name, plugin, layout, stamped)
        if count == 0:
            raise DataError(f"{path}: no frames to write")
        if path.exists():
            old = staging / ".replaced"
            path.rename(old)
        (staging / path.name).rename(path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return count


def write_bag(
    path: str | os.PathLike,
    frames: Iterable[Frame],
    *,
    storage: str = "sqlite3",
    rgb_topic: str = DEFAULT_RGB_TOPIC,
    depth_topic: str = DEFAULT_DEPTH_TOPIC,
    info_topic: str = DEFAULT_INFO_TOPIC,
    depth_encoding: str = "16UC1",
    rate_hz: float | None = 30.0,
    depth_stamp_offset: float = 0.007,
    start_time: float | None = None,
    rgb_frame_id: str = "camera_rgb_optical_frame",
    depth_frame_id: str = "camera_depth_optical_frame",
    overwrite: bool = False,
    rgb_compression: str | None = None,
    jpeg_quality: int = 95,
) -> int:
    """Record ``frames`` into a new rosbag2 folder, atomically.

    The bag is written into a temporary folder beside ``path`` and renamed into
    place when complete, so ``path`` never holds a half-written bag.

    Args:
        path: the bag folder to create.
        frames: frames to record, in order; frames without depth get no depth message.
        storage: ``"sqlite3"`` or ``"mcap"``.
        rgb_topic: topic of the rgb8 images (with ``rgb_compression``: the base of
            ``<rgb_topic>/compressed``).
        depth_topic: topic of the depth images.
        info_topic: topic of the colour camera's CameraInfo.
        depth_encoding: ``"16UC1"`` (millimetres, quantised, 0 invalid) or ``"32FC1"`` (metres, NaN invalid).
        rate_hz: colour stamps are ``start_time + i / rate_hz``; None keeps the
            spacing of the frames' own stamps.
        depth_stamp_offset: seconds from a colour stamp to its depth stamp (the
            two cameras are not triggered together).
        start_time: stamp of the first colour image in seconds since the epoch;
            None uses the current time.
        rgb_frame_id: ``header.frame_id`` of colour images and camera info.
        depth_frame_id: ``header.frame_id`` of depth images.
        overwrite: replace an existing bag at ``path`` (only once the new one is complete).
        rgb_compression: ``None`` (raw rgb8), or ``"jpeg"`` / ``"png"``: the colour
            images as ``sensor_msgs/CompressedImage`` on ``<rgb_topic>/compressed``
            (nothing on ``rgb_topic``), for nodes with ``rgb_transport: compressed``.
        jpeg_quality: JPEG quality 1-100 (image_transport's default: 95).

    Returns:
        Number of frames written.

    Raises:
        ValueError: unknown ``storage``, ``depth_encoding`` or ``rgb_compression``, a
            ``jpeg_quality`` out of range, or a non-positive ``rate_hz``.
        FileExistsError: ``path`` exists and ``overwrite`` is False.
        DataError: no frames, or frame stamps going backwards with ``rate_hz=None``.
    """
    _check_write_options(storage, depth_encoding, rate_hz, rgb_compression, jpeg_quality)
    if rgb_compression is not None:
        rgb_topic = rgb_topic.rstrip("/") + "/compressed"
    layout = _BagLayout(rgb_topic=rgb_topic, depth_topic=depth_topic, info_topic=info_topic,
                        rgb_frame_id=rgb_frame_id, depth_frame_id=depth_frame_id, depth_encoding=depth_encoding,
                        depth_stamp_offset_ns=int(round(depth_stamp_offset * 1e9)),
                        rgb_compression=rgb_compression, jpeg_quality=jpeg_quality)
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists already; pass overwrite=True to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    start_ns = time.time_ns() if start_time is None else int(round(float(start_time) * 1e9))
    return _write_atomically(path, storage, layout, _stamped(frames, start_ns, rate_hz))


def bag_folder(path: str | os.PathLike) -> Path:
    """Return the rosbag2 folder of ``path`` (the folder itself, or the folder of its ``.mcap``/``.db3`` file).

    Raises:
        DataError: no ``metadata.yaml`` where a rosbag2 folder needs one.
    """
    path = Path(path)
    folder = path.parent if path.is_file() else path
    if not (folder / "metadata.yaml").is_file():
        if not path.exists():
            raise DataError(f"{path}: no such file or folder")
        raise DataError(f"{folder}: not a rosbag2 folder (no metadata.yaml beside the storage file)")
    return folder


def _open_reader(path: Path) -> Reader:
    try:
        reader = Reader(path)
        reader.open()
    except ReaderError as exc:
        raise DataError(f"{path}: cannot read bag: {exc}") from exc
    return reader


def iter_raw_messages(
    path: str | os.PathLike, topics: Sequence[str] | None = None
) -> Iterator[tuple[str, str, int, bytes]]:
    """Yield a bag's messages in recording order without deserialising them.

    Args:
        path: rosbag2 folder (or its storage file).
        topics: only these topics; all when None.

    Yields:
        ``(topic, msgtype, timestamp_ns, raw CDR bytes)``; ``msgtype`` as in the
        bag, e.g. ``"sensor_msgs/msg/Image"``; ``timestamp_ns`` is the recording time.

    Raises:
        DataError: not a readable bag, or a requested topic is not in it.
    """
    folder = bag_folder(path)
    reader = _open_reader(folder)
    try:
        connections = reader.connections
        if topics is not None:
            available = {c.topic for c in connections}
            missing = [t for t in topics if t not in available]
            if missing:
                raise DataError(f"{folder}: no topic {', '.join(missing)}; the bag has {', '.join(sorted(available))}")
            connections = [c for c in connections if c.topic in set(topics)]
        for connection, timestamp, raw in reader.messages(connections=connections):
            yield connection.topic, connection.msgtype, timestamp, bytes(raw)
    finally:
        reader.close()


def _header_stamp(raw: bytes) -> float:
    """Read ``header.stamp`` (the first field of Image / CameraInfo) from CDR bytes, in seconds."""
    little = raw[1] == 1  # CDR encapsulation: 0x0001 little-endian, 0x0000 big-endian
    sec, nanosec = struct.unpack_from("<iI" if little else ">iI", raw, 4)
    return sec + nanosec * 1e-9


class BagSource(FrameSource):
    """Colour + depth frames from a rosbag2 bag, paired by header stamp.

    Opening reads the bag once to index message stamps (no image is kept);
    frames are then read one by one. Colour images with no depth image within
    ``max_dt`` are left out and counted in :attr:`unmatched`.
    """

    unmatched: int
    """Colour images with no depth image within ``max_dt``."""

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        rgb_topic: str | None = None,
        depth_topic: str | None = None,
        info_topic: str | None = None,
        max_dt: float = 0.02,
    ) -> None:
        """Index the bag.

        Args:
            path: rosbag2 folder (or its storage file).
            rgb_topic: colour image topic; by default :data:`DEFAULT_RGB_TOPIC`
                when present, else the only Image topic with a colour encoding.
            depth_topic: depth image topic; found like ``rgb_topic``.
            info_topic: CameraInfo topic for the intrinsics; by default the
                first CameraInfo topic, if any.
            max_dt: largest colour/depth stamp difference accepted as a pair, seconds.

        Raises:
            ValueError: non-positive ``max_dt``.
            DataError: not a bag, topics missing or ambiguous, or no pairs.
        """
        if not max_dt > 0:
            raise ValueError(f"max_dt must be > 0 s, got {max_dt}")
        self.path = bag_folder(path)
        self.name = self.path.name
        self._reader: Reader | None = None
        self._pid = -1
        reader = self._open()
        by_topic = {c.topic: c for c in reader.connections}
        image_topics = [c.topic for c in reader.connections if c.msgtype == IMAGE_TYPE]
        encodings = self._first_encodings(reader, image_topics)
        self.rgb_topic = self._pick(rgb_topic, DEFAULT_RGB_TOPIC, encodings, IMAGE_ENCODINGS, "colour")
        self.depth_topic = self._pick(depth_topic, DEFAULT_DEPTH_TOPIC, encodings, DEPTH_ENCODINGS, "depth")
        if info_topic is None:
            info_topic = next((c.topic for c in reader.connections if c.msgtype == INFO_TYPE), None)
        elif info_topic not in by_topic:
            raise DataError(f"{self.path}: no topic {info_topic}")
        self.info_topic = info_topic

        stamps: dict[str, list[float]] = {self.rgb_topic: [], self.depth_topic: []}
        keys: dict[str, list[int]] = {self.rgb_topic: [], self.depth_topic: []}
        self.intrinsics: Intrinsics | None = None
        wanted = [by_topic[t] for t in (self.rgb_topic, self.depth_topic, self.info_topic) if t is not None]
        for connection, timestamp, raw in reader.messages(connections=wanted):
            if connection.topic == self.info_topic:
                if self.intrinsics is None:
                    self.intrinsics = self._intrinsics(raw)
                continue
            stamps[connection.topic].append(_header_stamp(raw))
            keys[connection.topic].append(timestamp)
        matches = associate(stamps[self.rgb_topic], stamps[self.depth_topic], max_dt)
        if not matches:
            raise DataError(
                f"{self.path}: no {self.rgb_topic} image has a {self.depth_topic} image within {max_dt} s "
                f"({len(stamps[self.rgb_topic])} colour, {len(stamps[self.depth_topic])} depth messages)"
            )
        self.unmatched = len(stamps[self.rgb_topic]) - len(matches)
        self._connections = (by_topic[self.rgb_topic], by_topic[self.depth_topic])
        self._index = [
            (keys[self.rgb_topic][i], keys[self.depth_topic][j], stamps[self.rgb_topic][i]) for i, j in matches
        ]

    def _open(self) -> Reader:
        if self._reader is None or self._pid != os.getpid():
            self._reader = _open_reader(self.path)
            self._pid = os.getpid()
        return self._reader

    def close(self) -> None:
        """Close the bag; it reopens on the next access."""
        if self._reader is not None and self._pid == os.getpid():
            self._reader.close()
        self._reader = None

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_reader"] = None
        return state

    def _first_encodings(self, reader: Reader, topics: list[str]) -> dict[str, str]:
        encodings: dict[str, str] = {}
        connections = [c for c in reader.connections if c.topic in topics]
        for connection, _, raw in reader.messages(connections=connections):
            if connection.topic not in encodings:
                encodings[connection.topic] = _TYPESTORE.deserialize_cdr(raw, IMAGE_TYPE).encoding
            if len(encodings) == len(topics):
                break
        return encodings

    def _pick(self, given: str | None, default: str, encodings: dict[str, str], allowed: tuple[str, ...], kind: str) -> str:
        if given is not None:
            if given not in encodings:
                raise DataError(f"{self.path}: no {IMAGE_TYPE} topic {given}; image topics: {', '.join(encodings) or 'none'}")
            return given
        if default in encodings:
            return default
        candidates = [t for t, e in encodings.items() if e in allowed and not (kind == "colour" and e == "mono16")]
        if len(candidates) != 1:
            raise DataError(
                f"{self.path}: cannot tell the {kind} image topic among {encodings or 'no image topics'}; "
                f"pass {'rgb' if kind == 'colour' else 'depth'}_topic="
            )
        return candidates[0]

    def _intrinsics(self, raw: bytes) -> Intrinsics | None:
        info = _TYPESTORE.deserialize_cdr(raw, INFO_TYPE)
        k = info.k
        if not (k[0] > 0 and k[4] > 0 and info.width > 0 and info.height > 0):
            return None
        return Intrinsics(float(k[0]), float(k[4]), float(k[2]), float(k[5]), int(info.width), int(info.height))

    def __len__(self) -> int:
        return len(self._index)

    def _read(self, connection, timestamp: int):
        reader = self._open()
        for _, _, raw in reader.messages(connections=[connection], start=timestamp, stop=timestamp + 1):
            return _TYPESTORE.deserialize_cdr(raw, IMAGE_TYPE)
        raise DataError(f"{self.path}: message of {connection.topic} at {timestamp} ns vanished")

    def _load(self, index: int) -> Frame:
        rgb_key, depth_key, stamp = self._index[index]
        rgb_msg = self._read(self._connections[0], rgb_key)
        depth_msg = self._read(self._connections[1], depth_key)
        name = f"{self.name}/{index}"
        try:
            rgb = decode_image(rgb_msg.encoding, rgb_msg.height, rgb_msg.width, rgb_msg.step, rgb_msg.is_bigendian, rgb_msg.data)
            depth = decode_depth(
                depth_msg.encoding, depth_msg.height, depth_msg.width, depth_msg.step, depth_msg.is_bigendian, depth_msg.data
            )
        except ImageDecodeError as exc:
            raise DataError(f"{self.path}: frame {index} at {stamp:.6f} s: {exc}") from exc
        if not rgb.flags.writeable:
            rgb = rgb.copy()
        intrinsics = self.intrinsics
        if intrinsics is not None and (intrinsics.width, intrinsics.height) != (rgb.shape[1], rgb.shape[0]):
            intrinsics = intrinsics.scaled(rgb.shape[1], rgb.shape[0])
        return Frame(rgb=rgb, depth=depth, stamp=stamp, intrinsics=intrinsics, name=name)
