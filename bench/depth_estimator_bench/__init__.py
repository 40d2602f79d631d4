"""The measurement harness: ``make bench`` and ``make demo``, outside the product.

Nothing in the product imports this package; it measures the product from outside,
through its library API (offline sections) or as a robot would, over real DDS with the
nodes running as separate processes (node-level sections, the demo). Each section
measures and reports, never passes or fails on a number.

One module per ``bench`` section, each with a ``run(...)`` that writes ``<section>.json``
and ``<section>.png`` into the output folder and returns the JSON-able result:

- :mod:`.model_speed` (``model``) -- forward passes per second, latency, FLOPs and
  GFLOP/s of every architecture next to the machine's matrix-multiply peak;
- :mod:`.pipeline` -- 30 Hz camera frames through the estimator node over DDS, optionally
  with room recognition scoring a room memory (:mod:`.room_memory` builds it);
- :mod:`.adaptation` -- prequential comparison with/without adaptation, estimator rate
  while training, and the cross-process weight hand-over latency;
- :mod:`.memory` -- RSS of the live pipeline over a long run while adapting;
- :mod:`.two_hosts` -- the separate mode across two network namespaces (:mod:`.netns`:
  veth pair, packet loss; needs root), run only when named: weights hand-over and frames
  lost over UDP, with and without loss;
- :mod:`.accuracy`, :mod:`.rooms`, :mod:`.soak` -- the long sections run only when named:
  equal training budgets, leave-one-room-out, 60 Hz VGA into ``live`` for minutes.

Besides them: :mod:`.demo` (``make demo``: a bag replayed through ``live`` with and
without adaptation), :mod:`.machine` (the machine every result was taken on),
:mod:`.common` (JSON/PNG writing, devices) and :mod:`.roshelpers` (node processes, a
client node, paced publishing). The node-level modules import rclpy inside the
functions that talk to nodes, so the offline sections run without it.
"""

SECTIONS: tuple[str, ...] = ("model", "pipeline", "adaptation", "memory")

__all__ = ["SECTIONS"]
