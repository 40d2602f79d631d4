"""Measure a depth_estimator process's RSS around one refused oversized weights payload (issue 26 #9).

Not a test (pytest collects ``test_*.py`` only): a script whose figures docs/RELIABILITY.md quotes.

    ROS_DOMAIN_ID=41 ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST .venv/bin/python \\
        test/payload_memory_probe.py PACKAGE_ROOT MIB KIND [-p name:=value ...]

``PACKAGE_ROOT``: the checkout whose estimator runs (to compare two commits); ``MIB``: payload
size; ``KIND``: ``zeros`` (not safetensors) or ``safetensors`` (valid framing, one bogus
tensor); further arguments are estimator parameters. Starts the estimator (shipped model,
CPU, one torch thread) as a child process, waits for its ``/diagnostics``, takes the
baseline RSS 5 s later, publishes the payload on ``weights`` (transient-local: this process
keeps it), and prints RSS at +5 s and +60 s and the largest mappings left.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time


def memory(pid: int) -> dict[str, float]:
    """Return VmRSS and VmHWM (peak) of ``pid`` in MiB."""
    out = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(("VmRSS", "VmHWM")):
                key, value = line.split(":")
                out[key] = int(value.split()[0]) / 1024
    return out


def largest_mappings(pid: int, count: int = 6) -> list[tuple[int, str]]:
    """Return ``(MiB resident, mapping line)`` of the ``count`` largest resident mappings of ``pid``."""
    found, current = [], ""
    with open(f"/proc/{pid}/smaps", encoding="utf-8", errors="replace") as smaps:
        for line in smaps:
            parts = line.split()
            if "-" in parts[0] and not parts[0].endswith(":"):
                current = line.strip()
            elif parts[0] == "Rss:":
                found.append((int(parts[1]) // 1024, current[:100]))
    return sorted(found, reverse=True)[:count]


def payload(mib: int, kind: str) -> bytes:
    """Return ``mib`` MiB of zeros, or a safetensors payload of that size with one bogus tensor."""
    if kind == "zeros":
        return bytes(mib * 2**20)
    import torch
    from safetensors.torch import save

    metadata = {"format": "depth_estimator_ros.weights", "format_version": "1", "arch": "fast", "config": "{}",
                "version": "9", "tensors": '["x"]'}
    return save({"x": torch.zeros(mib * 2**18)}, metadata=metadata)


def main(root: str, mib: int, kind: str, extra: list[str]) -> None:
    """Run the measurement (see the module docstring)."""
    sys.path.insert(0, root)
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.signals import SignalHandlerOptions
    from std_msgs.msg import UInt8MultiArray

    from depth_estimator_ros.ros.qos import WEIGHTS_QOS

    log = open(os.path.join(tempfile.gettempdir(), "payload_memory_probe.log"), "w")  # noqa: SIM115
    child = subprocess.Popen(
        [sys.executable, "-c", "from depth_estimator_ros.ros.estimator_node import main; main()",
         "--ros-args", "-p", "device:=cpu", "-p", "torch_threads:=1", *extra],
        env={**os.environ, "PYTHONPATH": root, "PYTHONUNBUFFERED": "1"}, stdout=log, stderr=subprocess.STDOUT,
        cwd=root,
    )
    context = Context()
    rclpy.init(context=context, signal_handler_options=SignalHandlerOptions.NO)
    node = rclpy.create_node("payload_memory_probe", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    values: dict[str, str] = {}
    node.create_subscription(DiagnosticArray, "/diagnostics", lambda msg: values.update(
        {kv.key: kv.value for status in msg.status for kv in status.values}), 10)
    publisher = node.create_publisher(UInt8MultiArray, "weights", WEIGHTS_QOS)
    try:
        deadline = time.monotonic() + 120
        while "weights_rejected" not in values and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.1)
        time.sleep(5)
        baseline = memory(child.pid)["VmRSS"]
        print(f"baseline RSS {baseline:.0f} MiB", flush=True)
        start = time.monotonic()
        publisher.publish(UInt8MultiArray(data=payload(mib, kind)))
        while values.get("weights_rejected") in (None, "0") and time.monotonic() < start + 180:
            executor.spin_once(timeout_sec=0.1)
        counts = ", ".join(f"{k}={v}" for k, v in values.items() if k.startswith("weights"))
        print(f"refused after {time.monotonic() - start:.1f} s: {counts}", flush=True)
        for after in (5, 60):
            while time.monotonic() < start + after:
                executor.spin_once(timeout_sec=0.2)
            now = memory(child.pid)
            print(f"+{after:>2d} s: RSS {now['VmRSS']:.0f} MiB ({100 * (now['VmRSS'] / baseline - 1):+.1f} % of "
                  f"baseline), peak {now['VmHWM']:.0f} MiB", flush=True)
        for size, where in largest_mappings(child.pid):
            print(f"  {size:5d} MiB  {where}")
    finally:
        child.send_signal(2)
        child.wait(10)
        node.destroy_node()
        context.try_shutdown()
        log.close()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:])
