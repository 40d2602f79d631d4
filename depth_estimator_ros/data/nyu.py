"""Frames from the NYU Depth v2 labeled dataset file (``nyu_depth_v2_labeled.mat``).

The file is MATLAB v7.3, i.e. HDF5. MATLAB stores arrays column-major, so h5py
sees them transposed: ``images`` is ``(N, 3, W, H)`` uint8 and ``depths`` /
``rawDepths`` are ``(N, W, H)`` float metres. Frames are read one at a time.
``depths`` are the toolbox's in-painted (dense) maps; ``rawDepths`` are the
projected Kinect measurements with 0 where nothing was measured.

The 1449 labeled frames are independent images, not a stream: a frame's stamp is
its index in seconds. Use :func:`depth_estimator_ros.data.base.split_source` for
the seeded random train/val/test split.
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np

from depth_estimator_ros.data.base import DataError, FrameSource
from depth_estimator_ros.data.folders import NYU_INTRINSICS
from depth_estimator_ros.data.frame import Frame, Intrinsics

__all__ = ["NyuMatSource"]


class NyuMatSource(FrameSource):
    """The labeled NYU Depth v2 ``.mat`` file as a frame source.

    The HDF5 file stays open while the source is used (one handle per process,
    reopened after a fork); :meth:`close` releases it.
    """

    def __init__(self, path: str | os.PathLike, *, raw_depth: bool = False, intrinsics: Intrinsics | None = None) -> None:
        """Open the file and check its datasets.

        Args:
            path: the ``.mat`` file.
            raw_depth: use ``rawDepths`` (sparse, 0 invalid) instead of the dense ``depths``.
            intrinsics: defaults to the NYU colour camera (fx 518.86, fy 519.47).

        Raises:
            DataError: the file is missing or not HDF5, a dataset is missing, or
                their shapes do not match.
        """
        self.path = Path(path)
        self.depth_key = "rawDepths" if raw_depth else "depths"
        self._file: h5py.File | None = None
        self._pid = -1
        handle = self._handle()
        for key in ("images", self.depth_key):
            if key not in handle:
                raise DataError(f"{self.path}: no '{key}' dataset (not a NYU Depth v2 labeled file?)")
        images, depths = handle["images"], handle[self.depth_key]
        if images.ndim != 4 or images.shape[1] != 3:
            raise DataError(f"{self.path}: 'images' has shape {images.shape}, expected (N, 3, W, H)")
        if depths.shape != (images.shape[0], images.shape[2], images.shape[3]):
            raise DataError(
                f"{self.path}: '{self.depth_key}' has shape {depths.shape}, expected "
                f"{(images.shape[0], images.shape[2], images.shape[3])} to match 'images'"
            )
        if images.dtype != np.uint8:
            raise DataError(f"{self.path}: 'images' is {images.dtype}, expected uint8")
        self._count = int(images.shape[0])
        width, height = int(images.shape[2]), int(images.shape[3])
        self.intrinsics = intrinsics or NYU_INTRINSICS.scaled(width, height)
        self.name = self.path.stem

    def _handle(self) -> h5py.File:
        if self._file is None or self._pid != os.getpid():
            if not self.path.is_file():
                raise DataError(f"{self.path}: file not found")
            try:
                self._file = h5py.File(self.path, "r")
            except OSError as exc:
                raise DataError(f"{self.path}: not an HDF5 (MATLAB v7.3) file: {exc}") from exc
            self._pid = os.getpid()
        return self._file

    def close(self) -> None:
        """Close the HDF5 file; it reopens on the next access."""
        if self._file is not None and self._pid == os.getpid():
            self._file.close()
        self._file = None

    def __len__(self) -> int:
        return self._count

    def _load(self, index: int) -> Frame:
        handle = self._handle()
        rgb = np.ascontiguousarray(handle["images"][index].transpose(2, 1, 0))
        depth = np.ascontiguousarray(handle[self.depth_key][index].T, dtype=np.float32)
        depth[~(np.isfinite(depth) & (depth > 0))] = np.nan
        return Frame(rgb=rgb, depth=depth, stamp=float(index), intrinsics=self.intrinsics, name=f"{self.name}/{index}")

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_file"] = None
        return state
