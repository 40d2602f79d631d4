"""End-to-end tests of the make_bag command."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from depth_estimator_ros.cli.make_bag import main
from depth_estimator_ros.data import open_source


def test_synthetic_source_to_mcap(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "room"
    assert main(["--source", "synthetic:seed=1,frames=4,width=40,height=30", "--out", str(out), "--storage", "mcap"]) == 0
    assert "wrote 4 frames" in capsys.readouterr().out
    assert (out / "room.mcap").is_file()
    bag = open_source(out)
    assert len(bag) == 4 and bag.rgb_topic == "/camera/rgb/image_color"
    assert bag[1].stamp - bag[0].stamp == pytest.approx(1 / 30, abs=1e-6)


def test_kitchen_folder_few_frames(tmp_path: Path, kitchen_dir: Path) -> None:
    out = tmp_path / "kitchen"
    argv = ["--source", str(kitchen_dir), "--out", str(out), "--frames", "2", "--rate", "15", "--depth-encoding", "32FC1"]
    assert main(argv) == 0
    bag = open_source(out)
    kitchen = open_source(kitchen_dir)
    assert len(bag) == 2 and bag[1].stamp - bag[0].stamp == pytest.approx(1 / 15, abs=1e-6)
    np.testing.assert_array_equal(bag[1].depth, kitchen[1].depth)
    assert bag.intrinsics.fx == 585.0


def test_bad_input_exits_nonzero(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    # exit status 2 for bad data or paths, as every command of cli/ (cli._common.run_main)
    assert main(["--source", str(tmp_path / "nothing"), "--out", str(tmp_path / "b")]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    assert main(["--source", "synthetic:frames=1,width=16,height=16", "--out", str(tmp_path / "b")]) == 0
    assert main(["--source", "synthetic:frames=1,width=16,height=16", "--out", str(tmp_path / "b")]) == 2
    assert "exists already" in capsys.readouterr().err
    assert main(["--source", "synthetic:colour=red", "--out", str(tmp_path / "c")]) == 2
    with pytest.raises(SystemExit) as info:
        main(["--source", "synthetic", "--out", str(tmp_path / "d"), "--frames", "0"])
    assert info.value.code == 2


def test_rgb_compression_writes_the_compressed_colour_topic(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from depth_estimator_ros.data.rosbag import iter_raw_messages

    out = tmp_path / "jpeg"
    assert main(["--source", "synthetic:seed=1,frames=3,width=40,height=30", "--out", str(out),
                 "--rgb-compression", "jpeg"]) == 0
    topics = {(topic, msgtype) for topic, msgtype, _, _ in iter_raw_messages(out)}
    assert ("/camera/rgb/image_color/compressed", "sensor_msgs/msg/CompressedImage") in topics
    assert ("/camera/depth_registered/image_raw", "sensor_msgs/msg/Image") in topics
