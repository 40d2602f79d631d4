"""The base model shipped with the package: found installed, documented, camera-aware on real frames."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

from depth_estimator_ros import models
from depth_estimator_ros.learning.predictor import Predictor

PROJECT = Path(__file__).resolve().parents[1]
#: SHA-256 of ../shared/weights/mobilenet_v2_imagenet_from_qnnpack.safetensors (its README).
IMAGENET_SHA256 = "06906c72c4fd8fd36fddf58a895c9f69b57779ce6b33f6da4f28c4e2373b2aec"


def test_the_shipped_checkpoint_loads_by_name_and_says_how_it_was_made():
    assert models.resolve_checkpoint("default") == models.SHIPPED_CHECKPOINT
    model, meta = models.load_checkpoint(models.DEFAULT_CHECKPOINT)
    assert model.arch == "fast" and model.config["backbone"] == "mobilenet_v2" and model.freeze_encoder_bn
    assert models.SHIPPED_CHECKPOINT.stat().st_size < 8 * 1024 * 1024  # a few MB (float16 tensors)
    provenance = meta["provenance"]
    assert provenance["encoder_weights"]["source"] == "file"
    assert provenance["encoder_weights"]["sha256"] == IMAGENET_SHA256
    assert "7scenes_kitchen" not in provenance["rooms"] and "kitchen" not in " ".join(provenance["rooms"])
    licensed = {row["name"]: row["license"] for row in provenance["licences"]}
    assert set(licensed) == set(provenance["rooms"]) and all(licensed.values())
    sidecar = json.loads(models.SHIPPED_CHECKPOINT.with_suffix(".json").read_text())
    assert sidecar["provenance"] == provenance and sidecar["stored_dtype"] == "float16"


def test_an_installed_package_finds_its_checkpoint(tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(PROJECT)], check=True, capture_output=True, timeout=300)
    # the colcon/distro layout: share/depth_estimator_ros/weights/ beside the launch and config files
    assert (target / "share" / "depth_estimator_ros" / "weights" / "fast_rooms.safetensors").is_file()
    code = ("from depth_estimator_ros import models; m, _ = models.load_checkpoint('default'); "
            "print(models.SHIPPED_CHECKPOINT, m.input_size)")
    env = {**os.environ, "PYTHONPATH": str(target)}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, check=True, capture_output=True,
                         text=True, timeout=120).stdout
    assert out.startswith(str(target / "depth_estimator_ros" / "weights" / "fast_rooms.safetensors"))


def _frames(shared_data: Path):
    from depth_estimator_ros.data import open_source
    from depth_estimator_ros.data.collection import open_rooms

    sources = [open_source(shared_data / "7scenes_kitchen"), *open_rooms(shared_data / "rooms")]
    return [(source.name, source[len(source) // 2]) for source in sources]


def test_same_scene_at_two_resolutions_and_two_crops_gives_the_same_metric_depth(shared_data):
    """Resolution: within 2 % on every frame. A central 70 % crop (a 1.43x longer lens): within
    60 % on every frame and closer than a camera-unaware model (the same crop taken for the
    uncropped camera) in the median over the frames. Measured with the shipped model of
    2026-12-03: crops within 4-55 % (median 17 %; the YCB tabletop at fx 1067 px is the 55 %),
    camera-unaware median 18 % (the base before: 2-30 %, median 15 %, and 19 %): the network
    has learned only part of what a zoom looks like, the focal length does the rest."""
    predictor = Predictor(models.load_checkpoint("default")[0], "cpu")
    aware_errors, unaware_errors = [], []
    for name, frame in _frames(shared_data):
        k = frame.intrinsics
        h, w = frame.rgb.shape[:2]
        full = predictor.predict(frame.rgb, k.normalized_focal)
        half = predictor.predict(cv2.resize(frame.rgb, (w // 2, h // 2), interpolation=cv2.INTER_AREA),
                                 k.scaled(w // 2, h // 2).normalized_focal)
        shrunk = cv2.resize(full, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
        assert np.nanmedian(np.abs(half / shrunk - 1.0)) < 0.02, name
        ch, cw = int(0.7 * h), int(0.7 * w)
        top, left = (h - ch) // 2, (w - cw) // 2
        crop = np.ascontiguousarray(frame.rgb[top:top + ch, left:left + cw])
        reference = full[top:top + ch, left:left + cw]
        aware = np.nanmedian(predictor.predict(crop, k.cropped(left, top, cw, ch).normalized_focal) / reference)
        unaware = np.nanmedian(predictor.predict(crop, k.normalized_focal) / reference)
        assert abs(aware - 1.0) < 0.6, (name, aware)
        aware_errors.append(abs(aware - 1.0))
        unaware_errors.append(abs(unaware - 1.0))
    assert np.median(aware_errors) < np.median(unaware_errors), (aware_errors, unaware_errors)
