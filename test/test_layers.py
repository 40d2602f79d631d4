"""The shape of the runtime package: layers import downward only, never the harness or plots;
no function over 80 lines and the package within 12,000 lines (issue 25).

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


MAX_FUNCTION_LINES = 80
MAX_PACKAGE_LINES = 12_000


def test_no_runtime_function_is_over_80_lines() -> None:
    """Count from ``def`` to the function's last line (decorators not counted); nested functions count alone."""
    long = []
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines, split them into named steps: {long}"


@pytest.mark.xfail(strict=True, reason="issue 25 target not met yet: the package was 14,432 lines when this "
                                       "test was added; once this passes, strict xfail fails the run: remove this mark")
def test_runtime_package_is_at_most_12000_lines() -> None:
    """Count lines as ``wc -l`` does (newlines) over every module of the package."""
    sizes = {str(path.relative_to(PACKAGE)): path.read_text().count("\n") for path in _modules()}
    total = sum(sizes.values())
    largest = sorted(sizes.items(), key=lambda item: -item[1])[:8]
    assert total <= MAX_PACKAGE_LINES, (
        f"depth_estimator_ros/ is {total} lines, over {MAX_PACKAGE_LINES}; the largest modules: {largest}"
    )
