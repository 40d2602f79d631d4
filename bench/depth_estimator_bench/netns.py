"""Two "hosts" on one Linux machine: network namespaces joined by a veth pair, optional packet loss.

The separate mode (``depth_estimator`` on the robot, ``online_trainer`` on a workstation)
is tested and measured across two network namespaces: each has its own loopback and one
end of a veth pair, so DDS traffic between them is UDP over an Ethernet-like link.
Fast DDS (2.14, the package's profile with shared memory and UDPv4) does not use shared
memory between participants in different namespaces: measured, every byte of the
weights went over the veth (:meth:`Host.link_bytes` counts them). Needs root (or
``CAP_NET_ADMIN``) and the ``ip`` and ``tc`` commands of iproute2; :class:`TwoHosts`
raises :class:`NamespaceError` with the reason where they are missing or refused, so
tests can skip and benchmarks report why.

Packet loss (:meth:`TwoHosts.add_loss`) uses ``tc ... netem`` where the kernel has it.
Without ``sch_netem`` it falls back to a classic-BPF ``tc`` classifier that drops each
packet with the given probability (``ld rand``), which adds no delay; the returned
description says which one is in force.

Usage::

    with TwoHosts() as hosts:
        hosts.add_loss(15.0, delay_ms=20.0)
        argv = hosts.robot.wrap(["python", "-c", "..."])   # runs inside the robot namespace
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["NamespaceError", "Host", "TwoHosts"]


class NamespaceError(RuntimeError):
    """Network namespaces, the veth pair or the loss emulation could not be set up (the message says why)."""


def _run(argv: Sequence[str], what: str) -> str:
    """Run an iproute2 command; raise :class:`NamespaceError` naming ``what`` and the command's error."""
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=30.0)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NamespaceError(f"cannot {what}: {' '.join(argv)}: {exc}") from exc
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip() or f"exit status {done.returncode}"
        raise NamespaceError(f"cannot {what}: {' '.join(argv)}: {detail}")
    return done.stdout


@dataclass(frozen=True)
class Host:
    """One side of the link: a network namespace, its veth end and that end's IPv4 address."""

    namespace: str
    device: str
    address: str

    def wrap(self, argv: Sequence[str]) -> list[str]:
        """Return ``argv`` prefixed to run inside this namespace (``ip netns exec``)."""
        return ["ip", "netns", "exec", self.namespace, *argv]

    def link_bytes(self) -> tuple[int, int]:
        """Return ``(received, sent)`` bytes counted on this host's veth end so far."""
        stats = Path("/sys/class/net")
        # /sys of the caller's namespace does not show the device: read it from inside.
        out = _run(
            self.wrap(["cat", str(stats / self.device / "statistics/rx_bytes"),
                       str(stats / self.device / "statistics/tx_bytes")]),
            f"read the byte counters of {self.device} in {self.namespace}",
        )
        received, sent = (int(value) for value in out.split())
        return received, sent


class TwoHosts:
    """Create a ``robot`` and a ``workstation`` network namespace joined by a veth pair.

    Names are unique per instance (``ip netns`` and interface names are global to the
    machine); everything is removed by :meth:`close` (the context manager's exit), also
    when setting up failed half-way. Processes started in a namespace must have ended
    before :meth:`close`, or the namespace outlives its name until they do.

    Args:
        prefix: start of every name (at most 4 characters: interface names are limited
            to 15).
    """

    def __init__(self, prefix: str = "de") -> None:
        if not 1 <= len(prefix) <= 4 or not prefix.isalnum():
            raise ValueError(f"prefix must be 1-4 letters or digits, got {prefix!r}")
        tag = f"{prefix}{secrets.token_hex(3)}"
        # 10.<a>.<b>.0/30: namespaces are private, the subnet only has to differ from the
        # machine's own networks, which never reach into these namespaces anyway.
        octets = secrets.token_bytes(2)
        net = f"10.{200 + octets[0] % 50}.{octets[1]}"
        self.robot = Host(f"{tag}-robot", f"{tag}r", f"{net}.1")
        self.workstation = Host(f"{tag}-ws", f"{tag}w", f"{net}.2")
        self.loss: str | None = None
        self._created: list[str] = []

    def open(self) -> TwoHosts:
        """Create the namespaces and the link.

        Raises:
            NamespaceError: ``ip`` is missing, not permitted (not root) or refused a step;
                whatever was created is removed again.
        """
        if shutil.which("ip") is None:
            raise NamespaceError("the 'ip' command (iproute2) is not installed")
        try:
            for host in (self.robot, self.workstation):
                _run(["ip", "netns", "add", host.namespace], "create a network namespace")
                self._created.append(host.namespace)
            _run(
                ["ip", "link", "add", self.robot.device, "netns", self.robot.namespace, "type", "veth",
                 "peer", "name", self.workstation.device, "netns", self.workstation.namespace],
                "create the veth pair",
            )
            for host in (self.robot, self.workstation):
                ns = ["ip", "-n", host.namespace]
                _run([*ns, "addr", "add", f"{host.address}/30", "dev", host.device], "address the veth")
                _run([*ns, "link", "set", host.device, "up"], "bring the veth up")
                _run([*ns, "link", "set", "lo", "up"], "bring the loopback up")
                # DDS discovery is multicast (239.255.0.1): without a route it has nowhere to go.
                _run([*ns, "route", "add", "224.0.0.0/4", "dev", host.device], "route multicast over the veth")
        except NamespaceError:
            self.close()
            raise
        return self

    def add_loss(self, percent: float, *, delay_ms: float = 0.0) -> str:
        """Drop ``percent`` % of the packets in each direction of the link (and delay them, with netem).

        Returns:
            What is in force, e.g. ``"netem loss 15% delay 20 ms"`` or, without netem,
            ``"random loss 15% (classic-BPF tc classifier; no delay: ...)"``.

        Raises:
            NamespaceError: neither netem nor the BPF classifier can be installed.
        """
        if not 0.0 < percent < 100.0:
            raise ValueError(f"percent must be within (0, 100), got {percent}")
        if shutil.which("tc") is None:
            raise NamespaceError("the 'tc' command (iproute2) is not installed")
        try:
            for host in (self.robot, self.workstation):
                netem = ["loss", f"{percent:g}%"] + (["delay", f"{delay_ms:g}ms"] if delay_ms > 0 else [])
                _run(["ip", "netns", "exec", host.namespace, "tc", "qdisc", "add", "dev", host.device, "root",
                      "netem", *netem], "add netem")
            self.loss = f"netem loss {percent:g}%" + (f" delay {delay_ms:g} ms" if delay_ms > 0 else "")
            return self.loss
        except NamespaceError as exc:
            netem_problem = str(exc).rsplit(": ", 1)[-1]
        # Classic BPF: A = random u32 (SKF_AD_RANDOM); A >= threshold -> TC_ACT_OK (0), else TC_ACT_SHOT (2).
        threshold = min(int(percent / 100.0 * 2**32), 2**32 - 1)
        program = f"4,32 0 0 {2**32 - 0x1000 + 56},53 1 0 {threshold},6 0 0 2,6 0 0 0"
        for host in (self.robot, self.workstation):
            tc = ["ip", "netns", "exec", host.namespace, "tc"]
            _run([*tc, "qdisc", "add", "dev", host.device, "clsact"], "add a clsact qdisc for the loss filter")
            _run([*tc, "filter", "add", "dev", host.device, "egress", "bpf", "da", "bytecode", program],
                 f"add a random-drop BPF filter (netem unavailable: {netem_problem})")
        self.loss = (f"random loss {percent:g}% (classic-BPF tc classifier; no delay: netem unavailable: "
                     f"{netem_problem})")
        return self.loss

    def close(self) -> None:
        """Delete the namespaces (the veth pair goes with them); idempotent, never raises."""
        while self._created:
            namespace = self._created.pop()
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True, timeout=30.0, check=False)

    def __enter__(self) -> TwoHosts:
        return self.open()

    def __exit__(self, *exc_info: object) -> None:
        self.close()
