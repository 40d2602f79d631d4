"""Held-out scene folds: grouping by source repository, dealing, and a tiny run end to end."""

from __future__ import annotations

import math

import pytest

from depth_estimator_bench.scene_folds import deal_folds, run, scene_groups


def _rooms(tmp_path, write_room):
    rooms, more = tmp_path / "rooms", tmp_path / "more"
    write_room(rooms / "lab_a", 1, 6, 2.0)
    write_room(rooms / "lab_b", 2, 2, 2.5)
    write_room(rooms / "synthetic_render", 3, 3, 3.0)
    write_room(more / "desk", 4, 4, 0.8)
    write_room(more / "lone", 5, 1, 1.2)
    (rooms / "SOURCES.tsv").write_text(
        "name\tframes\tsource\nlab_a\t6\tlab/repo@abc:a\nlab_b\t2\tlab/repo@abc:b\nsynthetic_render\t3\tr/x@1:y\n")
    (more / "SOURCES.tsv").write_text("name\tframes\tsource\ndesk\t4\tdesk/repo@def:d\n")
    return rooms, more


def test_scenes_of_one_repository_share_a_fold_and_rendered_scenes_always_train(tmp_path, write_room):
    rooms, more = _rooms(tmp_path, write_room)
    groups = scene_groups([rooms, more])
    assert {g: sorted(n for _, n, _ in v) for g, v in groups.items()} == {
        "lab/repo": ["lab_a", "lab_b"], "desk/repo": ["desk"], "lone": ["lone"]}  # no SOURCES row: its own group
    folds = deal_folds(groups, 2)
    assert folds == [["lab_a", "lab_b"], ["desk", "lone"]]  # 8 frames, then 4 + 1 dealt to the lighter fold
    assert sorted(sum(folds, [])) == ["desk", "lab_a", "lab_b", "lone"]
    with pytest.raises(ValueError, match="folds must be >= 2"):
        deal_folds(groups, 1)


def test_a_tiny_run_scores_every_held_out_scene_by_the_fold_that_never_saw_it(tmp_path, write_room):
    rooms, more = _rooms(tmp_path, write_room)
    variants = {"tiny": {"extra_sources": (), "input_size": (32, 32), "min_room_frames": 0, "split": (0.5, 0.4, 0.1)}}
    result = run(tmp_path / "out", roots=[rooms, more], encoder_weights=None, variants=variants, steps=2,
                 folds=2, seeds=(0,))
    rows = result["rows"]
    assert sorted(r["scene"] for r in rows) == ["desk", "lab_a", "lab_b", "lone"]
    for row in rows:
        held = result["folds"][row["fold"]]
        assert row["scene"] in held
        assert math.isfinite(row["model"]["rmse"]) and math.isfinite(row["mean_depth"]["rmse"])
    assert (tmp_path / "out" / "scene_folds.json").is_file()
