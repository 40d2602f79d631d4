"""Bounded replay buffer of live RGB-D frames: recent frames plus a reservoir of older ones.

Frames are resized once, on entry, to the size rounds train at (the model's input size
or ``AdaptationConfig.train_size``) and stored as ``uint8`` RGB and ``float16`` depth
(metres, NaN invalid; float16 keeps about 4 mm resolution at 8 m, far below Kinect
noise). Every stored frame therefore costs exactly ``H * W * 5`` bytes and the buffer's
memory is known in advance: ``capacity * frame_nbytes``.

The buffer has two parts:

- a ring of the ``recent_fraction * capacity`` most recent frames, and
- a reservoir (Vitter's algorithm R) fed by the frames leaving the ring: after ``n``
  evictions every one of them is in the reservoir with the same probability ``k / n``,
  so frames from the first seconds of a session stay represented however long it runs.

Frames are dropped on entry (``add`` returns False and counts the reason) when
sub-sampled away, when near-duplicates of the last kept frame (a still camera adds no
information and would let a round overfit one view), or when their depth has too few
valid pixels, or when their intrinsics fail
:func:`~depth_estimator_ros.data.frame.check_intrinsics` (the nodes' camera_info check).
:meth:`ReplayBuffer.remove` takes stored frames out again (the engine removes a frame
that makes a round fail, so it is never drawn again). All methods are thread-safe; the lock is held only for list updates,
never during resizing.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from depth_estimator_ros.data.frame import Frame, check_intrinsics
from depth_estimator_ros.learning.losses import valid_mask
from depth_estimator_ros.learning.transforms import to_tensor_batch
from depth_estimator_ros.models.base import CANONICAL_FOCAL

__all__ = ["BufferedFrame", "ReplayBuffer", "DROP_REASONS", "prepare_frame", "stack_frames"]

DROP_REASONS: tuple[str, ...] = ("subsampled", "duplicate", "invalid", "invalid_intrinsics")
"""Why ``ReplayBuffer.add`` may refuse a frame."""


@dataclass(frozen=True)
class BufferedFrame:
    """One frame as stored in the buffer, at the training size.

    Attributes:
        index: order of arrival among kept frames (0, 1, ...), unique per buffer.
        rgb: ``(H, W, 3)`` uint8 RGB.
        depth: ``(H, W)`` float16 metres, NaN invalid.
        stamp: capture time in seconds.
        name: the source frame's name.
        focal: the camera's normalised focal length (``Intrinsics.normalized_focal``;
            the canonical camera's when the frame had no intrinsics).
    """

    index: int
    rgb: np.ndarray
    depth: np.ndarray
    stamp: float
    name: str = ""
    focal: float = CANONICAL_FOCAL

    @property
    def nbytes(self) -> int:
        """Bytes held by the two arrays."""
        return int(self.rgb.nbytes + self.depth.nbytes)


def prepare_frame(frame: Frame, size: tuple[int, int], index: int = -1) -> BufferedFrame:
    """Resize ``frame`` to ``size`` and convert it to the compact stored form.

    Args:
        frame: a frame with sensor depth (``(H, W)`` float32 metres, NaN invalid).
        size: ``(H, W)`` to store at.
        index: the arrival index to record.

    Returns:
        The :class:`BufferedFrame` (uint8 RGB, float16 depth).
    """
    if not isinstance(frame, Frame):
        raise TypeError(f"frame must be a data.Frame, got {type(frame).__name__}")
    if frame.depth is None:
        raise ValueError(f"frame {frame.name!r} has no sensor depth; adaptation needs RGB-D frames")
    rgb, depth, focal = to_tensor_batch([frame], tuple(size))
    rgb_u8 = (rgb[0].permute(1, 2, 0) * 255.0).round().clamp(0, 255).to(torch.uint8).numpy()
    depth16 = depth[0, 0].to(torch.float16).numpy()
    return BufferedFrame(
        index=index, rgb=np.ascontiguousarray(rgb_u8), depth=depth16, stamp=float(frame.stamp), name=frame.name,
        focal=float(focal[0]),
    )


def stack_frames(frames: Sequence[BufferedFrame]) -> tuple[Tensor, Tensor, Tensor]:
    """Stack stored frames into a training batch.

    Args:
        frames: one or more frames of one size.

    Returns:
        ``rgb (B, 3, H, W)`` float32 in ``[0, 1]``, ``depth (B, 1, H, W)`` float32
        metres with NaN invalid and ``focal (B,)`` float32 normalised focal lengths.
    """
    if not frames:
        raise ValueError("stack_frames needs at least one frame")
    rgb = torch.from_numpy(np.stack([f.rgb for f in frames])).permute(0, 3, 1, 2).float().div_(255.0)
    return (rgb.contiguous(), *stack_targets(frames))


def stack_targets(frames: Sequence[BufferedFrame]) -> tuple[Tensor, Tensor]:
    """Stack the sensor depth ``(B, 1, H, W)`` and focal lengths ``(B,)`` of stored frames (no RGB:
    a round that decodes cached encoder features needs only these)."""
    depth = torch.from_numpy(np.stack([f.depth for f in frames])).float().unsqueeze(1)
    focal = torch.tensor([f.focal for f in frames], dtype=torch.float32)
    return depth, focal


class ReplayBuffer:
    """Hold at most ``capacity`` frames: the most recent ones and a uniform sample of older ones.

    Args:
        capacity: most frames held (>= 2).
        size: ``(H, W)`` frames are stored at.
        recent_fraction: share of ``capacity`` for the most recent frames, in ``(0, 1]``;
            the rest is the reservoir of older frames.
        subsample: keep only every Nth offered frame (>= 1).
        duplicate_threshold: mean absolute RGB difference (0-255) to the last kept
            frame below which a frame is dropped as a near-duplicate; 0 disables.
        min_valid_fraction: least share of valid depth pixels a frame must have.
        depth_range: ``(min, max)`` metres of trusted depth (the model's range).
        seed: seed of the reservoir's random choices.
    """

    def __init__(
        self,
        capacity: int,
        size: tuple[int, int],
        *,
        recent_fraction: float = 0.5,
        subsample: int = 1,
        duplicate_threshold: float = 0.0,
        min_valid_fraction: float = 0.1,
        depth_range: tuple[float, float] = (0.1, 10.0),
        seed: int = 0,
    ) -> None:
        if not isinstance(capacity, int) or capacity < 2:
            raise ValueError(f"capacity must be an integer >= 2, got {capacity!r}")
        if len(size) != 2 or min(size) < 1:
            raise ValueError(f"size must be (H, W) with positive integers, got {size!r}")
        if not 0.0 < recent_fraction <= 1.0:
            raise ValueError(f"recent_fraction must be in (0, 1], got {recent_fraction}")
        if not isinstance(subsample, int) or subsample < 1:
            raise ValueError(f"subsample must be an integer >= 1, got {subsample!r}")
        if not 0.0 <= duplicate_threshold <= 255.0:
            raise ValueError(f"duplicate_threshold must be in [0, 255], got {duplicate_threshold}")
        if not 0.0 <= min_valid_fraction <= 1.0:
            raise ValueError(f"min_valid_fraction must be in [0, 1], got {min_valid_fraction}")
        if not 0.0 <= depth_range[0] < depth_range[1]:
            raise ValueError(f"depth_range must be (min, max) with 0 <= min < max, got {depth_range}")
        self._capacity = capacity
        self._size = (int(size[0]), int(size[1]))
        n_recent = min(capacity, max(1, round(capacity * recent_fraction)))
        self._recent: deque[BufferedFrame] = deque(maxlen=n_recent)
        self._reservoir_capacity = capacity - n_recent
        self._reservoir: list[BufferedFrame] = []
        self._subsample = subsample
        self._duplicate_threshold = float(duplicate_threshold)
        self._min_valid_fraction = float(min_valid_fraction)
        self._depth_range = (float(depth_range[0]), float(depth_range[1]))
        self._rng = np.random.default_rng(seed)
        self._lock = threading.Lock()
        self._offered = 0
        self._kept = 0
        self._evicted = 0
        self._removed = 0
        self._pending = 0
        self._dropped = dict.fromkeys(DROP_REASONS, 0)
        self._last_kept_rgb: np.ndarray | None = None

    @property
    def capacity(self) -> int:
        """Most frames held."""
        return self._capacity

    @property
    def size(self) -> tuple[int, int]:
        """``(H, W)`` frames are stored at."""
        return self._size

    @property
    def frame_nbytes(self) -> int:
        """Bytes one stored frame takes (uint8 RGB + float16 depth)."""
        h, w = self._size
        return h * w * 3 + h * w * 2

    @property
    def nbytes(self) -> int:
        """Bytes held by stored frames now (at most ``capacity * frame_nbytes``)."""
        with self._lock:
            return sum(f.nbytes for f in self._recent) + sum(f.nbytes for f in self._reservoir)

    @property
    def new_count(self) -> int:
        """Frames kept since the last :meth:`take_new` (still in the recent ring)."""
        with self._lock:
            return self._pending

    @property
    def kept(self) -> int:
        """Frames kept since the buffer was made (a count that only grows)."""
        with self._lock:
            return self._kept

    def __len__(self) -> int:
        with self._lock:
            return len(self._recent) + len(self._reservoir)

    def counters(self) -> dict[str, int]:
        """Return diagnostics: frames offered, kept, evicted (ring to reservoir), removed, pending, dropped per reason."""
        with self._lock:
            out = {"offered": self._offered, "kept": self._kept, "evicted": self._evicted, "removed": self._removed,
                   "pending": self._pending}
            out.update({f"dropped_{k}": v for k, v in self._dropped.items()})
            return out

    def add(self, frame: Frame) -> bool:
        """Offer one RGB-D frame; return True when it was stored.

        Frames are refused (False, counted by reason) when sub-sampled away, a
        near-duplicate of the last kept frame, without enough valid depth, or with
        implausible intrinsics (``invalid_intrinsics``).

        Args:
            frame: a frame with ``depth`` (``(H, W)`` float32 metres, NaN invalid).

        Returns:
            Whether the frame entered the buffer.
        """
        with self._lock:
            self._offered += 1
            if (self._offered - 1) % self._subsample:
                self._dropped["subsampled"] += 1
                return False
        if frame.depth is None:
            return self._drop("invalid")
        k = frame.intrinsics
        if k is not None:
            try:
                check_intrinsics(k.fx, k.fy, k.cx, k.cy, k.width, k.height)
            except ValueError:
                return self._drop("invalid_intrinsics")
        stored = prepare_frame(frame, self._size)
        valid = valid_mask(stored.depth.astype(np.float32), *self._depth_range)
        if float(valid.mean()) < max(self._min_valid_fraction, 1e-9):
            return self._drop("invalid")
        with self._lock:
            last = self._last_kept_rgb
            if last is not None and self._duplicate_threshold > 0:
                diff = float(np.abs(stored.rgb.astype(np.int16) - last.astype(np.int16)).mean())
                if diff < self._duplicate_threshold:
                    self._dropped["duplicate"] += 1
                    return False
            stored = BufferedFrame(self._kept, stored.rgb, stored.depth, stored.stamp, stored.name, stored.focal)
            self._kept += 1
            self._last_kept_rgb = stored.rgb
            if len(self._recent) == self._recent.maxlen:
                self._to_reservoir(self._recent[0])
            self._recent.append(stored)
            self._pending = min(self._pending + 1, len(self._recent))
            return True

    def _drop(self, reason: str) -> bool:
        with self._lock:
            self._dropped[reason] += 1
        return False

    def _to_reservoir(self, frame: BufferedFrame) -> None:
        """Offer a frame leaving the recent ring to the reservoir (algorithm R); lock held."""
        self._evicted += 1
        k = self._reservoir_capacity
        if k == 0:
            return
        if len(self._reservoir) < k:
            self._reservoir.append(frame)
            return
        j = int(self._rng.integers(self._evicted))
        if j < k:
            self._reservoir[j] = frame

    def take_new(self, max_frames: int) -> list[BufferedFrame]:
        """Return the newest frames not yet taken (at most ``max_frames``, oldest first) and mark all taken.

        Args:
            max_frames: most frames returned; older pending frames are not returned
                but stay in the buffer for replay.

        Returns:
            The frames, in arrival order.
        """
        with self._lock:
            n = min(self._pending, max_frames)
            self._pending = 0
            return list(self._recent)[len(self._recent) - n :] if n else []

    def newest(self, n: int) -> list[BufferedFrame]:
        """Return the ``n`` most recently kept frames still held (oldest first), taken or not; marks nothing."""
        with self._lock:
            recent = list(self._recent)
        return recent[len(recent) - n :] if n > 0 else []

    def sample(self, n: int, rng: np.random.Generator, *, exclude: Iterable[int] = ()) -> list[BufferedFrame]:
        """Draw up to ``n`` distinct stored frames uniformly from recent ring and reservoir.

        Args:
            n: frames wanted (fewer are returned when fewer are eligible).
            rng: the random generator to draw with.
            exclude: ``BufferedFrame.index`` values not to return (e.g. a round's
                held-out and new frames).

        Returns:
            The drawn frames.
        """
        excluded = set(exclude)
        with self._lock:
            pool = [f for f in (*self._recent, *self._reservoir) if f.index not in excluded]
        if n <= 0 or not pool:
            return []
        picks = rng.choice(len(pool), size=min(n, len(pool)), replace=False)
        return [pool[int(i)] for i in picks]

    def remove(self, indices: Iterable[int]) -> int:
        """Take the stored frames with these arrival indices out of the buffer; return how many were held.

        A removed frame is never returned by :meth:`sample` or :meth:`take_new` again
        (counted as ``removed``).
        """
        gone = set(indices)
        with self._lock:
            recent = list(self._recent)
            pending = recent[len(recent) - self._pending :] if self._pending else []
            self._pending -= sum(f.index in gone for f in pending)
            kept = [f for f in recent if f.index not in gone]
            removed = len(recent) - len(kept)
            self._recent.clear()
            self._recent.extend(kept)
            reservoir = [f for f in self._reservoir if f.index not in gone]
            removed += len(self._reservoir) - len(reservoir)
            self._reservoir = reservoir
            self._removed += removed
            return removed

    def indices(self) -> list[int]:
        """Return the arrival indices of all stored frames (recent ring first)."""
        with self._lock:
            return [f.index for f in (*self._recent, *self._reservoir)]

    def clear(self) -> None:
        """Drop every stored frame and the pending count (counters are kept)."""
        with self._lock:
            self._recent.clear()
            self._reservoir.clear()
            self._pending = 0
            self._last_kept_rgb = None
