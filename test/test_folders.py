"""Tests for the RGB-D file sources: real samples in ../shared/data and every refusal."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from depth_estimator_ros.data.base import DataError
from depth_estimator_ros.data.folders import (
    RedwoodSource,
    SevenScenesSource,
    TumSource,
    detect_layout,
    open_folder,
    open_image_pair,
    read_depth,
    read_rgb,
)


def _write_pair(folder: Path, stem_color: str, stem_depth: str, depth_mm: np.ndarray) -> None:
    for name in (stem_color, stem_depth):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
    rgb = np.zeros(depth_mm.shape + (3,), np.uint8)
    rgb[..., 0] = 200  # red in RGB
    assert cv2.imwrite(str(folder / stem_color), rgb[..., ::-1])
    assert cv2.imwrite(str(folder / stem_depth), depth_mm)


def test_seven_scenes_kitchen_units_and_stream(kitchen_dir: Path) -> None:
    source = open_folder(kitchen_dir)
    assert isinstance(source, SevenScenesSource) and len(source) == 1000
    frame = source[0]
    assert frame.rgb.shape == (480, 640, 3) and frame.rgb.dtype == np.uint8
    assert frame.depth.shape == (480, 640) and frame.depth.dtype == np.float32
    assert 0.5 < float(np.nanmedian(frame.depth)) < 4.0
    raw = cv2.imread(str(kitchen_dir / "frame-000000.depth.png"), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(np.isnan(frame.depth), (raw == 0) | (raw == 65535))
    valid = raw[(raw > 0) & (raw < 65535)]
    np.testing.assert_allclose(frame.depth[(raw > 0) & (raw < 65535)], valid / 1000.0, rtol=1e-6)
    assert frame.intrinsics.fx == 585.0 and frame.intrinsics.cx == 320.0
    assert source[30].stamp == pytest.approx(1.0)
    assert frame.name.endswith("frame-000000.color.jpg")


def test_redwood_sample_with_match_file(shared_data: Path) -> None:
    source = open_folder(shared_data / "format_samples")
    assert isinstance(source, RedwoodSource) and len(source) == 5
    frame = source[4]
    assert frame.name.endswith("color/00004.jpg")
    assert 0.5 < float(np.nanmedian(frame.depth)) < 4.0
    assert frame.stamp == pytest.approx(4 / 30)


@pytest.mark.parametrize(
    ("name", "depth_format", "low", "high"),
    [("TUM_color.png", "tum", 1.5, 3.5), ("SUN_color.jpg", "sun", 1.5, 4.0), ("NYU_color.ppm", "nyu_raw", 2.0, 5.0)],
)
def test_single_frame_formats(shared_data: Path, name: str, depth_format: str, low: float, high: float) -> None:
    source = open_folder(shared_data / "format_samples" / "other_formats" / name)
    assert source.depth_format == depth_format and len(source) == 1
    frame = source[0]
    assert frame.rgb.shape == (480, 640, 3)
    assert low < float(np.nanmedian(frame.depth)) < high
    valid = frame.depth[np.isfinite(frame.depth)]
    assert valid.min() > 0.3 and valid.max() <= 10.0
    assert 0.01 < float(np.isnan(frame.depth).mean()) < 0.3


def test_depth_format_conversions(shared_data: Path) -> None:
    folder = shared_data / "format_samples" / "other_formats"
    raw = cv2.imread(str(folder / "TUM_depth.png"), cv2.IMREAD_UNCHANGED)
    tum = read_depth(folder / "TUM_depth.png", "tum")
    assert tum[raw > 0][0] == np.float32(raw[raw > 0][0] / 5000.0)
    raw = cv2.imread(str(folder / "SUN_depth.png"), cv2.IMREAD_UNCHANGED).astype(np.uint32)
    sun = read_depth(folder / "SUN_depth.png", "sun")
    rotated = ((raw >> 3) | (raw << 13)) & 0xFFFF
    np.testing.assert_allclose(sun[rotated > 0], rotated[rotated > 0] / 1000.0, rtol=1e-6)
    nyu = read_depth(folder / "NYU_depth.pgm", "nyu_raw")
    disparity = cv2.imread(str(folder / "NYU_depth.pgm"), cv2.IMREAD_UNCHANGED).byteswap().astype(np.float64)
    expected = 351.3 / (1092.5 - disparity)
    ok = (expected > 0) & (expected <= 10)
    np.testing.assert_allclose(nyu[ok], expected[ok], rtol=1e-5)
    assert np.isnan(nyu[disparity == 2047]).all() and (disparity == 2047).any()


def test_tum_folder_association(tmp_path: Path) -> None:
    depth = np.full((4, 6), 10000, np.uint16)  # 2 m at scale 5000
    for k in range(3):
        _write_pair(tmp_path / "rgb", f"{k}.png", f"../depth/{k}.png", depth)
    (tmp_path / "rgb.txt").write_text("# color\n1.000 rgb/0.png\n1.033 rgb/1.png\n1.066 rgb/2.png\n")
    (tmp_path / "depth.txt").write_text("# depth\n1.004 depth/0.png\n1.038 depth/1.png\n1.200 depth/2.png\n")
    assert detect_layout(tmp_path) == "tum"
    source = open_folder(tmp_path)
    assert isinstance(source, TumSource) and len(source) == 2 and source.unmatched == 1
    frame = source[1]
    assert frame.stamp == pytest.approx(1.033)
    np.testing.assert_allclose(frame.depth, 2.0)
    np.testing.assert_array_equal(frame.rgb[0, 0], [200, 0, 0])
    assert frame.intrinsics.width == 6 and frame.intrinsics.fx == pytest.approx(525 * 6 / 640)


def test_tum_refusals(tmp_path: Path) -> None:
    _write_pair(tmp_path / "rgb", "0.png", "../depth/0.png", np.ones((4, 6), np.uint16))
    (tmp_path / "rgb.txt").write_text("1.0 rgb/0.png\n")
    (tmp_path / "depth.txt").write_text("1.5 depth/0.png\n")
    with pytest.raises(DataError, match="no colour image has a depth image within 0.02 s"):
        TumSource(tmp_path)
    (tmp_path / "depth.txt").write_text("1.0 depth/missing.png\n")
    with pytest.raises(DataError, match="depth.txt: listed file depth/missing.png not found"):
        TumSource(tmp_path)
    (tmp_path / "depth.txt").write_text("garbage\n")
    with pytest.raises(DataError, match=r"depth.txt:1: expected 'timestamp filename'"):
        TumSource(tmp_path)


def test_seven_scenes_missing_depth_is_refused_at_open(tmp_path: Path, kitchen_dir: Path) -> None:
    shutil.copy(kitchen_dir / "frame-000000.color.jpg", tmp_path)
    with pytest.raises(DataError, match=r"frame-000000.color.jpg: missing depth image frame-000000.depth.png"):
        SevenScenesSource(tmp_path)


def test_bad_depth_files_are_refused_at_load(tmp_path: Path) -> None:
    _write_pair(tmp_path, "frame-000000.color.png", "frame-000000.depth.png", np.zeros((4, 6), np.uint8))
    _write_pair(tmp_path, "frame-000001.color.png", "frame-000001.depth.png", np.zeros((5, 6), np.uint16))
    assert cv2.imwrite(str(tmp_path / "frame-000001.color.png"), np.zeros((4, 6, 3), np.uint8))
    (tmp_path / "frame-000002.color.png").write_bytes(cv2.imencode(".png", np.zeros((4, 6, 3), np.uint8))[1])
    (tmp_path / "frame-000002.depth.png").write_bytes(b"not a png")
    source = SevenScenesSource(tmp_path)
    assert source.intrinsics.fx == pytest.approx(585 * 6 / 640)  # no camera-intrinsics.txt: dataset default
    with pytest.raises(DataError, match=r"frame-000000.depth.png: depth image is 8-bit uint8, expected 16-bit"):
        source[0]
    with pytest.raises(DataError, match=r"frame-000001.depth.png: depth is 6x5 but its colour image .* is 6x4"):
        source[1]
    with pytest.raises(DataError, match=r"frame-000002.depth.png: not a readable image"):
        source[2]


def test_redwood_without_match_file_pairs_by_stem(tmp_path: Path) -> None:
    _write_pair(tmp_path, "color/00000.jpg", "depth/00000.png", np.full((4, 6), 1500, np.uint16))
    source = open_folder(tmp_path)
    np.testing.assert_allclose(source[0].depth, 1.5)
    (tmp_path / "color" / "00001.jpg").write_bytes((tmp_path / "color" / "00000.jpg").read_bytes())
    with pytest.raises(DataError, match=r"color/00001.jpg: missing depth image depth/00001.png"):
        RedwoodSource(tmp_path)


def test_unreadable_and_unknown_inputs(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="file not found"):
        read_rgb(tmp_path / "none.png")
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8 broken")
    with pytest.raises(DataError, match="bad.jpg: not a readable image"):
        read_rgb(tmp_path / "bad.jpg")
    with pytest.raises(ValueError, match="expected one of mm, tum, sun, nyu_raw"):
        read_depth(tmp_path / "bad.jpg", "kinect")
    with pytest.raises(DataError, match="unknown RGB-D folder layout"):
        detect_layout(tmp_path)
    with pytest.raises(ValueError, match="expected one of 7scenes, tum, redwood, image"):
        open_folder(tmp_path, layout="kitti")
    _write_pair(tmp_path, "scan_color.png", "scan_depth.png", np.ones((4, 6), np.uint16))
    with pytest.raises(DataError, match="cannot tell the depth format; pass depth_format="):
        open_image_pair(tmp_path / "scan_color.png")
    assert open_image_pair(tmp_path / "scan_color.png", depth_format="mm")[0].depth[0, 0] == np.float32(0.001)
