"""The import graph of the runtime package: layers import downward only, never the harness or plots.

Read from the source (``ast``), so a lazy import inside a function counts as much as one at
the top. Layers, bottom to top: the root modules, models, data, learning, adaptation, ros/cli.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "depth_estimator_ros"
# What each layer may import from the package (itself included); BASE: plain modules at the
# package's root (parameters, the atomic writer, the safetensors structure check) every layer uses.
BASE = {"parameters", "atomic", "safetensors_format"}
ALLOWED = {
    "models": {"models"} | BASE,
    "data": {"data", "models"} | BASE,
    "learning": {"learning", "data", "models"} | BASE,
    "adaptation": {"adaptation", "learning", "data", "models"} | BASE,
    "ros": {"ros", "adaptation", "learning", "data", "models"} | BASE,
    "cli": {"cli", "adaptation", "learning", "data", "models"} | BASE,
}
NEVER = ("matplotlib", "depth_estimator_bench")
NO_ROS = ("rclpy", "sensor_msgs", "std_msgs", "std_srvs", "diagnostic_msgs", "geometry_msgs")


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "weights" not in p.parts)


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_runtime_modules_import_downward_only_and_never_the_harness_or_matplotlib(path: Path) -> None:
    imports = _imports(path)
    bad = sorted(name for name in imports if name.split(".")[0] in NEVER)
    assert not bad, f"{path.name} imports {bad}: plots and the harness live in bench/"
    layer = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
    if layer not in ALLOWED:
        return  # parameters.py, atomic.py, __init__.py: checked for the harness above
    upward = sorted(
        name for name in imports
        if name.startswith("depth_estimator_ros.") and name.split(".")[1] not in ALLOWED[layer]
    )
    assert not upward, f"{path.relative_to(PACKAGE)} ({layer}) imports upward: {upward}"
    if layer != "ros":
        ros = sorted(name for name in imports if name.split(".")[0] in NO_ROS)
        assert not ros, f"{path.relative_to(PACKAGE)}: only ros/ imports ROS, found {ros}"
