"""Process settings that make camera-sized messages cheap: Fast DDS shared memory and malloc.

Two problems with 1 MB messages (640x480 rgb8 in, 32FC1 depth out), both measured on
the package's own processes (figures in the README, "Large images over Fast DDS" and the
pipeline section), fixed by :func:`configure_large_messages` before ``rclpy.init``:

- **Fast DDS shared-memory segment.** The built-in shared-memory transport has a
  512 KiB segment per participant; a larger message falls back to 64 KiB UDP
  fragments and a best-effort reader loses most of them. :data:`FASTDDS_PROFILE` raises
  the segment to 16 MiB.
  Set as ``FASTRTPS_DEFAULT_PROFILES_FILE`` (the name Fast DDS 2.x reads) and
  ``FASTDDS_DEFAULT_PROFILES_FILE`` (3.x) when the user has set neither and the rmw is
  Fast DDS (the default); child processes inherit it. The segment belongs to the
  *sending* participant, so a camera driver in another process needs the same file
  exported in its environment (README, "Large images over Fast DDS").
- **glibc returning big buffers to the kernel.** Each 1 MB buffer (rclpy's message
  conversion, the CDR serialisation) is a fresh ``mmap`` that page-faults on first
  touch and is unmapped on free, which made serialising one image many times slower
  than with the thresholds below. ``mallopt`` keeps such buffers in the heap and stops
  trimming it; memory stays at its working-set high-water mark instead of being
  handed back and faulted in again 30 times a second.

Neither setting changes what goes over the wire: other DDS participants (other
vendors, other hosts, default Fast DDS settings) still interoperate.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
import sys
from collections.abc import MutableMapping
from pathlib import Path

__all__ = [
    "FASTDDS_PROFILE",
    "LOSSY_LINK_PROFILE",
    "PROFILE_VARIABLES",
    "MMAP_THRESHOLD_BYTES",
    "TRIM_THRESHOLD_BYTES",
    "configure_large_messages",
    "release_memory",
]

#: The Fast DDS profile shipped with the package (shared-memory segment of 16 MiB).
FASTDDS_PROFILE: Path = Path(__file__).with_name("fastdds_large_messages.xml")

#: The profile for processes whose topics cross a lossy link to another host (UDPv4 only,
#: datagrams under the MTU; README, "Two hosts"): set it in their environment instead.
LOSSY_LINK_PROFILE: Path = Path(__file__).with_name("fastdds_lossy_link.xml")

#: Environment variables through which Fast DDS 2.x and 3.x find a profile file.
PROFILE_VARIABLES: tuple[str, ...] = ("FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_DEFAULT_PROFILES_FILE")

#: Allocations up to this size come from the heap instead of their own ``mmap``.
MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024
#: Free heap memory kept before glibc trims it (returns it to the kernel).
TRIM_THRESHOLD_BYTES = 256 * 1024 * 1024

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def configure_large_messages(environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Apply the Fast DDS profile and the malloc thresholds to this process; call before ``rclpy.init``.

    Args:
        environ: the environment to update (``os.environ`` by default; a dict in tests).

    Returns:
        What was done, for the log: ``fastdds_profile`` (the file in use, or why none
        was set) and ``malloc`` (``"tuned"`` or why not).
    """
    env = os.environ if environ is None else environ
    return {"fastdds_profile": _use_profile(env), "malloc": _tune_malloc()}


def _use_profile(env: MutableMapping[str, str]) -> str:
    rmw = env.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    if not rmw.startswith("rmw_fastrtps"):
        return f"not set (RMW_IMPLEMENTATION={rmw})"
    for name in PROFILE_VARIABLES:
        if env.get(name):
            return f"{env[name]} (the user's {name})"
    for name in PROFILE_VARIABLES:
        env[name] = str(FASTDDS_PROFILE)
    return str(FASTDDS_PROFILE)


def _tune_malloc() -> str:
    if not sys.platform.startswith("linux"):
        return f"not tuned ({sys.platform} has no glibc mallopt)"
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return f"not tuned (no mallopt in C library {name!r})"
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    if mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) != 1 or mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) != 1:
        return "not tuned (mallopt refused the thresholds)"
    return "tuned"


def release_memory() -> str:
    """Collect garbage and hand free heap memory back to the kernel (glibc ``malloc_trim``).

    For after a one-off large message (a refused weight payload of hundreds of MB): with
    the thresholds above the heap keeps up to :data:`TRIM_THRESHOLD_BYTES` of free memory
    for the next camera frame; a payload's worth is not worth keeping.

    Returns:
        ``"trimmed"``, ``"nothing to trim"`` or why not (no glibc).
    """
    gc.collect()
    if not sys.platform.startswith("linux"):
        return f"not trimmed ({sys.platform} has no glibc malloc_trim)"
    try:
        malloc_trim = ctypes.CDLL(ctypes.util.find_library("c")).malloc_trim
    except (OSError, AttributeError, TypeError):
        return "not trimmed (no malloc_trim in the C library)"
    malloc_trim.argtypes = (ctypes.c_size_t,)
    malloc_trim.restype = ctypes.c_int
    return "trimmed" if malloc_trim(0) == 1 else "nothing to trim"
