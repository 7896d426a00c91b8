"""The framework-free core: identity, sessions, manifest, validation, completeness and the per-call recorder."""

from mcp_tracking.core.completeness import has_multiple_results, has_result_data, includes_metrics
from mcp_tracking.core.recorder import CallHandle, CallInfo, Recorder, TrackingOptions

__all__ = ["CallHandle", "CallInfo", "Recorder", "TrackingOptions", "has_multiple_results", "has_result_data",
           "includes_metrics"]
