"""``make_bag``: record any frame source into a rosbag2 bag (RGB, depth, camera_info).

Example::

    make_bag --source synthetic:seed=3,frames=300 --out room3_bag --storage mcap
    make_bag --source ../shared/data/7scenes_kitchen --out kitchen_bag --frames 200
    make_bag --source synthetic:seed=0,frames=60 --out jpeg_bag --rgb-compression jpeg  # <rgb topic>/compressed
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from tqdm import tqdm

from depth_estimator_ros.cli._common import positive_float, positive_int, run_main
from depth_estimator_ros.data import open_source
from depth_estimator_ros.data.compressed import COMPRESSED_CONTAINERS
from depth_estimator_ros.data.rosbag import (
    DEFAULT_DEPTH_TOPIC,
    DEFAULT_INFO_TOPIC,
    DEFAULT_RGB_TOPIC,
    STORAGES,
    write_bag,
)

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """Return the command-line parser."""
    parser = argparse.ArgumentParser(
        prog="make_bag",
        description="Write a rosbag2 bag with RGB (rgb8), depth and camera_info from a frame source.",
    )
    parser.add_argument(
        "--source",
        required=True,
        help="frame source: a 7-Scenes/TUM/Redwood folder, an NYU .mat, a bag, or synthetic:seed=3,frames=200",
    )
    parser.add_argument("--out", required=True, help="bag folder to create")
    parser.add_argument("--storage", choices=STORAGES, default="sqlite3", help="rosbag2 storage (default sqlite3)")
    parser.add_argument("--rate", type=positive_float, default=30.0, help="frame rate of the stamps in Hz (default 30)")
    parser.add_argument("--frames", type=positive_int, default=None, help="record only the first N frames")
    parser.add_argument(
        "--depth-encoding", choices=("16UC1", "32FC1"), default="16UC1", help="depth encoding (default 16UC1 mm)"
    )
    parser.add_argument(
        "--depth-offset", type=float, default=0.007, help="depth stamp minus colour stamp in seconds (default 0.007)"
    )
    parser.add_argument(
        "--rgb-compression",
        choices=COMPRESSED_CONTAINERS,
        default=None,
        help="write colour as sensor_msgs/CompressedImage on <rgb topic>/compressed (image_transport's compressed "
        "plugin; JPEG quality 95) instead of rgb8 on the rgb topic",
    )
    parser.add_argument("--rgb-topic", default=DEFAULT_RGB_TOPIC)
    parser.add_argument("--depth-topic", default=DEFAULT_DEPTH_TOPIC)
    parser.add_argument("--info-topic", default=DEFAULT_INFO_TOPIC)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing bag at --out")
    return parser


def _run(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    source = open_source(args.source)
    frames = source if args.frames is None else source[: args.frames]
    progress = tqdm(frames, total=len(frames), desc=f"make_bag {source.name}", unit="frame")
    count = write_bag(
        args.out,
        progress,
        storage=args.storage,
        rgb_topic=args.rgb_topic,
        depth_topic=args.depth_topic,
        info_topic=args.info_topic,
        depth_encoding=args.depth_encoding,
        rate_hz=args.rate,
        depth_stamp_offset=args.depth_offset,
        overwrite=args.overwrite,
        rgb_compression=args.rgb_compression,
    )
    print(f"wrote {count} frames to {args.out} ({args.storage})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; return the exit status (0 ok, 2 bad arguments, data or an existing bag)."""
    return run_main("make_bag", _run, argv)


if __name__ == "__main__":
    sys.exit(main())
