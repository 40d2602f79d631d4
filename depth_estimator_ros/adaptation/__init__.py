"""Adaptation layer: replay buffer, online adaptation engine, weight payloads.

See docs/ARCHITECTURE.md. The prequential and tour evaluators measure this layer from
outside, in the harness package :mod:`depth_estimator_bench` (``bench/``).
"""

from depth_estimator_ros.adaptation.buffer import DROP_REASONS, BufferedFrame, ReplayBuffer
from depth_estimator_ros.adaptation.config import SCOPES, AdaptationConfig
from depth_estimator_ros.adaptation.engine import (
    LIVE_FIELDS,
    ROUND_OUTCOMES,
    SHARED_PROCESS_SWITCH_INTERVAL_S,
    AdaptationEngine,
    RoundResult,
)
from depth_estimator_ros.adaptation.payload import PayloadError, export_payload, import_payload, read_payload

__all__ = [
    "SHARED_PROCESS_SWITCH_INTERVAL_S",
    "DROP_REASONS",
    "LIVE_FIELDS",
    "ROUND_OUTCOMES",
    "SCOPES",
    "AdaptationConfig",
    "AdaptationEngine",
    "BufferedFrame",
    "PayloadError",
    "ReplayBuffer",
    "RoundResult",
    "export_payload",
    "import_payload",
    "read_payload",
]
