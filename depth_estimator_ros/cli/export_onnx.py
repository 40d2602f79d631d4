"""``export_onnx``: write a checkpoint's model as a self-contained ONNX graph.

For onnxruntime, TensorRT (``trtexec --onnx=...``) or any ONNX runtime outside ROS. The
graph's inputs are ``rgb`` (``(B, H, W, 3)`` uint8 RGB at the model's input size, e.g.
144x192 for the shipped model: resize the image first) and ``focal`` (``(B,)`` float32,
``sqrt(fx * fy / (W * H))`` of the original image's intrinsics); its output ``depth`` is
``(B, 1, H, W)`` float32 metres. The export is checked against torch before it is written.

Example::

    export_onnx --checkpoint default --out fast_rooms.onnx
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from depth_estimator_ros.cli._common import run_main

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """Return the command-line parser."""
    p = argparse.ArgumentParser(prog="export_onnx", description="Export a checkpoint as a standalone ONNX graph.")
    p.add_argument("--checkpoint", default="default", help="checkpoint (.safetensors; default: the shipped base)")
    p.add_argument("--out", type=Path, required=True, help="the .onnx file to write (atomically)")
    return p


def _run(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    from depth_estimator_ros.atomic import write_bytes
    from depth_estimator_ros.learning.onnx_backend import standalone_onnx
    from depth_estimator_ros.models import load_checkpoint

    model = load_checkpoint(args.checkpoint)[0]
    exported = standalone_onnx(model)
    path = write_bytes(args.out, exported.data)
    h, w = model.input_size
    print(f"wrote {path} ({len(exported.data) / 1e6:.1f} MB): {model.arch}, input rgb (B, {h}, {w}, 3) uint8 + "
          f"focal (B,), output depth (B, 1, {h}, {w}) m; max |onnx - torch| {exported.max_abs_diff_m:.2g} m")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``export_onnx``; return the exit status (0 ok, 2 bad arguments or files)."""
    return run_main("export_onnx", _run, argv)


if __name__ == "__main__":
    sys.exit(main())
