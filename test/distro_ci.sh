#!/usr/bin/env bash
# `make test` where ../shared/ros2_jazzy is present: the ROS 2 distro path, for real.
#
# Builds the package the colcon way into a temporary workspace and runs the whole suite
# with `colcon test` against that install: every pytest test, the launch_testing tests
# (launch_testing's pytest plugin) and the `ros2 launch` / `ros2 param` / `ros2 topic`
# smoke test (test_distro.py) use the installed package through the ament index.
# Fails when a test fails, when colcon test ran no tests (with setuptools >= 72 a package
# relying on `tests_require` falls back to unittest and runs 0 tests, reporting success),
# or when a distro test was skipped.
#
#   usage: test/distro_ci.sh PYTHON [pytest arguments...]
#   PYTHON: the test environment's interpreter (.venv/bin/python), with the Jazzy launch
#   stack, the ros2 CLI and colcon-common-extensions installed (the Makefile does that).
set -euo pipefail
py=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
shift
root=$(cd "$(dirname "$0")/.." && pwd)
prefix=$("$py" -c 'import sys; print(sys.prefix)')
ws=$(mktemp -d "${TMPDIR:-/tmp}/depth_estimator_ros_ws.XXXXXX")
trap 'rm -rf "$ws"' EXIT
export PATH="$(dirname "$py"):$PATH"
paths=(--base-paths "$root" --build-base "$ws/build" --install-base "$ws/install")

# colcon-ros must see an ament_python package (a package.xml it cannot parse makes it plain
# Python: built, but missing from the ament index).
colcon list --base-paths "$root" | grep -q '(ros.ament_python)' \
    || { echo "colcon does not identify depth_estimator_ros as ros.ament_python (package.xml?)" >&2; exit 1; }
colcon --log-base "$ws/log" build "${paths[@]}" --packages-select depth_estimator_ros
# The workspace's own setup script (AMENT_PREFIX_PATH, PYTHONPATH of the install), as a user
# sources it; it reads unset variables. The launch stack registered itself in the
# environment's prefix, so that goes on AMENT_PREFIX_PATH too (../shared/ros2_jazzy/README.md).
set +u
# shellcheck disable=SC1091
source "$ws/install/setup.bash"
set -u
export AMENT_PREFIX_PATH="$AMENT_PREFIX_PATH:$prefix"
export DEPTH_ESTIMATOR_ROS_DISTRO_CI=1  # test_distro.py: a missing piece is an error, not a skip

pytest_args=()
if [ "$#" -gt 0 ]; then pytest_args=(--pytest-args "$@"); fi
colcon --log-base "$ws/log" test "${paths[@]}" --packages-select depth_estimator_ros \
    --event-handlers console_direct+ "${pytest_args[@]}"
colcon test-result --test-result-base "$ws/build" --verbose

"$py" - "$ws/build/depth_estimator_ros/pytest.xml" <<'PY'
"""Check the junit report: tests ran, and no distro test was skipped."""
import sys
import xml.etree.ElementTree as ET

cases = list(ET.parse(sys.argv[1]).getroot().iter("testcase"))
distro = ("test_distro", "launch_testing_tests", "test_launch_files")
skipped = [
    f"{case.get('classname')}::{case.get('name')}: {case.find('skipped').get('message')}"
    for case in cases
    if case.find("skipped") is not None and any(part in (case.get("classname") or "") for part in distro)
]
if not cases:
    sys.exit("colcon test ran 0 tests (setuptools >= 72 with tests_require only?)")
if skipped:
    sys.exit("distro tests skipped in the distro CI run:\n  " + "\n  ".join(skipped))
print(f"distro CI: {len(cases)} tests reported by colcon test, no distro test skipped")
PY
