"""Emit: the queue and worker in front of the sinks, and the per-event processors."""

from mcp_tracking.emit.emitter import Emitter, EmitterStats
from mcp_tracking.emit.processors import CapSizes, KeysOnly, MakeJsonSafe, Processor, RedactSecrets, default_processors

__all__ = ["CapSizes", "Emitter", "EmitterStats", "KeysOnly", "MakeJsonSafe", "Processor", "RedactSecrets",
           "default_processors"]
